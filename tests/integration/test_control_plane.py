"""The control plane heals itself: the keeper restarts, replaces and scales its members."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from zkop.cli import connection
from zkop.cli.local import stop_everything
from zkop.platform.local import keeper, statedir
from zkop.platform.local.ensemble import LocalEnsemble, MemberStatus

pytestmark = pytest.mark.integration


def zkop(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zkop.cli.main", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, ZKOP_STATE_DIR=str(state_dir), COLUMNS="200"),
        timeout=240,
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    result = zkop(tmp_path, "up", "-d")
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield tmp_path
    finally:
        stop_everything(tmp_path, grace=5)  # also when the test failed


def control_plane(state: Path) -> LocalEnsemble:
    return LocalEnsemble(state, statedir.CONTROL_PLANE)


def wait_for(what: str, check: Callable[[], Any], state: Path, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; on timeout show the keeper's events."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            story = "\n".join(f"  {e['reason']}: {e['message']}" for e in keeper.EventLog(state).read())
            raise AssertionError(f"timed out waiting for {what}; control-plane events:\n{story}")
        time.sleep(0.2)


def observe(state: Path) -> list[MemberStatus]:
    return asyncio.run(control_plane(state).observe(timeout=0.5))


def serving(state: Path, ids: set[int]) -> Callable[[], bool]:
    def check() -> bool:
        members = observe(state)
        return {m.id for m in members} == ids and all(m.serving for m in members)

    return check


def reasons(state: Path) -> list[str]:
    return [e["reason"] for e in keeper.EventLog(state).read()]


def pid_of(state: Path, member_id: int) -> int:
    rec = control_plane(state).unit(member_id).running()
    assert rec is not None
    return rec.pid


def client(state: Path) -> KazooClient:
    conn = connection.resolve(None, state)
    zk = KazooClient(conn.hosts, auth_data=conn.auth_data, timeout=10)
    zk.start(timeout=30)
    return zk


def test_killed_members_come_back_with_their_id_and_data_one_after_another(state: Path) -> None:
    zk = client(state)
    try:
        zk.create("/kept", b"before the kills")
    finally:
        zk.stop()
        zk.close()
    assert keeper.holder(state) is not None, "zkop up -d starts a keeper"

    first, second = 1, 2
    os.kill(pid_of(state, first), signal.SIGKILL)
    wait_for("member 1 back", lambda: serving(state, {1, 2, 3})() and observe(state)[0].restarts == 1, state)
    assert reasons(state).count("Healed") == 1
    # The second loss happens only after the first is back: one at a time, never two down.
    os.kill(pid_of(state, second), signal.SIGKILL)
    wait_for("member 2 back", lambda: serving(state, {1, 2, 3})() and observe(state)[1].restarts == 1, state)
    assert reasons(state).count("Healed") == 2

    status = json.loads(zkop(state, "status", "-o", "json").stdout)
    assert [(m["myid"], m["restarts"]) for m in status["members"]] == [(1, 1), (2, 1), (3, 0)]
    assert [e["reason"] for e in status["events"]].count("Healed") == 2
    zk = client(state)
    try:
        assert zk.get("/kept")[0] == b"before the kills"
    finally:
        zk.stop()
        zk.close()
    table = zkop(state, "status").stdout
    assert "Healed" in table and "keeper:" in table


def test_a_member_whose_data_is_lost_is_replaced_by_a_new_id(state: Path) -> None:
    ens = control_plane(state)
    # Frozen while its data goes, then killed: the keeper sees the exit at once, and it must
    # not find the data still there.
    pid = pid_of(state, 3)
    os.kill(pid, signal.SIGSTOP)
    shutil.rmtree(ens.data_dir(3))
    os.kill(pid, signal.SIGKILL)
    wait_for(
        "member 3 replaced by member 4",
        lambda: serving(state, {1, 2, 4})() and "MemberAdded" in reasons(state),
        state,
        timeout=90,
    )
    assert ens.load().next_id == 5
    assert reasons(state) == ["MemberRemoved", "MemberStopped", "MemberStarting", "MemberAdded"]
    # The old id's leftovers are kept aside, never attached to a new id.
    assert (ens.dir / "retained" / "3").exists()


def test_scale_a_running_control_plane_and_the_keeper_is_kept_by_the_operators(state: Path) -> None:
    up = zkop(state, "up", "-d", "--members", "5")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "the control plane has 5 members" in up.stdout
    assert serving(state, {1, 2, 3, 4, 5})()
    down = zkop(state, "up", "-d", "--members", "3")
    assert down.returncode == 0, down.stdout + down.stderr
    wait_for("3 members", lambda: len(observe(state)) == 3 and all(m.serving for m in observe(state)), state)
    assert reasons(state).count("MemberAdded") == 2 and reasons(state).count("MemberRemoved") == 2

    # The keeper process dies: an operator replica takes the lock and starts it again.
    rec = keeper.keeper_unit(state).running()
    assert rec is not None
    os.kill(rec.pid, signal.SIGKILL)
    wait_for("the keeper restarted", lambda: "ProcessRestarted" in reasons(state), state)
    restarted = keeper.keeper_unit(state).running()
    assert restarted is not None and restarted.pid != rec.pid

    assert "out of range" in zkop(state, "up", "-d", "--members", "12").stderr
