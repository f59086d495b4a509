"""The Application controller on Kubernetes: instances are Pods run by the node agent (real
processes on their own loopback addresses), desired state in the real API server, the registry
and coordination in a real ZooKeeper, the operator as ``zkop operator run --platform kubernetes``.

The counter example runs as given (with its ZookeeperCluster, on Kubernetes too) in the first
test; the others use the example without ``clusterRef`` (and with their own autoscaling), so they
need no ZooKeeper ensemble of three JVMs to start first: what they test (rollout, restarts,
scaling, deletion) does not depend on it, and the machine is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kazoo.client import KazooClient

from zkop.api import Application, parse_object
from zkop.client.bridge import ZkClient
from zkop.client.kube import api_client
from zkop.controllers.application.controller import instance_template
from zkop.discovery import AsyncServiceDiscovery, Proxy
from zkop.errors import Fenced
from zkop.platform.base import AppRef
from zkop.platform.kubernetes.applications import KubernetesInstancePlatform
from zkop.testing import Ensemble
from zkop.testing.kube import ControlPlane
from zkop.testing.nodeagent import NodeAgent

pytestmark = pytest.mark.kubernetes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SESSION = 6

Doc = dict[str, Any]


@dataclass
class Bed:
    """The operator replicas of one test and what the test reads back."""

    cp: ControlPlane
    ns: str
    agent: NodeAgent
    zk: Ensemble
    root: str
    tmp: Path
    env: dict[str, str]
    argv: list[str]
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str = "replica-1") -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [*self.argv, "--identity", name], stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        self.started[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def api(self, path: str) -> Doc | None:
        status, body = self.cp.request(path)
        if status == 404:
            return None
        assert status == 200, f"GET {path}: {status} {body[:300]}"
        data: Doc = json.loads(body)
        return data

    def app(self, name: str = "counter") -> Doc:
        return self.api(f"/apis/zkop.io/v1/namespaces/{self.ns}/applications/{name}") or {}

    def status(self, name: str = "counter") -> Doc:
        status: Doc = self.app(name).get("status") or {}
        return status

    def pods(self, name: str = "counter", *, terminating: bool = False) -> list[Doc]:
        selector = f"zkop.io/application={name}"
        data = self.api(f"/api/v1/namespaces/{self.ns}/pods?labelSelector={selector}") or {}
        items = [p for p in data.get("items", []) if terminating or not p["metadata"].get("deletionTimestamp")]
        return sorted(items, key=lambda p: int(p["metadata"]["labels"]["zkop.io/instance-index"]))

    def events(self, name: str = "counter") -> list[Doc]:
        data = self.api(f"/apis/events.k8s.io/v1/namespaces/{self.ns}/events") or {}
        items = [e for e in data.get("items", []) if (e.get("regarding") or {}).get("name") == name]
        return sorted(items, key=lambda e: e.get("eventTime") or e["metadata"]["creationTimestamp"])

    def reasons(self, name: str = "counter") -> list[str]:
        return [e["reason"] for e in self.events(name)]

    def apply(self, doc: Doc) -> None:
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump(doc))

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 120.0, name: str = "counter") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n}\n" + "\n".join(self.log(n).splitlines()[-40:]) for n in self.started)
                status = json.dumps(self.app(name), indent=1)[:6000]
                raise AssertionError(
                    f"timed out waiting for {what}\nstatus: {status}\nevents: {self.reasons(name)}\n{tails}"
                )
            time.sleep(0.5)

    async def until(self, what: str, check: Callable[[], Any], timeout: float = 120.0, name: str = "counter") -> Any:
        """:meth:`wait` in a thread, so the event loop (a proxy, a discovery cache) keeps running."""
        return await asyncio.to_thread(self.wait, what, check, timeout, name)

    def ready(self, n: int, name: str = "counter") -> Callable[[], bool]:
        def check() -> bool:
            s = self.status(name)
            return (
                s.get("readyReplicas") == n
                and s.get("replicas") == n
                and len(s.get("endpoints") or []) == n
                and len(self.pods(name)) == n
            )

        return check

    def stop(self) -> None:
        for proc in self.started.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def bed(cp: ControlPlane, zk: Ensemble, kube_namespace: str, node_agent: NodeAgent, tmp_path: Path) -> Iterator[Bed]:
    config = tmp_path / "operator.yaml"
    config.write_text(
        "apiVersion: zkop.io/v1\nkind: OperatorConfig\nmetadata: {name: zkop}\n"
        f"spec: {{targetNamespace: {kube_namespace}, leaderElection: {{sessionTimeoutSeconds: {SESSION}}}}}\n"
    )
    root = f"/k-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, ZKOP_AUTH=f"zkop:{uuid.uuid4().hex}", ZKOP_STATE_DIR=str(tmp_path / "state"))
    env["ZKOP_HOSTS_FILE"] = str(node_agent.hosts_file)
    argv = [
        sys.executable, "-m", "zkop.cli.main", "operator", "run", "--zk", zk.connection_string,
        "--root", root, "--kubeconfig", str(cp.kubeconfig), "--platform", "kubernetes",
        "--config", str(config), "--metrics-port", "0", "--log-level", os.environ.get("ZKOP_TEST_LOG_LEVEL", "INFO"),
    ]  # fmt: skip
    b = Bed(cp, kube_namespace, node_agent, zk, root, tmp_path, env, argv)
    try:
        yield b
    finally:
        b.stop()


def counter(*, replicas: int = 2, autoscaling: Doc | None = None, readiness_period: int = 1, **spec: Any) -> Doc:
    """examples/application.yaml without its clusterRef (and with ``autoscaling`` instead of its
    own, none when None), readiness probed every ``readiness_period`` seconds."""
    doc: Doc = yaml.safe_load((EXAMPLES / "application.yaml").read_text())
    doc["spec"].pop("zookeeper")
    doc["spec"]["replicas"] = replicas
    doc["spec"]["probes"]["readiness"].update(periodSeconds=readiness_period, failureThreshold=1)
    if autoscaling is None:
        doc["spec"].pop("autoscaling")
    else:
        doc["spec"]["autoscaling"] = autoscaling
    doc["spec"].update(spec)
    return doc


def http(host: str, port: int, method: str = "GET", path: str = "/") -> bytes:
    with contextlib.closing(socket.create_connection((host, port), timeout=10)) as s:
        s.sendall(f"{method} {path} HTTP/1.0\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def body(reply: bytes) -> str:
    return reply.split(b"\r\n\r\n", 1)[1].decode()


def endpoints(b: Bed, name: str = "counter") -> dict[str, str]:
    """The registry's endpoints of the application: instance -> host:port."""
    client = KazooClient(b.zk.connection_string)
    client.start(timeout=30)
    try:
        base = f"{b.root}/services/{b.ns}/{name}/endpoints"
        if not client.exists(base):
            return {}
        out = {}
        for child in client.get_children(base):
            raw, _ = client.get(f"{base}/{child}")
            data = json.loads(raw)
            out[child] = f"{data['host']}:{data['port']}"
        return out
    finally:
        client.stop()
        client.close()


