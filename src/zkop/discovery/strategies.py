"""Client-side load balancing: choose one instance of a service for each call.

A :class:`Strategy` picks from the instances a discovery client currently
knows. Strategies that balance by load (``least_connections`` and
``consistent_hash``) learn about calls through two hooks the client calls:
``on_acquire`` when a call to an instance starts and ``on_release`` when it
ends. :class:`Picker` does that bookkeeping for you, and leaves out instances
that a :class:`DownInstancePolicy` has seen failing.

Everything here is pure: no I/O, time comes from an injectable clock and
randomness from an injectable :class:`random.Random`. Strategies are not
thread-safe on their own; :class:`Picker` serialises access with a lock.

Strategies know instances by ``Instance.id``. Duplicate ids in one list are
treated as one instance (the last one wins), and the order of the list never
matters: strategies that need an order sort by id.
"""

from __future__ import annotations

import bisect
import hashlib
import inspect
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

from zkop.discovery.instances import Instance

__all__ = [
    "STRATEGY_NAMES",
    "ConsistentHash",
    "DownInstancePolicy",
    "LeastConnections",
    "Picker",
    "RandomChoice",
    "RoundRobin",
    "Sticky",
    "Strategy",
    "make_strategy",
]

Clock = Callable[[], float]


@runtime_checkable
class Strategy(Protocol):
    """Chooses an instance for a call; told when calls start and end."""

    def pick(self, instances: Sequence[Instance], key: str | None = None) -> Instance | None:
        """One of ``instances``, or ``None`` when there are none.

        ``key`` is a request affinity key (a user or session id); strategies
        that have no use for it ignore it.
        """
        ...

    def on_acquire(self, inst: Instance) -> None:
        """A call to ``inst`` has started."""
        ...

    def on_release(self, inst: Instance) -> None:
        """A call to ``inst`` has ended (successfully or not)."""
        ...


def _by_id(instances: Iterable[Instance]) -> list[Instance]:
    """The distinct instances (last one per id wins), sorted by id."""
    latest = {inst.id: inst for inst in instances}
    return [latest[ident] for ident in sorted(latest)]


def _next_after(ordered: Sequence[Instance], last: str | None) -> Instance:
    """The first instance whose id sorts after ``last``, wrapping to the start.

    Rotating by "the next id after the last one picked" rather than by a counter
    keeps the rotation fair while the list changes: a removed instance is not
    replaced by a double turn for its neighbour, and a new one joins in order.
    """
    if last is None:
        return ordered[0]
    index = bisect.bisect_right([inst.id for inst in ordered], last)
    return ordered[index % len(ordered)]


class _InFlight:
    """In-flight call counts per instance id."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def acquire(self, ident: str) -> None:
        self._counts[ident] = self._counts.get(ident, 0) + 1

    def release(self, ident: str) -> None:
        count = self._counts.get(ident, 0)
        # A release without an acquire (a client bug, or a strategy swapped
        # mid-call) must not drive a count negative.
        if count <= 1:
            self._counts.pop(ident, None)
        else:
            self._counts[ident] = count - 1

    def get(self, ident: str) -> int:
        return self._counts.get(ident, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)


class _NoTracking:
    """Hooks for strategies that do not care about calls in flight."""

    def on_acquire(self, inst: Instance) -> None:
        return None

    def on_release(self, inst: Instance) -> None:
        return None


class RoundRobin(_NoTracking):
    """Each instance in turn, in id order.

    Over any ``k * n`` consecutive picks from an unchanged list of ``n``
    instances, each is picked exactly ``k`` times. The first pick starts at a
    position drawn from ``rng`` so that many clients started together do not
    all begin with the same instance.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._last: str | None = None

    def pick(self, instances: Sequence[Instance], key: str | None = None) -> Instance | None:
        ordered = _by_id(instances)
        if not ordered:
            return None
        chosen = ordered[self._rng.randrange(len(ordered))] if self._last is None else _next_after(ordered, self._last)
        self._last = chosen.id
        return chosen


