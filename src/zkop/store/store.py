"""Resources in ZooKeeper: CRUD with optimistic concurrency, a status subresource,
finalizers, watch streams and events.

Layout under the root (default ``/zkop``)::

    resources/<plural>/<namespace>/<name>          apiVersion, kind, metadata, spec (JSON)
    resources/<plural>/<namespace>/<name>/status   status (JSON), written on its own
    events/<namespace>/<plural>.<name>/e-<seq>     bounded per object, newest kept

``metadata.resourceVersion`` is the object znode's ``mzxid``: ZooKeeper's own, globally
ordered version. An update names the version it read; the store turns that into a
compare-and-set on the znode version, so concurrent writers cannot overwrite each other.
Every write is one ZooKeeper transaction, and callers may add check operations
(``fence``) that make it fail atomically when the caller's leadership is gone.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.protocol.states import EventType, WatchedEvent, ZnodeStat

from zkop.api import (
    Problem,
    Resource,
    ResourceValidationError,
    check_update,
    parse_object,
    resolve_kind,
    to_dict,
)
from zkop.api.registry import KindInfo
from zkop.client.bridge import Op, TransactionFailed, ZkClient
from zkop.store.errors import AlreadyExists, Conflict, CorruptObject, Fenced, NotFound, TooLarge
from zkop.store.modify import modify
from zkop.store.selector import Selector, parse_selector

# Well under ZooKeeper's 1 MB jute.maxbuffer, leaving room for the rest of a transaction.
MAX_OBJECT_BYTES = 256 * 1024
MAX_EVENTS_PER_OBJECT = 50
RELIST_BATCH = 256


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Fence:
    """Extra check operations that every write includes (the runtime's leadership epoch)."""

    ops: tuple[Op, ...] = ()


@dataclass(frozen=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED", "SYNCED", "ERROR"]
    key: str = ""
    object: Resource | None = None
    error: str = ""


@dataclass
class ListResult:
    items: list[Resource] = field(default_factory=list)
    corrupt: list[CorruptObject] = field(default_factory=list)


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


class Store:
    def __init__(
        self,
        client: ZkClient,
        *,
        root: str = "/zkop",
        acl: Sequence[Any] | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.client = client
        self.root = root.rstrip("/")
        self.acl = list(acl) if acl else None
        self.fence = fence or Fence()
        self._ensured: set[str] = set()

    def fenced(self, fence: Fence) -> Store:
        """The same store whose every write also checks ``fence``."""
        store = Store(self.client, root=self.root, acl=self.acl, fence=fence)
        store._ensured = self._ensured
        return store

    # ---- paths -------------------------------------------------------------------

    def kind_path(self, info: KindInfo) -> str:
        return f"{self.root}/resources/{info.plural}"

    def ns_path(self, info: KindInfo, namespace: str) -> str:
        return f"{self.kind_path(info)}/{namespace}"

    def obj_path(self, info: KindInfo, namespace: str, name: str) -> str:
        return f"{self.ns_path(info, namespace)}/{name}"

    def events_path(self, namespace: str, info: KindInfo, name: str) -> str:
        return f"{self.root}/events/{namespace}/{info.plural}.{name}"

    async def _ensure(self, path: str) -> None:
        if path in self._ensured:
            return
        await self.client.ensure_path(path, acl=self.acl)
        self._ensured.add(path)

    async def _commit(self, ops: Sequence[Op]) -> list[Any]:
        fence_ops = list(self.fence.ops)
        try:
            results = await self.client.commit([*fence_ops, *ops])
        except TransactionFailed as exc:
            if exc.failed_op is not None and exc.failed_op in fence_ops:
                raise Fenced(
                    f"write refused: leadership check on {exc.failed_op.path} failed",
                    hint="this replica is no longer the leader",
                ) from None
            raise
        return results[len(fence_ops) :]

    # ---- decoding ----------------------------------------------------------------

    def _decode(self, path: str, info: KindInfo, raw: bytes, stat: ZnodeStat, status_raw: bytes | None) -> Resource:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptObject(path, f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise CorruptObject(path, "not a JSON object")
        if data.get("kind") != info.kind:
            raise CorruptObject(path, f"kind is {data.get('kind')!r}, expected {info.kind}")
        if status_raw:
            try:
                data["status"] = json.loads(status_raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise CorruptObject(path + "/status", f"not valid JSON ({exc})") from None
        meta = data.setdefault("metadata", {})
        if isinstance(meta, dict):
            meta["resourceVersion"] = str(stat.mzxid)
        try:
            return parse_object(data, source=path)
        except ResourceValidationError as exc:
            raise CorruptObject(path, str(exc)) from None

    def _encode(self, obj: Resource) -> bytes:
        data = to_dict(obj)
        data.pop("status", None)
        data.get("metadata", {}).pop("resourceVersion", None)
        raw = _dumps(data)
        if len(raw) > MAX_OBJECT_BYTES:
            raise TooLarge(
                f"{obj.kind} {obj.key} is {len(raw)} bytes; the store takes at most {MAX_OBJECT_BYTES}",
                hint="move bulky data out of the spec",
            )
        return raw

    def _encode_status(self, obj: Resource) -> bytes:
        data = to_dict(obj).get("status") or {}
        raw = _dumps(data)
        if len(raw) > MAX_OBJECT_BYTES:
            raise TooLarge(f"status of {obj.kind} {obj.key} is {len(raw)} bytes; at most {MAX_OBJECT_BYTES}")
        return raw

    async def _read(
        self, info: KindInfo, namespace: str, name: str, *, watch: Any = None
    ) -> tuple[Resource, ZnodeStat, ZnodeStat | None]:
        path = self.obj_path(info, namespace, name)
        obj_task = asyncio.ensure_future(self.client.get(path, watch=watch))
        status_task = asyncio.ensure_future(self.client.get(path + "/status", watch=watch))
        try:
            raw, stat = await obj_task
        except BaseException as exc:
            # Never leave the status read behind unobserved, whatever failed.
            status_task.cancel()
            await asyncio.gather(status_task, return_exceptions=True)
            if isinstance(exc, NoNodeError):
                raise NotFound(f"{info.kind.lower()} {namespace}/{name} not found") from None
            raise
        try:
            status_raw, status_stat = await status_task
        except NoNodeError:
            status_raw, status_stat = None, None
            if watch is not None:
                await self.client.exists(path + "/status", watch=watch)
        return self._decode(path, info, raw, stat, status_raw), stat, status_stat

    # ---- CRUD --------------------------------------------------------------------

    async def create(self, obj: Resource) -> Resource:
        info = resolve_kind(obj.kind)
        if obj.metadata.deletion_timestamp is not None:
            raise ResourceValidationError([Problem("metadata.deletionTimestamp", "must not be set on create")])
        meta = obj.metadata.model_copy(
            update={
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creation_timestamp": now(),
                "resource_version": None,
            }
        )
        new = obj.model_copy(update={"metadata": meta})
        path = self.obj_path(info, new.namespace, new.name)
        raw = self._encode(new)
        status = self._encode_status(new)
        await self._ensure(self.ns_path(info, new.namespace))
        try:
            await self._commit([Op.create(path, raw, acl=self.acl), Op.create(path + "/status", status, acl=self.acl)])
        except TransactionFailed as exc:
            if isinstance(exc.error, NodeExistsError):
                raise AlreadyExists(
                    f"{info.kind.lower()} {new.key} already exists", hint="use `zkop apply` to change it"
                ) from None
            if isinstance(exc.error, NoNodeError):
                self._ensured.discard(self.ns_path(info, new.namespace))
            raise
        return await self.get(info.kind, new.namespace, new.name)

    async def get(self, kind: str, namespace: str, name: str) -> Resource:
        info = resolve_kind(kind)
        obj, _, _ = await self._read(info, namespace, name)
        return obj

    async def list(self, kind: str, namespace: str | None = None, selector: str | Selector | None = None) -> ListResult:
        """Objects of a kind (in one namespace or all); corrupt znodes are reported, not raised."""
        info = resolve_kind(kind)
        sel = parse_selector(selector) if isinstance(selector, str) else selector
        if namespace is not None:
            namespaces = [namespace]
        else:
            try:
                namespaces = sorted(await self.client.get_children(self.kind_path(info)))
            except NoNodeError:
                namespaces = []
        keys: builtins.list[tuple[str, str]] = []
        for ns, names in zip(
            namespaces,
            await asyncio.gather(*(self._children(self.ns_path(info, ns)) for ns in namespaces)),
            strict=True,
        ):
            keys.extend((ns, n) for n in sorted(names))
        result = ListResult()
        reads = await asyncio.gather(*(self._read(info, ns, n) for ns, n in keys), return_exceptions=True)
        for read in reads:
            if isinstance(read, CorruptObject):
                result.corrupt.append(read)
            elif isinstance(read, NotFound):
                continue  # deleted while listing
            elif isinstance(read, BaseException):
                raise read
            else:
                obj = read[0]
                if sel is None or sel.matches(obj.metadata.labels):
                    result.items.append(obj)
        return result

    async def _children(self, path: str) -> builtins.list[str]:
        try:
            return await self.client.get_children(path)
        except NoNodeError:
            return []

    async def update(self, obj: Resource) -> Resource:
        """Replace metadata (labels, annotations, finalizers) and spec, if unchanged since read.

        ``metadata.resourceVersion`` must be the version that was read. The status is not
        touched (see :meth:`update_status`). Removing the last finalizer of an object being
        deleted removes it.
        """
        info = resolve_kind(obj.kind)
        if not obj.metadata.resource_version:
            raise Conflict(
                f"{info.kind.lower()} {obj.key}: update needs metadata.resourceVersion",
                hint="read the object first and send back its resourceVersion",
            )
        current, stat, _ = await self._read(info, obj.namespace, obj.name)
        if str(stat.mzxid) != obj.metadata.resource_version:
            raise Conflict(
                f"{info.kind.lower()} {obj.key} was changed by someone else "
                f"(resourceVersion {obj.metadata.resource_version} is stale, now {stat.mzxid})",
                hint="read it again and retry",
            )
        check_update(current, obj)
        spec_changed = to_dict(current).get("spec") != to_dict(obj).get("spec")
        meta = obj.metadata.model_copy(
            update={
                "uid": current.metadata.uid,
                "creation_timestamp": current.metadata.creation_timestamp,
                "deletion_timestamp": current.metadata.deletion_timestamp,
                "generation": (current.metadata.generation or 1) + (1 if spec_changed else 0),
            }
        )
        new = obj.model_copy(update={"metadata": meta})
        path = self.obj_path(info, obj.namespace, obj.name)
        try:
            if meta.deletion_timestamp is not None and not meta.finalizers:
                await self._commit([Op.check(path, stat.version), Op.delete(path + "/status"), Op.delete(path)])
                return new
            encoded = self._encode(new)
            written = (await self._commit([Op.set(path, encoded, stat.version)]))[0]
        except TransactionFailed as exc:
            if isinstance(exc.error, BadVersionError):
                raise Conflict(
                    f"{info.kind.lower()} {obj.key} was changed by someone else",
                    hint="read it again and retry",
                ) from None
            if isinstance(exc.error, NoNodeError):
                raise NotFound(f"{info.kind.lower()} {obj.key} not found") from None
            raise
        # What a read would return, without one: the bytes written, the version the write made,
        # and the status read above (a status write never changes the resourceVersion).
        return self._decode(path, info, encoded, written, None).model_copy(update={"status": current.status})

    async def modify(
        self, kind: str, namespace: str, name: str, change: Callable[[Resource], Resource | None]
    ) -> Resource | None:
        """Read, ``change``, update; read again and retry on a conflict (see :func:`zkop.store.modify.modify`)."""
        return await modify(self, kind, namespace, name, change)

    async def update_status(self, obj: Resource) -> Resource:
        """Write only the status. Never bumps generation; never conflicts with spec updates."""
        info = resolve_kind(obj.kind)
        path = self.obj_path(info, obj.namespace, obj.name)
        raw = self._encode_status(obj)
        try:
            await self._commit([Op.check(path, -1), Op.set(path + "/status", raw)])
        except TransactionFailed as exc:
            if isinstance(exc.error, NoNodeError):
                raise NotFound(f"{info.kind.lower()} {obj.key} not found") from None
            raise
        return await self.get(info.kind, obj.namespace, obj.name)

    async def delete(self, kind: str, namespace: str, name: str) -> Literal["deleted", "terminating"]:
        """Delete now, or mark for deletion while finalizers remain."""
        info = resolve_kind(kind)
        path = self.obj_path(info, namespace, name)
        for _ in range(10):
            current, stat, _ = await self._read(info, namespace, name)
            try:
                if current.metadata.finalizers:
                    if current.metadata.deletion_timestamp is not None:
                        return "terminating"
                    meta = current.metadata.model_copy(update={"deletion_timestamp": now()})
                    marked = current.model_copy(update={"metadata": meta})
                    await self._commit([Op.set(path, self._encode(marked), stat.version)])
                    return "terminating"
                await self._commit([Op.check(path, stat.version), Op.delete(path + "/status"), Op.delete(path)])
                return "deleted"
            except TransactionFailed as exc:
                if isinstance(exc.error, BadVersionError):
                    continue  # changed meanwhile; decide again on fresh state
                if isinstance(exc.error, NoNodeError):
                    raise NotFound(f"{info.kind.lower()} {namespace}/{name} not found") from None
                raise
        raise Conflict(f"{info.kind.lower()} {namespace}/{name} kept changing during delete; retry")

    # ---- watch -------------------------------------------------------------------

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        resume_from: Mapping[str, str] | None = None,
        relist_interval: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """ADDED/MODIFIED/DELETED for a kind, starting from a consistent list.

        The first events describe the objects that exist (ADDED), then one SYNCED, then
        changes. With ``resume_from`` (key -> resourceVersion, e.g. a cache), the start
        is the difference against it instead, so a consumer can resume after a break.
        Each event carries the newest state: several quick changes to one object may
        arrive as one MODIFIED, never out of order. After the session is lost and
        renewed, the stream relists and emits what changed meanwhile.
        """
        return _Watcher(self, resolve_kind(kind), namespace, resume_from, relist_interval).run()

    # ---- events ------------------------------------------------------------------

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
        base = f"{self.root}/events/{namespace}/{plural}.{name}"
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
                    await self._commit([Op.set(newest, _dumps(bumped.to_json()), stat.version)])
                    return
            except (NoNodeError, ValueError, TransactionFailed):
                pass
        record = EventRecord(type_, reason, message[:2000], kind, namespace, name, 1, stamp, stamp, source)
        await self._commit([Op.create(f"{base}/e-", _dumps(record.to_json()), acl=self.acl, sequence=True)])
        excess = len(children) + 1 - MAX_EVENTS_PER_OBJECT
        for old in children[: max(0, excess)]:
            with contextlib.suppress(NoNodeError):
                await self.client.delete(f"{base}/{old}")

    async def list_events(
        self, namespace: str | None = None, *, kind: str | None = None, name: str | None = None
    ) -> builtins.list[EventRecord]:
        base = f"{self.root}/events"
        namespaces = [namespace] if namespace else sorted(await self._children(base))
        out: builtins.list[EventRecord] = []
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


class _Watcher:
    """Keeps one-shot ZooKeeper watches armed over a kind and turns them into events."""

    def __init__(
        self,
        store: Store,
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
