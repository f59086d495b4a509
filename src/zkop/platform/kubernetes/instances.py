"""What the Kubernetes platform creates for an Application and what it reads back, as pure
functions (the manifests and the observations; no I/O, tested on their own).

Per instance: a Pod ``<app>-<n>`` (``n`` from a counter that only grows, so a name is never
reused), owned by the Application (an ownerReference to the custom resource: the garbage
collector removes what the operator did not), never a Deployment or ReplicaSet, since zkop does
the rollout itself. Its labels select the application (:func:`zkop.api.application.instance_labels`,
the Application's ``status.selector``) and say the template revision and the creation index.
Per application: a Secret ``<app>-registry`` with the service's registry identity and the other
credentials of the template (``InstanceTemplate.secret_env``: a ZookeeperZnode's ``ZK_AUTH``),
which the container reads through ``secretKeyRef`` (never a plain value in the Pod spec).

The instance's environment is the local platform's: the template's variables, ``ZKOP_INSTANCE``,
``ZKOP_NAMESPACE``, ``ZKOP_APP``, ``HOST`` (``0.0.0.0``: every address of the Pod), ``PORT`` (the
first port) and ``PORT_<NAME>`` per named port. With a Pod IP of its own each instance can use
the declared ``containerPort``, else a default (8080, 8081, ... skipping the declared ones), the
same in every Pod. Values are taken literally: ``$(VAR)`` is escaped, as the local platform
expands nothing either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from zkop.api.application import APP_LABEL, MANAGED_BY, MANAGED_BY_LABEL, Probe, instance_labels
from zkop.api.meta import API_VERSION
from zkop.api.quantity import Quantity
from zkop.platform.base import AppRef, InstanceObservation, InstancePhase, InstanceTemplate, LastExit, Resources
from zkop.platform.kubernetes.manifests import opaque_secret

CONTAINER = "app"
REVISION_LABEL = "zkop.io/revision"
INDEX_LABEL = "zkop.io/instance-index"
EPOCH = "zkop.io/epoch"
RESTARTS = "zkop.io/restarts"  # restarts of the instance's earlier Pods (a replaced terminal Pod)
SECRET_SUFFIX = "-registry"
FIRST_PORT = 8080
LISTEN_ALL = "0.0.0.0"
# The variables given from the application's Secret, not as values in the Pod spec (besides
# the template's own secret_env).
SECRET_ENV: tuple[str, ...] = ("ZKOP_REGISTRY_AUTH",)
# Waiting reasons of a container that cannot start, as the kubelet reports them.
START_FAILURES = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "PreCreateHookError",
        "PostStartHookError",
    }
)

Obj = dict[str, Any]


# ---- names and labels ---------------------------------------------------------------------


def pod_name(app: AppRef, index: int) -> str:
    return f"{app.name}-{index}"


def secret_name(app: AppRef) -> str:
    return f"{app.name}{SECRET_SUFFIX}"


def selector(app: AppRef) -> str:
    """Every Pod of the application."""
    return ",".join(f"{k}={v}" for k, v in sorted(instance_labels(app.name).items()))


#: Every Pod of every application (what :meth:`apps` lists and the watch follows).
ALL_APPS_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY},{APP_LABEL}"


def pod_labels(app: AppRef, revision: str, index: int) -> dict[str, str]:
    return {
        **instance_labels(app.name),
        "app.kubernetes.io/name": app.name,
        "app.kubernetes.io/component": "application",
        REVISION_LABEL: revision,
        INDEX_LABEL: str(index),
    }


def owner_reference(app: AppRef, uid: str) -> Obj:
    """The Application as the owner (and controller) of what is made for it."""
    return {"apiVersion": API_VERSION, "kind": "Application", "name": app.name, "uid": uid, "controller": True}


def env_name(port_name: str) -> str:
    """``PORT_<NAME>`` for a named port: ``metrics-http`` -> ``PORT_METRICS_HTTP``."""
    return "PORT_" + "".join(c if c.isalnum() else "_" for c in port_name.upper())


def port_numbers(template: InstanceTemplate) -> dict[str, int]:
    """Each named port's number: as declared, else the next default from 8080 that no port declares."""
    taken = {p.number for p in template.ports if p.number}
    out: dict[str, int] = {}
    candidate = FIRST_PORT
    for port in template.ports:
        if port.number:
            out[port.name] = port.number
            continue
        while candidate in taken:
            candidate += 1
        out[port.name] = candidate
        taken.add(candidate)
    return out


