"""JSON Schema of the kinds, and ``zkop explain KIND[.field.path]`` generated from it."""

from __future__ import annotations

import copy
import re
import textwrap
from typing import Any

from zkop.api.meta import API_VERSION, Resource
from zkop.api.registry import KindInfo, resolve_kind
from zkop.errors import ValidationError

JsonDict = dict[str, Any]


def json_schema(kind: str | KindInfo | type[Resource], *, inline: bool = False) -> JsonDict:
    """JSON Schema (2020-12, camelCase property names) of a kind, for validation.

    With ``inline=True`` every ``$ref`` is replaced by the definition it names and ``$defs``
    is dropped (the form Kubernetes CRDs need).
    """
    if isinstance(kind, str):
        model: type[Resource] = resolve_kind(kind).model
    elif isinstance(kind, KindInfo):
        model = kind.model
    else:
        model = kind
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return inline_refs(schema) if inline else schema


def inline_refs(schema: JsonDict) -> JsonDict:
    """``schema`` with each ``$ref`` replaced by the definition it names (keys beside ``$ref``
    win) and its ``$defs`` dropped."""
    defs: JsonDict = schema.pop("$defs", {})
    result = _inline(schema, defs)
    assert isinstance(result, dict)
    return result


def _inline(node: Any, defs: JsonDict) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    out: JsonDict = {}
    ref = node.get("$ref")
    if isinstance(ref, str):
        out.update(_inline(copy.deepcopy(defs[ref.rsplit("/", 1)[-1]]), defs))
    out.update({key: _inline(value, defs) for key, value in node.items() if key != "$ref"})
    return out


# -- explain -----------------------------------------------------------------------------


def explain(path: str) -> str:
    """Documentation of a kind or one of its fields, e.g. ``explain("zkc.spec.config")``:
    the field's type and description, then each child field with type and description."""
    text = path.strip()
    if not text:
        raise ValidationError("nothing to explain", hint="give a kind, e.g. 'zkc.spec'")
    kind_part, _, rest = text.partition(".")
    info = resolve_kind(kind_part)
    schema = json_schema(info, inline=True)
    node: JsonDict = schema
    trail: list[str] = []
    for raw in [p for p in rest.split(".") if p] if rest else []:
        part = re.sub(r"\[[^\]]*\]$", "", raw)
        container = _contents(node)
        props: JsonDict = container.get("properties", {})
        key = part if part in props else _match(part, props)
        if key is None:
            where = ".".join([info.kind, *trail])
            known = ", ".join(props) or "none (not an object)"
            raise ValidationError(
                f"field {part!r} does not exist in {where}; its fields: {known}",
                hint=f"run 'zkop explain {where}' to see them",
            )
        node = _resolve(props[key])
        trail.append(key)

    lines = [f"KIND:     {info.kind}", f"VERSION:  {API_VERSION}", ""]
    if trail:
        lines += [f"FIELD:    {'.'.join(trail)} <{_type_label(node)}>", ""]
    lines.append("DESCRIPTION:")
    lines += _wrap(_describe(node), "    ")
    container = _contents(node)
    props = container.get("properties", {})
    if props:
        required = set(container.get("required", []))
        lines += ["", "FIELDS:"]
        for name, child in props.items():
            child = _resolve(child)
            marker = " -required-" if name in required else ""
            lines.append(f"  {name}\t<{_type_label(child)}>{marker}")
            lines += _wrap(_describe(child), "    ")
            lines.append("")
        while lines and not lines[-1]:
            lines.pop()
    return "\n".join(lines) + "\n"


def _match(part: str, props: JsonDict) -> str | None:
    lowered = part.lower()
    for key in props:
        if key.lower() == lowered:
            return key
    return None


def _resolve(node: JsonDict) -> JsonDict:
    """Collapse ``anyOf: [X, null]`` into X (keeping the outer description and default)."""
    options = node.get("anyOf")
    if isinstance(options, list):
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1 and "x-kubernetes-int-or-string" not in node:
            merged = dict(real[0])
            for key in ("description", "default", "title"):
                if key in node:
                    merged[key] = node[key]
            return merged
    return node


def _contents(node: JsonDict) -> JsonDict:
    """The object whose fields a node shows: itself, its list items or its map values."""
    node = _resolve(node)
    while True:
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            node = _resolve(node["items"])
        elif node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
            node = _resolve(node["additionalProperties"])
        else:
            return node


def _type_label(node: JsonDict) -> str:
    node = _resolve(node)
    if node.get("x-kubernetes-int-or-string"):
        return "quantity" if node.get("title") == "Quantity" else "int-or-string"
    kind = node.get("type")
    if kind == "array":
        items = node.get("items")
        return "[]" + (_type_label(items) if isinstance(items, dict) else "any")
    if kind == "object":
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            return "map[string]" + _type_label(values)
        return "object"
    if isinstance(kind, str):
        return kind
    return "any"


def _describe(node: JsonDict) -> str:
    text = str(node.get("description") or "").strip()
    extra: list[str] = []
    values = node.get("enum")
    if isinstance(values, list):
        extra.append("One of: " + ", ".join(str(v) for v in values) + ".")
    bounds = [
        f"{label} {node[key]}"
        for key, label in (
            ("minimum", "minimum"),
            ("exclusiveMinimum", "above"),
            ("maximum", "maximum"),
            ("exclusiveMaximum", "below"),
        )
        if key in node
    ]
    if bounds and node.get("maximum") != 2**63 - 1:
        extra.append("Allowed: " + ", ".join(bounds) + ".")
    if "default" in node and node["default"] not in ({}, [], None):
        extra.append(f"Default: {_show_default(node['default'])}.")
    return " ".join([text, *extra]).strip() or "(no description)"


def _show_default(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    return str(value)


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, width=80, initial_indent=indent, subsequent_indent=indent) or [indent]
