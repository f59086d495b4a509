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

from kazoo.exceptions import NoNodeError

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
        await self._ensure(base)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
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
        record = EventRecord(type_, reason, message[:2000], kind, namespace, name, 1, stamp, stamp, source)
        await self._commit([Op.create(f"{base}/e-", dumps(record.to_json()), acl=self.acl, sequence=True)])
        excess = len(children) + 1 - MAX_EVENTS_PER_OBJECT
        for old in children[: max(0, excess)]:
            with contextlib.suppress(NoNodeError):
                await self.client.delete(f"{base}/{old}")

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
