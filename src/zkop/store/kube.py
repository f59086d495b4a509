"""Resources in the Kubernetes API (custom resources of group ``zkop.io``) behind the same
interface as the ZooKeeper store, so the runtime and the controllers run on either.

On Kubernetes the custom resources are the desired state; ZooKeeper keeps the coordination
(the election and its fencing epoch, the member-id counters, the registry).

- **Reads** are the API server's (quorum reads from etcd); ``resourceVersion`` is its own.
- **Writes** carry a resourceVersion precondition: a stale one is the same :class:`Conflict`
  the ZooKeeper store raises. The status is written through the status subresource.
- **Fencing**: a store made for a leadership term (:meth:`KubeStore.fenced`) first checks the
  term with ZooKeeper (the election's fence; a deposed leader fails it), stamps the term's
  epoch on the object as the annotation ``zkop.io/epoch``, and refuses to write over an
  object that a newer epoch wrote last. The first status write of a term also stamps the
  object (status writes cannot carry metadata), so every object written in a term says so.
  What this cannot fence: a *create* by a deposed leader that passed its check just before
  it was deposed (there is no earlier version to compare with).
- **Watch** lists, then watches from the list's resourceVersion with bookmarks; after a
  410 Gone (the version fell out of the API server's history) it lists again and emits the
  difference against what it had delivered; a dropped connection resumes from the newest
  version seen.
- **Events** are ``events.k8s.io/v1`` Events about the object (a repeat of the newest one
  bumps its series count).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.rest import ApiException

from zkop.api import Resource, ResourceValidationError, check_update, parse_object, resolve_kind, to_dict
from zkop.api.registry import KindInfo
from zkop.client.bridge import TransactionFailed, ZkClient
from zkop.errors import Fenced
from zkop.store.errors import AlreadyExists, Conflict, CorruptObject, Forbidden, NotFound, StoreError
from zkop.store.events import EventRecord
from zkop.store.modify import modify
from zkop.store.selector import Selector, parse_selector
from zkop.store.store import ListResult
from zkop.store.watch import WatchEvent
from zkop.store.znodes import Fence

log = logging.getLogger("zkop.store.kube")

GROUP = "zkop.io"
VERSION = "v1"
EPOCH_ANNOTATION = "zkop.io/epoch"
STATUS_ATTEMPTS = 5  # a status write tried again on a fresh read after a conflict
WATCH_TIMEOUT = 300  # seconds a watch request lasts before it is renewed from the newest version
RECONNECT_MIN, RECONNECT_MAX = 0.5, 10.0  # seconds between attempts to reach an API server that is away
# metadata fields the zkop models know; the rest (ownerReferences, managedFields...) is kept aside
# and written back unchanged.
KNOWN_META = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "finalizers",
)

# A check that the caller's term is still current; raises Fenced when it is not.
TermCheck = Callable[[], Awaitable[None]]


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _epoch_of(raw: Mapping[str, Any]) -> int | None:
    value = ((raw.get("metadata") or {}).get("annotations") or {}).get(EPOCH_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class KubeStore:
    """The zkop store over the Kubernetes API (``api`` is a configured ``ApiClient``)."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        epoch: int | None = None,
        term_check: TermCheck | None = None,
        coordination: ZkClient | None = None,
        source: str = "zkop",
    ) -> None:
        self.api = api
        self.coordination = coordination
        self.custom = k8s.CustomObjectsApi(api)
        self.events_api = k8s.EventsV1Api(api)
        self.epoch = epoch
        self.term_check = term_check
        self.source = source
        # What zkop's models leave out, per object: written back on update.
        self._extras: dict[tuple[str, str, str], dict[str, Any]] = {}
        # The object as last read or written, per key: an update naming its resourceVersion needs
        # no read first (the API server's precondition still decides).
        self._read: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._stamped: set[tuple[str, str, str]] = set()  # objects stamped with this term's epoch

    def fenced(self, fence: Fence, term_check: TermCheck | None = None) -> KubeStore:
        """The same store for one leadership term: every write checks the term first (with
        ``term_check``, else the fence's check operations in ZooKeeper) and carries its epoch."""
        check = term_check
        if check is None and fence.ops and self.coordination is not None:
            check = _zk_check(self.coordination, fence)
        store = KubeStore(
            self.api, epoch=fence.epoch, term_check=check, coordination=self.coordination, source=self.source
        )
        store._extras, store._read = self._extras, self._read
        return store

    async def get_fresh(self, kind: str, namespace: str, name: str) -> Resource:
        return await self.get(kind, namespace, name)  # the API server reads from etcd's quorum

    # ---- conversion ------------------------------------------------------------------

    def _decode(self, info: KindInfo, raw: Mapping[str, Any]) -> Resource:
        meta = dict(raw.get("metadata") or {})
        key = (info.plural, str(meta.get("namespace", "")), str(meta.get("name", "")))
        self._extras[key] = {k: v for k, v in meta.items() if k not in KNOWN_META}
        self._read[key] = dict(raw)
        data = {
            "apiVersion": raw.get("apiVersion", f"{GROUP}/{VERSION}"),
            "kind": raw.get("kind", info.kind),
            "metadata": {k: v for k, v in meta.items() if k in KNOWN_META},
            "spec": raw.get("spec") or {},
        }
        if raw.get("status"):
            data["status"] = raw["status"]
        path = f"{info.plural}/{key[1]}/{key[2]}"
        try:
            return parse_object(data, source=path)
        except ResourceValidationError as exc:
            raise CorruptObject(path, str(exc)) from None

    def _encode(self, info: KindInfo, obj: Resource, *, stamp: bool) -> dict[str, Any]:
        data = to_dict(obj)
        data.pop("status", None)
        meta = data.setdefault("metadata", {})
        meta.update(self._extras.get((info.plural, obj.namespace, obj.name), {}))
        if stamp and self.epoch is not None:
            meta["annotations"] = {**meta.get("annotations", {}), EPOCH_ANNOTATION: str(self.epoch)}
        return data

    # ---- errors and fencing -------------------------------------------------------------

    @staticmethod
    def _error(exc: ApiException, what: str) -> StoreError:
        if exc.status == 404:
            return NotFound(f"{what} not found")
        if exc.status == 409:
            if "AlreadyExists" in str(exc.body or exc.reason):
                return AlreadyExists(f"{what} already exists", hint="use `zkop apply` to change it")
            return Conflict(f"{what} was changed by someone else", hint="read it again and retry")
        if exc.status == 422:
            return StoreError(f"{what} was refused by the API server: {_message(exc)}")
        if exc.status == 403:
            return forbidden(exc)
        if exc.status == 401:
            return Forbidden(
                "unauthorized: the API server did not accept the credentials",
                hint="check the kubeconfig's user, or renew its token",
            )
        return StoreError(f"{what}: the API server answered {exc.status} {_message(exc)}")

    async def _check_term(self, current: Mapping[str, Any] | None, what: str) -> None:
        if self.term_check is not None:
            await self.term_check()
        if current is not None and self.epoch is not None:
            newer = _epoch_of(current)
            if newer is not None and newer > self.epoch:
                raise Fenced(
                    f"{what} was last written by epoch {newer}, newer than this term's {self.epoch}",
                    hint="this operator replica is no longer the leader",
                )

    # ---- CRUD --------------------------------------------------------------------------

    async def _get_raw(self, info: KindInfo, namespace: str, name: str) -> dict[str, Any]:
        try:
            raw = await self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, info.plural, name)
        except ApiException as exc:
            raise self._error(exc, f"{info.kind.lower()} {namespace}/{name}") from None
        return dict(raw)

    async def get(self, kind: str, namespace: str, name: str) -> Resource:
        info = resolve_kind(kind)
        return self._decode(info, await self._get_raw(info, namespace, name))

    async def list(self, kind: str, namespace: str | None = None, selector: str | Selector | None = None) -> ListResult:
        info = resolve_kind(kind)
        sel = parse_selector(selector) if isinstance(selector, str) else selector
        raw = await self._list_raw(info, namespace)
        result = ListResult()
        for item in raw.get("items", []):
            try:
                obj = self._decode(info, item)
            except CorruptObject as exc:
                result.corrupt.append(exc)
                continue
            if sel is None or sel.matches(obj.metadata.labels):
                result.items.append(obj)
        result.items.sort(key=lambda o: (o.namespace, o.name))
        return result

    async def _list_raw(self, info: KindInfo, namespace: str | None, **kw: Any) -> dict[str, Any]:
        try:
            if namespace is None:
                return dict(await self.custom.list_cluster_custom_object(GROUP, VERSION, info.plural, **kw))
            return dict(await self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, info.plural, **kw))
        except ApiException as exc:
            raise self._error(exc, f"{info.plural}") from None

    async def create(self, obj: Resource) -> Resource:
        info = resolve_kind(obj.kind)
        what = f"{info.kind.lower()} {obj.key}"
        await self._check_term(None, what)
        meta = obj.metadata.model_copy(
            update={"uid": None, "generation": None, "creation_timestamp": None, "resource_version": None}
        )
        body = self._encode(info, obj.model_copy(update={"metadata": meta}), stamp=True)
        try:
            raw = await self.custom.create_namespaced_custom_object(GROUP, VERSION, obj.namespace, info.plural, body)
        except ApiException as exc:
            raise self._error(exc, what) from None
        status = to_dict(obj).get("status")
        if status:
            raw = dict(raw) | {"status": status}
            with contextlib.suppress(ApiException):
                raw = await self.custom.replace_namespaced_custom_object_status(
                    GROUP, VERSION, obj.namespace, info.plural, obj.name, raw
                )
        return self._decode(info, raw)

    async def update(self, obj: Resource) -> Resource:
        """Replace metadata and spec if unchanged since read (the status is not touched)."""
        info = resolve_kind(obj.kind)
        what = f"{info.kind.lower()} {obj.key}"
        if not obj.metadata.resource_version:
            raise Conflict(f"{what}: update needs metadata.resourceVersion", hint="read the object first")
        known = self._read.get((info.plural, obj.namespace, obj.name))
        if (
            known is not None
            and str((known.get("metadata") or {}).get("resourceVersion")) == obj.metadata.resource_version
        ):
            current = known
        else:
            current = await self._get_raw(info, obj.namespace, obj.name)
        if str((current.get("metadata") or {}).get("resourceVersion")) != obj.metadata.resource_version:
            raise Conflict(f"{what} was changed by someone else", hint="read it again and retry")
        await self._check_term(current, what)
        check_update(self._decode(info, current), obj)
        body = self._encode(info, obj, stamp=True)
        try:
            raw = await self.custom.replace_namespaced_custom_object(
                GROUP, VERSION, obj.namespace, info.plural, obj.name, body
            )
        except ApiException as exc:
            raise self._error(exc, what) from None
        self._stamped.add((info.plural, obj.namespace, obj.name))
        return self._decode(info, raw)

    async def modify(
        self, kind: str, namespace: str, name: str, change: Callable[[Resource], Resource | None]
    ) -> Resource | None:
        return await modify(self, kind, namespace, name, change)

    async def update_status(self, obj: Resource) -> Resource:
        """Write only the status (never bumps generation), after stamping the term on the object
        once per term. As with the ZooKeeper store, a change to the rest of the object meanwhile
        (a spec edit, a deletion) is no conflict: the write is tried again on the object read
        anew, its term checked anew, so a newer term's stamp still refuses it."""
        info = resolve_kind(obj.kind)
        what = f"status of {info.kind.lower()} {obj.key}"
        status = to_dict(obj).get("status") or {}
        for _ in range(STATUS_ATTEMPTS - 1):
            try:
                return await self._write_status(info, obj, status, what)
            except Conflict:
                continue
        return await self._write_status(info, obj, status, what)

    async def _write_status(self, info: KindInfo, obj: Resource, status: Mapping[str, Any], what: str) -> Resource:
        current = await self._get_raw(info, obj.namespace, obj.name)
        await self._check_term(current, what)
        key = (info.plural, obj.namespace, obj.name)
        if self.epoch is not None and _epoch_of(current) != self.epoch and key not in self._stamped:
            meta = dict(current.get("metadata") or {})
            meta["annotations"] = {**(meta.get("annotations") or {}), EPOCH_ANNOTATION: str(self.epoch)}
            try:
                current = dict(
                    await self.custom.replace_namespaced_custom_object(
                        GROUP, VERSION, obj.namespace, info.plural, obj.name, {**current, "metadata": meta}
                    )
                )
            except ApiException as exc:
                raise self._error(exc, what) from None
            self._stamped.add(key)
        body = dict(current) | {"status": status}
        try:
            raw = await self.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, obj.namespace, info.plural, obj.name, body
            )
        except ApiException as exc:
            raise self._error(exc, what) from None
        return self._decode(info, raw)

    async def delete(self, kind: str, namespace: str, name: str) -> Literal["deleted", "terminating"]:
        """Delete now, or mark for deletion while finalizers remain (the API server decides)."""
        info = resolve_kind(kind)
        what = f"{info.kind.lower()} {namespace}/{name}"
        current = await self._get_raw(info, namespace, name)
        await self._check_term(current, what)
        rv = (current.get("metadata") or {}).get("resourceVersion")
        body = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(resource_version=rv))
        try:
            raw = await self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, info.plural, name, body=body
            )
        except ApiException as exc:
            raise self._error(exc, what) from None
        if isinstance(raw, Mapping) and (raw.get("metadata") or {}).get("deletionTimestamp"):
            return "terminating"
        return "deleted"

    # ---- watch ---------------------------------------------------------------------------

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        resume_from: Mapping[str, str] | None = None,
        relist_interval: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """ADDED/MODIFIED/DELETED for a kind, starting from a consistent list, then SYNCED;
        with ``resume_from`` (key -> resourceVersion) the start is the difference against it."""
        return self._watch(resolve_kind(kind), namespace, dict(resume_from or {}), relist_interval)

    async def _relist(
        self, info: KindInfo, namespace: str | None, known: dict[str, str]
    ) -> tuple[builtins.list[WatchEvent], str]:
        raw = await self._list_raw(info, namespace)
        events: builtins.list[WatchEvent] = []
        seen: set[str] = set()
        for item in raw.get("items", []):
            meta = item.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            seen.add(key)
            rv = str(meta.get("resourceVersion"))
            if known.get(key) == rv:
                continue
            try:
                obj = self._decode(info, item)
            except CorruptObject as exc:
                events.append(WatchEvent("ERROR", key, error=str(exc)))
                continue
            events.append(WatchEvent("ADDED" if key not in known else "MODIFIED", key, obj))
            known[key] = rv
        for key in sorted(set(known) - seen):
            known.pop(key)
            events.append(WatchEvent("DELETED", key))
        return events, str((raw.get("metadata") or {}).get("resourceVersion", ""))

    async def _watch(
        self, info: KindInfo, namespace: str | None, known: dict[str, str], relist_interval: float | None
    ) -> AsyncIterator[WatchEvent]:
        events, version = await self._relist(info, namespace, known)
        for event in events:
            yield event
        yield WatchEvent("SYNCED")
        loop = asyncio.get_running_loop()
        relisted = loop.time()
        backoff = RECONNECT_MIN
        while True:
            timeout = WATCH_TIMEOUT
            if relist_interval is not None:
                timeout = max(1, min(timeout, int(relist_interval - (loop.time() - relisted)) or 1))
            gone = False
            try:
                async for raw_event in self._stream(info, namespace, version, timeout):
                    backoff = RECONNECT_MIN
                    kind = raw_event.get("type")
                    obj = raw_event.get("object") or {}
                    meta = obj.get("metadata") or {}
                    if meta.get("resourceVersion"):
                        version = str(meta["resourceVersion"])
                    if kind == "BOOKMARK":
                        continue
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            gone = True
                            break
                        raise StoreError(f"watch of {info.plural} failed: {obj.get('message')}")
                    key = f"{meta.get('namespace')}/{meta.get('name')}"
                    if kind == "DELETED":
                        known.pop(key, None)
                        last: Resource | None = None
                        with contextlib.suppress(CorruptObject):
                            last = self._decode(info, obj)  # its last state, as the ZooKeeper store gives
                        deleted = (info.plural, str(meta.get("namespace", "")), str(meta.get("name", "")))
                        self._extras.pop(deleted, None)
                        self._read.pop(deleted, None)
                        yield WatchEvent("DELETED", key, last)
                        continue
                    try:
                        decoded = self._decode(info, obj)
                    except CorruptObject as exc:
                        yield WatchEvent("ERROR", key, error=str(exc))
                        continue
                    yield WatchEvent("ADDED" if key not in known else "MODIFIED", key, decoded)
                    known[key] = version
            except ApiException as exc:
                if exc.status != 410:
                    raise self._error(exc, f"watch of {info.plural}") from None
                gone = True
            except (TimeoutError, OSError) as exc:
                log.debug("watch of %s ended (%s); resuming from %s", info.plural, exc, version)
                if isinstance(exc, OSError):  # the API server cannot be reached: retry, but do not spin
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RECONNECT_MAX)
            if gone or (relist_interval is not None and loop.time() - relisted >= relist_interval):
                # 410 Gone, or the periodic relist: the difference against what was delivered.
                events, version = await self._relist(info, namespace, known)
                for event in events:
                    yield event
                relisted = loop.time()

    async def _stream(
        self, info: KindInfo, namespace: str | None, version: str, timeout: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Raw watch events (dicts) from ``version`` for at most ``timeout`` seconds."""
        params: dict[str, Any] = {
            "watch": True,
            "resource_version": version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
            "_preload_content": False,
        }
        if namespace is None:
            resp = await self.custom.list_cluster_custom_object(GROUP, VERSION, info.plural, **params)
        else:
            resp = await self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, info.plural, **params)
        try:
            if resp.status != 200:
                raise _refused(resp.status, await resp.read())
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                yield json.loads(line)
        finally:
            resp.close()

    # ---- events ----------------------------------------------------------------------------

    async def record_event(self, obj: Resource, type_: str, reason: str, message: str, *, source: str = "zkop") -> None:
        info = resolve_kind(obj.kind)
        await self.record_event_for(
            info.kind, info.plural, obj.namespace, obj.name, type_, reason, message, source, uid=obj.metadata.uid
        )

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
        *,
        uid: str | None = None,
    ) -> None:
        """An ``events.k8s.io/v1`` Event about the object; a repeat of the newest one about it
        bumps its series count instead."""
        at = dt.datetime.now(dt.UTC)
        now = _stamp()
        note = message[:1000]
        selector = f"regarding.name={name},regarding.kind={kind}"
        try:
            existing = [e for e in await self._events_raw(namespace, selector) if _ours(e)]
            newest = max(existing, key=_event_time, default=None)
            if newest is not None and (newest.get("reason"), newest.get("note"), newest.get("type")) == (
                reason,
                note,
                type_,
            ):
                count = int((newest.get("series") or {}).get("count") or 1) + 1
                patch = {"series": {"count": count, "lastObservedTime": now}}
                await self.events_api.patch_namespaced_event(newest["metadata"]["name"], namespace, patch)
                return
            body = k8s.EventsV1Event(
                # named as client-go names events (time in hex), so a listing comes in order
                metadata=k8s.V1ObjectMeta(name=f"{name}.{time.time_ns():x}{uuid.uuid4().hex[:4]}", namespace=namespace),
                event_time=at,
                action=reason,
                reason=reason,
                note=note,
                type=type_,
                reporting_controller="zkop.io/operator",
                reporting_instance=(source or self.source)[:128],
                regarding=k8s.V1ObjectReference(
                    api_version=f"{GROUP}/{VERSION}", kind=kind, namespace=namespace, name=name, uid=uid
                ),
            )
            await self.events_api.create_namespaced_event(namespace, body)
        except ApiException as exc:
            raise self._error(exc, f"event about {kind.lower()} {namespace}/{name}") from None

    async def _events_raw(self, namespace: str | None, selector: str | None) -> builtins.list[dict[str, Any]]:
        """Events as the API server sends them (JSON): events of other components may lack
        fields the typed client insists on (an eventTime converted from core/v1 events)."""
        kw: dict[str, Any] = {"_preload_content": False}
        if selector:
            kw["field_selector"] = selector
        resp: Any
        if namespace is None:
            resp = await self.events_api.list_event_for_all_namespaces(**kw)
        else:
            resp = await self.events_api.list_namespaced_event(namespace, **kw)
        try:
            body = await resp.read()
            if resp.status != 200:
                raise _refused(resp.status, body)
            data = json.loads(body)
        finally:
            resp.close()
        return [dict(e) for e in data.get("items", [])]

    async def list_events(
        self, namespace: str | None = None, *, kind: str | None = None, name: str | None = None
    ) -> builtins.list[EventRecord]:
        selectors = []
        if kind is not None:
            selectors.append(f"regarding.kind={resolve_kind(kind).kind}")
        if name is not None:
            selectors.append(f"regarding.name={name}")
        try:
            found = await self._events_raw(namespace, ",".join(selectors) or None)
        except ApiException as exc:
            raise self._error(exc, "events") from None
        out = []
        for e in found:
            regarding = e.get("regarding") or {}
            if not _ours(e):
                continue
            meta = e.get("metadata") or {}
            series = e.get("series") or {}
            first = str(e.get("eventTime") or meta.get("creationTimestamp") or "")
            out.append(
                EventRecord(
                    type=str(e.get("type") or "Normal"),
                    reason=str(e.get("reason") or ""),
                    message=str(e.get("note") or ""),
                    kind=str(regarding.get("kind") or ""),
                    namespace=str(regarding.get("namespace") or meta.get("namespace") or ""),
                    name=str(regarding.get("name") or ""),
                    count=int(series.get("count") or 1),
                    first_timestamp=first,
                    last_timestamp=str(series.get("lastObservedTime") or first),
                    source=str(e.get("reportingInstance") or ""),
                )
            )
        out.sort(key=lambda r: r.last_timestamp)
        return out


def _ours(e: Mapping[str, Any]) -> bool:
    return e.get("reportingController") == "zkop.io/operator" and bool(e.get("regarding"))


def _zk_check(client: ZkClient, fence: Fence) -> TermCheck:
    async def check() -> None:
        try:
            await client.commit(list(fence.ops))
        except TransactionFailed:
            raise Fenced("the leadership term is over", hint="this operator replica is no longer the leader") from None
        except Exception as exc:  # the session is gone or unreachable: the term cannot be confirmed
            raise Fenced(f"the leadership term cannot be confirmed ({type(exc).__name__})") from None

    return check


def forbidden(exc: ApiException) -> Forbidden:
    """A 403 as one line: who may not do what (``forbidden: User "..." cannot create resource ...``)."""
    message = re.sub(r"^.*? is forbidden: ", "", _message(exc))
    if "being terminated" in message:  # not RBAC: the namespace is going away
        return Forbidden(f"forbidden: {message}")
    return Forbidden(f"forbidden: {message}", hint="check the ServiceAccount's RBAC")


def _refused(status: int, body: bytes) -> ApiException:
    """An ApiException for a response read raw (``_preload_content=False``)."""
    exc = ApiException(status=status, reason="refused")
    exc.body = body
    return exc


def _message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


def _event_time(e: Mapping[str, Any]) -> str:
    series = e.get("series") or {}
    return str(
        series.get("lastObservedTime") or e.get("eventTime") or (e.get("metadata") or {}).get("creationTimestamp")
    )


def _iso(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


__all__ = ["EPOCH_ANNOTATION", "GROUP", "VERSION", "KubeStore"]
