"""What the page shows, as pure functions of what was read: resources, events, the leader
record, the local control plane and the dashboard's own samples. No I/O here (unit-tested);
:mod:`zkop.dashboard.gather` does the reading.

Everything returned is plain JSON (camelCase keys, as the resources spell theirs).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zkop.api import Application, ZookeeperCluster
from zkop.api.meta import Condition
from zkop.store.events import EventRecord

#: Events shown per object (its timeline) and everywhere (the events table).
OBJECT_EVENTS = 30
ALL_EVENTS = 300
#: How far back the dashboard keeps its samples of each application, and their spacing.
HISTORY_SECONDS = 900.0
MIN_SAMPLE_GAP = 1.0
#: Most samples sent per plot (older ones are thinned out; the newest is always sent).
PLOT_POINTS = 300

_SCALED = re.compile(r"replicas\s+(\d+)\s*->\s*(\d+)")


def iso(at: float | None) -> str | None:
    """Seconds since the epoch as RFC 3339 (UTC), or None."""
    if at is None:
        return None
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _stamp(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def condition_view(c: Condition) -> dict[str, Any]:
    return {
        "type": c.type,
        "status": c.status,
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": _stamp(c.last_transition_time),
    }


def event_view(e: EventRecord) -> dict[str, Any]:
    return {
        "type": e.type,
        "reason": e.reason,
        "message": e.message,
        "kind": e.kind,
        "namespace": e.namespace,
        "name": e.name,
        "count": e.count,
        "firstTimestamp": e.first_timestamp,
        "lastTimestamp": e.last_timestamp,
        "source": e.source,
    }


def events_of(events: Iterable[EventRecord], kind: str, namespace: str, name: str) -> list[EventRecord]:
    """The events about one object, oldest first."""
    return [e for e in events if e.kind == kind and e.namespace == namespace and e.name == name]


def now_doing(conditions: Sequence[Condition]) -> dict[str, Any]:
    """What the operator does now: the Progressing condition (its message is the planner's
    current action), or idle."""
    progressing = condition(conditions, "Progressing")
    if progressing is None:
        return {"busy": False, "action": None, "message": "not reconciled yet"}
    return {
        "busy": progressing.status == "True",
        "action": progressing.reason,
        "message": progressing.message or progressing.reason,
        "since": _stamp(progressing.last_transition_time),
    }


def cluster_view(obj: ZookeeperCluster, events: Sequence[EventRecord]) -> dict[str, Any]:
    """One ZookeeperCluster: members, configuration version, what the operator does now, and
    its events (the timeline, oldest first)."""
    s = obj.status
    mine = events_of(events, "ZookeeperCluster", obj.namespace, obj.name)[-OBJECT_EVENTS:]
    return {
        "key": f"{obj.namespace}/{obj.name}",
        "namespace": obj.namespace,
        "name": obj.name,
        "phase": s.phase or "Pending",
        "desired": obj.spec.replicas,
        "replicas": s.replicas,
        "ready": s.ready_replicas,
        "paused": obj.spec.paused,
        "deleting": obj.metadata.deletion_timestamp is not None,
        "leader": s.leader,
        "configVersion": s.config_version,
        "connectionString": s.connection_string,
        "generation": obj.metadata.generation,
        "observedGeneration": s.observed_generation,
        "now": now_doing(s.conditions),
        "conditions": [condition_view(c) for c in s.conditions],
        "members": [
            {
                "id": m.id,
                "role": m.role,
                "ready": m.ready,
                "zxid": f"0x{m.zxid:x}" if m.zxid is not None else None,
                "latencyMs": m.latency_ms,
                "outstanding": m.outstanding_requests,
                "restarts": m.restarts,
                "endpoint": m.client_endpoint,
            }
            for m in sorted(s.members, key=lambda m: m.id)
        ],
        "events": [event_view(e) for e in mine],
    }


# ---- applications -------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One look at an application: its metric, and its replicas (existing, ready, desired)."""

    at: float
    metric: float | None
    replicas: int
    ready: int
    desired: int | None

    def same_values(self, other: Sample) -> bool:
        return (self.metric, self.replicas, self.ready, self.desired) == (
            other.metric,
            other.replicas,
            other.ready,
            other.desired,
        )


