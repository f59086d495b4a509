"""TLS material of a local ensemble, under its directory in the state dir::

    tls/ca.crt, tls/ca.key          the cluster's certificate authority (the key 0600; it never
                                    goes into a member's directory or configuration)
    tls/operator.pem                the operator's client key and certificate (renewed when half used)
    tls/policy.json                 the validity last asked for (for the operator's certificate)
    members/<id>/tls/keystore.pem   the member's key and certificate (0600)
    members/<id>/tls/truststore.pem the CA certificate it trusts

A member's certificate is issued (or renewed) right before the member starts, so the file is
the certificate its process serves; it names ``localhost``, 127.0.0.1 and the member's host.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from zkop.platform.base import TlsPolicy
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.zk import certs as C
from zkop.zk import tls as T
from zkop.zk.config import MemberAddress, ServerTls, current_dynamic_file, parse_membership

LOOPBACK_NAMES = ("localhost", "127.0.0.1")


class LocalTls:
    def __init__(self, ens: LocalEnsemble) -> None:
        self.ens = ens
        self.dir = ens.dir / "tls"

    # ---- the CA -----------------------------------------------------------------------

    def ca(self, *, create: bool = False) -> C.CertificateAuthority | None:
        cert, key = self.dir / "ca.crt", self.dir / "ca.key"
        if cert.is_file() and key.is_file():
            return C.CertificateAuthority(cert.read_text(), key.read_text())
        if not create:
            return None
        ca = C.CertificateAuthority.create(f"zkop {self.ens.name} CA")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        T.write_private(key, ca.key_pem)
        T.write_private(cert, ca.cert_pem)
        return ca

    def _policy(self) -> dict[str, float]:
        try:
            data = json.loads((self.dir / "policy.json").read_text())
            return {"validity": float(data["validity"]), "renew_before": float(data["renew_before"])}
        except (OSError, ValueError, KeyError, TypeError):
            return {"validity": TlsPolicy().validity, "renew_before": TlsPolicy().renew_before}

    def _save_policy(self, policy: TlsPolicy) -> None:
        data = json.dumps({"validity": policy.validity, "renew_before": policy.renew_before})
        if (self.dir / "policy.json").is_file() and (self.dir / "policy.json").read_text() == data:
            return
        T.write_private(self.dir / "policy.json", data)

    # ---- members ---------------------------------------------------------------------------

    def member_dir(self, member_id: int) -> Path:
        return self.ens.member_dir(member_id) / "tls"

    def key_store(self, member_id: int) -> Path:
        return self.member_dir(member_id) / "keystore.pem"

    def trust_store(self, member_id: int) -> Path:
        return self.member_dir(member_id) / "truststore.pem"

    def member_expires(self, member_id: int) -> float | None:
        """When the member's certificate ends; 0.0 when the cluster's CA did not sign it (it must
        be renewed); None without one."""
        try:
            pem = self.key_store(member_id).read_text()
        except OSError:
            return None
        ca = self.ca()
        try:
            if ca is not None and not ca.issued(pem):
                return 0.0
            return C.not_after(pem)
        except ValueError:
            return 0.0

    def ensure_member(
        self, member_id: int, address: MemberAddress, policy: TlsPolicy, *, now: float | None = None
    ) -> None:
        """Issue the member's certificate when it has none, its CA is not the cluster's, it lacks
        a name it is reached by, or less than ``renew_before`` is left."""
        ca = self.ca(create=True)
        assert ca is not None
        self._save_policy(policy)
        at = time.time() if now is None else now
        names = [*LOOPBACK_NAMES, address.host]
        store = self.key_store(member_id)
        if store.is_file():
            try:
                pem = store.read_text()
                info = C.certificate_info(pem)
                fresh = info.not_after - at > policy.renew_before and ca.issued(pem)
                named = set(names) <= {*info.dns_names, *info.ip_addresses}
                if fresh and named and self.trust_store(member_id).read_text() == ca.cert_pem:
                    return
            except (OSError, ValueError):
                pass
        dns, ips = C.split_names(names)
        issued = ca.issue(
            f"{self.ens.name}-{member_id}", validity=policy.validity, dns_names=dns, ip_addresses=ips, now=at
        )
        self.member_dir(member_id).mkdir(parents=True, exist_ok=True)
        os.chmod(self.member_dir(member_id), 0o700)
        T.write_private(store, issued.key_store)
        T.write_private(self.trust_store(member_id), ca.cert_pem)

    def server_config(
        self, member_id: int, address: MemberAddress, policy: TlsPolicy | None
    ) -> tuple[MemberAddress | None, ServerTls | None]:
        """What the member's zoo.cfg says about its client port and TLS: ``(plain client address to
        put in zoo.cfg, TLS settings)``. The client address is zoo.cfg's only when the member's
        line in the dynamic configuration does not give it."""
        plain = None if self.client_in_dynamic(member_id) else address
        if policy is None or not policy.enabled:
            return plain, None
        return plain, ServerTls(
            key_store=str(self.key_store(member_id)),
            trust_store=str(self.trust_store(member_id)),
            client_unified=policy.client == "Both",
            client_tls_only=policy.client == "Tls",
            quorum=policy.quorum in ("Tls", "Both"),
            quorum_unified=policy.quorum in ("Both", "Accept"),
        )

    def client_in_dynamic(self, member_id: int) -> bool:
        """Whether the member's current dynamic configuration gives its own client address."""
        dynamic = current_dynamic_file(self.ens.config_file(member_id)) or (
            self.ens.member_dir(member_id) / "zoo.cfg.dynamic"
        )
        try:
            members, _ = parse_membership(dynamic.read_text())
        except OSError:
            return True
        me = next((m for m in members if m.id == member_id), None)
        return me is None or me.client_port != 0

    def client_tls(self, member_id: int) -> bool:
        """Whether the member's client port (as its zoo.cfg says now) answers TLS."""
        try:
            text = self.ens.config_file(member_id).read_text()
        except OSError:
            return False
        return "\nclient.portUnification=true" in text

    # ---- clients ----------------------------------------------------------------------------

    def operator_files(self, *, now: float | None = None) -> T.TlsFiles | None:
        """The operator's client certificate, issued or renewed (when half of its time is used);
        None when the cluster has no CA."""
        ca = self.ca()
        if ca is None:
            return None
        files = T.TlsFiles(self.dir / "ca.crt", self.dir / "operator.pem")
        at = time.time() if now is None else now
        try:
            pem = files.cert.read_text()
            info = C.certificate_info(pem)
            if ca.issued(pem) and info.not_after - at > (info.not_after - info.not_before) / 2:
                return files
        except (OSError, ValueError):
            pass
        issued = ca.issue("zkop-operator", validity=self._policy()["validity"], server=False)
        T.write_private(files.cert, issued.key_store)
        return files

    def issue_client(self, name: str, *, validity: float | None = None) -> tuple[C.Issued, str]:
        """A client certificate for ``name`` and the CA certificate to trust (PEM)."""
        ca = self.ca()
        if ca is None:
            raise FileNotFoundError(self.dir / "ca.crt")
        issued = ca.issue(name, validity=validity or self._policy()["validity"], server=False)
        return issued, ca.cert_pem


__all__ = ["LocalTls"]
