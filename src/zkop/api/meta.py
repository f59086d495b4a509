"""Shared building blocks: the model base, object metadata, conditions, resources, names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from zkop.api.errors import FieldProblems, LocItem
from zkop.api.quantity import Quantity

GROUP = "zkop.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

#: Largest value of the 64-bit integers Kubernetes uses for counters.
INT64_MAX = 2**63 - 1


class ApiModel(BaseModel):
    """Base of every zkop model: camelCase in documents, unknown fields refused, no coercion
    of types (``replicas: "3"`` is an error, as with ``kubectl --validate=strict``)."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        strict=True,
        validate_assignment=True,
    )


# -- names -------------------------------------------------------------------------------

#: A DNS-1123 label (without its length limit of 63) as a regular expression that Python, JSON
#: Schema and Kubernetes (RE2) read alike.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A port name (IANA service name, without its length limit of 15): runs of lowercase letters
#: and digits joined by single '-', with at least one letter.
PORT_NAME_PATTERN = r"^([0-9]+-)*[0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$"

_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = _QUALIFIED_NAME
_PORT_NAME = re.compile(PORT_NAME_PATTERN)

DNS_LABEL_RULE = (
    "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter "
    "or digit, at most 63 characters (e.g. 'orders-zk')"
)


def _show(value: str, limit: int = 70) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def dns_label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label, or None when it is one."""
    if not value:
        return f"must not be empty; must be {DNS_LABEL_RULE}"
    if len(value) > 63:
        return f"{_show(value)} is {len(value)} characters long; must be {DNS_LABEL_RULE}"
    if not _DNS_LABEL.fullmatch(value):
        return f"{_show(value)} is not valid; must be {DNS_LABEL_RULE}"
    return None


def _check_dns_label(value: str) -> str:
    problem = dns_label_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _qualified_name_problem(key: str, what: str) -> str | None:
    """Kubernetes rule for label/annotation keys and finalizers: ``[prefix/]name``."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return (
            f"{what} {_show(key)} has an invalid prefix {_show(prefix)}; the prefix must be "
            "a DNS subdomain (lowercase, e.g. 'zkop.io'), at most 253 characters"
        )
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (
            f"{what} {_show(key)} is not valid; the name part must be at most 63 characters of "
            "letters, digits, '-', '_' and '.', starting and ending with a letter or digit, "
            "optionally after a DNS subdomain prefix and '/' (e.g. 'app.kubernetes.io/name')"
        )
    return None


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    items: list[tuple[tuple[LocItem, ...], str]] = []
    for key, val in value.items():
        problem = _qualified_name_problem(key, "label key")
        if problem:
            items.append(((key,), problem))
        elif len(val) > 63 or (val and not _LABEL_VALUE.match(val)):
            items.append(
                (
                    (key,),
                    f"label value {_show(val)} is not valid; must be empty or at most 63 "
                    "characters of letters, digits, '-', '_' and '.', starting and ending with "
                    "a letter or digit",
                )
            )
    if items:
        raise FieldProblems(items)
    return value


def _check_names(names: Iterable[tuple[LocItem, str]], what: str) -> None:
    """One problem per ``(location, name)`` whose name is not a qualified name."""
    items: list[tuple[tuple[LocItem, ...], str]] = [
        ((loc,), problem) for loc, name in names if (problem := _qualified_name_problem(name, what))
    ]
    if items:
        raise FieldProblems(items)


def _check_annotations(value: dict[str, str]) -> dict[str, str]:
    _check_names(((key, key) for key in value), "annotation key")
    return value


def _check_finalizers(value: list[str]) -> list[str]:
    _check_names(enumerate(value), "finalizer")
    return value


