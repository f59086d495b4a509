"""Service discovery clients: a watch-maintained cache of a service's endpoints.

asyncio::

    async with AsyncServiceDiscovery("127.0.0.1:2181") as sd:
        provider = await sd.provider("default/counter", strategy="least_connections")
        inst = provider.get_instance()             # None while the service has no endpoint
        inst = await provider.aget_instance()      # waits (bounded) for one instead
        with provider.call(key="user-42") as inst: # counted in flight while the block runs
            ...                                    # an exception here counts as an error
        provider.note_error(inst)                  # the down-instance policy, by hand

Plain threads (the same cache, run by a private event loop thread)::

    with ServiceDiscovery("127.0.0.1:2181") as sd:
        provider = sd.provider("default/counter")
        inst = provider.get_instance()
        reg = sd.register("default", "legacy", Instance("a", "127.0.0.1", 8080),
                          credentials=os.environ["ZKOP_REGISTRY_AUTH"])  # ephemeral
        reg.report_load(0.7)
        reg.unregister()

The cache logic lives once, in :class:`ServiceCache` (asyncio); the blocking API runs it on
its own event loop thread, and picking (:class:`ServiceProvider`) is thread-safe: the
strategy and the down-instance policy are only touched under the picker's lock, and the
cache swaps in a new dict of instances rather than changing one in place.

The cache is level-triggered. A child watch on ``endpoints`` says when members come or
go (only new names are read), a data watch per endpoint when one changes; after the
connection comes back (kazoo drops its watches on a disconnect) and every
``resync_interval`` seconds it lists and reads everything again, so a lost watch costs at
most that long. Endpoint data that cannot be read (NoAuth) or is not an endpoint is
skipped with a warning (see :attr:`ServiceCache.skipped`), never fatal. Reading needs no
credentials.

Self-registration (:meth:`AsyncServiceDiscovery.register`) needs the service's registry
identity (``svc/<ns>/<app>:<password>``: ``ZKOP_REGISTRY_AUTH`` for instances zkop runs,
``zkop registry grant NS/APP`` for other services) and a service already in the registry;
without either it is refused before anything is written (see :mod:`.registry` for the
ACLs). It opens a ZooKeeper session for each registration, authenticated with that
identity only, and creates EPHEMERAL znodes in it, so they disappear when the process dies
or its session expires. ``unregister()`` ends that session. A registration whose session
expired is made again (and its last load report too) as soon as a new session is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from kazoo.exceptions import BadVersionError, NoAuthError, NodeExistsError, NoNodeError
from kazoo.protocol.states import EventType, WatchedEvent

from zkop.client.bridge import WatchCallback, ZkClient
from zkop.discovery import registry
from zkop.discovery.instances import Instance
from zkop.discovery.strategies import DownInstancePolicy, Picker, Strategy
from zkop.errors import ZkopError

__all__ = [
    "AsyncServiceDiscovery",
    "NoInstanceError",
    "Registration",
    "ServiceCache",
    "ServiceDiscovery",
    "ServiceProvider",
    "SyncRegistration",
    "SyncServiceProvider",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Znode names cannot contain NUL, so these never clash with an instance id.
_RELIST = "\0relist"
_CHILDREN = "\0children"


class NoInstanceError(ZkopError, LookupError):
    """The service has no endpoint to call."""


# ---- the cache --------------------------------------------------------------------------


class ServiceCache:
    """The endpoints of one service, kept current by watches (run on the client's event loop)."""

    def __init__(
        self, client: ZkClient, root: str, namespace: str, app: str, *, resync_interval: float | None = 60.0
    ) -> None:
        self.client = client
        self.service = f"{namespace}/{app}"
        self.base = registry.endpoints_path(root, namespace, app)
        self.instances: dict[str, Instance] = {}
        """The endpoints by znode name. Replaced, never changed in place: safe to read from any thread."""
        self.skipped: dict[str, str] = {}
        """Znodes under ``endpoints`` that are not usable endpoints, with the reason."""
        self.version = 0
        """Bumped on every change of :attr:`instances`."""
        self.changed = asyncio.Event()
        self.listeners: list[Callable[[list[Instance]], None]] = []
        """Called (on the event loop) with the new endpoints after each change."""
        self.resync_interval = resync_interval
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._seen: set[str] = set()
        self._watches: dict[str, WatchCallback] = {}
        self._task: asyncio.Task[None] | None = None

    def endpoints(self) -> list[Instance]:
        """The endpoints now, sorted by id."""
        current = self.instances
        return [current[name] for name in sorted(current)]

    # -- lifecycle --

    async def start(self) -> None:
        """Read the endpoints once (so a provider has them at once), then follow changes."""
        self.client.add_state_listener(self._on_state)
        try:
            await self._list(full=True)
        except NoAuthError:
            self.client.remove_state_listener(self._on_state)
            raise ZkopError(
                f"cannot list {self.base}: not readable (NoAuth)",
                hint="the services subtree must be world-readable; was it created by zkop's registry?",
            ) from None
        except BaseException:
            self.client.remove_state_listener(self._on_state)
            raise
        self._task = asyncio.create_task(self._run(), name=f"discovery-cache {self.service}")

    async def stop(self) -> None:
        self.client.remove_state_listener(self._on_state)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_for(self, predicate: Callable[[list[Instance]], object], timeout: float = 10.0) -> list[Instance]:
        """Wait until ``predicate(endpoints)`` holds; ``TimeoutError`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self.endpoints()):
                    await self.changed.wait()
        except TimeoutError:
            now = ", ".join(f"{i.id}={i.address}" for i in self.endpoints()) or "none"
            raise TimeoutError(f"{self.service}: condition not met within {timeout:g}s; endpoints: {now}") from None
        return self.endpoints()

    # -- events --

    def _mark(self, what: str) -> None:
        self._pending.add(what)
        self._wake.set()

    def _watch(self, name: str) -> WatchCallback:
        watch = self._watches.get(name)
        if watch is None:

            def fire(event: WatchedEvent) -> None:
                # A NONE event is kazoo dropping its watches on a disconnect; the relist
                # on the next CONNECTED arms them again.
                if event.type != EventType.NONE:
                    self._mark(name)

            watch = self.client.hop(fire)
            self._watches[name] = watch
        return watch

    def _on_state(self, state: str) -> None:
        if state == "CONNECTED":
            self._mark(_RELIST)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with asyncio.timeout(self.resync_interval):
                    await self._wake.wait()
            except TimeoutError:
                self._pending.add(_RELIST)
            self._wake.clear()
            pending, self._pending = self._pending, set()
            try:
                await self._apply(pending)
            except Exception as exc:
                level = logging.WARNING if self.client.connected else logging.DEBUG
                log.log(level, "%s: refreshing endpoints failed (%s); retrying", self.service, type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._mark(_RELIST)
            else:
                backoff = 0.1

    async def _apply(self, pending: set[str]) -> None:
        if _RELIST in pending:
            await self._list(full=True)
            return
        if _CHILDREN in pending:
            pending.discard(_CHILDREN)
            await self._list(full=False)
        names = [name for name in pending if name in self._seen]
        if not names:
            return
        results = await asyncio.gather(*map(self._read, names))
        fresh, skipped, seen = dict(self.instances), dict(self.skipped), set(self._seen)
        for name, (inst, why, present) in zip(names, results, strict=True):
            fresh.pop(name, None)
            skipped.pop(name, None)
            if not present:
                seen.discard(name)
                self._watches.pop(name, None)
            elif inst is not None:
                fresh[name] = inst
            elif why is not None:
                skipped[name] = why
        self._seen = seen
        self._publish(fresh, skipped)

    # -- reads --

    async def _list(self, *, full: bool) -> None:
        watch = self._watch(_CHILDREN)
        try:
            names = set(await self.client.get_children(self.base, watch=watch))
        except NoNodeError:
            # No endpoints folder yet: an exists watch says when it appears.
            if await self.client.exists(self.base, watch=watch) is not None:
                self._mark(_CHILDREN)
            names = set()
        to_read = sorted(names if full else names - self._seen)
        results = await asyncio.gather(*map(self._read, to_read))
        keep = set() if full else names
        fresh = {n: i for n, i in self.instances.items() if n in keep}
        skipped = {n: why for n, why in self.skipped.items() if n in keep}
        for name, (inst, why, present) in zip(to_read, results, strict=True):
            if not present:
                names.discard(name)
            elif inst is not None:
                fresh[name] = inst
            elif why is not None:
                skipped[name] = why
        self._seen = names
        for gone in set(self._watches) - names - {_CHILDREN}:
            del self._watches[gone]
        self._publish(fresh, skipped)

    async def _read(self, name: str) -> tuple[Instance | None, str | None, bool]:
        """(endpoint, why it is skipped, whether the znode exists)."""
        path = f"{self.base}/{name}"
        try:
            raw, _ = await self.client.get(path, watch=self._watch(name))
        except NoNodeError:
            return None, None, False
        except NoAuthError:
            # exists() needs no rights: its watch tells us when the znode changes or goes.
            if await self.client.exists(path, watch=self._watch(name)) is None:
                return None, None, False
            return None, "not readable (NoAuth): an endpoint's ACL must grant world READ", True
        inst = registry.decode(raw, name)
        if inst is None:
            return None, "not an endpoint: expected JSON with id (= the znode's name), host and port", True
        return inst, None, True

    def _publish(self, fresh: dict[str, Instance], skipped: dict[str, str]) -> None:
        for name, why in skipped.items():
            if self.skipped.get(name) != why:
                log.warning("%s: skipping %s/%s: %s", self.service, self.base, name, why)
        self.skipped = skipped
        if fresh == self.instances:
            return
        self.instances = fresh
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()
        current = self.endpoints()
        for listener in list(self.listeners):
            try:
                listener(current)
            except Exception:
                log.exception("%s: an endpoint listener failed", self.service)


# ---- picking ----------------------------------------------------------------------------


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

    wait_instance = aget_instance  # the older name

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


# ---- self-registration -----------------------------------------------------------------


class Registration:
    """A self-registered endpoint: EPHEMERAL znodes in a session of its own.

    Gone when :meth:`unregister` ends that session or the process dies; made again
    after the session expires and a new one is up.
    """

    def __init__(
        self, client: ZkClient, root: str, namespace: str, app: str, instance: Instance, *, replace_wait: float = 30.0
    ) -> None:
        registry.parse_service(f"{namespace}/{app}")  # validates the names
        self.client = client
        self.root = root
        self.namespace = namespace
        self.app = app
        self.instance = instance
        self.path = f"{registry.endpoints_path(root, namespace, app)}/{instance.id}"
        self.replace_wait = replace_wait
        self.last_load: float | None = None
        self.closed = False
        self._repair: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.client.kazoo.auth_data:
            raise registry.no_identity(self.namespace, self.app, "registering")
        await self._create()
        self.client.add_state_listener(self._on_state)

    async def _create(self) -> None:
        raw = registry.encode(self.instance)
        waited = False
        for _ in range(5):
            try:
                await self.client.create(self.path, raw, acl=registry.creator_acl(), ephemeral=True)
                return
            except NoNodeError:
                # Only the operator makes a service's folders.
                raise registry.not_in_registry(self.namespace, self.app) from None
            except NoAuthError:
                raise registry.refused(self.client, self.namespace, self.app, "registering") from None
            except NodeExistsError:
                pass
            try:
                _, stat = await self.client.get(self.path)
            except NoNodeError:
                continue
            if stat.ephemeralOwner == self.client.session_id:
                await self.client.set(self.path, raw)
                return
            if stat.ephemeralOwner == 0:
                raise ZkopError(
                    f"{self.namespace}/{self.app} instance {self.instance.id!r} is an endpoint the operator manages",
                    hint="self-registered instances need ids of their own",
                )
            # Another session's (perhaps this instance before a restart): replace it (the
            # service's identity may delete in its folder), else wait for that session to end.
            try:
                await self.client.delete(self.path, stat.version)
                continue
            except (NoNodeError, BadVersionError):
                continue
            except NoAuthError:
                pass
            if waited:
                break
            waited = True
            await self._wait_gone()
        raise ZkopError(
            f"{self.namespace}/{self.app} instance {self.instance.id!r} is registered by another live session",
            hint="instance ids must be unique within a service; the old one goes when its session ends",
        )

    async def _wait_gone(self) -> None:
        """Wait (at most ``replace_wait`` seconds) for the znode at our path to go."""
        gone = asyncio.Event()

        def fire(_event: WatchedEvent) -> None:
            gone.set()

        if await self.client.exists(self.path, watch=self.client.hop(fire)) is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.replace_wait):
                    await gone.wait()

    def _on_state(self, state: str) -> None:
        if state == "CONNECTED" and not self.closed and (self._repair is None or self._repair.done()):
            self._repair = asyncio.create_task(self._ensure())

    async def _ensure(self) -> None:
        """After a reconnect: the znodes are still ours, or (session expired) made again."""
        try:
            stat = await self.client.exists(self.path)
            if self.closed:
                return
            if stat is None or stat.ephemeralOwner != self.client.session_id:
                log.info("re-registering %s after a session loss", self.path)
                await self._create()
                if self.last_load is not None:
                    await self.report_load(self.last_load)
        except Exception as exc:
            log.warning("re-registering %s failed (%s); trying again on the next reconnect", self.path, exc)

    async def report_load(self, value: float) -> None:
        """Report this instance's load for the autoscaler (an ephemeral znode as well)."""
        await registry.report_load(self.client, self.root, self.namespace, self.app, self.instance.id, value)
        self.last_load = float(value)

    async def unregister(self) -> None:
        """Remove the endpoint and load report now: ends the registration's session."""
        if self.closed:
            return
        self.closed = True
        self.client.remove_state_listener(self._on_state)
        if self._repair is not None:
            self._repair.cancel()
            with contextlib.suppress(BaseException):
                await self._repair
        # Closing the session removes its ephemeral znodes (the endpoint and the load report)
        # before ZooKeeper confirms the close; no delete rights needed.
        await self.client.stop()

    async def __aenter__(self) -> Registration:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.unregister()


# ---- entry points -----------------------------------------------------------------------


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
        replace_wait: float = 30.0,
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
        self,
        namespace: str,
        app: str,
        instance: Instance,
        *,
        credentials: str | None = None,
        replace_wait: float = 30.0,
    ) -> SyncRegistration:
        """Register ``instance`` with the service's identity (see :meth:`AsyncServiceDiscovery.register`)."""
        return SyncRegistration(
            self._loop,
            self._loop.run(
                self.aio.register(namespace, app, instance, credentials=credentials, replace_wait=replace_wait),
                replace_wait + 30,
            ),
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
