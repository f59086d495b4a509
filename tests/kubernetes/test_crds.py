"""The CRDs of deploy/crds on a real API server: they install, every example is accepted and
defaulted as zkop defaults it, and the API server and zkop's own validation agree on what is
invalid and on the field they name. ``kubectl get`` shows the printer columns and
``kubectl scale`` goes through the scale subresource."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from zkop.api import KINDS, ResourceValidationError, load_yaml, parse_object, to_dict
from zkop.api.crd import crds
from zkop.testing.kube import ControlPlane

pytestmark = pytest.mark.kubernetes

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "crds"
EXAMPLES = ROOT / "examples"

JsonDict = dict[str, Any]


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ns(cp: ControlPlane) -> Iterator[str]:
    """One namespace for the table tests of this module (they create nothing that stays, or
    objects with names of their own)."""
    name = f"crds-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cp.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false", check=False)


# -- helpers -----------------------------------------------------------------------------


def create(cp: ControlPlane, ns: str, doc: JsonDict, *, dry_run: bool = False) -> tuple[int, JsonDict]:
    """POST a document as kubectl does (strict field validation); the status and the body."""
    plural = KINDS[doc["kind"]].plural
    query = "?fieldValidation=Strict" + ("&dryRun=All" if dry_run else "")
    status, body = cp.request(f"/apis/zkop.io/v1/namespaces/{ns}/{plural}{query}", method="POST", body=doc)
    return status, json.loads(body)


def server_paths(status: int, body: JsonDict) -> set[str]:
    """The fields a refusal names: the causes' fields (422), or the unknown fields strict
    decoding names (400). A cause without a field ("some rules were not checked") is not one."""
    if status == 400:
        return set(re.findall(r'unknown field "([^"]+)"', body.get("message", "")))
    causes = body.get("details", {}).get("causes", [])
    return {c["field"].lstrip(".") for c in causes if c.get("field") and c["field"] != "<nil>"}


def zkop_verdict(doc: JsonDict) -> set[str]:
    """The paths zkop's own validation names (empty: accepted)."""
    try:
        parse_object(doc, source="case")
    except ResourceValidationError as err:
        return {p.path for p in err.problems}
    return set()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:5]}"


def zkc(**spec: Any) -> JsonDict:
    return {"apiVersion": "zkop.io/v1", "kind": "ZookeeperCluster", "metadata": {"name": "zk"}, "spec": spec}


def app(**spec: Any) -> JsonDict:
    spec.setdefault("template", {"command": ["python3", "-m", "svc"], "ports": [{"name": "http"}]})
    return {"apiVersion": "zkop.io/v1", "kind": "Application", "metadata": {"name": "svc"}, "spec": spec}


def opconfig(**spec: Any) -> JsonDict:
    return {"apiVersion": "zkop.io/v1", "kind": "OperatorConfig", "metadata": {"name": "zkop"}, "spec": spec}


def znode(**spec: Any) -> JsonDict:
    spec.setdefault("clusterRef", {"name": "zk"})
    return {"apiVersion": "zkop.io/v1", "kind": "ZookeeperZnode", "metadata": {"name": "tenant"}, "spec": spec}


def scaling(*metrics: JsonDict, **more: Any) -> JsonDict:
    return {"maxReplicas": 4, "metrics": list(metrics), **more}


# -- install -----------------------------------------------------------------------------


def test_crds_install_and_are_established(cp: ControlPlane) -> None:
    for definition in crds():
        name = definition["metadata"]["name"]
        stored = cp.kubectl_json("get", "crd", name)
        conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
        assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True", conditions
        assert stored["status"]["acceptedNames"]["shortNames"] == definition["spec"]["names"]["shortNames"]
    resources = cp.kubectl("api-resources", "--api-group=zkop.io", "-o", "wide").stdout
    for short in ("zkc", "app", "opconfig"):
        assert re.search(rf"\b{short}\b", resources), resources
    assert "zkop" in resources  # the category
    # the schema is published: kubectl explain reads the models' descriptions
    explained = cp.kubectl("explain", "zkc.spec.replicas").stdout
    assert "Number of voting members (1-9)" in explained


