"""Turning plain data into typed resources (and back), with errors a user can act on."""

from __future__ import annotations

import json
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import pydantic
from pydantic.fields import FieldInfo

from zkop.api.errors import FieldProblems, LocItem, Problem, ResourceValidationError, format_path
from zkop.api.meta import API_VERSION, Resource
from zkop.api.registry import KINDS, known_kinds, resolve_kind
from zkop.errors import ValidationError


def parse_object(data: Mapping[str, Any], *, source: str = "", document: int | None = None) -> Resource:
    """Validate one document (``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``) and
    return the typed resource (:class:`~zkop.api.ZookeeperCluster`, ...).

    Field names must be camelCase as in YAML. Every problem of the document is collected into
    one :class:`ResourceValidationError` naming the field path, the value and what is allowed.
    """
    if not isinstance(data, Mapping):
        raise ResourceValidationError(
            [
                Problem(
                    "",
                    f"expected a mapping with apiVersion, kind, metadata and spec, got {describe_value(data)}",
                )
            ],
            source=source,
            document=document,
        )
    problems: list[Problem] = []
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    shown_name = name if isinstance(name, str) else None

    api_version = data.get("apiVersion")
    if "apiVersion" not in data:
        problems.append(Problem("apiVersion", f"required field is missing; use {API_VERSION}"))
    elif api_version != API_VERSION:
        problems.append(
            Problem(
                "apiVersion",
                f"{describe_value(api_version)} is not supported; allowed: {API_VERSION}",
            )
        )

    kind = data.get("kind")
    model: type[Resource] | None = None
    if "kind" not in data:
        problems.append(Problem("kind", f"required field is missing; known kinds: {known_kinds()}"))
    elif isinstance(kind, str) and kind in KINDS:
        model = KINDS[kind].model
    else:
        hint = ""
        if isinstance(kind, str):
            try:
                hint = f"; did you mean {resolve_kind(kind).kind}?"
            except ValidationError:
                hint = ""
        problems.append(
            Problem(
                "kind",
                f"{describe_value(kind)} is not a known kind{hint}; known kinds: {', '.join(KINDS)}",
            )
        )

    result: Resource | None = None
    if model is not None:
        body = dict(data)
        body["apiVersion"] = API_VERSION  # reported above when wrong
        try:
            result = model.model_validate(body, by_alias=True, by_name=False)
        except pydantic.ValidationError as exc:
            problems.extend(problems_from_pydantic(exc, model))
    if problems or result is None:
        raise ResourceValidationError(
            problems,
            source=source,
            document=document,
            kind=kind if isinstance(kind, str) and kind in KINDS else None,
            name=shown_name,
        )
    return result


def to_dict(obj: Resource) -> dict[str, Any]:
    """Plain JSON-compatible data with camelCase keys. Fields that are None, and empty
    labels, annotations and finalizers, are left out.

    ``parse_object(to_dict(obj)) == obj`` holds for every valid object.
    """
    data = obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        for key in ("labels", "annotations", "finalizers"):
            if not metadata.get(key):
                metadata.pop(key, None)
    return data


# -- pydantic errors -> problems ---------------------------------------------------------

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
    "none_required": "null",
}
_TIME_TYPES = {
    "datetime_type",
    "datetime_parsing",
    "datetime_from_date_parsing",
    "datetime_object_invalid",
    "timezone_aware",
    "timezone_naive",
}
_TIME_RULE = "an RFC 3339 timestamp with a time zone, e.g. 2024-01-31T12:00:00Z"


def describe_value(value: Any) -> str:
    """A short rendering of a value for messages, with its YAML type for non-strings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true (a boolean)" if value else "false (a boolean)"
    if isinstance(value, str):
        text = json.dumps(value if len(value) <= 60 else value[:60] + "...")
        return text
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def problems_from_pydantic(exc: pydantic.ValidationError, model: type[pydantic.BaseModel]) -> list[Problem]:
    """Translate pydantic's errors into :class:`Problem` items (path, message)."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc: tuple[LocItem, ...] = tuple(err["loc"])
        ctx: dict[str, Any] = err.get("ctx") or {}
        error = ctx.get("error")
        if isinstance(error, FieldProblems):
            out.extend(Problem(format_path(loc + sub), msg) for sub, msg in error.items)
            continue
        out.append(Problem(format_path(loc), _message(err["type"], loc, ctx, err, model)))
    unique: list[Problem] = []
    for problem in out:
        if problem not in unique:
            unique.append(problem)
    return unique