class RandomChoice(_NoTracking):
    """A uniformly random instance; reproducible with a seeded ``rng``."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()

    def pick(self, instances: Sequence[Instance], key: str | None = None) -> Instance | None:
        ordered = _by_id(instances)
        if not ordered:
            return None
        return self._rng.choice(ordered)


class LeastConnections:
    """The instance with the fewest calls in flight.

    Ties are broken in rotation (or at random when ``rng`` is given), so that
    an idle service still spreads its calls.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng
        self._inflight = _InFlight()
        self._last_tied: str | None = None

    def in_flight(self, inst: Instance) -> int:
        return self._inflight.get(inst.id)

    def pick(self, instances: Sequence[Instance], key: str | None = None) -> Instance | None:
        ordered = _by_id(instances)
        if not ordered:
            return None
        fewest = min(self._inflight.get(inst.id) for inst in ordered)
        tied = [inst for inst in ordered if self._inflight.get(inst.id) == fewest]
        if self._rng is not None:
            return self._rng.choice(tied)
        chosen = _next_after(tied, self._last_tied)
        self._last_tied = chosen.id
        return chosen

    def on_acquire(self, inst: Instance) -> None:
        self._inflight.acquire(inst.id)

    def on_release(self, inst: Instance) -> None:
        self._inflight.release(inst.id)


def stable_hash(data: str) -> int:
    """A 64-bit hash of ``data`` that is the same in every process and run.

    (Python's ``hash()`` is salted per process, so it cannot place keys on a
    ring that several clients must agree on.)
    """
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "big")


class ConsistentHash:
    """Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, 2018).

    Every instance owns ``vnodes`` points on a ring of 64-bit hashes. A key
    hashes to a point and walks clockwise; it goes to the first instance it
    meets whose load (calls in flight, learnt through ``on_acquire`` and
    ``on_release``) is below the capacity::

        capacity = ceil((1 + epsilon) * (total_load + 1) / n)

    where ``total_load`` is the load of the ``n`` current instances and the
    ``+ 1`` counts the call being placed. So:

    * a key stays with its instance while that instance is below capacity;
    * adding or removing one of ``n`` instances moves about ``1/n`` of the keys;
    * if every call is placed by this strategy and acquired right after the
      pick (``Picker.acquire`` does both under one lock), no instance ever takes
      a call that brings it above the capacity.

    Calls without a key go to the least-loaded instance (ties in rotation).
    """

    def __init__(self, *, vnodes: int = 100, epsilon: float = 0.25) -> None:
        if isinstance(vnodes, bool) or not isinstance(vnodes, int) or vnodes < 1:
            raise ValueError(f"consistent_hash: vnodes must be a positive integer, got {vnodes!r}")
        if not math.isfinite(epsilon) or epsilon <= 0:
            raise ValueError(
                f"consistent_hash: epsilon must be a positive number, got {epsilon!r}"
                " (0.25 allows each instance 25% above the average load)"
            )
        self.vnodes = vnodes
        self.epsilon = epsilon
        # Exact arithmetic for the capacity: 1.25 * 8 / 5 must be 2, not 2.0000000000000004.
        self._factor = 1 + Fraction(epsilon).limit_denominator(1_000_000)
        self._inflight = _InFlight()
        self._last_unkeyed: str | None = None
        self._ring_ids: tuple[str, ...] = ()
        self._points: list[int] = []
        self._owners: list[str] = []

    # -- the ring -------------------------------------------------------------

    def _ring(self, ids: tuple[str, ...]) -> tuple[list[int], list[str]]:
        if ids != self._ring_ids:
            placed = sorted(
                (stable_hash(f"{ident}#{replica}"), ident) for ident in ids for replica in range(self.vnodes)
            )
            self._points = [point for point, _ in placed]
            self._owners = [ident for _, ident in placed]
            self._ring_ids = ids
        return self._points, self._owners

    def _walk(self, ordered: Sequence[Instance], key: str) -> Iterable[Instance]:
        """The distinct instances in ring order, starting clockwise from ``key``."""
        by_id = {inst.id: inst for inst in ordered}
        points, owners = self._ring(tuple(by_id))
        start = bisect.bisect_left(points, stable_hash(key))
        seen: set[str] = set()
        for step in range(len(points)):
            ident = owners[(start + step) % len(points)]
            if ident not in seen:
                seen.add(ident)
                yield by_id[ident]
                if len(seen) == len(by_id):
                    return

    # -- loads ----------------------------------------------------------------

    def load(self, inst: Instance) -> int:
        """Calls in flight to ``inst``."""
        return self._inflight.get(inst.id)

    def capacity(self, instances: Sequence[Instance]) -> int:
        """The most calls any of ``instances`` may have after the next one is placed."""
        ordered = _by_id(instances)
        if not ordered:
            return 0
        total = sum(self._inflight.get(inst.id) for inst in ordered)
        return math.ceil(self._factor * (total + 1) / len(ordered))

    def owner(self, instances: Sequence[Instance], key: str) -> Instance | None:
        """The instance ``key`` belongs to when loads are ignored (plain consistent hashing)."""
        ordered = _by_id(instances)
        if not ordered:
            return None
        return next(iter(self._walk(ordered, key)))

    # -- Strategy -------------------------------------------------------------

    def pick(self, instances: Sequence[Instance], key: str | None = None) -> Instance | None:
        ordered = _by_id(instances)
        if not ordered:
            return None
        if key is None:
            fewest = min(self._inflight.get(inst.id) for inst in ordered)
            tied = [inst for inst in ordered if self._inflight.get(inst.id) == fewest]
            chosen = _next_after(tied, self._last_unkeyed)
            self._last_unkeyed = chosen.id
            return chosen
        cap = self.capacity(ordered)
        for inst in self._walk(ordered, key):
            if self._inflight.get(inst.id) < cap:
                return inst
        # Unreachable: the least-loaded instance carries at most total/n < cap.
        return min(ordered, key=lambda inst: self._inflight.get(inst.id))

    def on_acquire(self, inst: Instance) -> None:
        self._inflight.acquire(inst.id)

    def on_release(self, inst: Instance) -> None:
        self._inflight.release(inst.id)


