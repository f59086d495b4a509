"""Refusals name the field path, the value and what is allowed; YAML in/out; explain; schema."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from zkop.api import (
    InvalidYamlError,
    Problem,
    ResourceValidationError,
    dump_yaml,
    explain,
    json_schema,
    load_yaml,
    parse_object,
    to_dict,
)
from zkop.api.zookeepercluster import RESERVED_CONFIG_KEYS
from zkop.errors import ValidationError


def zkc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "zkop.io/v1",
        "kind": "ZookeeperCluster",
        "metadata": {"name": "orders-zk"},
        "spec": spec,
    }


def app(**spec: Any) -> dict[str, Any]:
    spec.setdefault("template", {"command": ["python3", "-m", "svc"], "ports": [{"name": "http"}]})
    return {
        "apiVersion": "zkop.io/v1",
        "kind": "Application",
        "metadata": {"name": "counter"},
        "spec": spec,
    }


def opconfig(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "zkop.io/v1",
        "kind": "OperatorConfig",
        "metadata": {"name": "zkop"},
        "spec": spec,
    }


def refuse(doc: Any) -> ResourceValidationError:
    with pytest.raises(ResourceValidationError) as err:
        parse_object(doc, source="test.yaml")
    error = err.value
    text = str(error)
    assert "pydantic" not in text and "Input should" not in text and "errors.pydantic" not in text
    assert "test.yaml" in text
    return error


def problem_at(error: ResourceValidationError, path: str) -> str:
    for problem in error.problems:
        if problem.path == path:
            assert f"{path}: " in str(error)
            return problem.message
    raise AssertionError(f"no problem at {path!r}; problems: {error.problems}")


# -- envelope ------------------------------------------------------------------------------


def test_api_version_and_kind_are_checked() -> None:
    doc = zkc()
    doc["apiVersion"] = "v1"
    assert "zkop.io/v1" in problem_at(refuse(doc), "apiVersion")
    doc = zkc()
    del doc["apiVersion"]
    assert "missing" in problem_at(refuse(doc), "apiVersion")
    doc = zkc()
    doc["kind"] = "Pod"
    msg = problem_at(refuse(doc), "kind")
    assert '"Pod"' in msg and "ZookeeperCluster" in msg
    doc["kind"] = "zookeepercluster"
    assert "did you mean ZookeeperCluster" in problem_at(refuse(doc), "kind")
    doc = zkc()
    del doc["kind"]
    assert "missing" in problem_at(refuse(doc), "kind")


def test_wrong_api_version_still_reports_other_problems() -> None:
    doc = zkc(replicas=0)
    doc["apiVersion"] = "zkop.io/v2"
    error = refuse(doc)
    assert {p.path for p in error.problems} == {"apiVersion", "spec.replicas"}


@pytest.mark.parametrize("doc", [[], "text", 3, None])
def test_document_must_be_a_mapping(doc: Any) -> None:
    error = refuse(doc)
    assert "mapping" in error.problems[0].message


def test_metadata_and_name_are_required() -> None:
    doc = zkc()
    del doc["metadata"]
    assert "missing" in problem_at(refuse(doc), "metadata")
    doc = zkc()
    doc["metadata"] = {"namespace": "x"}
    assert "missing" in problem_at(refuse(doc), "metadata.name")


@pytest.mark.parametrize("name", ["Orders", "orders_zk", "-orders", "orders-", "", "a" * 64, "orders.zk", "ördérs"])
def test_bad_names_are_refused(name: str) -> None:
    doc = zkc()
    doc["metadata"]["name"] = name
    msg = problem_at(refuse(doc), "metadata.name")
    assert "DNS-1123" in msg


def test_bad_namespace_is_refused() -> None:
    doc = zkc()
    doc["metadata"]["namespace"] = "Prod"
    assert "DNS-1123" in problem_at(refuse(doc), "metadata.namespace")


def test_bad_labels_annotations_finalizers() -> None:
    doc = zkc()
    doc["metadata"]["labels"] = {
        "good": "ok",
        "bad key": "x",
        "Zkop.IO/x": "y",
        "k": "bad value!",
        "n": 3,
    }
    doc["metadata"]["annotations"] = {"-nope": "free text is fine"}
    doc["metadata"]["finalizers"] = ["zkop.io/cleanup", "not valid"]
    error = refuse(doc)
    # a non-string value is reported by type first; keys are then checked on a later pass
    assert "quote" in problem_at(error, "metadata.labels.n")
    doc["metadata"]["labels"].pop("n")
    error = refuse(doc)
    assert "label key" in problem_at(error, 'metadata.labels["bad key"]')
    assert "prefix" in problem_at(error, 'metadata.labels["Zkop.IO/x"]')
    assert "label value" in problem_at(error, "metadata.labels.k")
    assert "annotation key" in problem_at(error, 'metadata.annotations["-nope"]')
    assert "finalizer" in problem_at(error, "metadata.finalizers[1]")


def test_naive_timestamps_are_refused() -> None:
    doc = zkc()
    doc["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00"
    assert "time zone" in problem_at(refuse(doc), "metadata.creationTimestamp")


# -- unknown fields and wrong types --------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ((), "bogus"),
        (("metadata",), "metadata.bogus"),
        (("spec",), "spec.bogus"),
        (("spec", "config"), "spec.config.bogus"),
        (("spec", "config", "autopurge"), "spec.config.autopurge.bogus"),
        (("spec", "jvm"), "spec.jvm.bogus"),
        (("spec", "resources", "requests"), "spec.resources.requests.bogus"),
    ],
)
def test_unknown_fields_are_refused(where: tuple[str, ...], path: str) -> None:
    doc = zkc(config={"autopurge": {}}, jvm={}, resources={"requests": {}})
    node = doc
    for key in where:
        node = node[key]
    node["bogus"] = 1
    msg = problem_at(refuse(doc), path)
    assert msg.startswith("unknown field")
    assert "allowed fields" in msg


def test_unknown_field_lists_allowed_fields() -> None:
    msg = problem_at(refuse(zkc(replica=3)), "spec.replica")
    assert "replicas" in msg and "zookeeperHome" in msg


def test_snake_case_is_not_accepted_in_documents() -> None:
    msg = problem_at(refuse(zkc(zookeeper_home="/opt/zk")), "spec.zookeeper_home")
    assert "zookeeperHome" in msg


@pytest.mark.parametrize(
    ("spec", "path", "expected"),
    [
        ({"replicas": "3"}, "spec.replicas", 'expected an integer, got "3"'),
        ({"replicas": 3.0}, "spec.replicas", "integer"),
        ({"replicas": True}, "spec.replicas", "integer"),
        ({"paused": "yes"}, "spec.paused", "true or false"),
        ({"config": []}, "spec.config", "mapping"),
        ({"config": {"additionalConfig": {"a": [1]}}}, "spec.config.additionalConfig.a", "string"),
        ({"jvm": {"heap": [1]}}, "spec.jvm.heap", "quantity"),
        ({"image": 5}, "spec.image", "quote"),
    ],
)
def test_wrong_types_are_refused(spec: dict[str, Any], path: str, expected: str) -> None:
    assert expected in problem_at(refuse(zkc(**spec)), path)


# -- ZookeeperCluster ----------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [0, 10, -1])
def test_replicas_range(replicas: int) -> None:
    msg = problem_at(refuse(zkc(replicas=replicas)), "spec.replicas")
    assert str(replicas) in msg and "1 to 9" in msg


@pytest.mark.parametrize(
    "key",
    [
        *RESERVED_CONFIG_KEYS,
        "server.1",
        "server.12",
        "group.1",
        "weight.2",
        "zookeeper.skipACL",
        "zookeeper.DigestAuthenticationProvider.superDigest",
    ],
)
def test_reserved_config_keys_are_refused(key: str) -> None:
    error = refuse(zkc(config={"additionalConfig": {key: "x", "snapCount": "1000"}}))
    assert len(error.problems) == 1
    problem = error.problems[0]
    assert problem.path.startswith("spec.config.additionalConfig")
    assert key in problem.path
    assert "managed by zkop" in problem.message and key in problem.message


def test_skip_acl_path_and_reason() -> None:
    msg = problem_at(
        refuse(zkc(config={"additionalConfig": {"skipACL": "yes"}})), "spec.config.additionalConfig.skipACL"
    )
    assert "never turns ACLs off" in msg
    error = refuse(zkc(config={"additionalConfig": {"4lw.commands.whitelist": "*"}}))
    assert error.problems[0].path == 'spec.config.additionalConfig["4lw.commands.whitelist"]'


@pytest.mark.parametrize(
    ("key", "value"),
    [("bad key", "x"), ("=x", "x"), (".hidden", "x"), ("ok", "a\nserver.1=evil:1:2")],
)
def test_additional_config_syntax(key: str, value: str) -> None:
    error = refuse(zkc(config={"additionalConfig": {key: value}}))
    assert error.problems[0].path.startswith("spec.config.additionalConfig")


def test_session_timeouts() -> None:
    msg = problem_at(refuse(zkc(config={"minSessionTimeout": 3999})), "spec.config.minSessionTimeout")
    assert "3999" in msg and "4000" in msg
    msg = problem_at(
        refuse(zkc(config={"minSessionTimeout": 10000, "maxSessionTimeout": 9000})),
        "spec.config.maxSessionTimeout",
    )
    assert "9000" in msg and "10000" in msg
    msg = problem_at(refuse(zkc(config={"tickTime": 3000, "maxSessionTimeout": 5000})), "spec.config.maxSessionTimeout")
    assert "6000" in msg
    problem_at(refuse(zkc(config={"minSessionTimeout": 50000})), "spec.config.minSessionTimeout")
    parse_object(zkc(config={"minSessionTimeout": 4000, "maxSessionTimeout": 4000}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("tickTime", 0), ("initLimit", 0), ("syncLimit", 0), ("maxClientCnxns", -1)],
)
def test_config_ranges(field: str, value: int) -> None:
    msg = problem_at(refuse(zkc(config={field: value})), f"spec.config.{field}")
    assert "out of range" in msg and "allowed" in msg


def test_autopurge_range() -> None:
    msg = problem_at(refuse(zkc(config={"autopurge": {"snapRetainCount": 2}})), "spec.config.autopurge.snapRetainCount")
    assert "3 to" in msg


def test_request_above_limit() -> None:
    error = refuse(
        zkc(resources={"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "1500m", "memory": "1Gi"}})
    )
    cpu = problem_at(error, "spec.resources.requests.cpu")
    assert "2" in cpu and "1500m" in cpu and "limit" in cpu
    problem_at(error, "spec.resources.requests.memory")


def test_bad_quantity_path() -> None:
    msg = problem_at(refuse(zkc(resources={"limits": {"memory": "lots"}})), "spec.resources.limits.memory")
    assert '"lots"' in msg or "'lots'" in msg
    assert "200Mi" in msg


def test_heap() -> None:
    assert "16Mi" in problem_at(refuse(zkc(jvm={"heap": "1Mi"})), "spec.jvm.heap")
    msg = problem_at(refuse(zkc(jvm={"heap": "1Gi"}, resources={"limits": {"memory": "512Mi"}})), "spec.jvm.heap")
    assert "512Mi" in msg


def test_reclaim_policy() -> None:
    msg = problem_at(refuse(zkc(storage={"reclaimPolicy": "Keep"})), "spec.storage.reclaimPolicy")
    assert '"Keep"' in msg and "Retain" in msg and "Delete" in msg


def test_all_problems_of_a_document_are_collected() -> None:
    doc = zkc(
        replicas=12,
        config={"additionalConfig": {"skipACL": "true", "server.1": "h:1:2"}},
        resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
        storage={"reclaimPolicy": "Keep"},
        bogus=1,
    )
    doc["metadata"]["name"] = "Bad_Name"
    error = refuse(doc)
    paths = [p.path for p in error.problems]
    assert paths == [
        "metadata.name",
        "spec.replicas",
        "spec.config.additionalConfig.skipACL",
        'spec.config.additionalConfig["server.1"]',
        "spec.resources.requests.cpu",
        "spec.storage.reclaimPolicy",
        "spec.bogus",
    ]
    assert all(isinstance(p, Problem) for p in error.problems)
    path, message = error.problems[0]
    assert path == "metadata.name" and "DNS-1123" in message
    assert error.kind == "ZookeeperCluster" and error.name == "Bad_Name"
    assert isinstance(error, ValidationError)
    assert "7 problems" in str(error)


def test_status_is_validated_too() -> None:
    doc = zkc()
    doc["status"] = {"members": [{"id": 0, "role": "boss"}], "conditions": [{"type": "Ready", "status": "yes"}]}
    error = refuse(doc)
    problem_at(error, "status.members[0].id")
    assert "leader" in problem_at(error, "status.members[0].role")
    assert "Unknown" in problem_at(error, "status.conditions[0].status")


# -- Application ---------------------------------------------------------------------------


def test_application_template_required() -> None:
    doc = app()
    del doc["spec"]["template"]
    assert "missing" in problem_at(refuse(doc), "spec.template")


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ({"command": []}, "spec.template.command", "at least 1"),
        ({"command": [""]}, "spec.template.command[0]", "empty"),
        ({"command": "python3 app.py"}, "spec.template.command", "list"),
        (
            {"command": ["x"], "ports": [{"name": "http", "containerPort": 70000}]},
            "spec.template.ports[0].containerPort",
            "0 to 65535",
        ),
        (
            {"command": ["x"], "ports": [{"name": "http", "containerPort": -1}]},
            "spec.template.ports[0].containerPort",
            "0 to 65535",
        ),
        ({"command": ["x"], "ports": [{"name": "HTTP"}]}, "spec.template.ports[0].name", "port name"),
        ({"command": ["x"], "ports": [{"name": "a-very-long-port-name"}]}, "spec.template.ports[0].name", "port name"),
        (
            {"command": ["x"], "ports": [{"name": "http"}, {"name": "http"}]},
            "spec.template.ports[1].name",
            "more than once",
        ),
        (
            {"command": ["x"], "ports": [{"name": "a", "containerPort": 80}, {"name": "b", "containerPort": 80}]},
            "spec.template.ports[1].containerPort",
            "more than once",
        ),
        ({"command": ["x"], "ports": [{"containerPort": 80}]}, "spec.template.ports[0].name", "missing"),
        ({"command": ["x"], "env": {"A": {"b": 1}}}, "spec.template.env.A", "string"),
        ({"command": ["x"], "env": [{"name": "1A", "value": "x"}]}, "spec.template.env[0].name", "variable name"),
        ({"command": ["x"], "env": [{"name": "A"}, {"name": "A"}]}, "spec.template.env[1].name", "more than once"),
        ({"command": ["x"], "env": [{"value": "x"}]}, "spec.template.env[0].name", "missing"),
        ({"command": ["x"], "env": "A=1"}, "spec.template.env", "list"),
    ],
)
def test_bad_templates(template: dict[str, Any], path: str, expected: str) -> None:
    assert expected in problem_at(refuse(app(template=template)), path)


@pytest.mark.parametrize(
    ("probes", "path", "expected"),
    [
        ({"readiness": {"periodSeconds": 1}}, "spec.probes.readiness", "exactly one"),
        (
            {"readiness": {"tcp": {"port": 80}, "http": {"port": 80}}},
            "spec.probes.readiness",
            "tcp and http are set",
        ),
        ({"readiness": {"tcp": {"port": 0}}}, "spec.probes.readiness.tcp.port", "out of range"),
        ({"readiness": {"tcp": {"port": True}}}, "spec.probes.readiness.tcp.port", "port number"),
        ({"liveness": {"tcp": {"port": "web"}}}, "spec.probes.liveness.tcp.port", "not declared"),
        ({"readiness": {"http": {"path": "x", "port": "http"}}}, "spec.probes.readiness.http.path", "'/'"),
        ({"readiness": {"exec": {"command": []}}}, "spec.probes.readiness.exec.command", "at least 1"),
        (
            {"readiness": {"tcp": {"port": "http"}, "periodSeconds": 0}},
            "spec.probes.readiness.periodSeconds",
            "1 to 3600",
        ),
        (
            {"liveness": {"tcp": {"port": "http"}, "successThreshold": 2}},
            "spec.probes.liveness.successThreshold",
            "must have successThreshold 1",
        ),
        ({"startup": {"tcp": {"port": "http"}}}, "spec.probes.startup", "unknown field"),
    ],
)
def test_bad_probes(probes: dict[str, Any], path: str, expected: str) -> None:
    assert expected in problem_at(refuse(app(probes=probes)), path)


def test_probe_port_may_be_a_number_or_declared_name() -> None:
    parse_object(app(probes={"readiness": {"tcp": {"port": 8080}}, "liveness": {"http": {"port": "http"}}}))


@pytest.mark.parametrize(
    ("autoscaling", "path", "expected"),
    [
        ({"minReplicas": 3, "maxReplicas": 2}, "spec.autoscaling.maxReplicas", "below minReplicas"),
        ({"minReplicas": 1}, "spec.autoscaling.maxReplicas", "missing"),
        ({"maxReplicas": 3, "metrics": []}, "spec.autoscaling.metrics", "at least 1"),
        ({"maxReplicas": 3, "metrics": [{"type": "memory"}]}, "spec.autoscaling.metrics[0].type", "'cpu', 'load'"),
        ({"maxReplicas": 3, "metrics": [{"type": "cpu"}]}, "spec.autoscaling.metrics[0].targetUtilization", "required"),
        (
            {"maxReplicas": 3, "metrics": [{"type": "cpu", "targetUtilization": 80, "targetValue": 3}]},
            "spec.autoscaling.metrics[0].targetValue",
            "not allowed",
        ),
        ({"maxReplicas": 3, "metrics": [{"type": "load"}]}, "spec.autoscaling.metrics[0].targetValue", "required"),
        (
            {"maxReplicas": 3, "metrics": [{"type": "load", "targetValue": 0}]},
            "spec.autoscaling.metrics[0].targetValue",
            "more than 0",
        ),
        (
            {"maxReplicas": 3, "metrics": [{"type": "cpu", "targetUtilization": 150}]},
            "spec.autoscaling.metrics[0].targetUtilization",
            "1 to 100",
        ),
        (
            {"maxReplicas": 3, "metrics": [{"type": "load", "targetValue": 1}, {"type": "load", "targetValue": 2}]},
            "spec.autoscaling.metrics[1].type",
            "more than once",
        ),
        (
            {"maxReplicas": 3, "scaleDownStabilizationSeconds": -5},
            "spec.autoscaling.scaleDownStabilizationSeconds",
            "0 to 3600",
        ),
    ],
)
def test_bad_autoscaling(autoscaling: dict[str, Any], path: str, expected: str) -> None:
    assert expected in problem_at(refuse(app(autoscaling=autoscaling)), path)


@pytest.mark.parametrize(
    ("rolling", "path", "expected"),
    [
        ({"maxSurge": 0, "maxUnavailable": 0}, "spec.strategy.rollingUpdate.maxUnavailable", "both zero"),
        ({"maxSurge": "0%", "maxUnavailable": 0}, "spec.strategy.rollingUpdate.maxUnavailable", "both zero"),
        ({"maxSurge": "150%"}, "spec.strategy.rollingUpdate.maxSurge", "percentage"),
        ({"maxSurge": "abc"}, "spec.strategy.rollingUpdate.maxSurge", "percentage"),
        ({"maxUnavailable": -1}, "spec.strategy.rollingUpdate.maxUnavailable", "out of range"),
        ({"maxUnavailable": 1.5}, "spec.strategy.rollingUpdate.maxUnavailable", "whole number"),
    ],
)
def test_bad_rolling_update(rolling: dict[str, Any], path: str, expected: str) -> None:
    assert expected in problem_at(refuse(app(strategy={"rollingUpdate": rolling})), path)


def test_other_application_fields() -> None:
    assert "0 to 1000" in problem_at(refuse(app(replicas=-1)), "spec.replicas")
    msg = problem_at(refuse(app(service={"loadBalancing": "fastest"})), "spec.service.loadBalancing")
    assert "round_robin" in msg and "sticky" in msg
    msg = problem_at(refuse(app(zookeeper={"clusterRef": {"name": "Orders"}})), "spec.zookeeper.clusterRef.name")
    assert "DNS-1123" in msg
    assert "missing" in problem_at(refuse(app(zookeeper={})), "spec.zookeeper.clusterRef")


# -- OperatorConfig ------------------------------------------------------------------------


def test_bad_operatorconfig() -> None:
    for seconds in (1, 121):
        msg = problem_at(
            refuse(opconfig(leaderElection={"sessionTimeoutSeconds": seconds})),
            "spec.leaderElection.sessionTimeoutSeconds",
        )
        assert "2 to 120" in msg
    assert "DNS-1123" in problem_at(refuse(opconfig(targetNamespace="All")), "spec.targetNamespace")
    msg = problem_at(refuse(opconfig(leaderElection={"leaderElect": False})), "spec.leaderElection.leaderElect")
    assert "fencing" in msg
    assert "out of range" in problem_at(refuse(opconfig(replicas=0)), "spec.replicas")


# -- YAML ----------------------------------------------------------------------------------

GOOD_ZKC = """\
apiVersion: zkop.io/v1
kind: ZookeeperCluster
metadata:
  name: orders-zk
