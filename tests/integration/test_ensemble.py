"""Local ensembles as supervised processes, against real ZooKeeper."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from kazoo.client import KazooClient

from zkop.platform.local.ensemble import LocalEnsemble, MemberExitedError, PortInUseError
from zkop.platform.local.process import PidRecord, ProcessUnit
from zkop.testing import Ensemble, run_sync
from zkop.zk import fourlw

pytestmark = pytest.mark.integration


def connect(hosts: str, **kwargs: object) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=10, **kwargs)
    client.start(timeout=20)
    return client


def test_single_member_serves_and_answers_four_letter_words(zk_single: Ensemble) -> None:
    member = zk_single.members[0]
    status = member.status()
    # standaloneEnabled=false: even one member runs as a quorum peer, so reconfig can grow it.
    assert status.serving and status.state.mode == "leader"
    host, port = member.endpoint.split(":")
    assert run_sync(fourlw.ruok(host, int(port)))
    conf = run_sync(fourlw.conf(host, int(port)))
    assert [m.id for m in conf.members] == [1]
    assert conf.config_version is not None
    client = connect(zk_single.connection_string)
    try:
        client.create("/hello", b"world")
        assert client.get("/hello")[0] == b"world"
    finally:
        client.stop()


def test_three_members_reach_quorum_with_one_leader(zk_ensemble: Ensemble) -> None:
    statuses = zk_ensemble.statuses()
    assert all(s.serving for s in statuses)
    modes = sorted(s.state.mode for s in statuses)
    assert modes == ["follower", "follower", "leader"]
    assert all(not s.state.syncing for s in statuses)


def test_reconfig_needs_the_super_user(zk_ensemble: Ensemble) -> None:
    from kazoo.exceptions import NoAuthError

    anonymous = connect(zk_ensemble.connection_string)
    try:
        with pytest.raises(NoAuthError):
            anonymous.reconfig(joining=None, leaving="3", new_members=None)
    finally:
        anonymous.stop()
    # Talk to one follower and remove the other: neither our connection nor the leader goes.
    stay, leave = zk_ensemble.followers()
    admin = connect(stay.endpoint, auth_data=[zk_ensemble.super_auth])
    try:
        data, _ = admin.reconfig(joining=None, leaving=str(leave.id), new_members=None)
        assert f"server.{leave.id}=".encode() not in data
    finally:
        admin.stop()


def test_killing_the_leader_elects_another(zk_ensemble: Ensemble) -> None:
    old = zk_ensemble.leader()
    old.kill()
    new = zk_ensemble.leader(timeout=30)
    assert new.id != old.id
    old.start()
    old.wait_serving()
    assert old.status().state.mode == "follower"


def test_kill_all_then_start_keeps_every_znode(zk_ensemble: Ensemble) -> None:
    client = connect(zk_ensemble.connection_string)
    try:
        client.ensure_path("/keep")
        for i in range(50):
            client.create(f"/keep/n{i:03d}", str(i).encode())
    finally:
        client.stop()
    for member in zk_ensemble.members:
        member.kill()
    assert all(not s.running for s in zk_ensemble.statuses())
    zk_ensemble.local.start()
    zk_ensemble.wait_serving()
    client = connect(zk_ensemble.connection_string)
    try:
        children = sorted(client.get_children("/keep"))
        assert children == [f"n{i:03d}" for i in range(50)]
        assert client.get("/keep/n042")[0] == b"42"
    finally:
        client.stop()
    assert all(s.restarts == 1 for s in zk_ensemble.statuses())


def test_a_new_supervisor_adopts_running_members(zk_ensemble: Ensemble) -> None:
    before = {m.id: m.pid for m in zk_ensemble.members}
    fresh = LocalEnsemble(zk_ensemble.local.state_dir, zk_ensemble.local.name)
    assert {i: r.pid for i, r in fresh.running_members().items()} == before
    fresh.start()  # must not start anything twice
    assert {i: r.pid for i, r in fresh.running_members().items()} == before
    statuses = run_sync(fresh.observe())
    assert all(s.serving for s in statuses)


def test_stop_leaves_no_process_behind(zk_ensemble: Ensemble) -> None:
    pids = [m.pid for m in zk_ensemble.members]
    assert all(pids)
    stopped = zk_ensemble.local.stop(grace=5)
    assert sorted(stopped) == [1, 2, 3]
    for pid in pids:
        assert pid is not None
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_pause_and_resume(zk_ensemble: Ensemble) -> None:
    follower = zk_ensemble.followers()[0]
    follower.pause()
    status = follower.status()
    assert status.paused and not status.serving and status.role == "paused"
    follower.resume()
    follower.wait_serving()


def test_reused_pid_is_not_taken_for_a_member(tmp_path: Path) -> None:
    # A live process that is not ours, recorded with another start time: a reused pid.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        unit = ProcessUnit(tmp_path / "unit")
        unit.directory.mkdir()
        real = psutil.Process(stranger.pid).create_time()
        unit.pid_file.write_text(PidRecord(stranger.pid, real - 1000.0, ("java",), 0.0).to_json())
        assert unit.running() is None
        assert not unit.stop(grace=1)
        assert not unit.kill()
        assert stranger.poll() is None, "a stranger's process must never be signalled"
    finally:
        stranger.kill()
        stranger.wait()


def test_member_that_exits_at_start_shows_its_log(tmp_path: Path) -> None:
    ensemble = LocalEnsemble(tmp_path, "broken")
    ensemble.create(1)
    (ensemble.data_dir(1) / "myid").write_text("not-a-number\n")
    try:
        ensemble.start()
        with pytest.raises(MemberExitedError) as info:
            run_sync(ensemble.wait_serving(timeout=60))
        assert "member 1 exited" in str(info.value)
        assert info.value.log_tail, "the error carries the last lines of the member's log"
    finally:
        ensemble.stop(grace=2)


def test_taken_port_is_reported(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        ensemble = LocalEnsemble(tmp_path, "clash")
        with pytest.raises(PortInUseError) as info:
            ensemble.create(1, port_base=port)
        assert str(port) in str(info.value)
        assert not ensemble.exists(), "nothing is written when the ports are taken"


def test_kept_port_taken_while_member_is_down(zk_single: Ensemble) -> None:
    import socket

    member = zk_single.members[0]
    port = int(member.endpoint.rsplit(":", 1)[1])
    member.stop(grace=5)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the old socket may linger
        sock.bind(("127.0.0.1", port))
        sock.listen()
        with pytest.raises(PortInUseError) as info:
            member.start()
        assert f"client port {port}" in str(info.value)
        assert str(os.getpid()) in str(info.value)
    assert member.pid is None


def test_sigterm_stop_is_clean(zk_single: Ensemble) -> None:
    member = zk_single.members[0]
    pid = member.pid
    assert pid is not None
    t0 = time.monotonic()
    member.stop(grace=10)
    assert time.monotonic() - t0 < 10, "ZooKeeper exits on SIGTERM without needing SIGKILL"
    assert member.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
