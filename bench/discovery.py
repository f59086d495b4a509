"""Discovery and load balancing.

    python bench/discovery.py

- picks per second of each strategy over 10 instances;
- latency from an endpoint change to the discovery cache, next to a raw kazoo watch (ratio);
- proxy throughput (requests/s to a small HTTP server) next to direct connections (ratio);
- time from an instance crash to its replacement being an endpoint again (the Application
  controller on the local platform).
Writes bench/results/discovery.json.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kazoo.client import KazooClient

from common import ratio, summary, write
from zkop.api import Application, parse_object
from zkop.cli.local import stop_everything
from zkop.client.connect import Connection
from zkop.controllers.application import controller as app_controller
from zkop.discovery import AsyncServiceDiscovery, Instance, Picker, Proxy, registry
from zkop.discovery.strategies import STRATEGY_NAMES
from zkop.platform.local.instances import LocalInstances
from zkop.platform.local.platform import LocalPlatform
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.store import Store
from zkop.testing import running_ensemble


def picks_per_second(seconds: float = 0.5) -> dict[str, float]:
    instances = [Instance(f"i{i}", "127.0.0.1", 40000 + i) for i in range(10)]
    out = {}
    for name in STRATEGY_NAMES:
        picker = Picker(name, instances)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for k in range(100):
                inst = picker.acquire(f"key-{k}")
                if inst is not None:
                    picker.release(inst)
            n += 100
        out[name] = round(n / (time.perf_counter() - t0))
    return out


async def cache_latency(conn: Connection, client_store: Store, updates: int = 100) -> dict[str, object]:
    client = client_store.client
    await registry.ensure_service(client, conn.root, "default", "lat", conn.acl())
    sd = AsyncServiceDiscovery(conn.hosts, root=conn.root)
    await sd.start()
    provider = await sd.provider("default/lat")
    ours: list[float] = []
    first = Instance("x", "127.0.0.1", 19999)
    await registry.publish_endpoint(client, conn.root, "default", "lat", first, conn.acl())
    await provider.cache.wait_for(lambda xs: len(xs) == 1)
    path = f"{registry.endpoints_path(conn.root, 'default', 'lat')}/x"
    for i in range(updates):
        inst = Instance("x", "127.0.0.1", 20000 + i)
        t0 = time.monotonic()
        await client.set(path, registry.encode(inst))  # the same raw set as the baseline
        await provider.cache.wait_for(lambda xs, p=inst.port: any(x.port == p for x in xs))
        ours.append((time.monotonic() - t0) * 1000)
    await sd.close()
    # Raw kazoo: a DataWatch on a znode of the same size, set the same way.
    raw: list[float] = []
    kz = KazooClient(conn.hosts, auth_data=conn.auth_data)
    kz.start(timeout=20)
    fired = threading.Event()
    stamps: list[float] = []
    kz.ensure_path("/bench-raw-endpoint")

    @kz.DataWatch("/bench-raw-endpoint")
    def _w(data: bytes | None, stat: object) -> None:
        stamps.append(time.monotonic())
        fired.set()

    for i in range(updates):
        fired.clear()
        n = len(stamps)
        t0 = time.monotonic()
        kz.set("/bench-raw-endpoint", registry.encode(Instance("x", "127.0.0.1", 30000 + i)))
        fired.wait(10)
        raw.append((stamps[n] - t0) * 1000)
    kz.stop()
    kz.close()
    o, r = summary(ours), summary(raw)
    return {
        "zkop_cache_ms": o,
        "raw_watch_ms": r,
        "ratio_p50": ratio(o["p50"], r["p50"]),
        "ratio_p99": ratio(o["p99"], r["p99"]),
        "note": "both sides time the same raw set of the endpoint znode until the change is seen",
    }


async def http_server() -> asyncio.Server:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        await w.drain()
        w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def load(port: int, requests: int, concurrency: int = 8) -> float:
    done = 0

    async def worker() -> None:
        nonlocal done
        while done < requests:
            done += 1
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET / HTTP/1.0\r\n\r\n")
            await w.drain()
            await r.read()
            w.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.monotonic() - t0)


async def proxy_throughput(conn: Connection, store: Store, requests: int = 3000) -> dict[str, object]:
    servers = [await http_server() for _ in range(2)]
    for i, s in enumerate(servers):
        inst = Instance(f"s{i}", "127.0.0.1", s.sockets[0].getsockname()[1])
        await registry.publish_endpoint(store.client, conn.root, "default", "tp", inst, conn.acl())
    sd = AsyncServiceDiscovery(conn.hosts, root=conn.root)
    await sd.start()
    provider = await sd.provider("default/tp")
    await provider.cache.wait_for(lambda xs: len(xs) == 2)
    proxy = Proxy(provider)
    pport = await proxy.start()
    direct = await load(servers[0].sockets[0].getsockname()[1], requests)
    proxied = await load(pport, requests)
    await proxy.stop()
    await sd.close()
    for s in servers:
        s.close()
    return {
        "requests": requests,
        "direct_rps": round(direct),
        "proxy_rps": round(proxied),
        "ratio_proxy_over_direct": ratio(proxied, direct),
    }


async def crash_to_endpoint(conn: Connection, store: Store, reps: int = 3) -> dict[str, object]:
    state = Path(tempfile.mkdtemp(prefix="zkop-bench-apps-"))
    local = LocalPlatform(state, "zkop-operator")
    instances = LocalInstances(state, local.fence)
    manager = Manager(
        conn,
        ManagerOptions(name="bench-apps", metrics_port=None),
        controllers=[app_controller.controller(None, instances, conn.root)],
        platforms=[local],
    )
    task = asyncio.create_task(manager.run())
    samples: list[float] = []
    try:
        app = parse_object(
            {
                "apiVersion": "zkop.io/v1",
                "kind": "Application",
                "metadata": {"name": "crashy"},
                "spec": {
                    "replicas": 1,
                    "template": {
                        "command": [sys.executable, "-m", "zkop.examples.counter"],
                        "ports": [{"name": "http"}],
                    },
                    "probes": {"readiness": {"tcp": {"port": "http"}, "periodSeconds": 1}},
                },
            }
        )
        assert isinstance(app, Application)
        await store.create(app)
        sd = AsyncServiceDiscovery(conn.hosts, root=conn.root)
        await sd.start()
        provider = await sd.provider("default/crashy")
        for _ in range(reps):
            await provider.cache.wait_for(lambda xs: len(xs) == 1, timeout=60)
            rec = instances.records("default", "crashy")[0]
            running = instances.running("default", "crashy", rec.name)
            assert running is not None
            t0 = time.monotonic()
            os.kill(running.pid, signal.SIGKILL)
            await provider.cache.wait_for(lambda xs: len(xs) == 0, timeout=30)
            await provider.cache.wait_for(lambda xs: len(xs) == 1, timeout=60)
            samples.append(time.monotonic() - t0)
        await sd.close()
    finally:
        manager.stop()
        await task
        stop_everything(state, 5.0)
        shutil.rmtree(state, ignore_errors=True)
    return {
        "crash_to_endpoint_s": summary(samples),
        "samples_s": [round(x, 3) for x in samples],
        "note": "consecutive crashes back off 1 s, 2 s, 4 s (samples in order), plus up to one 1 s probe period",
    }


async def main() -> None:
    picks = picks_per_second()
    with running_ensemble(1) as zk:
        conn = Connection(zk.connection_string, "zkop", "bench-discovery")
        client = conn.client()
        await client.start()
        store = Store(client, root=conn.root, acl=conn.acl())
        try:
            cache = await cache_latency(conn, store)
            proxy = await proxy_throughput(conn, store)
            crash = await crash_to_endpoint(conn, store)
        finally:
            await client.stop()
    write("discovery", {"picks_per_second": picks, "cache_latency": cache, "proxy": proxy, "crash": crash})


if __name__ == "__main__":
    asyncio.run(main())
