"""Service discovery clients: a watch-maintained cache of a service's endpoints.

asyncio::

    sd = AsyncServiceDiscovery("127.0.0.1:2181")
    await sd.start()
    provider = await sd.provider("default/counter", strategy="round_robin")
    inst = await provider.get_instance()
    async with provider.call(key="user-42") as inst: ...   # counts in-flight calls
    provider.note_error(inst)                               # down-instance policy

Plain threads (the same cache, run on a private event loop)::

    sd = ServiceDiscovery("127.0.0.1:2181")
    provider = sd.provider("default/counter", strategy="least_connections")
    inst = provider.get_instance()
    reg = sd.register("default", "legacy", Instance("a", "127.0.0.1", 8080))  # ephemeral
    reg.report_load(0.7)
    sd.close()

The cache is level-triggered: a change notification makes it re-read the service's
endpoints; after a lost session it relists. Data that is not an endpoint is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import WatchedEvent

from zkop.client.bridge import ZkClient
from zkop.discovery import registry
from zkop.discovery.instances import Instance
from zkop.discovery.strategies import DownInstancePolicy, Picker, Strategy

T = TypeVar("T")


class ServiceCache:
    """Endpoints of one service, kept current by watches."""

    def __init__(self, client: ZkClient, root: str, namespace: str, app: str) -> None:
        self.client = client
        self.base = registry.endpoints_path(root, namespace, app)
        self.instances: dict[str, Instance] = {}
        self.changed = asyncio.Event()
        self.version = 0
        self._dirty: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._lost = False
        self._children_hop = client.hop(lambda _e: self._dirty.put_nowait(""))
        self._data_hops: dict[str, Any] = {}
        self.listeners: list[Any] = []

    def _hop(self, name: str) -> Any:
        hop = self._data_hops.get(name)
        if hop is None:

            def fire(_event: WatchedEvent) -> None:
                self._dirty.put_nowait(name)

            hop = self.client.hop(fire)
            self._data_hops[name] = hop
        return hop

    def _on_state(self, state: str) -> None:
        if state == "LOST":
            self._lost = True
        elif state == "CONNECTED" and self._lost:
            self._lost = False
            self._dirty.put_nowait("")

    async def start(self) -> None:
        self.client.add_state_listener(self._on_state)
        await self._refresh_all()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.client.remove_state_listener(self._on_state)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            first = await self._dirty.get()
            names = {first}
            while not self._dirty.empty():
                names.add(self._dirty.get_nowait())
            try:
                if "" in names:
                    await self._refresh_all()
                else:
                    for name in names:
                        await self._refresh_one(name)
            except Exception:
                await asyncio.sleep(0.2)
                self._dirty.put_nowait("")

    async def _refresh_all(self) -> None:
        try:
            names = await self.client.get_children(self.base, watch=self._children_hop)
        except NoNodeError:
            await self.client.exists(self.base, watch=self._children_hop)
            names = []
        fresh: dict[str, Instance] = {}
        reads = await asyncio.gather(*(self._read(n) for n in names))
        for name, inst in zip(names, reads, strict=True):
            if inst is not None:
                fresh[name] = inst
        self._publish(fresh)

    async def _read(self, name: str) -> Instance | None:
        try:
            raw, _ = await self.client.get(f"{self.base}/{name}", watch=self._hop(name))
        except NoNodeError:
            return None
        return registry.decode(raw)

    async def _refresh_one(self, name: str) -> None:
        inst = await self._read(name)
        fresh = dict(self.instances)
        if inst is None:
            fresh.pop(name, None)
        else:
            fresh[name] = inst
        self._publish(fresh)

    def _publish(self, fresh: dict[str, Instance]) -> None:
        if fresh != self.instances:
            self.instances = fresh
            self.version += 1
            self.changed.set()
            self.changed = asyncio.Event()
            for listener in list(self.listeners):
                listener(list(fresh.values()))

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[Instance]:
        """Wait until ``predicate(instances)`` holds."""
        async with asyncio.timeout(timeout):
            while not predicate(list(self.instances.values())):
                await self.changed.wait()
        return list(self.instances.values())


class ServiceProvider:
    """Picks instances of one service with a strategy and a down-instance policy."""

    def __init__(self, cache: ServiceCache, strategy: Strategy | str, down: DownInstancePolicy | None) -> None:
        self.cache = cache
        self.down = down or DownInstancePolicy()
        self.picker = Picker(strategy, list(cache.instances.values()), down_policy=self.down)
        cache.listeners.append(self.picker.update)

    def instances(self) -> list[Instance]:
        return list(self.cache.instances.values())

    def get_instance(self, key: str | None = None) -> Instance | None:
        """An instance to call now, or None when the service has no endpoint."""
        return self.picker.pick(key)

    async def wait_instance(self, key: str | None = None, timeout: float = 10.0) -> Instance:
        await self.cache.wait_for(bool, timeout)
        inst = self.picker.pick(key)
        if inst is None:
            raise LookupError("no endpoint")
        return inst

    @contextlib.contextmanager
    def call(self, key: str | None = None) -> Iterator[Instance | None]:
        """Acquire an instance for one call (tracked for least_connections and bounded loads)."""
        inst = self.picker.acquire(key)
        ok: bool | None = True
        try:
            yield inst
        except Exception:
            ok = False
            raise
        finally:
            if inst is not None:
                self.picker.release(inst, ok=ok)

    def note_error(self, inst: Instance) -> None:
        self.down.note_error(inst)

    def note_success(self, inst: Instance) -> None:
        self.down.note_success(inst)


class Registration:
    """A self-registered endpoint (ephemeral): gone when unregistered or the session ends."""

    def __init__(self, client: ZkClient, root: str, namespace: str, app: str, inst: Instance) -> None:
        self.client = client
        self.root = root
        self.namespace = namespace
        self.app = app
        self.instance = inst

    async def start(self) -> None:
        authed = bool(self.client.kazoo.auth_data)
        await registry.ensure_service_as_client(self.client, self.root, self.namespace, self.app, authed)
        path = f"{registry.endpoints_path(self.root, self.namespace, self.app)}/{self.instance.id}"
        await self.client.create(path, registry.encode(self.instance), acl=registry.creator_acl(authed), ephemeral=True)

    async def report_load(self, value: float) -> None:
        """The load this instance reports for the autoscaler (ephemeral as well)."""
        path = f"{registry.load_path(self.root, self.namespace, self.app)}/{self.instance.id}"
        raw = json.dumps({"value": float(value), "at": time.time()}).encode()
        try:
            await self.client.set(path, raw)
        except NoNodeError:
            authed = bool(self.client.kazoo.auth_data)
            await self.client.create(path, raw, acl=registry.creator_acl(authed), ephemeral=True)

    async def unregister(self) -> None:
        for base in (registry.endpoints_path, registry.load_path):
            with contextlib.suppress(NoNodeError):
                await self.client.delete(f"{base(self.root, self.namespace, self.app)}/{self.instance.id}")


class AsyncServiceDiscovery:
    """asyncio entry point: one ZooKeeper session shared by every provider."""

    def __init__(
        self,
        hosts: str,
        *,
        root: str = "/zkop",
        auth_data: Iterable[tuple[str, str]] = (),
        session_timeout: float = 10.0,
    ) -> None:
        self.root = root
        self.client = ZkClient(hosts, auth_data=auth_data, session_timeout=session_timeout)
        self.caches: dict[str, ServiceCache] = {}

    async def start(self, timeout: float = 15.0) -> None:
        await self.client.start(timeout)

    async def close(self) -> None:
        for cache in self.caches.values():
            await cache.stop()
        await self.client.stop()

    async def cache(self, service: str) -> ServiceCache:
        ns, app = registry.parse_service(service)
        key = f"{ns}/{app}"
        if key not in self.caches:
            cache = ServiceCache(self.client, self.root, ns, app)
            await cache.start()
            self.caches[key] = cache
        return self.caches[key]

    async def provider(
        self, service: str, strategy: Strategy | str = "round_robin", down: DownInstancePolicy | None = None
    ) -> ServiceProvider:
        return ServiceProvider(await self.cache(service), strategy, down)

    async def register(self, namespace: str, app: str, inst: Instance) -> Registration:
        reg = Registration(self.client, self.root, namespace, app, inst)
        await reg.start()
        return reg


class _LoopThread:
    """A private event loop in a daemon thread, for the blocking API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="zkop-discovery", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class SyncRegistration:
    def __init__(self, loop: _LoopThread, reg: Registration) -> None:
        self._loop = loop
        self._reg = reg
        self.instance = reg.instance

    def report_load(self, value: float) -> None:
        self._loop.run(self._reg.report_load(value))

    def unregister(self) -> None:
        self._loop.run(self._reg.unregister())


