"""The ZookeeperCluster operator: time to Available, heal, scale, and a rolling restart under writes.

    python bench/zookeepercluster.py [--reps 3] [--roll-reps 2]

Baselines measured in the same run, interleaved with the operator's runs:

* the bare start of the same JVMs: ``LocalEnsemble`` create + start + wait_serving of N
  members with exactly the settings the operator derives from the spec, no operator;
* one bare ZooKeeper JVM start (``bare_jvm_start`` of bench/ensemble.py);
* a follower of a bare 3-member ensemble killed and started again by hand, until it serves
  (ZooKeeper's own share of a heal: the JVM start, election and sync from the leader).

The operator runs in-process with its production controller settings (a control-plane
ZooKeeper, ``Manager``, ``LocalPlatform``). Writes bench/results/zookeepercluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ratio, summary, write
from ensemble import bare_jvm_start
from zkop.api import ZookeeperCluster, parse_object
from zkop.cli.local import stop_everything
from zkop.client.connect import Connection
from zkop.controllers.zookeepercluster import controller as zkc_controller
from zkop.platform.base import ClusterRef
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.platform.local.platform import LocalPlatform
from zkop.platform.local.zookeeper import LocalZookeeperPlatform
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.store import NotFound, Store
from zkop.testing import running_ensemble
from zkop.testing.quorum import Writer, leader_sequence
from zkop.zk import fourlw

POLL = 0.05  # how often the bench reads the stored status (the operator's own periods are untouched)
from zkop.controllers.zookeepercluster.controller import DONE_PERIOD, WAIT_PERIOD


def cluster(name: str, replicas: int) -> ZookeeperCluster:
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "config": {"tickTime": 500, "initLimit": 10, "syncLimit": 5},
                "jvm": {"heap": "64Mi"},
                "storage": {"reclaimPolicy": "Delete"},
            },
        }
    )
    assert isinstance(obj, ZookeeperCluster)
    return obj


# The bare ensembles get exactly the server settings the operator renders for this spec.
SETTINGS = zkc_controller.desired_settings(cluster("settings", 3))


def available(replicas: int) -> Callable[[ZookeeperCluster], bool]:
    """The integration test's definition: Running, every participant serving, Available=True, current."""

    def check(o: ZookeeperCluster) -> bool:
        s = o.status
        avail = next((c for c in s.conditions if c.type == "Available"), None)
        return (
            s.phase == "Running"
            and s.ready_replicas == replicas
            and s.replicas == replicas
            and avail is not None
            and avail.status == "True"
            and s.observed_generation == o.metadata.generation
        )

    return check


@dataclass
class Ops:
    store: Store
    platform: LocalZookeeperPlatform

    async def get(self, name: str) -> ZookeeperCluster:
        obj = await self.store.get("zkc", "default", name)
        assert isinstance(obj, ZookeeperCluster)
        return obj

    async def wait(
        self, name: str, pred: Callable[[ZookeeperCluster], bool], timeout: float = 120.0
    ) -> ZookeeperCluster:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    obj = await self.get(name)
                    if pred(obj):
                        return obj
                except NotFound:
                    pass
                await asyncio.sleep(POLL)

    async def wait_gone(self, name: str, timeout: float = 120.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.get(name)
                except NotFound:
                    return
                await asyncio.sleep(POLL)

    async def change(self, name: str, **spec: Any) -> None:
        obj = await self.get(name)
        await self.store.update(obj.model_copy(update={"spec": obj.spec.model_copy(update=spec)}))

    async def event_counts(self, name: str, reason: str) -> dict[tuple[str, str], int]:
        """Occurrences per event record. The store folds a repeat of its newest event into that
        record (count + 1), so a new occurrence may bump an old record: count deltas, not records."""
        events = await self.store.list_events("default", kind="zkc", name=name)
        return {(e.first_timestamp, e.message): e.count for e in events if e.reason == reason}

    async def events_since(self, name: str, reason: str, before: dict[tuple[str, str], int]) -> int:
        now = await self.event_counts(name, reason)
        return sum(max(0, c - before.get(k, 0)) for k, c in now.items())


# ---- baselines ------------------------------------------------------------------------


async def bare_ensemble(n: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="zkop-bench-bare-"))
    ens = LocalEnsemble(root, "bare")
    try:
        t0 = time.monotonic()
        ens.create(n, settings=SETTINGS)
        ens.start()
        await ens.wait_serving(timeout=120)
        return time.monotonic() - t0
    finally:
        ens.stop(grace=5)
        stop_everything(root, 5.0)
        shutil.rmtree(root, ignore_errors=True)


