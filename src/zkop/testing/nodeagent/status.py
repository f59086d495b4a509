"""Pod status from what the agent's containers are doing: pure functions, the kubelet's rules.

The status is written as a strategic merge patch: conditions merge by type (conditions other
writers own are left alone) and container statuses by name, so every state carries explicit
nulls for the fields it clears.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zkop.testing.nodeagent.kube import Obj

OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str | None = None


@dataclass(frozen=True)
class Running:
    started_at: float


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: float | None
    finished_at: float
    container_id: str | None = None
    message: str | None = None


State = Waiting | Running | Terminated


@dataclass(frozen=True)
class ContainerView:
    name: str
    image: str
    state: State
    image_id: str = ""
    container_id: str | None = None
    last: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False


def _terminated(t: Terminated) -> Obj:
    return {
        "exitCode": t.exit_code,
        "reason": t.reason,
        "message": t.message,
        "startedAt": rfc3339(t.started_at) if t.started_at else None,
        "finishedAt": rfc3339(t.finished_at),
        "containerID": t.container_id,
    }


def state_json(state: State | None) -> Obj:
    out: dict[str, Any] = {"waiting": None, "running": None, "terminated": None}
    if isinstance(state, Waiting):
        out["waiting"] = {"reason": state.reason, "message": state.message}
    elif isinstance(state, Running):
        out["running"] = {"startedAt": rfc3339(state.started_at)}
    elif isinstance(state, Terminated):
        out["terminated"] = _terminated(state)
    return out


def container_status(view: ContainerView) -> Obj:
    return {
        "name": view.name,
        "image": view.image,
        "imageID": view.image_id,
        "containerID": view.container_id,
        "ready": view.ready,
        "started": view.started,
        "restartCount": view.restart_count,
        "state": state_json(view.state),
        "lastState": state_json(view.last),
    }


def _failed(view: ContainerView) -> bool:
    return isinstance(view.state, Terminated) and view.state.exit_code != 0


def pod_phase(
    restart_policy: str, init: Sequence[ContainerView], main: Sequence[ContainerView], initialized: bool
) -> str:
    """The kubelet's ``getPhase``."""
    if not initialized:
        if restart_policy == "Never" and any(_failed(v) for v in init):
            return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for v in main:
        if isinstance(v.state, Running):
            running += 1
        elif isinstance(v.state, Terminated):
            stopped += 1
            succeeded += v.state.exit_code == 0
        elif v.last is not None:  # waiting to restart
            stopped += 1
            succeeded += v.last.exit_code == 0
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def terminal_phase(main: Sequence[ContainerView]) -> str:
    """The phase of a Pod whose containers were all stopped for good (deletion, node shutdown)."""
    codes = [v.state.exit_code for v in main if isinstance(v.state, Terminated)]
    return "Succeeded" if codes and all(c == 0 for c in codes) and len(codes) == len(main) else "Failed"


def _condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> Obj:
    return {"type": kind, "status": "True" if ok else "False", "reason": None if ok else reason, "message": message}


def pod_conditions(
    pod: Obj,
    *,
    sandbox: bool,
    init: Sequence[ContainerView],
    main: Sequence[ContainerView],
    initialized: bool,
    phase: str,
    now: float,
) -> list[Obj]:
    """The four conditions the kubelet owns; a transition time kept unless the status changes."""
    terminal = phase in ("Succeeded", "Failed")
    conditions = [_condition("PodReadyToStartContainers", sandbox and not terminal)]
    if initialized:
        conditions.append(_condition("Initialized", True))
    else:
        pending = [v.name for v in init if not (isinstance(v.state, Terminated) and v.state.exit_code == 0)]
        conditions.append(
            _condition(
                "Initialized", False, "ContainersNotInitialized", f"containers with incomplete status: {pending}"
            )
        )
    unready = [v.name for v in main if not v.ready]
    if terminal:
        ready = _condition("ContainersReady", False, "PodCompleted")
        conditions += [ready, _condition("Ready", False, "PodCompleted")]
    elif unready:
        message = f"containers with unready status: [{' '.join(unready)}]"
        conditions += [
            _condition("ContainersReady", False, "ContainersNotReady", message),
            _condition("Ready", False, "ContainersNotReady", message),
        ]
    else:
        conditions.append(_condition("ContainersReady", True))
        existing = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
        gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
        missing = [g for g in gates if (existing.get(g) or {}).get("status") != "True"]
        if missing:
            conditions.append(
                _condition(
                    "Ready",
                    False,
                    "ReadinessGatesNotReady",
                    f"corresponding condition of pod readiness gate {missing[0]!r} does not exist.",
                )
            )
        else:
            conditions.append(_condition("Ready", True))
    previous = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    for c in conditions:
        old = previous.get(c["type"])
        same = old is not None and old.get("status") == c["status"] and old.get("lastTransitionTime")
        c["lastTransitionTime"] = old["lastTransitionTime"] if same and old else rfc3339(now)
        c["lastProbeTime"] = None
    return conditions
