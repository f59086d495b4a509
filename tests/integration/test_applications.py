"""The Application controller on real processes, with discovery and the proxy."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from zkop.api import Application, EnvVar, ResourceList, ZookeeperCluster, parse_object, resolve_kind
from zkop.cli.apps import _scale
from zkop.cli.local import stop_everything
from zkop.cli.main import app as cli
from zkop.client.connect import Connection
from zkop.controllers.application import controller as app_controller
from zkop.discovery import AsyncServiceDiscovery, Proxy, registry
from zkop.errors import Fenced
from zkop.platform.base import Resources
from zkop.platform.local.applications import LocalInstancePlatform
from zkop.platform.local.cgroups import Cgroups, Limits
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
class Operator:
    manager: Manager
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.manager.stop()
        await self.task


@dataclass
class Env:
    store: Store
    conn: Connection
    state: Path
    instances: LocalInstances
    operators: list[Operator] = field(default_factory=list)

    def start_operator(self) -> Operator:
        local = LocalPlatform(self.state, "zkop-operator")
        platform = LocalInstancePlatform(self.state, local.fence)
        manager = Manager(
            self.conn,
            ManagerOptions(name="apps", session_timeout=6.0, metrics_port=None),
            controllers=[app_controller.controller(None, platform, self.conn.root)],
            platforms=[local],
            runnables=[platform],
        )
        op = Operator(manager, asyncio.create_task(manager.run()))
        self.operators.append(op)
        return op

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

    async def reasons(self, name: str) -> list[str]:
        return [e.reason for e in await self.store.list_events("default", kind="app", name=name)]


@pytest.fixture
async def env(connection: Connection, store: Store, tmp_path: Path) -> AsyncIterator[Env]:
    state = tmp_path / "state"
    e = Env(store, connection, state, LocalInstances(state, LocalPlatform(state, "zkop-operator").fence))
    e.start_operator()
    try:
        yield e
    finally:
        for op in e.operators:
            await op.stop()
        await asyncio.to_thread(stop_everything, state, 5.0)


def ready(n: int) -> Callable[[Application], bool]:
    return lambda a: a.status.ready_replicas == n and len(a.status.endpoints) == n and a.status.replicas == n


def condition(a: Application, type_: str) -> tuple[str, str | None, str | None] | None:
    c = next((c for c in a.status.conditions if c.type == type_), None)
    return None if c is None else (c.status, c.reason, c.message)


def first_instance(phase: str) -> Callable[[Application], bool]:
    return lambda a: bool(a.status.instances) and a.status.instances[0].phase == phase


async def http(port: int | None, method: str, path: str) -> bytes:
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.0\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def post(port: int | None, path: str) -> None:
    await http(port, "POST", path)


async def test_endpoints_follow_readiness_and_crashes(env: Env) -> None:
    await env.store.create(application())
    app = await env.wait(ready(2))
    sd = AsyncServiceDiscovery(env.conn.hosts, root=env.conn.root)
    await sd.start()
    try:
        provider = await sd.provider("default/web")
        await provider.cache.wait_for(lambda xs: len(xs) == 2)
        victim = app.status.instances[0]
        # Readiness fails: the endpoint goes (within a probe period); it recovers: it comes back.
        await post(victim.port, "/fail")
        await provider.cache.wait_for(lambda xs: victim.name not in {x.id for x in xs}, timeout=3)
        await post(victim.port, "/recover")
        await provider.cache.wait_for(lambda xs: victim.name in {x.id for x in xs}, timeout=3)
        # The process dies (kill -9 of the pid in status, the command's own): the endpoint goes
        # at once; the exit status is observed; the instance comes back on the same port.
        assert victim.pid is not None and "zkop.examples.counter" in " ".join(psutil.Process(victim.pid).cmdline())
        os.kill(victim.pid, signal.SIGKILL)
        await provider.cache.wait_for(lambda xs: victim.name not in {x.id for x in xs}, timeout=3)
        app = await env.wait(lambda a: ready(2)(a) and a.status.instances[0].restarts == 1)
        again = app.status.instances[0]
        assert again.exit_code == 137 and again.port == victim.port and again.pid != victim.pid
        await provider.cache.wait_for(lambda xs: len(xs) == 2)
        assert "Restarting" in await env.reasons("web")
        # Only the supervising wrapper (the pid record) is killed: the command does not linger.
        other = app.status.instances[1]
        wrapper = env.instances.running("default", "web", other.name)
        assert wrapper is not None and other.pid is not None and other.pid != wrapper.pid
        command = psutil.Process(other.pid)
        os.kill(wrapper.pid, signal.SIGKILL)
        app = await env.wait(lambda a: ready(2)(a) and a.status.instances[1].restarts == 1)
        assert not command.is_running() or command.status() == psutil.STATUS_ZOMBIE
        assert app.status.instances[1].exit_code == -9
    finally:
        await sd.close()


async def test_crash_loop_backoff_reports_exit_code_and_log(env: Env) -> None:
    crasher = application(
        "crash",
        1,
        template={"command": [sys.executable, "-c", "print('about to fail', flush=True); raise SystemExit(3)"]},
        probes={},
    )
    await env.store.create(crasher)
    app = await env.wait(first_instance("CrashLoopBackOff"), name="crash")
    inst = app.status.instances[0]
    assert inst.exit_code == 3 and inst.reason == "CrashLoopBackOff"
    assert "exit code 3" in (inst.message or "") and "about to fail" in (inst.message or "")
    degraded = condition(app, "Degraded")
    assert degraded is not None and degraded[:2] == ("True", "CrashLoopBackOff")
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
    # One instance throughout: crashes restart it, they do not replace it.
    assert [r.name for r in env.instances.records("default", "crash")] == ["crash-1"]


async def test_liveness_exec_probe_restarts_the_instance(env: Env, tmp_path: Path) -> None:
    marker = tmp_path / "alive"
    marker.touch()
    live = application(
        "live",
        1,
        template={"command": COUNTER, "ports": [{"name": "http"}], "env": {"MARKER": str(marker)}},
        probes={
            "readiness": {"tcp": {"port": "http"}, "periodSeconds": 1},
            "liveness": {
                "exec": {"command": ["sh", "-c", 'test -f "$MARKER"']},
                "periodSeconds": 1,
                "failureThreshold": 2,
            },
        },
    )
    await env.store.create(live)
    app = await env.wait(ready(1), name="live")
    pid = app.status.instances[0].pid
    marker.unlink()
    app = await env.wait(lambda a: a.status.instances[0].restarts >= 1, name="live")
    marker.touch()
    app = await env.wait(lambda a: ready(1)(a) and a.status.instances[0].pid != pid, name="live")
    assert "Unhealthy" in await env.reasons("live")


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
    most = 0  # most instances seen at once: maxSurge 1 over 2 replicas allows 3
    stop = asyncio.Event()

    async def client() -> None:
        nonlocal most
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
            most = max(most, len(env.instances.records("default", "web")))

    task = asyncio.create_task(client())
    try:
        before = {i.name for i in (await env.get()).status.instances}
        obj = await env.get()
        template = obj.spec.template.model_copy(update={"env": [*obj.spec.template.env, EnvVar(name="V", value="2")]})
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
    assert most <= 3


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
    assert obj.status.last_scale_time is not None
    # Instances report as their service's registry identity (ZKOP_REGISTRY_AUTH), not anonymously.
    load = f"{registry.load_path(env.conn.root, 'default', 'auto')}/{obj.status.instances[0].name}"
    acl, _ = await env.store.client.get_acls(load)
    assert {(a.perms, a.id.id.split(":")[0]) for a in acl} == {(31, "svc/default/auto"), (1, "anyone")}
    assert obj.spec.replicas == 1  # the spec stays the user's
    for inst in obj.status.instances:
        await post(inst.port, "/load?value=0")
    obj = await env.wait(lambda a: a.status.desired_replicas == 1 and ready(1)(a), name="auto", timeout=40)
    assert obj.status.current_metric == 0
    scaled = [e for e in await env.store.list_events("default", kind="app", name="auto") if e.reason == "Scaled"]
    assert len(scaled) >= 2 and "1 -> " in scaled[0].message


# Burns a core for BURN seconds after it starts, then idles (bounded: it exits after 10 minutes).
BURNER = [
    sys.executable,
    "-c",
    "import os, time\nend = time.time() + float(os.environ['BURN'])\nwhile time.time() < end:\n    pass\n"
    "time.sleep(600)",
]


async def test_autoscale_up_and_down_on_cpu_utilisation(env: Env) -> None:
    app = application(
        "cpu",
        1,
        template={"command": BURNER, "env": [{"name": "BURN", "value": "6"}]},
        probes={"readiness": {"exec": {"command": ["true"]}, "periodSeconds": 1}},
        resources={"requests": {"cpu": "250m"}},
        autoscaling={
            "minReplicas": 1,
            "maxReplicas": 2,
            "metrics": [{"type": "cpu", "targetUtilization": 60}],
            "scaleDownStabilizationSeconds": 3,
        },
    )
    await env.store.create(app)
    # A busy core is ~400% of a 250m request: scale up at once, to the maximum.
    obj = await env.wait(lambda a: a.status.desired_replicas == 2 and ready(2)(a), name="cpu", timeout=30)
    scaled = [e for e in await env.store.list_events("default", kind="app", name="cpu") if e.reason == "Scaled"]
    assert scaled and "1 -> 2" in scaled[0].message and "cpu" in scaled[0].message, [e.message for e in scaled]
    # Idle after the burn: back to the minimum once the stabilisation window has passed.
    obj = await env.wait(lambda a: a.status.desired_replicas == 1 and ready(1)(a), name="cpu", timeout=40)
    assert obj.status.current_metric is not None and obj.status.current_metric < 60


async def test_bad_command_and_port_conflict_fail_clearly_and_recover(env: Env) -> None:
    await env.store.create(application("nocmd", 1, template={"command": ["no-such-program-xyz"]}, probes={}))
    app = await env.wait(first_instance("Failed"), name="nocmd")
    assert app.status.instances[0].reason == "CommandNotFound"
    assert "no-such-program-xyz" in (app.status.instances[0].message or "")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    try:
        await env.store.create(
            application("clash", 1, template={"command": COUNTER, "ports": [{"name": "http", "containerPort": port}]})
        )
        app = await env.wait(first_instance("Failed"), name="clash")
        assert app.status.instances[0].reason == "PortConflict" and str(port) in (app.status.instances[0].message or "")
    finally:
        sock.close()
    # The port is free again: the retry (with backoff) starts the instance.
    app = await env.wait(ready(1), name="clash", timeout=20)
    assert app.status.instances[0].port == port

    # The failing start is retried, never replaced: still one instance after several attempts.
    async with asyncio.timeout(20):
        while True:
            if max(r.start_failures for r in env.instances.records("default", "nocmd")) >= 3:
                break
            await asyncio.sleep(0.2)
    assert [r.name for r in env.instances.records("default", "nocmd")] == ["nocmd-1"]


async def test_missing_cluster_ref_starts_nothing_until_the_cluster_serves(
    env: Env, shared_zk: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZKOP_AUTH", "zkop:secret-of-the-operator")
    await env.store.create(application("orphan", 1, zookeeper={"clusterRef": {"name": "orders-zk"}}))
    app = await env.wait(lambda a: condition(a, "ClusterReady") is not None, name="orphan")
    cond = condition(app, "ClusterReady")
    assert cond is not None and cond[:2] == ("False", "ClusterNotFound") and "orders-zk" in (cond[2] or "")
    assert app.status.instances == [] and env.instances.records("default", "orphan") == []

    # The cluster appears and serves (its controller is not running here: status by hand).
    zkc = parse_object(
        {"apiVersion": "zkop.io/v1", "kind": "ZookeeperCluster", "metadata": {"name": "orders-zk"}, "spec": {}}
    )
    assert isinstance(zkc, ZookeeperCluster)
    zkc = await env.store.create(zkc)
    assert isinstance(zkc, ZookeeperCluster)
    status = zkc.status.model_copy(update={"connection_string": shared_zk.connection_string, "ready_replicas": 1})
    await env.store.update_status(zkc.model_copy(update={"status": status}))
    app = await env.wait(ready(1), name="orphan", timeout=20)
    inst = app.status.instances[0]
    assert inst.pid is not None
    environ = psutil.Process(inst.pid).environ()
    assert environ["ZK_HOSTS"] == shared_zk.connection_string
    assert environ["ZKOP_INSTANCE"] == inst.name and environ["PORT"] == str(inst.port)
    assert "ZKOP_AUTH" not in environ  # the operator's credentials stay with the operator
    body = await http(inst.port, "GET", "/")
    assert body.split(b"\r\n\r\n", 1)[1].startswith(inst.name.encode())


async def test_requests_and_limits(env: Env) -> None:
    cores = psutil.cpu_count() or 1
    await env.store.create(application("big", 1, resources={"requests": {"cpu": str(cores + 1)}}))
    app = await env.wait(first_instance("Pending"), name="big")
    sched = condition(app, "Schedulable")
    assert sched is not None and sched[:2] == ("False", "InsufficientResources") and "CPU" in (sched[2] or "")
    assert app.status.instances[0].pid is None and "FailedScheduling" in await env.reasons("big")

    hog = [sys.executable, "-c", "print('allocating', flush=True); x = bytearray(900 * 2**20); print('got it')"]
    await env.store.create(
        application(
            "hog", 1, template={"command": hog}, probes={}, resources={"limits": {"memory": "300Mi", "cpu": "500m"}}
        )
    )
    app = await env.wait(
        lambda a: bool(a.status.instances) and a.status.instances[0].phase in ("Restarting", "CrashLoopBackOff"),
        name="hog",
    )
    inst = app.status.instances[0]
    assert inst.exit_code == 1 and "MemoryError" in (inst.message or "")
    limits = condition(app, "LimitsEnforced")
    assert limits is not None and "memory 300Mi (RLIMIT_AS" in (limits[2] or "")
    if limits[0] == "False":  # no writable cgroup v2 cpu controller here: it says so
        assert "cpu 0.5 cores: not enforced" in (limits[2] or "")
    # Without limits the condition goes: the instances are rolled and nothing is left to enforce.
    await env.change("hog", resources=app.spec.resources.model_copy(update={"limits": ResourceList()}))
    await env.wait(lambda a: condition(a, "LimitsEnforced") is None and a.status.replicas == 1, name="hog")


async def test_a_new_operator_adopts_instances_and_keeps_endpoints(env: Env) -> None:
    await env.store.create(application())
    app = await env.wait(ready(2))
    pids = sorted(i.pid or 0 for i in app.status.instances)
    old = env.operators[0]
    old_epoch = old.manager.epoch
    sd = AsyncServiceDiscovery(env.conn.hosts, root=env.conn.root)
    await sd.start()
    try:
        provider = await sd.provider("default/web")
        await provider.cache.wait_for(lambda xs: len(xs) == 2)
        fewest = 2
        await old.stop()
        new = env.start_operator()
        # The new leader is asked for a third instance: it keeps the two it found running.
        await env.change(replicas=3)
        async with asyncio.timeout(30):
            while True:
                fewest = min(fewest, len(provider.instances()))
                a = await env.get()
                if ready(3)(a) and set(pids) <= {i.pid for i in a.status.instances}:
                    break
                await asyncio.sleep(0.05)
        assert fewest == 2, "endpoints were withdrawn during the handover"
        assert [r.restarts for r in env.instances.records("default", "web")] == [0, 0, 0]
        # The deposed term can act on nothing.
        assert old_epoch is not None and new.manager.epoch is not None and new.manager.epoch > old_epoch
        with pytest.raises(Fenced):
            env.instances.stop("default", "web", "web-1", epoch=old_epoch, remove=False)
    finally:
        await sd.close()


async def test_cli_scale_and_logs(env: Env) -> None:
    await env.store.create(application("cli", 1))
    await env.wait(ready(1), name="cli")
    assert await _scale(env.conn, "default", "cli", 2) == (1, False)
    await env.wait(ready(2), name="cli")
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["--state-dir", str(env.state), "logs", "app/cli", "cli-2", "--tail", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "--- zkop: starting" in result.output
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["--state-dir", str(env.state), "logs", "app/nope"])
    assert result.exit_code != 0


async def test_a_corrupt_instance_record_is_reported_and_replaced(env: Env) -> None:
    await env.store.create(application("cli", 2))
    app = await env.wait(ready(2), name="cli")
    victim = app.status.instances[0]
    assert victim.pid is not None
    proc = psutil.Process(victim.pid)
    (env.state / "apps" / "default" / "cli" / victim.name / "instance.json").write_text("{not json")
    app = await env.wait(lambda a: ready(2)(a) and victim.name not in {i.name for i in a.status.instances}, name="cli")
    assert "CorruptInstanceRecord" in await env.reasons("cli")
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


async def test_instances_of_an_application_removed_by_hand_are_stopped(env: Env) -> None:
    await env.store.create(application("stray", 1))
    app = await env.wait(ready(1), name="stray")
    assert app.status.instances[0].pid is not None
    proc = psutil.Process(app.status.instances[0].pid)
    await env.operators[0].stop()
    # Removed behind the operator's back: the znodes go, the finalizer never runs.
    client = env.conn.client()
    await client.start()
    try:
        path = env.store.obj_path(resolve_kind("Application"), "default", "stray")
        await client.delete(path + "/status")
        await client.delete(path)
        assert proc.is_running(), "nothing acts while no operator runs"
        env.start_operator()
        leftovers = env.state / "apps" / "default" / "stray"
        async with asyncio.timeout(30):
            while leftovers.exists() or (proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        async with asyncio.timeout(10):
            while await client.exists(registry.service_path(env.conn.root, "default", "stray")):  # noqa: ASYNC110 - polled znode
                await asyncio.sleep(0.1)
    finally:
        await client.stop()


async def test_delete_stops_instances_and_withdraws_endpoints(env: Env) -> None:
    await env.store.create(application("gone", 2))
    app = await env.wait(ready(2), name="gone")
    procs = [psutil.Process(i.pid) for i in app.status.instances if i.pid]
    client = env.conn.client()
    await client.start()
    try:
        assert await client.exists(registry.endpoints_path(env.conn.root, "default", "gone")) is not None
    finally:
        await client.stop()
    await env.store.delete("app", "default", "gone")
    async with asyncio.timeout(30):
        while True:
            try:
                await env.get("gone")
            except NotFound:
                break
            await asyncio.sleep(0.1)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)
    assert not (env.state / "apps" / "default" / "gone").exists()
    client = env.conn.client()
    await client.start()
    try:  # the service's registry folders went with it, and its registry identity
        assert await client.exists(registry.service_path(env.conn.root, "default", "gone")) is None
        assert await client.exists(registry.credentials_path(env.conn.root, "default", "gone")) is None
    finally:
        await client.stop()
    sd = AsyncServiceDiscovery(env.conn.hosts, root=env.conn.root)
    await sd.start()
    try:
        provider = await sd.provider("default/gone")
        assert provider.instances() == []
    finally:
        await sd.close()


def test_cgroup_limits_when_a_cgroup_is_writable(tmp_path: Path) -> None:
    """With a writable cgroup v2 directory (here a stand-in: the same files in a plain directory),
    limits go to memory.max and cpu.max and the instance joins the cgroup before its command runs."""
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    state = tmp_path / "state"
    instances = LocalInstances(state, LocalPlatform(state).fence, cgroups=Cgroups(root))
    rec = instances.create("ns", "app", "h", [], Resources(), pending=None, epoch=None)
    env = {"PATH": os.environ["PATH"]}
    pid = instances.start("ns", "app", rec, ["sleep", "30"], env, None, Limits(memory=256 * 2**20, cpu=0.5), epoch=None)
    try:
        group = root / "zkop.ns.app.app-1"
        assert (group / "memory.max").read_text() == str(256 * 2**20)
        assert (group / "cpu.max").read_text() == "50000 100000"
        assert rec.enforced == ["memory 256Mi (cgroup v2 memory.max)", "cpu 0.5 cores (cgroup v2 cpu.max 50000/100000)"]
        assert rec.not_enforced == []
        procs = group / "cgroup.procs"
        deadline = time.monotonic() + 5
        while not (procs.exists() and procs.read_text().strip() == str(pid.pid)):
            assert time.monotonic() < deadline, (state / "apps/ns/app/app-1/instance.log").read_text()
            time.sleep(0.02)
        running = instances.running("ns", "app", rec.name)
        assert running is not None and instances.app_pid(running) is not None
    finally:
        instances.stop("ns", "app", rec.name, epoch=None, remove=True)
    assert instances.running("ns", "app", rec.name) is None
