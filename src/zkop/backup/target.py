"""Where backups are kept. A :class:`BackupTarget` stores named files per backup and lists the
backups whose manifest is there; the manifest is written last, so a backup that was cut short
is never listed (an object store's put-the-index-last rule, so an S3-compatible target fits
the same interface). :class:`DirectoryTarget` is a directory on this machine."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Protocol

MANIFEST = "backup.json"


class BackupTarget(Protocol):
    """Blocking calls (callers run them in a thread)."""

    @property
    def location(self) -> str:
        """Where, for people: ``/var/backups/zk``, ``s3://bucket/prefix``."""
        ...

    def backups(self) -> list[str]:
        """Names of the complete backups (their manifest is there), sorted."""
        ...

    def put_file(self, backup: str, name: str, source: Path) -> None:
        """Store ``source`` as ``name`` of ``backup``."""
        ...

    def put_bytes(self, backup: str, name: str, data: bytes) -> None: ...

    def get_bytes(self, backup: str, name: str) -> bytes: ...

    def get_file(self, backup: str, name: str, dest: Path) -> None:
        """Copy ``name`` of ``backup`` to ``dest``."""
        ...

    def delete(self, backup: str) -> None:
        """Remove the backup (its manifest first, so it is never listed half gone)."""
        ...


class DirectoryTarget:
    """Backups as directories ``<root>/<backup>/`` (files 0600, directories 0700)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def _dir(self, backup: str) -> Path:
        if not backup or "/" in backup or backup.startswith("."):
            raise ValueError(f"not a backup name: {backup!r}")
        return self.root / backup

    def _path(self, backup: str, name: str) -> Path:
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a file name of a backup: {name!r}")
        return self._dir(backup).joinpath(*parts)

    def backups(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if (d / MANIFEST).is_file())

    def _prepare(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path.with_name(f".{path.name}.partial")

    def put_file(self, backup: str, name: str, source: Path) -> None:
        path = self._path(backup, name)
        tmp = self._prepare(path)
        with source.open("rb") as src, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(path)

    def put_bytes(self, backup: str, name: str, data: bytes) -> None:
        path = self._path(backup, name)
        tmp = self._prepare(path)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as dst:
            dst.write(data)
        tmp.replace(path)

    def get_bytes(self, backup: str, name: str) -> bytes:
        return self._path(backup, name).read_bytes()

    def get_file(self, backup: str, name: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(backup, name), dest)

    def delete(self, backup: str) -> None:
        where = self._dir(backup)
        (where / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(where, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["MANIFEST", "BackupTarget", "DirectoryTarget", "sha256_file"]