def _env_as_list(spec: JsonDict) -> JsonDict:
    """zkop turns ``env: {NAME: value}`` into the list form; the API server keeps what it got."""
    template = spec.get("template", {})
    if isinstance(template.get("env"), dict):
        template["env"] = [{"name": k, "value": v} for k, v in template["env"].items()]
    return spec


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_accepted_and_defaulted_as_zkop_does(cp: ControlPlane, ns: str, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    created = cp.kubectl("create", "-n", ns, "-f", str(path), "-o", "json").stdout
    stored = json.loads(created)
    items = stored["items"] if stored.get("kind") == "List" else [stored]
    for raw, obj, item in zip(yaml.safe_load_all(text), load_yaml(text, source=str(path)), items, strict=True):
        assert item["metadata"]["name"] == raw["metadata"]["name"]
        # the API server fills in the same defaults as the models do, field for field
        assert _env_as_list(copy.deepcopy(item["spec"])) == to_dict(obj)["spec"]
        # and what it stores, zkop reads back as the same object
        back = parse_object({**item, "metadata": {"name": item["metadata"]["name"]}})
        assert back.spec == obj.spec


# -- the same verdict, the same field ----------------------------------------------------


@dataclass(frozen=True)
class Invalid:
    """A document both refuse, naming ``path``. Where Kubernetes cannot point below a map or a
    list item (a map key, a duplicate list-map key, an index in a CEL rule) it names
    ``server_path``, the map or item that holds zkop's ``path``."""

    id: str
    doc: JsonDict
    path: str
    server_path: str = ""
    kind: str = field(default="")  # what the case covers: type, enum, bound, pattern, required, unknown, cel
    rule: str = ""  # (cel) the start of the message of the rule it breaks


def _additional_config(n: int) -> JsonDict:
    return {f"key{i}": "v" for i in range(n)}


INVALID = [
    # types
    Invalid("replicas-as-string", zkc(replicas="3"), "spec.replicas", kind="type"),
    Invalid("command-as-string", app(template={"command": "python3"}), "spec.template.command", kind="type"),
    Invalid(
        "leader-elect-as-string",
        opconfig(leaderElection={"leaderElect": "yes"}),
        "spec.leaderElection.leaderElect",
        kind="type",
    ),
    Invalid("paused-as-number", zkc(paused=1), "spec.paused", kind="type"),
    # enums
    Invalid("reclaim-policy", zkc(storage={"reclaimPolicy": "Keep"}), "spec.storage.reclaimPolicy", kind="enum"),
    Invalid("load-balancing", app(service={"loadBalancing": "fastest"}), "spec.service.loadBalancing", kind="enum"),
    Invalid(
        "metric-type",
        app(autoscaling=scaling({"type": "memory", "targetValue": 1})),
        "spec.autoscaling.metrics[0].type",
        kind="enum",
    ),
    # bounds
    Invalid("replicas-above-9", zkc(replicas=10), "spec.replicas", kind="bound"),
    Invalid("tick-time-below-100", zkc(config={"tickTime": 50}), "spec.config.tickTime", kind="bound"),
    Invalid("negative-replicas", app(replicas=-1), "spec.replicas", kind="bound"),
    Invalid(
        "session-timeout-seconds-above-120",
        opconfig(leaderElection={"sessionTimeoutSeconds": 121}),
        "spec.leaderElection.sessionTimeoutSeconds",
        kind="bound",
    ),
    Invalid("no-metrics", app(autoscaling=scaling()), "spec.autoscaling.metrics", kind="bound"),
    Invalid("empty-command", app(template={"command": []}), "spec.template.command", kind="bound"),
    Invalid(
        "target-value-zero",
        app(autoscaling=scaling({"type": "load", "targetValue": 0})),
        "spec.autoscaling.metrics[0].targetValue",
        kind="bound",
    ),
    Invalid(
        "too-many-additional-config-keys",
        zkc(config={"additionalConfig": _additional_config(257)}),
        "spec.config.additionalConfig",
        kind="bound",
    ),
    Invalid(
        "tcp-port-0", app(probes={"readiness": {"tcp": {"port": 0}}}), "spec.probes.readiness.tcp.port", kind="bound"
    ),
    # patterns
    Invalid(
        "cluster-ref-not-a-dns-label",
        app(zookeeper={"clusterRef": {"name": "Orders"}}),
        "spec.zookeeper.clusterRef.name",
        kind="pattern",
    ),
    Invalid(
        "port-name-without-a-letter",
        app(template={"command": ["x"], "ports": [{"name": "1-2"}]}),
        "spec.template.ports[0].name",
        kind="pattern",
    ),
    Invalid(
        "http-path-without-slash",
        app(probes={"readiness": {"http": {"port": "http", "path": "healthz"}}}),
        "spec.probes.readiness.http.path",
        kind="pattern",
    ),
    Invalid("heap-not-a-quantity", zkc(jvm={"heap": "lots"}), "spec.jvm.heap", kind="pattern"),
    Invalid(
        "cpu-with-words", zkc(resources={"limits": {"cpu": "1.5 cores"}}), "spec.resources.limits.cpu", kind="pattern"
    ),
    Invalid(
        "percent-above-100",
        app(strategy={"rollingUpdate": {"maxSurge": "101%"}}),
        "spec.strategy.rollingUpdate.maxSurge",
        kind="pattern",
    ),
    Invalid("target-namespace", opconfig(targetNamespace="Bad_NS"), "spec.targetNamespace", kind="pattern"),
    Invalid(
        "config-value-on-two-lines",
        zkc(config={"additionalConfig": {"snapCount": "1\n2"}}),
        "spec.config.additionalConfig.snapCount",
        kind="pattern",
    ),
    # required
    Invalid("application-without-spec", {k: v for k, v in app().items() if k != "spec"}, "spec", kind="required"),
    Invalid("application-without-template", {**app(), "spec": {"replicas": 1}}, "spec.template", kind="required"),
    Invalid("template-without-command", app(template={"args": ["x"]}), "spec.template.command", kind="required"),
    Invalid(
        "autoscaling-without-max",
        app(autoscaling={"minReplicas": 1}),
        "spec.autoscaling.maxReplicas",
        kind="required",
    ),
    Invalid(
        "cluster-ref-without-name",
        app(zookeeper={"clusterRef": {"namespace": "x"}}),
        "spec.zookeeper.clusterRef.name",
        kind="required",
    ),
    # unknown fields (strict field validation, as kubectl sends)
    Invalid("unknown-spec-field", zkc(replica=3), "spec.replica", kind="unknown"),
    Invalid(
        "unknown-nested-field",
        app(probes={"readiness": {"tcp": {"port": 80, "host": "x"}}}),
        "spec.probes.readiness.tcp.host",
        kind="unknown",
    ),
    # CEL: one case (at least) per rule
    Invalid(
        "cpu-request-above-limit",
        zkc(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}),
        "spec.resources.requests.cpu",
        kind="cel",
        rule="the request is above the limit (limits.cpu)",
    ),
    Invalid(
        "memory-request-above-limit",
        app(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": 1000000}}),
        "spec.resources.requests.memory",
        kind="cel",
        rule="the request is above the limit (limits.memory)",
    ),
    Invalid(
        "min-session-below-2-ticks",
        zkc(config={"minSessionTimeout": 3999}),
        "spec.config.minSessionTimeout",
        kind="cel",
        rule="is below 2 x tickTime",
    ),
    Invalid(
        "max-session-below-min",
        zkc(config={"minSessionTimeout": 6000, "maxSessionTimeout": 5000}),
        "spec.config.maxSessionTimeout",
        kind="cel",
        rule="is below the minimum session timeout",
    ),
    Invalid(
        "min-session-above-default-max",
        zkc(config={"tickTime": 100, "minSessionTimeout": 2001}),
        "spec.config.minSessionTimeout",
        kind="cel",
        rule="is above the default maxSessionTimeout",
    ),
    Invalid(
        "reserved-config-key",
        zkc(config={"additionalConfig": {"dataDir": "/x"}}),
        "spec.config.additionalConfig.dataDir",
        server_path="spec.config.additionalConfig",
        kind="cel",
        rule="a key is managed by zkop",
    ),
    Invalid(
        "reserved-config-key-as-property",
        zkc(config={"additionalConfig": {"zookeeper.server.4": "h:1:2"}}),
        'spec.config.additionalConfig["zookeeper.server.4"]',
        server_path="spec.config.additionalConfig",
        kind="cel",
        rule="a key is managed by zkop",
    ),
    Invalid(
        "invalid-config-key",
        zkc(config={"additionalConfig": {"-x": "1"}}),
        'spec.config.additionalConfig["-x"]',
        server_path="spec.config.additionalConfig",
        kind="cel",
        rule="a key is not a valid zoo.cfg key",
    ),
    Invalid(
        "heap-below-16Mi", zkc(jvm={"heap": "16383Ki"}), "spec.jvm.heap", kind="cel", rule="is too small for ZooKeeper"
    ),
    Invalid(
        "heap-above-memory-limit",
        zkc(jvm={"heap": "1Gi"}, resources={"limits": {"memory": "512Mi"}}),
        "spec.jvm.heap",
        kind="cel",
        rule="is above resources.limits.memory",
    ),
    Invalid("blank-image", zkc(image="  "), "spec.image", kind="cel", rule="must not be empty; leave the field out"),
    Invalid(
        "blank-zookeeper-home",
        zkc(zookeeperHome=""),
        "spec.zookeeperHome",
        kind="cel",
        rule="must not be empty; leave the field out",
    ),
    Invalid(
        "replicas-without-leader-election",
        opconfig(replicas=2, leaderElection={"leaderElect": False}),
        "spec.leaderElection.leaderElect",
        kind="cel",
        rule="must be true with several replicas",
    ),
    Invalid(
        "probe-without-check",
        app(probes={"readiness": {"periodSeconds": 2}}),
        "spec.probes.readiness",
        kind="cel",
        rule="set exactly one of tcp, http or exec; none is set",
    ),
    Invalid(
        "probe-with-two-checks",
        app(probes={"liveness": {"tcp": {"port": 80}, "exec": {"command": ["true"]}}}),
        "spec.probes.liveness",
        kind="cel",
        rule="set exactly one of tcp, http or exec; more than one is set",
    ),
    Invalid(
        "liveness-success-threshold",
        app(probes={"liveness": {"tcp": {"port": 80}, "successThreshold": 2}}),
        "spec.probes.liveness.successThreshold",
        kind="cel",
        rule="a liveness probe must have successThreshold 1",
    ),
    Invalid(
        "cpu-metric-without-utilization",
        app(autoscaling=scaling({"type": "cpu"})),
        "spec.autoscaling.metrics[0].targetUtilization",
        kind="cel",
        rule="required for type cpu",
    ),
    Invalid(
        "cpu-metric-with-value",
        app(autoscaling=scaling({"type": "cpu", "targetUtilization": 50, "targetValue": 3})),
        "spec.autoscaling.metrics[0].targetValue",
        kind="cel",
        rule="not allowed for type cpu",
    ),
    Invalid(
        "load-metric-without-value",
        app(autoscaling=scaling({"type": "load"})),
        "spec.autoscaling.metrics[0].targetValue",
        kind="cel",
        rule="required for type load",
    ),
    Invalid(
        "load-metric-with-utilization",
        app(autoscaling=scaling({"type": "load", "targetValue": 3, "targetUtilization": 50})),
        "spec.autoscaling.metrics[0].targetUtilization",
        kind="cel",
        rule="not allowed for type load",
    ),
    Invalid(
        "max-below-min-replicas",
        app(autoscaling={"minReplicas": 3, "maxReplicas": 2}),
        "spec.autoscaling.maxReplicas",
        kind="cel",
        rule="is below minReplicas",
    ),
    Invalid(
        "rolling-update-both-zero",
        app(strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "00%"}}),
        "spec.strategy.rollingUpdate.maxUnavailable",
        kind="cel",
        rule="maxSurge and maxUnavailable are both zero",
    ),
    Invalid(
        "readiness-port-not-declared",
        app(probes={"readiness": {"tcp": {"port": "metrics"}}}),
        "spec.probes.readiness.tcp.port",
        kind="cel",
        rule="the port is not declared",
    ),
    Invalid(
        "liveness-port-not-declared",
        app(probes={"liveness": {"http": {"port": "admin"}}}),
        "spec.probes.liveness.http.port",
        kind="cel",
        rule="the port is not declared",
    ),
    Invalid(
        "blank-program",
        app(template={"command": [" ", "-m", "svc"]}),
        "spec.template.command[0]",
        server_path="spec.template.command",
        kind="cel",
        rule="the program (command[0]) must not be empty",
    ),
    Invalid(
        "blank-working-dir",
        app(template={"command": ["x"], "workingDir": ""}),
        "spec.template.workingDir",
        kind="cel",
        rule="must not be empty; leave it out",
    ),
    Invalid(
        "renew-before-not-below-validity",
        zkc(tls={"quorum": {}, "certificates": {"validitySeconds": 86400, "renewBeforeSeconds": 86400}}),
        "spec.tls.certificates.renewBeforeSeconds",
        kind="cel",
        rule="is not below validitySeconds",
    ),
    Invalid(
        "backup-directory-relative",
        zkc(backup={"intervalSeconds": 3600, "directory": "backups"}),
        "spec.backup.directory",
        kind="cel",
        rule="is not an absolute path",
    ),
    Invalid(
        "tenant-path-under-zookeeper",
        znode(path="/zookeeper/quota"),
        "spec.path",
        kind="cel",
        rule="is under /zookeeper",
    ),
    # list-maps: the API server refuses a duplicate key itself
    Invalid(
        "port-name-twice",
        app(template={"command": ["x"], "ports": [{"name": "http"}, {"name": "http", "containerPort": 81}]}),
        "spec.template.ports[1].name",
        server_path="spec.template.ports[1]",
        kind="cel",
        rule="Duplicate value",
    ),
    Invalid(
        "metric-type-twice",
        app(autoscaling=scaling({"type": "cpu", "targetUtilization": 50}, {"type": "cpu", "targetUtilization": 60})),
        "spec.autoscaling.metrics[1].type",
        server_path="spec.autoscaling.metrics[1]",
        kind="cel",
        rule="Duplicate value",
    ),
]


