"""Where a store keeps its objects, and the few znode operations everything else is made of:
paths, parents created once, the fenced transaction, and reading an object with its status.

Layout under the root (default ``/zkop``)::

    resources/<plural>/<namespace>/<name>          apiVersion, kind, metadata, spec (JSON)
    resources/<plural>/<namespace>/<name>/status   status (JSON), written on its own
    events/<namespace>/<plural>.<name>/e-<seq>     bounded per object, newest kept
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import ZnodeStat

from zkop.api import Resource
from zkop.api.registry import KindInfo
from zkop.client.bridge import Op, TransactionFailed, ZkClient
from zkop.store.codec import decode
from zkop.store.errors import Fenced, NotFound


@dataclass(frozen=True)
class Fence:
    """A leadership term as a store sees it: the check operations every ZooKeeper write
    includes, and the term's epoch (what the Kubernetes store stamps on objects)."""

    ops: tuple[Op, ...] = ()
    epoch: int | None = None


@dataclass
class Known:
    """An object as last read or written: its version (mzxid), the znode's data version (what a
    compare-and-set names), and the decoded object."""

    mzxid: int
    version: int
    status_version: int | None
    obj: Resource


class ReadCache:
    """Decoded objects by path, so a trusted znode is decoded once per version, and an update
    that names the version last read needs no second read (its compare-and-set still decides).
    Bounded; shared by the fenced copies of a store."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self.entries: OrderedDict[str, Known] = OrderedDict()

    def get(self, path: str) -> Known | None:
        return self.entries.get(path)

    def put(self, path: str, known: Known) -> None:
        self.entries[path] = known
        self.entries.move_to_end(path)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def drop(self, path: str) -> None:
        self.entries.pop(path, None)


class Znodes:
    """A root in ZooKeeper, the ACL of what is created under it, and the fence every write
    checks."""

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
        self._ensuring: dict[str, asyncio.Future[None]] = {}
        self._cache = ReadCache()
        # base -> (path, record, znode version, events kept): the newest event this store wrote.
        self._newest_events: dict[str, tuple[str, Any, int, int]] = {}

    # ---- paths -------------------------------------------------------------------

    def kind_path(self, info: KindInfo) -> str:
        return f"{self.root}/resources/{info.plural}"

    def ns_path(self, info: KindInfo, namespace: str) -> str:
        return f"{self.kind_path(info)}/{namespace}"

    def obj_path(self, info: KindInfo, namespace: str, name: str) -> str:
        return f"{self.ns_path(info, namespace)}/{name}"

    def events_path(self, namespace: str, plural: str, name: str) -> str:
        return f"{self.root}/events/{namespace}/{plural}.{name}"

    # ---- znode operations --------------------------------------------------------

    async def _ensure(self, path: str) -> None:
        if path in self._ensured:
            return
        # One ensure per path in flight: hundreds of writes into a new namespace at once would
        # each walk the same path (kazoo chains those requests on its completion thread).
        pending = self._ensuring.get(path)
        if pending is None:
            pending = asyncio.ensure_future(self.client.ensure_path(path, acl=self.acl))
            self._ensuring[path] = pending
            pending.add_done_callback(self._ensured_one(path))
        await asyncio.shield(pending)
        self._ensured.add(path)

    def _ensured_one(self, path: str) -> Callable[[asyncio.Future[None]], None]:
        def done(fut: asyncio.Future[None]) -> None:
            self._ensuring.pop(path, None)
            if not fut.cancelled():
                fut.exception()  # retrieved: every waiter may have been cancelled meanwhile

        return done

    async def _children(self, path: str) -> list[str]:
        try:
            return await self.client.get_children(path)
        except NoNodeError:
            return []

    async def _commit(self, ops: Sequence[Op]) -> list[Any]:
        """One transaction of the fence's checks and ``ops``; the results of ``ops``."""
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

    async def _read(
        self, info: KindInfo, namespace: str, name: str, *, watch: Any = None
    ) -> tuple[Resource, ZnodeStat, ZnodeStat | None]:
        """The object with its status, and the stats of both znodes (the status one is None
        when missing). Both reads are sent at once; ``watch`` is left on both."""
        path = self.obj_path(info, namespace, name)
        obj_task = self.client.get_future(path, watch=watch)
        status_task = self.client.get_future(path + "/status", watch=watch)
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
        status_version = status_stat.mzxid if status_stat is not None else None
        known = self._cache.get(path)
        if known is None or (known.mzxid, known.status_version) != (stat.mzxid, status_version):
            known = Known(stat.mzxid, stat.version, status_version, decode(path, info, raw, stat.mzxid, status_raw))
            self._cache.put(path, known)
        return known.obj, stat, status_stat


__all__ = ["Fence", "Znodes"]
