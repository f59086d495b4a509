"""Backups on a schedule (``spec.backup`` of a ZookeeperCluster), taken by its controller once
the cluster is healthy.

Whether one is due is observed, not remembered: the newest backup of the cluster in its target
(by its manifest) is older than ``intervalSeconds``. After a backup, the cluster's backups beyond
the newest ``retain`` are removed. The target is looked at no more often than ``check_period``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from zkop.api.zookeepercluster import BackupStatus, ZookeeperCluster
from zkop.backup.create import create_backup, list_manifests
from zkop.backup.manifest import BackupError, Manifest
from zkop.backup.target import BackupTarget, DirectoryTarget
from zkop.platform.base import ClusterRef, ZookeeperPlatform
from zkop.zk.txnlog import format_zxid

log = logging.getLogger("zkop.backup")

EventSink = Callable[[str, str, str], Awaitable[None]]


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

    def target(self, obj: ZookeeperCluster) -> BackupTarget:
        spec = obj.spec.backup
        return DirectoryTarget(Path(spec.directory) if spec and spec.directory else self.default_root)

    def forget(self, key: str) -> None:
        self._next_look.pop(key, None)

    async def run(self, obj: ZookeeperCluster, event: EventSink) -> BackupStatus | None:
        """Take a backup when one is due; the newest backup of the cluster (None: none)."""
        spec = obj.spec.backup
        if spec is None:
            return None
        now = time.monotonic()
        if now < self._next_look.get(obj.key, 0.0):
            return obj.status.last_backup
        self._next_look[obj.key] = now + self.check_period
        target = self.target(obj)
        mine = [
            m
            for m in await asyncio.to_thread(list_manifests, target)
            if (m.namespace, m.cluster) == (obj.namespace, obj.name)
        ]
        newest = mine[-1] if mine else None
        if newest is None or time.time() - newest.created_at >= spec.interval_seconds:
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
                f"{len(newest.files)} files, {newest.size} bytes",
            )
            for old in mine[: max(0, len(mine) - spec.retain)]:
                await asyncio.to_thread(target.delete, old.name)
                await event("Normal", "BackupRemoved", f"{old.name} (retain {spec.retain})")
        return status_of(newest, target)


__all__ = ["ScheduledBackups", "status_of"]
