"""Where a store keeps its objects, and the few znode operations everything else is made of:
paths, parents created once, the fenced transaction, and reading an object with its status.

Layout under the root (default ``/zkop``)::

    resources/<plural>/<namespace>/<name>          apiVersion, kind, metadata, spec (JSON)
    resources/<plural>/<namespace>/<name>/status   status (JSON), written on its own
    events/<namespace>/<plural>.<name>/e-<seq>     bounded per object, newest kept
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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
        await self.client.ensure_path(path, acl=self.acl)
        self._ensured.add(path)

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
        return decode(path, info, raw, stat.mzxid, status_raw), stat, status_stat


__all__ = ["Fence", "Znodes"]
