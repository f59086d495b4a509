"""Take a backup of a running cluster, through the platform contract (nothing is stopped).

From a serving member (a follower when there is one): its newest complete snapshot, then the
transaction logs from the one holding the transaction after the snapshot's zxid to the newest.
The copies are checked with :mod:`zkop.zk.txnlog`: the snapshot must end with ZooKeeper's end
marker (one being written is skipped for the one before), and the logs must follow the
snapshot without a missing transaction (:func:`~.manifest.coverage`). A log being written is
cut after its last complete record (what ZooKeeper itself would read back). ZooKeeper replays
the logs over the fuzzy snapshot on restore, as it does on every start.

Then the ACLs of every znode and the quotas are read through a client as the super user
(``acls.json``, ``quotas.json``: they are in the snapshot too; these are for people and for
checking a restore), and everything goes to the target with its sha256 in the manifest, the
manifest last.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kazoo.exceptions import NoAuthError, NoNodeError

from zkop.backup.manifest import MANIFEST_SUM, BackupError, FileEntry, Manifest, coverage, digest
from zkop.backup.target import MANIFEST, BackupTarget, sha256_file
from zkop.client.bridge import ZkClient
from zkop.platform.base import ClusterRef, MemberObservation, ZookeeperPlatform
from zkop.zk import auth, txnlog
from zkop.zk import quota as Q

WALK_CHUNK = 500  # znodes whose ACL and children are read at once


def backup_name(cluster: ClusterRef, at: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if at is None else at))
    return f"{cluster.namespace}-{cluster.name}-{stamp}"


def _source(members: list[MemberObservation]) -> MemberObservation:
    serving = [m for m in members if m.ready]
    if not serving:
        raise BackupError("no member serves: a backup is taken from a serving member")
    return sorted(serving, key=lambda m: (m.state.mode == "leader", m.id))[0]


async def _copy_snapshot(
    platform: ZookeeperPlatform, cluster: ClusterRef, member: int, names: list[str], staging: Path
) -> tuple[str, int]:
    snapshots = sorted(
        ((txnlog.zxid_from_name(n, "snapshot"), n) for n in names if n.startswith("snapshot.")),
        key=lambda pair: pair[0] or -1,
        reverse=True,
    )
    for zxid, name in snapshots:
        if zxid is None:
            continue
        dest = staging / name
        try:
            await platform.copy_member_file(cluster, member, name, dest)
        except FileNotFoundError:
            continue  # purged meanwhile
        info = txnlog.snapshot_info(dest)
        if info is not None and info.valid is not False:
            return name, zxid
        dest.unlink()  # one being written: the one before it
    raise BackupError(f"member {member} has no complete snapshot yet")


def _cut(path: Path, scan: txnlog.LogScan) -> txnlog.LogScan:
    """Keep a copied log's complete records only: one copied while it was written ends inside a
    record, and ZooKeeper pads its logs with zeros ahead of the records (64 MiB at a time), which
    a backup need not keep (ZooKeeper reads a log that ends after its last record)."""
    cut = scan.end in (txnlog.LogEnd.TRUNCATED, txnlog.LogEnd.PARTIAL) or (
        scan.end is txnlog.LogEnd.END and path.stat().st_size > scan.offset
    )
    if cut and scan.records:
        with path.open("r+b") as fh:
            fh.truncate(scan.offset)
        return txnlog.scan_log(path)
    return scan


async def _copy_logs(
    platform: ZookeeperPlatform, cluster: ClusterRef, member: int, names: list[str], snapshot_zxid: int, staging: Path
) -> list[tuple[str, txnlog.LogScan]]:
    logs = sorted(
        ((z, n) for n in names if n.startswith("log.") and (z := txnlog.zxid_from_name(n, "log")) is not None),
        key=lambda pair: pair[0],
    )
    # The newest log that starts at or before the transaction after the snapshot, and all after it.
    start = max((i for i, (z, _) in enumerate(logs) if z <= snapshot_zxid + 1), default=0)
    out: list[tuple[str, txnlog.LogScan]] = []
    for _, name in logs[start:]:
        dest = staging / name
        await platform.copy_member_file(cluster, member, name, dest)
        out.append((name, _cut(dest, txnlog.scan_log(dest))))
    return out


async def read_acls_and_quotas(client: ZkClient) -> tuple[dict[str, list[list[Any]]], dict[str, str]]:
    """Every znode's ACL (``[perms, scheme, id]``; ZooKeeper's own ``/zookeeper`` left out) and
    every quota (``path -> limits``), read as the super user."""
    acls: dict[str, list[list[Any]]] = {}

    async def look(path: str) -> list[str]:
        try:
            found, _ = await client.get_acls(path)
            acls[path] = [[a.perms, a.id.scheme, a.id.id] for a in found]
            children = await client.get_children(path)
        except (NoNodeError, NoAuthError):
            return []
        return [f"{path.rstrip('/')}/{c}" for c in children if f"{path.rstrip('/')}/{c}" != "/zookeeper"]

    # Breadth first, a level's reads in flight together (in bounded chunks): one round trip per
    # level and chunk instead of one per znode.
    level = ["/"]
    while level:
        below: list[str] = []
        for i in range(0, len(level), WALK_CHUNK):
            for children in await asyncio.gather(*(look(p) for p in level[i : i + WALK_CHUNK])):
                below += children
        level = below
    acls = dict(sorted(acls.items()))
    quotas: dict[str, str] = {}

    async def quota_walk(path: str) -> None:
        try:
            children = await client.get_children(path)
        except NoNodeError:
            return
        if Q.LIMITS in children:
            data, _ = await client.get(f"{path}/{Q.LIMITS}")
            quotas[path[len(Q.QUOTA_ROOT) :] or "/"] = data.decode("utf-8", "replace")
        for child in sorted(children):
            if child not in (Q.LIMITS, Q.STATS):
                await quota_walk(f"{path}/{child}")

    await quota_walk(Q.QUOTA_ROOT)
    return acls, quotas


async def create_backup(
    platform: ZookeeperPlatform,
    cluster: ClusterRef,
    target: BackupTarget,
    *,
    name: str | None = None,
    spec: Mapping[str, Any] | None = None,
) -> Manifest:
    """Back ``cluster`` up into ``target``; the manifest says what was taken."""
    name = name or backup_name(cluster)
    if name in await asyncio.to_thread(target.backups):
        raise BackupError(f"a backup named {name!r} is already in {target.location}")
    obs = await platform.observe(cluster)
    if obs is None:
        raise BackupError(f"zookeepercluster {cluster.key} has no members")
    member = _source(list(obs.members))
    with tempfile.TemporaryDirectory(prefix="zkop-backup-") as tmp:
        staging = Path(tmp)
        os.chmod(staging, 0o700)
        names = list(await platform.member_files(cluster, member.id))
        snapshot, snapshot_zxid = await _copy_snapshot(platform, cluster, member.id, names, staging)
        logs = await _copy_logs(platform, cluster, member.id, names, snapshot_zxid, staging)
        last, gaps = coverage(snapshot_zxid, [scan for _, scan in logs])
        if gaps:
            raise BackupError(f"the copy of member {member.id}'s data has a gap: {gaps[0]}")
        password = await platform.super_password(cluster)
        client = ZkClient(
            member.endpoint,
            auth_data=[auth.super_auth(password)],
            session_timeout=10,
            tls=obs.client_tls if member.client_tls else None,
        )
        await client.start(timeout=15)
        try:
            acls, quotas = await read_acls_and_quotas(client)
        finally:
            await client.stop()
        files = [(f"data/{snapshot}", staging / snapshot)] + [(f"data/{n}", staging / n) for n, _ in logs]
        (staging / "acls.json").write_text(json.dumps(acls, indent=1, sort_keys=True))
        (staging / "quotas.json").write_text(json.dumps(quotas, indent=1, sort_keys=True))
        files += [("acls.json", staging / "acls.json"), ("quotas.json", staging / "quotas.json")]
        entries = []
        for stored, path in files:
            entries.append(FileEntry(stored, path.stat().st_size, await asyncio.to_thread(sha256_file, path)))
            await asyncio.to_thread(target.put_file, name, stored, path)
        manifest = Manifest(
            name=name,
            namespace=cluster.namespace,
            cluster=cluster.name,
            created_at=time.time(),
            member_id=member.id,
            snapshot_zxid=snapshot_zxid,
            last_zxid=last,
            files=tuple(entries),
            acls=len(acls),
            quotas=len(quotas),
            zookeeper_version=member.state.version,
            spec=dict(spec or {}),
        )
        raw = manifest.to_json()
        await asyncio.to_thread(target.put_bytes, name, MANIFEST_SUM, (digest(raw) + "\n").encode())
        await asyncio.to_thread(target.put_bytes, name, MANIFEST, raw)  # last: the backup is complete
    return manifest


def list_manifests(target: BackupTarget) -> list[Manifest]:
    """The manifests of the complete backups in ``target`` (unreadable ones left out). Blocking."""
    out = []
    for name in target.backups():
        try:
            out.append(Manifest.from_json(target.get_bytes(name, MANIFEST), where=f"{name}/{MANIFEST}"))
        except (BackupError, OSError):
            continue
    return sorted(out, key=lambda m: m.created_at)


__all__ = ["backup_name", "create_backup", "list_manifests", "read_acls_and_quotas"]