# ---- the manifests ------------------------------------------------------------------------


def _literal(value: str) -> str:
    """Kubernetes expands ``$(VAR)`` in env values, commands and args; ``$$`` keeps a ``$``."""
    return value.replace("$(", "$$(")


def _cpu(cores: float) -> str:
    return f"{max(1, round(cores * 1000))}m"


def resources(template: InstanceTemplate) -> Obj:
    """``spec.resources``: requests and limits of the container."""
    out: Obj = {}
    requests: dict[str, str] = {}
    if template.requests.cpu > 0:
        requests["cpu"] = _cpu(template.requests.cpu)
    if template.requests.memory > 0:
        requests["memory"] = str(template.requests.memory)
    limits: dict[str, str] = {}
    if template.cpu_limit is not None:
        limits["cpu"] = _cpu(template.cpu_limit)
    if template.memory_limit is not None:
        limits["memory"] = str(template.memory_limit)
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def probe(p: Probe) -> Obj:
    """A template probe as a container probe (named ports stay names: the container declares them)."""
    out: Obj = {
        "initialDelaySeconds": p.initial_delay_seconds,
        "periodSeconds": p.period_seconds,
        "timeoutSeconds": p.timeout_seconds,
        "failureThreshold": p.failure_threshold,
        "successThreshold": p.success_threshold,
    }
    if p.tcp is not None:
        out["tcpSocket"] = {"port": p.tcp.port}
    elif p.http is not None:
        out["httpGet"] = {"path": p.http.path, "port": p.http.port}
    elif p.exec is not None:
        out["exec"] = {"command": [_literal(a) for a in p.exec.command]}
    return out


def environment(
    app: AppRef, name: str, template: InstanceTemplate, secret_env: Collection[str] = SECRET_ENV
) -> list[Obj]:
    """The container's ``env``: the template's variables (those in ``secret_env`` or the
    template's ``secret_env`` from the application's Secret), then the platform's own, which win
    over the template's."""
    ports = port_numbers(template)
    hidden = {*secret_env, *template.secret_env}
    values: dict[str, Obj] = {}
    for key, value in template.env:
        if key in hidden:
            values[key] = {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name(app), "key": key}}}
        else:
            values[key] = {"name": key, "value": _literal(value)}
    own = {
        "ZKOP_INSTANCE": name,
        "ZKOP_NAMESPACE": app.namespace,
        "ZKOP_APP": app.name,
        "HOST": LISTEN_ALL,
        **({"PORT": str(next(iter(ports.values())))} if ports else {}),
        **{env_name(n): str(p) for n, p in ports.items()},
    }
    for key, value in own.items():
        values.pop(key, None)
        values[key] = {"name": key, "value": value}
    return list(values.values())


def secret_data(template: InstanceTemplate, secret_env: Collection[str] = SECRET_ENV) -> dict[str, str]:
    """What the application's Secret holds: the template's values of ``secret_env`` and of its
    own ``secret_env``."""
    hidden = {*secret_env, *template.secret_env}
    return {k: v for k, v in template.env if k in hidden}


def secret(app: AppRef, data: Mapping[str, str], owner_uid: str, *, epoch: int | None) -> Obj:
    meta: Obj = {
        "name": secret_name(app),
        "namespace": app.namespace,
        "labels": instance_labels(app.name),
        "ownerReferences": [owner_reference(app, owner_uid)],
    }
    if epoch is not None:
        meta["annotations"] = {EPOCH: str(epoch)}
    return opaque_secret(meta, dict(sorted(data.items())))


