"""``zkop recover zkc NAME``: a ZookeeperCluster that lost quorum for good, rebuilt from its
survivor, against real ZooKeeper processes, a real operator and the real CLI (a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from tests.integration import test_zookeepercluster as zkc_tests
from tests.integration.test_zookeepercluster import Operator, available, cluster
from zkop.api import ZookeeperCluster
from zkop.cli.recover import RECOVERY_ANNOTATION
from zkop.client.connect import Connection
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.platform.local.zookeeper import ensemble_name
from zkop.testing.quorum import Writer
from zkop.zk.txnlog import read_data_dir

pytestmark = pytest.mark.integration

operator = zkc_tests.operator  # the fixture: a control plane with a ZookeeperCluster operator

STEPS = [
    "RecoveryPaused",
    "RecoveryMembersStopped",
    "RecoveryReconfigured",
    "RecoverySurvivorServing",
    "RecoveryMembersForgotten",
    "RecoveryCompleted",
]


async def zkop(connection: Connection, state: Path, *args: str) -> tuple[int, str, str]:
    """Run the ``zkop`` command line in a subprocess against the test's control plane."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZKOP_")}
    env |= {"ZKOP_AUTH": f"{connection.user}:{connection.password}", "ZKOP_ROOT": connection.root}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zkop.cli.main",
        "--state-dir",
        str(state),
        *args,
        "--zk",
        connection.hosts,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def zxids(ens: LocalEnsemble) -> dict[int, int | None]:
    return {s.id: s.state.zxid for s in await ens.observe(timeout=1.0)}


async def converged(ens: LocalEnsemble, timeout: float = 30.0) -> int:
    """Wait until every member serves the same zxid (each has every write); return it."""
    async with asyncio.timeout(timeout):
        while True:
            seen = set((await zxids(ens)).values())
            if len(seen) == 1 and None not in seen:
                (zxid,) = seen
                assert zxid is not None
                return zxid
            await asyncio.sleep(0.1)


def lose_for_good(ens: LocalEnsemble, victims: list[int]) -> None:
    """Members whose data is gone and whose processes are dead: frozen first (SIGSTOP, so the
    operator cannot heal nor replace them in between), data deleted, then kill -9."""
    for v in victims:
        assert ens.pause_member(v)
    for v in victims:
        shutil.rmtree(ens.data_dir(v))
    for v in victims:
        assert ens.kill_member(v)


def quorum_lost(o: ZookeeperCluster) -> bool:
    return any(c.type == "Degraded" and c.status == "True" and c.reason == "QuorumLost" for c in o.status.conditions)


