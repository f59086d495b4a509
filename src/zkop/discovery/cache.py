"""The endpoints of one service, kept current by watches: :class:`ServiceCache`.

The cache is level-triggered. A child watch on ``endpoints`` says when members come or
go (only new names are read), a data watch per endpoint when one changes; after the
connection comes back (kazoo drops its watches on a disconnect) and every
``resync_interval`` seconds it lists and reads everything again, so a lost watch costs at
most that long. Endpoint data that cannot be read (NoAuth) or is not an endpoint is
skipped with a warning (see :attr:`ServiceCache.skipped`), never fatal. Reading needs no
credentials.

It runs on the client's event loop; the blocking API (:mod:`.sync`) runs it on a loop
thread of its own. Readers on other threads are safe: the cache swaps in a new dict of
instances rather than changing one in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.protocol.states import EventType, WatchedEvent

from zkop.client.bridge import WatchCallback, ZkClient
from zkop.discovery import registry
from zkop.discovery.instances import Instance
from zkop.errors import ZkopError

__all__ = ["ServiceCache"]

log = logging.getLogger("zkop.discovery.client")  # the discovery client's messages, whichever module

# Znode names cannot contain NUL, so these never clash with an instance id.
_RELIST = "\0relist"
_CHILDREN = "\0children"


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