def test_the_table_covers_every_kind_of_check_and_every_rule() -> None:
    assert {case.kind for case in INVALID} == {"type", "enum", "bound", "pattern", "required", "unknown", "cel"}
    messages = {
        rule["message"]
        for definition in crds()
        for _, node in _nodes(definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        for rule in node.get("x-kubernetes-validations", [])
    }
    broken = {case.rule for case in INVALID if case.rule}
    unmet = [m for m in sorted(messages) if not any(m.startswith(b) for b in broken)]
    assert not unmet, f"rules no invalid case breaks: {unmet}"
    assert all(any(m.startswith(b) for m in messages) or b == "Duplicate value" for b in broken)


def _nodes(node: JsonDict, path: str = "") -> Iterator[tuple[str, JsonDict]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _nodes(node[key], f"{path}.{key}")


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_invalid_documents_are_refused_by_both_naming_the_same_field(cp: ControlPlane, ns: str, case: Invalid) -> None:
    doc = copy.deepcopy(case.doc)
    doc["metadata"] = {"name": unique("case")}
    status, body = create(cp, ns, doc)
    assert status in (400, 422), f"the API server accepted it: {status} {body}"
    assert server_paths(status, body) == {case.server_path or case.path}, body.get("message")
    assert case.rule in body["message"]

    assert zkop_verdict(doc) == {case.path}
    assert case.path.startswith(case.server_path)
    # the same through zkop's YAML loader
    with pytest.raises(ResourceValidationError) as err:
        load_yaml(yaml.safe_dump(doc), source="case.yaml")
    assert {p.path for p in err.value.problems} == {case.path}


VALID = [
    ("no-spec", {"apiVersion": "zkop.io/v1", "kind": "ZookeeperCluster", "metadata": {"name": "x"}}),
    ("heap-exactly-16Mi-as-bytes", zkc(jvm={"heap": 16 * 1024 * 1024})),
    ("request-equals-limit", zkc(resources={"requests": {"cpu": "1"}, "limits": {"cpu": "1000m"}})),
    ("heap-equals-memory-limit", zkc(jvm={"heap": "512Mi"}, resources={"limits": {"memory": "0.5Gi"}})),
    ("session-timeouts-at-the-edges", zkc(config={"minSessionTimeout": 4000, "maxSessionTimeout": 4000})),
    ("min-session-at-20-ticks", zkc(config={"minSessionTimeout": 40000})),
    ("non-reserved-property-form", zkc(config={"additionalConfig": {"zookeeper.snapCount": "1", "4lw.x": "y"}})),
    ("nulls-for-optional-fields", zkc(image=None, zookeeperHome=None, config={"minSessionTimeout": None})),
    ("percent-forms", app(strategy={"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "007%"}})),
    ("surge-only", app(strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})),
    (
        "exec-probe-and-numbered-ports",
        app(probes={"readiness": {"exec": {"command": ["true"]}}, "liveness": {"tcp": {"port": 8080}}}),
    ),
    (
        "declared-port-names",
        app(
            template={"command": ["x"], "ports": [{"name": "h2c"}, {"name": "1a", "containerPort": 81}]},
            probes={"readiness": {"http": {"port": "1a"}}},
        ),
    ),
    ("null-probe", app(probes={"readiness": None, "liveness": None}, autoscaling=None)),
    (
        "both-metrics",
        app(autoscaling=scaling({"type": "cpu", "targetUtilization": 1}, {"type": "load", "targetValue": 0.5})),
    ),
    (
        "single-operator-without-election",
        opconfig(replicas=1, leaderElection={"leaderElect": False}, targetNamespace=""),
    ),
    ("target-namespace", opconfig(targetNamespace="team-a")),
    ("env-as-a-list", app(template={"command": ["x"], "env": [{"name": "A", "value": "1"}]})),
]


@pytest.mark.parametrize(("name", "doc"), VALID, ids=[name for name, _ in VALID])
def test_valid_edge_documents_are_accepted_by_both(cp: ControlPlane, ns: str, name: str, doc: JsonDict) -> None:
    doc = copy.deepcopy(doc)
    doc["metadata"] = {"name": unique("valid")}
    assert zkop_verdict(doc) == set()
    status, body = create(cp, ns, doc, dry_run=True)
    assert status == 201, body.get("message")


@dataclass(frozen=True)
class Difference:
    """A document the two judge differently, on purpose or by necessity (``why``)."""

    id: str
    doc: JsonDict
    server_accepts: bool
    zkop_accepts: bool
    why: str


DIFFERENCES = [
    Difference(
        "cpu-as-a-float",
        zkc(resources={"limits": {"cpu": 0.5}}),
        server_accepts=False,
        zkop_accepts=True,
        why="an int-or-string holds no float on Kubernetes; write '500m' or '0.5'",
    ),
    Difference(
        "config-value-as-a-number",
        zkc(config={"additionalConfig": {"snapCount": 100000}}),
        server_accepts=False,
        zkop_accepts=True,
        why="zkop turns YAML scalars into the strings zoo.cfg holds; the schema says string",
    ),
    Difference(
        "name-with-a-dot",
        {**zkc(), "metadata": {"name": "orders.zk"}},
        server_accepts=True,
        zkop_accepts=False,
        why="metadata is the API server's (DNS subdomain names); zkop wants a DNS label",
    ),
    Difference(
        "env-name-invalid",
        app(template={"command": ["x"], "env": [{"name": "1BAD", "value": "x"}]}),
        server_accepts=True,
        zkop_accepts=False,
        why="env is free-form on Kubernetes (a map or a list); see LEFT_TO_ZKOP",
    ),
    Difference(
        "container-port-twice",
        app(
            template={
                "command": ["x"],
                "ports": [{"name": "a", "containerPort": 80}, {"name": "b", "containerPort": 80}],
            }
        ),
        server_accepts=True,
        zkop_accepts=False,
        why="a quadratic CEL rule over an unbounded list exceeds the cost budget; see LEFT_TO_ZKOP",
    ),
    Difference(
        "null-replicas",
        zkc(replicas=None),
        server_accepts=True,
        zkop_accepts=False,
        why="the API server drops a null of a non-nullable field and applies the default",
    ),
]


@pytest.mark.parametrize("case", DIFFERENCES, ids=[d.id for d in DIFFERENCES])
def test_known_differences_are_as_documented(cp: ControlPlane, ns: str, case: Difference) -> None:
    doc = copy.deepcopy(case.doc)
    doc["metadata"] = {"name": unique(doc["metadata"]["name"])}
    status, body = create(cp, ns, doc, dry_run=True)
    assert (status == 201) == case.server_accepts, (case.why, body.get("message"))
    assert (not zkop_verdict(doc)) == case.zkop_accepts, case.why


# -- status, printer columns, scale ------------------------------------------------------


def _status_patch(cp: ControlPlane, ns: str, kind: str, name: str, status: JsonDict, *, check: bool = True) -> Any:
    return cp.kubectl(
        "patch",
        kind,
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
        check=check,
    )


def test_status_is_a_subresource_validated_by_its_own_schema(cp: ControlPlane, ns: str) -> None:
    name = unique("status")
    doc = zkc(replicas=3)
    doc["metadata"] = {"name": name}
    doc["status"] = {"phase": "Running"}
    status, body = create(cp, ns, doc)
    assert status == 201, body
    assert "status" not in body or "phase" not in body.get("status", {})  # create ignores status
    _status_patch(cp, ns, "zkc", name, {"members": [{"id": 1, "role": "leader"}]})
    refused = _status_patch(cp, ns, "zkc", name, {"members": [{"id": 0, "role": "boss"}]}, check=False)
    assert refused.returncode != 0
    assert "status.members[0].role" in refused.stderr and "status.members[0].id" in refused.stderr
    assert zkop_verdict({**doc, "status": {"members": [{"id": 0, "role": "boss"}]}}) == {
        "status.members[0].id",
        "status.members[0].role",
    }


def test_kubectl_get_shows_the_printer_columns(cp: ControlPlane, kube_namespace: str) -> None:
    ns = kube_namespace
    cp.kubectl("create", "-n", ns, "-f", str(EXAMPLES / "zookeepercluster.yaml"))
    _status_patch(
        cp,
        ns,
        "zkc",
        "orders-zk",
        {"replicas": 3, "readyReplicas": 2, "phase": "Running", "leader": 2, "connectionString": "a:2181,b:2181"},
    )
    table = cp.kubectl("get", "zkc", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "DESIRED", "PHASE", "LEADER", "AGE"]
    assert table[1].split()[:5] == ["orders-zk", "2", "3", "Running", "2"]
    wide = cp.kubectl("get", "zookeepercluster", "orders-zk", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2:] == ["CONNECTION", "CONFIG-VERSION"]
    assert "a:2181,b:2181" in wide[1]

    cp.kubectl("create", "-n", ns, "-f", str(EXAMPLES / "application.yaml"))
    _status_patch(cp, ns, "app", "counter", {"replicas": 2, "readyReplicas": 1, "endpoints": ["127.0.0.1:8000"]})
    apps = cp.kubectl("get", "app", "-n", ns).stdout.splitlines()
    assert apps[0].split() == ["NAME", "READY", "DESIRED", "UP-TO-DATE", "ENDPOINTS", "AGE"]
    assert apps[1].split()[:3] == ["counter", "1", "2"] and "127.0.0.1:8000" in apps[1]
    # the category lists every kind
    everything = cp.kubectl("get", "zkop", "-n", ns, "-o", "name").stdout.split()
    assert sorted(everything) == ["application.zkop.io/counter", "zookeepercluster.zkop.io/orders-zk"]


def test_kubectl_scale_goes_through_the_scale_subresource(cp: ControlPlane, kube_namespace: str) -> None:
    ns = kube_namespace
    cp.kubectl("create", "-n", ns, "-f", str(EXAMPLES / "zookeepercluster.yaml"))
    _status_patch(cp, ns, "zkc", "orders-zk", {"replicas": 3, "readyReplicas": 3})
    generation = cp.kubectl_json("get", "zkc", "orders-zk", "-n", ns)["metadata"]["generation"]

    cp.kubectl("scale", "zkc", "orders-zk", "-n", ns, "--replicas", "5")
    obj = cp.kubectl_json("get", "zkc", "orders-zk", "-n", ns)
    assert obj["spec"]["replicas"] == 5
    assert obj["metadata"]["generation"] == generation + 1
    scale = json.loads(cp.request(f"/apis/zkop.io/v1/namespaces/{ns}/zookeeperclusters/orders-zk/scale")[1])
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["replicas"]) == ("Scale", 5, 3)
    # the schema's bound holds through the scale subresource as well
    refused = cp.kubectl("scale", "zkc", "orders-zk", "-n", ns, "--replicas", "10", check=False)
    assert refused.returncode != 0 and "spec.replicas" in refused.stderr
    assert cp.kubectl_json("get", "zkc", "orders-zk", "-n", ns)["spec"]["replicas"] == 5

    # an Application's scale carries the selector a HorizontalPodAutoscaler needs
    cp.kubectl("create", "-n", ns, "-f", str(EXAMPLES / "application.yaml"))
    _status_patch(cp, ns, "app", "counter", {"replicas": 2, "selector": "zkop.io/application=counter"})
    cp.kubectl("scale", "app", "counter", "-n", ns, "--replicas", "3")
    scale = json.loads(cp.request(f"/apis/zkop.io/v1/namespaces/{ns}/applications/counter/scale")[1])
    assert scale["spec"]["replicas"] == 3
    assert scale["status"] == {"replicas": 2, "selector": "zkop.io/application=counter"}