@pytest.mark.timeout(300)
async def test_recover_rebuilds_from_the_survivor_with_every_write_it_had(
    operator: Operator, connection: Connection
) -> None:
    await operator.store.create(cluster(replicas=3))
    obj = await operator.wait(available(3))
    ens = LocalEnsemble(operator.state_dir, ensemble_name("default", "zk"))
    writer = Writer(obj.status.connection_string or "")
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        async with asyncio.timeout(60):
            while len(writer.acked) < 300:  # noqa: ASYNC110 - a thread's progress
                await asyncio.sleep(0.05)
    finally:
        writer.stop.set()
        await asyncio.to_thread(thread.join, 30)
    last = await converged(ens)
    statuses = await ens.observe()
    survivor = next(s.id for s in statuses if s.state.mode == "follower")
    victims = [s.id for s in statuses if s.id != survivor]  # the leader among them
    lose_for_good(ens, victims)
    await operator.wait(quorum_lost, timeout=30)

    # The inspection: read from disk, since nobody serves.
    code, out, err = await zkop(connection, operator.state_dir, "recover", "zkc", "zk", "--dry-run", "-o", "json")
    assert code == 0, err
    seen = json.loads(out)
    assert seen["quorum"] == {"participants": 3, "serving": 0, "needed": 2, "held": False}
    assert seen["decision"]["recoverable"] and seen["decision"]["survivor"] == survivor
    assert seen["decision"]["forget"] == sorted(victims)
    by_id = {m["id"]: m for m in seen["members"]}
    assert by_id[survivor]["lastZxid"] == f"0x{last:x}" and by_id[survivor]["dataPresent"]
    assert all(not by_id[v]["dataPresent"] and by_id[v]["process"] == "down" for v in victims)
    code, out, _ = await zkop(connection, operator.state_dir, "recover", "zkc", "zk", "--dry-run")
    assert code == 0 and "LAST ZXID" in out and f"0x{last:x}" in out
    assert (await operator.get()).spec.paused is False  # a dry run changes nothing

    # The recovery.
    code, out, err = await zkop(connection, operator.state_dir, "recover", "zkc", "zk", "--yes")
    assert code == 0, f"{out}\n{err}"
    assert "Traceback" not in err
    obj = await operator.wait(
        lambda o: available(3)(o) and {m.id for m in o.status.members} - {survivor} == {4, 5}, timeout=120
    )
    assert obj.spec.paused is False and RECOVERY_ANNOTATION not in obj.metadata.annotations
    assert ens.load().next_id == 6 and sorted(ens.member_ids()) == sorted([survivor, 4, 5])
    for v in victims:
        assert (ens.dir / "retained" / str(v)).is_dir(), f"member {v}'s directory is kept"
    backups = list((ens.dir / "retained").glob(f"recovery-*/member-{survivor}/data/version-2"))
    assert backups and read_data_dir(backups[0]).last_zxid == last

    client = KazooClient(obj.status.connection_string or "", timeout=10)
    client.start(timeout=20)
    try:
        client.sync("/seq")
        present = {int(n[1:]) for n in client.get_children("/seq")}
    finally:
        client.stop()
        client.close()
    missing = [i for i in writer.acked if i not in present]
    assert not missing, f"{len(missing)} of {len(writer.acked)} acknowledged writes lost"

    events = await operator.store.list_events("default", kind="zkc", name="zk")
    reasons = [e.reason for e in events]
    positions = [reasons.index(r) for r in STEPS]
    assert positions == sorted(positions), reasons
    assert not [e for e in events if e.type == "Warning" and e.reason.startswith("Recovery")]
    served = next(e for e in events if e.reason == "RecoverySurvivorServing")
    assert f"0x{last:x}" in served.message and f"member {survivor}" in served.message
    # The operator did the rest by its usual path, after the recovery.
    assert reasons.index("MemberAdded", positions[-1]) > positions[-1]


@pytest.mark.timeout(240)
async def test_recover_is_refused_while_quorum_holds_and_without_survivors(
    operator: Operator, connection: Connection
) -> None:
    await operator.store.create(cluster(replicas=3))
    obj = await operator.wait(available(3))
    ens = LocalEnsemble(operator.state_dir, ensemble_name("default", "zk"))
    pids = {i: r.pid for i, r in ens.running_members().items()}
    before = await operator.reasons()

    async def refused(*args: str, says: str) -> None:
        code, out, err = await zkop(connection, operator.state_dir, "recover", *args)
        assert code == 1, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], err
        assert "Traceback" not in err and out == ""

    await refused("zkc", "zk", "--yes", says="has quorum")
    await refused("zkc", "zk", says="stdin is not a terminal")  # no --yes, no TTY
    await refused("zkc", "nope", "--yes", says="zookeepercluster default/nope not found")
    await refused("zkc", "zk", "-n", "other", "--yes", says="not found")
    await refused("app", "zk", "--yes", says="zookeeperclusters")
    code, out, err = await zkop(connection, operator.state_dir, "recover", "zkc", "zk", "--dry-run", "-o", "yaml")
    assert code == 0, err
    assert "recoverable: false" in out and "QuorumHeld" in out
    # Nothing changed: same processes, not paused, no recovery events.
    assert {i: r.pid for i, r in ens.running_members().items()} == pids
    now = await operator.get()
    assert now.spec.paused is False and RECOVERY_ANNOTATION not in now.metadata.annotations
    assert await operator.reasons() == before
    assert obj.metadata.generation == now.metadata.generation

    # Every member's data gone: nothing to rebuild from.
    lose_for_good(ens, sorted(pids))
    await operator.wait(quorum_lost, timeout=30)
    await refused("zkc", "zk", "--yes", says="no participant has data")
    assert not [r for r in await operator.reasons() if r.startswith("Recovery")]
