"""The coordination ZooKeeper as both Kubernetes platforms use it: the operator's session
(given, or opened on first use), the fencing check against the election's epoch znode, and
znodes written only if unchanged since read (the id counters, the kept configuration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kazoo.exceptions import NoNodeError

from zkop.client.bridge import ZkClient
from zkop.errors import Fenced

Session = ZkClient | Callable[[], Awaitable[ZkClient]]


class CoordinationSession:
    def __init__(self, session: Session, epoch_path: str | None, acl: Sequence[Any]) -> None:
        self._session = session
        self.epoch_path = epoch_path
        self.acl = list(acl)

    async def zk(self) -> ZkClient:
        """The coordination session (given, or opened on first use by the caller's factory)."""
        if not isinstance(self._session, ZkClient):
            self._session = await self._session()
        return self._session

    async def check(self, epoch: int | None) -> None:
        """Refuse (:class:`Fenced`) an action of a term older than the newest begun; ``None``
        (a person acting by hand) is not fenced."""
        if epoch is None or self.epoch_path is None:
            return
        try:
            stat = await (await self.zk()).exists(self.epoch_path)
        except Exception as exc:
            raise Fenced(f"the leadership term cannot be confirmed ({type(exc).__name__})") from None
        if stat is not None and stat.version > epoch:
            raise Fenced(
                f"action refused: epoch {epoch} is older than epoch {stat.version} already begun",
                hint="this operator replica is no longer the leader",
            )

    async def read_counter(self, path: str) -> tuple[int, int]:
        """A counter's value (1 before its first write) and its znode version (-1: none yet)."""
        try:
            raw, stat = await (await self.zk()).get(path)
        except NoNodeError:
            return 1, -1
        return int(raw.decode() or "1"), stat.version

    async def write(self, path: str, data: bytes, version: int) -> None:
        """Write ``data`` if the znode is still at ``version`` as read (-1: create it, and its
        parents); a writer that came first raises ``NodeExistsError`` or ``BadVersionError``."""
        zk = await self.zk()
        if version < 0:
            await zk.ensure_path(path.rsplit("/", 1)[0], acl=self.acl or None)
            await zk.create(path, data, acl=self.acl or None)
        else:
            await zk.set(path, data, version)
