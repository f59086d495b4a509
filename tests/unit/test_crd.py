"""The CRDs generated from the models: the checked-in files, names, subresources, columns,
defaults, ``zkop kube crds``, and that every check of the models is either translated for
Kubernetes or listed as left to zkop."""

from __future__ import annotations

import itertools
import json
import re
import types
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from zkop.api import KINDS, Application, OperatorConfig, Quantity, ZookeeperCluster
from zkop.api.application import PERCENT_PATTERN, _int_or_percent
from zkop.api.crd import (
    CONFIG_VALUE_PATTERN,
    FIELD_SCHEMAS,
    HEADER,
    LEFT_TO_ZKOP,
    MODEL_RULES,
    RESERVED_CONFIG_KEY_PATTERN,
    VIEWS,
    crds,
    field_schema,
    file_name,
    openapi_schema,
    to_file,
)
from zkop.api.meta import DNS_LABEL_PATTERN, PORT_NAME_PATTERN, check_port_name, dns_label_problem
from zkop.api.quantity import PATTERN_TEXT
from zkop.api.zookeepercluster import CONFIG_KEY_PATTERN, RESERVED_CONFIG_KEYS, reserved_config_key
from zkop.cli.main import app as cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "crds"
REGENERATE = "regenerate them with `zkop kube crds --write deploy/crds` (and commit the result)"

JsonDict = dict[str, Any]


def by_kind() -> dict[str, JsonDict]:
    return {d["spec"]["names"]["kind"]: d for d in crds()}


def version_of(kind: str) -> JsonDict:
    version: JsonDict = by_kind()[kind]["spec"]["versions"][0]
    return version


def schema_of(kind: str) -> JsonDict:
    schema: JsonDict = version_of(kind)["schema"]["openAPIV3Schema"]
    return schema


# -- the files under deploy/crds ---------------------------------------------------------


def test_checked_in_crds_are_what_the_models_generate() -> None:
    generated = {file_name(d): d for d in crds()}
    present = sorted(p.name for p in DEPLOY.glob("*.yaml")) if DEPLOY.is_dir() else []
    assert present == sorted(generated), (
        f"deploy/crds holds {present}, the models generate {sorted(generated)}; {REGENERATE}"
    )
    for name, definition in generated.items():
        text = (DEPLOY / name).read_text(encoding="utf-8")
        assert yaml.safe_load(text) == definition, f"deploy/crds/{name} differs from the models; {REGENERATE}"
        assert text == to_file(definition), f"deploy/crds/{name} is not formatted as generated; {REGENERATE}"
        assert text.startswith(HEADER)


def test_generation_is_deterministic() -> None:
    assert json.dumps(crds()) == json.dumps(crds())


# -- names, versions, subresources, columns ----------------------------------------------


def test_one_crd_per_kind_with_names_and_version() -> None:
    definitions = by_kind()
    assert list(definitions) == list(KINDS)
    for kind, info in KINDS.items():
        definition = definitions[kind]
        assert definition["apiVersion"] == "apiextensions.k8s.io/v1"
        assert definition["metadata"] == {"name": f"{info.plural}.zkop.io"}
        spec = definition["spec"]
        assert spec["group"] == "zkop.io"
        assert spec["scope"] == "Namespaced"
        assert spec["names"] == {
            "kind": kind,
            "listKind": f"{kind}List",
            "plural": info.plural,
            "singular": kind.lower(),
            "shortNames": list(info.short_names),
            "categories": ["zkop"],
        }
        [version] = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert [d["spec"]["names"]["shortNames"] for d in definitions.values()] == [
        ["zkc"],
        ["app"],
        ["opconfig"],
        ["znode"],
    ]


