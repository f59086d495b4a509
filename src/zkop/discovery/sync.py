"""The blocking API: :class:`ServiceDiscovery`, for scripts and threaded programs.

::

    with ServiceDiscovery("127.0.0.1:2181") as sd:
        provider = sd.provider("default/counter")
        inst = provider.get_instance()
        reg = sd.register("default", "legacy", Instance("a", "127.0.0.1", 8080),
                          credentials=os.environ["ZKOP_REGISTRY_AUTH"])  # ephemeral
        reg.report_load(0.7)
        reg.unregister()

The cache logic lives once, in asyncio (:class:`~.aio.AsyncServiceDiscovery`); this API
runs it on a private event loop thread and waits for it. Picks run on the caller's
thread (:class:`~.provider.ServiceProvider` is thread-safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Collection, Coroutine, Iterable
from typing import Any, TypeVar, Unpack

from zkop.discovery.aio import AsyncServiceDiscovery
from zkop.discovery.instances import Instance
from zkop.discovery.provider import ServiceProvider, _Call
from zkop.discovery.registration import REPLACE_WAIT, RegisterOptions, Registration
from zkop.discovery.strategies import DownInstancePolicy, Strategy

__all__ = ["ServiceDiscovery", "SyncRegistration", "SyncServiceProvider"]

T = TypeVar("T")


class _LoopThread:
    """A private event loop in a daemon thread, for the blocking API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="zkop-discovery", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("the blocking discovery API cannot be called from its own event loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class SyncRegistration:
    """The blocking face of a :class:`Registration`."""

    def __init__(self, loop: _LoopThread, reg: Registration) -> None:
        self._loop = loop
        self.registration = reg
        self.instance = reg.instance

    def report_load(self, value: float) -> None:
        self._loop.run(self.registration.report_load(value))

    def unregister(self) -> None:
        self._loop.run(self.registration.unregister())

    def __enter__(self) -> SyncRegistration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unregister()


class SyncServiceProvider:
    """The blocking face of a :class:`ServiceProvider` (picks run on the caller's thread)."""

    def __init__(self, loop: _LoopThread, provider: ServiceProvider) -> None:
        self._loop = loop
        self.provider = provider
        self.service = provider.service

    def get_instance(self, key: str | None = None) -> Instance | None:
        return self.provider.get_instance(key)

    def wait_instance(self, key: str | None = None, timeout: float = 10.0) -> Instance:
        """An instance, waiting up to ``timeout`` seconds for one; :class:`NoInstanceError` after."""
        return self._loop.run(self.provider.aget_instance(key, timeout), timeout + 5)

    def instances(self) -> list[Instance]:
        return self.provider.instances()

    def call(self, key: str | None = None) -> _Call:
        return self.provider.call(key)

    def acquire(self, key: str | None = None, exclude: Collection[str] = ()) -> Instance | None:
        return self.provider.acquire(key, exclude)

    def release(self, inst: Instance, *, ok: bool | None = True) -> None:
        self.provider.release(inst, ok=ok)

    def note_error(self, inst: Instance) -> None:
        self.provider.note_error(inst)

    def note_success(self, inst: Instance) -> None:
        self.provider.note_success(inst)

    def is_down(self, inst: Instance) -> bool:
        return self.provider.is_down(inst)


class ServiceDiscovery:
    """The blocking API over the same cache, for scripts and threaded programs.

    Connects in the constructor (``Unavailable`` when ZooKeeper cannot be reached
    within ``start_timeout``); use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        hosts: str,
        *,
        root: str = "/zkop",
        auth_data: Iterable[tuple[str, str]] = (),
        session_timeout: float = 10.0,
        resync_interval: float | None = 60.0,
        start_timeout: float = 15.0,
    ) -> None:
        self._loop = _LoopThread()
        try:
            self.aio = AsyncServiceDiscovery(
                hosts,
                root=root,
                auth_data=auth_data,
                session_timeout=session_timeout,
                resync_interval=resync_interval,
            )
            self._loop.run(self.aio.start(start_timeout), start_timeout + 5)
        except BaseException:
            self._loop.close()
            raise

    def provider(
        self, service: str, strategy: Strategy | str = "round_robin", down: DownInstancePolicy | None = None
    ) -> SyncServiceProvider:
        return SyncServiceProvider(self._loop, self._loop.run(self.aio.provider(service, strategy, down)))

    def register(
        self, namespace: str, app: str, instance: Instance, **options: Unpack[RegisterOptions]
    ) -> SyncRegistration:
        """Register ``instance`` with the service's identity (the options of :meth:`AsyncServiceDiscovery.register`)."""
        timeout = options.get("replace_wait", REPLACE_WAIT) + 30
        return SyncRegistration(
            self._loop, self._loop.run(self.aio.register(namespace, app, instance, **options), timeout)
        )

    def close(self) -> None:
        if self._loop.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._loop.run(self.aio.close())
        self._loop.close()

    def __enter__(self) -> ServiceDiscovery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
