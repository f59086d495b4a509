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

from zkop.testing import Ensemble
from zkop.testing.kube import ControlPlane
from zkop.testing.nodeagent import NodeAgent
from zkop.testing.quorum import Writer

pytestmark = pytest.mark.kubernetes

ROOT = Path(__file__).resolve().parents[2]
SESSION = 6


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


def apply_example(ops: Operators, replicas: int = 3, policy: str = "Retain") -> None:
    text = (ROOT / "examples" / "zookeepercluster.yaml").read_text()
    text = text.replace("replicas: 3", f"replicas: {replicas}").replace(
        "reclaimPolicy: Retain", f"reclaimPolicy: {policy}"
    )
    path = ops.tmp / "zkc.yaml"
    path.write_text(text)
    ops.cp.kubectl("apply", "-n", ops.ns, "-f", str(path))


def member_ids(ops: Operators) -> list[int]:
    return sorted(m["id"] for m in ops.zkc().get("status", {}).get("members", []))


def test_scale_3_5_3_under_writes_one_change_at_a_time(operators: Operators) -> None:
    ops = operators
    ops.start("replica-1")
    apply_example(ops)
    ops.wait("3 members", available(ops, 3), 180)
    with Writing(pod_hosts(ops, [1, 2, 3])) as writer:
        ops.cp.kubectl("scale", "zkc", "orders-zk", "-n", ops.ns, "--replicas", "5")
        ops.wait("5 members", available(ops, 5), 240)
        assert member_ids(ops) == [1, 2, 3, 4, 5]
        ops.cp.kubectl("scale", "zkc", "orders-zk", "-n", ops.ns, "--replicas", "3")
        ops.wait("back to 3", lambda: available(ops, 3)() and member_ids(ops) == [1, 2, 3], 240)
        ops.wait("writes after the scale", lambda: len(writer.acked) > 100, 30)
    assert writer.lost() == [], "an acknowledged write was lost"
    assert writer.longest_gap < SESSION, f"writes stalled for {writer.longest_gap:.1f}s: quorum was lost"
    changes = [r for r in ops.events() if r in ("MemberStarting", "MemberAdded", "MemberRemoved", "MemberStopped")]
    assert changes == ["MemberStarting", "MemberAdded"] * 2 + ["MemberRemoved", "MemberStopped"] * 2
    claims = json.loads(ops.cp.kubectl("get", "pvc", "-n", ops.ns, "-o", "json").stdout)["items"]
    removed = sorted(c["metadata"]["name"] for c in claims if c["metadata"]["labels"].get("zkop.io/removed") == "true")
    assert removed == ["data-orders-zk-4", "data-orders-zk-5"]  # Retain: kept, never attached to a new id


def test_a_deleted_pod_keeps_its_id_and_data_a_lost_volume_gets_a_new_id(operators: Operators) -> None:
    ops = operators
    ops.start("replica-1")
    apply_example(ops)
    ops.wait("3 members", available(ops, 3), 180)
    with Writing(pod_hosts(ops, [1, 2, 3])) as writer:
        ops.wait("some writes", lambda: len(writer.acked) > 20, 30)
    uid = json.loads(ops.cp.kubectl("get", "pod", "orders-zk-2", "-n", ops.ns, "-o", "json").stdout)["metadata"]["uid"]
    ops.cp.kubectl("delete", "pod", "orders-zk-2", "-n", ops.ns)

    def back() -> bool:
        out = ops.cp.kubectl("get", "pod", "orders-zk-2", "-n", ops.ns, "-o", "json", check=False)
        return out.returncode == 0 and json.loads(out.stdout)["metadata"]["uid"] != uid and available(ops, 3)()

    ops.wait("member 2 back as a new Pod", back, 180)
    assert member_ids(ops) == [1, 2, 3] and "Healed" in ops.events()
    assert writer.lost(pod_hosts(ops, [2])) == []  # its data came back with it

    # The volume goes with the Pod: member 3 is replaced by id 4, never by 3 again.
    ops.cp.kubectl("delete", "pvc", "data-orders-zk-3", "-n", ops.ns, "--wait=false")
    ops.cp.kubectl("delete", "pod", "orders-zk-3", "-n", ops.ns)
    ops.wait("member 3 replaced by member 4", lambda: available(ops, 3)() and member_ids(ops) == [1, 2, 4], 240)
    assert writer.lost(pod_hosts(ops, [4])) == []


