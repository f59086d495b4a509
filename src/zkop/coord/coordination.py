"""The coordination ZooKeeper as a controller uses it beside its store: a session, the root
and ACL of zkop's znodes, and the fence of the current leadership term. On the local platform
it is the store's own ZooKeeper; on Kubernetes the store is the API server and this is the
ZooKeeper that keeps the election, the member-id counters and the service registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zkop.client.bridge import Op, TransactionFailed, ZkClient
from zkop.errors import Fenced


@dataclass(frozen=True)
class Coordination:
    client: ZkClient
    root: str = "/zkop"
    acl: tuple[Any, ...] = ()
    fence: tuple[Op, ...] = field(default=())

    def fenced(self, fence: Sequence[Op]) -> Coordination:
        return Coordination(self.client, self.root, self.acl, tuple(fence))

    async def commit(self, ops: Sequence[Op]) -> list[Any]:
        """One transaction of ``ops`` that fails as :class:`Fenced` when the term is over."""
        try:
            return await self.client.commit([*self.fence, *ops])
        except TransactionFailed as exc:
            if exc.failed_op is not None and exc.failed_op in self.fence:
                raise Fenced("write refused: leadership check failed", hint="no longer the leader") from None
            raise


__all__ = ["Coordination"]
