"""Backups and restore of ZooKeeper members running as Pods: the operator copies a serving
member's data through the Pod's file agent, and seeds a restored cluster's first member through
its seed step; on the real API server with the node agent's Pods (real ZooKeeper JVMs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_digest_acl

from tests.kubernetes.test_zookeepercluster_kube import Operators, operators

pytestmark = pytest.mark.kubernetes
__all__ = ["operators"]  # the fixture, shared with test_zookeepercluster_kube (cp and zk: conftest)

ZKOP = str(Path(sys.executable).parent / "zkop")
ZKC = """apiVersion: zkop.io/v1
kind: ZookeeperCluster
metadata: {name: orders-zk}
spec:
  replicas: 3
  config: {tickTime: 500, initLimit: 20, syncLimit: 10}
  jvm: {heap: 64Mi}
  storage: {reclaimPolicy: Delete}
"""
N, LATE = 40, 15


def zkop(ops: Operators, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(ops.env)
    env.pop("ZKOP_AUTH", None)
    return subprocess.run(
        [ZKOP, *args, "-n", ops.ns, "--kubeconfig", str(ops.cp.kubeconfig)],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
    )


def serving(ops: Operators, name: str, n: int) -> Any:
    def check() -> dict[str, Any] | None:
        s: dict[str, Any] = ops.zkc(name).get("status", {})
        cond = {c["type"]: c["status"] for c in s.get("conditions", [])}
        if s.get("readyReplicas") == n and s.get("replicas") == n and cond.get("Available") == "True":
            return s
        return None

    return check


def hosts(ops: Operators, cluster: str) -> str:
    pods = json.loads(
        ops.cp.kubectl("get", "pods", "-n", ops.ns, "-l", f"zkop.io/cluster={cluster}", "-o", "json").stdout
    )
    names = [p["metadata"]["name"] for p in pods["items"]]
    return ",".join(f"{ops.agent.pod_ip(ops.ns, n)}:2181" for n in names)


def connect(ops: Operators, cluster: str, auth: bool = True) -> KazooClient:
    client = KazooClient(hosts(ops, cluster), timeout=10, auth_data=[("digest", "alice:s3cret")] if auth else [])
    client.start(timeout=60)
    return client


def test_backup_of_pods_and_restore_into_a_new_cluster(operators: Operators, tmp_path: Path) -> None:
    ops = operators
    ops.start("replica-1")
    (ops.tmp / "zkc.yaml").write_text(ZKC)
    ops.cp.kubectl("apply", "-n", ops.ns, "-f", str(ops.tmp / "zkc.yaml"))
    ops.wait("3 members available", serving(ops, "orders-zk", 3), 300)
    acl = [make_digest_acl("alice", "s3cret", all=True)]
    client = connect(ops, "orders-zk")
    try:
        client.create("/app", b"root", acl=acl)
        for i in range(N):
            client.create(f"/app/n-{i}", f"value-{i}".encode(), acl=acl)
    finally:
        client.stop()
        client.close()

    # On demand: the CLI asks the operator, which copies a serving member's data through its agent.
    made = zkop(ops, "backup", "create", "zkc", "orders-zk", "-o", "json")
    assert made.returncode == 0, made.stderr
    status = json.loads(made.stdout)
    backups = ops.tmp / "state" / "backups"
    listed = subprocess.run(
        [ZKOP, "backup", "list", "--dir", str(backups), "-o", "json"], capture_output=True, text=True
    )
    manifest = next(m for m in json.loads(listed.stdout) if m["name"] == status["name"])
    assert manifest["lastZxid"] == status["zxid"] and manifest["acls"] >= N + 1
    assert manifest["cluster"] == f"{ops.ns}/orders-zk"
    assert "BackupCreated" in ops.events()

    client = connect(ops, "orders-zk")
    try:
        for i in range(LATE):
            client.create(f"/app/late-{i}", b"after the backup", acl=acl)
    finally:
        client.stop()
        client.close()
    ops.cp.kubectl("delete", "zkc", "orders-zk", "-n", ops.ns, "--wait=true", "--timeout=180s")

    # A damaged backup is refused before anything is made.
    damaged = tmp_path / "damaged"
    shutil.copytree(backups, damaged)
    victim = next((damaged / status["name"] / "data").glob("log.*"))
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    refused = zkop(ops, "backup", "restore", status["name"], "--into", "broken-zk", "--dir", str(damaged))
    assert refused.returncode == 1 and "damaged" in refused.stderr and "Traceback" not in refused.stderr
    assert ops.zkc("broken-zk") == {}, "nothing is created from a damaged backup"

    restored = zkop(
        ops, "backup", "restore", status["name"], "--into", "orders-zk2", "--dir", str(backups), "-o", "json"
    )
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["restoredZxid"] == status["zxid"]
    final = ops.wait("the restored cluster with 3 members", serving(ops, "orders-zk2", 3), 300)
    assert final["restored"] == {"backup": status["name"], "zxid": status["zxid"]}
    assert "Seeded" in ops.events("orders-zk2")
    pods = json.loads(
        ops.cp.kubectl("get", "pods", "-n", ops.ns, "-l", "zkop.io/cluster=orders-zk2", "-o", "json").stdout
    )
    seeded = [p for p in pods["items"] if any(c["name"] == "seed" for c in p["spec"].get("initContainers", []))]
    assert len(seeded) == 1, "only the first member is seeded; the others sync from it"

    client = connect(ops, "orders-zk2")
    try:
        assert sorted(client.get_children("/app")) == sorted(f"n-{i}" for i in range(N))
        for i in range(N):
            data, _ = client.get(f"/app/n-{i}")
            assert data == f"value-{i}".encode()
        acls, _ = client.get_acls("/app/n-7")
        assert [(a.id.scheme, a.id.id.split(":")[0], a.perms) for a in acls] == [("digest", "alice", 31)]
    finally:
        client.stop()
        client.close()
    anonymous = connect(ops, "orders-zk2", auth=False)
    try:
        with pytest.raises(NoAuthError):
            anonymous.get("/app/n-1")
    finally:
        anonymous.stop()
        anonymous.close()
    assert os.path.isdir(backups / status["name"])
