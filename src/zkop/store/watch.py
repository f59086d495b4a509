"""Watch streams: one-shot ZooKeeper watches kept armed over a kind, turned into a stream of
ADDED / MODIFIED / DELETED events that starts from a consistent list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import EventType, WatchedEvent

from zkop.api import Resource
from zkop.api.registry import KindInfo
from zkop.store.codec import decode
from zkop.store.errors import CorruptObject, NotFound
from zkop.store.znodes import Znodes

RELIST_BATCH = 256


@dataclass(frozen=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED", "SYNCED", "ERROR"]
    key: str = ""
    object: Resource | None = None
    error: str = ""


class Watcher:
    """Keeps one-shot ZooKeeper watches armed over a kind and turns them into events."""

    def __init__(
        self,
        store: Znodes,
        info: KindInfo,
        namespace: str | None,
        resume_from: Mapping[str, str] | None,
        relist_interval: float | None,
    ) -> None:
        self.store = store
        self.client = store.client
        self.info = info
        self.namespace = namespace
        self.relist_interval = relist_interval
        self.known: dict[str, tuple[Resource, tuple[int, int]]] = {}
        self.resume_from = dict(resume_from or {})
        self.dirty: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.closed = False
        self._hops: dict[str, Any] = {}
        self._lost = False

    def _hop(self, tag: str, arg: str) -> Any:
        key = f"{tag}:{arg}"
        hop = self._hops.get(key)
        if hop is None:

            def fire(event: WatchedEvent) -> None:
                if not self.closed and event.type != EventType.NONE:
                    if tag == "obj" and event.type == EventType.CHANGED and not event.path.endswith("/status"):
                        # Only the object znode changed: its status (still watched) need not be read.
                        self.dirty.put_nowait(("data", arg))
                    else:
                        self.dirty.put_nowait((tag, arg))

            hop = self.client.hop(fire)
            self._hops[key] = hop
        return hop

    def _on_state(self, state: str) -> None:
        if state == "LOST":
            self._lost = True
        elif state == "CONNECTED" and self._lost:
            # A new session has no watches: relist and re-arm everything.
            self._lost = False
            self.dirty.put_nowait(("all", ""))

    async def run(self) -> AsyncIterator[WatchEvent]:
        self.client.add_state_listener(self._on_state)
        try:
            await self.store._ensure(
                self.store.ns_path(self.info, self.namespace) if self.namespace else self.store.kind_path(self.info)
            )
            for event in await self._relist(initial=True):
                yield event
            yield WatchEvent("SYNCED")
            while True:
                try:
                    if self.relist_interval:
                        item = await asyncio.wait_for(self.dirty.get(), self.relist_interval)
                    else:
                        item = await self.dirty.get()
                except TimeoutError:
                    item = ("all", "")
                batch = {item}
                while not self.dirty.empty():
                    batch.add(self.dirty.get_nowait())
                if any(tag == "all" for tag, _ in batch):
                    events = await self._relist(initial=False)
                else:
                    events = []
                    for tag, arg in sorted(batch):
                        if tag == "kind":
                            events += await self._on_kind()
                        elif tag == "ns":
                            events += await self._on_namespace(arg)
                        elif tag == "obj":
                            events += await self._on_object(arg)
                        elif tag == "data" and ("obj", arg) not in batch:
                            events += await self._on_data(arg)
                for event in events:
                    yield event
        finally:
            self.closed = True
            self.client.remove_state_listener(self._on_state)

    async def _namespaces(self) -> list[str]:
        if self.namespace is not None:
            return [self.namespace]
        try:
            return await self.client.get_children(self.store.kind_path(self.info), watch=self._hop("kind", ""))
        except NoNodeError:
            await self.client.exists(self.store.kind_path(self.info), watch=self._hop("kind", ""))
            return []

    async def _names(self, ns: str) -> list[str]:
        path = self.store.ns_path(self.info, ns)
        try:
            return await self.client.get_children(path, watch=self._hop("ns", ns))
        except NoNodeError:
            await self.client.exists(path, watch=self._hop("ns", ns))
            return []

    async def _fetch(self, key: str) -> tuple[Resource, tuple[int, int]] | CorruptObject | None:
        ns, name = key.split("/", 1)
        try:
            obj, stat, status_stat = await self.store._read(self.info, ns, name, watch=self._hop("obj", key))
        except NotFound:
            return None
        except CorruptObject as exc:
            return exc
        return obj, (stat.mzxid, status_stat.mzxid if status_stat else 0)

    def _diff(self, key: str, fetched: tuple[Resource, tuple[int, int]] | CorruptObject | None) -> list[WatchEvent]:
        if isinstance(fetched, CorruptObject):
            return [WatchEvent("ERROR", key, None, str(fetched))]
        old = self.known.get(key)
        if fetched is None:
            if old is None:
                return []
            del self.known[key]
            return [WatchEvent("DELETED", key, old[0])]
        obj, versions = fetched
        if old is None:
            self.known[key] = fetched
            return [WatchEvent("ADDED", key, obj)]
        if versions > old[1]:
            self.known[key] = fetched
            return [WatchEvent("MODIFIED", key, obj)]
        return []

    async def _relist(self, *, initial: bool) -> list[WatchEvent]:
        namespaces = await self._namespaces()
        keys: list[str] = []
        for ns, names in zip(namespaces, await asyncio.gather(*(self._names(ns) for ns in namespaces)), strict=True):
            keys.extend(f"{ns}/{n}" for n in sorted(names))
        # In batches: a huge gather would queue every read ahead of everyone else's requests on
        # the session (a leader's lease confirmation among them) and hold the loop for seconds.
        fetched: list[tuple[Resource, tuple[int, int]] | CorruptObject | None] = []
        for start in range(0, len(keys), RELIST_BATCH):
            fetched += await asyncio.gather(*(self._fetch(k) for k in keys[start : start + RELIST_BATCH]))
        events: list[WatchEvent] = []
        if initial and self.resume_from:
            # Resume: report only what differs from what the consumer already has.
            for key, result in zip(keys, fetched, strict=True):
                if isinstance(result, tuple):
                    seen = self.resume_from.get(key)
                    self.known[key] = result
                    if seen is None:
                        events.append(WatchEvent("ADDED", key, result[0]))
                    elif seen != result[0].metadata.resource_version:
                        events.append(WatchEvent("MODIFIED", key, result[0]))
                elif isinstance(result, CorruptObject):
                    events.append(WatchEvent("ERROR", key, None, str(result)))
            for key in sorted(set(self.resume_from) - set(keys)):
                events.append(WatchEvent("DELETED", key, None))
            return events
        for key, result in zip(keys, fetched, strict=True):
            events += self._diff(key, result)
        for key in sorted(set(self.known) - set(keys)):
            events += self._diff(key, None)
        return events

    async def _on_kind(self) -> list[WatchEvent]:
        events: list[WatchEvent] = []
        namespaces = await self._namespaces()
        known_ns = {k.split("/", 1)[0] for k in self.known}
        for ns in namespaces:
            if ns not in known_ns:
                events += await self._on_namespace(ns)
        return events

    async def _on_namespace(self, ns: str) -> list[WatchEvent]:
        names = set(await self._names(ns))
        events: list[WatchEvent] = []
        present = {f"{ns}/{n}" for n in names}
        for key in sorted(present - set(self.known)):
            events += self._diff(key, await self._fetch(key))
        for key in sorted(k for k in self.known if k.split("/", 1)[0] == ns and k not in present):
            events += self._diff(key, None)
        return events

    async def _on_object(self, key: str) -> list[WatchEvent]:
        return self._diff(key, await self._fetch(key))

    async def _on_data(self, key: str) -> list[WatchEvent]:
        """The object znode changed, its status did not: one read, the known status kept."""
        old = self.known.get(key)
        if old is None:
            return await self._on_object(key)
        ns, name = key.split("/", 1)
        path = self.store.obj_path(self.info, ns, name)
        try:
            raw, stat = await self.client.get(path, watch=self._hop("obj", key))
        except NoNodeError:
            return self._diff(key, None)
        try:
            obj = decode(path, self.info, raw, stat.mzxid, None).model_copy(update={"status": old[0].status})
        except CorruptObject as exc:
            return self._diff(key, exc)
        return self._diff(key, (obj, (stat.mzxid, old[1][1])))


__all__ = ["RELIST_BATCH", "WatchEvent", "Watcher"]
