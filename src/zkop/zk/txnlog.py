"""The last zxid a ZooKeeper server has on disk, read without the server.

A member that has lost quorum does not answer ``srvr``/``mntr``, yet choosing which
member to rebuild an ensemble from needs its last zxid. This module reads it from the
data directory (``<dataDir>/version-2/``), as ZooKeeper itself would on restart:

- ``snapshot.<hex zxid>`` (optionally ``.gz``/``.snappy``): a fuzzy snapshot taken from
  that zxid on. One that does not end with ZooKeeper's end marker (it was cut short) is
  ignored, as ZooKeeper ignores it.
- ``log.<hex first zxid>``: a transaction log. A 16-byte header (magic ``ZKLG``, int
  version, long dbid), then records: long Adler-32 checksum, int length, ``length``
  bytes of the transaction (it starts with the TxnHeader: long clientId, int cxid,
  long zxid, long time, int type), and the end-of-record byte ``0x42`` (``'B'``).
  Logs are preallocated with zeros, so a record length of 0 ends the log; a record cut
  short, without its end byte, or with a wrong checksum ends the scan too.
- ``currentEpoch`` / ``acceptedEpoch``: the epochs the member has seen (text).

All numbers are big-endian (Java's DataOutput). Nothing here raises for bad data: a
file that cannot be read, or stops making sense, is reported with what was readable.
The zxid's high 32 bits are the epoch of the leader that proposed it and the low 32 a
counter, so comparing whole zxids orders by epoch first, as ZooKeeper's election does.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "LOG_MAGIC",
    "DataDirState",
    "LogEnd",
    "LogScan",
    "SnapshotInfo",
    "format_zxid",
    "read_data_dir",
    "scan_log",
    "snapshot_info",
    "zxid_counter",
    "zxid_epoch",
    "zxid_from_name",
]

LOG_MAGIC = 0x5A4B4C47  # "ZKLG"
END_OF_RECORD = 0x42  # 'B'
_FILE_HEADER = struct.Struct(">iiq")  # magic, version, dbid
_RECORD_HEADER = struct.Struct(">qi")  # checksum, length
_TXN_HEADER = struct.Struct(">qiqqi")  # clientId, cxid, zxid, time, type
# Larger than any transaction ZooKeeper accepts (jute.maxbuffer is ~1 MiB by default);
# a length beyond this is garbage, not a record.
MAX_RECORD = 512 * 1024 * 1024
VERSION_DIR = "version-2"


def zxid_epoch(zxid: int) -> int:
    """The epoch (high 32 bits) of a zxid."""
    return zxid >> 32


def zxid_counter(zxid: int) -> int:
    """The counter within its epoch (low 32 bits) of a zxid."""
    return zxid & 0xFFFFFFFF


def format_zxid(zxid: int | None) -> str:
    return "-" if zxid is None else f"0x{zxid:x}"


def zxid_from_name(name: str, prefix: str) -> int | None:
    """``snapshot.1a`` -> 0x1a, ``snapshot.1a.gz`` -> 0x1a; None when the name is not ``prefix.<hex>``."""
    parts = name.split(".")
    if len(parts) < 2 or parts[0] != prefix:
        return None
    try:
        value = int(parts[1], 16)
    except ValueError:
        return None
    return value if 0 <= value < 1 << 63 else None


class LogEnd(StrEnum):
    """Why the scan of a transaction log stopped."""

    END = "end"  # the zero padding after the last record, or the end of the file between records
    TRUNCATED = "truncated"  # a record cut short (the server died while writing it)
    PARTIAL = "partial"  # a record without its end-of-record byte
    CHECKSUM = "checksum"  # a record whose checksum does not match its bytes
    CORRUPT = "corrupt"  # a length or transaction header that cannot be right
    NO_HEADER = "no-header"  # not a transaction log (bad or short file header)
    UNREADABLE = "unreadable"  # the file could not be opened or read


@dataclass(frozen=True)
class LogScan:
    """What one transaction log holds, as far as it could be read."""

    path: Path
    first_zxid: int | None  # from the file name
    records: int
    last_zxid: int | None  # of the last readable record
    end: LogEnd
    offset: int  # where the scan stopped
    detail: str = ""

    @property
    def clean(self) -> bool:
        return self.end is LogEnd.END

    def describe(self) -> str:
        where = f"{self.path.name} at byte {self.offset}"
        if self.end is LogEnd.END:
            return f"{self.path.name}: {self.records} record(s)"
        return f"{where}: {self.end} ({self.detail})" if self.detail else f"{where}: {self.end}"


@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    zxid: int
    valid: bool | None  # None: compressed, not checked beyond its magic
    detail: str = ""


@dataclass(frozen=True)
class DataDirState:
    """The persistent state of one member, read from its data directory."""

    data_dir: Path
    present: bool  # ``version-2`` exists
    last_zxid: int | None  # the highest zxid found in valid snapshots and readable log records
    current_epoch: int | None
    accepted_epoch: int | None
    snapshots: tuple[SnapshotInfo, ...] = ()
    logs: tuple[LogScan, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def epoch(self) -> int | None:
        """The epoch of the last zxid."""
        return None if self.last_zxid is None else zxid_epoch(self.last_zxid)

    @property
    def last_zxid_hex(self) -> str:
        return format_zxid(self.last_zxid)


def scan_log(path: Path) -> LogScan:
    """Read a transaction log record by record; the last zxid is that of the last good record."""
    first = zxid_from_name(path.name, "log")
    records = 0
    last: int | None = None
    offset = 0

    def done(end: LogEnd, detail: str = "") -> LogScan:
        return LogScan(path, first, records, last, end, offset, detail)

    try:
        with path.open("rb") as fh:
            header = fh.read(_FILE_HEADER.size)
            if len(header) < _FILE_HEADER.size:
                return done(LogEnd.NO_HEADER, f"{len(header)} of {_FILE_HEADER.size} header bytes")
            magic, _version, _dbid = _FILE_HEADER.unpack(header)
            if magic != LOG_MAGIC:
                return done(LogEnd.NO_HEADER, f"magic 0x{magic & 0xFFFFFFFF:08x}, not ZKLG")
            offset = _FILE_HEADER.size
            while True:
                head = fh.read(_RECORD_HEADER.size)
                if not head:
                    return done(LogEnd.END)
                if len(head) < _RECORD_HEADER.size:
                    return done(LogEnd.TRUNCATED, "record header cut short")
                checksum, length = _RECORD_HEADER.unpack(head)
                if length == 0:
                    return done(LogEnd.END)  # preallocated zeros: no more records
                if length < 0 or length > MAX_RECORD:
                    return done(LogEnd.CORRUPT, f"record length {length}")
                body = fh.read(length)
                if len(body) < length:
                    return done(LogEnd.TRUNCATED, f"{len(body)} of {length} record bytes")
                eor = fh.read(1)
                if not eor:
                    return done(LogEnd.TRUNCATED, "no end-of-record byte")
                if eor[0] != END_OF_RECORD:
                    return done(LogEnd.PARTIAL, f"end-of-record byte 0x{eor[0]:02x}")
                if zlib.adler32(body) != checksum:  # an unsigned 32-bit value, written as a long
                    return done(LogEnd.CHECKSUM, f"checksum {checksum} does not match")
                if len(body) < _TXN_HEADER.size:
                    return done(LogEnd.CORRUPT, f"a {len(body)}-byte transaction has no header")
                _client, _cxid, zxid, _time, _type = _TXN_HEADER.unpack_from(body)
                if zxid < 0 or (last is not None and zxid <= last):
                    return done(LogEnd.CORRUPT, f"zxid {zxid:#x} after {format_zxid(last)}")
                last = zxid
                records += 1
                offset += _RECORD_HEADER.size + length + 1
    except OSError as exc:
        return done(LogEnd.UNREADABLE, exc.strerror or str(exc))


def snapshot_info(path: Path) -> SnapshotInfo | None:
    """A snapshot's zxid (from its name) and whether it is complete, as ZooKeeper checks it:
    an uncompressed snapshot ends with the int 1 and ``/``; a gzip one starts with its magic."""
    zxid = zxid_from_name(path.name, "snapshot")
    if zxid is None:
        return None
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            if path.name.endswith(".snappy"):
                return SnapshotInfo(path, zxid, None, "snappy: not checked")
            if path.name.endswith(".gz"):
                ok = fh.read(2) == b"\x1f\x8b"
                return SnapshotInfo(path, zxid, None if ok else False, "" if ok else "not gzip")
            if size < 10:
                return SnapshotInfo(path, zxid, False, f"{size} bytes")
            fh.seek(size - 5)
            tail = fh.read(5)
    except OSError as exc:
        return SnapshotInfo(path, zxid, False, exc.strerror or str(exc))
    if len(tail) == 5 and struct.unpack(">ib", tail) == (1, ord("/")):
        return SnapshotInfo(path, zxid, True)
    return SnapshotInfo(path, zxid, False, "no end marker (cut short)")


def _read_epoch(path: Path, problems: list[str]) -> int | None:
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name}: {exc}")
        return None


def read_data_dir(data_dir: Path) -> DataDirState:
    """The last zxid and epochs of the member whose ``dataDir`` is ``data_dir`` (the directory
    that holds ``myid`` and ``version-2/``; ``version-2`` itself is accepted too)."""
    vdir = data_dir if data_dir.name == VERSION_DIR else data_dir / VERSION_DIR
    if not vdir.is_dir():
        return DataDirState(data_dir, False, None, None, None)
    problems: list[str] = []
    snapshots: list[SnapshotInfo] = []
    logs: list[LogScan] = []
    try:
        entries = sorted(vdir.iterdir())
    except OSError as exc:
        return DataDirState(data_dir, True, None, None, None, problems=(f"{vdir}: {exc.strerror or exc}",))
    for entry in entries:
        if entry.name.startswith("snapshot."):
            info = snapshot_info(entry)
            if info is None:
                continue
            snapshots.append(info)
            if info.valid is False:
                problems.append(f"{entry.name}: ignored, {info.detail}")
        elif entry.name.startswith("log.") and zxid_from_name(entry.name, "log") is not None:
            scan = scan_log(entry)
            logs.append(scan)
            if not scan.clean:
                problems.append(scan.describe())
    logs.sort(key=lambda s: s.first_zxid or 0)
    snapshots.sort(key=lambda s: s.zxid)
    found = [s.zxid for s in snapshots if s.valid is not False]
    found += [s.last_zxid for s in logs if s.last_zxid is not None]
    return DataDirState(
        data_dir=data_dir,
        present=True,
        last_zxid=max(found, default=None),
        current_epoch=_read_epoch(vdir / "currentEpoch", problems),
        accepted_epoch=_read_epoch(vdir / "acceptedEpoch", problems),
        snapshots=tuple(snapshots),
        logs=tuple(logs),
        problems=tuple(problems),
    )
