"""An Application's status as a pure function of what the platform observed and what the
controller decided (no I/O; unit-tested)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from zkop.api import Application
from zkop.api.application import ApplicationStatus, InstanceStatus, instance_selector
from zkop.controllers.application import plan as P
from zkop.controllers.application.autoscale import ScaleDecision
from zkop.platform.base import InstanceObservation
from zkop.runtime.conditions import merge_conditions

# Every condition type this controller sets; one it did not compute this time is stale.
APP_CONDITIONS = (
    "Available",
    "ClusterReady",
    "Degraded",
    "LimitsEnforced",
    "MetricsAvailable",
    "Progressing",
    "Schedulable",
)
# An instance this new may not have been measured yet: it says nothing about missing metrics.
METRICS_GRACE = dt.timedelta(seconds=10)
NO_METRICS_HINT = (
    "the platform reports no CPU usage, so CPU-based autoscaling keeps the current count "
    "(on Kubernetes it reads the metrics API, metrics.k8s.io: install metrics-server)"
)


def instance_status(obs: InstanceObservation) -> InstanceStatus:
    pid = int(obs.process_id) if obs.process_id is not None and obs.process_id.isdigit() else None
    code = obs.last_exit.code if obs.last_exit is not None else None
    return InstanceStatus(
        name=obs.name,
        phase=obs.phase,
        ready=obs.ready,
        pid=pid,
        port=obs.port,
        restarts=obs.restarts,
        exit_code=code if code is None or -255 <= code <= 255 else None,
        reason=obs.reason,
        message=obs.message,
    )


def metrics_condition(
    app: Application, observed: Sequence[InstanceObservation], at: dt.datetime
) -> tuple[bool, str, str] | None:
    """``MetricsAvailable`` when autoscaling on CPU: False when no ready instance measured long
    enough reports CPU usage (the platform has no metrics), True when some do; None when it is not
    for this reconcile to say (no CPU metric, or no instance ready long enough to judge)."""
    auto = app.spec.autoscaling
    if auto is None or not any(m.type == "cpu" for m in auto.metrics):
        return None
    since = (at - METRICS_GRACE).timestamp()
    judged = [o for o in observed if o.ready and (o.started_at is None or o.started_at <= since)]
    if not judged:
        return None
    measured = [o.name for o in judged if o.cpu_usage is not None]
    if not measured:
        names = ", ".join(o.name for o in judged[:5]) + (", ..." if len(judged) > 5 else "")
        return False, "NoCpuMetrics", f"no CPU usage for {names}: {NO_METRICS_HINT}"
    return True, "CpuMetrics", f"{len(measured)}/{len(judged)} ready instances report CPU usage"


def status_for(
    app: Application,
    observed: Sequence[InstanceObservation],
    *,
    revision: str,
    desired: int,
    decision: ScaleDecision | None,
    scaled: bool,
    zk_hosts: str,
    ref_problem: tuple[str, str] | None,
    at: dt.datetime,
) -> ApplicationStatus:
    """The status for ``observed`` instances when ``desired`` are wanted (``decision``: the
    autoscaler's, ``scaled``: it changed the count now)."""
    insts = [instance_status(o) for o in observed]
    ready_n = sum(1 for i in insts if i.ready)
    updated = sum(1 for o in observed if o.revision == revision)
    rolling = app.spec.strategy.rolling_update
    _, unavailable = P.limits(desired, rolling.max_surge, rolling.max_unavailable)
    pending = [i for i in insts if i.phase == "Pending"]
    troubled = [i for i in insts if i.phase in ("CrashLoopBackOff", "Failed")]
    conds: dict[str, tuple[bool, str, str]] = {}
    if ref_problem is not None:
        conds["ClusterReady"] = (False, *ref_problem)
    elif app.spec.zookeeper is not None:
        conds["ClusterReady"] = (True, "Serving", f"ZK_HOSTS={zk_hosts}")
    conds["Available"] = (
        ready_n >= max(0, desired - unavailable) and (ready_n > 0 or desired == 0),
        "MinimumReplicasAvailable" if ready_n >= desired - unavailable else "MinimumReplicasUnavailable",
        f"{ready_n}/{desired} ready",
    )
    converged = updated == len(insts) == desired == ready_n
    conds["Progressing"] = (
        not converged,
        "Complete" if converged else ("RollingUpdate" if updated < len(insts) else "Scaling"),
        f"{updated} updated, {len(insts)} instances, {ready_n} ready, {desired} desired",
    )
    conds["Degraded"] = (
        bool(troubled),
        (troubled[0].reason or "Unhealthy") if troubled else "AsExpected",
        "; ".join(f"{i.name}: {i.phase}: {i.message}" for i in troubled)[:1000],
    )
    conds["Schedulable"] = (
        not pending,
        "InsufficientResources" if pending else "Fits",
        "; ".join(f"{i.name}: {i.message}" for i in pending)[:1000],
    )
    enforced = {e for o in observed for e in o.limits_enforced}
    not_enforced = {e for o in observed for e in o.limits_not_enforced}
    if enforced or not_enforced:
        conds["LimitsEnforced"] = (
            not not_enforced,
            "Enforced" if not not_enforced else "NotEnforced",
            "; ".join([*sorted(enforced), *sorted(not_enforced)]),
        )
    drop: tuple[str, ...] = APP_CONDITIONS
    metrics = metrics_condition(app, observed, at)
    if metrics is not None:
        conds["MetricsAvailable"] = metrics
    elif app.spec.autoscaling is not None and any(m.type == "cpu" for m in app.spec.autoscaling.metrics):
        drop = tuple(c for c in APP_CONDITIONS if c != "MetricsAvailable")  # nothing to judge by: kept
    return app.status.model_copy(
        update={
            "observed_generation": app.metadata.generation,
            "replicas": len(insts),
            "ready_replicas": ready_n,
            "updated_replicas": updated,
            "instances": insts,
            "endpoints": [f"{o.host}:{o.port}" for o in observed if o.ready],
            "current_metric": decision.metric if decision is not None else None,
            "desired_replicas": desired,
            "last_scale_time": at if scaled else app.status.last_scale_time,
            # The label selector of its Pods where the platform labels instances: the scale
            # subresource reports it, so a HorizontalPodAutoscaler can target the Application.
            "selector": instance_selector(app.name),
            "conditions": merge_conditions(
                app.status.conditions, conds, generation=app.metadata.generation, drop=drop, at=at
            ),
        }
    )


__all__ = ["APP_CONDITIONS", "instance_status", "metrics_condition", "status_for"]
