"""Reconcile latency, a pass over 10,000 objects, and ZooKeeper writes in a quiet steady state.

    python bench/reconcile.py [--count 10000] [--updates 200] [--quiet 15] [--timeout 75]

Against one real ZooKeeper started here:

(a) latency from a spec update to the start of its reconcile (``Controller.on_reconcile_start``;
    a Manager without leader election, one worker), next to a raw kazoo ``DataWatch`` on a
    znode of the same size (time from ``set()`` to the callback), interleaved update by update.
    ``store_update`` times from the call of ``Store.update`` (which reads the object, then
    writes it); ``raw_set`` times from a plain set of the object's znode, which is what the
    DataWatch baseline does.
(b) ``count`` OperatorConfig objects are created (bounded concurrency), then a Manager whose
    controller only counts reconciles is started: time until every object was reconciled
    once, peak RSS growth and the event loop's worst stall (both sampled every 20 ms).
    A second pass runs the real OperatorConfig reconciler (one status write per object).
(c) with that second manager still running, once no write has landed for a second, the
    zxid (``srvr``; it advances only on writes) and ``zk_packets_received`` (``mntr``) are
    sampled before and after a quiet window that includes a full resync and a relist:
    writes per second, which should be 0.
A third pass runs the OperatorConfig reconciler under leader election (default 10 s
session, fenced writes). Every pass is bounded by ``--timeout``; one that does not
converge is reported (``converged: false``) with what it got done, not waited for.

Writes bench/results/reconcile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

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
from zkop.store import Store, codec
from zkop.testing import running_ensemble
from zkop.zk import fourlw


def opconfig(name: str) -> OperatorConfig:
    obj = parse_object({"apiVersion": "zkop.io/v1", "kind": "OperatorConfig", "metadata": {"name": name}, "spec": {}})
    assert isinstance(obj, OperatorConfig)
    return obj


def ms(samples: list[float]) -> dict[str, float]:
    s = summary([x * 1000 for x in samples])
    return {"n": s["n"], "p50": round(s["p50"], 3), "p99": round(s["p99"], 3), "max": round(s["max"], 3)}


class Counting:
    """A reconciler that counts (optionally around a real one) and signals each finished run."""

    def __init__(self, inner: OperatorConfigReconciler | None = None) -> None:
        self.inner = inner
        self.keys: set[str] = set()
        self.runs = 0
        self.progress = asyncio.Event()

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        result = await self.inner.reconcile(request, ctx) if self.inner else Result()
        self.runs += 1
        self.keys.add(request.key)
        self.progress.set()
        return result

    async def wait(self, done: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self.progress.clear()
                await self.progress.wait()


class RawWatch:
    """kazoo alone: a DataWatch on one znode, set from a thread, timed set() -> callback."""

    def __init__(self, conn: Connection) -> None:
        self.kz = KazooClient(conn.hosts, auth_data=conn.auth_data)
        self.path = "/bench-raw"
        self.fired = threading.Event()
        self.stamps: list[float] = []

    def start(self) -> None:
        self.kz.start(timeout=20)
        self.kz.ensure_path(self.path)
        self.kz.DataWatch(self.path, self._on_data)

    def _on_data(self, _data: bytes | None, _stat: object) -> None:
        self.stamps.append(time.monotonic())
        self.fired.set()

    def once(self, data: bytes) -> float:
        self.fired.clear()
        seen = len(self.stamps)
        t0 = time.monotonic()
        self.kz.set(self.path, data)
        if not self.fired.wait(10):
            raise TimeoutError("raw DataWatch did not fire")
        return self.stamps[seen] - t0

    def stop(self) -> None:
        self.kz.stop()
        self.kz.close()


async def latency(conn: Connection, store: Store, updates: int) -> dict[str, Any]:
    obj = await store.create(opconfig("latency"))
    path = store.obj_path(resolve_kind("OperatorConfig"), "default", "latency")
    counting = Counting()
    starts: list[float] = []
    ctrl = Controller(
        "latency", "OperatorConfig", counting, max_concurrent_reconciles=1, resync_period=3600, relist_period=None
    )
    ctrl.on_reconcile_start = lambda request: starts.append(time.monotonic())
    manager = Manager(conn, ManagerOptions(name="lat", leader_elect=False, metrics_port=None), controllers=[ctrl])
    task = asyncio.create_task(manager.run())
    raw = RawWatch(conn)
    via_update: list[float] = []
    via_set: list[float] = []
    baseline: list[float] = []
    try:
        await counting.wait(lambda: counting.runs >= 1, 30)  # the initial ADDED
        await asyncio.to_thread(raw.start)
        for i in range(updates):
            spec = obj.spec.model_copy(update={"replicas": 1 + i % 7})
            changed = obj.model_copy(update={"spec": spec})
            # store.update: timed from the call (read, compare-and-set, read back).
            seen, runs = len(starts), counting.runs
            t0 = time.monotonic()
            obj = await store.update(changed)
            await counting.wait(lambda s=seen, r=runs: len(starts) > s and counting.runs > r, 10)
            via_update.append(starts[seen] - t0)
            # A plain set of the same znode, as the DataWatch baseline does.
            spec = obj.spec.model_copy(update={"replicas": 1 + (i + 3) % 7})
            data = codec.encode(obj.model_copy(update={"spec": spec}))
            seen, runs = len(starts), counting.runs
            t0 = time.monotonic()
            await store.client.set(path, data)
            await counting.wait(lambda s=seen, r=runs: len(starts) > s and counting.runs > r, 10)
            via_set.append(starts[seen] - t0)
            obj = await store.get("OperatorConfig", "default", "latency")
            baseline.append(await asyncio.to_thread(raw.once, data))
    finally:
        manager.stop()
        await task
        await asyncio.to_thread(raw.stop)
    await store.delete("OperatorConfig", "default", "latency")  # the bulk passes count only theirs
    upd, st, base = ms(via_update), ms(via_set), ms(baseline)
    return {
        "updates": updates,
        "zkop_store_update_to_reconcile_start_ms": upd,
        "zkop_raw_set_to_reconcile_start_ms": st,
        "kazoo_datawatch_set_to_callback_ms": base,
        "ratio_store_update_vs_kazoo": {"p50": ratio(upd["p50"], base["p50"]), "p99": ratio(upd["p99"], base["p99"])},
        "ratio_raw_set_vs_kazoo": {"p50": ratio(st["p50"], base["p50"]), "p99": ratio(st["p99"], base["p99"])},
    }


async def create_many(store: Store, count: int, concurrency: int = 200) -> float:
    names = iter(range(count))

    async def worker() -> None:
        for i in names:
            await store.create(opconfig(f"obj-{i:05d}"))

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - t0


class PeakRss:
    """Samples this process's RSS every 20 ms (``growth``: peak above the start) and the
    event loop's worst stall (how late a 20 ms sleep woke up)."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.stall = 0.0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            t = time.monotonic()
            await asyncio.sleep(0.02)
            self.stall = max(self.stall, time.monotonic() - t - 0.02)

    async def stop(self) -> dict[str, float]:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return {
            "peak_rss_growth_mib": round((self.peak - self.start) / 2**20, 1),
            "event_loop_stall_max_s": round(self.stall, 2),
        }


