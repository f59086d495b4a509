"""``zkop demo``: a narrated tour on real processes, with measured timings."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from kazoo.client import KazooClient

from zkop.cli.local import MEMBER_COLUMNS, member_rows, stop_everything
from zkop.cli.output import console, table
from zkop.errors import ZkopError
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.zk.config import ServerSettings


@dataclass
class Tour:
    state_dir: Path
    timings: list[tuple[str, float, str]] = field(default_factory=list)

    async def step(self, title: str, action: Callable[[], Awaitable[str]]) -> None:
        console.rule(f"[bold]{title}")
        started = time.monotonic()
        with console.status(title + " ..."):
            detail = await action()
        elapsed = time.monotonic() - started
        self.timings.append((title, elapsed, detail))
        console.print(f"[green]done[/] in {elapsed:.2f}s: {detail}")


def _client(hosts: str) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=10)
    client.start(timeout=20)
    return client


def demo_config(state_dir: Path) -> Path:
    """A short session timeout so a killed leader is replaced within a few seconds."""
    path = state_dir / "demo-operator.yaml"
    path.write_text(
        "apiVersion: zkop.io/v1\nkind: OperatorConfig\nmetadata:\n  name: demo\n"
        "spec:\n  leaderElection:\n    leaderElect: true\n    sessionTimeoutSeconds: 4\n"
    )
    return path


async def run_demo(state_dir: Path, keep: bool) -> None:
    tour = Tour(state_dir)
    ensemble = LocalEnsemble(state_dir, statedir.CONTROL_PLANE)

    async def up() -> str:
        if not ensemble.exists():
            ensemble.create(3, settings=ServerSettings(tick_time=1000))
        ensemble.start()
        statuses = await ensemble.wait_serving(timeout=90)
        console.print(table(MEMBER_COLUMNS, member_rows(statuses, ensemble.name)))
        return f"3 members serving at {ensemble.connection_string()}"

    async def write() -> str:
        def work() -> str:
            client = _client(ensemble.connection_string())
            try:
                client.ensure_path("/demo")
                for i in range(100):
                    client.create(f"/demo/item-{i:03d}", str(i).encode())
                return str(len(client.get_children("/demo")))
            finally:
                client.stop()

        count = await asyncio.to_thread(work)
        return f"{count} znodes written under /demo"

    async def kill_leader() -> str:
        leader = await ensemble.leader()
        if leader is None:
            raise ZkopError("no leader to kill")
        ensemble.kill_member(leader)
        statuses = await ensemble.wait_quorum(timeout=60)
        new = next(s.id for s in statuses if s.serving and s.state.mode == "leader")
        return f"killed leader {leader} (kill -9); member {new} leads now"

    async def heal() -> str:
        down = [s.id for s in await ensemble.observe() if not s.running]
        ensemble.start(down)
        await ensemble.wait_serving(timeout=60)

        def count() -> int:
            client = _client(ensemble.connection_string())
            try:
                return len(client.get_children("/demo"))
            finally:
                client.stop()

        kept = await asyncio.to_thread(count)
        if kept != 100:
            raise ZkopError(f"expected 100 znodes after the restart, found {kept}")
        return f"restarted member(s) {down}; all {kept} znodes are there"

    async def operators() -> str:
        from zkop.cli import operator as op
        from zkop.client import connect

        op.start_replicas(state_dir, 2, demo_config(state_dir))
        data = await op.wait_leader(connect.resolve(None, state_dir), timeout=60)
        return f"{data['replicas']} replicas; {data['leader']} leads in epoch {data['epoch']}"

    async def operator_failover() -> str:
        import os
        import signal

        from zkop.cli import operator as op
        from zkop.client import connect

        conn = connect.resolve(None, state_dir)
        before = await op.wait_leader(conn, timeout=30)
        n = int(str(before["leader"]).rsplit("-", 1)[1])
        rec = op.replica_unit(state_dir, n).running()
        if rec is None:
            raise ZkopError(f"leader {before['leader']} has no running process")
        os.kill(rec.pid, signal.SIGKILL)
        killed = time.monotonic()
        while True:
            after = await op.wait_leader(conn, timeout=60)
            if after["leader"] != before["leader"]:
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - killed
        # Bring the killed replica back as a standby.
        op.start_replicas(state_dir, 2, demo_config(state_dir))
        return (
            f"killed {before['leader']} (kill -9, epoch {before['epoch']}); {after['leader']} leads "
            f"in epoch {after['epoch']} after {took:.2f}s"
        )

    await tour.step("Start a 3-member control plane", up)
    await tour.step("Write 100 znodes", write)
    await tour.step("Kill the ZooKeeper leader", kill_leader)
    await tour.step("Restart the killed member", heal)
    await tour.step("Start 2 operator replicas (leader election with fencing)", operators)
    await tour.step("Kill the operator leader", operator_failover)

    console.rule("[bold]Summary")
    console.print(
        table(
            ("STEP", "SECONDS", "RESULT"),
            [(title, f"{secs:.2f}", detail) for title, secs, detail in tour.timings],
        )
    )


def demo(state_dir: Path | None, keep: bool) -> None:
    own = state_dir is None
    root = Path(tempfile.mkdtemp(prefix="zkop-demo-")) if state_dir is None else state_dir
    try:
        asyncio.run(run_demo(root, keep))
    finally:
        if keep:
            console.print(
                f"left running (--keep); inspect with: ZKOP_STATE_DIR={root} zkop status; "
                f"stop with: ZKOP_STATE_DIR={root} zkop down --purge --yes"
            )
        else:
            stop_everything(root, grace=5)
            if own:
                shutil.rmtree(root, ignore_errors=True)
            console.print("cleaned up: every process the demo started is stopped")
