"""The ZookeeperCluster controller: read the object, look at the members, take the one step the
planner asks for (fenced), report status and events, and look again.

The decisions live in :mod:`.plan` and :mod:`.status` (pure, tested exhaustively); the look
and the step in :mod:`.driver`; this module only connects them to the store. It programs
against :mod:`zkop.platform.base` and runs on any platform.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kazoo.exceptions import KazooException

from zkop.api import ZookeeperCluster
from zkop.api.meta import ResourceList
from zkop.api.zookeepercluster import RestoreStatus, ZookeeperClusterStatus
from zkop.controllers.zookeepercluster import plan as P
from zkop.controllers.zookeepercluster.driver import EnsembleAdmin, EnsembleDriver
from zkop.controllers.zookeepercluster.status import stable, status_for
from zkop.platform.base import ClusterRef, MemberTemplate, Resources, TlsPolicy, ZookeeperPlatform
from zkop.runtime.controller import Context, Controller
from zkop.runtime.result import Request, Result
from zkop.store import NotFound
from zkop.store.modify import add_finalizer, remove_finalizer
from zkop.zk.config import ServerSettings, settings_hash

if TYPE_CHECKING:
    from zkop.backup.schedule import ScheduledBackups

log = logging.getLogger("zkop.zookeepercluster")

FINALIZER = "zkop.io/zookeepercluster"
RESTART_ANNOTATION = "zkop.io/restartedAt"
RESTORED_FROM_ANNOTATION = "zkop.io/restoredFrom"  # also zkop.backup.schedule.RESTORED_FROM
RESTORED_ZXID_ANNOTATION = "zkop.io/restoredZxid"
STATUS_REFRESH = 30.0  # volatile figures (zxid, latency) are refreshed at most this often
DONE_PERIOD = 1.0  # how often a healthy cluster is looked at (4lw only: no writes)
# How often a member that is starting, joining or syncing is looked at: each look is a few 4lw
# probes, and a healed member counts as back only once a look has seen it serve.
WAIT_PERIOD = 0.05
STARTUP_GRACE = 60.0  # members started this recently that do not serve yet are booting, not lost


def heap_mb(obj: ZookeeperCluster) -> int:
    """The JVM heap: ``spec.jvm.heap`` when given, else half the memory limit when there is one
    (the rest is the JVM's own and the page cache), else the default."""
    limit = obj.spec.resources.limits.memory
    if "heap" not in obj.spec.jvm.model_fields_set and limit is not None:
        return max(16, int(limit.bytes // 2 // (1024 * 1024)))
    return max(16, int(obj.spec.jvm.heap.bytes // (1024 * 1024)))


def desired_settings(obj: ZookeeperCluster) -> ServerSettings:
    cfg = obj.spec.config
    heap = heap_mb(obj)
    return ServerSettings(
        tick_time=cfg.tick_time,
        init_limit=cfg.init_limit,
        sync_limit=cfg.sync_limit,
        max_client_cnxns=cfg.max_client_cnxns,
        min_session_timeout=cfg.min_session_timeout,
        max_session_timeout=cfg.max_session_timeout,
        autopurge_snap_retain_count=cfg.autopurge.snap_retain_count,
        autopurge_purge_interval=cfg.autopurge.purge_interval,
        heap_mb=heap,
        additional=dict(cfg.additional_config),
    )


def _resources(values: ResourceList) -> Resources:
    return Resources(
        float(values.cpu.cores) if values.cpu is not None else 0.0,
        int(values.memory.bytes) if values.memory is not None else 0,
    )


def tls_policy(obj: ZookeeperCluster) -> TlsPolicy | None:
    """The TLS the members run with (None: off)."""
    tls = obj.spec.tls
    if not tls.enabled:
        return None
    return TlsPolicy(
        client=tls.client.mode if tls.client is not None else None,
        quorum=tls.quorum.mode if tls.quorum is not None else None,
        validity=float(tls.certificates.validity_seconds),
        renew_before=float(tls.certificates.renew_before_seconds),
    )


def member_template(obj: ZookeeperCluster) -> MemberTemplate:
    settings = desired_settings(obj)
    home, image = obj.spec.zookeeper_home, obj.spec.image
    requests, limits = _resources(obj.spec.resources.requests), _resources(obj.spec.resources.limits)
    given = (requests, limits) if (requests, limits) != (Resources(), Resources()) else None
    tls = tls_policy(obj)
    config_hash = settings_hash(settings, home, image, resources=given)
    if tls is not None:
        # The modes change what members serve; lifetimes only change when they are renewed.
        config_hash = hashlib.sha256(f"{config_hash} tls {tls.client} {tls.quorum}".encode()).hexdigest()[:16]
    return MemberTemplate(
        settings=settings,
        config_hash=config_hash,
        zookeeper_home=home,
        image=image,
        resources_requests=requests,
        resources_limits=limits,
        tls=tls,
        seed=obj.metadata.annotations.get(RESTORED_FROM_ANNOTATION) if obj.status.restored is None else None,
    )


def restored_from(obj: ZookeeperCluster) -> RestoreStatus | None:
    """What `zkop backup restore` recorded on the object (annotations), for status."""
    backup = obj.metadata.annotations.get(RESTORED_FROM_ANNOTATION)
    zxid = obj.metadata.annotations.get(RESTORED_ZXID_ANNOTATION)
    return RestoreStatus(backup=backup, zxid=zxid) if backup and zxid else None


def desired_state(obj: ZookeeperCluster, config_hash: str) -> P.Desired:
    return P.Desired(
        replicas=obj.spec.replicas,
        config_hash=config_hash,
        paused=obj.spec.paused,
        deleting=obj.metadata.deletion_timestamp is not None,
        restart_requested_at=obj.metadata.annotations.get(RESTART_ANNOTATION),
        restarted_at=obj.status.restarted_at,
        reclaim_policy=obj.spec.storage.reclaim_policy,
        renew_certificates_before=float(obj.spec.tls.certificates.renew_before_seconds)
        if obj.spec.tls.enabled
        else None,
    )


@dataclass
class _Writes:
    """When status was last written, per object (a timer, never the world's state)."""

    last_status_write: float = 0.0


class ZookeeperClusterReconciler:
    def __init__(
        self,
        platform: ZookeeperPlatform,
        *,
        unresponsive_grace: float = 30.0,
        startup_grace: float = STARTUP_GRACE,
        admin: EnsembleAdmin | None = None,
        backups: ScheduledBackups | None = None,
    ) -> None:
        """``backups``: takes spec.backup's scheduled backups (none are taken without it)."""
        self.platform = platform
        self.backups = backups
        self.driver = EnsembleDriver(
            platform, unresponsive_grace=unresponsive_grace, startup_grace=startup_grace, admin=admin
        )
        self.writes: dict[str, _Writes] = {}

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        cluster = ClusterRef(request.namespace, request.name)
        try:
            obj = await ctx.store.get("ZookeeperCluster", request.namespace, request.name)
        except NotFound:
            self.driver.forget(cluster)
            self.writes.pop(request.key, None)
            return Result()
        assert isinstance(obj, ZookeeperCluster)
        deleting = obj.metadata.deletion_timestamp is not None
        if not deleting and FINALIZER not in obj.metadata.finalizers:
            await add_finalizer(ctx.store, obj, FINALIZER)
            return Result(requeue_after=0.0)

        template = member_template(obj)
        desired = desired_state(obj, template.config_hash)
        seeding = template.seed is not None and not deleting
        if seeding:
            # Restored: one member starts from the backup, the others are added (and sync from it)
            # once it has served; members that started empty could elect and truncate it.
            desired = dataclasses.replace(desired, replicas=1)
        look = await self.driver.look(cluster)
        action = self.driver.decide(look, desired)
        quiet = isinstance(action, P.Done | P.Wait)
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "plan: %s",
            action.detail or type(action).__name__,
            extra={
                "controller": "zookeepercluster",
                "key": request.key,
                "generation": obj.metadata.generation,
                "epoch": ctx.epoch,
            },
        )

        async def event(type_: str, reason: str, message: str) -> None:
            await ctx.event(obj, type_, reason, message)

        error: Exception | None = None
        try:
            await self.driver.act(cluster, look, action, template, epoch=ctx.epoch, event=event)
        except (KazooException, OSError, TimeoutError) as exc:
            error = exc  # reported in status; the next look decides again
        if deleting and isinstance(action, P.Done):
            purge = obj.spec.storage.reclaim_policy == "Delete"
            await self.platform.remove_cluster(cluster, purge_data=purge, epoch=ctx.epoch)
            await event("Normal", "Deleted", f"all members stopped; data {obj.spec.storage.reclaim_policy}")
            await remove_finalizer(ctx.store, obj, FINALIZER)
            self.driver.forget(cluster)
            self.writes.pop(request.key, None)
            return Result()
        if not isinstance(action, P.Wait | P.Done | P.Degraded):
            look = await self.driver.look(cluster)
        status = status_for(obj.status, look, action, desired, generation=obj.metadata.generation, error=error)
        if seeding and error is None and self.backups is not None:
            await self.backups.seed(obj, self.platform, event)
        if obj.status.restored is not None or (template.seed is not None and status.ready_replicas > 0):
            status = status.model_copy(update={"restored": restored_from(obj)})  # its data was served
        if self.backups is not None and isinstance(action, P.Done) and error is None and not seeding:
            status = status.model_copy(update={"last_backup": await self.backups.run(obj, event)})
        await self._write_status(ctx, obj, status)
        if error is not None:
            raise error
        if seeding:
            return Result(requeue_after=1.0)  # data to hand over, or the other members to add
        if isinstance(action, P.Done):
            return Result(requeue_after=DONE_PERIOD)
        if isinstance(action, P.Degraded):
            return Result(requeue_after=2.0)
        if isinstance(action, P.Wait):
            return Result(requeue_after=WAIT_PERIOD if action.reason != P.WaitReason.PAUSED else 5.0)
        return Result(requeue_after=0.2)

    async def _write_status(self, ctx: Context, obj: ZookeeperCluster, status: ZookeeperClusterStatus) -> None:
        writes = self.writes.setdefault(obj.key, _Writes())
        old = obj.status
        if status == old:
            return
        if stable(status) == stable(old) and time.monotonic() - writes.last_status_write < STATUS_REFRESH:
            return
        with contextlib.suppress(NotFound):
            await ctx.store.update_status(obj.model_copy(update={"status": status}))
            writes.last_status_write = time.monotonic()


def controller(
    namespace: str | None, platform: ZookeeperPlatform, *, backups: ScheduledBackups | None = None
) -> Controller:
    ctrl = Controller(
        "zookeepercluster",
        "ZookeeperCluster",
        ZookeeperClusterReconciler(platform, backups=backups),
        workers=2,
        namespace=namespace,
        resync_period=30.0,
    )
    platform.subscribe(lambda ref: ctrl.enqueue(Request(ref.namespace, ref.name)))
    return ctrl


__all__ = [
    "FINALIZER",
    "RESTART_ANNOTATION",
    "RESTORED_FROM_ANNOTATION",
    "RESTORED_ZXID_ANNOTATION",
    "ZookeeperClusterReconciler",
    "controller",
    "desired_settings",
    "member_template",
    "tls_policy",
]