def _version_to_str(value: Any) -> Any:
    """``resourceVersion`` is a string; a non-negative 64-bit integer is accepted too."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= INT64_MAX:
            raise ValueError(f"{value} is out of range; allowed: a string, or 0 to {INT64_MAX}")
        return str(value)
    return value


#: A DNS-1123 label (names of objects and namespaces).
DnsLabel = Annotated[
    str,
    AfterValidator(_check_dns_label),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS_LABEL_PATTERN}),
]


def check_port_name(value: str) -> str:
    """Return ``value`` if it is a valid port name (IANA service name), else raise ValueError."""
    if not 1 <= len(value) <= 15 or not _PORT_NAME.fullmatch(value):
        raise ValueError(
            f"{_show(value)} is not a valid port name; must be 1-15 characters of lowercase "
            "letters, digits and '-', with at least one letter, starting and ending with a "
            "letter or digit, no '--' (e.g. 'http')"
        )
    return value


#: An IANA service name, used for port names (``http``, ``metrics``).
PortName = Annotated[
    str,
    AfterValidator(check_port_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 15, "pattern": PORT_NAME_PATTERN}),
]

Timestamp = Annotated[AwareDatetime, Field(strict=False)]


# -- metadata ----------------------------------------------------------------------------


class ObjectMeta(ApiModel):
    """Standard object metadata, as in Kubernetes."""

    name: DnsLabel = Field(description="Name of the object, unique per kind within its namespace (DNS-1123 label).")
    namespace: DnsLabel = Field(default="default", description="Namespace of the object (DNS-1123 label).")
    uid: str | None = Field(default=None, description="Unique id assigned by the store when the object is created.")
    resource_version: Annotated[str | None, BeforeValidator(_version_to_str)] = Field(
        default=None,
        description="Version of the stored object, used for optimistic concurrency; set by the store.",
    )
    generation: int | None = Field(
        default=None,
        ge=0,
        le=INT64_MAX,
        description="Incremented by the store each time the spec changes.",
    )
    creation_timestamp: Timestamp | None = Field(
        default=None, description="When the object was created (RFC 3339, set by the store)."
    )
    deletion_timestamp: Timestamp | None = Field(
        default=None,
        description="When deletion was requested; the object goes once its finalizers are removed.",
    )
    labels: Annotated[dict[str, str], AfterValidator(_check_labels)] = Field(
        default_factory=dict,
        description="Key/value pairs used to select and group objects (Kubernetes label rules).",
    )
    annotations: Annotated[dict[str, str], AfterValidator(_check_annotations)] = Field(
        default_factory=dict, description="Free-form key/value pairs for tools and people."
    )
    finalizers: Annotated[list[str], AfterValidator(_check_finalizers)] = Field(
        default_factory=list,
        description="Names of cleanups that must finish before the object is deleted.",
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One aspect of an object's current state (Kubernetes condition conventions)."""

    type: str = Field(description="Kind of condition in CamelCase, e.g. 'Ready', 'Available'.")
    status: ConditionStatus = Field(description="Whether the condition holds: True, False or Unknown.")
    reason: str | None = Field(default=None, description="Machine-readable CamelCase reason for the last transition.")
    message: str | None = Field(default=None, description="Human-readable details of the last transition.")
    last_transition_time: Timestamp | None = Field(default=None, description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        le=INT64_MAX,
        description="The metadata.generation the condition was computed from.",
    )

    @field_validator("type")
    @classmethod
    def _type_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty; use a CamelCase word such as 'Ready'")
        return value


# -- resources ---------------------------------------------------------------------------


class ResourceList(ApiModel):
    """Amounts of compute resources."""

    cpu: Quantity | None = Field(default=None, description="CPU in cores, e.g. '500m' or '2'.")
    memory: Quantity | None = Field(default=None, description="Memory in bytes, e.g. '256Mi' or '1Gi'.")


class ResourceRequirements(ApiModel):
    """Compute resources requested (reserved) and limited (enforced)."""

    requests: ResourceList = Field(default_factory=ResourceList, description="Resources reserved for each instance.")
    limits: ResourceList = Field(default_factory=ResourceList, description="Most resources each instance may use.")

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        items: list[tuple[tuple[LocItem, ...], str]] = []
        for res in ("cpu", "memory"):
            request: Quantity | None = getattr(self.requests, res)
            limit: Quantity | None = getattr(self.limits, res)
            if request is not None and limit is not None and request > limit:
                items.append(
                    (
                        ("requests", res),
                        f"request {request} is above the limit {limit} (limits.{res}); "
                        "a request must not exceed its limit",
                    )
                )
        if items:
            raise FieldProblems(items)
        return self


# -- resource base -----------------------------------------------------------------------


class Resource(ApiModel):
    """Base of every zkop kind: ``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``."""

    KIND: ClassVar[str] = ""

    api_version: Literal["zkop.io/v1"] = Field(
        default="zkop.io/v1", description="Version of the zkop API the object is written for: zkop.io/v1."
    )
    kind: str = Field(description="Kind of the object.")
    metadata: ObjectMeta = Field(description="Name, namespace, labels and bookkeeping fields.")
    spec: ApiModel = Field(description="Desired state.")
    status: ApiModel = Field(description="Observed state, written by the operator.")

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """``metadata.namespace``."""
        return self.metadata.namespace

    @property
    def key(self) -> str:
        """``namespace/name``, the key controllers queue."""
        return f"{self.metadata.namespace}/{self.metadata.name}"
