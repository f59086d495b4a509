"""Picking instances of one service: :class:`ServiceProvider` over a :class:`~.cache.ServiceCache`.

A provider has its own strategy and down-instance policy (:mod:`.strategies`) and follows
its cache's endpoints. Picking is thread-safe: the strategy and the down-instance policy
are only touched under the picker's lock, so the blocking API picks on the caller's
thread while the cache runs on its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Iterable, Sequence
from types import TracebackType

from zkop.discovery.cache import ServiceCache
from zkop.discovery.instances import Instance
from zkop.discovery.strategies import DownInstancePolicy, Picker, Strategy
from zkop.errors import ZkopError

__all__ = ["NoInstanceError", "ServiceProvider"]


class NoInstanceError(ZkopError, LookupError):
    """The service has no endpoint to call."""


class _ProviderPicker(Picker):
    """A :class:`Picker` that can leave out instances (the ones a retry already tried),
    and that notes errors and successes under its lock, so that the down-instance policy
    is only ever touched by one thread at a time."""

    def __init__(
        self, strategy: Strategy | str, instances: Iterable[Instance], *, down_policy: DownInstancePolicy
    ) -> None:
        super().__init__(strategy, instances, down_policy=down_policy)
        self.policy = down_policy
        self._errors_noted: dict[str, int] = {}

    def _choose_from(self, key: str | None, exclude: Collection[str]) -> Instance | None:
        candidates: Sequence[Instance] = self.instances
        if exclude:
            candidates = [inst for inst in candidates if inst.id not in exclude]
        return self.strategy.pick(self.policy.filter(candidates), key)

    def pick(self, key: str | None = None, exclude: Collection[str] = ()) -> Instance | None:
        with self._lock:
            return self._choose_from(key, exclude)

    def acquire(self, key: str | None = None, exclude: Collection[str] = ()) -> Instance | None:
        with self._lock:
            chosen = self._choose_from(key, exclude)
            if chosen is not None:
                self.strategy.on_acquire(chosen)
            return chosen

    def release(self, inst: Instance, *, ok: bool | None = True) -> None:
        with self._lock:
            self.strategy.on_release(inst)
            if ok is not None:
                self._note(inst, ok)

    def note(self, inst: Instance, ok: bool) -> None:
        with self._lock:
            self._note(inst, ok)

    def _note(self, inst: Instance, ok: bool) -> None:
        if ok:
            self.policy.note_success(inst)
        else:
            self._errors_noted[inst.id] = self._errors_noted.get(inst.id, 0) + 1
            self.policy.note_error(inst)

    def errors_noted(self, inst: Instance) -> int:
        with self._lock:
            return self._errors_noted.get(inst.id, 0)

    def is_down(self, inst: Instance) -> bool:
        with self._lock:
            return self.policy.is_down(inst)


class _Call:
    """``with provider.call(key) as inst:`` (or ``async with``): one call, counted in flight."""

    def __init__(self, provider: ServiceProvider, key: str | None) -> None:
        self._provider = provider
        self._key = key
        self._inst: Instance | None = None
        self._errors_before = 0

    def __enter__(self) -> Instance:
        inst = self._provider.acquire(self._key)
        if inst is None:
            raise self._provider.no_instance()
        self._inst = inst
        self._errors_before = self._provider.picker.errors_noted(inst)
        return inst

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        inst, self._inst = self._inst, None
        if inst is None:
            return
        ok: bool | None
        if self._provider.picker.errors_noted(inst) != self._errors_before:
            ok = None  # the caller noted an error itself: neither count it twice nor clear it
        elif exc_type is None:
            ok = True
        elif issubclass(exc_type, Exception):
            ok = False
        else:
            ok = None  # cancelled or interrupted: says nothing about the instance
        self._provider.release(inst, ok=ok)

    async def __aenter__(self) -> Instance:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class ServiceProvider:
    """Picks instances of one service with a strategy and a down-instance policy.

    Every method but :meth:`aget_instance` may be called from any thread.
    """

    def __init__(
        self, cache: ServiceCache, strategy: Strategy | str = "round_robin", down: DownInstancePolicy | None = None
    ) -> None:
        self.cache = cache
        self.service = cache.service
        self.down = down if down is not None else DownInstancePolicy()
        self.picker = _ProviderPicker(strategy, cache.endpoints(), down_policy=self.down)
        self.strategy = self.picker.strategy
        cache.listeners.append(self.picker.update)
        # A change between reading the list above and subscribing would be missed.
        self.picker.update(cache.endpoints())

    def close(self) -> None:
        """Stop following the cache (the provider keeps its last view)."""
        with contextlib.suppress(ValueError):
            self.cache.listeners.remove(self.picker.update)

    def instances(self) -> list[Instance]:
        """The service's endpoints now (down ones included), sorted by id."""
        return self.cache.endpoints()

    def no_instance(self) -> NoInstanceError:
        skipped = f"; {len(self.cache.skipped)} unusable znode(s) skipped" if self.cache.skipped else ""
        return NoInstanceError(
            f"service {self.service} has no endpoint{skipped}",
            hint=f"nothing usable under {self.cache.base}: is the application running and ready?",
        )

    def get_instance(self, key: str | None = None) -> Instance | None:
        """An instance to call now (``key``: affinity for consistent_hash), or None when there is none.

        Only chooses: use :meth:`call` for strategies that balance calls in flight.
        """
        return self.picker.pick(key)

    async def aget_instance(self, key: str | None = None, timeout: float = 10.0) -> Instance:
        """An instance to call, waiting up to ``timeout`` seconds for the service to have one
        (on the cache's event loop); :class:`NoInstanceError` after that."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            inst = self.picker.pick(key)
            if inst is not None:
                return inst
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise self.no_instance()
            try:
                await self.cache.wait_for(bool, left)
            except TimeoutError:
                raise self.no_instance() from None

    def acquire(self, key: str | None = None, exclude: Collection[str] = ()) -> Instance | None:
        """An instance for a call, counted in flight until :meth:`release`; ``exclude``: ids not to offer."""
        return self.picker.acquire(key, exclude)

    def release(self, inst: Instance, *, ok: bool | None = True) -> None:
        """The call is over: ``ok`` notes a success (True), an error (False) or neither (None)."""
        self.picker.release(inst, ok=ok)

    def call(self, key: str | None = None) -> _Call:
        """``with provider.call(key) as inst:`` (or ``async with``) for one call to ``inst``.

        The call counts in flight while the block runs (least_connections, the bounded
        loads of consistent_hash). Leaving the block notes a success, leaving it with an
        exception an error (cancellation notes neither), unless :meth:`note_error` was
        called meanwhile. Raises :class:`NoInstanceError` when the service has no endpoint.
        """
        return _Call(self, key)

    def note_error(self, inst: Instance) -> None:
        """A call to ``inst`` failed; after repeated errors it is left out for a while."""
        self.picker.note(inst, ok=False)

    def note_success(self, inst: Instance) -> None:
        """A call to ``inst`` succeeded: its error count starts again."""
        self.picker.note(inst, ok=True)

    def is_down(self, inst: Instance) -> bool:
        return self.picker.is_down(inst)
