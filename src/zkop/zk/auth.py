"""The per-ensemble super user: reconfig is done authenticated, never with skipACL."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

SUPER_USER = "super"


def digest(user: str, password: str) -> str:
    """ZooKeeper's digest form: ``user:base64(sha1(user:password))``."""
    sha = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(sha).decode()}"


def new_password() -> str:
    return secrets.token_urlsafe(24)


def write_secret(path: Path, value: str) -> None:
    """Write a secret readable by its owner only (0600 from the first byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def load_or_create_password(path: Path) -> str:
    if path.is_file():
        return path.read_text().strip()
    password = new_password()
    write_secret(path, password)
    return password


def super_digest_property(password: str) -> str:
    return f"-Dzookeeper.DigestAuthenticationProvider.superDigest={digest(SUPER_USER, password)}"


def super_auth(password: str) -> tuple[str, str]:
    """kazoo ``auth_data`` entry for the super user."""
    return ("digest", f"{SUPER_USER}:{password}")