def pod(
    app: AppRef,
    index: int,
    template: InstanceTemplate,
    *,
    image: str,
    owner_uid: str,
    epoch: int | None,
    restarts: int = 0,
    secret_env: Collection[str] = SECRET_ENV,
) -> Obj:
    """The instance's Pod: one container running the template's command in ``image`` (the
    template's own when it names one)."""
    name = pod_name(app, index)
    annotations: dict[str, str] = {}
    if epoch is not None:
        annotations[EPOCH] = str(epoch)
    if restarts:
        annotations[RESTARTS] = str(restarts)
    container: Obj = {
        "name": CONTAINER,
        "image": template.image or image,
        "command": [_literal(a) for a in template.command],
        "env": environment(app, name, template, secret_env),
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in port_numbers(template).items()],
        "resources": resources(template),
    }
    if template.working_dir:
        container["workingDir"] = template.working_dir
    if template.readiness is not None:
        container["readinessProbe"] = probe(template.readiness)
    if template.liveness is not None:
        container["livenessProbe"] = probe(template.liveness)
    meta: Obj = {
        "name": name,
        "namespace": app.namespace,
        "labels": pod_labels(app, template.revision, index),
        "ownerReferences": [owner_reference(app, owner_uid)],
    }
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            # Instances reach what they need by the variables zkop gives; no Service links, and no
            # token for the Kubernetes API (they have no business there).
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "containers": [container],
        },
    }


def replacement(old: Obj, *, epoch: int | None) -> Obj:
    """A new Pod for the instance of a Pod that ended for good (phase Failed or Succeeded: evicted,
    its node shut down): the same name, labels and spec, without what the API server and the
    scheduler filled in, counting the restarts the old Pod had."""
    meta = old.get("metadata") or {}
    spec = dict(old.get("spec") or {})
    spec.pop("nodeName", None)  # the scheduler places the new Pod (the API server's defaults may stay)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in (EPOCH, RESTARTS)}
    annotations[RESTARTS] = str(restarts_of(old) + 1)
    if epoch is not None:
        annotations[EPOCH] = str(epoch)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": list(meta.get("ownerReferences") or []),
        },
        "spec": spec,
    }


# ---- reading back -------------------------------------------------------------------------


def index_of(pod: Obj) -> int | None:
    try:
        return int(((pod.get("metadata") or {}).get("labels") or {}).get(INDEX_LABEL, ""))
    except ValueError:
        return None


def app_of(pod: Obj) -> AppRef | None:
    meta = pod.get("metadata") or {}
    name = (meta.get("labels") or {}).get(APP_LABEL)
    return AppRef(str(meta.get("namespace")), str(name)) if name and meta.get("namespace") else None


def terminating(pod: Obj) -> bool:
    return (pod.get("metadata") or {}).get("deletionTimestamp") is not None


