"""Discovery and load balancing.

    python bench/discovery.py

- picks per second of each strategy through a provider over a real cache of 10 endpoints
  (``get_instance`` alone, and ``call`` = acquire + release);
- latency from an endpoint change (a data change, and a new endpoint) to the discovery
  cache, p50/p99, next to a raw kazoo watch (DataWatch / ChildrenWatch) on the same
  ZooKeeper in the same run (ratio);
- proxy throughput: requests/s through ``zkop proxy`` (its own process, as deployed) to a
  small HTTP server (another process, 2 endpoints), next to the same load sent to the
  servers directly (ratio); one connection per request, and round trips on kept-open
  connections;
- time from an instance crash to its replacement being an endpoint again (the Application
  controller on the local platform); ``null`` with the reason if that cannot run.
Writes bench/results/discovery.json.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kazoo.client import KazooClient

from common import ratio, summary, write
from zkop.client.bridge import ZkClient
from zkop.client.connect import Connection
from zkop.discovery import AsyncServiceDiscovery, Instance, registry
from zkop.discovery.strategies import STRATEGY_NAMES
from zkop.store import Store
from zkop.testing import running_ensemble

ZKOP = Path(sys.executable).parent / "zkop"


# ---- picks --------------------------------------------------------------------------------


KEYS = tuple(f"user-{k}" for k in range(100))


def rate(one: Callable[[str], object], seconds: float) -> int:
    """Calls of ``one(key)`` per second, over ``seconds``."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for key in KEYS:
            one(key)
        n += len(KEYS)
    return round(n / (time.perf_counter() - t0))


async def picks_per_second(conn: Connection, client: ZkClient, seconds: float = 0.5) -> dict[str, Any]:
    for i in range(10):
        inst = Instance(f"i{i}", "127.0.0.1", 40000 + i)
        await registry.publish_endpoint(client, conn.root, "default", "picks", inst, conn.acl())
    out: dict[str, Any] = {}
    async with AsyncServiceDiscovery(conn.hosts, root=conn.root) as sd:
        for name in STRATEGY_NAMES:
            provider = await sd.provider("default/picks", strategy=name)
            await provider.cache.wait_for(lambda xs: len(xs) == 10)

            def call(key: str, provider: Any = provider) -> None:
                with provider.call(key):
                    pass

            out[name] = {"get_instance": rate(provider.get_instance, seconds), "call": rate(call, seconds)}
    return out


# ---- cache latency ------------------------------------------------------------------------


async def cache_latency(conn: Connection, client: ZkClient, updates: int = 200) -> dict[str, Any]:
    await registry.ensure_service(client, conn.root, "default", "lat", conn.acl())
    base = registry.endpoints_path(conn.root, "default", "lat")
    acl = [*conn.acl(), registry.WORLD_READ]
    first = Instance("x", "127.0.0.1", 19999)
    await client.create(f"{base}/x", registry.encode(first), acl=acl)
    set_ms: list[float] = []
    create_ms: list[float] = []
    async with AsyncServiceDiscovery(conn.hosts, root=conn.root) as sd:
        cache = await sd.cache("default/lat")
        await cache.wait_for(lambda xs: len(xs) == 1)
        for i in range(updates):
            inst = Instance("x", "127.0.0.1", 20000 + i)
            t0 = time.perf_counter()
            await client.set(f"{base}/x", registry.encode(inst))  # the same raw write as the baseline
            await cache.wait_for(lambda xs, p=inst.port: any(x.port == p for x in xs))
            set_ms.append((time.perf_counter() - t0) * 1000)
        for i in range(updates):
            new = Instance(f"n{i}", "127.0.0.1", 30000 + i)
            t0 = time.perf_counter()
            await client.create(f"{base}/{new.id}", registry.encode(new), acl=acl)
            await cache.wait_for(lambda xs, ident=new.id: any(x.id == ident for x in xs))
            create_ms.append((time.perf_counter() - t0) * 1000)
            await client.delete(f"{base}/{new.id}")
            await cache.wait_for(lambda xs, ident=new.id: all(x.id != ident for x in xs))

    # Raw kazoo in the same run: a DataWatch and a ChildrenWatch, the writes made the same way.
    raw_set, raw_create = await asyncio.to_thread(raw_watch_latency, conn, updates)
    result: dict[str, Any] = {}
    for kind, ours, raw in (("data_change", set_ms, raw_set), ("new_endpoint", create_ms, raw_create)):
        o, r = summary(ours), summary(raw)
        result[kind] = {
            "zkop_cache_ms": o,
            "raw_kazoo_watch_ms": r,
            "ratio_p50": ratio(o["p50"], r["p50"]),
            "ratio_p99": ratio(o["p99"], r["p99"]),
        }
    result["note"] = (
        "time from the write's start until the change is visible: in the zkop cache (watch, read, hop onto the"
        " event loop, swap) vs in a raw kazoo DataWatch/ChildrenWatch callback (watch, read) on its own session"
    )
    return result


