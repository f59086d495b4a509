"""The work queue between a controller's informer and its workers.

Events say *when* to look at a key; the queue decides *who* looks and *how often*.
Its contract (the "stingy" queue of client-go):

- **Fair.** Keys are handed out first-in, first-out.
- **Stingy.** A key handed out by :meth:`WorkQueue.get` is not handed out again
  until :meth:`WorkQueue.done` is called for it, so one key is never processed by
  two workers at once. Adding a key that is already queued does nothing (adds
  coalesce). Adding a key while it is being processed marks it *dirty*: when
  ``done`` is called it is queued again, exactly once however many adds came in.
- **Backoff.** :meth:`WorkQueue.add_rate_limited` delays a key by what the rate
  limiter says (per-key exponential backoff under a global token bucket, by
  default); :meth:`WorkQueue.forget` resets the key's backoff after a success.
- **Delays.** :meth:`WorkQueue.add_after` adds a key after a delay (a reconciler's
  ``requeue_after``). A key waiting for several delays waits for the earliest.

A worker loop looks like this::

    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            result = await reconcile(key)
        except Exception:
            queue.add_rate_limited(key)
        else:
            ...  # forget / add_after / add_rate_limited as the Result asks
        finally:
            queue.done(key)

Shutdown (:meth:`WorkQueue.shutdown`) stops accepting adds at once and drops keys
that are still waiting for a delay. ``drain=True`` then keeps handing out what is
queued (and the one extra run of keys added during processing) until everything
is done; ``drain=False`` drops what is queued. Once nothing is left to hand out,
:meth:`WorkQueue.get` raises :class:`ShutDown` (an exception rather than a
sentinel, so a worker cannot mistake the end for a key).

The queue belongs to one event loop and is not thread-safe: call it from that
loop's thread (callbacks from kazoo threads must hop over with
``loop.call_soon_threadsafe``). Delays are measured on the loop's clock; the
metrics use ``clock`` (``time.monotonic`` unless a test injects another).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from zkop.errors import ZkopError
from zkop.runtime.ratelimit import Clock, RateLimiter, default_controller_rate_limiter

__all__ = [
    "MetricsProvider",
    "NullMetrics",
    "ShutDown",
    "WorkQueue",
    "WorkQueueStats",
]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class ShutDown(ZkopError):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down and has nothing left to hand out."""

    def __init__(self, queue_name: str = "") -> None:
        label = f"work queue {queue_name!r}" if queue_name else "the work queue"
        super().__init__(
            f"{label} is shut down",
            hint="no more keys will be handed out; the worker should return",
        )
        self.queue_name = queue_name


class MetricsProvider(Protocol):
    """Callbacks a work queue calls as things happen (e.g. to feed Prometheus).

    ``queue`` is the queue's name. Callbacks run synchronously on the event loop
    and should be quick; an exception from one is logged and otherwise ignored.
    Gauges that change with time (longest running processor, unfinished work)
    have no callback: read them from :meth:`WorkQueue.longest_running_processor_seconds`
    and :meth:`WorkQueue.unfinished_work_seconds` when scraping.
    """

    def on_add(self, queue: str) -> None:
        """A key became pending (an add that did not coalesce with a pending one)."""
        ...

    def on_retry(self, queue: str) -> None:
        """:meth:`WorkQueue.add_rate_limited` was called."""
        ...

    def on_depth(self, queue: str, depth: int) -> None:
        """The number of keys ready to be handed out changed."""
        ...

    def on_queue_latency(self, queue: str, seconds: float) -> None:
        """A key was handed out ``seconds`` after it became pending."""
        ...

    def on_work_duration(self, queue: str, seconds: float) -> None:
        """A key was marked done ``seconds`` after it was handed out."""
        ...


class NullMetrics:
    """A :class:`MetricsProvider` that ignores everything; subclass it to override only some callbacks."""

    def on_add(self, queue: str) -> None:
        return None

    def on_retry(self, queue: str) -> None:
        return None

    def on_depth(self, queue: str, depth: int) -> None:
        return None

    def on_queue_latency(self, queue: str, seconds: float) -> None:
        return None

    def on_work_duration(self, queue: str, seconds: float) -> None:
        return None


@dataclass(frozen=True)
class WorkQueueStats:
    """A snapshot of a queue's metrics."""

    name: str
    depth: int
    """Keys ready to be handed out."""
    processing: int
    """Keys handed out and not yet done."""
    waiting: int
    """Keys waiting for a delay (``add_after`` / ``add_rate_limited``)."""
    adds: int
    """Adds that made a key pending (coalesced adds are not counted)."""
    retries: int
    """Calls to ``add_rate_limited``."""
    longest_running_processor_seconds: float
    unfinished_work_seconds: float


