"""What a backup holds, as a manifest (``backup.json``), and the checks made of it. Pure.

A backup is ``data/snapshot.<zxid>`` (the member's newest complete snapshot), ``data/log.<zxid>``
(the transaction logs from the one that holds the transaction after the snapshot's zxid to the
newest), ``acls.json`` and ``quotas.json`` (read through a client as the super user), and the
manifest: every file's size and sha256, the zxids covered, the cluster's spec. The manifest's
own sha256 is ``backup.json.sha256``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zkop.errors import ZkopError
from zkop.zk.txnlog import LogScan, format_zxid, zxid_counter, zxid_epoch

FORMAT = 1
MANIFEST_SUM = "backup.json.sha256"


class BackupError(ZkopError):
    """A backup cannot be made, or one is not what its manifest says."""


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    name: str
    namespace: str
    cluster: str
    created_at: float
    member_id: int
    snapshot_zxid: int
    last_zxid: int
    files: tuple[FileEntry, ...]
    acls: int = 0
    quotas: int = 0
    zookeeper_version: str = ""
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def created(self) -> str:
        return dt.datetime.fromtimestamp(self.created_at, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "name": self.name,
            "cluster": {"namespace": self.namespace, "name": self.cluster},
            "createdAt": self.created,
            "createdAtSeconds": self.created_at,
            "member": self.member_id,
            "zookeeperVersion": self.zookeeper_version,
            "snapshotZxid": format_zxid(self.snapshot_zxid),
            "lastZxid": format_zxid(self.last_zxid),
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
            "acls": self.acls,
            "quotas": self.quotas,
            "spec": self.spec,
        }
        return (json.dumps(data, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, *, where: str = "backup.json") -> Manifest:
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise BackupError(f"{where}: format {data.get('format')!r} is not one zkop reads ({FORMAT})")
            return cls(
                name=str(data["name"]),
                namespace=str(data["cluster"]["namespace"]),
                cluster=str(data["cluster"]["name"]),
                created_at=float(data["createdAtSeconds"]),
                member_id=int(data["member"]),
                snapshot_zxid=int(data["snapshotZxid"], 16),
                last_zxid=int(data["lastZxid"], 16),
                files=tuple(FileEntry(str(f["name"]), int(f["size"]), str(f["sha256"])) for f in data["files"]),
                acls=int(data.get("acls", 0)),
                quotas=int(data.get("quotas", 0)),
                zookeeper_version=str(data.get("zookeeperVersion", "")),
                spec=dict(data.get("spec") or {}),
            )
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupError(f"{where} is not a zkop backup manifest: {type(exc).__name__}: {exc}") from None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def coverage(snapshot_zxid: int, logs: Sequence[LogScan]) -> tuple[int, list[str]]:
    """The last zxid the snapshot and ``logs`` cover without a gap, and the gaps found.

    Logs whose records all precede the snapshot do not matter; the others must follow each other
    without a missing transaction: within an epoch the next zxid is the last plus one, and a log
    that starts a newer epoch starts at its first transaction (counter 1)."""
    last = snapshot_zxid
    problems: list[str] = []
    relevant = sorted(
        (s for s in logs if s.records and s.last_zxid is not None and s.last_zxid > snapshot_zxid),
        key=lambda s: s.first_zxid or 0,
    )
    for scan in relevant:
        first = scan.first_zxid if scan.first_zxid is not None else 0
        follows = first <= last + 1 or (zxid_epoch(first) > zxid_epoch(last) and zxid_counter(first) <= 1)
        if not follows:
            problems.append(
                f"{scan.path.name} starts at {format_zxid(first)} but the copy ends at {format_zxid(last)}: "
                f"the transactions between are missing"
            )
            break
        last = max(last, scan.last_zxid or last)
    return last, problems


__all__ = ["MANIFEST_SUM", "BackupError", "FileEntry", "Manifest", "coverage", "digest"]
