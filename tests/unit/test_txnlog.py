"""Reading the last zxid from a ZooKeeper data dir: well-formed, truncated and corrupt files.

(The same reader against data dirs a real ZooKeeper wrote: tests/integration/test_txnlog.py.)
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkop.zk.txnlog import (
    LOG_MAGIC,
    LogEnd,
    format_zxid,
    read_data_dir,
    scan_log,
    snapshot_info,
    zxid_counter,
    zxid_epoch,
    zxid_from_name,
)


def txn(zxid: int, payload: bytes = b"\x00" * 20) -> bytes:
    """A transaction: TxnHeader (clientId, cxid, zxid, time, type) then the operation's bytes."""
    return struct.pack(">qiqqi", 0x1234, 7, zxid, 1_700_000_000_000, 1) + payload


def record(body: bytes, *, checksum: int | None = None, eor: bytes = b"B") -> bytes:
    crc = zlib.adler32(body) if checksum is None else checksum
    return struct.pack(">qi", crc, len(body)) + body + eor


def log_bytes(zxids: list[int], *, padding: int = 1024, magic: int = LOG_MAGIC) -> bytes:
    data = struct.pack(">iiq", magic, 2, 0) + b"".join(record(txn(z)) for z in zxids)
    return data + b"\x00" * padding


def write_log(vdir: Path, zxids: list[int], **kw: int) -> Path:
    vdir.mkdir(parents=True, exist_ok=True)
    path = vdir / f"log.{zxids[0] if zxids else 1:x}"
    path.write_bytes(log_bytes(zxids, **kw))
    return path


def write_snapshot(vdir: Path, zxid: int, *, complete: bool = True) -> Path:
    vdir.mkdir(parents=True, exist_ok=True)
    path = vdir / f"snapshot.{zxid:x}"
    body = b"ZKSN" + b"\x00" * 40
    path.write_bytes(body + (struct.pack(">ib", 1, ord("/")) if complete else b""))
    return path


def test_zxid_parts_and_names() -> None:
    z = (5 << 32) | 0x2A
    assert zxid_epoch(z) == 5 and zxid_counter(z) == 0x2A
    assert format_zxid(z) == "0x50000002a" and format_zxid(None) == "-"
    assert zxid_from_name("snapshot.1a", "snapshot") == 0x1A
    assert zxid_from_name("snapshot.1a.gz", "snapshot") == 0x1A
    assert zxid_from_name("log.100000001", "log") == 0x100000001
    for bad in ("snapshot", "snapshot.xyz", "log.1", "snapshot.", "snapshot.-1"):
        assert zxid_from_name(bad, "snapshot") is None


def test_a_log_ends_at_the_preallocated_zeros(tmp_path: Path) -> None:
    zxids = [0x100000001, 0x100000002, 0x100000003]
    scan = scan_log(write_log(tmp_path, zxids))
    assert scan.clean and scan.records == 3 and scan.last_zxid == 0x100000003
    assert scan.first_zxid == 0x100000001


def test_a_log_without_padding_ends_at_the_end_of_the_file(tmp_path: Path) -> None:
    scan = scan_log(write_log(tmp_path, [1, 2], padding=0))
    assert scan.clean and scan.last_zxid == 2


def test_an_empty_log_has_no_zxid(tmp_path: Path) -> None:
    scan = scan_log(write_log(tmp_path, []))
    assert scan.clean and scan.records == 0 and scan.last_zxid is None


@pytest.mark.parametrize(
    ("mutate", "end"),
    [
        (lambda b: b[: len(b) - 1025], LogEnd.TRUNCATED),  # no end-of-record byte on the last record
        (lambda b: b[: len(b) - 1040], LogEnd.TRUNCATED),  # the last record's body cut short
        (lambda b: b[:-1024][: -(4 + 60)] + b"\x00\x00", LogEnd.TRUNCATED),  # header cut short
    ],
)
def test_a_record_cut_short_ends_the_scan_at_the_record_before(
    tmp_path: Path, mutate: Callable[[bytes], bytes], end: LogEnd
) -> None:
    path = write_log(tmp_path, [1, 2, 3])
    path.write_bytes(mutate(path.read_bytes()))
    scan = scan_log(path)
    assert scan.end is end
    assert scan.last_zxid == 2 and scan.records == 2


def test_a_wrong_end_of_record_byte_or_checksum_ends_the_scan(tmp_path: Path) -> None:
    head = struct.pack(">iiq", LOG_MAGIC, 2, 0) + record(txn(1))
    path = tmp_path / "log.1"
    path.write_bytes(head + record(txn(2), eor=b"X") + b"\x00" * 64)
    scan = scan_log(path)
    assert scan.end is LogEnd.PARTIAL and scan.last_zxid == 1
    path.write_bytes(head + record(txn(2), checksum=12345) + b"\x00" * 64)
    scan = scan_log(path)
    assert scan.end is LogEnd.CHECKSUM and scan.last_zxid == 1
    # A flipped bit in the body is caught by the checksum.
    good = bytearray(head + record(txn(2)))
    good[-10] ^= 0x01
    path.write_bytes(bytes(good))
    assert scan_log(path).end is LogEnd.CHECKSUM


