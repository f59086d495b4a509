"""A small HTTP service that counts its requests in its ZooKeeper.

Run by zkop with ``HOST`` and ``PORT`` (where to listen), ``ZK_HOSTS`` (its ZookeeperCluster),
``ZKOP_INSTANCE`` and, for load reports, ``ZKOP_REGISTRY_HOSTS``/``ZKOP_REGISTRY_ROOT``/``ZKOP_REGISTRY_AUTH``/
``ZKOP_NAMESPACE``/``ZKOP_APP``.

    GET /           -> "<instance> <count>" (the count is shared by all instances of the
                       application: a kazoo Counter at /counter/<namespace>/<app> in $ZK_HOSTS;
                       without ZK_HOSTS each instance counts on its own)
    GET /healthz    -> ok (503 after POST /fail, for readiness tests)
    POST /load?value=X -> reports load X for the autoscaler (also ``LOAD`` at start)
    GET /load       -> the load it reports

The load is reported as an ephemeral znode ``<root>/services/<ns>/<app>/load/<instance>``
in the control-plane ZooKeeper, through a session authenticated as the service's registry
identity (``ZKOP_REGISTRY_AUTH=svc/<ns>/<app>:<password>``, which zkop passes to the
instances it runs; the registry refuses anonymous writes). The znode is readable by all
and writable only by that identity; it goes with the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from urllib.parse import parse_qs, urlsplit

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.security import ACL, Id, Permissions, make_acl

# World READ, and everything for the identity that creates it (the ``auth`` scheme).
LOAD_ACL = [make_acl("world", "anyone", read=True), ACL(Permissions.ALL, Id("auth", ""))]


class Counter:
    def __init__(self) -> None:
        self.instance = os.environ.get("ZKOP_INSTANCE", "counter")
        self.local = 0
        self.healthy = True
        self.zk: KazooClient | None = None
        hosts = os.environ.get("ZK_HOSTS")
        if hosts:
            self.zk = KazooClient(hosts, timeout=10)
            self.zk.start(timeout=30)
            ns, app = os.environ.get("ZKOP_NAMESPACE", "default"), os.environ.get("ZKOP_APP", "counter")
            self.shared = self.zk.Counter(f"/counter/{ns}/{app}")
        self.load = 0.0
        self.registry: KazooClient | None = None
        reg_hosts, reg_auth = os.environ.get("ZKOP_REGISTRY_HOSTS"), os.environ.get("ZKOP_REGISTRY_AUTH")
        if reg_hosts and reg_auth:
            self.registry = KazooClient(reg_hosts, timeout=10, auth_data=[("digest", reg_auth)])
            self.registry.start(timeout=30)
        elif reg_hosts:
            print("ZKOP_REGISTRY_AUTH is not set: not reporting load", file=sys.stderr, flush=True)
        self.report_load(float(os.environ.get("LOAD", "0")))

    def count(self) -> int:
        self.local += 1
        if self.zk is None:
            return self.local
        self.shared += 1
        return int(self.shared.value)

    def report_load(self, value: float) -> None:
        self.load = value
        if self.registry is None:
            return
        root = os.environ.get("ZKOP_REGISTRY_ROOT", "/zkop").rstrip("/")
        path = (
            f"{root}/services/{os.environ.get('ZKOP_NAMESPACE', 'default')}/"
            f"{os.environ.get('ZKOP_APP', 'counter')}/load/{self.instance}"
        )
        raw = json.dumps({"value": value, "at": time.time()}).encode()
        try:
            try:
                self.registry.set(path, raw)
            except NoNodeError:
                with contextlib.suppress(NodeExistsError, NoNodeError):
                    self.registry.create(path, raw, ephemeral=True, acl=LOAD_ACL)
        except KazooException as exc:  # e.g. NoAuth: say so in the instance log, keep serving
            print(f"cannot report load to {path}: {type(exc).__name__}", file=sys.stderr, flush=True)


async def handle(counter: Counter, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = (await reader.readline()).decode("latin-1").split()
        if not request:
            return  # a connection closed without a request (a TCP probe): nothing to count
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        method, target = (request[0], request[1]) if len(request) >= 2 else ("GET", "/")
        url = urlsplit(target)
        status, body = 200, b""
        if url.path == "/healthz":
            status, body = (200, b"ok\n") if counter.healthy else (503, b"failing\n")
        elif url.path == "/fail" and method == "POST":
            counter.healthy = False
            body = b"now failing\n"
        elif url.path == "/recover" and method == "POST":
            counter.healthy = True
            body = b"ok\n"
        elif url.path == "/load" and method == "GET":
            body = f"{counter.load}\n".encode()
        elif url.path == "/load" and method == "POST":
            value = float(parse_qs(url.query).get("value", ["0"])[0])
            await asyncio.to_thread(counter.report_load, value)
            body = f"load {value}\n".encode()
        else:
            n = await asyncio.to_thread(counter.count)
            body = f"{counter.instance} {n}\n".encode()
        reason = {200: "OK", 503: "Service Unavailable"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        await writer.drain()
    except (ConnectionError, IndexError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    counter = await asyncio.to_thread(Counter)
    port = int(os.environ.get("PORT", "8080"))
    host = os.environ.get("HOST", "127.0.0.1")  # zkop gives it: 127.0.0.1 locally, 0.0.0.0 in a Pod
    server = await asyncio.start_server(lambda r, w: handle(counter, r, w), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    for client in (counter.zk, counter.registry):
        if client is not None:
            client.stop()


if __name__ == "__main__":
    asyncio.run(main())