spec:
  replicas: 3
"""


def test_load_yaml_multi_document_skips_empty_ones() -> None:
    text = "---\n" + GOOD_ZKC + "---\n---\n# only a comment\n---\n" + GOOD_ZKC.replace("orders-zk", "b")
    objs = load_yaml(text, source="two.yaml")
    assert [o.metadata.name for o in objs] == ["orders-zk", "b"]
    assert load_yaml("", source="empty.yaml") == []


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("apiVersion: zkop.io/v1\nkind: [ZookeeperCluster\n", 3, 1),
        ("apiVersion: zkop.io/v1\n  kind: x\n", 2, 7),
        ("a: 1\nb:\n\t- c\n", 3, 1),
        ("metadata:\n  name: a\n  name: b\n", 3, 3),
    ],
)
def test_invalid_yaml_reports_line_and_column(text: str, line: int, column: int) -> None:
    with pytest.raises(InvalidYamlError) as err:
        load_yaml(text, source="bad.yaml")
    assert (err.value.line, err.value.column) == (line, column)
    assert f"bad.yaml, line {line}, column {column}" in str(err.value)
    assert isinstance(err.value, ValidationError)


def test_unsafe_yaml_tags_are_refused() -> None:
    with pytest.raises(InvalidYamlError):
        load_yaml("!!python/object/apply:os.system ['true']\n", source="evil.yaml")


def test_each_document_error_names_index_and_source() -> None:
    bad = GOOD_ZKC.replace("replicas: 3", "replicas: 30")
    text = GOOD_ZKC + "---\n" + bad + "---\n" + bad.replace("orders-zk", "Other")
    with pytest.raises(ResourceValidationError) as err:
        load_yaml(text, source="many.yaml")
    error = err.value
    assert [d.document for d in error.documents] == [2, 3]
    assert [d.line for d in error.documents] == [8, 15]
    text = str(error)
    assert "many.yaml, document 2, line 8" in text
    assert "many.yaml, document 3, line 15" in text
    assert [p.path for p in error.problems] == ["spec.replicas", "metadata.name", "spec.replicas"]


def test_single_bad_document_error() -> None:
    with pytest.raises(ResourceValidationError) as err:
        load_yaml("- 1\n- 2\n", source="list.yaml")
    assert err.value.document == 1
    assert "list.yaml, document 1" in str(err.value)


def test_round_trip_is_stable() -> None:
    doc = app(
        replicas=3,
        template={"command": ["x"], "env": {"A": "1"}, "ports": [{"name": "http", "containerPort": 0}]},
        probes={"readiness": {"http": {"port": "http"}}},
        resources={"requests": {"cpu": 0.25, "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "1e9"}},
        autoscaling={"maxReplicas": 5, "metrics": [{"type": "load", "targetValue": 7}]},
    )
    doc["metadata"]["creationTimestamp"] = "2024-05-01T10:00:00Z"
    doc["status"] = {"lastScaleTime": "2024-05-01T10:00:00.5+02:00", "currentMetric": 1.5}
    first = parse_object(doc)
    text = dump_yaml(first)
    second = load_yaml(text, source="dump")[0]
    assert second == first
    assert dump_yaml(second) == text
    assert to_dict(second) == to_dict(first)
    data = to_dict(first)
    assert data["spec"]["resources"]["requests"]["cpu"] == "0.25"
    assert data["spec"]["resources"]["limits"]["memory"] == "1e9"
    assert "uid" not in data["metadata"] and "labels" not in data["metadata"]
    assert list(data) == ["apiVersion", "kind", "metadata", "spec", "status"]


def test_dump_yaml_many() -> None:
    objs = load_yaml(GOOD_ZKC + "---\n" + GOOD_ZKC.replace("orders-zk", "b"), source="x")
    text = dump_yaml(objs)
    assert text.count("kind: ZookeeperCluster") == 2
    assert load_yaml(text, source="y") == objs


def test_parse_does_not_modify_input() -> None:
    doc = zkc(config={"additionalConfig": {"snapCount": 5}})
    before = copy.deepcopy(doc)
    parse_object(doc)
    assert doc == before


# -- explain and schema --------------------------------------------------------------------


def test_explain_kind() -> None:
    text = explain("zkc")
    assert "KIND:     ZookeeperCluster" in text
    assert "VERSION:  zkop.io/v1" in text
    for field in ("apiVersion", "kind", "metadata", "spec", "status"):
        assert f"  {field}\t<" in text


def test_explain_field() -> None:
    text = explain("ZookeeperCluster.spec.config")
    assert "FIELD:    spec.config <object>" in text
    assert "tickTime\t<integer>" in text
    assert "Default: 2000." in text
    assert "additionalConfig\t<map[string]string>" in text
    assert "zkop owns" not in text or "refused" in text
    leaf = explain("zkc.spec.replicas")
    assert "FIELD:    spec.replicas <integer>" in leaf
    assert "minimum 1" in leaf and "maximum 9" in leaf
    assert "FIELDS:" not in leaf


def test_explain_lists_and_special_types() -> None:
    text = explain("app.spec.template.ports")
    assert "<[]object>" in text
    assert "containerPort\t<integer>" in text and "name\t<string> -required-" in text
    assert "heap\t<quantity>" in explain("zkc.spec.jvm")
    assert "port\t<int-or-string>" in explain("applications.spec.probes.readiness.tcp")
    assert "One of: Retain, Delete." in explain("zkc.spec.storage.reclaimPolicy")
    assert "maxSurge\t<int-or-string>" in explain("app.spec.strategy.rollingUpdate")
    assert "ready\t<boolean>" in explain("zkc.status.members")
    assert "leaderElect\t<boolean>" in explain("opconfig.spec.leaderElection")
    # case-insensitive field names and list indexes are tolerated
    assert explain("zkc.SPEC.Config") == explain("zkc.spec.config")
    assert explain("app.spec.template.ports[0]") == explain("app.spec.template.ports")


def test_every_field_has_a_description() -> None:
    for kind in ("zkc", "app", "opconfig"):
        assert "(no description)" not in explain(kind)
        schema = json_schema(kind)
        defs = schema.get("$defs", {})
        for name, definition in defs.items():
            for field, prop in definition.get("properties", {}).items():
                # pydantic leaves out a field's description when it equals its model's
                target = defs.get(str(prop.get("$ref", "")).rsplit("/", 1)[-1], {})
                described = prop.get("description") or target.get("description")
                assert described, f"{name}.{field} has no description"


@pytest.mark.parametrize("path", ["zkc.spec.nope", "zkc.spec.replicas.deeper", "pods"])
def test_explain_unknown(path: str) -> None:
    with pytest.raises(ValidationError) as err:
        explain(path)
    assert "replicas" in str(err.value) or "unknown kind" in str(err.value) or "none" in str(err.value)


def test_json_schema() -> None:
    schema = json_schema("zkc")
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    inline = json_schema("ZookeeperCluster", inline=True)
    assert "$defs" not in inline
    assert "$ref" not in str(inline)
    spec = inline["properties"]["spec"]
    assert spec["properties"]["replicas"]["maximum"] == 9
    heap = spec["properties"]["jvm"]["properties"]["heap"]
    assert heap["x-kubernetes-int-or-string"] is True
    assert heap["default"] == "128Mi"
