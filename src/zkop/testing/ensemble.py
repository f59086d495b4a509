"""Real ZooKeeper ensembles for tests, with handles to break and mend their members.

Usable without pytest::

    with running_ensemble(3) as zk:
        client = KazooClient(zk.connection_string)
        zk.leader().kill()
        zk.wait_quorum()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import tempfile
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from zkop.platform.local.ensemble import LocalEnsemble, MemberStatus
from zkop.zk import auth
from zkop.zk.config import MemberAddress, ServerSettings

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also from code that already runs in an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class Member:
    """One member of a test ensemble."""

    ensemble: Ensemble
    id: int

    @property
    def address(self) -> MemberAddress:
        return next(a for a in self.ensemble.local.addresses() if a.id == self.id)

    @property
    def endpoint(self) -> str:
        return self.address.client_endpoint

    @property
    def pid(self) -> int | None:
        rec = self.ensemble.local.unit(self.id).running()
        return rec.pid if rec else None

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self.ensemble.local.kill_member(self.id)

    def stop(self, grace: float = 10.0) -> None:
        self.ensemble.local.stop_member(self.id, grace)

    def pause(self) -> None:
        """SIGSTOP: a long GC pause or a frozen VM."""
        self.ensemble.local.pause_member(self.id)

    def resume(self) -> None:
        self.ensemble.local.resume_member(self.id)

    def start(self) -> None:
        self.ensemble.local.start_member(self.id)

    def restart(self, *, wait: bool = True) -> None:
        self.ensemble.local.restart_member(self.id)
        if wait:
            self.wait_serving()

    def status(self) -> MemberStatus:
        local = self.ensemble.local
        record = local.load().member(self.id)
        return run_sync(local.observe_member(record))

    def wait_serving(self, timeout: float = 60.0) -> None:
        run_sync(self.ensemble.local.wait_serving([self.id], timeout=timeout))

    def __repr__(self) -> str:
        return f"Member(id={self.id}, endpoint={self.endpoint}, pid={self.pid})"


class Ensemble:
    """A started ensemble: connection string, member handles, leader lookup."""

    def __init__(self, local: LocalEnsemble) -> None:
        self.local = local

    @property
    def connection_string(self) -> str:
        return self.local.connection_string()

    hosts = connection_string

    @property
    def members(self) -> list[Member]:
        return [Member(self, i) for i in self.local.member_ids()]

    def member(self, member_id: int) -> Member:
        return Member(self, member_id)

    @property
    def super_auth(self) -> tuple[str, str]:
        """kazoo ``auth_data`` entry for the ensemble's super user (needed for reconfig)."""
        return auth.super_auth(self.local.super_password())

    def statuses(self) -> list[MemberStatus]:
        return run_sync(self.local.observe())

    def leader(self, timeout: float = 30.0) -> Member:
        """The member that leads now, waiting for an election to finish if one runs."""
        statuses = run_sync(self.local.wait_quorum(timeout=timeout))
        for s in statuses:
            if s.serving and s.state.mode == "leader":
                return Member(self, s.id)
        raise AssertionError("quorum without a leader")

    def followers(self) -> list[Member]:
        leader = self.leader()
        return [m for m in self.members if m.id != leader.id]

    def wait_serving(self, timeout: float = 60.0) -> None:
        run_sync(self.local.wait_serving(timeout=timeout))

    def wait_quorum(self, timeout: float = 60.0) -> None:
        run_sync(self.local.wait_quorum(timeout=timeout))

    async def await_serving(self, timeout: float = 60.0) -> None:
        await self.local.wait_serving(timeout=timeout)

    async def await_quorum(self, timeout: float = 60.0) -> None:
        await self.local.wait_quorum(timeout=timeout)

    def stop(self) -> None:
        """Stop every member this ensemble started, by pid."""
        self.local.stop(grace=5.0)


@contextlib.contextmanager
def running_ensemble(
    members: int = 3,
    *,
    state_dir: Path | None = None,
    name: str = "test",
    settings: ServerSettings | None = None,
    zookeeper_home: str | None = None,
) -> Iterator[Ensemble]:
    """Start an ensemble on free loopback ports; stop it (and remove a temporary dir) on exit."""
    own_dir = state_dir is None
    root = Path(tempfile.mkdtemp(prefix="zkop-test-")) if own_dir else state_dir
    assert root is not None
    local = LocalEnsemble(root, name)
    ensemble = Ensemble(local)
    try:
        local.create(
            members,
            settings=settings or ServerSettings(tick_time=500, init_limit=10, sync_limit=5),
            zookeeper_home=zookeeper_home,
        )
        local.start()
        run_sync(local.wait_serving(timeout=90))
        yield ensemble
    finally:
        if local.exists():
            local.stop(grace=5.0)
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