class Sticky:
    """The same instance for as long as it is offered; a new one (from ``inner``) after.

    The sticky instance is kept while it appears in the list it is given. Used
    through a :class:`Picker` with a :class:`DownInstancePolicy`, an instance
    that goes down is left out of that list, so the client moves on, and it
    stays with the new instance when the old one comes back.
    """

    def __init__(self, inner: Strategy | None = None) -> None:
        self.inner: Strategy = inner if inner is not None else RoundRobin()
        self._current: str | None = None

    @property
    def current(self) -> str | None:
        """The id of the instance this strategy is stuck to, if any."""
        return self._current

    def pick(self, instances: Sequence[Instance], key: str | None = None) -> Instance | None:
        if self._current is not None:
            for inst in reversed(instances):  # the last duplicate wins, as elsewhere
                if inst.id == self._current:
                    return inst
        chosen = self.inner.pick(instances, key)
        self._current = chosen.id if chosen is not None else None
        return chosen

    def on_acquire(self, inst: Instance) -> None:
        self.inner.on_acquire(inst)

    def on_release(self, inst: Instance) -> None:
        self.inner.on_release(inst)


_FACTORIES: dict[str, Callable[..., Strategy]] = {
    "round_robin": RoundRobin,
    "random": RandomChoice,
    "least_connections": LeastConnections,
    "consistent_hash": ConsistentHash,
}

STRATEGY_NAMES: tuple[str, ...] = tuple(sorted([*_FACTORIES, "sticky"]))
"""The names :func:`make_strategy` accepts."""


def make_strategy(name: str, **opts: Any) -> Strategy:
    """A new strategy by name: one of :data:`STRATEGY_NAMES`.

    ``opts`` go to the strategy's constructor (``rng=`` for ``round_robin``,
    ``random`` and ``least_connections``; ``vnodes=`` and ``epsilon=`` for
    ``consistent_hash``). ``sticky`` takes ``inner=`` (a strategy or a name,
    default ``"round_robin"``) and passes its other options to a named inner
    strategy. Dashes are accepted for underscores (``round-robin``).
    """
    normal = name.strip().lower().replace("-", "_")
    if normal == "sticky":
        inner = opts.pop("inner", "round_robin")
        if isinstance(inner, str):
            return Sticky(make_strategy(inner, **opts))
        if opts:
            raise ValueError(
                f"strategy 'sticky' with a ready-made inner strategy takes no other options,"
                f" got {', '.join(sorted(opts))}"
            )
        if not isinstance(inner, Strategy):
            raise ValueError(f"strategy 'sticky': inner must be a strategy or a name, got {inner!r}")
        return Sticky(inner)
    factory = _FACTORIES.get(normal)
    if factory is None:
        raise ValueError(f"unknown load-balancing strategy {name!r}; choose one of: {', '.join(STRATEGY_NAMES)}")
    signature = inspect.signature(factory)
    try:
        signature.bind(**opts)
    except TypeError:
        allowed = ", ".join(signature.parameters) or "none"
        raise ValueError(
            f"strategy {normal!r} does not take option(s) {', '.join(sorted(opts))}; its options are: {allowed}"
        ) from None
    return factory(**opts)


