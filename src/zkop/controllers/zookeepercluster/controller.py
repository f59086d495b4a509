"""The ZookeeperCluster controller: observe the members, ask the planner for one action,
do it (fenced), report status and events, and look again.

The decisions live in :mod:`.plan` (pure, tested exhaustively); this module only
observes and acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import KazooException

from zkop.api import ZookeeperCluster
from zkop.api.zookeepercluster import MemberStatus as MemberStatusModel
from zkop.client.bridge import ZkClient
from zkop.controllers.zookeepercluster import plan as P
from zkop.platform.local.ensemble import MemberStatus
from zkop.platform.local.zookeeper import ClusterView, LocalZookeeperPlatform, settings_hash
from zkop.runtime.conditions import merge_conditions
from zkop.runtime.controller import Context, Controller
from zkop.runtime.result import Request, Result
from zkop.store import Conflict, NotFound
from zkop.zk import auth
from zkop.zk.config import ServerSettings

log = logging.getLogger("zkop.zookeepercluster")

FINALIZER = "zkop.io/zookeepercluster"
RESTART_ANNOTATION = "zkop.io/restartedAt"
STATUS_REFRESH = 30.0  # volatile figures (zxid, latency) are refreshed at most this often
DONE_PERIOD = 1.0  # how often a healthy cluster is looked at (4lw only: no writes)
STARTUP_GRACE = 60.0  # members started this recently that do not serve yet are booting, not lost


def desired_settings(obj: ZookeeperCluster) -> ServerSettings:
    cfg = obj.spec.config
    heap_mb = max(16, int(obj.spec.jvm.heap.bytes // (1024 * 1024)))
    return ServerSettings(
        tick_time=cfg.tick_time,
        init_limit=cfg.init_limit,
        sync_limit=cfg.sync_limit,
        max_client_cnxns=cfg.max_client_cnxns,
        min_session_timeout=cfg.min_session_timeout,
        max_session_timeout=cfg.max_session_timeout,
        autopurge_snap_retain_count=cfg.autopurge.snap_retain_count,
        autopurge_purge_interval=cfg.autopurge.purge_interval,
        heap_mb=heap_mb,
        additional=dict(cfg.additional_config),
    )


def _role(s: MemberStatus) -> str:
    if s.serving and s.state.mode in ("leader", "follower", "observer"):
        return s.state.mode
    return "unknown"


@dataclass
class _Memory:
    """What a reconcile may keep between runs: timers only, never the world's state."""

    unresponsive_since: dict[int, float]
    last_status_write: float = 0.0


