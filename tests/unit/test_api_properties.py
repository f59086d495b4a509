"""Property tests: valid-by-construction documents parse and round-trip; mutations of them
into invalid documents (wrong types, unknown fields, out-of-range numbers, bad names) are
always refused with a ValidationError and never with any other exception."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zkop.api import ResourceValidationError, dump_yaml, load_yaml, parse_object, to_dict
from zkop.errors import ValidationError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Doc = dict[str, Any]
Path = tuple[str | int, ...]

# -- valid documents -----------------------------------------------------------------------

dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
port_names = st.from_regex(r"[a-z]([a-z0-9]{0,6})", fullmatch=True)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)
plain_text = st.text(alphabet=st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]), max_size=20)
label_keys = st.builds(
    lambda prefix, name: prefix + name,
    st.sampled_from(["", "zkop.io/", "app.kubernetes.io/"]),
    st.from_regex(r"[a-z]([-a-z0-9_.]{0,10}[a-z0-9])?", fullmatch=True),
)
label_values = st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?)?", fullmatch=True)
timestamps = st.sampled_from(["2024-01-31T12:00:00Z", "2023-06-01T00:00:00.250+02:00"])


@st.composite
def metadata(draw: st.DrawFn) -> Doc:
    meta: Doc = {"name": draw(dns_labels)}
    if draw(st.booleans()):
        meta["namespace"] = draw(dns_labels)
    if draw(st.booleans()):
        meta["labels"] = draw(st.dictionaries(label_keys, label_values, max_size=3))
    if draw(st.booleans()):
        meta["annotations"] = draw(st.dictionaries(label_keys, plain_text, max_size=3))
    if draw(st.booleans()):
        meta["finalizers"] = draw(st.lists(st.sampled_from(["zkop.io/cleanup", "members"]), max_size=2))
    if draw(st.booleans()):
        meta["uid"] = draw(st.uuids()).hex
        meta["resourceVersion"] = draw(st.integers(0, 10**6) | st.just("17"))
        meta["generation"] = draw(st.integers(1, 10**6))
        meta["creationTimestamp"] = draw(timestamps)
    return meta


@st.composite
def quantity_pair(draw: st.DrawFn, suffixes: list[str]) -> tuple[str | int, str | int]:
    """A request and a limit with request <= limit."""
    suffix = draw(st.sampled_from(suffixes))
    limit = draw(st.integers(1, 4096))
    request = draw(st.integers(0, limit))
    if suffix == "":
        return request, limit
    return f"{request}{suffix}", f"{limit}{suffix}"


@st.composite
def resources(draw: st.DrawFn, heap_mi: int | None = None) -> Doc:
    cpu_req, cpu_lim = draw(quantity_pair(["", "m"]))
    mem_req, mem_lim = draw(quantity_pair(["Mi", "Gi"]))
    out: Doc = {"requests": {}, "limits": {}}
    if draw(st.booleans()):
        out["requests"]["cpu"] = cpu_req
    if draw(st.booleans()):
        out["limits"]["cpu"] = cpu_lim
    if draw(st.booleans()):
        out["requests"]["memory"] = mem_req
    if heap_mi is None and draw(st.booleans()):
        out["limits"]["memory"] = mem_lim
    elif heap_mi is not None and draw(st.booleans()):
        out["limits"]["memory"] = f"{draw(st.integers(heap_mi, 8192))}Mi"
        out["requests"].pop("memory", None)
    return out


def conditions() -> st.SearchStrategy[list[Doc]]:
    return st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["Ready", "Available"]), "status": st.sampled_from(["True", "False", "Unknown"])},
            optional={"reason": st.just("Observed"), "message": plain_text, "lastTransitionTime": timestamps},
        ),
        max_size=2,
    )


@st.composite
def zookeepercluster_docs(draw: st.DrawFn) -> Doc:
    tick = draw(st.integers(100, 60000))
    config: Doc = {"tickTime": tick}
    low = 2 * tick
    min_timeout = draw(st.none() | st.integers(low, low + 100000))
    if min_timeout is not None:
        config["minSessionTimeout"] = min_timeout
    floor = max(low, min_timeout or 0)
    if draw(st.booleans()) or (min_timeout is not None and min_timeout > 20 * tick):
        config["maxSessionTimeout"] = draw(st.integers(floor, floor + 100000))
    config["initLimit"] = draw(st.integers(1, 1000))
    config["syncLimit"] = draw(st.integers(1, 1000))
    config["maxClientCnxns"] = draw(st.integers(0, 100000))
    config["autopurge"] = {
        "snapRetainCount": draw(st.integers(3, 1000)),
        "purgeInterval": draw(st.integers(0, 8760)),
    }
    config["additionalConfig"] = draw(
        st.dictionaries(st.from_regex(r"custom\.[a-zA-Z]{1,8}", fullmatch=True), plain_text, max_size=3)
    )
    heap_mi = draw(st.integers(16, 4096))
    spec: Doc = {
        "replicas": draw(st.integers(1, 9)),
        "config": config,
        "jvm": {"heap": f"{heap_mi}Mi"},
        "resources": draw(resources(heap_mi)),
        "storage": {"reclaimPolicy": draw(st.sampled_from(["Retain", "Delete"]))},
        "paused": draw(st.booleans()),
    }
    if draw(st.booleans()):
        spec["zookeeperHome"] = "/opt/zookeeper"
    if draw(st.booleans()):
        spec["image"] = "zookeeper:3.9"
    doc: Doc = {"apiVersion": "zkop.io/v1", "kind": "ZookeeperCluster", "metadata": draw(metadata()), "spec": spec}
    if draw(st.booleans()):
        ids = draw(st.lists(st.integers(1, 300), min_size=1, max_size=5, unique=True))
        doc["status"] = {
            "observedGeneration": draw(st.integers(0, 100)),
            "phase": "Running",
            "replicas": len(ids),
            "readyReplicas": draw(st.integers(0, len(ids))),
            "leader": ids[0],
            "members": [
                {
                    "id": i,
                    "role": draw(st.sampled_from(["leader", "follower", "observer", "looking"])),
                    "ready": draw(st.booleans()),
                    "zxid": draw(st.integers(0, 2**64 - 1)),
                    "clientEndpoint": f"127.0.0.1:{2000 + i}",
                    "restarts": draw(st.integers(0, 10)),
                    "latencyMs": draw(st.floats(0, 1000, allow_nan=False)),
                }
                for i in ids
            ],
            "connectionString": "127.0.0.1:2181",
            "conditions": draw(conditions()),
        }
    return doc


def probe(draw: st.DrawFn, ports: list[str], liveness: bool) -> Doc:
    kind = draw(st.sampled_from(["tcp", "http", "exec"]))
    numbers: st.SearchStrategy[str | int] = st.integers(1, 65535)
    port = draw(st.sampled_from(ports) | numbers if ports else numbers)
    out: Doc
    if kind == "tcp":
        out = {"tcp": {"port": port}}
    elif kind == "http":
        out = {"http": {"path": "/" + draw(st.from_regex(r"[a-z]{0,8}", fullmatch=True)), "port": port}}
    else:
        out = {"exec": {"command": draw(st.lists(st.sampled_from(["true", "check"]), min_size=1, max_size=2))}}
    out["periodSeconds"] = draw(st.integers(1, 3600))
    out["failureThreshold"] = draw(st.integers(1, 1000))
    if not liveness:
        out["successThreshold"] = draw(st.integers(1, 1000))
    return out


@st.composite
def application_docs(draw: st.DrawFn) -> Doc:
    port_list = draw(st.lists(port_names, max_size=3, unique=True))
    numbers = draw(st.lists(st.integers(1, 65535), min_size=len(port_list), max_size=len(port_list), unique=True))
    ports: list[Doc] = []
    for name, number in zip(port_list, numbers, strict=True):
        port: Doc = {"name": name}
        choice = draw(st.sampled_from(["absent", "zero", "number"]))
        if choice == "zero":
            port["containerPort"] = 0
        elif choice == "number":
            port["containerPort"] = number
        ports.append(port)
    names = draw(st.lists(env_names, max_size=3, unique=True))
    values = [draw(plain_text) for _ in names]
    env: Any = (
        dict(zip(names, values, strict=True))
        if draw(st.booleans())
        else [{"name": n, "value": v} for n, v in zip(names, values, strict=True)]
    )
    template: Doc = {
        "command": draw(st.lists(st.sampled_from(["python3", "-m", "svc"]), min_size=1, max_size=3)),
        "args": draw(st.lists(plain_text, max_size=2)),
        "env": env,
        "ports": ports,
    }
    spec: Doc = {"replicas": draw(st.integers(0, 1000)), "template": template}
    probes: Doc = {}
    if draw(st.booleans()):
        probes["readiness"] = probe(draw, port_list, liveness=False)
    if draw(st.booleans()):
        probes["liveness"] = probe(draw, port_list, liveness=True)
    spec["probes"] = probes
    spec["resources"] = draw(resources())
    if draw(st.booleans()):
        low = draw(st.integers(1, 50))
        metrics = []
        if draw(st.booleans()):
            metrics.append({"type": "cpu", "targetUtilization": draw(st.integers(1, 100))})
        if not metrics or draw(st.booleans()):
            metrics.append(
                {"type": "load", "targetValue": draw(st.floats(0.01, 1e6, allow_nan=False) | st.integers(1, 100))}
            )
        spec["autoscaling"] = {
            "minReplicas": low,
            "maxReplicas": draw(st.integers(low, 1000)),
            "metrics": metrics,
            "scaleDownStabilizationSeconds": draw(st.integers(0, 3600)),
        }
    int_or_percent = st.integers(0, 10) | st.integers(0, 100).map(lambda n: f"{n}%")
    surge, unavailable = draw(int_or_percent), draw(int_or_percent)
    if surge in (0, "0%") and unavailable in (0, "0%"):
        surge = 1
    spec["strategy"] = {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    if draw(st.booleans()):
        ref: Doc = {"name": draw(dns_labels)}
        if draw(st.booleans()):
            ref["namespace"] = draw(dns_labels)
        spec["zookeeper"] = {"clusterRef": ref}
    spec["service"] = {
        "loadBalancing": draw(
            st.sampled_from(["round_robin", "random", "least_connections", "consistent_hash", "sticky"])
        )
    }
    doc: Doc = {"apiVersion": "zkop.io/v1", "kind": "Application", "metadata": draw(metadata()), "spec": spec}
    if draw(st.booleans()):
        doc["status"] = {
            "replicas": 1,
            "readyReplicas": 1,
            "instances": [
                {
                    "name": "x-0",
                    "phase": "Running",
                    "ready": True,
                    "pid": draw(st.integers(1, 10**6)),
                    "port": draw(st.integers(0, 65535)),
                    "exitCode": draw(st.none() | st.integers(-255, 255)),
                }
            ],
            "endpoints": ["127.0.0.1:40000"],
            "currentMetric": draw(st.floats(-1e6, 1e6, allow_nan=False)),
            "desiredReplicas": 2,
            "lastScaleTime": draw(timestamps),
            "conditions": draw(conditions()),
        }
    return doc


@st.composite
def operatorconfig_docs(draw: st.DrawFn) -> Doc:
    replicas = draw(st.integers(1, 16))
    spec: Doc = {
        "targetNamespace": draw(st.just("") | dns_labels),
        "leaderElection": {
            "leaderElect": True if replicas > 1 else draw(st.booleans()),
            "sessionTimeoutSeconds": draw(st.integers(2, 120)),
        },
        "replicas": replicas,
        "resources": draw(resources()),
    }
    doc: Doc = {"apiVersion": "zkop.io/v1", "kind": "OperatorConfig", "metadata": draw(metadata()), "spec": spec}
    if draw(st.booleans()):
        doc["status"] = {"leader": "zkop-0", "epoch": draw(st.integers(0, 10**9)), "replicas": replicas}
    return doc


valid_docs = st.one_of(zookeepercluster_docs(), application_docs(), operatorconfig_docs())


@SETTINGS
@given(valid_docs)
def test_valid_documents_parse_and_round_trip(doc: Doc) -> None:
    obj = parse_object(doc, source="generated")
    assert obj.kind == doc["kind"]
    assert obj.metadata.name == doc["metadata"]["name"]
    text = dump_yaml(obj)
    again = load_yaml(text, source="dump")
    assert again == [obj]
    assert dump_yaml(again[0]) == text
    assert parse_object(to_dict(obj)) == obj


# -- mutations into invalid documents ------------------------------------------------------

#: Maps whose keys are free-form (an extra key there is valid).
FREE_FORM = {"labels", "annotations", "additionalConfig", "env"}


def walk(node: Any, path: Path = ()) -> list[tuple[Path, Any]]:
    out: list[tuple[Path, Any]] = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(walk(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(walk(value, (*path, index)))
    return out


def set_at(doc: Doc, path: Path, value: Any) -> None:
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def in_free_form(path: Path) -> bool:
    return any(key in FREE_FORM for key in path if isinstance(key, str))


bad_names = st.one_of(
    st.just(""),
    st.just("-leading"),
    st.just("trailing-"),
    st.just("a" * 64),
    dns_labels.map(lambda s: s + "_x"),
    dns_labels.map(lambda s: "X" + s),
    dns_labels.map(lambda s: s + ".y"),
    st.integers(0, 9),
)


@st.composite
def invalid_docs(draw: st.DrawFn) -> tuple[str, Doc]:
    doc = copy.deepcopy(draw(valid_docs))
    nodes = walk(doc)
    how = draw(st.sampled_from(["unknown-field", "wrong-type", "out-of-range", "bad-name", "missing"]))
    if how == "unknown-field":
        models = [
            p for p, v in nodes if isinstance(v, dict) and not (p and isinstance(p[-1], str) and p[-1] in FREE_FORM)
        ]
        path = draw(st.sampled_from(models))
        field = draw(st.sampled_from(["zkopUnknownField", "Replicas", "spec_extra", "x"]))
        node: Any = doc
        for key in path:
            node = node[key]
        node[field] = draw(st.integers() | plain_text)
    elif how == "wrong-type":
        path, value = draw(st.sampled_from([(p, v) for p, v in nodes if p]))
        if isinstance(value, dict):
            replacement: Any = [1, "x"]
        elif isinstance(value, list):
            replacement = {"zkopWrong": {"x": 1}}
        else:
            replacement = {"zkopWrong": [1]}
        set_at(doc, path, replacement)
    elif how == "out-of-range":
        numbers = [
            (p, v) for p, v in nodes if isinstance(v, int | float) and not isinstance(v, bool) and not in_free_form(p)
        ]
        if not numbers:
            doc["spec"]["replicas"] = -1
        else:
            path, value = draw(st.sampled_from(numbers))
            set_at(doc, path, 10**20 if isinstance(value, int) else float("nan"))
    elif how == "bad-name":
        target = draw(st.sampled_from(["name", "namespace"]))
        doc["metadata"][target] = draw(bad_names)
    else:
        path = draw(
            st.sampled_from(
                [("apiVersion",), ("kind",), ("metadata",), ("metadata", "name")]
                + ([("spec", "template")] if doc["kind"] == "Application" else [])
            )
        )
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return how, doc


@SETTINGS
@given(invalid_docs())
def test_mutated_documents_are_refused(case: tuple[str, Doc]) -> None:
    how, doc = case
    with pytest.raises(ResourceValidationError) as err:
        parse_object(doc, source="mutated")
    error = err.value
    assert error.problems, how
    text = str(error)
    assert "pydantic" not in text and "Input should" not in text


# -- arbitrary input -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["replicas", "template", "config", "ports", "probes", "autoscaling", "resources", "name", "command", "x"]
)
structured = st.recursive(
    json_values,
    lambda children: st.dictionaries(field_names, children, max_size=4) | st.lists(children, max_size=3),
    max_leaves=20,
)


@SETTINGS
@given(
    kind=st.sampled_from(["ZookeeperCluster", "Application", "OperatorConfig"]),
    metadata_value=structured,
    spec=structured,
    status=structured,
)
def test_arbitrary_content_raises_only_validation_errors(
    kind: str, metadata_value: Any, spec: Any, status: Any
) -> None:
    doc = {"apiVersion": "zkop.io/v1", "kind": kind, "metadata": metadata_value, "spec": spec, "status": status}
    try:
        parse_object(doc)
    except ResourceValidationError as exc:
        assert exc.problems


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_yaml_text_raises_only_validation_errors(text: str) -> None:
    with contextlib.suppress(ValidationError):
        load_yaml(text, source="fuzz")
