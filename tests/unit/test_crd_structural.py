"""The generated schemas are structural, node by node, as the API server requires
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):

- every node is typed, except an int-or-string and a node that keeps unknown fields;
- no ``$ref`` or definitions: everything is inlined;
- inside ``anyOf``/``allOf``/``oneOf``/``not`` no type, description, default, nullable or
  additionalProperties, but for the one int-or-string form ``[{type: integer}, {type: string}]``;
- ``properties`` and ``additionalProperties`` never together; ``metadata`` only ``type: object``;

and zkop's own conventions: camelCase field names, a description on every field, ``Optional``
as ``nullable: true``, defaults of the node's type, rules that point at fields that exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from zkop.api import KINDS
from zkop.api.crd import crds

JsonDict = dict[str, Any]

JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
FORBIDDEN_IN_JUNCTORS = ("type", "description", "default", "nullable", "additionalProperties")
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
#: Every keyword the generator may write (a subset of apiextensions/v1 JSONSchemaProps).
KEYWORDS = {
    "type",
    "description",
    "nullable",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "x-kubernetes-int-or-string",
    "anyOf",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "x-kubernetes-validations",
}
CAMEL_CASE = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def schemas() -> list[tuple[str, JsonDict]]:
    return [(d["spec"]["names"]["kind"], d["spec"]["versions"][0]["schema"]["openAPIV3Schema"]) for d in crds()]


def walk(node: JsonDict, path: str = "") -> Iterator[tuple[str, JsonDict]]:
    """Every schema node below (and with) ``node``, with its path (``.spec.template.ports[]``)."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def every_node() -> list[tuple[str, str, JsonDict]]:
    return [(kind, path, node) for kind, schema in schemas() for path, node in walk(schema)]


def nodes(kind: str) -> dict[str, JsonDict]:
    return {path: node for k, path, node in every_node() if k == kind}