def raw_watch_latency(conn: Connection, updates: int) -> tuple[list[float], list[float]]:
    writer = KazooClient(conn.hosts, auth_data=conn.auth_data)
    watcher = KazooClient(conn.hosts)
    writer.start(timeout=20)
    watcher.start(timeout=20)
    try:
        base = "/bench-raw/endpoints"
        writer.ensure_path(base)
        writer.create(f"{base}/x", registry.encode(Instance("x", "127.0.0.1", 19999)))
        fired = threading.Condition()
        seen: dict[str, Any] = {"data": None, "children": ()}

        @watcher.DataWatch(f"{base}/x")
        def _data(data: bytes | None, stat: object) -> None:
            with fired:
                seen["data"] = data
                fired.notify_all()

        @watcher.ChildrenWatch(base)
        def _children(children: list[str]) -> None:
            with fired:
                seen["children"] = tuple(children)
                fired.notify_all()

        def until(check: Callable[[], bool]) -> None:
            with fired:
                assert fired.wait_for(check, 10)

        set_ms: list[float] = []
        for i in range(updates):
            raw = registry.encode(Instance("x", "127.0.0.1", 20000 + i))
            t0 = time.perf_counter()
            writer.set(f"{base}/x", raw)
            until(lambda raw=raw: seen["data"] == raw)
            set_ms.append((time.perf_counter() - t0) * 1000)
        create_ms: list[float] = []
        for i in range(updates):
            name = f"n{i}"
            t0 = time.perf_counter()
            writer.create(f"{base}/{name}", registry.encode(Instance(name, "127.0.0.1", 30000 + i)))
            until(lambda name=name: name in seen["children"])
            create_ms.append((time.perf_counter() - t0) * 1000)
            writer.delete(f"{base}/{name}")
            until(lambda name=name: name not in seen["children"])
        return set_ms, create_ms
    finally:
        for kz in (watcher, writer):
            kz.stop()
            kz.close()


# ---- proxy throughput ---------------------------------------------------------------------

