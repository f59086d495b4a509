"""TLS on the Kubernetes platform: members' certificates from Secrets, on the real API server
with the node agent's Pods (real ZooKeeper JVMs)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from tests.kubernetes.test_zookeepercluster_kube import Operators, available, operators, pod_hosts
from zkop.zk.certs import CertificateAuthority
from zkop.zk.tls import TlsFiles, write_private

pytestmark = pytest.mark.kubernetes
__all__ = ["operators"]  # the fixture, shared with test_zookeepercluster_kube (cp and zk: conftest)

ZKC = """apiVersion: zkop.io/v1
kind: ZookeeperCluster
metadata: {name: orders-zk}
spec:
  replicas: 3
  config: {tickTime: 500, initLimit: 20, syncLimit: 10}
  jvm: {heap: 64Mi}
  tls:
    client: {mode: Tls}
    quorum: {mode: Tls}
"""


def secret(ops: Operators, name: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(ops.cp.kubectl("get", "secret", name, "-n", ops.ns, "-o", "json").stdout)
    return found


def test_members_serve_tls_with_certificates_from_secrets(operators: Operators, tmp_path: Path) -> None:
    ops = operators
    ops.start("replica-1")
    (ops.tmp / "zkc.yaml").write_text(ZKC)
    ops.cp.kubectl("apply", "-n", ops.ns, "-f", str(ops.tmp / "zkc.yaml"))
    ops.wait("3 members available over TLS", available(ops, 3), 300)
    status = ops.zkc()["status"]
    assert status.get("certificatesExpireAt")
    # The CA is in a Secret no Pod mounts; each member has its own key store.
    ca_data = secret(ops, "orders-zk-ca")["data"]
    assert isinstance(ca_data, dict)
    ca = CertificateAuthority(
        base64.b64decode(ca_data["ca.crt"]).decode(), base64.b64decode(ca_data["ca.key"]).decode()
    )
    pods = json.loads(ops.cp.kubectl("get", "pods", "-n", ops.ns, "-o", "json").stdout)["items"]
    for pod in pods:
        mounted = {v.get("secret", {}).get("secretName") for v in pod["spec"]["volumes"]}
        assert "orders-zk-ca" not in mounted and f"{pod['metadata']['name']}-tls" in mounted
    # A client with a certificate from the cluster's CA connects; a plain one does not.
    issued = ca.issue("alice", validity=3600, server=False)
    write_private(tmp_path / "ca.crt", ca.cert_pem)
    write_private(tmp_path / "alice.pem", issued.key_store)
    files = TlsFiles(tmp_path / "ca.crt", tmp_path / "alice.pem", check_hostname=False)
    hosts = pod_hosts(ops, [1, 2, 3])
    client = KazooClient(hosts, timeout=10, **files.kazoo_options())
    client.start(timeout=30)
    try:
        client.create("/over-tls", b"yes")
        assert client.get("/over-tls")[0] == b"yes"
    finally:
        client.stop()
        client.close()
    plain = KazooClient(hosts, timeout=4, connection_retry={"max_tries": 1})
    with pytest.raises((KazooTimeoutError, KazooException)):
        plain.start(timeout=6)
        plain.get_children("/")  # a plain session is closed at its first request
    plain.stop()
    plain.close()