class CountingController(Controller):
    """A Controller that counts how often the manager started it."""

    starts = 0

    async def run(self, ctx: Context, metrics: Any) -> None:
        self.starts += 1
        await super().run(ctx, metrics)


class Pass:
    """One manager over all objects: time until each was reconciled once, peak RSS, stalls."""

    def __init__(self, conn: Connection, counting: Counting, options: ManagerOptions, **ctrl: Any) -> None:
        self.counting = counting
        self.controller = CountingController("bulk", "OperatorConfig", counting, max_concurrent_reconciles=64, **ctrl)
        self.manager = Manager(conn, options, controllers=[self.controller])
        self.task: asyncio.Task[None] | None = None

    async def run(self, count: int, timeout: float) -> dict[str, Any]:
        rss = PeakRss()
        t0 = time.monotonic()
        self.task = asyncio.create_task(self.manager.run())
        converged = True
        try:
            await self.counting.wait(lambda: len(self.counting.keys) >= count, timeout)
        except TimeoutError:
            converged = False
        except BaseException:
            await self.stop()
            raise
        elapsed = time.monotonic() - t0
        out: dict[str, Any] = {"converged": converged}
        if converged:
            out |= {"reconcile_all_once_s": round(elapsed, 2), "objects_per_s": round(count / elapsed, 1)}
        else:
            out |= {
                "gave_up_after_s": timeout,
                "objects_reconciled": len(self.counting.keys),
                "still_leading": self.manager.leading,
                "controllers_task_done": bool(self.manager._controllers_task and self.manager._controllers_task.done()),
            }
        return out | await rss.stop() | {"controller_starts": self.controller.starts}

    async def stop(self) -> None:
        self.manager.stop()
        if self.task is not None:
            await self.task


