"""TLS in the Kubernetes manifests (pure): the member's key store from a Secret, zoo.cfg, probes."""

from __future__ import annotations

import base64

from zkop.platform.base import ClusterRef, MemberTemplate, TlsPolicy
from zkop.platform.kubernetes import members as M
from zkop.zk import certs
from zkop.zk.config import ServerSettings

CLUSTER = ClusterRef("prod", "orders-zk")


def template(client: str | None, quorum: str | None) -> MemberTemplate:
    policy = TlsPolicy(client=client, quorum=quorum)  # type: ignore[arg-type]
    return MemberTemplate(settings=ServerSettings(), config_hash="h", tls=policy)


def cfg(t: MemberTemplate) -> dict[str, str]:
    text = M.static_config(t)
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_zoo_cfg_for_each_mode() -> None:
    tls = cfg(template("Tls", "Tls"))
    assert tls["client.portUnification"] == "true" and tls["enforce.auth.schemes"] == "x509"
    assert "clientPort" not in tls and tls["sslQuorum"] == "true" and "portUnification" not in tls
    assert tls["ssl.keyStore.location"] == "/tls/keystore.pem" and tls["ssl.trustStore.type"] == "PEM"
    both = cfg(template("Both", "Accept"))
    assert both["client.portUnification"] == "true" and "enforce.auth.enabled" not in both
    assert both["sslQuorum"] == "false" and both["portUnification"] == "true"
    quorum_only = cfg(template(None, "Tls"))
    assert "client.portUnification" not in quorum_only and quorum_only["sslQuorum"] == "true"
    plain = cfg(MemberTemplate(settings=ServerSettings(), config_hash="h"))
    assert not any(k.startswith("ssl") for k in plain)


def test_pod_mounts_its_key_store_and_probes_over_tls() -> None:
    t = template("Tls", "Tls")
    a = M.address(CLUSTER, 2)
    pod = M.pod(CLUSTER, 2, t, [M.address(CLUSTER, 1), a], epoch=1)
    spec = pod["spec"]
    assert pod["metadata"]["annotations"][M.CLIENT_TLS] == "true"
    volume = next(v for v in spec["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == "orders-zk-2-tls"
    zk = spec["containers"][0]
    assert {"name": "tls", "mountPath": "/tls", "readOnly": True} in zk["volumeMounts"]
    assert "openssl s_client" in zk["readinessProbe"]["exec"]["command"][-1]
    membership = next(e["value"] for e in spec["initContainers"][0]["env"] if e["name"] == "ZKOP_MEMBERSHIP")
    assert membership.count(";") == 2  # ZooKeeper's reconfiguration needs every member's client address
    # Nobody mounts the CA.
    assert not any(v.get("secret", {}).get("secretName", "")[-2:] == "ca" for v in spec["volumes"])


def test_secrets() -> None:
    ca = certs.CertificateAuthority.create("x")
    names = M.member_names(CLUSTER, 2)
    assert "orders-zk-2.orders-zk-headless.prod.svc.cluster.local" in names and "orders-zk-client.prod.svc" in names
    dns, ips = certs.split_names(names)
    issued = ca.issue("m", validity=100, dns_names=dns, ip_addresses=ips)
    secret = M.tls_secret(CLUSTER, 2, issued.key_store, ca.cert_pem, issued.not_after, ca.fingerprint)
    assert secret["metadata"]["annotations"][M.NOT_AFTER] == str(int(issued.not_after))
    assert secret["metadata"]["labels"][M.MEMBER_LABEL] == "2"
    assert base64.b64decode(secret["data"]["truststore.pem"]).decode() == ca.cert_pem
    assert "PRIVATE KEY" not in base64.b64decode(secret["data"]["truststore.pem"]).decode()
    held = M.ca_secret(CLUSTER, ca.cert_pem, ca.key_pem, ca.fingerprint)
    assert held["metadata"]["name"] == "orders-zk-ca" and M.MEMBER_LABEL not in held["metadata"]["labels"]
