"""The ZookeeperCluster operator against real ZooKeeper processes."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from zkop.api import ZookeeperCluster, parse_object
from zkop.cli.local import stop_everything
from zkop.client.connect import Connection
from zkop.controllers.zookeepercluster import controller as zkc_controller
from zkop.platform.base import ClusterRef
from zkop.platform.local.platform import LocalPlatform
from zkop.platform.local.zookeeper import LocalZookeeperPlatform
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.store import NotFound, Store
from zkop.testing.quorum import Writer, leader_sequence

pytestmark = pytest.mark.integration


def cluster(name: str = "zk", replicas: int = 3, *, policy: str = "Retain", paused: bool = False) -> ZookeeperCluster:
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "config": {"tickTime": 500, "initLimit": 10, "syncLimit": 5},
                "jvm": {"heap": "64Mi"},
                "storage": {"reclaimPolicy": policy},
                "paused": paused,
            },
        }
    )
    assert isinstance(obj, ZookeeperCluster)
    return obj


@dataclass
class Operator:
    store: Store
    platform: LocalZookeeperPlatform
    state_dir: Path

    async def get(self, name: str = "zk") -> ZookeeperCluster:
        obj = await self.store.get("zkc", "default", name)
        assert isinstance(obj, ZookeeperCluster)
        return obj

    async def wait(
        self, predicate: Callable[[ZookeeperCluster], bool], name: str = "zk", timeout: float = 60.0
    ) -> ZookeeperCluster:
        """Poll the object's status until the predicate holds (status has no push channel here).

        On timeout the failure shows the last status and the events, so a flake can be read.
        """
        last: ZookeeperCluster | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        last = await self.get(name)
                        if predicate(last):
                            return last
                    except NotFound:
                        pass
                    await asyncio.sleep(0.2)
        except TimeoutError:
            events = await self.store.list_events("default", kind="zkc", name=name)
            story = "\n".join(f"  {e.reason}: {e.message}" for e in events)
            status = last.status.model_dump_json(indent=1, exclude_none=True) if last else "(no object)"
            raise AssertionError(f"timed out after {timeout:g}s; status:\n{status}\nevents:\n{story}") from None

    async def change(self, name: str = "zk", **spec: Any) -> None:
        obj = await self.get(name)
        await self.store.update(obj.model_copy(update={"spec": obj.spec.model_copy(update=spec)}))

    async def wait_event(self, reason: str, count: int, name: str = "zk", timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while (await self.reasons(name)).count(reason) < count:  # noqa: ASYNC110 - polled store
                await asyncio.sleep(0.2)

    async def wait_gone(self, name: str = "zk", timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.get(name)
                except NotFound:
                    return
                await asyncio.sleep(0.2)

    async def reasons(self, name: str = "zk") -> list[str]:
        return [e.reason for e in await self.store.list_events("default", kind="zkc", name=name)]


def available(replicas: int) -> Callable[[ZookeeperCluster], bool]:
    def check(obj: ZookeeperCluster) -> bool:
        s = obj.status
        avail = next((c for c in s.conditions if c.type == "Available"), None)
        return (
            s.phase == "Running"
            and s.ready_replicas == replicas
            and s.replicas == replicas
            and avail is not None
            and avail.status == "True"
            and s.observed_generation == obj.metadata.generation
        )

    return check


@pytest.fixture
async def operator(connection: Connection, store: Store, tmp_path: Path) -> AsyncIterator[Operator]:
    state = tmp_path / "state"
    local = LocalPlatform(state, "zkop-operator")
    platform = LocalZookeeperPlatform(state, local.fence)
    reconciler = zkc_controller.ZookeeperClusterReconciler(platform, unresponsive_grace=5.0)
    ctrl = zkc_controller.Controller("zookeepercluster", "ZookeeperCluster", reconciler, max_concurrent_reconciles=2)
    manager = Manager(
        connection,
        ManagerOptions(name="zkc-test", session_timeout=6.0, metrics_port=None),
        controllers=[ctrl],
        platforms=[local],
    )
    task = asyncio.create_task(manager.run())
    try:
        yield Operator(store, platform, state)
    finally:
        manager.stop()
        await task
        await asyncio.to_thread(stop_everything, state, 5.0)  # every member this test started


async def test_create_scale_roll_keeps_every_acknowledged_write(operator: Operator) -> None:
    await operator.store.create(cluster(replicas=3))
    obj = await operator.wait(available(3))
    assert obj.status.connection_string and obj.status.leader
    assert zkc_controller.FINALIZER in obj.metadata.finalizers
    writer = Writer(obj.status.connection_string)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        await operator.change(replicas=5)
        obj = await operator.wait(available(5))
        assert [m.id for m in obj.status.members] == [1, 2, 3, 4, 5]
        await operator.change(replicas=3)
        obj = await operator.wait(available(3))
        assert len(obj.status.members) == 3 and obj.status.leader in {m.id for m in obj.status.members}
        # Roll every member by a configuration change; watch the leader meanwhile.
        hosts = (obj.status.connection_string or "").split(",")
        stop = asyncio.Event()
        watcher = asyncio.create_task(leader_sequence(hosts, stop))
        before = await operator.get()
        config = before.spec.config.model_copy(update={"max_client_cnxns": 100})
        await operator.change(config=config)
        await operator.wait(lambda o: o.status.observed_generation == o.metadata.generation and available(3)(o))
        await operator.wait_event("RollingRestart", 3)
        await operator.wait(available(3))
        stop.set()
        leaders = await watcher
        assert len(leaders) == 2, f"a rolling restart changes the leader exactly once, saw {leaders}"
    finally:
        writer.stop.set()
        await asyncio.to_thread(thread.join, 30)
    assert len(writer.acked) > 100
    missing = await asyncio.to_thread(writer.lost)
    assert not missing, f"{len(missing)} acknowledged writes lost"
    reasons = await operator.reasons()
    for reason in ("Created", "MemberAdded", "MemberRemoved", "RollingRestart"):
        assert reason in reasons


async def test_heal_kill_and_lost_data(operator: Operator) -> None:
    await operator.store.create(cluster(replicas=3))
    obj = await operator.wait(available(3))
    ens = operator.platform.ensemble(ClusterRef("default", "zk"))
    leader = obj.status.leader
    assert leader is not None
    follower = next(m.id for m in obj.status.members if m.id != leader)
    for victim in (follower, leader):
        pid = ens.unit(victim).running()
        assert pid is not None
        ens.kill_member(victim)
        await operator.wait(
            lambda o, v=victim, p=pid.pid: (
                available(3)(o) and ens.unit(v).running() is not None and ens.unit(v).running().pid != p
            )
        )  # type: ignore[union-attr]
    assert "Healed" in await operator.reasons()
    # A member whose data dir is gone rejoins under a new id; its old id is never reused.
    obj = await operator.get()
    lost = next(m.id for m in obj.status.members if m.id != obj.status.leader)
    shutil.rmtree(ens.data_dir(lost))
    obj = await operator.wait(lambda o: available(3)(o) and lost not in {m.id for m in o.status.members})
    ids = sorted(m.id for m in obj.status.members)
    assert max(ids) == 4 and lost not in ids
    # The same when the process is gone too (a disk lost with its machine): removed, replaced,
    # and the dead member is forgotten, its directory kept aside by Retain.
    gone = next(m.id for m in obj.status.members if m.id != obj.status.leader)
    ens.kill_member(gone)
    shutil.rmtree(ens.data_dir(gone))
    obj = await operator.wait(lambda o: available(3)(o) and gone not in {m.id for m in o.status.members})
    ids = sorted(m.id for m in obj.status.members)
    assert max(ids) == 5 and gone not in ids and lost not in ids
    assert (ens.dir / "retained" / str(gone)).is_dir()


async def test_pause_and_quorum_loss_take_no_destructive_action(operator: Operator) -> None:
    await operator.store.create(cluster(replicas=3))
    obj = await operator.wait(available(3))
    ens = operator.platform.ensemble(ClusterRef("default", "zk"))
    # Paused: a killed member stays down, the status still reports it.
    await operator.change(paused=True)
    await operator.wait(lambda o: o.status.phase == "Paused")
    victim = next(m.id for m in obj.status.members if m.id != obj.status.leader)
    ens.kill_member(victim)
    await operator.wait(lambda o: o.status.ready_replicas == 2 and o.status.phase == "Paused")
    assert ens.unit(victim).running() is None
    await operator.change(paused=False)
    await operator.wait(available(3))
    # Quorum loss: two members frozen. Nothing is removed or restarted; it recovers on resume.
    before = await operator.reasons()
    frozen = [m.id for m in (await operator.get()).status.members][:2]
    for i in frozen:
        ens.pause_member(i)
    await operator.wait(
        lambda o: any(c.type == "Degraded" and c.status == "True" for c in o.status.conditions), timeout=30
    )
    after = await operator.reasons()
    assert "QuorumLost" in after
    destructive = {"MemberRemoved", "MemberStopped", "RollingRestart"}
    assert not destructive & set(after[len(before) :]), "no destructive action without quorum"
    for i in frozen:
        ens.resume_member(i)
    await operator.wait(available(3))


async def test_an_unresponsive_member_is_replaced(operator: Operator) -> None:
    """A frozen follower (SIGSTOP: serves nothing, yet its process lives) is removed from the
    configuration after the grace period (5 s here), replaced by a new id, and stopped."""
    await operator.store.create(cluster(replicas=3))
    obj = await operator.wait(available(3))
    ens = operator.platform.ensemble(ClusterRef("default", "zk"))
    frozen = next(m.id for m in obj.status.members if m.id != obj.status.leader)
    record = ens.unit(frozen).running()
    assert record is not None
    ens.pause_member(frozen)
    try:
        obj = await operator.wait(lambda o: available(3)(o) and frozen not in {m.id for m in o.status.members})
    finally:
        if ens.unit(frozen).running() is not None:
            ens.resume_member(frozen)  # (a failed test must not leave a stopped JVM behind)
    assert sorted(m.id for m in obj.status.members) == sorted({1, 2, 3, 4} - {frozen})
    assert not psutil.pid_exists(record.pid) or psutil.Process(record.pid).status() == psutil.STATUS_ZOMBIE
    events = await operator.store.list_events("default", kind="zkc", name="zk")
    assert any(e.reason == "MemberRemoved" and "Unresponsive" in e.message for e in events), [
        (e.reason, e.message) for e in events
    ]


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
async def test_delete_applies_the_reclaim_policy(operator: Operator, policy: str) -> None:
    await operator.store.create(cluster(replicas=3, policy=policy))
    await operator.wait(available(3))
    ens = operator.platform.ensemble(ClusterRef("default", "zk"))
    pids = [r.pid for r in ens.running_members().values()]
    assert len(pids) == 3
    await operator.store.delete("zkc", "default", "zk")
    await operator.wait_gone()
    assert not ens.exists()
    retained = list((operator.state_dir / "retained").glob("zkc-default-zk-*"))
    if policy == "Retain":
        assert retained and (retained[0] / "members").is_dir()
    else:
        assert not retained


async def test_restart_request_rolls_followers_first_leader_last(operator: Operator, connection: Connection) -> None:
    from zkop.cli.cluster import _restart

    await operator.store.create(cluster(replicas=3))
    obj = await operator.wait(available(3))
    leader = obj.status.leader
    stamp = await _restart(connection, "default", "zk")
    await operator.wait_event("RollingRestart", 3)
    obj = await operator.wait(lambda o: available(3)(o) and o.status.restarted_at == stamp)
    events = [
        e for e in await operator.store.list_events("default", kind="zkc", name="zk") if e.reason == "RollingRestart"
    ]
    order = [int(e.message.split()[2]) for e in events]
    assert sorted(order) == [1, 2, 3] and order[-1] == leader, f"leader {leader} must restart last: {order}"
    # The request is served once: no further restarts.
    assert (await operator.reasons()).count("RollingRestart") == 3
