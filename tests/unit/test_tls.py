"""TLS pieces without processes: certificates, zoo.cfg lines, the planner's renewal, the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zkop.api import parse_object
from zkop.api.errors import ResourceValidationError
from zkop.controllers.zookeepercluster import plan as P
from zkop.controllers.zookeepercluster.controller import member_template
from zkop.platform.base import TlsPolicy
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.platform.local.tls import LocalTls
from zkop.zk import certs
from zkop.zk.config import MemberAddress, ServerSettings, ServerTls, is_owned_key, render_dynamic, render_static


def test_ca_issues_member_certificates_with_their_names() -> None:
    ca = certs.CertificateAuthority.create("test")
    issued = ca.issue("m-1", validity=120, dns_names=["localhost", "zk-1.zk"], ip_addresses=["127.0.0.1"], now=1e9)
    info = certs.certificate_info(issued.key_store)
    assert info.dns_names == ("localhost", "zk-1.zk") and info.ip_addresses == ("127.0.0.1",)
    assert info.not_after == 1e9 + 120 and "CN=test" in info.issuer
    assert ca.issued(issued.cert_pem)
    assert not certs.CertificateAuthority.create("test").issued(issued.cert_pem)  # same name, other key
    assert issued.key_store.startswith("-----BEGIN PRIVATE KEY-----")


def test_long_names_fit_in_a_common_name() -> None:
    ca = certs.CertificateAuthority.create("zkop " + "n" * 70 + "/orders-zk CA")
    issued = ca.issue("m" * 80, validity=60)
    assert len(certs.certificate_info(issued.cert_pem).subject) <= 64 + 3 and ca.issued(issued.cert_pem)


def test_an_organization_goes_in_the_subject_before_the_common_name() -> None:
    ca = certs.CertificateAuthority.create("test")
    assert certs.certificate_info(ca.cert_pem).subject == "CN=test,O=zkop"
    admin = ca.issue("zkop-admin", validity=60, server=False, organization="system:masters")
    assert certs.certificate_info(admin.cert_pem).subject == "CN=zkop-admin,O=system:masters"
    assert certs.certificate_info(ca.issue("m-1", validity=60).cert_pem).subject == "CN=m-1"


def test_a_certificate_never_outlives_its_ca() -> None:
    ca = certs.CertificateAuthority.create("short", validity=3600, now=1e9)
    assert certs.not_after(ca.issue("x", validity=10 * 3600, now=1e9).cert_pem) == certs.not_after(ca.cert_pem)


A = MemberAddress(1, "127.0.0.1", 2001, 2002, 2000)


def test_dynamic_lines_without_the_client_address() -> None:
    assert A.server_line() == "server.1=127.0.0.1:2001:2002:participant;127.0.0.1:2000"
    assert A.server_line(with_client=False) == "server.1=127.0.0.1:2001:2002:participant"
    assert render_dynamic([A], with_client=False) == "server.1=127.0.0.1:2001:2002:participant\n"


def _cfg(**kw: Any) -> dict[str, str]:
    text = render_static(data_dir=Path("/d"), dynamic_file=Path("/d/dyn"), settings=ServerSettings(), **kw)
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_static_config_for_tls() -> None:
    plain = _cfg()
    assert "serverCnxnFactory" not in plain and "clientPort" not in plain and "enforce.auth.enabled" not in plain
    tls_only = _cfg(tls=ServerTls("/k.pem", "/t.pem", client_tls_only=True, quorum=True))
    assert tls_only["client.portUnification"] == "true" and tls_only["enforce.auth.schemes"] == "x509"
    assert tls_only["enforce.auth.enabled"] == "true" and "secureClientPort" not in tls_only
    assert tls_only["ssl.keyStore.type"] == "PEM" and tls_only["ssl.keyStore.location"] == "/k.pem"
    assert tls_only["ssl.quorum.trustStore.location"] == "/t.pem" and tls_only["sslQuorum"] == "true"
    assert tls_only["serverCnxnFactory"].endswith("NettyServerCnxnFactory") and "portUnification" not in tls_only
    both = _cfg(client=A, tls=ServerTls("/k", "/t", client_unified=True, quorum=True, quorum_unified=True))
    assert both["clientPort"] == "2000" and both["client.portUnification"] == "true"
    assert both["portUnification"] == "true" and "enforce.auth.enabled" not in both


@pytest.mark.parametrize(
    ("client", "in_dynamic", "plain", "unified", "tls_only"),
    [
        (None, True, False, False, False),
        (None, False, True, False, False),  # a line without its client address: zoo.cfg gives it
        ("Tls", True, False, False, True),
        ("Both", True, False, True, False),
        ("Both", False, True, True, False),
    ],
)
def test_what_a_member_serves(
    tmp_path: Path, client: Any, in_dynamic: bool, plain: bool, unified: bool, tls_only: bool
) -> None:
    ens = LocalEnsemble(tmp_path, "zkc-x")
    ens.member_dir(1).mkdir(parents=True)
    ens.write_member_files(1, [A], ServerSettings(), with_client=in_dynamic)
    tls = LocalTls(ens)
    got_plain, server = tls.server_config(1, A, TlsPolicy(client=client, quorum="Tls"))
    assert (got_plain is not None) == plain
    assert server is not None and server.client_unified == unified and server.client_tls_only == tls_only
    assert server.quorum and not server.quorum_unified


def test_local_member_certificates_are_issued_and_renewed(tmp_path: Path) -> None:
    ens = LocalEnsemble(tmp_path, "zkc-x")
    tls = LocalTls(ens)
    policy = TlsPolicy(client="Tls", validity=600, renew_before=100)
    tls.ensure_member(1, A, policy, now=1e9)
    first = tls.member_expires(1)
    assert first is not None and tls.key_store(1).stat().st_mode & 0o777 == 0o600
    assert (tls.dir / "ca.key").stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in tls.trust_store(1).read_text()
    tls.ensure_member(1, A, policy, now=1e9 + 400)  # 200 s left: kept
    assert tls.member_expires(1) == first
    tls.ensure_member(1, A, policy)  # now: long past, renewed
    assert (tls.member_expires(1) or 0) > first
    files = tls.operator_files()
    assert files is not None and files.key is None and "PRIVATE KEY" in files.cert.read_text()


def _member(**kw: Any) -> P.ObservedMember:
    base: dict[str, Any] = {
        "id": 1,
        "in_config": True,
        "process_running": True,
        "paused": False,
        "serving": True,
        "role": "follower",
        "syncing": False,
        "data_present": True,
        "config_hash": "h",
        "unresponsive_since": None,
    }
    return P.ObservedMember(**(base | kw))


def test_a_certificate_that_ends_soon_rolls_its_member() -> None:
    desired = P.Desired(replicas=3, config_hash="h", renew_certificates_before=60)
    assert P.restart_reason(_member(certificate_expires=1000), desired, now=900) is None
    assert P.restart_reason(_member(certificate_expires=1000), desired, now=950) == "CertificateExpiring"
    assert P.restart_reason(_member(certificate_expires=None), desired, now=950) is None
    members = [_member(id=i, role="leader" if i == 1 else "follower", certificate_expires=1000.0) for i in (1, 2, 3)]
    action = P.plan(members, desired, next_id=4, now=990, unresponsive_grace=30)
    assert isinstance(action, P.RestartMember) and action.id == 2 and action.reason == "CertificateExpiring"
    action = P.plan(members[:1], desired, next_id=4, now=100, unresponsive_grace=30)
    assert not isinstance(action, P.RestartMember)


def _zkc(tls: dict[str, Any]) -> Any:
    return parse_object(
        {"apiVersion": "zkop.io/v1", "kind": "ZookeeperCluster", "metadata": {"name": "z"}, "spec": {"tls": tls}}
    )


def test_api_tls_fields() -> None:
    obj = _zkc({"client": {}, "quorum": {"mode": "Accept"}})
    template = member_template(obj)
    assert template.tls == TlsPolicy(client="Tls", quorum="Accept", validity=90 * 86400.0, renew_before=30 * 86400.0)
    assert member_template(_zkc({})).tls is None
    assert member_template(_zkc({})).config_hash != template.config_hash
    longer = _zkc({"client": {}, "quorum": {"mode": "Accept"}, "certificates": {"validitySeconds": 9999999}})
    assert member_template(longer).config_hash == template.config_hash  # lifetimes roll nothing by themselves
    with pytest.raises(ResourceValidationError, match=r"spec\.tls\.certificates\.renewBeforeSeconds"):
        _zkc({"certificates": {"validitySeconds": 100, "renewBeforeSeconds": 100}})
    with pytest.raises(ResourceValidationError, match=r"spec\.tls\.client\.mode"):
        _zkc({"client": {"mode": "Plain"}})
    with pytest.raises(ResourceValidationError, match=r"ssl\.keyStore\.location"):
        parse_object(
            {
                "apiVersion": "zkop.io/v1",
                "kind": "ZookeeperCluster",
                "metadata": {"name": "z"},
                "spec": {"config": {"additionalConfig": {"ssl.keyStore.location": "/x"}}},
            }
        )
    assert is_owned_key("ssl.quorum.keyStore.location") and is_owned_key("sslQuorum")
    assert is_owned_key("enforce.auth.schemes")
