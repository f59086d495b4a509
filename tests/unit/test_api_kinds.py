"""The kinds: valid documents parse, defaults, the registry, updates, warnings, examples."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest

from zkop.api import (
    KINDS,
    Application,
    ObjectMeta,
    OperatorConfig,
    Quantity,
    ResourceValidationError,
    ZookeeperCluster,
    check_update,
    dump_yaml,
    load_yaml,
    parse_object,
    resolve_kind,
    to_dict,
    warnings_for,
)
from zkop.errors import ValidationError, ZkopError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def zkc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "zkop.io/v1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "orders-zk"},
        "spec": spec,
    }


def app(**spec: Any) -> dict[str, Any]:
    spec.setdefault("template", {"command": ["python3", "-m", "svc"]})
    return {
        "apiVersion": "zkop.io/v1",
        "kind": "Application",
        "metadata": {"name": "counter"},
        "spec": spec,
    }


# -- ZookeeperCluster ---------------------------------------------------------------------


def test_zookeepercluster_defaults() -> None:
    obj = parse_object(zkc())
    assert isinstance(obj, ZookeeperCluster)
    assert obj.metadata.namespace == "default"
    assert obj.key == "default/orders-zk"
    spec = obj.spec
    assert spec.replicas == 3
    assert spec.config.tick_time == 2000
    assert spec.config.init_limit == 10
    assert spec.config.sync_limit == 5
    assert spec.config.max_client_cnxns == 60
    assert spec.config.effective_min_session_timeout == 4000
    assert spec.config.effective_max_session_timeout == 40000
    assert spec.config.autopurge.snap_retain_count == 3
    assert spec.config.additional_config == {}
    assert spec.jvm.heap == Quantity("128Mi")
    assert spec.storage.reclaim_policy == "Retain"
    assert spec.paused is False
    assert spec.zookeeper_home is None and spec.image is None
    assert obj.status.members == [] and obj.status.leader is None


def test_zookeepercluster_full_document() -> None:
    doc = zkc(
        replicas=5,
        zookeeperHome="/opt/zookeeper",
        image="zookeeper:3.9",
        config={
            "tickTime": 1000,
            "minSessionTimeout": 2000,
            "maxSessionTimeout": 30000,
            "autopurge": {"snapRetainCount": 5, "purgeInterval": 0},
            "additionalConfig": {"snapCount": 100000, "syncEnabled": True, "x.y": "z"},
        },
        jvm={"heap": "512Mi"},
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
        storage={"reclaimPolicy": "Delete"},
        paused=True,
    )
    doc["metadata"].update(
        namespace="prod",
        uid="3f1c",
        resourceVersion=7,
        generation=2,
        creationTimestamp="2024-05-01T10:00:00Z",
        labels={"app.kubernetes.io/name": "zk", "tier": ""},
        annotations={"zkop.io/note": "anything goes here: {}"},
        finalizers=["zkop.io/cleanup"],
    )
    doc["status"] = {
        "observedGeneration": 2,
        "phase": "Running",
        "replicas": 5,
        "readyReplicas": 5,
        "leader": 3,
        "members": [
            {
                "id": 3,
                "role": "leader",
                "ready": True,
                "zxid": 0x100000002,
                "clientEndpoint": "127.0.0.1:2181",
                "restarts": 0,
                "latencyMs": 0.4,
                "outstandingRequests": 0,
            }
        ],
        "connectionString": "127.0.0.1:2181",
        "configVersion": "100000000",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "QuorumUp",
                "message": "all members ready",
                "lastTransitionTime": "2024-05-01T10:01:00+00:00",
            }
        ],
    }
    obj = parse_object(doc)
    assert isinstance(obj, ZookeeperCluster)
    assert obj.metadata.resource_version == "7"
    assert obj.metadata.creation_timestamp == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert obj.spec.config.additional_config == {"snapCount": "100000", "syncEnabled": "true", "x.y": "z"}
    assert obj.spec.resources.requests.cpu is not None
    assert obj.spec.resources.requests.cpu.cores == 0.5
    assert obj.spec.resources.limits.memory is not None
    assert obj.spec.resources.limits.memory.bytes == 1024**3
    assert obj.status.members[0].role == "leader"
    assert obj.status.conditions[0].status == "True"


def test_models_can_be_built_in_python() -> None:
    obj = ZookeeperCluster(metadata=ObjectMeta(name="a"))
    assert obj.api_version == "zkop.io/v1" and obj.kind == "ZookeeperCluster"
    assert parse_object(to_dict(obj)) == obj


def test_assignment_is_validated() -> None:
    obj = parse_object(zkc())
    assert isinstance(obj, ZookeeperCluster)
    obj.status.ready_replicas = 2
    with pytest.raises(pydantic.ValidationError):  # code, not users, assigns
        obj.spec.replicas = 0


# -- Application ---------------------------------------------------------------------------


def test_application_defaults() -> None:
    obj = parse_object(app())
    assert isinstance(obj, Application)
    spec = obj.spec
    assert spec.replicas == 1
    assert spec.template.args == [] and spec.template.env == [] and spec.template.ports == []
    assert spec.probes.readiness is None and spec.probes.liveness is None
    assert spec.autoscaling is None
    assert spec.strategy.rolling_update.max_surge == "25%"
    assert spec.strategy.rolling_update.max_unavailable == "25%"
    assert spec.zookeeper is None
    assert spec.service.load_balancing == "round_robin"


def test_application_full_document() -> None:
    obj = parse_object(
        app(
            replicas=0,
            template={
                "command": ["python3"],
                "args": ["-m", "svc"],
                "env": {"PORT_NAME": "http", "WORKERS": 4, "DEBUG": False},
                "workingDir": "/srv",
                "ports": [{"name": "http"}, {"name": "metrics", "containerPort": 9100}],
            },
            probes={
                "readiness": {"http": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
                "liveness": {"exec": {"command": ["true"]}, "failureThreshold": 5},
            },
            autoscaling={
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": [
                    {"type": "cpu", "targetUtilization": 70},
                    {"type": "load", "targetValue": 2.5},
                ],
            },
            strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "0%"}},
            zookeeper={"clusterRef": {"name": "orders-zk", "namespace": "infra"}},
            service={"loadBalancing": "consistent_hash"},
        )
    )
    assert isinstance(obj, Application)
    env = {v.name: v.value for v in obj.spec.template.env}
    assert env == {"PORT_NAME": "http", "WORKERS": "4", "DEBUG": "false"}
    readiness = obj.spec.probes.readiness
    assert readiness is not None and readiness.kind == "http"
    assert obj.spec.probes.liveness is not None and obj.spec.probes.liveness.kind == "exec"
    assert obj.spec.autoscaling is not None
    assert obj.spec.autoscaling.scale_down_stabilization_seconds == 300
    assert obj.spec.zookeeper is not None
    assert obj.spec.zookeeper.cluster_ref.namespace == "infra"


def test_env_list_form() -> None:
    obj = parse_object(app(template={"command": ["x"], "env": [{"name": "A", "value": "1"}, {"name": "B"}]}))
    assert isinstance(obj, Application)
    assert [(v.name, v.value) for v in obj.spec.template.env] == [("A", "1"), ("B", "")]


def test_autoscaling_default_metric() -> None:
    obj = parse_object(app(autoscaling={"maxReplicas": 3}))
    assert isinstance(obj, Application)
    assert obj.spec.autoscaling is not None
    assert obj.spec.autoscaling.min_replicas == 1
    metric = obj.spec.autoscaling.metrics[0]
    assert (metric.type, metric.target_utilization) == ("cpu", 80)


def test_application_status() -> None:
    doc = app()
    doc["status"] = {
        "observedGeneration": 1,
        "replicas": 2,
        "readyReplicas": 1,
        "updatedReplicas": 2,
        "instances": [
            {"name": "counter-0", "phase": "Running", "ready": True, "pid": 4242, "port": 40001},
            {"name": "counter-1", "phase": "Failed", "exitCode": -9, "reason": "Killed", "restarts": 2},
        ],
        "endpoints": ["127.0.0.1:40001"],
        "currentMetric": 3,
        "desiredReplicas": 3,
        "lastScaleTime": "2024-05-01T10:00:00Z",
    }
    obj = parse_object(doc)
    assert isinstance(obj, Application)
    assert obj.status.instances[1].exit_code == -9
    assert obj.status.current_metric == 3.0


# -- OperatorConfig ------------------------------------------------------------------------


def test_operatorconfig_defaults() -> None:
    obj = parse_object({"apiVersion": "zkop.io/v1", "kind": "OperatorConfig", "metadata": {"name": "zkop"}})
    assert isinstance(obj, OperatorConfig)
    assert obj.spec.target_namespace == ""
    assert obj.spec.leader_election.leader_elect is True
    assert obj.spec.leader_election.session_timeout_seconds == 10
    assert obj.spec.replicas == 2


def test_operatorconfig_single_replica_without_election() -> None:
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "OperatorConfig",
            "metadata": {"name": "zkop"},
            "spec": {"replicas": 1, "leaderElection": {"leaderElect": False}, "targetNamespace": "team-a"},
        }
    )
    assert isinstance(obj, OperatorConfig)
    assert obj.spec.target_namespace == "team-a"


# -- registry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ZookeeperCluster", "ZookeeperCluster"),
        ("zookeepercluster", "ZookeeperCluster"),
        ("zookeeperclusters", "ZookeeperCluster"),
        ("ZKC", "ZookeeperCluster"),
        ("zkc", "ZookeeperCluster"),
        ("zookeeperclusters.zkop.io", "ZookeeperCluster"),
        ("Application", "Application"),
        ("applications", "Application"),
        ("app", "Application"),
        ("operatorconfig", "OperatorConfig"),
        ("operatorconfigs", "OperatorConfig"),
        ("opconfig", "OperatorConfig"),
    ],
)
def test_resolve_kind(name: str, kind: str) -> None:
    info = resolve_kind(name)
    assert info.kind == kind
    assert info.model is KINDS[kind].model
    assert info.namespaced


def test_resolve_kind_details() -> None:
    info = resolve_kind("zkc")
    assert (info.plural, info.short_names, info.singular) == ("zookeeperclusters", ("zkc",), "zookeepercluster")
    assert info.api_version == "zkop.io/v1"
    assert set(KINDS) == {"ZookeeperCluster", "Application", "OperatorConfig", "ZookeeperZnode"}


@pytest.mark.parametrize("name", ["pod", "", "zk", "applicationz"])
def test_resolve_unknown_kind_lists_known_kinds(name: str) -> None:
    with pytest.raises(ValidationError) as err:
        resolve_kind(name)
    text = str(err.value)
    for kind in ("ZookeeperCluster (zookeeperclusters, zkc)", "Application", "OperatorConfig"):
        assert kind in text


# -- updates and warnings ------------------------------------------------------------------


def test_check_update_allows_spec_changes() -> None:
    old = parse_object(zkc(replicas=3))
    new = parse_object(zkc(replicas=5))
    check_update(old, new)


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("name", "other", "metadata.name"),
        ("namespace", "other", "metadata.namespace"),
        ("uid", "b", "metadata.uid"),
    ],
)
def test_check_update_refuses_immutable_changes(field: str, value: str, path: str) -> None:
    old_doc = zkc()
    old_doc["metadata"]["uid"] = "a"
    new_doc = zkc()
    new_doc["metadata"]["uid"] = "a"
    new_doc["metadata"][field] = value
    with pytest.raises(ResourceValidationError) as err:
        check_update(parse_object(old_doc), parse_object(new_doc))
    assert [p.path for p in err.value.problems] == [path]
    assert "immutable" in str(err.value)


def test_check_update_refuses_kind_change_and_ignores_missing_uid() -> None:
    old = parse_object(zkc())
    with pytest.raises(ResourceValidationError, match="kind"):
        check_update(old, parse_object({**app(), "metadata": {"name": "orders-zk"}}))
    with_uid = zkc()
    with_uid["metadata"]["uid"] = "u1"
    check_update(parse_object(with_uid), old)


def test_even_replicas_warn() -> None:
    assert warnings_for(parse_object(zkc(replicas=3))) == []
    warnings = warnings_for(parse_object(zkc(replicas=4)))
    assert len(warnings) == 1
    assert warnings[0].startswith("spec.replicas:") and "odd" in warnings[0]


def test_replicas_outside_autoscaling_range_warn() -> None:
    assert warnings_for(parse_object(app(replicas=2, autoscaling={"maxReplicas": 3}))) == []
    warnings = warnings_for(parse_object(app(replicas=5, autoscaling={"maxReplicas": 3})))
    assert len(warnings) == 1 and "autoscal" in warnings[0]


# -- examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("zookeepercluster.yaml", ZookeeperCluster),
        ("application.yaml", Application),
        ("operatorconfig.yaml", OperatorConfig),
    ],
)
def test_examples_parse(filename: str, kind: type[Any]) -> None:
    path = EXAMPLES / filename
    objs = load_yaml(path.read_text(), source=str(path))
    assert len(objs) == 1
    obj = objs[0]
    assert isinstance(obj, kind)
    assert warnings_for(obj) == []
    assert load_yaml(dump_yaml(obj), source="dump") == objs


def test_example_contents() -> None:
    zk = load_yaml((EXAMPLES / "zookeepercluster.yaml").read_text(), source="zk")[0]
    assert isinstance(zk, ZookeeperCluster)
    assert (zk.metadata.name, zk.spec.replicas) == ("orders-zk", 3)
    counter = load_yaml((EXAMPLES / "application.yaml").read_text(), source="app")[0]
    assert isinstance(counter, Application)
    assert counter.metadata.name == "counter"
    assert counter.spec.template.command == ["python3", "-m", "zkop.examples.counter"]
    readiness = counter.spec.probes.readiness
    assert readiness is not None and readiness.http is not None and readiness.http.port == "http"
    assert counter.spec.autoscaling is not None
    assert counter.spec.autoscaling.metrics[0].type == "load"
    assert counter.spec.zookeeper is not None
    assert counter.spec.zookeeper.cluster_ref.name == "orders-zk"


def test_errors_are_zkop_errors() -> None:
    with pytest.raises(ZkopError):
        parse_object(zkc(replicas=0))