class DownInstancePolicy:
    """Leaves out instances that keep failing, for a while.

    After ``error_threshold`` errors within ``window`` seconds (with no success
    in between) an instance is down for ``down_for`` seconds, then it is
    offered again with a clean slate. Errors noted while it is down are
    ignored: it is already out.

    A success clears an instance's error count but does not end a down period
    early: a late reply from a call that started before the instance went down
    says little about whether it is healthy now.

    :meth:`filter` fails open: when every instance is down it returns them all.
    When everything looks down, the likeliest causes are on the client's side
    or shared by all instances (the client's network, a dependency they all
    use, a burst of bad requests), and refusing every call would turn a partial
    or transient outage into a total one and stop the client from seeing the
    recovery. Trying the instances costs little and lets real results in.
    """

    def __init__(
        self,
        error_threshold: int = 3,
        window: float = 60.0,
        down_for: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if error_threshold < 1:
            raise ValueError(f"error_threshold must be at least 1, got {error_threshold!r}")
        if not window > 0:
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        if not down_for >= 0:
            raise ValueError(f"down_for must be zero or more seconds, got {down_for!r}")
        self.error_threshold = error_threshold
        self.window = window
        self.down_for = down_for
        self._clock = clock
        self._errors: dict[str, deque[float]] = {}
        self._down_until: dict[str, float] = {}

    def _down(self, ident: str, now: float) -> bool:
        until = self._down_until.get(ident)
        if until is None:
            return False
        if now < until:
            return True
        del self._down_until[ident]
        return False

    def note_error(self, inst: Instance) -> None:
        now = self._clock()
        if self._down(inst.id, now):
            return
        errors = self._errors.setdefault(inst.id, deque())
        errors.append(now)
        while errors and errors[0] <= now - self.window:
            errors.popleft()
        if len(errors) >= self.error_threshold:
            del self._errors[inst.id]
            self._down_until[inst.id] = now + self.down_for

    def note_success(self, inst: Instance) -> None:
        self._errors.pop(inst.id, None)

    def is_down(self, inst: Instance) -> bool:
        return self._down(inst.id, self._clock())

    def filter(self, instances: Iterable[Instance]) -> list[Instance]:
        """The instances that are not down, or all of them if all are (see the class doc)."""
        offered = list(instances)
        now = self._clock()
        up = [inst for inst in offered if not self._down(inst.id, now)]
        return up if up else offered


class Picker:
    """The instances of one service, a strategy and an optional down-instance policy.

    The discovery client calls :meth:`update` whenever the registry changes.
    For a call, use :meth:`acquire` and then :meth:`release` when the call is
    over (in a ``finally``); :meth:`pick` only chooses, for callers that do
    not track calls. All methods are thread-safe.
    """

    def __init__(
        self,
        strategy: Strategy | str = "round_robin",
        instances: Iterable[Instance] = (),
        *,
        down_policy: DownInstancePolicy | None = None,
    ) -> None:
        self.strategy: Strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
        self.down_policy = down_policy
        self._lock = threading.Lock()
        self._instances: tuple[Instance, ...] = tuple(_by_id(instances))

    @property
    def instances(self) -> tuple[Instance, ...]:
        """The known instances, sorted by id."""
        return self._instances

    def update(self, instances: Iterable[Instance]) -> None:
        """Replace the known instances (the registry's current view)."""
        fresh = tuple(_by_id(instances))
        with self._lock:
            self._instances = fresh

    def _choose(self, key: str | None) -> Instance | None:
        candidates: Sequence[Instance] = self._instances
        if self.down_policy is not None:
            candidates = self.down_policy.filter(candidates)
        return self.strategy.pick(candidates, key)

    def pick(self, key: str | None = None) -> Instance | None:
        """An instance for a call with ``key``, without recording the call."""
        with self._lock:
            return self._choose(key)

    def acquire(self, key: str | None = None) -> Instance | None:
        """An instance for a call with ``key``, recorded as in flight until :meth:`release`."""
        with self._lock:
            chosen = self._choose(key)
            if chosen is not None:
                self.strategy.on_acquire(chosen)
            return chosen

    def release(self, inst: Instance, *, ok: bool | None = True) -> None:
        """The call to ``inst`` is over.

        ``ok=True`` notes a success and ``ok=False`` an error with the
        down-instance policy; ``ok=None`` notes neither (a call the client
        itself cancelled says nothing about the instance).
        """
        with self._lock:
            self.strategy.on_release(inst)
            if self.down_policy is not None and ok is not None:
                if ok:
                    self.down_policy.note_success(inst)
                else:
                    self.down_policy.note_error(inst)
