"""TLS material on disk for ZooKeeper clients and servers (no certificate work here: that is
:mod:`zkop.zk.certs`, which needs the ``cryptography`` package).

A *key store* is one PEM file with a private key (PKCS#8) followed by its certificate, as
ZooKeeper's PEM key store reads it (``ssl.keyStore.type=PEM``, ZooKeeper 3.5.6+); a *trust
store* is the PEM of the CA certificate(s). Private files are written with mode 0600 from
their first byte.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles", "client_context", "write_private"]


def write_private(path: Path, data: bytes | str) -> None:
    """Write a file readable by its owner only (0600 from the first byte), replacing ``path``
    atomically so a reader never sees half of it."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@dataclass(frozen=True)
class TlsFiles:
    """Where a TLS client finds its material on this machine: the CA certificate(s) it trusts,
    its certificate and its private key (PEM files; ``key`` None: the key is in ``cert``'s file,
    which is then replaced in one step when renewed)."""

    ca: Path
    cert: Path
    key: Path | None = None
    check_hostname: bool = True  # False where servers are reached by an address their certificate does not name

    def kazoo_options(self) -> dict[str, object]:
        """Keyword arguments for ``KazooClient``."""
        return {
            "use_ssl": True,
            "ca": str(self.ca),
            "certfile": str(self.cert),
            # kazoo loads a client certificate only when it is given a key file too.
            "keyfile": str(self.key if self.key is not None else self.cert),
            "verify_certs": True,
            "check_hostname": self.check_hostname,
        }


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """An SSL context that presents ``files``' certificate and trusts only its CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(files.ca))
    ctx.load_cert_chain(str(files.cert), str(files.key) if files.key is not None else None)
    ctx.check_hostname = files.check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
