"""Certificates for ZooKeeper: a certificate authority per cluster, member and client
certificates (``cryptography``).

Keys are ECDSA P-256; certificates are X.509 v3 with SHA-256 signatures. A member's
certificate serves both ends of TLS (it is the server on its client and quorum ports, and the
client when it connects to its peers), so it carries both extended key usages and every name
and address the member is reached by. Client certificates carry the client usage only. The
CA's private key stays with whoever issues (the operator's platform), never with a member.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_VALIDITY",
    "CertificateAuthority",
    "CertificateInfo",
    "Issued",
    "certificate_info",
    "fingerprint",
    "not_after",
    "split_names",
]

CA_VALIDITY = 10 * 365 * 24 * 3600  # seconds
_BACKDATE = dt.timedelta(minutes=5)  # clocks of other machines may be a little behind


def _cn(name: str) -> str:
    """X.509 allows at most 64 characters in a common name; the names (SANs) identify anyway."""
    return name if len(name) <= 64 else name[:61] + "..."


def _subject(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, _cn(common_name))]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _start(now: float | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC) if now is not None else dt.datetime.now(dt.UTC)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, start: dt.datetime, end: dt.datetime
) -> x509.CertificateBuilder:
    """A certificate for ``key`` from ``start`` (backdated a little) to ``end``, extensions to add."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - _BACKDATE)
        .not_valid_after(end)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA's key signs certificates and CRLs; a member's or client's signs and agrees on keys."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _load_cert(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def not_after(cert_pem: str | bytes) -> float:
    """When the (first) certificate in ``cert_pem`` expires, in seconds since the epoch."""
    return _load_cert(cert_pem).not_valid_after_utc.timestamp()


def fingerprint(cert_pem: str | bytes) -> str:
    """SHA-256 fingerprint of the certificate, hex."""
    return _load_cert(cert_pem).fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    issuer: str
    not_before: float
    not_after: float
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    fingerprint: str


def certificate_info(cert_pem: str | bytes) -> CertificateInfo:
    cert = _load_cert(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(i) for i in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        dns_names=dns,
        ip_addresses=ips,
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
    )


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key (PEM)."""

    cert_pem: str
    key_pem: str

    @property
    def not_after(self) -> float:
        return not_after(self.cert_pem)

    @property
    def key_store(self) -> str:
        """Key and certificate in one PEM file, as ZooKeeper's PEM key store wants them."""
        return self.key_pem + self.cert_pem


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA: its certificate and private key (PEM)."""

    cert_pem: str
    key_pem: str

    @classmethod
    def create(cls, name: str, *, validity: float = CA_VALIDITY, now: float | None = None) -> CertificateAuthority:
        key = _new_key()
        subject = _subject(name, "zkop")
        start = _start(now)
        cert = (
            _builder(subject, subject, key, start, start + dt.timedelta(seconds=validity))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(_cert_pem(cert), _key_pem(key))

    @property
    def certificate(self) -> x509.Certificate:
        return _load_cert(self.cert_pem)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert_pem)

    def issued(self, cert_pem: str | bytes) -> bool:
        """Whether this CA signed ``cert_pem`` (its signature checks out with our key)."""
        try:
            cert = _load_cert(cert_pem)
            cert.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def issue(
        self,
        common_name: str,
        *,
        validity: float,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        server: bool = True,
        client: bool = True,
        organization: str | None = None,
        now: float | None = None,
    ) -> Issued:
        """A certificate for ``common_name`` valid for ``validity`` seconds (never past the CA's
        own end), with the names and addresses it is reached by as subject alternative names.
        ``organization`` goes in the subject too (Kubernetes reads it as the user's group)."""
        ca_key = serialization.load_pem_private_key(self.key_pem.encode(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = self.certificate
        key = _new_key()
        start = _start(now)
        end = min(start + dt.timedelta(seconds=validity), ca_cert.not_valid_after_utc)
        usages = [
            u for u, on in ((ExtendedKeyUsageOID.SERVER_AUTH, server), (ExtendedKeyUsageOID.CLIENT_AUTH, client)) if on
        ]
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns_names)]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ip_addresses)]
        builder = (
            _builder(_subject(common_name, organization), ca_cert.subject, key, start, end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return Issued(_cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key))


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def split_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of ``names``."""
    ips = [n for n in names if is_ip(n)]
    return [n for n in names if not is_ip(n)], ips