def pod_addresses(b: Bed, name: str = "counter") -> dict[str, str]:
    return {p["metadata"]["name"]: f"{p['status'].get('podIP')}:8080" for p in b.pods(name)}


# --------------------------------------------------------------------------- tests


@pytest.mark.timeout(900)
def test_the_counter_example_runs_as_pods_registered_with_their_addresses(bed: Bed) -> None:
    b = bed
    b.start()
    b.cp.kubectl("apply", "-n", b.ns, "-f", str(EXAMPLES / "zookeepercluster.yaml"))
    b.cp.kubectl("apply", "-n", b.ns, "-f", str(EXAMPLES / "application.yaml"))
    started = time.monotonic()
    b.wait("the counter's 2 instances ready (after its ZookeeperCluster)", b.ready(2), 600)
    took = time.monotonic() - started
    app = b.app()
    pods = b.pods()
    assert [p["metadata"]["name"] for p in pods] == ["counter-1", "counter-2"], took
    status = app["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["ClusterReady"]["status"] == "True" and conditions["Available"]["status"] == "True"
    assert status["selector"] == "app.kubernetes.io/managed-by=zkop,zkop.io/application=counter"
    for pod in pods:
        meta, spec = pod["metadata"], pod["spec"]
        owner = meta["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Application", "counter", app["metadata"]["uid"])
        assert meta["labels"]["zkop.io/revision"] and meta["annotations"]["zkop.io/epoch"] == "1"
        (c,) = spec["containers"]
        assert c["image"].startswith("zkop:") and c["ports"][0]["name"] == "http"
        assert c["resources"]["requests"] == {"cpu": "100m", "memory": str(64 * 2**20)}
        assert c["resources"]["limits"] == {"cpu": "500m", "memory": str(256 * 2**20)}
        assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
        env = {e["name"]: e for e in c["env"]}
        assert env["ZKOP_INSTANCE"]["value"] == meta["name"] and env["ZK_HOSTS"]["value"].startswith("orders-zk-1.")
        # The registry identity comes from the application's Secret, never as a value in the spec.
        assert env["ZKOP_REGISTRY_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == "counter-registry"
        assert "value" not in env["ZKOP_REGISTRY_AUTH"]
    secret = b.api(f"/api/v1/namespaces/{b.ns}/secrets/counter-registry")
    assert secret is not None and secret["metadata"]["ownerReferences"][0]["uid"] == app["metadata"]["uid"]
    # The endpoints in the registry are the Pods' addresses; each answers there, counting in the
    # ZookeeperCluster (ZK_HOSTS by cluster DNS names), so the count is shared.
    assert endpoints(b) == pod_addresses(b)
    assert sorted(status["endpoints"]) == sorted(pod_addresses(b).values())
    hosts = [addr.split(":")[0] for addr in sorted(endpoints(b).values())]
    replies = [body(http(host, 8080)).split() for host in [*hosts, *hosts]]
    assert sorted({r[0] for r in replies}) == ["counter-1", "counter-2"]
    counts = [int(r[1]) for r in replies]
    assert counts == sorted(counts) and len(set(counts)) == 4, replies  # one count, shared by both
    assert "Created" in b.reasons()
    # Deleted: the Pods, the endpoints and the Secret go; the ZookeeperCluster stays.
    b.cp.kubectl("delete", "app", "counter", "-n", b.ns, "--wait=false")
    b.wait("the application gone", lambda: b.app() == {} and b.pods(terminating=True) == [], 180)
    assert endpoints(b) == {}
    assert b.api(f"/api/v1/namespaces/{b.ns}/secrets/counter-registry") is None
    assert b.api(f"/apis/zkop.io/v1/namespaces/{b.ns}/zookeeperclusters/orders-zk") is not None


@pytest.mark.timeout(600)
async def test_rolling_update_through_the_proxy_fails_no_request(bed: Bed) -> None:
    b = bed
    b.start()
    b.apply(counter(strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    await b.until("2 instances ready", b.ready(2), 300)
    before = {p["metadata"]["name"] for p in b.pods()}
    sd = AsyncServiceDiscovery(b.zk.connection_string, root=b.root)
    await sd.start()
    provider = await sd.provider(f"{b.ns}/counter")
    await provider.cache.wait_for(lambda xs: len(xs) == 2, timeout=30)
    proxy = Proxy(provider, attempts=3)
    port = await proxy.start()
    results: list[bool] = []
    most = 0  # most Pods (not terminating) at once: maxSurge 1 over 2 replicas allows 3
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set() and len(results) < 20000:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"GET / HTTP/1.0\r\n\r\n")
                await w.drain()
                data = await r.read()
                w.close()
                results.append(data.startswith(b"HTTP/1.1 200"))
            except OSError:
                results.append(False)

    async def count() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, len(await asyncio.to_thread(b.pods)))
            await asyncio.sleep(0.3)

    tasks = [asyncio.create_task(client()), asyncio.create_task(count())]
    try:
        await asyncio.sleep(1)
        b.cp.kubectl(
            "patch", "app", "counter", "-n", b.ns, "--type=merge", "-p", '{"spec":{"template":{"env":{"V":"2"}}}}'
        )

        def rolled() -> bool:
            names = {p["metadata"]["name"] for p in b.pods()}
            return b.ready(2)() and b.status().get("updatedReplicas") == 2 and not (names & before)

        await b.until("the rollout", rolled, 300)
        await asyncio.sleep(1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await proxy.stop()
        await sd.close()
    assert len(results) > 20
    assert all(results), f"{results.count(False)} of {len(results)} requests failed during the rollout"
    assert most <= 3
    names = [p["metadata"]["name"] for p in b.pods()]
    assert names == ["counter-3", "counter-4"]  # new names, never the old ones again
    assert endpoints(b) == pod_addresses(b)


@pytest.mark.timeout(600)
async def test_a_killed_process_restarts_its_pod_and_its_endpoint_leaves_and_returns(bed: Bed) -> None:
    b = bed
    b.start()
    b.apply(counter())
    await b.until("2 instances ready", b.ready(2), 300)
    sd = AsyncServiceDiscovery(b.zk.connection_string, root=b.root)
    await sd.start()
    try:
        provider = await sd.provider(f"{b.ns}/counter")
        await provider.cache.wait_for(lambda xs: len(xs) == 2, timeout=30)
        pid = b.agent.pids()[f"{b.ns}/counter-1/app"]
        os.kill(pid, signal.SIGKILL)
        left = time.monotonic()
        await provider.cache.wait_for(lambda xs: "counter-1" not in {x.id for x in xs}, timeout=15)
        gone_after = time.monotonic() - left
        await provider.cache.wait_for(lambda xs: "counter-1" in {x.id for x in xs}, timeout=120)

        def restarted() -> bool:
            insts = {i["name"]: i for i in b.status().get("instances", [])}
            one = insts.get("counter-1") or {}
            return b.ready(2)() and one.get("restarts") == 1

        await b.until("counter-1 restarted and ready", restarted, 120)
        one = next(i for i in b.status()["instances"] if i["name"] == "counter-1")
        assert one["exitCode"] == 137, one  # SIGKILL, as the kubelet reports it
        assert b.agent.pids()[f"{b.ns}/counter-1/app"] != pid
        assert [p["metadata"]["name"] for p in b.pods()] == ["counter-1", "counter-2"]  # restarted, not replaced
        await b.until("a Restarting event", lambda: "Restarting" in b.reasons(), 30)
        assert gone_after < 10, f"the endpoint left {gone_after:.1f}s after the kill"
    finally:
        await sd.close()


@pytest.mark.timeout(600)
def test_load_up_and_down_scales_the_pods(bed: Bed) -> None:
    b = bed
    b.start()
    b.apply(
        counter(
            replicas=1,
            autoscaling={
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [{"type": "load", "targetValue": 10}],
                "scaleDownStabilizationSeconds": 5,
            },
        )
    )
    b.wait("1 instance ready", b.ready(1), 300)
    (pod,) = b.pods()
    assert http(pod["status"]["podIP"], 8080, "POST", "/load?value=25").startswith(b"HTTP/1.1 200")
    b.wait("scaled up to 3", lambda: b.status().get("desiredReplicas") == 3 and b.ready(3)(), 300)
    assert [p["metadata"]["name"] for p in b.pods()] == ["counter-1", "counter-2", "counter-3"]
    assert b.app()["spec"]["replicas"] == 1  # the spec stays the user's
    assert endpoints(b) == pod_addresses(b)
    for p in b.pods():
        http(p["status"]["podIP"], 8080, "POST", "/load?value=0")
    b.wait("scaled down to 1", lambda: b.status().get("desiredReplicas") == 1 and b.ready(1)(), 300)
    assert b.status().get("currentMetric") == 0
    scaled = [e["note"] for e in b.events() if e["reason"] == "Scaled"]
    assert scaled[0].startswith("replicas 1 -> 3") and scaled[-1].startswith("replicas 3 -> 1"), scaled
    assert endpoints(b) == pod_addresses(b)


@pytest.mark.timeout(600)
def test_kubectl_scale_a_horizontal_pod_autoscaler_and_cpu_metrics(bed: Bed) -> None:
    b = bed
    b.start()
    b.apply(counter(replicas=1))
    b.wait("1 instance ready", b.ready(1), 300)
    b.cp.kubectl("scale", "app", "counter", "-n", b.ns, "--replicas", "3")
    b.wait("3 instances after kubectl scale", b.ready(3), 300)
    scale = b.api(f"/apis/zkop.io/v1/namespaces/{b.ns}/applications/counter/scale")
    assert scale is not None and scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "app.kubernetes.io/managed-by=zkop,zkop.io/application=counter"
    # A HorizontalPodAutoscaler can target the Application through its scale subresource (it then
    # needs the metrics API for CPU, which this cluster does not have).
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "counter"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "zkop.io/v1", "kind": "Application", "name": "counter"},
            "minReplicas": 1,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
        },
    }
    b.apply(hpa)

    def hpa_conditions() -> dict[str, Doc] | None:
        found = b.api(f"/apis/autoscaling/v2/namespaces/{b.ns}/horizontalpodautoscalers/counter") or {}
        conds = {c["type"]: c for c in (found.get("status") or {}).get("conditions") or []}
        return conds if "AbleToScale" in conds and "ScalingActive" in conds else None

    conds = b.wait("the HPA's conditions", hpa_conditions, 180)
    assert (conds["AbleToScale"]["status"], conds["AbleToScale"]["reason"]) == ("True", "SucceededGetScale")
    # It found the Pods by the selector and asked for their metrics (not InvalidSelector).
    assert conds["ScalingActive"]["reason"] == "FailedGetResourceMetric", conds["ScalingActive"]
    b.cp.kubectl("delete", "hpa", "counter", "-n", b.ns)
    b.cp.kubectl("scale", "app", "counter", "-n", b.ns, "--replicas", "1")
    b.wait("back to 1", b.ready(1), 300)
    # CPU-based autoscaling of zkop's own says in a condition that there are no metrics.
    b.apply(
        {
            **counter(
                replicas=1,
                autoscaling={"minReplicas": 1, "maxReplicas": 3, "metrics": [{"type": "cpu", "targetUtilization": 50}]},
            ),
            "metadata": {"name": "cpu"},
        }
    )

    def no_metrics() -> Doc | None:
        conds = {c["type"]: c for c in b.status("cpu").get("conditions", [])}
        return conds.get("MetricsAvailable")

    cond = b.wait("MetricsAvailable on the cpu-autoscaled application", no_metrics, 300, name="cpu")
    assert (cond["status"], cond["reason"]) == ("False", "NoCpuMetrics") and "metrics.k8s.io" in cond["message"]


