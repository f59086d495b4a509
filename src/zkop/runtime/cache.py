"""The store a reconcile sees: reads of the kinds its controller watches are served from the
informers' caches (controller-runtime's cached client), kept current by watch events and by the
reconcile's own writes; every write, and every other read, goes to the store.

A cached read may be a moment behind a write someone else made; the write's watch event then
queues the key again, so the reconcile that follows sees it (level-triggered). Writes still carry
their preconditions (resourceVersion, the term's fence), so a stale read can never overwrite a
newer object. ``get_fresh`` is never cached.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

from zkop.api import Resource, resolve_kind
from zkop.runtime.informer import Informer
from zkop.store.base import ResourceStore
from zkop.store.events import EventRecord
from zkop.store.selector import Selector
from zkop.store.watch import WatchEvent
from zkop.store.znodes import Fence


def _newer_or_same(new: Resource, old: Resource | None) -> bool:
    if old is None:
        return True
    a, b = new.metadata.resource_version or "", old.metadata.resource_version or ""
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True  # opaque versions (Kubernetes): the write just made is the newest known here


class CachedReads:
    def __init__(self, store: ResourceStore, informers: Mapping[str, Informer]) -> None:
        self.store = store
        self.informers = dict(informers)

    def _informer(self, kind: str) -> Informer | None:
        inf = self.informers.get(resolve_kind(kind).kind)
        return inf if inf is not None and inf.synced.is_set() else None

    def _remember(self, obj: Resource) -> Resource:
        inf = self.informers.get(obj.kind)
        if inf is not None:
            key = f"{obj.namespace}/{obj.name}"
            if _newer_or_same(obj, inf.cache.get(key)):
                inf.cache[key] = obj
        return obj

    # ---- reads ----------------------------------------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> Resource:
        inf = self._informer(kind)
        if inf is not None:
            cached = inf.cache.get(f"{namespace}/{name}")
            if cached is not None:
                return cached
        return await self.store.get(kind, namespace, name)  # not known to the watch: ask the store

    async def get_fresh(self, kind: str, namespace: str, name: str) -> Resource:
        return await self.store.get_fresh(kind, namespace, name)

    async def list(self, kind: str, namespace: str | None = None, selector: str | Selector | None = None) -> Any:
        return await self.store.list(kind, namespace, selector)

    # ---- writes ---------------------------------------------------------------------------

    async def create(self, obj: Resource) -> Resource:
        return self._remember(await self.store.create(obj))

    async def update(self, obj: Resource) -> Resource:
        return self._remember(await self.store.update(obj))

    async def update_status(self, obj: Resource) -> Resource:
        return self._remember(await self.store.update_status(obj))

    async def modify(
        self, kind: str, namespace: str, name: str, change: Callable[[Resource], Resource | None]
    ) -> Resource | None:
        changed = await self.store.modify(kind, namespace, name, change)
        return self._remember(changed) if changed is not None else None

    async def delete(self, kind: str, namespace: str, name: str) -> Literal["deleted", "terminating"]:
        return await self.store.delete(kind, namespace, name)

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        resume_from: Mapping[str, str] | None = None,
        relist_interval: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        return self.store.watch(kind, namespace, resume_from=resume_from, relist_interval=relist_interval)

    async def record_event(self, obj: Resource, type_: str, reason: str, message: str, *, source: str = "zkop") -> None:
        await self.store.record_event(obj, type_, reason, message, source=source)

    async def record_event_for(
        self,
        kind: str,
        plural: str,
        namespace: str,
        name: str,
        type_: str,
        reason: str,
        message: str,
        source: str = "zkop",
    ) -> None:
        await self.store.record_event_for(kind, plural, namespace, name, type_, reason, message, source)

    async def list_events(
        self, namespace: str | None = None, *, kind: str | None = None, name: str | None = None
    ) -> builtins.list[EventRecord]:
        return await self.store.list_events(namespace, kind=kind, name=name)

    def fenced(self, fence: Fence) -> ResourceStore:
        return CachedReads(self.store.fenced(fence), self.informers)

    def __getattr__(self, name: str) -> Any:
        # What is not part of the interface (the ZooKeeper store's paths, its client) as it is.
        return getattr(self.store, name)


__all__ = ["CachedReads"]