def _message(
    kind: str,
    loc: tuple[LocItem, ...],
    ctx: dict[str, Any],
    err: Any,
    model: type[pydantic.BaseModel],
) -> str:
    value = err.get("input")
    got = describe_value(value)
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, loc[:-1])
        tail = f"; allowed fields: {', '.join(allowed)}" if allowed else ""
        return f"unknown field{tail}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err.get("msg", "invalid value")))
    if kind == "string_type" and isinstance(value, bool | int | float):
        return f"expected a string, got {got}; quote the value in YAML"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {got}"
    if kind in _TIME_TYPES:
        return f"expected {_TIME_RULE}, got {got}"
    if kind == "literal_error" or kind == "enum":
        return f"{got} is not allowed; allowed: {ctx.get('expected', '')}".replace("' or '", "', '")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{got} is out of range; allowed: {_range(model, loc, ctx)}"
    if kind == "finite_number":
        return f"{got} is not allowed; expected a finite number"
    if kind in ("too_short", "too_long"):
        return _length_message(kind, ctx, "item")
    if kind in ("string_too_short", "string_too_long"):
        return _length_message(kind, ctx, "character")
    if kind == "string_pattern_mismatch":
        return f"{got} does not match the pattern {ctx.get('pattern', '')}"
    message = str(err.get("msg", "invalid value"))
    return f"{message} (got {got})"


def _length_message(kind: str, ctx: dict[str, Any], unit: str) -> str:
    if kind.endswith("too_short"):
        n = int(ctx.get("min_length", 1))
        return f"must have at least {n} {unit}{'' if n == 1 else 's'}"
    n = int(ctx.get("max_length", 0))
    return f"must have at most {n} {unit}{'' if n == 1 else 's'}"


def _range(model: type[pydantic.BaseModel], loc: tuple[LocItem, ...], ctx: dict[str, Any]) -> str:
    low: Any = ctx.get("ge", ctx.get("gt"))
    low_open = "gt" in ctx
    high: Any = ctx.get("le", ctx.get("lt"))
    high_open = "lt" in ctx
    info = _field_at(model, loc)
    if info is not None:
        for meta in info.metadata:
            if isinstance(meta, annotated_types.Ge):
                low, low_open = meta.ge, False
            elif isinstance(meta, annotated_types.Gt):
                low, low_open = meta.gt, True
            elif isinstance(meta, annotated_types.Le):
                high, high_open = meta.le, False
            elif isinstance(meta, annotated_types.Lt):
                high, high_open = meta.lt, True
    if low is not None and high is not None and not low_open and not high_open:
        return f"{low} to {high}"
    parts = []
    if low is not None:
        parts.append(f"more than {low}" if low_open else f"{low} or more")
    if high is not None:
        parts.append(f"less than {high}" if high_open else f"{high} or less")
    return " and ".join(parts) or "a value in range"


# -- walking the models ------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``Optional`` from a type."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _model_field(model: type[pydantic.BaseModel], key: LocItem) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _walk(model: type[pydantic.BaseModel], loc: Sequence[LocItem]) -> tuple[Any, FieldInfo | None]:
    """The type found at ``loc`` below ``model``, and the field info when ``loc`` ends on a
    field of a model. Unknown locations give ``(None, None)``."""
    current: Any = model
    info: FieldInfo | None = None
    for key in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
            info = _model_field(current, key)
            if info is None:
                return None, None
            current = info.annotation
            continue
        info = None
        if origin in (list, tuple, set, Sequence) and isinstance(key, int):
            args = get_args(current)
            current = args[0] if args else Any
        elif origin in (dict, Mapping):
            args = get_args(current)
            current = args[1] if len(args) == 2 else Any
        else:
            return None, None
    return _unwrap(current), info


def _field_at(model: type[pydantic.BaseModel], loc: Sequence[LocItem]) -> FieldInfo | None:
    return _walk(model, loc)[1]


def _allowed_fields(model: type[pydantic.BaseModel], loc: Sequence[LocItem]) -> list[str]:
    tp, _ = _walk(model, loc)
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return [info.alias or name for name, info in tp.model_fields.items()]
    return []