def test_status_and_scale_subresources() -> None:
    assert version_of("ZookeeperCluster")["subresources"] == {
        "status": {},
        "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
    }
    assert version_of("Application")["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    assert version_of("OperatorConfig")["subresources"] == {"status": {}}
    # the selector a HorizontalPodAutoscaler reads is a string in the Application's status
    assert field_schema(schema_of("Application"), ".status.selector")["type"] == "string"


def test_printer_columns() -> None:
    def columns(kind: str) -> list[tuple[str, str, str, int]]:
        return [
            (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
            for c in version_of(kind)["additionalPrinterColumns"]
        ]

    assert columns("ZookeeperCluster")[:5] == [
        ("Ready", "integer", ".status.readyReplicas", 0),
        ("Desired", "integer", ".spec.replicas", 0),
        ("Phase", "string", ".status.phase", 0),
        ("Leader", "integer", ".status.leader", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
    ]
    assert ("Connection", "string", ".status.connectionString", 1) in columns("ZookeeperCluster")
    assert [c[0] for c in columns("Application")][:5] == ["Ready", "Desired", "Up-To-Date", "Endpoints", "Age"]
    assert ("Endpoints", "string", ".status.endpoints", 0) in columns("Application")
    assert [c[0] for c in columns("OperatorConfig")][:5] == ["Target-Namespace", "Replicas", "Ready", "Leader", "Age"]
    for kind in KINDS:
        for column in version_of(kind)["additionalPrinterColumns"]:
            assert column["description"], column


def test_a_column_or_scale_path_must_name_a_field() -> None:
    with pytest.raises(ValueError, match=r"\.status\.nope is not a field"):
        field_schema(schema_of("ZookeeperCluster"), ".status.nope")
    assert set(VIEWS) == set(KINDS)


# -- the root, metadata, spec and status -------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_root_describes_spec_and_status_not_metadata(kind: str) -> None:
    schema = schema_of(kind)
    assert schema["type"] == "object"
    assert list(schema["properties"]) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["properties"]["apiVersion"]["type"] == schema["properties"]["kind"]["type"] == "string"
    assert schema["properties"]["status"]["type"] == "object"
    assert "default" not in schema["properties"]["status"]  # the operator writes status
    assert schema.get("required", []) == (["spec"] if kind in ("Application", "ZookeeperZnode") else [])


def test_defaults_are_the_models() -> None:
    zkc = schema_of("ZookeeperCluster")["properties"]["spec"]
    assert zkc["default"] == {}  # the spec's own defaults fill it in field by field
    assert zkc["properties"]["replicas"]["default"] == 3
    assert zkc["properties"]["jvm"]["properties"]["heap"]["default"] == "128Mi"
    assert zkc["properties"]["config"]["properties"]["additionalConfig"]["default"] == {}
    assert zkc["properties"]["storage"]["properties"]["reclaimPolicy"]["default"] == "Retain"
    app = schema_of("Application")["properties"]["spec"]
    assert "default" not in app  # spec.template is required
    scaling = app["properties"]["autoscaling"]
    assert scaling["nullable"] is True and "default" not in scaling
    # a default made by a factory, written as zkop writes objects (no nulls)
    assert scaling["properties"]["metrics"]["default"] == [{"type": "cpu", "targetUtilization": 80}]
    rolling = app["properties"]["strategy"]["properties"]["rollingUpdate"]["properties"]
    assert rolling["maxSurge"]["default"] == rolling["maxUnavailable"]["default"] == "25%"
    assert app["properties"]["template"]["properties"]["ports"]["default"] == []


def test_quantities_are_int_or_string_with_the_models_pattern() -> None:
    spec = schema_of("ZookeeperCluster")["properties"]["spec"]["properties"]
    heap = spec["jvm"]["properties"]["heap"]
    cpu = spec["resources"]["properties"]["limits"]["properties"]["cpu"]
    for node in (heap, cpu):
        assert node["x-kubernetes-int-or-string"] is True
        assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
        assert node["pattern"] == PATTERN_TEXT
        assert node["minimum"] == 0
        assert "type" not in node
    assert cpu["nullable"] is True


def test_map_lists_and_free_form_env() -> None:
    template = schema_of("Application")["properties"]["spec"]["properties"]["template"]["properties"]
    assert template["ports"]["x-kubernetes-list-type"] == "map"
    assert template["ports"]["x-kubernetes-list-map-keys"] == ["name"]
    assert template["env"]["x-kubernetes-preserve-unknown-fields"] is True
    assert "type" not in template["env"] and "items" not in template["env"]
    metrics = schema_of("Application")["properties"]["spec"]["properties"]["autoscaling"]["properties"]["metrics"]
    assert metrics["x-kubernetes-list-map-keys"] == ["type"]


def test_openapi_bounds() -> None:
    metric = schema_of("Application")["properties"]["spec"]["properties"]["autoscaling"]["properties"]["metrics"]
    target = metric["items"]["properties"]["targetValue"]
    assert (target["minimum"], target["exclusiveMinimum"]) == (0, True)  # gt=0, in OpenAPI 3.0 form
    members = schema_of("ZookeeperCluster")["properties"]["status"]["properties"]["members"]["items"]
    assert "maximum" not in members["properties"]["zxid"]  # beyond int64: not representable anyway
    assert "maximum" not in members["properties"]["restarts"]  # int64's own limit


# -- every check of the models: translated, or left to zkop with a reason -----------------


def _models_below(model: type[BaseModel]) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp not in found:
                found.add(tp)
                for info in tp.model_fields.values():
                    visit(info.annotation)
            return
        if get_origin(tp) is not None or isinstance(tp, types.UnionType):
            for arg in get_args(tp):
                visit(arg)

    visit(model)
    return found


def _described_models() -> set[type[BaseModel]]:
    """Every model under spec and status of every kind (metadata is the API server's)."""
    out: set[type[BaseModel]] = set()
    for info in KINDS.values():
        for name in ("spec", "status"):
            out |= _models_below(info.model.model_fields[name].annotation)  # type: ignore[arg-type]
    return out


def _validators(model: type[BaseModel]) -> set[str]:
    decorators = model.__pydantic_decorators__
    return set(decorators.field_validators) | set(decorators.model_validators)


def _covered() -> dict[type[BaseModel], set[str]]:
    covered: dict[type[BaseModel], set[str]] = {}
    for model, rules in MODEL_RULES.items():
        covered.setdefault(model, set()).update(r.covers for r in rules)
    for (model, _), extra in FIELD_SCHEMAS.items():
        names = {extra.covers, *(r.covers for r in extra.rules)} - {""}
        covered.setdefault(model, set()).update(names)
    return covered


def test_every_validator_is_translated_or_left_to_zkop_with_a_reason() -> None:
    covered = _covered()
    models = _described_models()
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name in sorted(_validators(model))
        if name not in covered.get(model, set()) and (model, name) not in LEFT_TO_ZKOP
    ]
    assert not missing, f"validators with no Kubernetes form and no reason in LEFT_TO_ZKOP: {missing}"
    stale = [
        f"{model.__name__}.{name}"
        for model, names in covered.items()
        for name in names
        if model not in models or name not in _validators(model)
    ]
    stale += [f"{m.__name__}.{n}" for m, n in LEFT_TO_ZKOP if n not in _validators(m)]
    assert not stale, f"rules naming validators that do not exist (any more): {stale}"
    assert all(len(reason) > 40 for reason in LEFT_TO_ZKOP.values())


def test_field_schemas_name_existing_fields() -> None:
    for (model, name), _ in FIELD_SCHEMAS.items():
        aliases = {info.alias or field for field, info in model.model_fields.items()}
        assert name in aliases, f"{model.__name__} has no field {name}"


def test_every_rule_has_a_message_and_points_at_a_field_of_its_node() -> None:
    for model, rules in MODEL_RULES.items():
        for rule in rules:
            assert rule.message and rule.rule
            if rule.field_path:
                head = rule.field_path.lstrip(".").split(".")[0]
                assert head in {info.alias for info in model.model_fields.values()}, (model, rule)


# -- patterns say what the Python checks say ----------------------------------------------


def _strings(alphabet: str, longest: int) -> list[str]:
    return ["".join(p) for n in range(longest + 1) for p in itertools.product(alphabet, repeat=n)]


def _accepts(check: Any, value: Any) -> bool:
    try:
        check(value)
    except ValueError:
        return False
    return True


def test_port_name_pattern_is_check_port_name() -> None:
    pattern = re.compile(PORT_NAME_PATTERN)
    for value in [*_strings("a1-", 6), "http", "h2c", "-http", "http-", "ht--tp", "a" * 15, "a" * 16, "HTTP", "1"]:
        by_pattern = bool(pattern.fullmatch(value)) and 1 <= len(value) <= 15
        assert by_pattern == _accepts(check_port_name, value), value


def test_dns_label_pattern_is_dns_label_problem() -> None:
    pattern = re.compile(DNS_LABEL_PATTERN)
    for value in [*_strings("a1-.", 4), "orders-zk", "Orders", "a" * 63, "a" * 64, "abc\n"]:
        by_pattern = bool(pattern.fullmatch(value)) and len(value) <= 63
        assert by_pattern == (dns_label_problem(value) is None), repr(value)


def test_percent_pattern_is_int_or_percent() -> None:
    pattern = re.compile(PERCENT_PATTERN)
    for value in [f"{n}%" for n in range(0, 1001)] + [f"{n:03d}%" for n in range(0, 1000)] + ["%", "1", "5%\n"]:
        assert bool(pattern.fullmatch(value)) == _accepts(_int_or_percent, value), repr(value)


def test_reserved_config_key_pattern_is_reserved_config_key() -> None:
    pattern = re.compile(RESERVED_CONFIG_KEY_PATTERN)
    keys = [*RESERVED_CONFIG_KEYS, "server.1", "server.12", "group.3", "weight.9", "server.", "server.x", "servers.1"]
    keys += ["snapCount", "zookeeper.snapCount", "tickTimeX", "admin.enableServerX", "dataDir2", "4lw.commands"]
    for key in [*keys, *(f"zookeeper.{k}" for k in keys)]:
        assert bool(pattern.fullmatch(key)) == (reserved_config_key(key) is not None), key


def test_config_key_and_value_patterns() -> None:
    key = re.compile(CONFIG_KEY_PATTERN)
    assert all(key.fullmatch(k) for k in [*RESERVED_CONFIG_KEYS, "snapCount", "4lw.commands.whitelist", "_x"])
    assert not any(key.fullmatch(k) for k in ["-x", ".x", "a b", "", "a\n"])
    value = re.compile(CONFIG_VALUE_PATTERN)
    assert value.fullmatch("100000") and value.fullmatch("")
    assert not any(value.fullmatch(v) for v in ["a\nb", "a\rb", "a\x00b"])


def test_quantity_pattern_is_the_parsers_language() -> None:
    pattern = re.compile(PATTERN_TEXT)
    for text in ["100m", "0.5", "2", "200Mi", "1Gi", "1G", "500k", "1e3", "1E3", ".5", "5.", "+1", "1n", "1u"]:
        assert pattern.fullmatch(text) and Quantity(text)
    for text in ["-1", "1Xi", "lots", "1 Gi", "", "1e", "1mi", "0x10"]:
        assert not pattern.fullmatch(text)
        assert not _accepts(Quantity, text)


# -- zkop kube crds ----------------------------------------------------------------------


def test_cli_prints_a_yaml_stream_and_a_json_list(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["kube", "crds"])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.stdout)) == crds()
    result = runner.invoke(cli, ["kube", "crds", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"apiVersion": "v1", "kind": "List", "items": crds()}


def test_cli_writes_one_file_per_kind(tmp_path: Path) -> None:
    target = tmp_path / "deploy" / "crds"
    result = CliRunner().invoke(cli, ["kube", "crds", "--write", str(target)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in target.iterdir())
    assert names == [
        "applications.zkop.io.yaml",
        "operatorconfigs.zkop.io.yaml",
        "zookeeperclusters.zkop.io.yaml",
        "zookeeperznodes.zkop.io.yaml",
    ]
    for definition in crds():
        assert (target / file_name(definition)).read_text(encoding="utf-8") == to_file(definition)
        assert f"wrote {target / file_name(definition)}" in result.stdout


def test_openapi_schema_matches_the_model_classes() -> None:
    assert openapi_schema(KINDS["ZookeeperCluster"])["description"] == ZookeeperCluster.__doc__
    assert openapi_schema(KINDS["Application"])["description"] == Application.__doc__
    assert openapi_schema(KINDS["OperatorConfig"])["description"] == OperatorConfig.__doc__