@pytest.mark.parametrize(("kind", "schema"), schemas(), ids=list(KINDS))
def test_every_node_is_typed(kind: str, schema: JsonDict) -> None:
    untyped = [
        path
        for path, node in walk(schema)
        if node.get("type") not in TYPES
        and not node.get("x-kubernetes-int-or-string")
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert not untyped, f"{kind}: nodes without a type: {untyped}"


def test_no_references_or_definitions_anywhere() -> None:
    text = repr(crds())
    for word in ("$ref", "$defs", "definitions", "$schema", "'title'", "'const'"):
        assert word not in text


def test_only_known_keywords() -> None:
    for kind, path, node in every_node():
        assert set(node) <= KEYWORDS, f"{kind}{path}: {sorted(set(node) - KEYWORDS)}"


def test_junctors_hold_no_generic_keywords() -> None:
    for kind, path, node in every_node():
        for junctor in JUNCTORS:
            if junctor not in node:
                continue
            branches = node[junctor] if isinstance(node[junctor], list) else [node[junctor]]
            if junctor == "anyOf" and branches == INT_OR_STRING:
                assert node.get("x-kubernetes-int-or-string") is True, f"{kind}{path}"
                continue
            for branch in branches:
                bad = [key for key in FORBIDDEN_IN_JUNCTORS if key in branch]
                assert not bad, f"{kind}{path}.{junctor}: {bad}"


def test_int_or_string_nodes_have_exactly_the_two_branches() -> None:
    found = 0
    for kind, path, node in every_node():
        if node.get("x-kubernetes-int-or-string"):
            found += 1
            assert node["anyOf"] == INT_OR_STRING, f"{kind}{path}"
            assert "type" not in node
    assert found >= 10  # quantities, ports, maxSurge/maxUnavailable


def test_properties_and_additional_properties_never_together() -> None:
    for kind, path, node in every_node():
        assert not ("properties" in node and "additionalProperties" in node), f"{kind}{path}"
        if "additionalProperties" in node:
            assert isinstance(node["additionalProperties"], dict), f"{kind}{path}"


def test_metadata_is_only_an_object() -> None:
    for _, schema in schemas():
        assert schema["properties"]["metadata"] == {"type": "object"}


def test_field_names_are_camel_case_and_described() -> None:
    for kind, path, node in every_node():
        for name, child in node.get("properties", {}).items():
            assert CAMEL_CASE.match(name), f"{kind}{path}.{name}"
            if f"{path}.{name}" != ".metadata":
                assert child.get("description"), f"{kind}{path}.{name} has no description"


def test_required_fields_exist() -> None:
    for kind, path, node in every_node():
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{kind}{path}: required {name} is not a field"


def test_optional_fields_are_nullable_and_never_default_to_null() -> None:
    app = nodes("Application")
    for path in (".spec.autoscaling", ".spec.zookeeper", ".spec.probes.readiness", ".spec.template.workingDir"):
        assert app[path]["nullable"] is True, path
    assert "nullable" not in app[".spec.replicas"]
    for kind, path, node in every_node():
        if "nullable" in node:
            assert node["nullable"] is True, f"{kind}{path}"
        assert node.get("default", ...) is not None, f"{kind}{path}: default null"


def _fits(value: Any, node: JsonDict) -> bool:
    if node.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return True
    kind = node["type"]
    checks: dict[str, Any] = {
        "object": lambda v: (
            isinstance(v, dict) and all(_fits(v[k], node["properties"][k]) for k in v)
            if "properties" in node
            else isinstance(v, dict)
        ),
        "array": lambda v: isinstance(v, list) and all(_fits(item, node["items"]) for item in v),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    return bool(checks[kind](value))


def test_defaults_fit_their_nodes() -> None:
    defaults = 0
    for kind, path, node in every_node():
        if "default" in node:
            defaults += 1
            assert _fits(node["default"], node), f"{kind}{path}: default {node['default']!r}"
            if "enum" in node:
                assert node["default"] in node["enum"], f"{kind}{path}"
    assert defaults > 40


def test_enums_fit_their_type() -> None:
    for kind, path, node in every_node():
        for value in node.get("enum", []):
            assert _fits(value, node), f"{kind}{path}: {value!r}"


def test_bounds_are_openapi_3_0() -> None:
    for kind, path, node in every_node():
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in node:
                assert node[key] is True, f"{kind}{path}: {key} must be a boolean"
                assert key.replace("exclusiveM", "m") in node, f"{kind}{path}: {key} without its bound"
        for key in ("minimum", "maximum"):
            if key in node:
                assert abs(node[key]) < 2**63 - 1, f"{kind}{path}: {key} {node[key]}"


def test_list_maps_are_keyed_by_required_scalars() -> None:
    found = 0
    for kind, path, node in every_node():
        if node.get("x-kubernetes-list-type") == "map":
            found += 1
            items = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in items.get("required", []), f"{kind}{path}: key {key} must be required"
                assert items["properties"][key]["type"] in ("string", "integer"), f"{kind}{path}"
    assert found == 2  # ports by name, metrics by type


def test_rules_are_complete_and_point_at_fields() -> None:
    rules = 0
    for kind, path, node in every_node():
        for rule in node.get("x-kubernetes-validations", []):
            rules += 1
            assert set(rule) <= {"rule", "message", "fieldPath"}, f"{kind}{path}"
            assert rule["rule"] and rule["message"], f"{kind}{path}"
            if "fieldPath" in rule:
                target = node
                for part in rule["fieldPath"].lstrip(".").split("."):
                    assert part in target.get("properties", {}), f"{kind}{path}: fieldPath {rule['fieldPath']}"
                    target = target["properties"][part]
    assert rules >= 20


def test_status_is_its_own_schema() -> None:
    for kind, schema in schemas():
        status = schema["properties"]["status"]
        assert status["type"] == "object" and "observedGeneration" in status["properties"], kind
        assert not set(status["properties"]) & {"template", "config"}, kind


# -- the transforms on their own -------------------------------------------------------


def test_a_union_is_refused_not_written() -> None:
    from zkop.api.crd import CrdError, _structural

    with pytest.raises(CrdError, match="union"):
        _structural({"anyOf": [{"type": "integer"}, {"type": "string"}], "description": "x"})
    with pytest.raises(CrdError, match="union of several types"):
        _structural({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]})
    with pytest.raises(CrdError, match="no structural schema keyword"):
        _structural({"type": "string", "examples": ["a"]})


def test_optional_int_or_string_and_exclusive_bounds() -> None:
    from zkop.api.crd import _structural

    node = _structural(
        {
            "anyOf": [
                {
                    "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^a$"}],
                    "x-kubernetes-int-or-string": True,
                    "title": "T",
                },
                {"type": "null"},
            ],
            "default": None,
            "description": "d",
        }
    )
    assert node == {
        "description": "d",
        "nullable": True,
        "minimum": 1,
        "pattern": "^a$",
        "x-kubernetes-int-or-string": True,
        "anyOf": INT_OR_STRING,
    }
    assert _structural({"type": "number", "exclusiveMinimum": 0, "maximum": 2**63 - 1}) == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
