"""The store's throughput and watch latency, next to raw kazoo doing the same znode work.

    python bench/store.py [--count 10000] [--chunk 500] [--watch-updates 200]

Against a 1-member ensemble this script starts itself. For ``--count`` ZookeeperCluster
objects it times create, get, update and list through :class:`zkop.store.Store`, and raw
kazoo writing and reading the same znodes with the same payload bytes under another root:

    create  store: Store.create (one transaction: object + status znodes, the status set in it so
            nothing is read back)
            raw:   the same two-create transaction
    get     store: Store.get (reads object + status, decodes, validates)
            raw:   get of both znodes
    update  store: Store.modify (a read of object + status, the change, compare-and-set)
            raw:   get of both znodes, then set_data with the version read
    list    store: Store.list of the namespace (children, then every object + status)
            raw:   get_children, then get of every object + status znode

Both sides run ``--chunk`` operations at once (kazoo's async API pipelines them on one
connection; the store's coroutines are gathered in chunks of the same size). The store runs on
zkop's client (kazoo with its I/O thread batched, ``zkop.client.kazoo_io``); the raw side is a
stock ``KazooClient``, so a ratio above 1 is that client's gain outweighing the store's own
work (the store still sends every request the raw side sends). The watch
latency is the time from issuing a write of an object znode to its event: a
``Store.watch`` MODIFIED event, or a raw kazoo ``DataWatch`` callback (which also re-reads
the data), over ``--watch-updates`` writes each.

Writes bench/results/store.json. Ratios are store/raw: for ops/s below 1 means the store
is slower; for latency above 1 means the store is slower.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kazoo.client import KazooClient
from kazoo.recipe.watchers import DataWatch
from kazoo.security import make_digest_acl

from common import ratio, summary, write
from zkop.api import Resource, ZookeeperCluster, parse_object, resolve_kind
from zkop.client.bridge import ZkClient
from zkop.store import Store, codec
from zkop.testing import running_ensemble

USER, PASSWORD = "zkop", "bench-password"
NAMESPACE = "bench"
LIST_REPS = 3


def make_object(i: int, replicas: int = 3) -> Resource:
    return parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {
                "name": f"zk-{i:05d}",
                "namespace": NAMESPACE,
                "labels": {"bench": "store", "shard": str(i % 8)},
            },
            "spec": {
                "replicas": replicas,
                "config": {
                    "tickTime": 2000,
                    "initLimit": 10,
                    "syncLimit": 5,
                    "additionalConfig": {"snapCount": "100000"},
                },
                "jvm": {"heap": "256Mi"},
                "resources": {"requests": {"cpu": "250m", "memory": "384Mi"}, "limits": {"memory": "512Mi"}},
            },
        }
    )


def with_replicas(obj: Resource, replicas: int) -> Resource:
    assert isinstance(obj, ZookeeperCluster)
    return obj.model_copy(update={"spec": obj.spec.model_copy(update={"replicas": replicas})})


async def chunked(ops: Sequence[Callable[[], Awaitable[Any]]], chunk: int) -> tuple[float, list[Any]]:
    """Run ``ops`` ``chunk`` at a time; return seconds and results."""
    results: list[Any] = []
    started = time.perf_counter()
    for i in range(0, len(ops), chunk):
        results.extend(await asyncio.gather(*(op() for op in ops[i : i + chunk])))
    return time.perf_counter() - started, results


def raw_chunked(start: Callable[[int], list[Any]], count: int, chunk: int) -> float:
    """Issue ``start(i)`` (a list of kazoo async results) for ``chunk`` items, then wait for all."""
    started = time.perf_counter()
    for i in range(0, count, chunk):
        pending = [r for j in range(i, min(count, i + chunk)) for r in start(j)]
        for result in pending:
            value = result.get()
            if isinstance(value, list) and any(isinstance(v, Exception) for v in value):
                raise RuntimeError(f"raw transaction failed: {value}")
    return time.perf_counter() - started


def raw_read_modify_write(zk: KazooClient, paths: list[str], updates: list[bytes], chunk: int) -> float:
    """The raw side of an update: read the object and its status, then set the object with the
    version read (the same work as a store update: a read, a compare-and-set)."""
    started = time.perf_counter()
    for i in range(0, len(paths), chunk):
        part = range(i, min(len(paths), i + chunk))
        reads = [(zk.get_async(paths[j]), zk.get_async(paths[j] + "/status")) for j in part]
        versions = [obj.get()[1].version for obj, status in reads if status.get() is not None]
        for result in [zk.set_async(paths[j], updates[j], v) for j, v in zip(part, versions, strict=True)]:
            result.get()
    return time.perf_counter() - started


async def store_side(
    hosts: str, count: int, chunk: int, root: str = "/bench-store"
) -> tuple[dict[str, float], list[bytes], list[bytes], bytes]:
    client = ZkClient(hosts, auth_data=[("digest", f"{USER}:{PASSWORD}")])
    await client.start()
    acl = [make_digest_acl(USER, PASSWORD, all=True)]
    store = Store(client, root=root, acl=acl)
    try:
        objects = [make_object(i) for i in range(count)]
        # The raw side writes exactly the bytes the store writes.
        payloads = [codec.encode(o) for o in objects]
        status = codec.encode_status(objects[0])

        create_s, created = await chunked([lambda o=o: store.create(o) for o in objects], chunk)
        get_s, _ = await chunked([lambda o=o: store.get("zkc", o.namespace, o.name) for o in objects], chunk)
        changed = [with_replicas(o, 5) for o in created]
        update_payloads = [codec.encode(o) for o in changed]
        # A controller's update: read the object, change it, write it back (compare-and-set).
        update_s, _ = await chunked(
            [lambda o=o: store.modify("zkc", o.namespace, o.name, lambda cur: with_replicas(cur, 5)) for o in created],
            chunk,
        )
        list_runs = []
        for _ in range(LIST_REPS):
            started = time.perf_counter()
            listed = await store.list("zkc", NAMESPACE)
            list_runs.append(time.perf_counter() - started)
            assert len(listed.items) == count, len(listed.items)
    finally:
        await client.stop()
    times = {"create": create_s, "get": get_s, "update": update_s, "list": statistics.median(list_runs)}
    return times, payloads, update_payloads, status


def raw_side(
    hosts: str,
    count: int,
    chunk: int,
    payloads: list[bytes],
    updates: list[bytes],
    status: bytes,
    root: str = "/bench-raw",
) -> dict[str, float]:
    zk = KazooClient(hosts, auth_data=[("digest", f"{USER}:{PASSWORD}")])
    zk.start(timeout=30)
    acl = [make_digest_acl(USER, PASSWORD, all=True)]
    base = f"{root}/resources/zookeeperclusters/{NAMESPACE}"
    try:
        zk.ensure_path(base, acl=acl)
        paths = [f"{base}/zk-{i:05d}" for i in range(count)]

        def create(i: int) -> list[Any]:
            txn = zk.transaction()
            txn.create(paths[i], payloads[i], acl=acl)
            txn.create(paths[i] + "/status", status, acl=acl)
            return [txn.commit_async()]

        create_s = raw_chunked(create, count, chunk)
        get_s = raw_chunked(lambda i: [zk.get_async(paths[i]), zk.get_async(paths[i] + "/status")], count, chunk)
        update_s = raw_read_modify_write(zk, paths, updates, chunk)
        list_runs = []
        for _ in range(LIST_REPS):
            started = time.perf_counter()
            names = zk.get_children(base)
            pending = [zk.get_async(f"{base}/{n}") for n in names] + [zk.get_async(f"{base}/{n}/status") for n in names]
            for result in pending:
                result.get()
            list_runs.append(time.perf_counter() - started)
            assert len(names) == count
    finally:
        zk.stop()
        zk.close()
    return {"create": create_s, "get": get_s, "update": update_s, "list": statistics.median(list_runs)}


async def store_watch_latency(hosts: str, updates: int) -> tuple[list[float], list[bytes]]:
    client = ZkClient(hosts, auth_data=[("digest", f"{USER}:{PASSWORD}")])
    await client.start()
    acl = [make_digest_acl(USER, PASSWORD, all=True)]
    store = Store(client, root="/bench-watch-store", acl=acl)
    latencies: list[float] = []
    try:
        obj = await store.create(make_object(0))
        path = store.obj_path(resolve_kind("zkc"), NAMESPACE, obj.name)
        payloads = [codec.encode(with_replicas(obj, 3 + (i % 2) * 2)) for i in range(updates)]
        stream: Any = store.watch("zkc", NAMESPACE)
        while (await stream.__anext__()).type != "SYNCED":
            pass
        for payload in payloads:
            started = time.perf_counter()
            stat = await client.set(path, payload)
            while True:
                event = await asyncio.wait_for(stream.__anext__(), 10)
                if event.object is not None and event.object.metadata.resource_version == str(stat.mzxid):
                    break
            latencies.append(time.perf_counter() - started)
        await stream.aclose()
    finally:
        await client.stop()
    return latencies, payloads


def raw_watch_latency(hosts: str, updates: int, payloads: list[bytes]) -> list[float]:
    zk = KazooClient(hosts, auth_data=[("digest", f"{USER}:{PASSWORD}")])
    zk.start(timeout=30)
    acl = [make_digest_acl(USER, PASSWORD, all=True)]
    path = f"/bench-watch-raw/resources/zookeeperclusters/{NAMESPACE}/zk-00000"
    latencies: list[float] = []
    try:
        zk.create(path, b"{}", acl=acl, makepath=True)
        seen: dict[int, float] = {}
        arrived = threading.Condition()

        def on_change(data: bytes | None, stat: Any) -> None:
            if stat is not None:
                with arrived:
                    seen[stat.mzxid] = time.perf_counter()
                    arrived.notify_all()

        DataWatch(zk, path, on_change)
        for i in range(updates):
            started = time.perf_counter()
            stat = zk.set(path, payloads[i])
            with arrived:
                if not arrived.wait_for(lambda s=stat: s.mzxid in seen, timeout=10):
                    raise TimeoutError("raw DataWatch did not fire")
                latencies.append(seen[stat.mzxid] - started)
    finally:
        zk.stop()
        zk.close()
    return latencies


def main(count: int, chunk: int, watch_updates: int) -> None:
    with running_ensemble(1, name="bench-store") as ensemble:
        hosts = ensemble.connection_string
        # Warm up the JVM and both client paths first, under roots of their own.
        warm = min(count, 1000)
        _, warm_payloads, warm_updates, warm_status = asyncio.run(store_side(hosts, warm, chunk, "/warm-store"))
        raw_side(hosts, warm, chunk, warm_payloads, warm_updates, warm_status, "/warm-raw")
        store_s, payloads, updates, status = asyncio.run(store_side(hosts, count, chunk))
        raw_s = raw_side(hosts, count, chunk, payloads, updates, status)
        store_lat, watch_payloads = asyncio.run(store_watch_latency(hosts, watch_updates))
        raw_lat = raw_watch_latency(hosts, watch_updates, watch_payloads)

    ops: dict[str, Any] = {}
    for op in ("create", "get", "update", "list"):
        store_ops = count / store_s[op]
        raw_ops = count / raw_s[op]
        ops[op] = {
            "store_ops_per_s": round(store_ops, 1),
            "raw_ops_per_s": round(raw_ops, 1),
            "ratio_store_over_raw": ratio(store_ops, raw_ops),
            "store_s": round(store_s[op], 3),
            "raw_s": round(raw_s[op], 3),
        }
    ms = [x * 1000 for x in store_lat]
    raw_ms = [x * 1000 for x in raw_lat]
    store_sum, raw_sum = summary(ms), summary(raw_ms)
    write(
        "store",
        {
            "count": count,
            "concurrency": chunk,
            "payload_bytes": {"object": len(payloads[0]) if payloads else 0, "status": len(status)},
            "list_reps": LIST_REPS,
            "ops": ops,
            "note_list": "list ops/s counts objects listed per second (median of list_reps full lists)",
            "watch_latency_ms": {
                "updates": watch_updates,
                "store": {k: round(v, 3) for k, v in store_sum.items()},
                "raw_datawatch": {k: round(v, 3) for k, v in raw_sum.items()},
                "ratio_p50_store_over_raw": ratio(store_sum["p50"], raw_sum["p50"]),
                "ratio_p99_store_over_raw": ratio(store_sum["p99"], raw_sum["p99"]),
            },
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10000, help="objects (default 10000)")
    parser.add_argument("--chunk", type=int, default=500, help="operations in flight at once (default 500)")
    parser.add_argument("--watch-updates", type=int, default=200, help="writes timed for watch latency")
    args = parser.parse_args()
    main(args.count, args.chunk, args.watch_updates)
