"""Reconcile latency, a 10,000-object pass, and writes in a quiet steady state.

    python bench/reconcile.py [--count 10000] [--updates 200]

(a) latency from a spec change (a raw set of the object's znode) to the start of its
reconcile, next to a raw kazoo DataWatch on a znode of the same size set the same way;
(b) time and memory to reconcile ``count`` OperatorConfig objects once, with the real
OperatorConfig reconciler (one status write per object); (c) ZooKeeper writes per second
while nothing changes (zxid delta over a quiet window that includes a full resync).
Writes bench/results/reconcile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from kazoo.client import KazooClient

from common import ratio, summary, write
from zkop.api import OperatorConfig, parse_object, resolve_kind
from zkop.client.connect import Connection
from zkop.controllers.operatorconfig import OperatorConfigReconciler
from zkop.runtime.controller import Context, Controller
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.runtime.result import Request, Result
from zkop.store import Store
from zkop.testing import running_ensemble
from zkop.zk import fourlw


def opconfig(name: str) -> OperatorConfig:
    obj = parse_object({"apiVersion": "zkop.io/v1", "kind": "OperatorConfig", "metadata": {"name": name}, "spec": {}})
    assert isinstance(obj, OperatorConfig)
    return obj


class Counting:
    """Wraps a reconciler: counts distinct keys reconciled and signals progress."""

    def __init__(self, inner: OperatorConfigReconciler | None = None) -> None:
        self.inner = inner
        self.keys: set[str] = set()
        self.runs = 0
        self.progress = asyncio.Event()

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        self.runs += 1
        result = await self.inner.reconcile(request, ctx) if self.inner else Result()
        self.keys.add(request.key)
        self.progress.set()
        return result


async def latency(conn: Connection, store: Store, updates: int) -> dict[str, object]:
    obj = await store.create(opconfig("latency"))
    starts: list[float] = []
    started = asyncio.Event()
    ctrl = Controller("latency", "OperatorConfig", Counting(), workers=1, resync_period=3600)

    def on_start(request: Request) -> None:
        if request.name == "latency":
            starts.append(time.monotonic())
            started.set()

    ctrl.on_reconcile_start = on_start
    manager = Manager(conn, ManagerOptions(name="lat", leader_elect=False, metrics_port=None), controllers=[ctrl])
    task = asyncio.create_task(manager.run())
    info = resolve_kind("OperatorConfig")
    path = store.obj_path(info, "default", "latency")
    try:
        async with asyncio.timeout(30):
            while not starts:
                started.clear()
                await started.wait()
        zkop_ms: list[float] = []
        for i in range(updates):
            spec = obj.spec.model_copy(update={"replicas": 1 + i % 5})
            raw = store._encode(obj.model_copy(update={"spec": spec}))
            seen = len(starts)
            started.clear()
            t0 = time.monotonic()
            await store.client.set(path, raw)
            async with asyncio.timeout(10):
                while len(starts) <= seen:
                    started.clear()
                    await started.wait()
            zkop_ms.append((starts[seen] - t0) * 1000)
    finally:
        manager.stop()
        await task
    # Raw kazoo: a DataWatch on a znode of the same size, set the same way.
    raw_ms: list[float] = []
    kz = KazooClient(conn.hosts, auth_data=conn.auth_data)
    kz.start(timeout=20)
    try:
        kz.ensure_path("/bench-raw")
        fired = threading.Event()
        stamp: list[float] = []

        @kz.DataWatch("/bench-raw")
        def _watch(data: bytes | None, stat: object) -> None:
            stamp.append(time.monotonic())
            fired.set()

        for _ in range(updates):
            fired.clear()
            n = len(stamp)
            t0 = time.monotonic()
            kz.set("/bench-raw", raw)
            if not fired.wait(10):
                raise TimeoutError("raw watch did not fire")
            raw_ms.append((stamp[n] - t0) * 1000)
    finally:
        kz.stop()
        kz.close()
    z, r = summary(zkop_ms), summary(raw_ms)
    return {
        "updates": updates,
        "zkop_update_to_reconcile_ms": z,
        "raw_datawatch_ms": r,
        "ratio_p50": ratio(z["p50"], r["p50"]),
        "ratio_p99": ratio(z["p99"], r["p99"]),
    }


async def create_many(store: Store, count: int, chunk: int = 500) -> float:
    t0 = time.monotonic()
    for start in range(0, count, chunk):
        await asyncio.gather(*(store.create(opconfig(f"obj-{i:05d}")) for i in range(start, min(count, start + chunk))))
    return time.monotonic() - t0


async def leader_zxid(hosts: str) -> int:
    host, port = hosts.split(",")[0].split(":")
    state = await fourlw.server_state(host, int(port))
    assert state.zxid is not None
    return state.zxid


async def bulk_and_steady(conn: Connection, store: Store, count: int, quiet: float) -> dict[str, object]:
    created_s = await create_many(store, count)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    counting = Counting(OperatorConfigReconciler())
    ctrl = Controller("bulk", "OperatorConfig", counting, workers=4, resync_period=quiet / 2)
    manager = Manager(conn, ManagerOptions(name="bulk", leader_elect=False, metrics_port=None), controllers=[ctrl])
    t0 = time.monotonic()
    task = asyncio.create_task(manager.run())
    try:
        async with asyncio.timeout(600):
            while len(counting.keys) < count:
                counting.progress.clear()
                await counting.progress.wait()
        elapsed = time.monotonic() - t0
        rss1 = proc.memory_info().rss
        # Steady state: once no write has landed for a second, count writes over the window.
        z = await leader_zxid(conn.hosts)
        while True:
            await asyncio.sleep(1.0)
            nz = await leader_zxid(conn.hosts)
            if nz == z:
                break
            z = nz
        runs_before = counting.runs
        z0 = await leader_zxid(conn.hosts)
        await asyncio.sleep(quiet)
        z1 = await leader_zxid(conn.hosts)
        resync_runs = counting.runs - runs_before
    finally:
        manager.stop()
        await task
    return {
        "objects": count,
        "create_s": round(created_s, 3),
        "reconcile_all_once_s": round(elapsed, 3),
        "objects_per_s": round(count / elapsed, 1),
        "rss_growth_mib": round((rss1 - rss0) / 2**20, 1),
        "steady_state": {
            "window_s": quiet,
            "reconciles_in_window": resync_runs,
            "zk_writes": z1 - z0,
            "zk_writes_per_s": round((z1 - z0) / quiet, 3),
        },
    }


async def main(count: int, updates: int, quiet: float) -> None:
    with running_ensemble(1) as zk:
        conn = Connection(zk.connection_string, "zkop", "bench-reconcile", root="/zkop")
        client = conn.client()
        await client.start()
        store = Store(client, root=conn.root, acl=conn.acl())
        try:
            lat = await latency(conn, store, updates)
            bulk = await bulk_and_steady(conn, store, count, quiet)
        finally:
            await client.stop()
    write("reconcile", {"latency": lat, "bulk": bulk})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--quiet", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.count, args.updates, args.quiet))