@dataclass
class History:
    """The dashboard's samples of each application over the last ``window`` seconds (the
    store keeps only the latest status; the plots need the past)."""

    window: float = HISTORY_SECONDS
    min_gap: float = MIN_SAMPLE_GAP
    _samples: dict[str, deque[Sample]] = field(default_factory=dict)

    def record(self, key: str, sample: Sample) -> None:
        """Keep ``sample`` unless it repeats the last one within ``min_gap`` seconds; drop what
        fell out of the window."""
        series = self._samples.setdefault(key, deque())
        if series and sample.at < series[-1].at:
            return  # never out of order
        if series and sample.at - series[-1].at < self.min_gap and sample.same_values(series[-1]):
            return
        if series and sample.at - series[-1].at < self.min_gap:
            series.pop()  # a change within the gap replaces the last sample, keeping the newest
        series.append(sample)
        while series and series[0].at < sample.at - self.window:
            series.popleft()

    def samples(self, key: str) -> list[Sample]:
        return list(self._samples.get(key, ()))

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget applications that are gone."""
        wanted = set(keys)
        for key in list(self._samples):
            if key not in wanted:
                del self._samples[key]


def sample_of(app: Application, at: float) -> Sample:
    s = app.status
    desired = s.desired_replicas if s.desired_replicas is not None else app.spec.replicas
    return Sample(at, s.current_metric, s.replicas, s.ready_replicas, desired)


def targets_of(app: Application) -> list[dict[str, Any]]:
    """The autoscaler's targets, in the metric's own unit (cpu: percent of the request)."""
    if app.spec.autoscaling is None:
        return []
    out: list[dict[str, Any]] = []
    for m in app.spec.autoscaling.metrics:
        value = float(m.target_utilization) if m.type == "cpu" and m.target_utilization is not None else m.target_value
        if value is not None:
            out.append({"type": m.type, "value": value, "label": f"{m.type} {value:g}{'%' if m.type == 'cpu' else ''}"})
    return out


def scaled_of(events: Sequence[EventRecord]) -> list[dict[str, Any]]:
    """The autoscaler's decisions: its Scaled events, with the counts they name."""
    out: list[dict[str, Any]] = []
    for e in events:
        if e.reason != "Scaled":
            continue
        match = _SCALED.search(e.message)
        out.append(
            {
                "at": e.last_timestamp,
                "from": int(match.group(1)) if match else None,
                "to": int(match.group(2)) if match else None,
                "message": e.message,
            }
        )
    return out


def thin(samples: Sequence[Sample], most: int = PLOT_POINTS) -> list[Sample]:
    """At most ``most`` samples, evenly spread, the newest among them."""
    if len(samples) <= most:
        return list(samples)
    step = len(samples) / most
    picked = [samples[int(i * step)] for i in range(most - 1)]
    return [*picked, samples[-1]]


def _endpoint(port: int | None, endpoints: Sequence[str]) -> str | None:
    if port is None:
        return None
    return next((e for e in endpoints if e.rsplit(":", 1)[-1] == str(port)), None)