class SyncServiceProvider:
    def __init__(self, loop: _LoopThread, provider: ServiceProvider) -> None:
        self._loop = loop
        self._p = provider

    def get_instance(self, key: str | None = None) -> Instance | None:
        return self._loop.run(self._pick(key))

    async def _pick(self, key: str | None) -> Instance | None:
        return self._p.get_instance(key)

    def wait_instance(self, key: str | None = None, timeout: float = 10.0) -> Instance:
        return self._loop.run(self._p.wait_instance(key, timeout), timeout + 5)

    def instances(self) -> list[Instance]:
        return self._p.instances()

    def note_error(self, inst: Instance) -> None:
        self._p.note_error(inst)

    def note_success(self, inst: Instance) -> None:
        self._p.note_success(inst)

    @contextlib.contextmanager
    def call(self, key: str | None = None) -> Iterator[Instance | None]:
        with self._p.call(key) as inst:
            yield inst


class ServiceDiscovery:
    """The blocking API over the same cache (for scripts and threaded programs)."""

    def __init__(self, hosts: str, *, root: str = "/zkop", auth_data: Iterable[tuple[str, str]] = ()) -> None:
        self._loop = _LoopThread()
        self._async = AsyncServiceDiscovery(hosts, root=root, auth_data=list(auth_data))
        self._loop.run(self._async.start())

    def provider(
        self, service: str, strategy: Strategy | str = "round_robin", down: DownInstancePolicy | None = None
    ) -> SyncServiceProvider:
        return SyncServiceProvider(self._loop, self._loop.run(self._async.provider(service, strategy, down)))

    def register(self, namespace: str, app: str, inst: Instance) -> SyncRegistration:
        return SyncRegistration(self._loop, self._loop.run(self._async.register(namespace, app, inst)))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.run(self._async.close())
        self._loop.close()

    def __enter__(self) -> ServiceDiscovery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
