"""The on-disk zxid reader against data dirs a real ZooKeeper wrote."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from zkop.testing import Ensemble, running_ensemble
from zkop.testing.ensemble import run_sync
from zkop.zk import fourlw
from zkop.zk.txnlog import LogEnd, read_data_dir, scan_log, zxid_epoch

pytestmark = pytest.mark.integration


@pytest.fixture
def single(tmp_path: Path) -> Iterator[Ensemble]:
    with running_ensemble(1, state_dir=tmp_path / "state", name="txnlog") as zk:
        yield zk


def write(hosts: str, prefix: str, count: int) -> None:
    client = KazooClient(hosts, timeout=10)
    client.start(timeout=20)
    try:
        client.ensure_path(prefix)
        for i in range(count):
            client.create(f"{prefix}/n{i:05d}", b"x" * 100)
    finally:
        client.stop()
        client.close()


def served_zxid(zk: Ensemble) -> int:
    address = zk.members[0].address
    state = run_sync(fourlw.server_state(address.host, address.client_port))
    assert state.serving and state.zxid is not None
    return state.zxid


def test_the_last_zxid_on_disk_is_the_one_the_server_reported(single: Ensemble) -> None:
    member = single.members[0]
    write(single.connection_string, "/a", 150)
    before = served_zxid(single)
    member.stop()
    state = read_data_dir(single.local.data_dir(member.id))
    assert state.last_zxid == before, (hex(state.last_zxid or 0), hex(before), state.problems)
    assert not state.problems and state.logs and all(s.clean for s in state.logs)
    assert state.current_epoch == zxid_epoch(before)
    # A new epoch after a restart: zxids of the new leader's epoch sort after all the old ones.
    member.start()
    member.wait_serving()
    write(single.connection_string, "/b", 20)
    after = served_zxid(single)
    assert zxid_epoch(after) > zxid_epoch(before)
    member.kill()  # kill -9: what was acknowledged is on disk
    state = read_data_dir(single.local.data_dir(member.id))
    assert state.last_zxid == after and state.epoch == zxid_epoch(after)
    assert state.current_epoch == zxid_epoch(after)


def test_real_logs_cut_anywhere_or_corrupted_keep_what_is_readable(single: Ensemble, tmp_path: Path) -> None:
    member = single.members[0]
    write(single.connection_string, "/c", 60)
    last = served_zxid(single)
    member.stop()
    vdir = single.local.data_dir(member.id) / "version-2"
    log = max(vdir.glob("log.*"), key=lambda p: p.stat().st_mtime)
    full = scan_log(log)
    assert full.clean and full.last_zxid == last and full.records >= 60
    raw = log.read_bytes()[: full.offset]
    copy = tmp_path / log.name
    previous = (0, None)
    for cut in range(0, len(raw) + 1, 7):
        copy.write_bytes(raw[:cut])
        scan = scan_log(copy)  # never raises
        assert scan.records >= previous[0]
        assert scan.last_zxid is None or scan.last_zxid <= last
        assert scan.end in (LogEnd.END, LogEnd.TRUNCATED, LogEnd.NO_HEADER)
        previous = (scan.records, scan.last_zxid)
    # A flipped byte in the middle: the records before it are kept, the checksum stops the scan.
    middle = bytearray(raw)
    middle[len(raw) // 2] ^= 0xFF
    copy.write_bytes(bytes(middle))
    scan = scan_log(copy)
    assert scan.end in (LogEnd.CHECKSUM, LogEnd.CORRUPT, LogEnd.PARTIAL, LogEnd.TRUNCATED)
    assert 0 < scan.records < full.records and scan.last_zxid is not None and scan.last_zxid < last
    # The same in a whole data dir, with the snapshot cut short as well: reported, not raised.
    data = tmp_path / "data"
    shutil.copytree(single.local.data_dir(member.id), data)
    (data / "version-2" / log.name).write_bytes(bytes(middle))
    for snap in (data / "version-2").glob("snapshot.*"):
        snap.write_bytes(snap.read_bytes()[:-3])
    state = read_data_dir(data)
    assert state.last_zxid is not None and state.last_zxid < last
    assert any("checksum" in p or "corrupt" in p or "partial" in p for p in state.problems)
    assert any(p.startswith("snapshot.") for p in state.problems)