async def zk_counters(hosts: str) -> tuple[int, int]:
    host, port = hosts.split(",")[0].rsplit(":", 1)
    state = await fourlw.server_state(host, int(port))
    mntr = fourlw.parse_mntr((await fourlw.send(host, int(port), "mntr")).text)
    assert state.zxid is not None
    return state.zxid, int(mntr["zk_packets_received"])


async def steady_state(conn: Connection, counting: Counting, count: int, quiet: float, period: float) -> dict[str, Any]:
    """Once no write has landed for a second, count writes over a quiet window."""
    settle_started = time.monotonic()
    zxid, _ = await zk_counters(conn.hosts)
    while True:
        await asyncio.sleep(1.0)
        now, _ = await zk_counters(conn.hosts)
        if now == zxid:
            break
        zxid = now
    runs_before = counting.runs
    z0, p0 = await zk_counters(conn.hosts)
    await asyncio.sleep(quiet)
    z1, p1 = await zk_counters(conn.hosts)
    runs = counting.runs - runs_before
    return {
        "settle_s": round(time.monotonic() - settle_started - quiet, 1),
        "reconciles_before_window": runs_before,
        "window_s": quiet,
        "resync_and_relist_period_s": period,
        "reconciles_in_window": runs,
        "full_resync_in_window": runs >= count,
        "zk_writes": z1 - z0,
        "zk_writes_per_s": round((z1 - z0) / quiet, 3),
        "zk_packets_received_per_s": round((p1 - p0) / quiet, 1),
    }


async def bulk_and_steady(conn: Connection, store: Store, count: int, quiet: float, timeout: float) -> dict[str, Any]:
    created_s = await create_many(store, count)
    out: dict[str, Any] = {"objects": count, "create_s": round(created_s, 2)}

    # (b) The runtime alone (list, watch, queue, workers): the reconciler only counts.
    one = Pass(conn, Counting(), ManagerOptions(name="bulk1", leader_elect=False, metrics_port=None))
    try:
        out["counting_reconciler"] = await one.run(count, timeout)
    finally:
        await one.stop()

    # (c) The OperatorConfig reconciler (one status write per object, only when it changes);
    # resync and relist both run inside the quiet window.
    period = quiet / 2
    two = Pass(
        conn,
        Counting(OperatorConfigReconciler()),
        ManagerOptions(name="bulk2", leader_elect=False, metrics_port=None),
        resync_period=period,
        relist_period=period,
    )
    try:
        out["operatorconfig_reconciler"] = await two.run(count, timeout)
        if out["operatorconfig_reconciler"]["converged"]:
            out["steady_state"] = await steady_state(conn, two.counting, count, quiet, period)
    finally:
        await two.stop()

    # The same under leader election (default session timeout 10 s, fenced writes).
    three = Pass(conn, Counting(OperatorConfigReconciler()), ManagerOptions(name="bulk3", metrics_port=None))
    try:
        out["operatorconfig_reconciler_leader_elected"] = await three.run(count, timeout)
    finally:
        await three.stop()
    return out


async def cancel_on_sigterm(coro: Coroutine[Any, Any, None]) -> None:
    """SIGTERM cancels the run, so every finally (sessions, ZooKeeper) still runs."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await coro


async def main(count: int, updates: int, quiet: float, timeout: float) -> None:
    started = time.monotonic()
    with running_ensemble(1) as zk:
        conn = Connection(zk.connection_string, "zkop", "bench-reconcile")
        client = conn.client()
        await client.start()
        store = Store(client, root=conn.root, acl=conn.acl())
        try:
            lat = await latency(conn, store, updates)
            bulk = await bulk_and_steady(conn, store, count, quiet, timeout)
        finally:
            await client.stop()
    write("reconcile", {"seconds_total": round(time.monotonic() - started, 1), "latency": lat, "bulk": bulk})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--quiet", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=75.0, help="bound for each pass over all objects")
    args = parser.parse_args()
    asyncio.run(cancel_on_sigterm(main(args.count, args.updates, args.quiet, args.timeout)))
