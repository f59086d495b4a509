"""Events: what happened to an object, kept under ``events/<namespace>/<plural>.<name>``,
at most :data:`MAX_EVENTS_PER_OBJECT` per object, the newest kept; a repeat of the newest
event bumps its count instead of adding one."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError

from zkop.api import Resource, resolve_kind
from zkop.client.bridge import Op, TransactionFailed
from zkop.store.codec import dumps
from zkop.store.znodes import Znodes

MAX_EVENTS_PER_OBJECT = 50


@dataclass(frozen=True)
class EventRecord:
    type: str  # Normal | Warning
    reason: str
    message: str
    kind: str
    namespace: str
    name: str
    count: int
    first_timestamp: str
    last_timestamp: str
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "involvedObject": {"kind": self.kind, "namespace": self.namespace, "name": self.name},
            "count": self.count,
            "firstTimestamp": self.first_timestamp,
            "lastTimestamp": self.last_timestamp,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EventRecord:
        inv = data.get("involvedObject", {})
        return cls(
            type=str(data.get("type", "Normal")),
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            kind=str(inv.get("kind", "")),
            namespace=str(inv.get("namespace", "")),
            name=str(inv.get("name", "")),
            count=int(data.get("count", 1)),
            first_timestamp=str(data.get("firstTimestamp", "")),
            last_timestamp=str(data.get("lastTimestamp", "")),
            source=str(data.get("source", "")),
        )


class Events(Znodes):
    """The events of a store's objects (and of things that are not stored objects)."""

    async def record_event(self, obj: Resource, type_: str, reason: str, message: str, *, source: str = "zkop") -> None:
        """Record an event about ``obj``; a repeat of the newest one bumps its count."""
        info = resolve_kind(obj.kind)
        await self.record_event_for(info.kind, info.plural, obj.namespace, obj.name, type_, reason, message, source)

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
        """Record an event about something that is not a stored object (the control plane)."""
        base = self.events_path(namespace, plural, name)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if await self._record_known(base, type_, reason, message, stamp, kind, namespace, name, source):
            return
        record = EventRecord(type_, reason, message[:2000], kind, namespace, name, 1, stamp, stamp, source)
        if base not in self._newest_events:
            # The first event this store records about the object: one write, no reads (like a
            # Kubernetes event recorder, a repeat is merged only with what this writer wrote).
            await self._add_first(base, record)
            return
        children = sorted(await self._children(base))
        if children:
            newest = f"{base}/{children[-1]}"
            try:
                raw, stat = await self.client.get(newest)
                prev = EventRecord.from_json(json.loads(raw))
                if (prev.type, prev.reason, prev.message) == (type_, reason, message):
                    bumped = EventRecord(**{**prev.__dict__, "count": prev.count + 1, "last_timestamp": stamp})
                    await self._commit([Op.set(newest, dumps(bumped.to_json()), stat.version)])
                    return
            except (NoNodeError, ValueError, TransactionFailed):
                pass
        created = await self._commit([Op.create(f"{base}/e-", dumps(record.to_json()), acl=self.acl, sequence=True)])
        kept = await self._trim(base, [*children, str(created[0]).rsplit("/", 1)[1]])
        self._newest_events[base] = (str(created[0]), record, 0, kept)

    async def _add_first(self, base: str, record: EventRecord) -> None:
        """Add ``record`` under ``base`` (made with it when missing). The sequence number bounds
        how many events the object can have (the folder's child version counts every add and
        removal), so the list is read to trim it only when that bound passes the limit."""
        event = Op.create(f"{base}/e-", dumps(record.to_json()), acl=self.acl, sequence=True)
        try:
            # Most objects already have a folder of events (from earlier terms or writers).
            created = str((await self._commit([event]))[0])
        except TransactionFailed as exc:
            if not isinstance(exc.error, NoNodeError):
                raise
            created = await self._add_folder(base, event)
        seq = int(created.rsplit("-", 1)[1])
        kept = seq + 1
        if kept > MAX_EVENTS_PER_OBJECT:
            kept = await self._trim(base, sorted(await self._children(base)))
        self._newest_events[base] = (created, record, 0, kept)

    async def _add_folder(self, base: str, event: Op) -> str:
        """Make the object's folder of events with ``event`` in it; the path of the event."""
        parent = base.rsplit("/", 1)[0]
        for _ in range(2):
            try:
                return str((await self._commit([Op.create(base, b"", acl=self.acl), event]))[1])
            except TransactionFailed as exc:
                if isinstance(exc.error, NodeExistsError):  # made meanwhile by another writer
                    return str((await self._commit([event]))[0])
                if not isinstance(exc.error, NoNodeError):
                    raise
                self._ensured.discard(parent)  # the namespace's folder is missing: make it
                await self._ensure(parent)
        raise RuntimeError(f"cannot make {base}")  # the namespace folder vanished twice

    async def _trim(self, base: str, children: list[str]) -> int:
        """Remove the oldest of ``children`` beyond the limit; how many are kept."""
        children = sorted(children)
        for old in children[: max(0, len(children) - MAX_EVENTS_PER_OBJECT)]:
            with contextlib.suppress(NoNodeError):
                await self.client.delete(f"{base}/{old}")
        return min(len(children), MAX_EVENTS_PER_OBJECT)

    async def _record_known(
        self,
        base: str,
        type_: str,
        reason: str,
        message: str,
        stamp: str,
        kind: str,
        namespace: str,
        name: str,
        source: str,
    ) -> bool:
        """One write instead of a listing, when this store wrote the newest event of ``base``
        itself: bump it (compare-and-set: another writer makes this fall back) or add one, while
        the object has room. False: the full path (list, bound) must run."""
        known = self._newest_events.get(base)
        if known is None:
            return False
        path, prev, version, count = known
        try:
            if (prev.type, prev.reason, prev.message) == (type_, reason, message):
                bumped = EventRecord(**{**prev.__dict__, "count": prev.count + 1, "last_timestamp": stamp})
                written = await self._commit([Op.set(path, dumps(bumped.to_json()), version)])
                self._newest_events[base] = (path, bumped, written[0].version, count)
                return True
            if count >= MAX_EVENTS_PER_OBJECT:
                return False  # the list must be trimmed
            record = EventRecord(type_, reason, message[:2000], kind, namespace, name, 1, stamp, stamp, source)
            created = await self._commit(
                [Op.create(f"{base}/e-", dumps(record.to_json()), acl=self.acl, sequence=True)]
            )
        except TransactionFailed:
            return False  # another writer came between: the full path reads and replaces the entry
        self._newest_events[base] = (str(created[0]), record, 0, count + 1)
        return True

    async def list_events(
        self, namespace: str | None = None, *, kind: str | None = None, name: str | None = None
    ) -> list[EventRecord]:
        """Events in a namespace (or all), of one object when ``kind`` and ``name`` are given;
        oldest first. Unreadable ones are skipped."""
        base = f"{self.root}/events"
        namespaces = [namespace] if namespace else sorted(await self._children(base))
        out: list[EventRecord] = []
        for ns in namespaces:
            groups = await self._children(f"{base}/{ns}")
            if kind is not None and name is not None:
                wanted = f"{resolve_kind(kind).plural}.{name}"
                groups = [g for g in groups if g == wanted]
            for group in groups:
                path = f"{base}/{ns}/{group}"
                names = sorted(await self._children(path))
                reads = await asyncio.gather(*(self.client.get(f"{path}/{n}") for n in names), return_exceptions=True)
                for read in reads:
                    if isinstance(read, BaseException):
                        continue
                    try:
                        out.append(EventRecord.from_json(json.loads(read[0])))
                    except (ValueError, TypeError, AttributeError):
                        continue
        out.sort(key=lambda e: e.last_timestamp)
        return out


__all__ = ["MAX_EVENTS_PER_OBJECT", "EventRecord", "Events"]