def test_a_configuration_change_rolls_the_leader_last(operators: Operators) -> None:
    ops = operators
    ops.start("replica-1")
    apply_example(ops)
    ops.wait("3 members", available(ops, 3), 180)
    leader = ops.zkc()["status"]["leader"]
    leaders = [leader]
    with Writing(pod_hosts(ops, [1, 2, 3])) as writer:
        ops.cp.kubectl(
            "patch", "zkc", "orders-zk", "-n", ops.ns, "--type", "merge", "-p", '{"spec":{"config":{"tickTime":2500}}}'
        )

        def rolled() -> bool:
            s = ops.zkc()["status"]
            if s.get("leader") and s["leader"] != leaders[-1]:
                leaders.append(s["leader"])
            return ops.events().count("RollingRestart") == 3 and available(ops, 3)()

        ops.wait("the roll", rolled, 300)
    assert len(leaders) == 2, f"leaders seen {leaders}; status now {json.dumps(ops.zkc()['status'])[:1500]}"
    notes = json.loads(
        ops.cp.kubectl(
            "get", "events.events.k8s.io", "-n", ops.ns, "--field-selector", "reason=RollingRestart", "-o", "json"
        ).stdout
    )["items"]
    notes.sort(key=lambda e: e["eventTime"])  # a listing is in name order
    restarted = [int(e["note"].split("member ")[1].split(" ")[0]) for e in notes]
    assert restarted[-1] == leader, f"the leader ({leader}) was not restarted last: {restarted}"
    assert writer.lost(pod_hosts(ops, [1, 2, 3])) == []


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_delete_with_each_reclaim_policy(operators: Operators, policy: str) -> None:
    ops = operators
    ops.start("replica-1")
    apply_example(ops, policy=policy)
    ops.wait("3 members", available(ops, 3), 180)
    ops.cp.kubectl("delete", "zkc", "orders-zk", "-n", ops.ns, "--wait=false")
    ops.wait("the cluster gone", lambda: ops.zkc() == {}, 180)
    pods = json.loads(ops.cp.kubectl("get", "pods", "-n", ops.ns, "-o", "json").stdout)["items"]
    assert pods == []
    claims = json.loads(ops.cp.kubectl("get", "pvc", "-n", ops.ns, "-o", "json").stdout)["items"]
    if policy == "Delete":
        ops.wait(
            "claims deleted",
            lambda: json.loads(ops.cp.kubectl("get", "pvc", "-n", ops.ns, "-o", "json").stdout)["items"] == [],
            60,
        )
    else:
        assert sorted(c["metadata"]["name"] for c in claims) == [f"data-orders-zk-{i}" for i in (1, 2, 3)]
        assert all(c["metadata"]["labels"]["zkop.io/removed"] == "true" for c in claims)
    services = json.loads(ops.cp.kubectl("get", "svc", "-n", ops.ns, "-o", "json").stdout)["items"]
    assert services == []


def test_the_standby_finishes_a_scale_the_paused_leader_began(operators: Operators) -> None:
    ops = operators
    a = ops.start("replica-a")
    apply_example(ops)
    ops.wait("3 members", available(ops, 3), 180)
    ops.start("replica-b")
    ops.cp.kubectl("scale", "zkc", "orders-zk", "-n", ops.ns, "--replicas", "5")
    ops.wait("the scale begun", lambda: "MemberStarting" in ops.events(), 120)
    os.killpg(a.pid, signal.SIGSTOP)
    try:
        ops.wait("the standby finished it", lambda: available(ops, 5)() and member_ids(ops) == [1, 2, 3, 4, 5], 300)
    finally:
        os.killpg(a.pid, signal.SIGCONT)
    ops.wait(
        "the old leader stepped down",
        lambda: "stopped leading" in ops.log("replica-a") or "fenced" in ops.log("replica-a").lower(),
        SESSION * 6,
    )
    before = ops.zkc()
    settled = time.monotonic() + 5  # the old leader had its chance to act: nothing changed
    while time.monotonic() < settled:
        assert member_ids(ops) == [1, 2, 3, 4, 5]
        time.sleep(0.5)
    assert ops.zkc()["metadata"]["annotations"]["zkop.io/epoch"] == before["metadata"]["annotations"]["zkop.io/epoch"]