async def bare_rejoin() -> float:
    """ZooKeeper's own part of a heal: a follower of a bare 3-member ensemble killed and started
    again at once, until it serves as a follower (polled every 0.01 s)."""
    root = Path(tempfile.mkdtemp(prefix="zkop-bench-rejoin-"))
    ens = LocalEnsemble(root, "bare")
    try:
        ens.create(3, settings=SETTINGS)
        ens.start()
        await ens.wait_serving(timeout=120)

        async def mode(member_id: int) -> str | None:
            address = ens.load().member(member_id).address
            return (await fourlw.server_state(address.host, address.client_port, timeout=1.0)).mode

        modes = {i: await mode(i) for i in ens.member_ids()}
        follower = next(i for i, m in modes.items() if m == "follower")
        t0 = time.monotonic()
        ens.kill_member(follower)
        ens.start_member(follower)
        while await mode(follower) != "follower":  # noqa: ASYNC110 (polling the server is the measurement)
            await asyncio.sleep(0.01)
        return time.monotonic() - t0
    finally:
        ens.stop(grace=5)
        stop_everything(root, 5.0)
        shutil.rmtree(root, ignore_errors=True)


# ---- operator measurements ------------------------------------------------------------


async def time_to_available(ops: Ops, name: str, n: int) -> float:
    t0 = time.monotonic()
    await ops.store.create(cluster(name, n))
    await ops.wait(name, available(n))
    took = time.monotonic() - t0
    await ops.store.delete("zkc", "default", name)
    await ops.wait_gone(name)
    return took


async def heal(ops: Ops, name: str, which: str) -> dict[str, float]:
    """kill -9 a follower or the leader; time until the operator restarted it and reports it serving.

    Done only when the stored status is Available with 3/3 ready *and* shows the victim's restart
    count bumped (so a status written before the kill cannot end the wait) and ready.
    """
    obj = await ops.wait(name, available(3))
    ens = ops.platform.ensemble(ClusterRef("default", name))
    leader = obj.status.leader
    assert leader is not None
    victim = leader if which == "leader" else next(m.id for m in obj.status.members if m.id != leader)
    restarts_before = next(m.restarts for m in obj.status.members if m.id == victim)
    old = ens.unit(victim).running()
    assert old is not None
    t0 = time.monotonic()
    ens.kill_member(victim)
    restarted_at: float | None = None
    async with asyncio.timeout(120):
        while True:
            if restarted_at is None:
                rec = ens.unit(victim).running()
                if rec is not None and rec.pid != old.pid:
                    restarted_at = time.monotonic()
            o = await ops.get(name)
            member = next((m for m in o.status.members if m.id == victim), None)
            if available(3)(o) and member is not None and member.ready and member.restarts > restarts_before:
                done = time.monotonic()
                break
            await asyncio.sleep(POLL)
    state = await fourlw.server_state("127.0.0.1", int(member.client_endpoint.rsplit(":", 1)[1]), timeout=1.0)
    assert state.serving, f"member {victim} reported ready but does not serve"
    restarted_at = restarted_at or done
    return {
        "total": done - t0,
        "kill_to_restart": restarted_at - t0,
        "restart_to_available": done - restarted_at,
    }


async def scale(ops: Ops, name: str, to: int) -> float:
    t0 = time.monotonic()
    await ops.change(name, replicas=to)
    obj = await ops.wait(name, available(to))
    assert len(obj.status.members) == to
    return time.monotonic() - t0