class ZookeeperClusterReconciler:
    def __init__(self, platform: LocalZookeeperPlatform, *, unresponsive_grace: float = 30.0) -> None:
        self.platform = platform
        self.unresponsive_grace = unresponsive_grace
        self.memory: dict[str, _Memory] = {}

    # ---- observation ---------------------------------------------------------------

    def _observed(self, key: str, view: ClusterView | None, now: float) -> list[P.ObservedMember]:
        if view is None:
            return []
        mem = self.memory.setdefault(key, _Memory({}))
        in_config = {m.id for m in view.config_members if m.role == "participant"}
        out = []
        for s in view.members:
            stuck = s.running and not s.serving
            if stuck:
                mem.unresponsive_since.setdefault(s.id, now)
            else:
                mem.unresponsive_since.pop(s.id, None)
            config_hash, started_at = view.started.get(s.id, (None, None))
            out.append(
                P.ObservedMember(
                    id=s.id,
                    in_config=s.id in in_config,
                    process_running=s.running,
                    paused=s.paused,
                    serving=s.serving,
                    role=_role(s),  # type: ignore[arg-type]
                    syncing=s.state.syncing,
                    data_present=s.data_present,
                    config_hash=config_hash,
                    unresponsive_since=mem.unresponsive_since.get(s.id),
                    started_at=started_at,
                )
            )
        return out

    # ---- the loop ------------------------------------------------------------------

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        try:
            obj = await ctx.store.get("ZookeeperCluster", request.namespace, request.name)
        except NotFound:
            self.memory.pop(request.key, None)
            return Result()
        assert isinstance(obj, ZookeeperCluster)
        deleting = obj.metadata.deletion_timestamp is not None
        if not deleting and FINALIZER not in obj.metadata.finalizers:
            meta = obj.metadata.model_copy(update={"finalizers": [*obj.metadata.finalizers, FINALIZER]})
            with contextlib.suppress(Conflict):
                await ctx.store.update(obj.model_copy(update={"metadata": meta}))
            return Result(requeue_after=0.0)

        settings = desired_settings(obj)
        home = obj.spec.zookeeper_home
        config_hash = settings_hash(settings, home)
        view = await self.platform.observe(obj.namespace, obj.name)
        now = time.time()
        members = self._observed(request.key, view, now)
        desired = P.Desired(
            replicas=obj.spec.replicas,
            config_hash=config_hash,
            paused=obj.spec.paused,
            deleting=deleting,
            restart_requested_at=obj.metadata.annotations.get(RESTART_ANNOTATION),
            restarted_at=obj.status.restarted_at,
            reclaim_policy=obj.spec.storage.reclaim_policy,
        )
        action = P.plan(
            members,
            desired,
            next_id=view.next_id if view else 1,
            now=now,
            unresponsive_grace=self.unresponsive_grace,
        )
        if isinstance(action, P.Degraded) and action.reason == P.DegradedReason.QUORUM_LOST and view is not None:
            booting = [m for m in view.members if m.running and not m.paused and not m.serving]
            recent = all(
                (started or 0) > now - STARTUP_GRACE
                for _, started in (view.started.get(m.id, (None, None)) for m in booting)
            )
            if booting and len(booting) == len([m for m in view.members if not m.serving]) and recent:
                # Members that were just started are still electing: not a loss of quorum.
                action = P.Wait(P.WaitReason.UNREADY, f"{len(booting)} member(s) starting")
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
        error: Exception | None = None
        try:
            await self._act(ctx, obj, view, action, settings, home, config_hash)
        except (KazooException, OSError, TimeoutError) as exc:
            error = exc  # reported in status; the next look decides again
        if deleting and isinstance(action, P.Done):
            await self.platform.destroy(
                obj.namespace, obj.name, purge=obj.spec.storage.reclaim_policy == "Delete", epoch=ctx.epoch
            )
            await ctx.event(obj, "Normal", "Deleted", f"all members stopped; data {obj.spec.storage.reclaim_policy}")
            meta = obj.metadata.model_copy(
                update={"finalizers": [f for f in obj.metadata.finalizers if f != FINALIZER]}
            )
            with contextlib.suppress(Conflict, NotFound):
                await ctx.store.update(obj.model_copy(update={"metadata": meta}))
            self.memory.pop(request.key, None)
            return Result()
        view_after = view if isinstance(action, P.Wait | P.Done | P.Degraded) else None
        if view_after is None:
            view_after = await self.platform.observe(obj.namespace, obj.name)
        await self._write_status(ctx, obj, view_after, action, desired, error)
        if error is not None:
            raise error
        if isinstance(action, P.Done):
            return Result(requeue_after=DONE_PERIOD)
        if isinstance(action, P.Degraded):
            return Result(requeue_after=2.0)
        if isinstance(action, P.Wait):
            return Result(requeue_after=0.5 if action.reason != P.WaitReason.PAUSED else 5.0)
        return Result(requeue_after=0.2)

    # ---- effects -------------------------------------------------------------------

    async def _act(
        self,
        ctx: Context,
        obj: ZookeeperCluster,
        view: ClusterView | None,
        action: P.Action,
        settings: ServerSettings,
        home: str | None,
        config_hash: str,
    ) -> None:
        ns, name, epoch = obj.namespace, obj.name, ctx.epoch
        if isinstance(action, P.CreateMembers):
            await self.platform.create(ns, name, action.ids, settings, home, config_hash, epoch=epoch)
            await ctx.event(obj, "Normal", "Created", f"started members {list(action.ids)}")
        elif isinstance(action, P.StartMember):
            await self.platform.start_member(ns, name, action.id, epoch=epoch)
            await ctx.event(obj, "Normal", "Healed", f"restarted member {action.id} with its id and data")
        elif isinstance(action, P.AddMember):
            assert view is not None
            new = await self.platform.add_member(
                ns, name, action.id, view.config_members, settings, home, config_hash, epoch=epoch
            )
            await ctx.event(obj, "Normal", "MemberStarting", f"started member {new.id}; it joins once synced")
        elif isinstance(action, P.ReconfigIn):
            assert view is not None
            joiner = next(m for m in view.members if m.id == action.id)
            await self._reconfig(
                ns, name, view, joining=joiner.address.server_line().split("=", 1)[1], member=action.id
            )
            await ctx.event(obj, "Normal", "MemberAdded", f"member {action.id} is a participant (reconfig)")
        elif isinstance(action, P.ReconfigOut):
            assert view is not None
            await self._reconfig(ns, name, view, leaving=action.id)
            await ctx.event(
                obj, "Normal", "MemberRemoved", f"member {action.id} left the configuration ({action.reason})"
            )
        elif isinstance(action, P.StopMember):
            await self.platform.stop_member(ns, name, action.id, purge=action.purge, epoch=epoch)
            what = "purged" if action.purge else "retained"
            await ctx.event(
                obj, "Normal", "MemberStopped", f"member {action.id} stopped ({action.reason}); data {what}"
            )
        elif isinstance(action, P.RestartMember):
            await self.platform.restart_member(ns, name, action.id, settings, home, config_hash, epoch=epoch)
            await ctx.event(obj, "Normal", "RollingRestart", f"restarted member {action.id} ({action.reason})")
        elif isinstance(action, P.Degraded):
            await ctx.event(obj, "Warning", str(action.reason), action.detail or str(action.reason))

    async def _reconfig(
        self,
        ns: str,
        name: str,
        view: ClusterView,
        *,
        joining: str | None = None,
        leaving: int | None = None,
        member: int | None = None,
    ) -> None:
        """Reconfigure as the cluster's super user, through a member that stays, from the
        configuration version we observed (so a concurrent change makes this fail, not vanish)."""
        via = [m for m in view.members if m.serving and m.id != leaving and m.id != member]
        via.sort(key=lambda m: m.state.mode != "leader")
        if not via:
            raise TimeoutError("no serving member to reconfigure through")
        password = self.platform.super_password(ns, name)
        client = ZkClient(via[0].address.client_endpoint, auth_data=[auth.super_auth(password)], session_timeout=10)
        await client.start(timeout=10)
        try:
            if joining is not None:
                await client.reconfig(joining=f"server.{member}={joining}", from_config=view.config_version or -1)
            else:
                await client.reconfig(leaving=str(leaving), from_config=view.config_version or -1)
        finally:
            await client.stop()

    # ---- status --------------------------------------------------------------------

    async def _write_status(
        self,
        ctx: Context,
        obj: ZookeeperCluster,
        view: ClusterView | None,
        action: P.Action,
        desired: P.Desired,
        error: Exception | None,
    ) -> None:
        members = list(view.members) if view else []
        in_config = {m.id for m in view.config_members} if view else set()
        participants = [m for m in members if m.id in in_config]
        serving = [m for m in participants if m.serving]
        leader = next((m.id for m in serving if m.state.mode == "leader"), None)
        has_quorum = bool(participants) and len(serving) >= P.majority(len(participants))
        if desired.paused:
            phase = "Paused"
        elif desired.deleting:
            phase = "Deleting"
        elif isinstance(action, P.Degraded):
            phase = "Degraded"
        elif isinstance(action, P.CreateMembers) or (view is not None and not view.config_version and not serving):
            phase = "Creating"
        elif isinstance(action, P.Done):
            phase = "Running"
        else:
            phase = "Updating"
        old = obj.status
        restarted_at = old.restarted_at
        if isinstance(action, P.Done) and P.restart_pending(desired):
            restarted_at = desired.restart_requested_at
        if isinstance(action, P.Degraded):
            degraded = (True, str(action.reason), action.detail)
        elif error is not None:
            degraded = (True, "ActionFailed", f"{type(error).__name__}: {error}")
        else:
            degraded = (False, "AsExpected", "")
        conds = merge_conditions(
            old.conditions,
            {
                "Available": (
                    has_quorum,
                    "QuorumUp" if has_quorum else "NoQuorum",
                    f"{len(serving)}/{len(participants)} participants serve",
                ),
                "Progressing": (
                    not isinstance(action, P.Done | P.Degraded) and phase != "Paused",
                    type(action).__name__,
                    action.detail or type(action).__name__,
                ),
                "Degraded": degraded,
            },
            generation=obj.metadata.generation,
            succeeded=error is None,
        )
        status = old.model_copy(
            update={
                "observed_generation": obj.metadata.generation,
                "phase": phase,
                "replicas": len(participants),
                "ready_replicas": len(serving),
                "leader": leader,
                "members": [
                    MemberStatusModel(
                        id=m.id,
                        role=m.state.mode  # type: ignore[arg-type]
                        if m.serving and m.state.mode in ("leader", "follower", "observer")
                        else ("down" if not m.running else "unknown"),
                        ready=m.serving,
                        zxid=m.state.zxid,
                        client_endpoint=m.address.client_endpoint,
                        restarts=m.restarts,
                        latency_ms=m.state.latency_avg_ms,
                        outstanding_requests=m.state.outstanding_requests,
                    )
                    for m in members
                ],
                "connection_string": ",".join(m.address.client_endpoint for m in members if m.id in in_config) or None,
                "config_version": f"0x{view.config_version:x}" if view and view.config_version else None,
                "conditions": conds,
                "restarted_at": restarted_at,
            }
        )
        mem = self.memory.setdefault(obj.key, _Memory({}))
        if _stable(status) == _stable(old) and time.monotonic() - mem.last_status_write < STATUS_REFRESH:
            return
        if status == old:
            return
        with contextlib.suppress(NotFound):
            await ctx.store.update_status(obj.model_copy(update={"status": status}))
            mem.last_status_write = time.monotonic()


def _stable(status: Any) -> Any:
    """The status without figures that change on every look (zxid, latency, load)."""
    data = status.model_dump()
    for m in data.get("members", []):
        for k in ("zxid", "latency_ms", "outstanding_requests"):
            m.pop(k, None)
    return data


def controller(namespace: str | None, platform: LocalZookeeperPlatform) -> Controller:
    return Controller(
        "zookeepercluster",
        "ZookeeperCluster",
        ZookeeperClusterReconciler(platform),
        workers=2,
        namespace=namespace,
        resync_period=30.0,
    )


__all__ = ["FINALIZER", "RESTART_ANNOTATION", "ZookeeperClusterReconciler", "asyncio", "controller"]