@pytest.mark.timeout(300)
async def test_the_platform_names_fences_and_removes(
    cp: ControlPlane, zk: Ensemble, kube_namespace: str, node_agent: NodeAgent
) -> None:
    """The platform on its own (no operator): names only grow, an older term's action is refused,
    removing an application takes every Pod, its Secret and its name counter."""

    ns = kube_namespace
    doc = counter(replicas=0)
    doc["metadata"]["namespace"] = ns
    cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    app = parse_object(doc)
    assert isinstance(app, Application)
    root = f"/p-{uuid.uuid4().hex[:8]}"
    client = ZkClient(zk.connection_string)
    await client.start(timeout=30)
    api = await api_client(str(cp.kubeconfig))
    epoch_path = f"{root}/leader/test/epoch"
    await client.ensure_path(epoch_path)
    await client.set(epoch_path, b"")  # version 1
    await client.set(epoch_path, b"")  # version 2: a newer term began
    platform = KubernetesInstancePlatform(api, client, root=root, epoch_path=epoch_path, namespace=ns)
    ref = AppRef(ns, "counter")
    template = instance_template(app, [("ZKOP_REGISTRY_AUTH", "svc/x/counter:pw")])
    try:
        with pytest.raises(Fenced):
            await platform.create_instances(ref, template, 1, epoch=1)
        assert await platform.observe(ref) == []
        assert await platform.create_instances(ref, template, 2, epoch=2) == ["counter-1", "counter-2"]
        await platform.stop_instance(ref, "counter-1", epoch=2)
        assert [o.name for o in await platform.observe(ref)] == ["counter-2"]
        assert await platform.create_instances(ref, template, 1, epoch=2) == ["counter-3"]
        assert await platform.apps() == [ref]
        capacity = await platform.capacity()
        assert capacity.cpu >= 1 and capacity.memory > 0

        async def both_ready() -> list[Any]:
            while True:
                observed = await platform.observe(ref)
                if len(observed) == 2 and all(o.ready for o in observed):
                    return observed
                await asyncio.sleep(0.5)

        observed = await asyncio.wait_for(both_ready(), 120)
        assert [(o.name, o.phase, o.port) for o in observed] == [
            ("counter-2", "Running", 8080),
            ("counter-3", "Running", 8080),
        ]
        assert all(o.host.startswith("127.") and o.cpu_usage is None for o in observed)
        with pytest.raises(Fenced):
            await platform.remove_app(ref, epoch=1)
        await platform.remove_app(ref, epoch=2)
        assert await platform.observe(ref) == [] and await platform.apps() == []
        assert cp.request(f"/api/v1/namespaces/{ns}/secrets/counter-registry")[0] == 404
        assert await client.exists(f"{root}/applications/{ns}/counter") is None
    finally:
        await client.stop()
        await api.close()