async def rolling_restart(ops: Ops, name: str, cnxns: int) -> dict[str, Any]:
    obj = await ops.wait(name, available(5))
    hosts_str = obj.status.connection_string or ""
    hosts = hosts_str.split(",")
    assert len(hosts) == 5
    path = f"/bench-seq-{uuid.uuid4().hex[:8]}"
    writer = Writer(hosts_str, path)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    stop = asyncio.Event()
    watcher: asyncio.Task[list[int]] | None = None
    try:
        await asyncio.to_thread(writer.started.wait, 30)
        watcher = asyncio.create_task(leader_sequence(hosts, stop))
        await asyncio.sleep(1.0)  # the writer at its steady pace, the watcher has seen the leader
        before = await ops.event_counts(name, "RollingRestart")
        config = obj.spec.config.model_copy(update={"max_client_cnxns": cnxns})
        t0 = time.monotonic()
        await ops.change(name, config=config)
        async with asyncio.timeout(180):
            while await ops.events_since(name, "RollingRestart", before) < 5:  # noqa: ASYNC110 - polled store
                await asyncio.sleep(POLL)
        events_at = time.monotonic() - t0
        await ops.wait(name, available(5))
        total = time.monotonic() - t0
        restarts = await ops.events_since(name, "RollingRestart", before)
    finally:
        stop.set()
        leaders = await watcher if watcher is not None else []
        writer.stop.set()
        await asyncio.to_thread(thread.join, 30)
    lost = len(await asyncio.to_thread(writer.lost))
    return {
        "total_s": total,
        "all_restart_events_s": events_at,
        "restart_events": restarts,
        "leader_changes": max(0, len(leaders) - 1),
        "leaders_seen": leaders,
        "longest_write_gap_s": writer.longest_gap,
        "writes_acknowledged": len(writer.acked),
        "write_errors": writer.errors,
        "acknowledged_writes_lost": lost,
    }


async def run(reps: int, roll_reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: []
        for k in (
            "bare_jvm",
            "bare_3",
            "bare_5",
            "available_3",
            "available_5",
            "bare_rejoin",
            "heal_follower",
            "heal_leader",
            "scale_3_to_5",
            "scale_5_to_3",
            "roll",
        )
    }
    root = Path(tempfile.mkdtemp(prefix="zkop-bench-zkc-"))
    cp_dir, state = root / "control-plane", root / "operator"
    cp_dir.mkdir()
    try:
        with running_ensemble(1, state_dir=cp_dir, name="cp") as cp:
            conn = Connection(cp.connection_string, "zkop", "bench-" + uuid.uuid4().hex[:8], root="/bench-zkc")
            client = conn.client()
            await client.start()
            store = Store(client, root=conn.root, acl=conn.acl())
            local = LocalPlatform(state, "zkop-operator")
            platform = LocalZookeeperPlatform(state, local.fence)
            ctrl = zkc_controller.controller(None, platform)  # production periods and grace
            manager = Manager(
                conn, ManagerOptions(name="zkc-bench", metrics_port=None), controllers=[ctrl], platforms=[local]
            )
            task = asyncio.create_task(manager.run())
            ops = Ops(store, platform)
            try:
                async with asyncio.timeout(60):
                    while not manager.leading:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # controllers listed and watching
                for rep in range(reps):  # interleaved: drift hits baseline and operator alike
                    out["bare_jvm"].append(await bare_jvm_start())
                    out["bare_3"].append(await bare_ensemble(3))
                    out["available_3"].append(await time_to_available(ops, f"up3-{rep}", 3))
                    out["bare_5"].append(await bare_ensemble(5))
                    out["available_5"].append(await time_to_available(ops, f"up5-{rep}", 5))
                    out["bare_rejoin"].append(await bare_rejoin())
                name = "main"
                await ops.store.create(cluster(name, 3))
                await ops.wait(name, available(3))
                for _ in range(reps):
                    out["heal_follower"].append(await heal(ops, name, "follower"))
                    out["heal_leader"].append(await heal(ops, name, "leader"))
                for _ in range(reps):
                    out["scale_3_to_5"].append(await scale(ops, name, 5))
                    out["scale_5_to_3"].append(await scale(ops, name, 3))
                await scale(ops, name, 5)
                for i in range(roll_reps):
                    out["roll"].append(await rolling_restart(ops, name, 100 + i))
                await ops.store.delete("zkc", "default", name)
                await ops.wait_gone(name)
            finally:
                manager.stop()
                await task
                await client.stop()
                await asyncio.to_thread(stop_everything, state, 5.0)  # every member the operator started
    finally:
        await asyncio.to_thread(stop_everything, cp_dir, 5.0)
        shutil.rmtree(root, ignore_errors=True)
    return out


