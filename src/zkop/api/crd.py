"""CustomResourceDefinitions of zkop's kinds, generated from the same pydantic models.

:func:`crds` returns one ``apiextensions.k8s.io/v1`` CustomResourceDefinition per kind (group
``zkop.io``, version ``v1``, served and stored). Each schema is the models' own JSON Schema
made *structural*, the form the API server requires:

1. pydantic writes the JSON Schema (:class:`_KubeJsonSchema`), with two additions it does not
   make on its own: the defaults of fields that have a factory, and, per model, the Kubernetes
   form of the checks its validators make in Python (:data:`MODEL_RULES`, :data:`FIELD_SCHEMAS`:
   CEL rules in ``x-kubernetes-validations``, patterns, list types);
2. every ``$ref`` is replaced by the definition it names (:func:`zkop.api.explain.inline_refs`);
3. every node is rewritten as the OpenAPI v3 the API server accepts (:func:`_structural`):
   ``Optional`` is ``nullable: true``, an int-or-string is ``x-kubernetes-int-or-string`` with
   its validations outside ``anyOf``, exclusive bounds are OpenAPI 3.0 booleans, titles go.

``metadata`` is only ``type: object``: the API server owns it (names, labels, annotations and
finalizers follow its own rules). What Kubernetes cannot check is left to zkop's own validation,
each with its reason in :data:`LEFT_TO_ZKOP`; a unit test keeps these tables complete, so every
validator of the models is either translated or listed there.

The CEL rules need Kubernetes 1.29 or newer (``quantity()``); they are tested on 1.34.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from zkop.api.application import (
    ApplicationSpec,
    ApplicationTemplate,
    Autoscaling,
    EnvVar,
    HttpProbe,
    MetricTarget,
    Probe,
    Probes,
    RollingUpdate,
)
from zkop.api.explain import inline_refs
from zkop.api.meta import DNS_LABEL_PATTERN, GROUP, INT64_MAX, VERSION, Condition, ResourceRequirements
from zkop.api.operatorconfig import OperatorConfigSpec
from zkop.api.registry import KINDS, KindInfo
from zkop.api.zookeepercluster import (
    CONFIG_KEY_PATTERN,
    RESERVED_CONFIG_KEYS,
    BackupSpec,
    CertificatesSpec,
    JvmSpec,
    ZookeeperClusterSpec,
    ZookeeperConfig,
)
from zkop.api.zookeeperznode import ZookeeperZnodeSpec

JsonDict = dict[str, Any]

#: The categories every kind belongs to: ``kubectl get zkop`` lists them all.
CATEGORIES = ("zkop",)

#: The first line of each generated file.
HEADER = "# Generated from zkop's models (src/zkop/api) by `zkop kube crds --write deploy/crds`; do not edit.\n"


class CrdError(ValueError):
    """The models hold something a structural schema cannot express (a bug in zkop)."""


# -- the checks of the models, as Kubernetes makes them ----------------------------------


@dataclass(frozen=True)
class Rule:
    """One ``x-kubernetes-validations`` entry: a CEL expression that must hold for the node.

    ``field_path`` (relative, e.g. ``.maxReplicas``) is where the API server reports the error,
    so it names the same field as zkop's own error, and ``message`` is zkop's wording. Messages
    are fixed text: a ``messageExpression`` showing the values would need ``string()`` of them,
    whose size the API server cannot bound, so its cost estimate refuses it. ``covers`` names
    the model validator the rule stands for.
    """

    rule: str
    message: str
    covers: str
    field_path: str = ""

    def to_json(self) -> JsonDict:
        out: JsonDict = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


@dataclass(frozen=True)
class FieldSchema:
    """Schema for one field's node beside what pydantic writes: keywords to ``add`` (a
    pattern, a list type), keywords to ``drop``, and CEL ``rules`` on the field itself."""

    covers: str = ""
    add: Mapping[str, Any] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()


def _present(*paths: str) -> str:
    """CEL: every field on each path (``self.a.b``) is set. Rules guard every field that is not
    required: the API server also checks them against each default, before nested defaults."""
    tests: list[str] = []
    for path in paths:
        parts = path.split(".")
        tests += [f"has({'.'.join(parts[:i])})" for i in range(2, len(parts) + 1)]
    return " && ".join(dict.fromkeys(tests))


def _when(condition: str, then: str) -> str:
    """CEL: ``then`` must hold when ``condition`` does."""
    return f"!({condition}) || {then}"


def _quantity(expr: str) -> str:
    """CEL: the quantity in an int-or-string node (``1Gi`` or ``1073741824``)."""
    return f"quantity(string({expr}))"


def _quantity_within(value: str, bound: str) -> str:
    """CEL: when both quantity nodes are set, ``value`` is not above ``bound``."""
    return _when(_present(value, bound), f"{_quantity(value)}.compareTo({_quantity(bound)}) <= 0")


def _not_blank(covers: str, message: str) -> Rule:
    return Rule("self.trim() != ''", message, covers)


def _request_within_limit(resource: str) -> Rule:
    request, limit = f"self.requests.{resource}", f"self.limits.{resource}"
    return Rule(
        rule=_quantity_within(request, limit),
        message=f"the request is above the limit (limits.{resource}); a request must not exceed its limit",
        field_path=f".requests.{resource}",
        covers="_requests_within_limits",
    )


def _session_timeout_rules() -> tuple[Rule, ...]:
    floor = "2 * self.tickTime"
    lowest = f"(has(self.minSessionTimeout) && self.minSessionTimeout > {floor} ? self.minSessionTimeout : {floor})"
    covers = "_check_session_timeouts"
    return (
        Rule(
            rule=_when(_present("self.tickTime", "self.minSessionTimeout"), f"self.minSessionTimeout >= {floor}"),
            message="is below 2 x tickTime; allowed: 2 x tickTime or more",
            field_path=".minSessionTimeout",
            covers=covers,
        ),
        Rule(
            rule=_when(_present("self.tickTime", "self.maxSessionTimeout"), f"self.maxSessionTimeout >= {lowest}"),
            message="is below the minimum session timeout (minSessionTimeout, at least 2 x tickTime)",
            field_path=".maxSessionTimeout",
            covers=covers,
        ),
        Rule(
            rule=_when(
                _present("self.tickTime", "self.minSessionTimeout") + " && !has(self.maxSessionTimeout)",
                "self.minSessionTimeout <= 20 * self.tickTime",
            ),
            message="is above the default maxSessionTimeout (20 x tickTime); set maxSessionTimeout too",
            field_path=".minSessionTimeout",
            covers=covers,
        ),
    )


#: additionalConfig keys zkop writes itself: those of RESERVED_CONFIG_KEYS and server.N, group.N
#: and weight.N, each also after the ``zookeeper.`` system-property prefix.
RESERVED_CONFIG_KEY_PATTERN = (
    r"^(zookeeper\.)?("
    + "|".join(re.escape(key) for key in RESERVED_CONFIG_KEYS)
    + r"|(server|group|weight)\.[0-9]+|ssl\..*)$"
)
#: Values of additionalConfig: one line.
CONFIG_VALUE_PATTERN = r"^[^\r\n\x00]*$"


def _additional_config_rules() -> tuple[Rule, ...]:
    return (
        Rule(
            rule=f"self.all(k, !k.matches(r'{RESERVED_CONFIG_KEY_PATTERN}'))",
            message="a key is managed by zkop: server.N, group.N, weight.N, ssl.*, "
            + ", ".join(RESERVED_CONFIG_KEYS)
            + " (also after 'zookeeper.') are refused",
            covers="_check_additional_config",
        ),
        Rule(
            rule=f"self.all(k, k.matches(r'{CONFIG_KEY_PATTERN}'))",
            message="a key is not a valid zoo.cfg key; allowed: letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'",
            covers="_check_additional_config",
        ),
    )


def _heap_within_memory_limit() -> Rule:
    heap, limit = "self.jvm.heap", "self.resources.limits.memory"
    return Rule(
        rule=_quantity_within(heap, limit),
        message="is above resources.limits.memory; the heap must fit in the memory limit",
        field_path=".jvm.heap",
        covers="_heap_within_memory_limit",
    )


def _exactly_one_probe() -> tuple[Rule, ...]:
    tcp, http, exec_ = "has(self.tcp)", "has(self.http)", "has(self.exec)"
    return (
        Rule(
            rule=f"{tcp} || {http} || {exec_}",
            message="set exactly one of tcp, http or exec; none is set",
            covers="_exactly_one",
        ),
        Rule(
            rule=f"!({tcp} && {http}) && !({tcp} && {exec_}) && !({http} && {exec_})",
            message="set exactly one of tcp, http or exec; more than one is set",
            covers="_exactly_one",
        ),
    )


def _metric_fields(metric: str, wanted: str, other: str) -> tuple[Rule, ...]:
    covers = "_fields_match_type"
    return (
        Rule(
            rule=_when(f"self.type == '{metric}'", f"has(self.{wanted})"),
            message=f"required for type {metric}",
            field_path=f".{wanted}",
            covers=covers,
        ),
        Rule(
            rule=_when(f"self.type == '{metric}'", f"!has(self.{other})"),
            message=f"not allowed for type {metric}; use {wanted}",
            field_path=f".{other}",
            covers=covers,
        ),
    )


def _is_zero(expr: str) -> str:
    """CEL: an int-or-percent node is zero (``0``, ``0%``, ``00%``)."""
    return f"(type({expr}) == int ? {expr} == 0 : {expr}.matches('^0+%$'))"


def _probe_port_declared(which: str, kind: str) -> Rule:
    port = f"self.probes.{which}.{kind}.port"
    ports = "self.template.ports"
    return Rule(
        rule=_when(
            f"{_present(port)} && type({port}) == string",
            f"has({ports}) && {ports}.exists(p, p.name == {port})",
        ),
        message="the port is not declared in spec.template.ports",
        field_path=f".probes.{which}.{kind}.port",
        covers="_probe_ports_declared",
    )


#: CEL rules on a model's own node (cross-field checks of its model validators).
MODEL_RULES: dict[type[BaseModel], tuple[Rule, ...]] = {
    ResourceRequirements: (_request_within_limit("cpu"), _request_within_limit("memory")),
    ZookeeperConfig: _session_timeout_rules(),
    ZookeeperClusterSpec: (_heap_within_memory_limit(),),
    CertificatesSpec: (
        Rule(
            rule=_when(
                _present("self.validitySeconds", "self.renewBeforeSeconds"),
                "self.renewBeforeSeconds < self.validitySeconds",
            ),
            message="is not below validitySeconds; members would be restarted for new certificates all the time",
            field_path=".renewBeforeSeconds",
            covers="_renew_within_validity",
        ),
    ),
    OperatorConfigSpec: (
        Rule(
            rule=_when(
                _present("self.replicas", "self.leaderElection.leaderElect") + " && self.replicas > 1",
                "self.leaderElection.leaderElect",
            ),
            message="must be true with several replicas, or replicas active at once would act without fencing; "
            "set replicas to 1 to turn it off",
            field_path=".leaderElection.leaderElect",
            covers="_several_replicas_need_election",
        ),
    ),
    Probe: _exactly_one_probe(),
    Probes: (
        Rule(
            rule=_when(_present("self.liveness.successThreshold"), "self.liveness.successThreshold == 1"),
            message="a liveness probe must have successThreshold 1",
            field_path=".liveness.successThreshold",
            covers="_liveness_success_threshold",
        ),
    ),
    MetricTarget: (
        *_metric_fields("cpu", "targetUtilization", "targetValue"),
        *_metric_fields("load", "targetValue", "targetUtilization"),
    ),
    Autoscaling: (
        Rule(
            rule=_when(_present("self.minReplicas"), "self.maxReplicas >= self.minReplicas"),
            message="is below minReplicas; allowed: minReplicas or more",
            field_path=".maxReplicas",
            covers="_check",
        ),
    ),
    RollingUpdate: (
        Rule(
            rule=_when(
                _present("self.maxSurge", "self.maxUnavailable"),
                f"!({_is_zero('self.maxSurge')} && {_is_zero('self.maxUnavailable')})",
            ),
            message="maxSurge and maxUnavailable are both zero, so no instance could ever be replaced; "
            "make one of them larger than zero",
            field_path=".maxUnavailable",
            covers="_not_both_zero",
        ),
    ),
    ApplicationSpec: tuple(
        _probe_port_declared(which, kind) for which in ("readiness", "liveness") for kind in ("tcp", "http")
    ),
}


#: Schema for single fields, by (model, field name as written in YAML).
FIELD_SCHEMAS: dict[tuple[type[BaseModel], str], FieldSchema] = {
    (BackupSpec, "directory"): FieldSchema(
        covers="_absolute",
        rules=(Rule(rule="self.startsWith('/')", message="is not an absolute path", covers="_absolute"),),
    ),
    (ZookeeperZnodeSpec, "path"): FieldSchema(
        covers="_check_path",
        rules=(
            Rule(
                rule="self != '/zookeeper' && !self.startsWith('/zookeeper/')",
                message="is under /zookeeper, which ZooKeeper keeps for itself",
                covers="_check_path",
            ),
        ),
    ),
    (ZookeeperConfig, "additionalConfig"): FieldSchema(
        covers="_check_additional_config",
        add={"additionalProperties": {"type": "string", "pattern": CONFIG_VALUE_PATTERN}},
        rules=_additional_config_rules(),
    ),
    (JvmSpec, "heap"): FieldSchema(
        rules=(
            Rule(
                rule=f"{_quantity('self')}.compareTo(quantity('16Mi')) >= 0",
                message="is too small for ZooKeeper; allowed: 16Mi or more",
                covers="_check_heap",
            ),
        ),
    ),
    (ZookeeperClusterSpec, "zookeeperHome"): FieldSchema(
        rules=(_not_blank("_not_blank", "must not be empty; leave the field out for the default"),)
    ),
    (ZookeeperClusterSpec, "image"): FieldSchema(
        rules=(_not_blank("_not_blank", "must not be empty; leave the field out for the default"),)
    ),
    (OperatorConfigSpec, "targetNamespace"): FieldSchema(
        covers="_check_namespace",
        add={"maxLength": 63, "pattern": f"^({DNS_LABEL_PATTERN.removeprefix('^').removesuffix('$')})?$"},
    ),
    (ApplicationTemplate, "command"): FieldSchema(
        rules=(
            Rule(
                "size(self) == 0 || self[0].trim() != ''",
                "the program (command[0]) must not be empty",
                "_check_template",
            ),
        ),
    ),
    (ApplicationTemplate, "env"): FieldSchema(
        # A map NAME: value or a list of {name, value}: no one type fits both.
        add={"x-kubernetes-preserve-unknown-fields": True},
        drop=("type", "items"),
    ),
    (ApplicationTemplate, "workingDir"): FieldSchema(
        rules=(_not_blank("_check_template", "must not be empty; leave it out for the default"),)
    ),
    (ApplicationTemplate, "ports"): FieldSchema(
        covers="_check_template",  # a name declared twice: the API server refuses duplicate map keys
        add={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ),
    (HttpProbe, "path"): FieldSchema(covers="_check_path", add={"pattern": "^/"}),
    (Autoscaling, "metrics"): FieldSchema(
        covers="_check",  # a type listed twice: the API server refuses duplicate map keys
        add={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
}

#: Checks of the models that Kubernetes does not make, by (model, validator), and why. The
#: operator parses every object with zkop's models, so what is left here is refused there
#: (and reported in the object's events), only later than at the API server.
LEFT_TO_ZKOP: dict[tuple[type[BaseModel], str], str] = {
    (EnvVar, "_check_name"): (
        "spec.template.env takes a map NAME: value or a list of {name, value}; no structural type fits both, "
        "so env is free-form (x-kubernetes-preserve-unknown-fields) and the API server checks no variable name"
    ),
    (ApplicationTemplate, "_check_template"): (
        "a variable set twice in spec.template.env (env is free-form, see EnvVar), and a containerPort declared "
        "twice: comparing every port with every other is quadratic, and with no bound on the number of ports "
        "the API server's cost estimate refuses the rule (a port *name* declared twice is refused: ports is a "
        "list-map keyed by name)"
    ),
    (Condition, "_type_not_empty"): (
        "conditions are status, written by the operator through the same models; a rule over every "
        "condition's type, with no bound on their number or length, exceeds the API server's cost estimate"
    ),
}


# -- the JSON Schema pydantic writes, with Kubernetes' additions -------------------------


class _KubeJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, plus defaults of factories and the Kubernetes form of checks."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            return {}  # the model's own field defaults fill it in, one by one
        return factory()  # type: ignore[call-arg]

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        _add_kube_checks(json_schema, schema["cls"])
        return json_schema


def _add_kube_checks(json_schema: JsonDict, model: type[BaseModel]) -> None:
    rules = MODEL_RULES.get(model, ())
    if rules:
        json_schema["x-kubernetes-validations"] = [r.to_json() for r in rules]
    properties: JsonDict = json_schema.get("properties", {})
    for (owner, name), extra in FIELD_SCHEMAS.items():
        if owner is not model:
            continue
        if name not in properties:
            raise CrdError(f"{model.__name__} has no field {name!r} (FIELD_SCHEMAS is out of date)")
        node: JsonDict = properties[name]
        for key in extra.drop:
            node.pop(key, None)
        node.update(copy.deepcopy(dict(extra.add)))
        if extra.rules:
            node["x-kubernetes-validations"] = [r.to_json() for r in extra.rules]


def model_json_schema(model: type[BaseModel]) -> JsonDict:
    """The JSON Schema of ``model`` with Kubernetes' additions and every ``$ref`` inlined
    (not yet structural)."""
    return inline_refs(model.model_json_schema(by_alias=True, mode="validation", schema_generator=_KubeJsonSchema))


# -- structural schemas -----------------------------------------------------------------

_NULL = {"type": "null"}
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
#: The keywords a node may have, in the order they are written.
_KEYWORDS = (
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
)
#: What JSON Schema says that a CRD leaves out.
_FORGOTTEN = ("title",)


def _structural(node: JsonDict) -> JsonDict:
    """One node (and everything below it) as the API server accepts it."""
    out = _openapi_bounds(_int_or_string(_nullable(node)))
    for key in _FORGOTTEN:
        out.pop(key, None)
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]  # unknown fields are pruned, or refused by strict field validation
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "properties" in out:
        out["properties"] = {name: _structural(child) for name, child in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _structural(out[key])
    if "default" in out:
        out["default"] = _without_nulls(out["default"])
    if "x-kubernetes-validations" in out:
        out["x-kubernetes-validations"] = [_rule_order(rule) for rule in out["x-kubernetes-validations"]]
    return _ordered(out)


def _nullable(node: JsonDict) -> JsonDict:
    """``anyOf: [X, {type: null}]`` (pydantic's Optional) -> X with ``nullable: true``."""
    options = node.get("anyOf")
    if not isinstance(options, list) or _NULL not in options:
        return dict(node)
    rest = [option for option in options if option != _NULL]
    if len(rest) != 1:
        raise CrdError(f"a union of several types cannot be structural: {options}")
    out: JsonDict = {**rest[0], **{k: v for k, v in node.items() if k != "anyOf"}, "nullable": True}
    if out.get("default", ...) is None:
        del out["default"]
    return out


def _int_or_string(node: JsonDict) -> JsonDict:
    """An int-or-string keeps exactly ``anyOf: [{type: integer}, {type: string}]``; the
    validations of each branch move beside it (each applies to its own type only)."""
    if not node.get("x-kubernetes-int-or-string"):
        if "anyOf" in node:
            raise CrdError(f"a union cannot be structural: {node['anyOf']}")
        return node
    out: JsonDict = {key: value for key, value in node.items() if key not in ("anyOf", "type")}
    for branch in node.get("anyOf", []):
        for key, value in branch.items():
            if key == "type":
                continue
            if key in out and out[key] != value:
                raise CrdError(f"int-or-string branches disagree on {key}: {node['anyOf']}")
            out[key] = value
    out["anyOf"] = copy.deepcopy(_INT_OR_STRING_ANY_OF)
    return out


def _openapi_bounds(node: JsonDict) -> JsonDict:
    """JSON Schema 2020-12 bounds as OpenAPI 3.0 ones; 64-bit limits go (Kubernetes integers
    are 64-bit already, and a bound of 2**63 - 1 does not survive the float it is kept in)."""
    out = dict(node)
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(exclusive)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[inclusive] = value
            out[exclusive] = True
    if isinstance(out.get("maximum"), int) and out["maximum"] >= INT64_MAX:
        del out["maximum"]
    if isinstance(out.get("minimum"), int) and out["minimum"] <= -INT64_MAX - 1:
        del out["minimum"]
    return out


def _without_nulls(value: Any) -> Any:
    """A default as zkop writes objects: fields that are None are left out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _rule_order(rule: JsonDict) -> JsonDict:
    """A rule's keys in the order :meth:`Rule.to_json` writes them (pydantic sorts them)."""
    order = ("rule", "message", "fieldPath")
    return {key: rule[key] for key in order if key in rule}


def _ordered(node: JsonDict) -> JsonDict:
    unknown = set(node) - set(_KEYWORDS)
    if unknown:
        raise CrdError(f"no structural schema keyword for {sorted(unknown)} in {node}")
    return {key: node[key] for key in _KEYWORDS if key in node}


# -- the CRD of one kind ----------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A printer column: its ``json_path`` names a field, whose type and description it takes."""

    name: str
    json_path: str
    priority: int = 0


@dataclass(frozen=True)
class KindView:
    """How ``kubectl`` shows and scales a kind."""

    columns: tuple[Column, ...]
    scale: bool = False
    label_selector_path: str = ""


_AGE = Column("Age", ".metadata.creationTimestamp")

VIEWS: dict[str, KindView] = {
    "ZookeeperCluster": KindView(
        columns=(
            Column("Ready", ".status.readyReplicas"),
            Column("Desired", ".spec.replicas"),
            Column("Phase", ".status.phase"),
            Column("Leader", ".status.leader"),
            _AGE,
            Column("Connection", ".status.connectionString", priority=1),
            Column("Config-Version", ".status.configVersion", priority=1),
        ),
        scale=True,
    ),
    "Application": KindView(
        columns=(
            Column("Ready", ".status.readyReplicas"),
            Column("Desired", ".spec.replicas"),
            Column("Up-To-Date", ".status.updatedReplicas"),
            Column("Endpoints", ".status.endpoints"),
            _AGE,
            Column("Cluster", ".spec.zookeeper.clusterRef.name", priority=1),
            Column("Min", ".spec.autoscaling.minReplicas", priority=1),
            Column("Max", ".spec.autoscaling.maxReplicas", priority=1),
        ),
        scale=True,
        label_selector_path=".status.selector",
    ),
    "ZookeeperZnode": KindView(
        columns=(
            Column("Cluster", ".spec.clusterRef.name"),
            Column("Path", ".spec.path"),
            Column("Phase", ".status.phase"),
            _AGE,
            Column("User", ".status.user", priority=1),
            Column("Connection", ".status.connectionString", priority=1),
        ),
    ),
    "OperatorConfig": KindView(
        columns=(
            Column("Target-Namespace", ".spec.targetNamespace"),
            Column("Replicas", ".spec.replicas"),
            Column("Ready", ".status.readyReplicas"),
            Column("Leader", ".status.leader"),
            _AGE,
            Column("Epoch", ".status.epoch", priority=1),
        ),
    ),
}


def openapi_schema(info: KindInfo) -> JsonDict:
    """The structural ``openAPIV3Schema`` of a kind."""
    schema = model_json_schema(info.model)
    properties: JsonDict = schema["properties"]
    status = _structural(properties["status"])
    status.pop("default", None)  # the operator writes status; the API server does not make one up
    root: JsonDict = {
        "type": "object",
        "description": schema["description"],
        "properties": {
            "apiVersion": {"type": "string", "description": properties["apiVersion"]["description"]},
            "kind": {"type": "string", "description": properties["kind"]["description"]},
            "metadata": {"type": "object"},
            "spec": _structural(properties["spec"]),
            "status": status,
        },
    }
    required = [name for name in schema.get("required", []) if name in ("spec", "status")]
    if required:
        root["required"] = required
    return root


def field_schema(schema: JsonDict, json_path: str) -> JsonDict:
    """The node at ``json_path`` (``.spec.replicas``) of a structural schema; metadata's
    fields are the API server's (``creationTimestamp`` is a date-time)."""
    if json_path == ".metadata.creationTimestamp":
        return {"type": "string", "format": "date-time", "description": "When the object was created."}
    node = schema
    for part in json_path.lstrip(".").split("."):
        properties = node.get("properties", {})
        if part not in properties:
            raise CrdError(f"{json_path} is not a field of the schema")
        node = properties[part]
    return node


def _printer_columns(schema: JsonDict, view: KindView) -> list[JsonDict]:
    columns: list[JsonDict] = []
    for column in view.columns:
        node = field_schema(schema, column.json_path)
        kind = "date" if node.get("format") == "date-time" else node.get("type", "string")
        if kind in ("array", "object"):
            kind = "string"
        entry: JsonDict = {
            "name": column.name,
            "type": kind,
            "jsonPath": column.json_path,
            "description": node.get("description", ""),
        }
        if column.priority:
            entry["priority"] = column.priority
        columns.append(entry)
    return columns


def _subresources(schema: JsonDict, view: KindView) -> JsonDict:
    subresources: JsonDict = {"status": {}}
    if view.scale:
        scale = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
        if view.label_selector_path:
            scale["labelSelectorPath"] = view.label_selector_path
        for path in scale.values():
            field_schema(schema, path)  # each names a field
        subresources["scale"] = scale
    return subresources


def _names(info: KindInfo) -> JsonDict:
    return {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
        "shortNames": list(info.short_names),
        "categories": list(CATEGORIES),
    }


def crd(info: KindInfo) -> JsonDict:
    """The CustomResourceDefinition of one kind."""
    schema = openapi_schema(info)
    view = VIEWS[info.kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": _names(info),
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": _subresources(schema, view),
                    "additionalPrinterColumns": _printer_columns(schema, view),
                }
            ],
        },
    }