class WorkQueue(Generic[K]):
    """A fair, stingy, rate-limited queue of keys. See the module documentation for the contract."""

    def __init__(
        self,
        *,
        rate_limiter: RateLimiter[K] | None = None,
        name: str = "",
        metrics: MetricsProvider | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        if rate_limiter is None:
            rate_limiter = default_controller_rate_limiter()
        self._limiter: RateLimiter[K] = rate_limiter
        self._metrics = metrics
        self._clock = clock

        self._queue: deque[K] = deque()  # ready keys, in order; each is also in _dirty
        self._dirty: set[K] = set()  # keys that need a run: queued, or added while processing
        self._processing: dict[K, float] = {}  # handed out, not done -> clock() when handed out
        self._pending_since: dict[K, float] = {}  # dirty key -> clock() when it became dirty

        self._waiting: dict[K, float] = {}  # key -> loop time at which it is added
        self._heap: list[tuple[float, int, K]] = []  # (ready at, tie-breaker, key); stale entries skipped
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._drained = asyncio.Event()

        self._adds = 0
        self._retries = 0

    # ------------------------------------------------------------------ adding

    def add(self, key: K) -> None:
        """Make ``key`` pending. Coalesces with a pending add; ignored once shutting down."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self._pending_since[key] = self._clock()
        self._adds += 1
        if self._metrics is not None:
            self._emit(self._metrics.on_add, self.name)
        if key in self._processing:
            return  # queued again by done()
        self._push(key)

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds (at once when ``delay <= 0``).

        If the key is already waiting, it keeps the earlier of the two times.
        Must be called with the event loop running. Ignored once shutting down.
        """
        if not math.isfinite(delay):
            raise ValueError(f"delay must be a finite number of seconds, got {delay!r}")
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        current = self._waiting.get(key)
        if current is not None and current <= ready_at:
            return
        self._waiting[key] = ready_at
        heapq.heappush(self._heap, (ready_at, next(self._seq), key))
        self._schedule(loop)

    def add_rate_limited(self, key: K) -> None:
        """Add ``key`` after the delay its rate limiter gives (one retry). Ignored once shutting down."""
        if self._shutting_down:
            return
        self._retries += 1
        if self._metrics is not None:
            self._emit(self._metrics.on_retry, self.name)
        self.add_after(key, self._limiter.when(key))

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff (call it after a successful run). Does not dequeue the key."""
        self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        """How many rate-limited adds of ``key`` since it was last forgotten."""
        return self._limiter.num_requeues(key)

    # ------------------------------------------------------------------ processing

    async def get(self) -> K:
        """Wait for the next key and mark it as being processed; call :meth:`done` when finished with it.

        Raises :class:`ShutDown` once the queue is shut down and nothing is left to hand out.
        """
        while not self._queue:
            if self._shutting_down and not self._dirty:
                raise ShutDown(self.name)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken for a key this getter will not take: pass it on
                else:
                    self._remove_getter(waiter)
                raise
        key = self._queue.popleft()
        self._dirty.discard(key)
        now = self._clock()
        self._processing[key] = now
        since = self._pending_since.pop(key, now)
        if self._metrics is not None:
            self._emit(self._metrics.on_depth, self.name, len(self._queue))
            self._emit(self._metrics.on_queue_latency, self.name, max(0.0, now - since))
        self._check_finished()
        return key

    def done(self, key: K) -> None:
        """Mark ``key`` as processed. If it was added meanwhile, it is queued again (once).

        Raises ValueError if ``key`` was not handed out by :meth:`get` (or ``done`` was already called).
        """
        try:
            started = self._processing.pop(key)
        except KeyError:
            raise ValueError(
                f"done({key!r}) called for a key that is not being processed; "
                "call done() exactly once for each key returned by get()"
            ) from None
        if self._metrics is not None:
            self._emit(self._metrics.on_work_duration, self.name, max(0.0, self._clock() - started))
        if key in self._dirty:
            self._push(key)
        self._check_finished()

    # ------------------------------------------------------------------ shutdown

    async def shutdown(self, *, drain: bool = True, timeout: float | None = None) -> bool:
        """Stop accepting adds and drop keys waiting for a delay; then drain or cancel.

        ``drain=True``: wait until every queued key (and every extra run owed to a
        key added during processing) has been handed out and marked done. Workers
        must keep calling :meth:`get` for this to finish. If ``timeout`` seconds
        pass first, what is still queued is dropped and this returns False.

        ``drain=False``: drop what is queued and return at once; keys being
        processed stay so until their :meth:`done` (which then queues nothing).

        Either way, :meth:`get` raises :class:`ShutDown` once nothing is left to
        hand out. Returns True if all work was finished and nothing was dropped
        (delayed keys aside). Calling it again is allowed.
        """
        if not self._shutting_down:
            self._shutting_down = True
            self._cancel_delayed()
        if not drain:
            dropped = self._drop_pending()
            self._check_finished()
            return not dropped and self._drained.is_set()
        self._check_finished()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            self._drop_pending()
            self._check_finished()
            return False
        return True

    @property
    def shutting_down(self) -> bool:
        """True once :meth:`shutdown` has been called."""
        return self._shutting_down

    # ------------------------------------------------------------------ metrics

    def __len__(self) -> int:
        """Keys ready to be handed out (not those being processed or waiting for a delay)."""
        return len(self._queue)

    @property
    def depth(self) -> int:
        """Same as ``len(queue)``."""
        return len(self._queue)

    @property
    def processing(self) -> int:
        """Keys handed out and not yet done."""
        return len(self._processing)

    @property
    def waiting(self) -> int:
        """Keys waiting for a delay."""
        return len(self._waiting)

    @property
    def adds(self) -> int:
        """Adds that made a key pending, since the queue was made (coalesced adds are not counted)."""
        return self._adds

    @property
    def retries(self) -> int:
        """Calls to :meth:`add_rate_limited` since the queue was made."""
        return self._retries

    def longest_running_processor_seconds(self) -> float:
        """How long the longest-running key in processing has been at it (0 when none)."""
        if not self._processing:
            return 0.0
        return max(0.0, self._clock() - min(self._processing.values()))

    def unfinished_work_seconds(self) -> float:
        """The sum of how long every key in processing has been at it (0 when none)."""
        now = self._clock()
        return sum(max(0.0, now - started) for started in self._processing.values())

    def stats(self) -> WorkQueueStats:
        """All metrics at once."""
        return WorkQueueStats(
            name=self.name,
            depth=len(self._queue),
            processing=len(self._processing),
            waiting=len(self._waiting),
            adds=self._adds,
            retries=self._retries,
            longest_running_processor_seconds=self.longest_running_processor_seconds(),
            unfinished_work_seconds=self.unfinished_work_seconds(),
        )

    # ------------------------------------------------------------------ internals

    def _push(self, key: K) -> None:
        self._queue.append(key)
        if self._metrics is not None:
            self._emit(self._metrics.on_depth, self.name, len(self._queue))
        self._wake_one()

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _remove_getter(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._getters.remove(waiter)

    def _check_finished(self) -> None:
        """While shutting down: release idle getters when nothing is left to hand out; note when drained."""
        if not self._shutting_down or self._dirty:
            return
        self._wake_all()  # each re-checks and raises ShutDown
        if not self._processing:
            self._drained.set()

    def _drop_pending(self) -> int:
        dropped = len(self._dirty)
        if dropped:
            log.info("work queue %r shut down: dropping %d pending key(s)", self.name, dropped)
        self._queue.clear()
        self._dirty.clear()
        self._pending_since.clear()
        if dropped and self._metrics is not None:
            self._emit(self._metrics.on_depth, self.name, 0)
        return dropped

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make the timer fire at the earliest live entry of the heap (or not at all)."""
        heap = self._heap
        while heap and self._waiting.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # stale: the key was rescheduled earlier, or already added
        if not heap:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        first = heap[0][0]
        if self._timer is not None:
            if self._timer_at == first:
                return
            self._timer.cancel()
        self._timer = loop.call_at(first, self._fire)
        self._timer_at = first

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        # The loop may run a timer a hair early; whatever this timer was set for is due.
        due = max(loop.time(), self._timer_at)
        heap = self._heap
        while heap and heap[0][0] <= due:
            ready_at, _, key = heapq.heappop(heap)
            if self._waiting.get(key) == ready_at:
                del self._waiting[key]
                self.add(key)
        self._schedule(loop)

    def _cancel_delayed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting:
            log.debug("work queue %r shut down: dropping %d delayed key(s)", self.name, len(self._waiting))
        self._waiting.clear()
        self._heap.clear()

    def _emit(self, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("metrics callback %s of work queue %r failed", callback, self.name)
