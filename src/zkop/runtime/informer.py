"""List + watch of one kind into a local cache, with a periodic resync.

The cache is what the controller's handlers see; reconcilers still read fresh state.
Resync re-delivers every cached object on a timer so a missed event is harmless, and
the watch relists on its own timer, so a lost watch only delays convergence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from zkop.api import Resource
from zkop.store import WatchEvent
from zkop.store.base import ResourceStore

log = logging.getLogger(__name__)

RETRY_MIN, RETRY_MAX = 0.5, 10.0  # seconds between attempts to list and watch again

# (event, old, new): event is ADDED | MODIFIED | DELETED | RESYNC
Handler = Callable[[str, Resource | None, Resource | None], None]


class Informer:
    def __init__(
        self,
        store: ResourceStore,
        kind: str,
        *,
        namespace: str | None = None,
        resync_period: float = 30.0,
        relist_period: float | None = 60.0,
    ) -> None:
        self.store = store
        self.kind = kind
        self.namespace = namespace
        self.resync_period = resync_period
        self.relist_period = relist_period
        self.cache: dict[str, Resource] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.errors: dict[str, str] = {}

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def _emit(self, event: str, old: Resource | None, new: Resource | None) -> None:
        for handler in self.handlers:
            try:
                handler(event, old, new)
            except Exception:  # a handler bug must not stop the informer
                log.exception("informer handler failed for %s", self.kind)

    def _apply(self, event: WatchEvent) -> None:
        if event.type == "SYNCED":
            self.synced.set()
            return
        if event.type == "ERROR":
            # A corrupt object: reported, skipped, never fatal.
            self.errors[event.key] = event.error
            log.warning("skipping corrupt %s %s: %s", self.kind, event.key, event.error)
            return
        self.errors.pop(event.key, None)
        old = self.cache.get(event.key)
        if event.type == "DELETED":
            self.cache.pop(event.key, None)
            self._emit("DELETED", old, event.object or old)
        elif event.object is not None:
            self.cache[event.key] = event.object
            self._emit("ADDED" if old is None else "MODIFIED", old, event.object)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            for obj in list(self.cache.values()):
                self._emit("RESYNC", obj, obj)

    async def run(self) -> None:
        """List and watch until cancelled. A failed list or watch (the API server still
        initialising a new kind's storage, a 429, a dropped connection) is retried with a
        back-off from the cache's versions: it only delays, it never ends the controller."""
        resync = asyncio.create_task(self._resync_loop())
        backoff = RETRY_MIN
        try:
            while True:
                try:
                    await self._watch()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self.synced.is_set():
                        backoff = RETRY_MIN  # it had listed: a fresh failure starts the back-off over
                    self.synced.clear()
                    log.warning("list/watch of %s failed (%s); again in %.1fs", self.kind, exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_MAX)
        finally:
            resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resync

    async def _watch(self) -> None:
        stream = self.store.watch(
            self.kind,
            self.namespace,
            resume_from={k: v.metadata.resource_version or "" for k, v in self.cache.items()} or None,
            relist_interval=self.relist_period,
        )
        try:
            async for event in stream:
                self._apply(event)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
