"""Check a backup, and restore it into a new cluster on the local platform.

:func:`verify` fetches every file and checks it against the manifest (the manifest against its
own sha256 first), then reads the copies as ZooKeeper would (:mod:`zkop.zk.txnlog`): the
snapshot complete, the logs covering up to the manifest's last zxid. Any difference refuses
the backup before anything is made.

:func:`seed_local` makes the new cluster's first member (id 1, fresh ports) with the backup's
snapshot and logs as its data and a configuration that lists only itself, starts it and waits
until it serves: ZooKeeper loads the snapshot, replays the logs and, leading, versions its new
configuration in a new epoch (as ``zkop recover`` does with a survivor). The operator then
adopts it and adds members with new ids up to ``spec.replicas``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from zkop.backup.manifest import MANIFEST_SUM, BackupError, Manifest, coverage, digest
from zkop.backup.target import MANIFEST, BackupTarget, sha256_file
from zkop.platform.base import ClusterRef, MemberTemplate
from zkop.platform.local.zookeeper import LocalZookeeperPlatform
from zkop.zk import txnlog
from zkop.zk.txnlog import format_zxid


def verify(target: BackupTarget, name: str, staging: Path) -> Manifest:
    """Fetch backup ``name`` into ``staging`` and check every byte of it. Blocking."""
    where = f"backup {name!r} in {target.location}"
    if name not in target.backups():
        raise BackupError(f"there is no {where}", hint="`zkop backup list` shows the backups")
    raw = target.get_bytes(name, MANIFEST)
    try:
        expected = target.get_bytes(name, MANIFEST_SUM).decode().strip()
    except (OSError, UnicodeDecodeError):
        raise BackupError(f"{where} has no readable {MANIFEST_SUM}; nothing was restored") from None
    if digest(raw) != expected:
        raise BackupError(
            f"{where} is damaged: {MANIFEST} does not match its sha256 ({MANIFEST_SUM}); nothing was restored"
        )
    manifest = Manifest.from_json(raw, where=f"{name}/{MANIFEST}")
    for entry in manifest.files:
        dest = staging.joinpath(*entry.name.split("/"))
        try:
            target.get_file(name, entry.name, dest)
        except OSError as exc:
            raise BackupError(f"{where} lacks {entry.name} ({exc.strerror or exc}); nothing was restored") from None
        size, got = dest.stat().st_size, sha256_file(dest)
        if size != entry.size or got != entry.sha256:
            raise BackupError(
                f"{where} is damaged: {entry.name} has sha256 {got[:16]}... ({size} bytes), the manifest says "
                f"{entry.sha256[:16]}... ({entry.size} bytes); nothing was restored"
            )
    data = staging / "data"
    snapshot = next((p for p in data.glob("snapshot.*")), None)
    info = txnlog.snapshot_info(snapshot) if snapshot is not None else None
    if info is None or info.valid is False or info.zxid != manifest.snapshot_zxid:
        raise BackupError(f"{where} has no complete snapshot at {format_zxid(manifest.snapshot_zxid)}")
    last, gaps = coverage(manifest.snapshot_zxid, [txnlog.scan_log(p) for p in sorted(data.glob("log.*"))])
    if gaps or last != manifest.last_zxid:
        problem = gaps[0] if gaps else f"the logs end at {format_zxid(last)}"
        raise BackupError(f"{where} does not cover up to {format_zxid(manifest.last_zxid)}: {problem}")
    return manifest


async def seed_local(
    platform: LocalZookeeperPlatform,
    cluster: ClusterRef,
    template: MemberTemplate,
    manifest: Manifest,
    staging: Path,
    *,
    timeout: float = 120.0,
) -> int:
    """Make and start member 1 of ``cluster`` with the verified data in ``staging``; returns the
    last zxid its data holds (the backup's). Refused when the platform has the cluster already."""
    ens = platform.ensemble(cluster)
    if ens.exists():
        raise BackupError(
            f"zookeepercluster {cluster.key} already has members in {ens.dir}; restore into a new cluster",
            hint="delete the cluster (and its data) first, or pick another --into name",
        )
    address = await platform.reserve_address(cluster, 1, template, epoch=None)

    def place() -> int:
        ens.write_member_files(1, [address], template.settings)
        vdir = ens.data_dir(1) / txnlog.VERSION_DIR
        vdir.mkdir(parents=True, exist_ok=True)
        for f in sorted((staging / "data").iterdir()):
            shutil.copyfile(f, vdir / f.name)
            os.chmod(vdir / f.name, 0o600)
        state = txnlog.read_data_dir(ens.data_dir(1))
        return state.last_zxid or 0

    restored = await asyncio.to_thread(place)
    if restored != manifest.last_zxid:
        raise BackupError(
            f"the restored data ends at {format_zxid(restored)}, not {format_zxid(manifest.last_zxid)}",
        )
    await platform.ensure_member(cluster, 1, template, [address], epoch=None)
    async with asyncio.timeout(timeout):
        while True:
            obs = await platform.observe(cluster)
            member = obs.member(1) if obs is not None else None
            if member is not None and member.ready:
                return restored
            if member is not None and not member.running:
                unit = ens.unit(1)
                tail = "; ".join(unit.log_tail(5))
                raise BackupError(f"the restored member exited: {tail}", hint=f"see {unit.log_file}")
            await asyncio.sleep(0.25)


__all__ = ["seed_local", "verify"]