def app_view(
    app: Application,
    events: Sequence[EventRecord],
    samples: Sequence[Sample],
    *,
    revision: str | None = None,
    instance_revisions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One Application: instances (with the revision each runs when it is known: the local
    platform's records on this machine), load against its target over time, replicas over time
    and the autoscaler's decisions. ``revision`` is the current one (the template's hash)."""
    s = app.status
    mine = events_of(events, "Application", app.namespace, app.name)
    revs = instance_revisions or {}
    scaling = app.spec.autoscaling
    instances = []
    for i in s.instances:
        rev = revs.get(i.name)
        instances.append(
            {
                "name": i.name,
                "phase": i.phase,
                "ready": i.ready,
                "restarts": i.restarts,
                "port": i.port,
                "endpoint": _endpoint(i.port, s.endpoints),
                "revision": rev,
                "current": None if rev is None or revision is None else rev == revision,
                "reason": i.reason,
                "message": i.message,
            }
        )
    return {
        "key": f"{app.namespace}/{app.name}",
        "namespace": app.namespace,
        "name": app.name,
        "revision": revision,
        "specReplicas": app.spec.replicas,
        "desired": s.desired_replicas if s.desired_replicas is not None else app.spec.replicas,
        "replicas": s.replicas,
        "ready": s.ready_replicas,
        "updated": s.updated_replicas,
        "currentMetric": s.current_metric,
        "lastScaleTime": _stamp(s.last_scale_time),
        "autoscaling": None
        if scaling is None
        else {"min": scaling.min_replicas, "max": scaling.max_replicas, "targets": targets_of(app)},
        "now": now_doing(s.conditions),
        "conditions": [condition_view(c) for c in s.conditions],
        "instances": instances,
        "history": [[round(x.at * 1000), x.metric, x.replicas, x.ready, x.desired] for x in thin(samples)],
        "scaled": scaled_of(mine),
        "events": [event_view(e) for e in mine[-OBJECT_EVENTS:]],
    }


# ---- the control plane ----------------------------------------------------------------


def operator_view(
    manager: str, leader: str | None, epoch: int | None, since: float | None, candidates: Sequence[str]
) -> dict[str, Any]:
    """The operator replicas, the leader, its epoch and since when it leads."""
    return {
        "manager": manager,
        "replicas": len(candidates),
        "candidates": list(candidates),
        "leader": leader,
        "epoch": epoch,
        "since": iso(since),
    }


def local_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """The local control plane (:func:`zkop.cli.local.status_dict`): members, who keeps it,
    its last events (``ensembles/control-plane/events.jsonl``)."""
    keeper = data.get("keeper")
    return {
        "ensemble": data.get("ensemble"),
        "connectionString": data.get("connectionString"),
        "desiredMembers": data.get("desiredMembers"),
        "keeper": None if keeper is None else {"identity": keeper.get("identity"), "pid": keeper.get("pid")},
        "members": [
            {
                "id": m.get("myid"),
                "pid": m.get("pid"),
                "endpoint": m.get("clientEndpoint"),
                "role": m.get("role"),
                "ready": m.get("zxid") is not None,
                "zxid": m.get("zxid"),
                "restarts": m.get("restarts", 0),
            }
            for m in data.get("members", [])
        ],
        "events": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": e.get("count", 1),
                "lastTimestamp": e.get("lastTimestamp"),
            }
            for e in data.get("events", [])
        ],
    }


def all_events(events: Sequence[EventRecord], limit: int = ALL_EVENTS) -> dict[str, Any]:
    """Recent events everywhere, newest first, with the namespaces and kinds to filter by."""
    newest = sorted(events, key=lambda e: e.last_timestamp, reverse=True)[:limit]
    return {
        "items": [event_view(e) for e in newest],
        "namespaces": sorted({e.namespace for e in events}),
        "kinds": sorted({e.kind for e in events}),
    }


def snapshot(
    *,
    clusters: Sequence[ZookeeperCluster],
    apps: Sequence[Application],
    events: Sequence[EventRecord],
    history: History,
    operator: Mapping[str, Any] | None,
    local: Mapping[str, Any] | None,
    connection: Mapping[str, Any],
    revisions: Mapping[str, str] | None = None,
    instance_revisions: Mapping[str, Mapping[str, str]] | None = None,
    errors: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole page's data. ``revisions``: the current revision per application key;
    ``instance_revisions``: per application key, the revision each instance runs."""
    revisions = revisions or {}
    instance_revisions = instance_revisions or {}
    return {
        "connection": dict(connection),
        "errors": list(errors),
        "controlPlane": {"operator": dict(operator) if operator is not None else None, "local": local},
        "clusters": [cluster_view(c, events) for c in sorted(clusters, key=lambda c: (c.namespace, c.name))],
        "applications": [
            app_view(
                a,
                events,
                history.samples(a.key),
                revision=revisions.get(a.key),
                instance_revisions=instance_revisions.get(a.key),
            )
            for a in sorted(apps, key=lambda a: (a.namespace, a.name))
        ],
        "events": all_events(events),
    }


__all__ = [
    "ALL_EVENTS",
    "HISTORY_SECONDS",
    "OBJECT_EVENTS",
    "PLOT_POINTS",
    "History",
    "Sample",
    "all_events",
    "app_view",
    "cluster_view",
    "event_view",
    "iso",
    "local_view",
    "now_doing",
    "operator_view",
    "sample_of",
    "scaled_of",
    "snapshot",
    "targets_of",
    "thin",
]
