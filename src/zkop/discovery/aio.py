"""The asyncio entry point: :class:`AsyncServiceDiscovery`, one session for every cache and provider.

::

    async with AsyncServiceDiscovery("127.0.0.1:2181") as sd:
        provider = await sd.provider("default/counter", strategy="least_connections")
        inst = provider.get_instance()             # None while the service has no endpoint
        inst = await provider.aget_instance()      # waits (bounded) for one instead
        with provider.call(key="user-42") as inst: # counted in flight while the block runs
            ...                                    # an exception here counts as an error
        provider.note_error(inst)                  # the down-instance policy, by hand
        reg = await sd.register("default", "legacy", Instance("a", "127.0.0.1", 8080),
                                credentials=os.environ["ZKOP_REGISTRY_AUTH"])  # ephemeral

It shares one cache (:mod:`.cache`) per service between its providers (:mod:`.provider`)
and opens a session for each registration (:mod:`.registration`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from zkop.client.bridge import ZkClient
from zkop.discovery import registry
from zkop.discovery.cache import ServiceCache
from zkop.discovery.instances import Instance
from zkop.discovery.provider import ServiceProvider
from zkop.discovery.registration import REPLACE_WAIT, Registration
from zkop.discovery.strategies import DownInstancePolicy, Strategy

__all__ = ["AsyncServiceDiscovery"]


class AsyncServiceDiscovery:
    """asyncio entry point: one ZooKeeper session shared by every cache and provider.

    ``client``: use an existing (started) :class:`ZkClient` instead of opening a session;
    it is not stopped by :meth:`close`.
    """

    def __init__(
        self,
        hosts: str | None = None,
        *,
        root: str = "/zkop",
        auth_data: Iterable[tuple[str, str]] = (),
        session_timeout: float = 10.0,
        resync_interval: float | None = 60.0,
        client: ZkClient | None = None,
    ) -> None:
        if client is None and not hosts:
            raise ValueError("AsyncServiceDiscovery needs hosts (host:port,...) or a client")
        self.root = root
        self.auth_data = list(auth_data)
        self.session_timeout = session_timeout
        self.resync_interval = resync_interval
        self._own_client = client is None
        if client is None:
            self.hosts = hosts or ""
            self.client = ZkClient(self.hosts, auth_data=self.auth_data, session_timeout=session_timeout)
        else:
            self.hosts = hosts or client.hosts
            self.client = client
            self.auth_data = self.auth_data or sorted(client.kazoo.auth_data)
        self.caches: dict[str, ServiceCache] = {}
        self._starting: dict[str, asyncio.Task[ServiceCache]] = {}
        self.registrations: list[Registration] = []

    async def start(self, timeout: float = 15.0) -> None:
        if self._own_client:
            await self.client.start(timeout)

    async def close(self) -> None:
        for reg in list(self.registrations):
            with contextlib.suppress(Exception):
                await reg.unregister()
        for cache in list(self.caches.values()):
            await cache.stop()
        self.caches.clear()
        if self._own_client:
            await self.client.stop()

    async def __aenter__(self) -> AsyncServiceDiscovery:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def cache(self, service: str) -> ServiceCache:
        """The (shared) cache of ``"namespace/app"``, started on first use."""
        ns, app = registry.parse_service(service)
        key = f"{ns}/{app}"
        if key in self.caches:
            return self.caches[key]
        task = self._starting.get(key)
        if task is None:
            task = asyncio.ensure_future(self._start_cache(ns, app))
            self._starting[key] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._starting.pop(key, None)

    async def _start_cache(self, ns: str, app: str) -> ServiceCache:
        cache = ServiceCache(self.client, self.root, ns, app, resync_interval=self.resync_interval)
        await cache.start()
        self.caches[f"{ns}/{app}"] = cache
        return cache

    async def provider(
        self, service: str, strategy: Strategy | str = "round_robin", down: DownInstancePolicy | None = None
    ) -> ServiceProvider:
        """A provider of ``"namespace/app"`` with its own strategy (a name or an instance)
        and down-instance policy; providers of one service share its cache."""
        return ServiceProvider(await self.cache(service), strategy, down)

    async def register(
        self,
        namespace: str,
        app: str,
        instance: Instance,
        *,
        credentials: str | None = None,
        replace_wait: float = REPLACE_WAIT,
    ) -> Registration:
        """Register ``instance`` of a service (ephemeral; see :class:`Registration`).

        ``credentials``: the service's registry identity, ``"svc/<ns>/<app>:<password>"``
        (instances zkop runs find it in ``$ZKOP_REGISTRY_AUTH``; for a service zkop does not
        run, ``zkop registry grant NS/APP`` prints it). Without it, the ``auth_data`` this
        discovery client was made with is used. With neither, and for a service that is not
        in the registry, :class:`~zkop.discovery.registry.RegistryError` says so before
        anything is written.
        """
        registry.parse_service(f"{namespace}/{app}")  # validates the names
        if credentials is not None:
            try:
                registry.parse_credentials(credentials)
            except ValueError as exc:
                raise registry.RegistryError(str(exc)) from None
            auth = [("digest", credentials.strip())]
        else:
            auth = list(self.auth_data)
        if not auth:
            raise registry.no_identity(namespace, app, "registering")
        client = ZkClient(self.hosts, auth_data=auth, session_timeout=self.session_timeout)
        await client.start()
        reg = Registration(client, self.root, namespace, app, instance, replace_wait=replace_wait)
        try:
            await reg.start()
        except BaseException:
            await client.stop()
            raise
        self.registrations.append(reg)
        return reg