def crds() -> list[JsonDict]:
    """The CustomResourceDefinitions of every kind: ZookeeperCluster, Application, OperatorConfig."""
    return [crd(info) for info in KINDS.values()]


# -- as files ----------------------------------------------------------------------------


def file_name(definition: JsonDict) -> str:
    """``zookeeperclusters.zkop.io.yaml``: the file a CRD is kept in under deploy/crds/."""
    return f"{definition['metadata']['name']}.yaml"


def to_yaml(definition: JsonDict) -> str:
    """One CRD as a YAML document."""
    return yaml.safe_dump(definition, sort_keys=False, default_flow_style=False, width=100)


def to_file(definition: JsonDict) -> str:
    """The text of a CRD's file: the header, then the document."""
    return HEADER + to_yaml(definition)


def stream(definitions: list[JsonDict]) -> str:
    """Several CRDs as one multi-document YAML stream."""
    return "".join(f"---\n{to_yaml(d)}" for d in definitions)


__all__ = [
    "CATEGORIES",
    "FIELD_SCHEMAS",
    "HEADER",
    "LEFT_TO_ZKOP",
    "MODEL_RULES",
    "VIEWS",
    "Column",
    "CrdError",
    "FieldSchema",
    "KindView",
    "Rule",
    "crd",
    "crds",
    "field_schema",
    "file_name",
    "model_json_schema",
    "openapi_schema",
    "stream",
    "to_file",
    "to_yaml",
]
