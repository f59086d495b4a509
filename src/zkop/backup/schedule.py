"""Backups on a schedule (``spec.backup`` of a ZookeeperCluster) or asked for (the annotation
:data:`REQUEST_ANNOTATION`), taken by its controller once the cluster is healthy; and the data
of a restored cluster handed to members that wait for it (:meth:`ScheduledBackups.seed`).

Whether one is due is observed, not remembered: the newest backup of the cluster in its target
(by its manifest) is older than ``intervalSeconds``. After a backup, the cluster's backups beyond
the newest ``retain`` are removed. The target is looked at no more often than ``check_period``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from zkop.api.zookeepercluster import BackupStatus, ZookeeperCluster
from zkop.backup.create import create_backup, list_manifests
from zkop.backup.manifest import BackupError, Manifest
from zkop.backup.restore import verify
from zkop.backup.target import BackupTarget, DirectoryTarget
from zkop.platform.base import ClusterRef, ZookeeperPlatform
from zkop.zk.txnlog import format_zxid

log = logging.getLogger("zkop.backup")

EventSink = Callable[[str, str, str], Awaitable[None]]

REQUEST_ANNOTATION = "zkop.io/backupRequestedAt"  # ISO 8601: a backup is taken unless a newer one exists
RESTORED_FROM = "zkop.io/restoredFrom"  # the backup a restored cluster's data comes from
SEED_RETRY = 10.0  # seconds before reading a backup that failed its check again


def status_of(manifest: Manifest, target: BackupTarget) -> BackupStatus:
    return BackupStatus(
        name=manifest.name,
        zxid=format_zxid(manifest.last_zxid),
        created_at=manifest.created,
        location=target.location,
    )


class ScheduledBackups:
    def __init__(self, platform: ZookeeperPlatform, default_root: Path, *, check_period: float = 5.0) -> None:
        self.platform = platform
        self.default_root = default_root
        self.check_period = check_period
        self._next_look: dict[str, float] = {}  # a timer per cluster, never the world's state
        self._next_seed: dict[str, float] = {}  # after a backup that could not be read

    def target(self, obj: ZookeeperCluster) -> BackupTarget:
        spec = obj.spec.backup
        return DirectoryTarget(Path(spec.directory) if spec and spec.directory else self.default_root)

    def forget(self, key: str) -> None:
        self._next_look.pop(key, None)

    async def run(self, obj: ZookeeperCluster, event: EventSink) -> BackupStatus | None:
        """Take a backup when one is due (by the schedule, or asked for by the annotation
        :data:`REQUEST_ANNOTATION` later than the newest backup); the newest (None: none)."""
        spec = obj.spec.backup
        requested = _requested_at(obj)
        if spec is None and requested is None:
            return obj.status.last_backup
        now = time.monotonic()
        if requested is None and now < self._next_look.get(obj.key, 0.0):
            return obj.status.last_backup
        self._next_look[obj.key] = now + self.check_period
        target = self.target(obj)
        mine = [
            m
            for m in await asyncio.to_thread(list_manifests, target)
            if (m.namespace, m.cluster) == (obj.namespace, obj.name)
        ]
        newest = mine[-1] if mine else None
        asked = requested is not None and (newest is None or newest.created_at < requested)
        scheduled = spec is not None and (newest is None or time.time() - newest.created_at >= spec.interval_seconds)
        if asked or scheduled:
            try:
                newest = await create_backup(
                    self.platform,
                    ClusterRef(obj.namespace, obj.name),
                    target,
                    spec=obj.spec.model_dump(mode="json", by_alias=True, exclude={"backup"}),
                )
            except (BackupError, OSError) as exc:
                await event("Warning", "BackupFailed", str(exc))
                return obj.status.last_backup
            mine.append(newest)
            await event(
                "Normal",
                "BackupCreated",
                f"{newest.name} in {target.location}: up to zxid {format_zxid(newest.last_zxid)}, "
                f"{len(newest.files)} files, {newest.size} bytes{' (asked for)' if asked else ''}",
            )
            if spec is not None:
                for old in mine[: max(0, len(mine) - spec.retain)]:
                    await asyncio.to_thread(target.delete, old.name)
                    await event("Normal", "BackupRemoved", f"{old.name} (retain {spec.retain})")
        return status_of(newest, target) if newest is not None else obj.status.last_backup

    async def seed(self, obj: ZookeeperCluster, platform: ZookeeperPlatform, event: EventSink) -> None:
        """Hand the members waiting for a restored cluster's data (the backup its annotation
        names, from its target) that data, every byte checked first; a damaged or missing
        backup is reported and nothing is handed over, so nothing starts."""
        backup = obj.metadata.annotations.get(RESTORED_FROM)
        cluster = ClusterRef(obj.namespace, obj.name)
        waiting = await platform.seeding(cluster) if backup else ()
        if not waiting or time.monotonic() < self._next_seed.get(obj.key, 0.0):
            return
        assert backup is not None
        target = self.target(obj)
        with tempfile.TemporaryDirectory(prefix="zkop-seed-") as tmp:
            try:
                manifest = await asyncio.to_thread(verify, target, backup, Path(tmp))
            except (BackupError, OSError) as exc:
                self._next_seed[obj.key] = time.monotonic() + SEED_RETRY
                await event("Warning", "RestoreFailed", f"{exc}; no member starts until it can be read")
                return
            files = [
                (e.name.split("/", 1)[1], Path(tmp).joinpath(*e.name.split("/")), e.sha256)
                for e in manifest.files
                if e.name.startswith("data/")
            ]
            for member in waiting:
                await platform.seed(cluster, member, files)
                await event(
                    "Normal",
                    "Seeded",
                    f"member {member} received backup {backup} (up to zxid {format_zxid(manifest.last_zxid)})",
                )


def _requested_at(obj: ZookeeperCluster) -> float | None:
    raw = obj.metadata.annotations.get(REQUEST_ANNOTATION)
    if not raw:
        return None
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not an ISO 8601 time", REQUEST_ANNOTATION, raw)
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


__all__ = ["REQUEST_ANNOTATION", "ScheduledBackups", "status_of"]