@pytest.mark.timeout(600)
def test_the_charts_rbac_with_platform_kubernetes_is_enough(bed: Bed) -> None:
    """The operator runs with only the rights the Helm chart grants with ``platform: kubernetes``
    (a Role in the namespace): a ZookeeperCluster's Pods, volume, Services, budget, ConfigMap and
    Secret, and an Application's Pods and Secret are made and removed, and nothing is forbidden."""
    b = bed
    values = {"platform": "kubernetes", "watchNamespace": b.ns, "zookeeper": {"create": False, "hosts": "zk:2181"}}
    values_file = b.tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    rendered = b.cp.helm("template", "zkop", str(ROOT / "deploy" / "helm" / "zkop"), "-n", b.ns, "-f", str(values_file))
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    assert sorted(d["kind"] for d in rbac) == ["Role", "RoleBinding", "ServiceAccount"]
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--platform") + 1] == "kubernetes" and args[args.index("--app-image") + 1] == "zkop:0.1.0"
    b.cp.kubectl("apply", "-n", b.ns, "-f", "-", input=yaml.safe_dump_all(rbac))
    sa = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    token = b.cp.kubectl("create", "token", sa, "-n", b.ns, "--duration=1h").stdout.strip()
    kubeconfig = b.tmp / "sa.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "t", "cluster": {"server": b.cp.server, "certificate-authority": str(b.cp.ca_file)}}
                ],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": sa, "context": {"cluster": "t", "user": sa, "namespace": b.ns}}],
                "current-context": sa,
            }
        )
    )
    b.argv[b.argv.index("--kubeconfig") + 1] = str(kubeconfig)
    b.start()
    zkc: Doc = yaml.safe_load((EXAMPLES / "zookeepercluster.yaml").read_text())
    zkc["spec"]["replicas"] = 1
    zkc["spec"]["storage"]["reclaimPolicy"] = "Delete"
    b.apply(zkc)
    b.apply(counter())
    b.wait("2 instances ready", b.ready(2), 300)

    def zk_ready() -> bool:
        s = (b.api(f"/apis/zkop.io/v1/namespaces/{b.ns}/zookeeperclusters/orders-zk") or {}).get("status") or {}
        return s.get("readyReplicas") == 1

    b.wait("the ZookeeperCluster's member ready", zk_ready, 300)
    b.cp.kubectl("delete", "app/counter", "zkc/orders-zk", "-n", b.ns, "--wait=false")
    b.wait(
        "both gone with their Pods",
        lambda: b.app() == {} and (b.api(f"/api/v1/namespaces/{b.ns}/pods") or {}).get("items") == [],
        300,
    )
    log = b.log("replica-1")
    assert "forbidden" not in log.lower(), "\n".join(line for line in log.splitlines() if "orbidden" in line)[:3000]