SERVER = r"""
import asyncio, sys

async def handle(r, w):
    try:
        while True:
            line = await r.readline()
            if not line:
                break
            while (await r.readline()) not in (b"\r\n", b"\n", b""):
                pass
            keep = b"1.1" in line
            close = b"" if keep else b"Connection: close\r\n"
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n" + close + b"\r\nok\n")
            await w.drain()
            if not keep:
                break
    except ConnectionError:
        pass
    finally:
        w.close()

async def main():
    servers = [await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024) for _ in range(2)]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def per_connection(ports: list[int], requests: int, concurrency: int = 16) -> float:
    """Requests/s, HTTP/1.0 style: one connection per request, spread over ``ports``."""
    counter = iter(range(requests))

    async def worker() -> None:
        for n in counter:
            r, w = await asyncio.open_connection("127.0.0.1", ports[n % len(ports)])
            w.write(b"GET / HTTP/1.0\r\n\r\n")
            await w.drain()
            assert (await r.read()).endswith(b"ok\n")
            w.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - t0)


async def kept_open(ports: list[int], requests: int, connections: int = 16) -> float:
    """Requests/s, HTTP/1.1 keep-alive: ``connections`` connections, round trips on each."""
    per = requests // connections

    async def worker(i: int) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", ports[i % len(ports)])
        for _ in range(per):
            w.write(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
            await w.drain()
            await r.readuntil(b"ok\n")
        w.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    return per * connections / (time.perf_counter() - t0)


async def proxy_throughput(conn: Connection, client: ZkClient, requests: int = 4000) -> dict[str, Any]:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    proxy: subprocess.Popen[bytes] | None = None
    state = tempfile.mkdtemp(prefix="zkop-bench-proxy-")
    try:
        assert server.stdout is not None
        ports = [int(p) for p in (await asyncio.to_thread(server.stdout.readline)).split()]
        for i, port in enumerate(ports):
            inst = Instance(f"s{i}", "127.0.0.1", port)
            await registry.publish_endpoint(client, conn.root, "default", "tp", inst, conn.acl())
        listen = free_port()
        env = {k: v for k, v in os.environ.items() if k != "ZKOP_AUTH"}
        env["ZKOP_STATE_DIR"] = state  # no credentials there: anonymous, as any discovery client
        proxy = subprocess.Popen(
            [
                *(str(ZKOP), "proxy", "default/tp", "--zk", conn.hosts, "--root", conn.root),
                *("--listen", f"127.0.0.1:{listen}", "--strategy", "round_robin"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                await per_connection([listen], 1, 1)
                break
            except (OSError, AssertionError):
                assert proxy.poll() is None and time.monotonic() < deadline, "zkop proxy did not come up"
                await asyncio.sleep(0.05)
        await per_connection(ports, 200)  # warm up both paths
        await per_connection([listen], 200)
        direct = await per_connection(ports, requests)
        proxied = await per_connection([listen], requests)
        direct_ka = await kept_open(ports, requests * 4)
        proxied_ka = await kept_open([listen], requests * 4)
    finally:
        for proc in (proxy, server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(state, ignore_errors=True)
    return {
        "connection_per_request": {
            "requests": requests,
            "direct_rps": round(direct),
            "proxy_rps": round(proxied),
            "ratio_proxy_over_direct": ratio(proxied, direct),
        },
        "kept_open_connections": {
            "requests": requests * 4,
            "connections": 16,
            "direct_rps": round(direct_ka),
            "proxy_rps": round(proxied_ka),
            "ratio_proxy_over_direct": ratio(proxied_ka, direct_ka),
        },
        "note": "load generator (this process), `zkop proxy` and the HTTP server (2 endpoints) are separate"
        " processes on the same 2 cores; direct = the same load sent to the 2 endpoints round robin",
    }


# ---- crash to endpoint --------------------------------------------------------------------


async def crash_to_endpoint(conn: Connection, client: ZkClient, reps: int = 3) -> dict[str, Any]:
    # Imported here: the Application controller is another package's; a failure there
    # must not lose the discovery figures.
    from zkop.api import Application, parse_object
    from zkop.cli.local import stop_everything
    from zkop.controllers.application import controller as app_controller
    from zkop.platform.local.applications import LocalInstancePlatform
    from zkop.platform.local.platform import LocalPlatform
    from zkop.runtime.manager import Manager, ManagerOptions

    store = Store(client, root=conn.root, acl=conn.acl())
    state = Path(tempfile.mkdtemp(prefix="zkop-bench-apps-"))
    local = LocalPlatform(state, "zkop-operator")
    instances = LocalInstancePlatform(state, local.fence)
    manager = Manager(
        conn,
        ManagerOptions(name="bench-apps", metrics_port=None),
        controllers=[app_controller.controller(None, instances, conn.root)],
        platforms=[local],
        runnables=[instances],
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
        async with AsyncServiceDiscovery(conn.hosts, root=conn.root) as sd:
            cache = await sd.cache("default/crashy")
            for _ in range(reps):
                await cache.wait_for(lambda xs: len(xs) == 1, timeout=60)
                rec = instances.instances.records("default", "crashy")[0]
                running = instances.instances.running("default", "crashy", rec.name)
                assert running is not None
                pid = instances.instances.app_pid(running)  # the command, not its wrapper: a crash
                assert pid is not None
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                await cache.wait_for(lambda xs: len(xs) == 0, timeout=30)
                await cache.wait_for(lambda xs: len(xs) == 1, timeout=60)
                samples.append(time.perf_counter() - t0)
    finally:
        manager.stop()
        await task
        stop_everything(state, 5.0)
        shutil.rmtree(state, ignore_errors=True)
    return {
        "seconds": summary(samples),
        "samples_s": [round(x, 3) for x in samples],
        "note": "consecutive crashes back off 1 s, 2 s, 4 s (samples in order), plus up to one 1 s probe period",
    }


async def main() -> None:
    with running_ensemble(1) as zk:
        conn = Connection(zk.connection_string, "zkop", "bench-discovery")
        client = conn.client()
        await client.start()
        try:
            picks = await picks_per_second(conn, client)
            cache = await cache_latency(conn, client)
            proxy = await proxy_throughput(conn, client)
            crash: dict[str, Any] | None
            try:
                crash = await crash_to_endpoint(conn, client)
                crash_reason = None
            except Exception as exc:  # the controller belongs to another package
                crash, crash_reason = None, f"the Application controller run failed: {type(exc).__name__}: {exc}"
        finally:
            await client.stop()
    write(
        "discovery",
        {
            "picks_per_second": picks,
            "cache_latency": cache,
            "proxy": proxy,
            "crash_to_endpoint": crash,
            **({"crash_to_endpoint_reason": crash_reason} if crash_reason else {}),
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