def terminal(pod: Obj) -> bool:
    """Ended for good: the kubelet restarts nothing in a Failed or Succeeded Pod."""
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def _container_status(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        if c.get("name") == CONTAINER:
            return dict(c)
    return None


def _condition(pod: Obj, type_: str) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def _time(value: Any) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def restarts_of(pod: Obj) -> int:
    """Restarts of the instance: its container's in this Pod, and those of the Pods it replaced."""
    try:
        before = int(((pod.get("metadata") or {}).get("annotations") or {}).get(RESTARTS, "0"))
    except ValueError:
        before = 0
    container = _container_status(pod) or {}
    return before + int(container.get("restartCount") or 0)


def ready(pod: Obj) -> bool:
    """The Pod's Ready condition (what the kubelet says of its readiness probe and containers)."""
    cond = _condition(pod, "Ready")
    return not terminating(pod) and cond is not None and cond.get("status") == "True"


def _exit(terminated: Obj | None) -> LastExit | None:
    if not terminated:
        return None
    code = terminated.get("exitCode")
    return LastExit(
        str(terminated.get("reason") or "Error"),
        int(code) if code is not None else None,
        _time(terminated.get("finishedAt")),
    )


def _describe(last: LastExit | None) -> str:
    if last is None:
        return "ended"
    code = f"exit code {last.code}" if last.code is not None else "exit code unknown"
    return f"{code} ({last.reason})"


def phase_of(pod: Obj) -> tuple[InstancePhase, str | None, str | None]:
    """``(phase, reason, message)`` of the contract from the Pod's status."""
    status = pod.get("status") or {}
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return "Pending", str(scheduled.get("reason") or "Unschedulable"), scheduled.get("message") or "not scheduled"
    if terminal(pod):
        reason = str(status.get("reason") or status.get("phase") or "Failed")
        message = status.get("message") or f"the Pod ended ({status.get('phase')}); the platform replaces it"
        return "Failed", reason, message
    container = _container_status(pod)
    if container is None:
        return "Starting", None, None
    state = container.get("state") or {}
    last = _exit((container.get("lastState") or {}).get("terminated"))
    waiting = state.get("waiting")
    if waiting:
        reason = str(waiting.get("reason") or "Waiting")
        message = waiting.get("message")
        if reason == "CrashLoopBackOff":
            return "CrashLoopBackOff", reason, f"{_describe(last)}; {message or 'back-off restarting'}"[:900]
        if reason in START_FAILURES:
            return "Failed", reason, (message or reason)[:900]
        if last is not None:
            return "Restarting", last.reason, _describe(last)
        return "Starting", None, None
    if state.get("terminated"):
        ended = _exit(state.get("terminated"))
        return "Restarting", ended.reason if ended else "Exited", _describe(ended)
    if state.get("running"):
        if ready(pod):
            return "Running", None, None
        return "NotReady", "ReadinessProbe", "not ready yet"
    return "Starting", None, None


def usage(metrics: Obj | None) -> tuple[float | None, int | None]:
    """(cores, bytes) of the application container from a PodMetrics item of metrics.k8s.io."""
    for c in (metrics or {}).get("containers") or []:
        if c.get("name") == CONTAINER:
            used = c.get("usage") or {}
            try:
                cores = Quantity(str(used["cpu"])).cores if "cpu" in used else None
                memory = Quantity(str(used["memory"])).bytes if "memory" in used else None
            except ValueError:
                return None, None
            return cores, memory
    return None, None


def observation(pod: Obj, metrics: Obj | None = None) -> InstanceObservation:
    """One instance as the contract describes it, from its Pod (and its PodMetrics, if any)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    container = _container_status(pod) or {}
    ports: dict[str, int] = {}
    for c in spec.get("containers") or []:
        if c.get("name") == CONTAINER:
            ports = {str(p["name"]): int(p["containerPort"]) for p in c.get("ports") or [] if p.get("name")}
    phase, reason, message = phase_of(pod)
    running = (container.get("state") or {}).get("running") or {}
    last = _exit((container.get("lastState") or {}).get("terminated"))
    cores, memory = usage(metrics) if running else (None, None)
    return InstanceObservation(
        name=str(meta.get("name")),
        revision=str(labels.get(REVISION_LABEL, "")),
        phase=phase,
        ready=ready(pod) and phase == "Running",
        restarts=restarts_of(pod),
        host=str(status.get("podIP") or ""),
        ports=ports,
        index=index_of(pod) or 0,
        started_at=_time(running.get("startedAt")),
        last_exit=last,
        reason=reason,
        message=message,
        cpu_usage=cores,
        memory=memory,
        process_id=str(meta.get("name")),
    )


def signature(pod: Obj) -> tuple[Any, ...]:
    """What a change of makes the controller look again: readiness, restarts, phase, address."""
    status = pod.get("status") or {}
    container = _container_status(pod) or {}
    state = container.get("state") or {}
    return (
        ready(pod),
        restarts_of(pod),
        status.get("phase"),
        status.get("podIP"),
        terminating(pod),
        next(iter(state), None),
        (state.get("waiting") or {}).get("reason"),
    )


def capacity(nodes: Sequence[Obj]) -> Resources:
    """What the cluster offers in all: the sum of its Nodes' allocatable CPU and memory (Nodes
    that are not Ready or are cordoned count too: they may come back)."""
    total = Resources()
    for node in nodes:
        alloc = (node.get("status") or {}).get("allocatable") or {}
        try:
            cpu = Quantity(str(alloc["cpu"])).cores if "cpu" in alloc else 0.0
            memory = Quantity(str(alloc["memory"])).bytes if "memory" in alloc else 0
        except ValueError:
            continue
        total = total + Resources(cpu, memory)
    return total


__all__ = [
    "ALL_APPS_SELECTOR",
    "CONTAINER",
    "INDEX_LABEL",
    "REVISION_LABEL",
    "SECRET_ENV",
    "app_of",
    "capacity",
    "environment",
    "index_of",
    "observation",
    "phase_of",
    "pod",
    "pod_labels",
    "pod_name",
    "port_numbers",
    "probe",
    "replacement",
    "resources",
    "secret",
    "secret_data",
    "secret_name",
    "selector",
    "signature",
    "terminal",
    "terminating",
    "usage",
]