def r3(x: float) -> float:
    return round(x, 3)


def rsummary(samples: list[float]) -> dict[str, float]:
    return {k: (r3(v) if isinstance(v, float) else v) for k, v in summary(samples).items()}


async def main(reps: int, roll_reps: int) -> None:
    started = time.monotonic()
    out = await run(reps, roll_reps)
    med = statistics.median
    jvm, b3, b5 = med(out["bare_jvm"]), med(out["bare_3"]), med(out["bare_5"])
    heal_out: dict[str, Any] = {}
    for which in ("follower", "leader"):
        samples = out[f"heal_{which}"]
        heal_out[which] = {
            "total_s": rsummary([s["total"] for s in samples]),
            "kill_to_operator_restart_s": rsummary([s["kill_to_restart"] for s in samples]),
            "restart_to_available_s": rsummary([s["restart_to_available"] for s in samples]),
        }
    rolls = out["roll"]
    roll_out = {
        "n": len(rolls),
        "total_s": rsummary([r["total_s"] for r in rolls]),
        "leader_changes": [r["leader_changes"] for r in rolls],
        "longest_write_gap_s": rsummary([r["longest_write_gap_s"] for r in rolls]),
        "runs": [{k: (r3(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rolls],
    }
    write(
        "zookeepercluster",
        {
            "settings": {"tickTime": SETTINGS.tick_time, "heap_mb": SETTINGS.heap_mb, "reps": reps},
            "baseline": {
                "bare_jvm_start_s": rsummary(out["bare_jvm"]),
                "bare_ensemble_3_s": rsummary(out["bare_3"]),
                "bare_ensemble_5_s": rsummary(out["bare_5"]),
                "bare_follower_kill_to_serving_s": rsummary(out["bare_rejoin"]),
            },
            "available_3_s": rsummary(out["available_3"]),
            "available_5_s": rsummary(out["available_5"]),
            "heal_follower": heal_out["follower"],
            "heal_leader": heal_out["leader"],
            "scale_3_to_5_s": rsummary(out["scale_3_to_5"]),
            "scale_5_to_3_s": rsummary(out["scale_5_to_3"]),
            "rolling_restart_5": roll_out,
            "ratios": {
                "available_3_vs_bare_ensemble_3": ratio(med(out["available_3"]), b3),
                "available_5_vs_bare_ensemble_5": ratio(med(out["available_5"]), b5),
                "heal_follower_vs_bare_jvm": ratio(med([s["total"] for s in out["heal_follower"]]), jvm),
                "heal_leader_vs_bare_jvm": ratio(med([s["total"] for s in out["heal_leader"]]), jvm),
                "heal_follower_vs_bare_follower_rejoin": ratio(
                    med([s["total"] for s in out["heal_follower"]]), med(out["bare_rejoin"])
                ),
            },
            "wall_s": r3(time.monotonic() - started),
            "notes": [
                "A member's exit wakes the operator at once (the platform's exit events), so "
                "kill_to_operator_restart_s is that reaction; restart_to_available_s is the JVM start, "
                "ZooKeeper's own rejoin (election, then sync from the leader) and the look that sees it serve "
                f"(a starting member is looked at every {WAIT_PERIOD:g} s) with its status write. A healthy "
                f"cluster is looked at every {DONE_PERIOD:g} s.",
                "bare_jvm_start is bench/ensemble.py's standalone server (tickTime 2000, default heap); "
                "the bare ensembles use exactly the operator's settings for the spec (tickTime 500, heap 64 MiB).",
                "Available = stored status Running, ready == replicas == N, Available=True, "
                "observedGeneration current (the integration test's predicate); the bench polls it every "
                f"{POLL:g} s. Heal also requires the victim's restart count bumped in status.",
                "Rolling restart: from the spec update (maxClientCnxns) until 5 RollingRestart events and "
                "Available; a continuous writer measures the longest gap between acknowledged writes.",
            ],
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--roll-reps", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.reps, args.roll_reps))
