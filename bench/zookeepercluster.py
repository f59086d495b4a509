"""The ZookeeperCluster operator: time to Available, heal, scale and a rolling restart.

    python bench/zookeepercluster.py [--reps 2]

Baselines measured in the same run: the bare start of the same JVMs as an ensemble
(no operator) and one bare ZooKeeper JVM. Writes bench/results/zookeepercluster.json.
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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError

from common import ratio, summary, write
from ensemble import bare_jvm_start
from zkop.api import ZookeeperCluster, parse_object
from zkop.cli.local import stop_everything
from zkop.client.connect import Connection
from zkop.controllers.zookeepercluster.controller import Controller, ZookeeperClusterReconciler
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.platform.local.platform import LocalPlatform
from zkop.platform.local.zookeeper import LocalZookeeperPlatform
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.store import NotFound, Store
from zkop.testing import running_ensemble
from zkop.zk import fourlw
from zkop.zk.config import ServerSettings

SETTINGS = ServerSettings(tick_time=500, init_limit=10, sync_limit=5, heap_mb=64)


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


def is_available(replicas: int) -> Callable[[ZookeeperCluster], bool]:
    def check(o: ZookeeperCluster) -> bool:
        s = o.status
        return (
            s.phase == "Running"
            and s.ready_replicas == replicas
            and s.replicas == replicas
            and s.observed_generation == o.metadata.generation
        )

    return check


async def wait(
    store: Store, name: str, pred: Callable[[ZookeeperCluster], bool], timeout: float = 120
) -> ZookeeperCluster:
    async with asyncio.timeout(timeout):
        while True:
            try:
                obj = await store.get("zkc", "default", name)
                assert isinstance(obj, ZookeeperCluster)
                if pred(obj):
                    return obj
            except NotFound:
                pass
            await asyncio.sleep(0.05)


async def change(store: Store, name: str, **spec: object) -> None:
    obj = await store.get("zkc", "default", name)
    await store.update(obj.model_copy(update={"spec": obj.spec.model_copy(update=spec)}))  # type: ignore[attr-defined]


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
        shutil.rmtree(root, ignore_errors=True)


class Writer(threading.Thread):
    def __init__(self, hosts: str) -> None:
        super().__init__(daemon=True)
        self.hosts = hosts
        self.stop_flag = threading.Event()
        self.acked = 0
        self.longest_gap = 0.0

    def run(self) -> None:
        client = KazooClient(self.hosts, timeout=10)
        client.start(timeout=20)
        client.ensure_path("/bench-seq")
        last = time.monotonic()
        i = 0
        try:
            while not self.stop_flag.is_set() and i < 500_000:
                try:
                    client.create(f"/bench-seq/n{i:07d}", b"x")
                except NodeExistsError:
                    pass
                except KazooException:
                    time.sleep(0.01)
                    continue
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last)
                last = now
                self.acked += 1
                i += 1
        finally:
            client.stop()
            client.close()


async def leaders(hosts: list[str], stop: asyncio.Event) -> list[str]:
    seen: list[str] = []
    while not stop.is_set():
        states = await asyncio.gather(
            *(fourlw.server_state(h.split(":")[0], int(h.split(":")[1]), timeout=0.3) for h in hosts)
        )
        for h, st in zip(hosts, states, strict=True):
            if st.serving and st.mode == "leader" and (not seen or seen[-1] != h):
                seen.append(h)
        await asyncio.sleep(0.02)
    return seen


async def operator_runs(reps: int) -> dict[str, list[float] | dict[str, float | int]]:
    out: dict[str, list[float] | dict[str, float | int]] = {
        "available_3": [],
        "available_5": [],
        "heal_follower": [],
        "heal_leader": [],
        "scale_3_to_5": [],
        "scale_5_to_3": [],
    }
    state = Path(tempfile.mkdtemp(prefix="zkop-bench-zkc-"))
    with running_ensemble(1) as cp:
        conn = Connection(cp.connection_string, "zkop", "bench-zkc")
        client = conn.client()
        await client.start()
        store = Store(client, root=conn.root, acl=conn.acl())
        local = LocalPlatform(state, "zkop-operator")
        platform = LocalZookeeperPlatform(state, local.fence)
        ctrl = Controller("zookeepercluster", "ZookeeperCluster", ZookeeperClusterReconciler(platform), workers=2)
        manager = Manager(conn, ManagerOptions(name="bench", metrics_port=None), controllers=[ctrl], platforms=[local])
        task = asyncio.create_task(manager.run())
        try:
            for rep in range(reps):
                for n in (3, 5):
                    name = f"c{n}-{rep}"
                    t0 = time.monotonic()
                    await store.create(cluster(name, n))
                    await wait(store, name, is_available(n))
                    out[f"available_{n}"].append(time.monotonic() - t0)  # type: ignore[union-attr]
                    await store.delete("zkc", "default", name)
                    await wait_gone(store, name)
            name = "main"
            await store.create(cluster(name, 3))
            obj = await wait(store, name, is_available(3))
            ens = platform.ensemble("default", name)
            for _ in range(reps):
                for which in ("follower", "leader"):
                    obj = await wait(store, name, is_available(3))
                    target = (
                        obj.status.leader
                        if which == "leader"
                        else next(m.id for m in obj.status.members if m.id != obj.status.leader)
                    )
                    assert target is not None
                    old = ens.unit(target).running()
                    t0 = time.monotonic()
                    ens.kill_member(target)
                    await wait(
                        store,
                        name,
                        lambda o, t=target, p=(old.pid if old else 0): (
                            is_available(3)(o) and (r := ens.unit(t).running()) is not None and r.pid != p
                        ),
                    )
                    out[f"heal_{which}"].append(time.monotonic() - t0)  # type: ignore[union-attr]
                t0 = time.monotonic()
                await change(store, name, replicas=5)
                await wait(store, name, is_available(5))
                out["scale_3_to_5"].append(time.monotonic() - t0)  # type: ignore[union-attr]
                t0 = time.monotonic()
                await change(store, name, replicas=3)
                await wait(store, name, is_available(3))
                out["scale_5_to_3"].append(time.monotonic() - t0)  # type: ignore[union-attr]
            # A 5-member rolling restart under a continuous writer.
            await change(store, name, replicas=5)
            obj = await wait(store, name, is_available(5))
            hosts = (obj.status.connection_string or "").split(",")
            writer = Writer(obj.status.connection_string or "")
            writer.start()
            stop = asyncio.Event()
            watcher = asyncio.create_task(leaders(hosts, stop))
            await asyncio.sleep(1.0)  # let the writer reach its steady pace before the roll
            before = len(await store.list_events("default", kind="zkc", name=name))
            config = obj.spec.config.model_copy(update={"max_client_cnxns": 99})
            t0 = time.monotonic()
            await change(store, name, config=config)
            async with asyncio.timeout(180):
                while True:
                    events = (await store.list_events("default", kind="zkc", name=name))[before:]
                    if sum(e.reason == "RollingRestart" for e in events) >= 5:
                        break
                    await asyncio.sleep(0.1)
            await wait(store, name, is_available(5))
            roll_s = time.monotonic() - t0
            stop.set()
            seen = await watcher
            writer.stop_flag.set()
            await asyncio.to_thread(writer.join, 30)
            out["rolling_restart_5"] = {
                "total_s": round(roll_s, 3),
                "leader_changes": max(0, len(seen) - 1),
                "longest_write_gap_s": round(writer.longest_gap, 3),
                "writes_acknowledged": writer.acked,
            }
        finally:
            manager.stop()
            await task
            await client.stop()
            await asyncio.to_thread(stop_everything, state, 5.0)
            shutil.rmtree(state, ignore_errors=True)
    return out


async def wait_gone(store: Store, name: str) -> None:
    async with asyncio.timeout(120):
        while True:
            try:
                await store.get("zkc", "default", name)
            except NotFound:
                return
            await asyncio.sleep(0.05)


async def main(reps: int) -> None:
    bare_jvm = [await bare_jvm_start() for _ in range(reps)]
    bare3 = [await bare_ensemble(3) for _ in range(reps)]
    bare5 = [await bare_ensemble(5) for _ in range(reps)]
    op = await operator_runs(reps)
    jvm = statistics.median(bare_jvm)

    def med(key: str) -> float:
        return statistics.median(op[key])  # type: ignore[arg-type]

    write(
        "zookeepercluster",
        {
            "baseline": {
                "bare_jvm_start_s": summary(bare_jvm),
                "bare_ensemble_3_s": summary(bare3),
                "bare_ensemble_5_s": summary(bare5),
            },
            "available_3_s": summary(op["available_3"]),  # type: ignore[arg-type]
            "available_5_s": summary(op["available_5"]),  # type: ignore[arg-type]
            "heal_follower_s": summary(op["heal_follower"]),  # type: ignore[arg-type]
            "heal_leader_s": summary(op["heal_leader"]),  # type: ignore[arg-type]
            "scale_3_to_5_s": summary(op["scale_3_to_5"]),  # type: ignore[arg-type]
            "scale_5_to_3_s": summary(op["scale_5_to_3"]),  # type: ignore[arg-type]
            "rolling_restart_5": op["rolling_restart_5"],
            "ratios": {
                "available_3_vs_bare_ensemble_3": ratio(med("available_3"), statistics.median(bare3)),
                "available_5_vs_bare_ensemble_5": ratio(med("available_5"), statistics.median(bare5)),
                "heal_follower_vs_bare_jvm": ratio(med("heal_follower"), jvm),
                "heal_leader_vs_bare_jvm": ratio(med("heal_leader"), jvm),
            },
            "notes": (
                "heal includes up to one observation period (a Running cluster is looked at every 3 s) "
                "before the restart; Available means the operator's status shows every member serving."
            ),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=2)
    asyncio.run(main(parser.parse_args().reps))
