"""Leader election with a fencing epoch.

Layout under ``<root>/leader/<manager>``::

    candidates/c-<seq>   ephemeral sequential; data = the candidate's identity
    epoch                its znode *version* is the epoch of the current term

The candidate with the lowest sequence number leads. On winning it bumps the epoch in a
transaction that also checks its own candidate znode still exists, so only a live
candidate can open a term. Every write the leader then makes checks that the epoch
znode still has its version (:meth:`LeaderElection.fence`): once a newer leader has
bumped it, a deposed leader's writes fail atomically, whatever the deposed leader
believes. Platform actions carry the epoch and are refused when older than the newest
seen.

SUSPENDED means "stop acting now" (Curator's rule); a client-side lease declares the
leadership gone once the session timeout has passed without contact, because kazoo only
learns of an expired session when it reconnects, which is too late for a leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError
from kazoo.protocol.states import WatchedEvent

from zkop.client.bridge import Op, TransactionFailed, ZkClient

log = logging.getLogger(__name__)

TURN_RECHECK = 1.0  # seconds between reads of the candidates while waiting for a turn


def default_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Term:
    """One leadership term."""

    epoch: int
    identity: str
    since: float  # wall clock


@dataclass(frozen=True)
class LeaderInfo:
    identity: str | None
    epoch: int | None
    since: float | None
    candidates: list[str]


class LeaderElection:
    def __init__(
        self,
        client: ZkClient,
        *,
        root: str,
        name: str,
        identity: str | None = None,
        acl: list[Any] | None = None,
        session_timeout: float = 10.0,
    ) -> None:
        self.client = client
        self.base = f"{root.rstrip('/')}/leader/{name}"
        self.candidates_path = f"{self.base}/candidates"
        self.epoch_path = f"{self.base}/epoch"
        self.identity = identity or default_identity()
        self.acl = acl
        self.session_timeout = session_timeout
        self.node: str | None = None
        self.term: Term | None = None
        self._confirmed_at = 0.0
        self._changed = asyncio.Event()
        self._suspended = False

    # ---- state ----------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """True while this candidate leads and its lease is fresh (see module docs)."""
        if self.term is None or self._suspended:
            return False
        return time.monotonic() - self._confirmed_at < self.session_timeout * 0.6

    def fence(self) -> tuple[Op, ...]:
        """Check ops that make a store write fail unless this term is still current (a
        :class:`zkop.store.Fence` is made of them)."""
        if self.term is None:
            raise RuntimeError("not leading")
        return (Op.check(self.epoch_path, self.term.epoch),)

    def on_state(self, state: str) -> None:
        """Connection state from the client (called on the event loop)."""
        if state == "SUSPENDED":
            self._suspended = True
        elif state == "CONNECTED":
            self._suspended = False
        elif state == "LOST":
            self._suspended = True
            self.node = None
            self.term = None
        self._changed.set()

    # ---- the election -----------------------------------------------------------------

    async def _ensure_paths(self) -> None:
        await self.client.ensure_path(self.candidates_path, acl=self.acl)
        with contextlib.suppress(NodeExistsError):
            await self.client.create(self.epoch_path, b"{}", acl=self.acl)

    async def _volunteer(self) -> str:
        await self._ensure_paths()
        data = json.dumps({"identity": self.identity}).encode()
        path = await self.client.create(f"{self.candidates_path}/c-", data, acl=self.acl, ephemeral=True, sequence=True)
        self.node = path
        return path

    async def _wait_turn(self) -> None:
        """Wait until our candidate znode is the lowest, watching only our predecessor. The
        candidates are also read again every ``TURN_RECHECK`` seconds, so a watch event that
        never arrives delays a turn by that much at most, not until the next connection change."""
        assert self.node is not None
        mine = self.node.rsplit("/", 1)[1]
        watching: str | None = None
        gone = asyncio.Event()
        while True:
            children = sorted(await self.client.get_children(self.candidates_path))
            if mine not in children:
                raise NoNodeError(f"candidate {mine} vanished")
            index = children.index(mine)
            if index == 0:
                return
            predecessor = f"{self.candidates_path}/{children[index - 1]}"
            if predecessor != watching:
                # One watch per predecessor: a re-check does not add callbacks to kazoo's set.
                gone = asyncio.Event()

                def on_change(_event: WatchedEvent, gone: asyncio.Event = gone) -> None:
                    gone.set()

                if await self.client.exists(predecessor, watch=on_change) is None:
                    continue
                watching = predecessor
            elif await self.client.exists(predecessor) is None:
                continue
            self._changed.clear()
            waiter = asyncio.ensure_future(gone.wait())
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({waiter, changed}, timeout=TURN_RECHECK, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                changed.cancel()
            if gone.is_set():
                watching = None  # the watch has fired: a new one if the predecessor is still there
            if self.node is None:
                raise NoNodeError("session lost while waiting")

    async def _open_term(self) -> Term:
        assert self.node is not None
        since = time.time()
        data = json.dumps({"identity": self.identity, "since": since}).encode()
        _, stat = await self.client.get(self.epoch_path)
        # Only a live candidate may open a term: the check fails if our ephemeral is gone.
        await self.client.commit([Op.check(self.node, -1), Op.set(self.epoch_path, data, stat.version)])
        _, after = await self.client.get(self.epoch_path)
        if after.version != stat.version + 1:
            raise BadVersionError("epoch moved while opening the term")
        self._confirmed_at = time.monotonic()
        return Term(epoch=after.version, identity=self.identity, since=since)

    async def campaign(self) -> Term:
        """Block until this candidate leads; returns the new term."""
        while True:
            try:
                if self.node is None or await self.client.exists(self.node) is None:
                    await self._volunteer()
                await self._wait_turn()
                self.term = await self._open_term()
                self._suspended = False
                return self.term
            except (NoNodeError, BadVersionError, TransactionFailed, KazooException) as exc:
                log.info("election: retrying after %s", type(exc).__name__)
                self.node = None if isinstance(exc, NoNodeError) else self.node
                await asyncio.sleep(0.2)

    async def confirm(self) -> bool:
        """Check with ZooKeeper that the term is still ours; refreshes the lease."""
        if self.term is None or self.node is None:
            return False
        started = time.monotonic()
        try:
            mine, epoch = await asyncio.gather(self.client.exists(self.node), self.client.exists(self.epoch_path))
        except KazooException:
            return False
        if mine is None or epoch is None or epoch.version != self.term.epoch:
            self.term = None
            return False
        self._confirmed_at = started
        return True

    async def hold(self, on_lost: Callable[[], Awaitable[None]] | None = None) -> None:
        """Keep confirming the term; return when it is gone (lost session, newer epoch)."""
        interval = max(0.2, self.session_timeout / 5)
        while True:
            if self.term is None:
                break
            if not self._suspended:
                if not await self.confirm():
                    break
            elif time.monotonic() - self._confirmed_at > self.session_timeout:
                # No contact for a whole session timeout: the server has expired us.
                self.term = None
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), interval)
        if on_lost is not None:
            await on_lost()

    async def resign(self) -> None:
        """Give leadership up now (delete our candidate znode) so a standby takes over."""
        node, self.node, self.term = self.node, None, None
        if node is not None:
            with contextlib.suppress(NoNodeError, KazooException):
                await self.client.delete(node)

    async def info(self) -> LeaderInfo:
        return await read_leader(self.client, self.base)


async def read_leader(client: ZkClient, base: str) -> LeaderInfo:
    try:
        children = sorted(await client.get_children(f"{base}/candidates"))
    except NoNodeError:
        return LeaderInfo(None, None, None, [])
    identities: list[str] = []
    for child in children:
        try:
            raw, _ = await client.get(f"{base}/candidates/{child}")
            identities.append(str(json.loads(raw).get("identity", child)))
        except (NoNodeError, ValueError):
            continue
    try:
        raw, stat = await client.get(f"{base}/epoch")
        data = json.loads(raw or b"{}")
    except (NoNodeError, ValueError):
        return LeaderInfo(None, None, None, identities)
    holder = data.get("identity")
    leader = identities[0] if identities else None
    # The epoch record names the last term's holder; it leads only if it is still first in line.
    if holder != leader:
        return LeaderInfo(None, stat.version, None, identities)
    return LeaderInfo(holder, stat.version, data.get("since"), identities)
