"""A ZookeeperCluster's status as a pure function of one look, the action taken and the error
met (no I/O; unit-tested like :mod:`.plan`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from zkop.api.zookeepercluster import MemberStatus as MemberStatusModel
from zkop.api.zookeepercluster import ZookeeperClusterStatus
from zkop.controllers.zookeepercluster import plan as P
from zkop.controllers.zookeepercluster.driver import Look, connection_string
from zkop.runtime.conditions import merge_conditions


def phase_for(look: Look, action: P.Action, desired: P.Desired) -> str:
    if desired.paused:
        return "Paused"
    if desired.deleting:
        return "Deleting"
    if isinstance(action, P.Degraded):
        return "Degraded"
    serving = any(m.ready for m in look.platform_members)
    if isinstance(action, P.CreateMembers) or (
        look.observation is not None and not look.config_version and not serving
    ):
        return "Creating"
    if isinstance(action, P.Done):
        return "Running"
    return "Updating"


def status_for(
    old: ZookeeperClusterStatus,
    look: Look,
    action: P.Action,
    desired: P.Desired,
    *,
    generation: int | None,
    error: Exception | None = None,
    at: dt.datetime | None = None,
) -> ZookeeperClusterStatus:
    """The status after ``action`` was taken on what ``look`` saw (``error``: the action failed)."""
    members = sorted(look.platform_members, key=lambda m: m.id)
    in_config = {m.id for m in look.config_members}
    participants = [m for m in members if m.id in in_config]
    serving = [m for m in participants if m.ready]
    leader = next((m.id for m in serving if m.state.mode == "leader"), None)
    has_quorum = bool(participants) and len(serving) >= P.majority(len(participants))
    phase = phase_for(look, action, desired)
    restarted_at = old.restarted_at
    if isinstance(action, P.Done) and P.restart_pending(desired):
        restarted_at = desired.restart_requested_at
    if isinstance(action, P.Degraded):
        degraded = (True, str(action.reason), action.detail)
    elif error is not None:
        degraded = (True, "ActionFailed", f"{type(error).__name__}: {error}")
    else:
        degraded = (False, "AsExpected", "")
    conditions = merge_conditions(
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
        generation=generation,
        succeeded=error is None,
        at=at,
    )
    return old.model_copy(
        update={
            "observed_generation": generation,
            "phase": phase,
            "replicas": len(participants),
            "ready_replicas": len(serving),
            "leader": leader,
            "members": [
                MemberStatusModel(
                    id=m.id,
                    role=m.state.mode  # type: ignore[arg-type]
                    if m.ready and m.state.mode in ("leader", "follower", "observer")
                    else ("down" if not m.running else "unknown"),
                    ready=m.ready,
                    zxid=m.state.zxid,
                    client_endpoint=m.address.client_endpoint,
                    restarts=m.restarts,
                    latency_ms=m.state.latency_avg_ms,
                    outstanding_requests=m.state.outstanding_requests,
                )
                for m in members
            ],
            "connection_string": connection_string(look) or None,
            "config_version": f"0x{look.config_version:x}" if look.config_version else None,
            "conditions": conditions,
            "restarted_at": restarted_at,
            "certificates_expire_at": _first_expiry(members),
        }
    )


def _first_expiry(members: Any) -> str | None:
    ends = [m.certificate_expires for m in members if m.certificate_expires is not None]
    if not ends:
        return None
    first = dt.datetime.fromtimestamp(min(ends), dt.UTC)
    return first.isoformat(timespec="seconds").replace("+00:00", "Z")


def stable(status: ZookeeperClusterStatus) -> Any:
    """The status without figures that change on every look (zxid, latency, load)."""
    data = status.model_dump()
    for m in data.get("members", []):
        for k in ("zxid", "latency_ms", "outstanding_requests"):
            m.pop(k, None)
    return data


__all__ = ["phase_for", "stable", "status_for"]
