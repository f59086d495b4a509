"""Resources in ZooKeeper: CRUD with optimistic concurrency and a status subresource; watch
streams (:mod:`zkop.store.watch`) and events (:mod:`zkop.store.events`) through the same
:class:`Store`. Where objects live and how they are encoded: :mod:`zkop.store.znodes`,
:mod:`zkop.store.codec`.

``metadata.resourceVersion`` is the object znode's ``mzxid``: ZooKeeper's own, globally
ordered version. An update names the version it read; the store turns that into a
compare-and-set on the znode version, so concurrent writers cannot overwrite each other.
Every write is one ZooKeeper transaction, and callers may add check operations
(``fence``) that make it fail atomically when the caller's leadership is gone.
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from zkop.api import Problem, Resource, ResourceValidationError, check_update, resolve_kind, to_dict
from zkop.client.bridge import Op, TransactionFailed
from zkop.store.codec import encode, encode_status, now
from zkop.store.errors import AlreadyExists, Conflict, CorruptObject, NotFound
from zkop.store.events import EventRecord, Events
from zkop.store.modify import modify
from zkop.store.selector import Selector, parse_selector
from zkop.store.watch import Watcher, WatchEvent
from zkop.store.znodes import Fence, Known


@dataclass
class ListResult:
    items: list[Resource] = field(default_factory=list)
    corrupt: list[CorruptObject] = field(default_factory=list)


class Store(Events):
    """Objects of every kind under one root; every write also checks ``fence``."""

    def fenced(self, fence: Fence) -> Store:
        """The same store whose every write also checks ``fence``."""
        store = Store(self.client, root=self.root, acl=self.acl, fence=fence)
        store._ensured = self._ensured
        store._ensuring = self._ensuring
        store._cache = self._cache
        store._newest_events = self._newest_events
        return store

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
        raw = encode(new)
        status = encode_status(new)
        await self._ensure(self.ns_path(info, new.namespace))
        try:
            # The status znode is made empty and then set in the same transaction: a set answers
            # with the znode's stat, so the object's version (the transaction's zxid, which both
            # znodes share) comes back without a second round trip.
            written = await self._commit(
                [
                    Op.create(path, raw, acl=self.acl),
                    Op.create(path + "/status", b"", acl=self.acl),
                    Op.set(path + "/status", status, 0),
                ]
            )
        except TransactionFailed as exc:
            if isinstance(exc.error, NodeExistsError):
                raise AlreadyExists(
                    f"{info.kind.lower()} {new.key} already exists", hint="use `zkop apply` to change it"
                ) from None
            if isinstance(exc.error, NoNodeError):
                self._ensured.discard(self.ns_path(info, new.namespace))
            raise
        # What a read would return, without reading it back: what was written, at the version
        # the write made.
        zxid = written[2].mzxid
        created = new.model_copy(update={"metadata": meta.model_copy(update={"resource_version": str(zxid)})})
        self._cache.put(path, Known(zxid, 0, zxid, created))
        return created

    async def get_fresh(self, kind: str, namespace: str, name: str) -> Resource:
        """Sync the session's server with the leader first: a new session may sit on a follower
        that has not yet seen a write acknowledged elsewhere."""
        await self.client.sync(self.ns_path(resolve_kind(kind), namespace))
        return await self.get(kind, namespace, name)

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
        path = self.obj_path(info, obj.namespace, obj.name)
        known = self._cache.get(path)
        if known is not None and str(known.mzxid) == obj.metadata.resource_version:
            # The version named was read here: no second read; the compare-and-set decides.
            current, version, mzxid = known.obj, known.version, known.mzxid
        else:
            current, stat, _ = await self._read(info, obj.namespace, obj.name)
            version, mzxid = stat.version, stat.mzxid
        if str(mzxid) != obj.metadata.resource_version:
            raise Conflict(
                f"{info.kind.lower()} {obj.key} was changed by someone else "
                f"(resourceVersion {obj.metadata.resource_version} is stale, now {mzxid})",
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
        try:
            if meta.deletion_timestamp is not None and not meta.finalizers:
                await self._commit([Op.check(path, version), Op.delete(path + "/status"), Op.delete(path)])
                self._cache.drop(path)
                return new
            encoded = encode(new)
            written = (await self._commit([Op.set(path, encoded, version)]))[0]
        except TransactionFailed as exc:
            self._cache.drop(path)
            if isinstance(exc.error, BadVersionError):
                raise Conflict(
                    f"{info.kind.lower()} {obj.key} was changed by someone else",
                    hint="read it again and retry",
                ) from None
            if isinstance(exc.error, NoNodeError):
                raise NotFound(f"{info.kind.lower()} {obj.key} not found") from None
            raise
        # What a read would return, without one: what was written, at the version the write made,
        # with the status as last read (a status write never changes the resourceVersion).
        result = new.model_copy(
            update={
                "metadata": meta.model_copy(update={"resource_version": str(written.mzxid)}),
                "status": current.status,
            }
        )
        known = self._cache.get(path)
        if known is not None and known.obj is current:
            self._cache.put(path, Known(written.mzxid, written.version, known.status_version, result))
        else:
            self._cache.drop(path)
        return result

    async def modify(
        self, kind: str, namespace: str, name: str, change: Callable[[Resource], Resource | None]
    ) -> Resource | None:
        """Read, ``change``, update; read again and retry on a conflict (see :func:`zkop.store.modify.modify`)."""
        return await modify(self, kind, namespace, name, change)

    async def update_status(self, obj: Resource) -> Resource:
        """Write only the status. Never bumps generation; never conflicts with spec updates."""
        info = resolve_kind(obj.kind)
        path = self.obj_path(info, obj.namespace, obj.name)
        raw = encode_status(obj)
        try:
            written = (await self._commit([Op.check(path, -1), Op.set(path + "/status", raw)]))[1]
        except TransactionFailed as exc:
            self._cache.drop(path)
            if isinstance(exc.error, NoNodeError):
                raise NotFound(f"{info.kind.lower()} {obj.key} not found") from None
            raise
        # No read back: the object as given, with the status written (the object's own version
        # is untouched by a status write).
        known = self._cache.get(path)
        if known is not None and str(known.mzxid) == obj.metadata.resource_version:
            self._cache.put(path, Known(known.mzxid, known.version, written.mzxid, obj))
        else:
            self._cache.drop(path)
        return obj

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
                    await self._commit([Op.set(path, encode(marked), stat.version)])
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
        return Watcher(self, resolve_kind(kind), namespace, resume_from, relist_interval).run()


__all__ = ["EventRecord", "Fence", "ListResult", "Store", "WatchEvent", "now"]
