"""Backups without processes: the manifest, coverage of the logs, the directory target."""

from __future__ import annotations

from pathlib import Path

import pytest

from zkop.backup.manifest import BackupError, FileEntry, Manifest, coverage, digest
from zkop.backup.target import MANIFEST, DirectoryTarget
from zkop.zk.txnlog import LogEnd, LogScan


def scan(first: int, last: int | None, records: int = 1) -> LogScan:
    return LogScan(Path(f"log.{first:x}"), first, records, last, LogEnd.END, 0)


def test_manifest_round_trip() -> None:
    m = Manifest(
        name="b",
        namespace="ns",
        cluster="zk",
        created_at=1.5e9,
        member_id=2,
        snapshot_zxid=0x100000005,
        last_zxid=0x200000003,
        files=(FileEntry("data/snapshot.100000005", 10, "ab"),),
        acls=3,
        spec={"replicas": 3},
    )
    assert Manifest.from_json(m.to_json()) == m
    assert b'"lastZxid": "0x200000003"' in m.to_json()
    with pytest.raises(BackupError, match="not a zkop backup manifest"):
        Manifest.from_json(b'{"format": 1}')
    assert digest(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_coverage() -> None:
    # The snapshot at 0x105, a log holding 0x101..0x10a, the next from 0x10b: all covered.
    assert coverage(0x105, [scan(0x101, 0x10A), scan(0x10B, 0x120)]) == (0x120, [])
    # Logs entirely before the snapshot do not matter.
    assert coverage(0x130, [scan(0x101, 0x10A), scan(0x10B, 0x130)]) == (0x130, [])
    # A new epoch starts at its first transaction.
    assert coverage(0x105, [scan(0x101, 0x108), scan(0x200000001, 0x200000004)]) == (0x200000004, [])
    # A missing log is a gap.
    last, gaps = coverage(0x105, [scan(0x101, 0x108), scan(0x110, 0x120)])
    assert last == 0x108 and "missing" in gaps[0]
    last, gaps = coverage(0x105, [scan(0x107, 0x110)])
    assert gaps and last == 0x105
    assert coverage(0x105, [scan(0x106, None, records=0)]) == (0x105, [])


def test_directory_target_lists_complete_backups_only(tmp_path: Path) -> None:
    target = DirectoryTarget(tmp_path / "backups")
    assert target.backups() == []
    source = tmp_path / "f"
    source.write_bytes(b"data")
    target.put_file("one", "data/log.1", source)
    assert target.backups() == []  # no manifest yet: not a backup
    target.put_bytes("one", MANIFEST, b"{}")
    assert target.backups() == ["one"]
    assert target.get_bytes("one", "data/log.1") == b"data"
    assert (tmp_path / "backups" / "one" / "data" / "log.1").stat().st_mode & 0o777 == 0o600
    for bad in ("../x", "a/../../b", ""):
        with pytest.raises(ValueError):
            target.put_bytes("one", bad, b"")
    with pytest.raises(ValueError):
        target.put_bytes("../one", "x", b"")
    target.delete("one")
    assert target.backups() == [] and not (tmp_path / "backups" / "one").exists()
