"""The Application controller on real processes, with discovery and the proxy."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zkop.api import Application, parse_object
from zkop.cli.local import stop_everything
from zkop.client.connect import Connection
from zkop.controllers.application import controller as app_controller
from zkop.discovery import AsyncServiceDiscovery, Proxy
from zkop.platform.local.instances import LocalInstances
from zkop.platform.local.platform import LocalPlatform
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.store import NotFound, Store

pytestmark = pytest.mark.integration

COUNTER = [sys.executable, "-m", "zkop.examples.counter"]


def application(name: str = "web", replicas: int = 2, **spec: Any) -> Application:
    body: dict[str, Any] = {
        "replicas": replicas,
        "template": {"command": COUNTER, "ports": [{"name": "http"}]},
        "probes": {
            "readiness": {"http": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
        },
    }
    body.update(spec)
    obj = parse_object({"apiVersion": "zkop.io/v1", "kind": "Application", "metadata": {"name": name}, "spec": body})
    assert isinstance(obj, Application)
    return obj


@dataclass
class Env:
    store: Store
    conn: Connection
    instances: LocalInstances

    async def get(self, name: str = "web") -> Application:
        obj = await self.store.get("app", "default", name)
        assert isinstance(obj, Application)
        return obj

    async def wait(self, pred: Callable[[Application], bool], name: str = "web", timeout: float = 40.0) -> Application:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    obj = await self.get(name)
                    if pred(obj):
                        return obj
                except NotFound:
                    pass
                await asyncio.sleep(0.1)

    async def change(self, name: str = "web", **spec: Any) -> None:
        obj = await self.get(name)
        await self.store.update(obj.model_copy(update={"spec": obj.spec.model_copy(update=spec)}))


@pytest.fixture
async def env(connection: Connection, store: Store, tmp_path: Path) -> AsyncIterator[Env]:
    state = tmp_path / "state"
    local = LocalPlatform(state, "zkop-operator")
    instances = LocalInstances(state, local.fence)
    ctrl = app_controller.controller(None, instances, connection.root)
    manager = Manager(
        connection,
        ManagerOptions(name="apps", session_timeout=6.0, metrics_port=None),
        controllers=[ctrl],
        platforms=[local],
    )
    task = asyncio.create_task(manager.run())
    try:
        yield Env(store, connection, instances)
    finally:
        manager.stop()
        await task
        await asyncio.to_thread(stop_everything, state, 5.0)


def ready(n: int) -> Callable[[Application], bool]:
    return lambda a: a.status.ready_replicas == n and len(a.status.endpoints) == n and a.status.replicas == n


async def test_endpoints_follow_readiness_and_crashes(env: Env) -> None:
    await env.store.create(application())
    app = await env.wait(ready(2))
    sd = AsyncServiceDiscovery(env.conn.hosts, root=env.conn.root)
    await sd.start()
    try:
        provider = await sd.provider("default/web")
        await provider.cache.wait_for(lambda xs: len(xs) == 2)
        victim = app.status.instances[0]
        # Readiness fails: the endpoint goes; it recovers: the endpoint comes back.
        await post(victim.port, "/fail")
        await provider.cache.wait_for(lambda xs: victim.name not in {x.id for x in xs}, timeout=5)
        await post(victim.port, "/recover")
        await provider.cache.wait_for(lambda xs: victim.name in {x.id for x in xs}, timeout=5)
        # The process dies: the endpoint goes at once, the instance is restarted and comes back.
        assert victim.pid is not None
        env.instances.kill("default", "web", victim.name, epoch=None)
        await provider.cache.wait_for(lambda xs: victim.name not in {x.id for x in xs}, timeout=5)
        app = await env.wait(lambda a: ready(2)(a) and a.status.instances[0].restarts == 1)
        await provider.cache.wait_for(lambda xs: len(xs) == 2)
    finally:
        await sd.close()


async def post(port: int | None, path: str) -> None:
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.0\r\n\r\n".encode())
    await writer.drain()
    await reader.read()
    writer.close()


async def test_crash_loop_backoff_reports_exit_code_and_log(env: Env) -> None:
    crasher = application(
        "crash",
        1,
        template={"command": [sys.executable, "-c", "print('about to fail'); raise SystemExit(3)"]},
        probes={},
    )
    await env.store.create(crasher)
    app = await env.wait(
        lambda a: bool(a.status.instances) and a.status.instances[0].phase == "CrashLoopBackOff", name="crash"
    )
    inst = app.status.instances[0]
    assert inst.exit_code == 3 and "about to fail" in (inst.message or "")
    events = await env.store.list_events("default", kind="app", name="crash")
    assert any(e.reason == "BackOff" for e in events)
    # Restarts slow down: each scheduled delay is longer than the one before (1 s, 2 s, 4 s ...).
    async with asyncio.timeout(20):
        while True:
            events = await env.store.list_events("default", kind="app", name="crash")
            delays = [
                int(e.message.rsplit("restart in ", 1)[1].rstrip("s"))
                for e in events
                if e.reason in ("Restarting", "BackOff")
            ]
            if len(delays) >= 3:
                break
            await asyncio.sleep(0.2)
    assert delays[:3] == [1, 2, 4]


async def test_rolling_update_through_the_proxy_fails_no_request(env: Env) -> None:
    await env.store.create(application(strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    await env.wait(ready(2))
    sd = AsyncServiceDiscovery(env.conn.hosts, root=env.conn.root)
    await sd.start()
    provider = await sd.provider("default/web")
    await provider.cache.wait_for(lambda xs: len(xs) == 2)
    proxy = Proxy(provider, attempts=3)
    port = await proxy.start()
    results: list[bool] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set() and len(results) < 5000:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"GET / HTTP/1.0\r\n\r\n")
                await w.drain()
                data = await r.read()
                w.close()
                results.append(data.startswith(b"HTTP/1.1 200"))
            except OSError:
                results.append(False)

    task = asyncio.create_task(client())
    try:
        before = {i.name for i in (await env.get()).status.instances}
        obj = await env.get()
        from zkop.api import EnvVar

        env_vars = [*obj.spec.template.env, EnvVar(name="V", value="2")]
        template = obj.spec.template.model_copy(update={"env": env_vars})
        await env.change(template=template)
        await env.wait(
            lambda a: (
                ready(2)(a) and a.status.updated_replicas == 2 and not ({i.name for i in a.status.instances} & before)
            ),
            timeout=60,
        )
    finally:
        stop.set()
        await task
        await proxy.stop()
        await sd.close()
    assert len(results) > 20
    assert all(results), f"{results.count(False)} of {len(results)} requests failed during the rollout"


async def test_autoscale_up_and_down_on_reported_load(env: Env) -> None:
    app = application(
        "auto",
        1,
        autoscaling={
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [{"type": "load", "targetValue": 10}],
            "scaleDownStabilizationSeconds": 3,
        },
    )
    await env.store.create(app)
    obj = await env.wait(ready(1), name="auto")
    await post(obj.status.instances[0].port, "/load?value=25")
    obj = await env.wait(lambda a: a.status.desired_replicas == 3 and ready(3)(a), name="auto")
    assert obj.status.last_scale_time is not None and obj.status.current_metric is not None
    for inst in obj.status.instances:
        await post(inst.port, "/load?value=0")
    await env.wait(lambda a: a.status.desired_replicas == 1 and ready(1)(a), name="auto", timeout=40)
    scaled = [e for e in await env.store.list_events("default", kind="app", name="auto") if e.reason == "Scaled"]
    assert len(scaled) >= 2


async def test_bad_input_fails_clearly_and_starts_nothing(env: Env) -> None:
    await env.store.create(application("nocmd", 1, template={"command": ["no-such-program-xyz"]}, probes={}))
    app = await env.wait(lambda a: bool(a.status.instances) and a.status.instances[0].phase == "Failed", name="nocmd")
    assert app.status.instances[0].reason == "CommandNotFound"
    assert "no-such-program-xyz" in (app.status.instances[0].message or "")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        await env.store.create(
            application("clash", 1, template={"command": COUNTER, "ports": [{"name": "http", "containerPort": port}]})
        )
        app = await env.wait(
            lambda a: bool(a.status.instances) and a.status.instances[0].phase == "Failed", name="clash"
        )
        assert app.status.instances[0].reason == "PortConflict" and str(port) in (app.status.instances[0].message or "")

    await env.store.create(application("orphan", 1, zookeeper={"clusterRef": {"name": "missing"}}))
    app = await env.wait(
        lambda a: any(c.type == "ClusterReady" and c.status == "False" for c in a.status.conditions), name="orphan"
    )
    cond = next(c for c in app.status.conditions if c.type == "ClusterReady")
    assert cond.reason == "ClusterNotFound" and "missing" in (cond.message or "")
    assert app.status.instances == [] and env.instances.records("default", "orphan") == []


async def test_delete_stops_instances_and_withdraws_endpoints(env: Env) -> None:
    await env.store.create(application("gone", 2))
    app = await env.wait(ready(2), name="gone")
    pids = [i.pid for i in app.status.instances]
    await env.store.delete("app", "default", "gone")
    async with asyncio.timeout(30):
        while True:
            try:
                await env.get("gone")
            except NotFound:
                break
            await asyncio.sleep(0.1)
    import psutil

    assert all(p is None or not psutil.pid_exists(p) or psutil.Process(p).status() == "zombie" for p in pids)
    sd = AsyncServiceDiscovery(env.conn.hosts, root=env.conn.root)
    await sd.start()
    try:
        provider = await sd.provider("default/gone")
        assert provider.instances() == []
    finally:
        await sd.close()
