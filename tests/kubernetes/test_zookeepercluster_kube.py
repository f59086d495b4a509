"""The ZookeeperCluster operator on Kubernetes: members as Pods run by the node agent (real
ZooKeeper JVMs), desired state in the real API server, coordination in a real ZooKeeper."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from zkop.api.crd import crds
from zkop.testing import Ensemble, running_ensemble
from zkop.testing.kube import ControlPlane
from zkop.testing.nodeagent import NodeAgent
from zkop.testing.quorum import Writer

pytestmark = pytest.mark.kubernetes

ROOT = Path(__file__).resolve().parents[2]
SESSION = 6


@pytest.fixture(scope="module")
def cp(kube_control_plane: ControlPlane) -> ControlPlane:
    kube_control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "deploy" / "crds"))
    for definition in crds():
        kube_control_plane.kubectl(
            "wait", "--for=condition=Established", f"crd/{definition['metadata']['name']}", "--timeout=60s"
        )
    return kube_control_plane


@pytest.fixture(scope="module")
def zk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ensemble]:
    with running_ensemble(1, state_dir=tmp_path_factory.mktemp("coordination")) as ensemble:
        yield ensemble


@dataclass
class Operators:
    cp: ControlPlane
    ns: str
    agent: NodeAgent
    tmp: Path
    env: dict[str, str]
    argv: list[str]
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [*self.argv, "--identity", name], stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        self.started[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def zkc(self, name: str = "orders-zk") -> dict[str, Any]:
        out = self.cp.kubectl("get", "zkc", name, "-n", self.ns, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def events(self, name: str = "orders-zk") -> list[str]:
        data = json.loads(self.cp.kubectl("get", "events.events.k8s.io", "-n", self.ns, "-o", "json").stdout)
        items = [e for e in data["items"] if e.get("regarding", {}).get("name") == name]
        items.sort(key=lambda e: e.get("eventTime") or e["metadata"]["creationTimestamp"])
        return [e["reason"] for e in items]

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n}\n" + "\n".join(self.log(n).splitlines()[-30:]) for n in self.started)
                status = json.dumps(self.zkc().get("status", {}), indent=1)
                raise AssertionError(
                    f"timed out waiting for {what}\nstatus: {status}\nevents: {self.events()}\n{tails}"
                )
            time.sleep(0.5)

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
def operators(
    cp: ControlPlane, zk: Ensemble, kube_namespace: str, node_agent: NodeAgent, tmp_path: Path
) -> Iterator[Operators]:
    config = tmp_path / "operator.yaml"
    config.write_text(
        "apiVersion: zkop.io/v1\nkind: OperatorConfig\nmetadata: {name: zkop}\n"
        f"spec: {{targetNamespace: {kube_namespace}, leaderElection: {{sessionTimeoutSeconds: {SESSION}}}}}\n"
    )
    env = dict(os.environ, ZKOP_AUTH=f"zkop:{uuid.uuid4().hex}", ZKOP_STATE_DIR=str(tmp_path / "state"))
    env["ZKOP_HOSTS_FILE"] = str(node_agent.hosts_file)
    argv = [
        sys.executable, "-m", "zkop.cli.main", "operator", "run", "--zk", zk.connection_string,
        "--root", f"/k-{uuid.uuid4().hex[:8]}", "--kubeconfig", str(cp.kubeconfig), "--platform", "kubernetes",
        "--config", str(config), "--metrics-port", "0",
    ]  # fmt: skip
    ops = Operators(cp, kube_namespace, node_agent, tmp_path, env, argv)
    try:
        yield ops
    finally:
        ops.stop()


def available(ops: Operators, n: int) -> Callable[[], bool]:
    def check() -> bool:
        s = ops.zkc().get("status", {})
        cond = {c["type"]: c["status"] for c in s.get("conditions", [])}
        return (
            s.get("phase") == "Running"
            and s.get("readyReplicas") == n
            and s.get("replicas") == n
            and (cond.get("Available") == "True")
        )

    return check


class Writing:
    """A Writer in a thread for the length of a ``with`` block."""

    def __init__(self, hosts: str) -> None:
        self.writer = Writer(hosts)
        self.thread = threading.Thread(target=self.writer.run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        assert self.writer.started.wait(30)
        return self.writer

    def __exit__(self, *exc: object) -> None:
        self.writer.stop.set()
        self.thread.join(30)


def pod_hosts(ops: Operators, ids: list[int]) -> str:
    return ",".join(f"{ops.agent.pod_ip(ops.ns, f'orders-zk-{i}')}:2181" for i in ids)


def test_apply_an_example_and_it_serves(operators: Operators) -> None:
    ops = operators
    ops.start("replica-1")
    ops.cp.kubectl("apply", "-n", ops.ns, "-f", str(ROOT / "examples" / "zookeepercluster.yaml"))
    ops.wait("3 members available", available(ops, 3), 180)
    status = ops.zkc()["status"]
    assert sorted(m["id"] for m in status["members"]) == [1, 2, 3]
    assert sorted(m["role"] for m in status["members"]) == ["follower", "follower", "leader"]
    assert status["connectionString"].split(",")[0].startswith(f"orders-zk-1.orders-zk-headless.{ops.ns}.svc")
    table = ops.cp.kubectl("get", "zkc", "-n", ops.ns).stdout
    assert "orders-zk" in table and "Running" in table
    pods = json.loads(ops.cp.kubectl("get", "pods", "-n", ops.ns, "-o", "json").stdout)["items"]
    assert sorted(p["metadata"]["name"] for p in pods) == ["orders-zk-1", "orders-zk-2", "orders-zk-3"]
    assert "Created" in ops.events()
    # A client of the ensemble (through the Pod addresses: no ClusterIP routing here).
    with Writing(pod_hosts(ops, [1, 2, 3])) as writer:
        ops.wait("some writes", lambda: len(writer.acked) > 50, 30)
    assert writer.lost() == []
