"""Applications on Kubernetes as pure functions: the Pods and the Secret made for an
Application, and what is read back from Pod status (phases, readiness, restarts, exits, usage)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from zkop.api import Application, parse_object
from zkop.api.application import IMAGE_PATTERN, ExecProbe, Probe, check_image, instance_selector
from zkop.api.errors import ResourceValidationError
from zkop.controllers.application.controller import instance_template
from zkop.platform.base import AppRef, InstanceTemplate, PortSpec, Resources
from zkop.platform.kubernetes import instances as I

APP = AppRef("shop", "counter")
AUTH = "svc/shop/counter:s3cret"


def application(**template: Any) -> Application:
    spec: dict[str, Any] = {
        "replicas": 2,
        "template": {
            "command": ["python3", "-m", "zkop.examples.counter"],
            "env": {"LOG_LEVEL": "info", "GREETING": "$(NOT_EXPANDED)"},
            "ports": [{"name": "http"}, {"name": "metrics", "containerPort": 9090}, {"name": "admin"}],
            **template,
        },
        "probes": {
            "readiness": {"http": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
            "liveness": {"tcp": {"port": "http"}, "initialDelaySeconds": 2, "periodSeconds": 5},
        },
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
    }
    obj = parse_object(
        {"apiVersion": "zkop.io/v1", "kind": "Application", "metadata": {"name": "counter"}, "spec": spec}
    )
    assert isinstance(obj, Application)
    return obj


def template(**changes: Any) -> InstanceTemplate:
    env = [("ZK_HOSTS", "zk-1:2181"), ("ZKOP_REGISTRY_HOSTS", "127.0.0.1:2181"), ("ZKOP_REGISTRY_AUTH", AUTH)]
    t = instance_template(application(**changes), env)
    return t


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]}


# ---- the image field -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    ["zkop", "zkop:0.1.0", "ghcr.io/acme/counter:1.2", "localhost:5000/team/app_x:v1", "busybox@sha256:" + "a" * 64],
)
def test_image_references_accepted(image: str) -> None:
    assert application(image=image).spec.template.image == image


@pytest.mark.parametrize("image", ["", " ", "Counter", "a//b", "app:", "app:-1", "a b", "app\n", "x" * 600])
def test_image_references_refused_with_the_field(image: str) -> None:
    with pytest.raises(ResourceValidationError) as info:
        application(image=image)
    assert "spec.template.image:" in str(info.value)
    with pytest.raises(ValueError):
        check_image(image)


def test_the_image_pattern_says_what_check_image_says() -> None:
    import re

    pattern = re.compile(IMAGE_PATTERN)
    for value in ["zkop", "Zkop", "a.b/c", "a:1/b", "a/b:c@sha256:" + "0" * 32, "a__b", "a___b", "a-.b", "-a"]:
        try:
            check_image(value)
            accepted = True
        except ValueError:
            accepted = False
        assert bool(pattern.fullmatch(value)) == accepted, value


# ---- manifests ------------------------------------------------------------------------------


def test_an_instance_is_a_pod_owned_by_the_application() -> None:
    t = template()
    pod = I.pod(APP, 7, t, image="zkop:0.1.0", owner_uid="uid-1", epoch=3)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "counter-7" and meta["namespace"] == "shop"
    assert meta["ownerReferences"] == [
        {"apiVersion": "zkop.io/v1", "kind": "Application", "name": "counter", "uid": "uid-1", "controller": True}
    ]
    assert meta["labels"][I.REVISION_LABEL] == t.revision and meta["labels"][I.INDEX_LABEL] == "7"
    assert meta["annotations"] == {"zkop.io/epoch": "3"}
    # The labels are the Application's status.selector, which is what selects its Pods.
    assert all(meta["labels"][k] == v for k, v in (kv.split("=") for kv in instance_selector("counter").split(",")))
    assert I.selector(APP) == instance_selector("counter")
    assert spec["restartPolicy"] == "Always" and spec["enableServiceLinks"] is False
    assert spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    assert c["image"] == "zkop:0.1.0" and c["command"] == ["python3", "-m", "zkop.examples.counter"]
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": str(64 * 2**20)},
        "limits": {"cpu": "500m", "memory": str(256 * 2**20)},
    }
    # Named ports: declared numbers as given, the others the defaults from 8080.
    assert c["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        {"name": "admin", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert c["readinessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http"},
        "initialDelaySeconds": 0,
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
        "successThreshold": 1,
    }
    assert c["livenessProbe"]["tcpSocket"] == {"port": "http"} and c["livenessProbe"]["initialDelaySeconds"] == 2


def test_the_environment_is_the_local_platforms_with_credentials_from_the_secret() -> None:
    pod = I.pod(APP, 2, template(), image="zkop", owner_uid="u", epoch=None)
    env = env_of(pod)
    assert env["ZKOP_INSTANCE"] == "counter-2" and env["ZKOP_NAMESPACE"] == "shop" and env["ZKOP_APP"] == "counter"
    assert env["PORT"] == "8080" and env["PORT_HTTP"] == "8080" and env["PORT_METRICS"] == "9090"
    assert env["PORT_ADMIN"] == "8081" and env["HOST"] == "0.0.0.0"
    assert env["ZK_HOSTS"] == "zk-1:2181" and env["LOG_LEVEL"] == "info"
    assert env["GREETING"] == "$$(NOT_EXPANDED)"  # taken literally, as on the local platform
    # The registry identity is no value in the Pod spec: the container reads it from the Secret.
    assert env["ZKOP_REGISTRY_AUTH"] == {"secretKeyRef": {"name": "counter-registry", "key": "ZKOP_REGISTRY_AUTH"}}
    assert AUTH not in str(pod)
    secret = I.secret(APP, I.secret_data(template()), "u", epoch=5)
    assert secret["metadata"]["name"] == "counter-registry" and secret["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert base64.b64decode(secret["data"]["ZKOP_REGISTRY_AUTH"]).decode() == AUTH
    assert "annotations" not in pod["metadata"]  # no epoch given: nothing stamped


def test_a_znodes_identity_is_read_from_the_secret_too() -> None:
    """With spec.zookeeper.znodeRef the controller gives ZK_AUTH and marks it a credential: it is
    in the application's Secret, never a value in the Pod's spec."""
    znode_auth = "znode/shop/orders:pa55"
    env = [("ZK_HOSTS", "zk-1:2181/apps/orders"), ("ZKOP_REGISTRY_AUTH", AUTH), ("ZK_AUTH", znode_auth)]
    t = instance_template(application(), env)
    assert t.secret_env == {"ZKOP_REGISTRY_AUTH", "ZK_AUTH"}
    pod = I.pod(APP, 1, t, image="zkop", owner_uid="u", epoch=None)
    assert env_of(pod)["ZK_AUTH"] == {"secretKeyRef": {"name": "counter-registry", "key": "ZK_AUTH"}}
    assert env_of(pod)["ZK_HOSTS"] == "zk-1:2181/apps/orders"
    assert znode_auth not in str(pod) and "pa55" not in str(pod)
    data = I.secret(APP, I.secret_data(t), "u", epoch=1)["data"]
    assert {k: base64.b64decode(v).decode() for k, v in data.items()} == {
        "ZKOP_REGISTRY_AUTH": AUTH,
        "ZK_AUTH": znode_auth,
    }


def test_the_platforms_variables_win_over_the_templates() -> None:
    t = InstanceTemplate("r", ("app",), env=(("PORT", "1"), ("ZKOP_INSTANCE", "x"), ("A", "b")))
    env = env_of(I.pod(APP, 1, t, image="zkop", owner_uid="u", epoch=None))
    assert env["ZKOP_INSTANCE"] == "counter-1" and env["A"] == "b"
    assert env["PORT"] == "1"  # no port declared: the template's own variable stays
    names = [
        e["name"] for e in I.pod(APP, 1, t, image="zkop", owner_uid="u", epoch=None)["spec"]["containers"][0]["env"]
    ]
    assert len(names) == len(set(names))


def test_default_ports_skip_the_declared_ones() -> None:
    t = InstanceTemplate("r", ("app",), ports=(PortSpec("a"), PortSpec("b", 8080), PortSpec("c"), PortSpec("d", 8081)))
    assert I.port_numbers(t) == {"a": 8082, "b": 8080, "c": 8083, "d": 8081}


def test_resources_leave_out_what_is_not_given() -> None:
    assert I.resources(InstanceTemplate("r", ("a",))) == {}
    t = InstanceTemplate("r", ("a",), requests=Resources(0.25, 0), memory_limit=2**20)
    assert I.resources(t) == {"requests": {"cpu": "250m"}, "limits": {"memory": str(2**20)}}


def test_an_exec_probe_and_a_template_image() -> None:
    t = template(image="ghcr.io/acme/counter:2", workingDir="/srv")
    c = I.pod(APP, 1, t, image="zkop", owner_uid="u", epoch=None)["spec"]["containers"][0]
    assert c["image"] == "ghcr.io/acme/counter:2" and c["workingDir"] == "/srv"
    p = Probe(exec=ExecProbe(command=["sh", "-c", "test -f $(X)"]), period_seconds=3)
    assert I.probe(p)["exec"] == {"command": ["sh", "-c", "test -f $$(X)"]} and I.probe(p)["periodSeconds"] == 3


# ---- reading Pod status ---------------------------------------------------------------------


def pod_status(
    *,
    phase: str = "Running",
    ready: bool = True,
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    restarts: int = 0,
    scheduled: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    pod = I.pod(APP, 3, template(), image="zkop", owner_uid="u", epoch=1)
    if annotations:
        pod["metadata"]["annotations"] = annotations
    if deleting:
        pod["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled is not None:
        conditions.append({"type": "PodScheduled", **scheduled})
    pod["status"] = {
        "phase": phase,
        "podIP": "127.0.0.9",
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": "app",
                "ready": ready,
                "restartCount": restarts,
                "state": state if state is not None else {"running": {"startedAt": "2025-01-01T00:00:10Z"}},
                "lastState": {"terminated": last} if last else {},
            }
        ],
    }
    if reason:
        pod["status"]["reason"] = reason
    return pod


def test_a_ready_pod_is_a_running_endpoint_with_its_named_ports() -> None:
    obs = I.observation(
        pod_status(), {"containers": [{"name": "app", "usage": {"cpu": "250000000n", "memory": "10Mi"}}]}
    )
    assert (obs.name, obs.phase, obs.ready, obs.host, obs.port, obs.index) == (
        "counter-3", "Running", True, "127.0.0.9", 8080, 3)  # fmt: skip
    assert obs.ports == {"http": 8080, "metrics": 9090, "admin": 8081}
    assert obs.cpu_usage == 0.25 and obs.memory == 10 * 2**20 and obs.started_at is not None
    assert obs.revision == template().revision and obs.process_id == "counter-3"
    assert I.observation(pod_status()).cpu_usage is None  # no metrics API: unknown, not zero


def test_phases_from_the_pod_status() -> None:
    assert I.phase_of(pod_status(ready=False))[0] == "NotReady"
    assert not I.observation(pod_status(ready=False)).ready
    pending = pod_status(
        phase="Pending",
        ready=False,
        state={},
        scheduled={"status": "False", "reason": "Unschedulable", "message": "0/1 nodes"},
    )
    assert I.phase_of(pending) == ("Pending", "Unschedulable", "0/1 nodes")
    creating = pod_status(phase="Pending", ready=False, state={"waiting": {"reason": "ContainerCreating"}})
    assert I.phase_of(creating) == ("Starting", None, None)
    killed = {"exitCode": 137, "reason": "Error", "finishedAt": "2025-01-01T00:00:05Z"}
    crash = pod_status(
        ready=False,
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
        last=killed,
        restarts=3,
    )
    phase, reason, message = I.phase_of(crash)
    assert (phase, reason) == ("CrashLoopBackOff", "CrashLoopBackOff") and "exit code 137" in (message or "")
    obs = I.observation(crash)
    assert (
        obs.restarts == 3 and obs.last_exit is not None and (obs.last_exit.code, obs.last_exit.reason) == (137, "Error")
    )
    restarting = pod_status(ready=False, state={"terminated": killed}, restarts=1)
    assert I.phase_of(restarting)[0] == "Restarting"
    pull = pod_status(
        phase="Pending", ready=False, state={"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}
    )
    assert I.phase_of(pull) == ("Failed", "ImagePullBackOff", "no such image")
    evicted = pod_status(phase="Failed", ready=False, state={"terminated": killed}, reason="Evicted")
    assert I.phase_of(evicted)[:2] == ("Failed", "Evicted") and I.terminal(evicted)
    assert not I.ready(pod_status(deleting=True))


def test_a_replaced_pod_keeps_its_name_and_counts_its_restarts() -> None:
    old = pod_status(phase="Failed", ready=False, restarts=2, annotations={"zkop.io/restarts": "1"})
    old["spec"]["nodeName"] = "node-a"
    assert I.restarts_of(old) == 3
    new = I.replacement(old, epoch=9)
    assert new["metadata"]["name"] == "counter-3" and "nodeName" not in new["spec"]
    assert new["metadata"]["annotations"] == {"zkop.io/restarts": "4", "zkop.io/epoch": "9"}
    assert new["metadata"]["ownerReferences"] == old["metadata"]["ownerReferences"]
    assert I.restarts_of({**new, "status": {}}) == 4


def test_signature_changes_with_readiness_and_restarts_only() -> None:
    base = I.signature(pod_status())
    assert I.signature(pod_status()) == base
    assert I.signature(pod_status(ready=False)) != base
    assert I.signature(pod_status(restarts=1)) != base
    assert I.app_of(pod_status()) == APP and I.index_of(pod_status()) == 3


def test_capacity_is_the_sum_of_the_nodes_allocatable() -> None:
    nodes: list[dict[str, Any]] = [
        {"status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}},
        {"status": {"allocatable": {"cpu": "1500m", "memory": "1048576Ki"}}},
        {"status": {}},
    ]
    assert I.capacity(nodes) == Resources(3.5, 5 * 2**30)