def test_garbage_lengths_and_headers_are_reported_not_raised(tmp_path: Path) -> None:
    head = struct.pack(">iiq", LOG_MAGIC, 2, 0) + record(txn(9))
    path = tmp_path / "log.9"
    path.write_bytes(head + struct.pack(">qi", 1, -5) + b"\xff" * 16)
    scan = scan_log(path)
    assert scan.end is LogEnd.CORRUPT and scan.last_zxid == 9
    path.write_bytes(head + struct.pack(">qi", 1, 2**31 - 1))
    assert scan_log(path).end in (LogEnd.CORRUPT, LogEnd.TRUNCATED)
    # A record too short for a TxnHeader, with a valid checksum.
    path.write_bytes(head + record(b"abc"))
    scan = scan_log(path)
    assert scan.end is LogEnd.CORRUPT and scan.last_zxid == 9
    # zxids that go backwards are not believed.
    path.write_bytes(head + record(txn(3)))
    scan = scan_log(path)
    assert scan.end is LogEnd.CORRUPT and scan.last_zxid == 9


def test_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "log.1"
    path.write_bytes(b"ZK")
    assert scan_log(path).end is LogEnd.NO_HEADER
    path.write_bytes(log_bytes([1], magic=0x01020304))
    scan = scan_log(path)
    assert scan.end is LogEnd.NO_HEADER and scan.last_zxid is None
    missing = scan_log(tmp_path / "log.2")
    assert missing.end is LogEnd.UNREADABLE and missing.last_zxid is None


def test_snapshot_validity_as_zookeeper_checks_it(tmp_path: Path) -> None:
    ok = snapshot_info(write_snapshot(tmp_path, 0x200000005))
    assert ok is not None and ok.valid is True and ok.zxid == 0x200000005
    cut = snapshot_info(write_snapshot(tmp_path, 0x200000006, complete=False))
    assert cut is not None and cut.valid is False
    tiny = tmp_path / "snapshot.7"
    tiny.write_bytes(b"abc")
    info = snapshot_info(tiny)
    assert info is not None and info.valid is False
    gz = tmp_path / "snapshot.8.gz"
    gz.write_bytes(b"\x1f\x8b" + b"\x00" * 20)
    info = snapshot_info(gz)
    assert info is not None and info.valid is None
    assert snapshot_info(tmp_path / "snapshot.zz") is None


def test_data_dir_takes_the_highest_zxid_of_snapshots_and_logs(tmp_path: Path) -> None:
    vdir = tmp_path / "data" / "version-2"
    write_snapshot(vdir, 0)
    write_log(vdir, [0x100000001, 0x100000002])
    write_log(vdir, [0x200000001, 0x200000002, 0x200000003])
    write_snapshot(vdir, 0x200000002)
    (vdir / "currentEpoch").write_text("2")
    (vdir / "acceptedEpoch").write_text("3")
    (vdir / "zoo.cfg.dynamic.100000000").write_text("")  # not ours to read
    state = read_data_dir(tmp_path / "data")
    assert state.present and state.last_zxid == 0x200000003 and state.epoch == 2
    assert state.current_epoch == 2 and state.accepted_epoch == 3
    assert [s.first_zxid for s in state.logs] == [0x100000001, 0x200000001]
    assert not state.problems
    assert read_data_dir(vdir).last_zxid == 0x200000003  # version-2 itself is accepted


def test_a_snapshot_newer_than_every_log_counts(tmp_path: Path) -> None:
    """A follower that synced by snapshot has the leader's zxid in the snapshot's name only."""
    vdir = tmp_path / "version-2"
    write_log(vdir, [0x100000001])
    write_snapshot(vdir, 0x300000010)
    assert read_data_dir(tmp_path).last_zxid == 0x300000010


def test_a_snapshot_cut_short_is_ignored_and_reported(tmp_path: Path) -> None:
    vdir = tmp_path / "version-2"
    write_log(vdir, [0x100000001, 0x100000002])
    write_snapshot(vdir, 0x100000009, complete=False)
    state = read_data_dir(tmp_path)
    assert state.last_zxid == 0x100000002
    assert any("snapshot.100000009" in p for p in state.problems)


def test_a_corrupt_log_is_reported_with_what_was_readable(tmp_path: Path) -> None:
    vdir = tmp_path / "version-2"
    path = write_log(vdir, [0x100000001, 0x100000002, 0x100000003])
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 1030])
    (vdir / "currentEpoch").write_text("not a number")
    state = read_data_dir(tmp_path)
    assert state.last_zxid == 0x100000002
    assert any("truncated" in p for p in state.problems)
    assert any("currentEpoch" in p for p in state.problems) and state.current_epoch is None


def test_no_data_dir(tmp_path: Path) -> None:
    state = read_data_dir(tmp_path / "nothing")
    assert not state.present and state.last_zxid is None and state.epoch is None
    (tmp_path / "empty" / "version-2").mkdir(parents=True)
    state = read_data_dir(tmp_path / "empty")
    assert state.present and state.last_zxid is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=200))
def test_any_bytes_after_a_good_prefix_never_crash_nor_lose_the_prefix(junk: bytes, cut: int) -> None:
    good = struct.pack(">iiq", LOG_MAGIC, 2, 0) + record(txn(0x100000001)) + record(txn(0x100000002))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "log.100000001"
        path.write_bytes(good + junk)
        scan = scan_log(path)
        assert scan.last_zxid is not None and scan.last_zxid >= 0x100000002
        path.write_bytes(good[:cut])
        scan = scan_log(path)  # any prefix: never raises, and keeps every whole record
        whole = max(0, (cut - 16) // 65)
        assert scan.records == min(whole, 2)
        assert scan.last_zxid == (None, 0x100000001, 0x100000002)[min(whole, 2)]
