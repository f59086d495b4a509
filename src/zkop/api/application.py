"""The ``Application`` kind: a service run, recovered, scaled and load-balanced by zkop."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, WithJsonSchema, model_validator

from zkop.api.errors import FieldProblems, LocItem
from zkop.api.meta import (
    INT64_MAX,
    PORT_NAME_PATTERN,
    ApiModel,
    Condition,
    DnsLabel,
    PortName,
    Resource,
    ResourceRequirements,
    Timestamp,
    check_port_name,
)

# -- small value types -------------------------------------------------------------------

_PORT_NAME_RULE = "a port number (1-65535) or the name of a port in spec.template.ports (e.g. 'http')"


def _int_in_range_or_str(value: object, low: int, high: int, rule: str) -> int | str:
    """``value`` if it is a whole number from ``low`` to ``high`` or a string (the caller
    checks the string); else a ValueError that states ``rule``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected {rule}, got {type(value).__name__}")
    if isinstance(value, int) and not low <= value <= high:
        raise ValueError(f"{value} is out of range; allowed: {rule}")
    return value


def _port_ref(value: Any) -> int | str:
    port = _int_in_range_or_str(value, 1, 65535, _PORT_NAME_RULE)
    return port if isinstance(port, int) else check_port_name(port)


#: A port given by number (1-65535) or by the name of a declared port.
PortRef = Annotated[
    int | str,
    PlainValidator(_port_ref),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "minLength": 1, "maxLength": 15, "pattern": PORT_NAME_PATTERN},
            ],
            "x-kubernetes-int-or-string": True,
        }
    ),
]

_PERCENT = re.compile(r"^([0-9]{1,3})%$")
#: The percentages ``_int_or_percent`` accepts, 0% to 100% (up to three digits), as one pattern.
PERCENT_PATTERN = r"^([0-9]{1,2}|0[0-9]{2}|100)%$"
_INT_OR_PERCENT_RULE = "a whole number of instances (0 or more) or a percentage from '0%' to '100%'"


def _int_or_percent(value: Any) -> int | str:
    amount = _int_in_range_or_str(value, 0, 10000, _INT_OR_PERCENT_RULE)
    if isinstance(amount, int):
        return amount
    match = _PERCENT.fullmatch(amount)
    if match is None or int(match.group(1)) > 100:
        raise ValueError(f"{amount!r} is not valid; allowed: {_INT_OR_PERCENT_RULE}")
    return amount


#: A number of instances or a percentage of the replicas ("25%").
IntOrPercent = Annotated[
    int | str,
    PlainValidator(_int_or_percent),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 10000},
                {"type": "string", "pattern": PERCENT_PATTERN},
            ],
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def is_zero(value: int | str) -> bool:
    """Whether an :data:`IntOrPercent` is zero (``0`` or ``"0%"``)."""
    return value == 0 or (isinstance(value, str) and int(value.rstrip("%")) == 0)


def _scalar_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _env_from_map(value: Any) -> Any:
    """Accept ``env`` as a map ``{NAME: value}`` and turn it into the list form."""
    if not isinstance(value, dict):
        return value
    items: list[tuple[tuple[LocItem, ...], str]] = []
    out: list[dict[str, Any]] = []
    for name, val in value.items():
        if val is not None and not isinstance(val, str | int | float | bool):
            items.append(((str(name),), f"expected a string value, got {type(val).__name__}"))
        out.append({"name": name, "value": "" if val is None else val})
    if items:
        raise FieldProblems(items)
    return out


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

#: A container image reference, ``[registry[:port]/]repository[:tag][@digest]`` (the grammar of
#: the distribution project's references, without IPv6 registries), as a regular expression that
#: Python, JSON Schema and Kubernetes (RE2) read alike. Repository paths are lowercase.
_REGISTRY = r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*(:[0-9]+)?/"
_PATH_PART = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    f"^({_REGISTRY})?{_PATH_PART}(/{_PATH_PART})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
IMAGE_MAX_LENGTH = 512
_IMAGE = re.compile(IMAGE_PATTERN)


def check_image(value: str) -> str:
    """Return ``value`` if it is a container image reference, else raise ValueError."""
    if not value.strip():
        raise ValueError("must not be empty; leave the field out for the platform's default image")
    if len(value) > IMAGE_MAX_LENGTH or not _IMAGE.fullmatch(value):
        shown = value if len(value) <= 70 else value[:70] + "..."
        raise ValueError(
            f"{shown!r} is not a valid image reference; expected [registry[:port]/]repository[:tag][@digest], "
            f"with a lowercase repository, at most {IMAGE_MAX_LENGTH} characters (e.g. 'ghcr.io/acme/counter:1.2')"
        )
    return value


#: A container image reference (``ghcr.io/acme/counter:1.2``).
ImageName = Annotated[
    str,
    AfterValidator(check_image),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": IMAGE_MAX_LENGTH, "pattern": IMAGE_PATTERN}),
]

#: Labels every Pod of an Application carries (on platforms that label instances: Kubernetes); the
#: controller reports them as ``status.selector``, which the scale subresource gives to a
#: HorizontalPodAutoscaler.
APP_LABEL = "zkop.io/application"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "zkop"


def instance_labels(app_name: str) -> dict[str, str]:
    """The labels that select every instance of the Application ``app_name`` (in its namespace)."""
    return {MANAGED_BY_LABEL: MANAGED_BY, APP_LABEL: app_name}


def instance_selector(app_name: str) -> str:
    """:func:`instance_labels` as a label selector string (``status.selector``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(instance_labels(app_name).items()))


# -- template ----------------------------------------------------------------------------


class EnvVar(ApiModel):
    """An environment variable of the application's processes."""

    name: str = Field(description="Variable name, e.g. 'LOG_LEVEL'.")
    value: Annotated[str, BeforeValidator(_scalar_to_str)] = Field(
        default="", description="Value (numbers and booleans are turned into strings)."
    )

    @model_validator(mode="after")
    def _check_name(self) -> EnvVar:
        if not _ENV_NAME.match(self.name):
            raise FieldProblems(
                [
                    (
                        ("name",),
                        f"{self.name!r} is not a valid variable name; allowed: letters, "
                        "digits, '_', '-' and '.', not starting with a digit",
                    )
                ]
            )
        return self


class ContainerPort(ApiModel):
    """A port the application listens on."""

    name: PortName = Field(description="Name of the port, e.g. 'http'; probes refer to it.")
    container_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port number; 0 or absent means zkop allocates a free port and passes it in the environment.",
    )


class ApplicationTemplate(ApiModel):
    """How to start one instance of the application."""

    command: list[str] = Field(min_length=1, description="Program and arguments to run, e.g. ['python3', '-m', 'app'].")
    args: list[str] = Field(default_factory=list, description="Arguments added after command.")
    env: Annotated[list[EnvVar], BeforeValidator(_env_from_map)] = Field(
        default_factory=list,
        description="Environment variables: a map NAME: value, or a list of {name, value}.",
    )
    working_dir: str | None = Field(default=None, description="Directory the process starts in (local platform).")
    image: ImageName | None = Field(
        default=None,
        description="(kubernetes) Container image that holds the command (default: the operator's own image, "
        "which has Python and zkop); the local platform runs the command on the machine.",
    )
    ports: list[ContainerPort] = Field(default_factory=list, description="Ports the application listens on.")

    @model_validator(mode="after")
    def _check_template(self) -> ApplicationTemplate:
        items: list[tuple[tuple[LocItem, ...], str]] = []
        if self.command and not self.command[0].strip():
            items.append((("command", 0), "the program must not be empty"))
        seen_env: set[str] = set()
        for i, var in enumerate(self.env):
            if var.name in seen_env:
                items.append((("env", i, "name"), f"{var.name!r} is set more than once"))
            seen_env.add(var.name)
        names: set[str] = set()
        numbers: set[int] = set()
        for i, port in enumerate(self.ports):
            if port.name in names:
                items.append((("ports", i, "name"), f"{port.name!r} is declared more than once"))
            names.add(port.name)
            if port.container_port:
                if port.container_port in numbers:
                    items.append(
                        (
                            ("ports", i, "containerPort"),
                            f"{port.container_port} is declared more than once",
                        )
                    )
                numbers.add(port.container_port)
        if self.working_dir is not None and not self.working_dir.strip():
            items.append((("workingDir",), "must not be empty; leave it out for the default"))
        if items:
            raise FieldProblems(items)
        return self


# -- probes ------------------------------------------------------------------------------


class TcpProbe(ApiModel):
    """Succeeds when a TCP connection to the port can be opened."""

    port: PortRef = Field(description="Port number or name of a declared port.")


class HttpProbe(ApiModel):
    """Succeeds when an HTTP GET returns a status from 200 to 399."""

    path: str = Field(default="/", description="Path to request; starts with '/'.")
    port: PortRef = Field(description="Port number or name of a declared port.")

    @model_validator(mode="after")
    def _check_path(self) -> HttpProbe:
        if not self.path.startswith("/"):
            raise FieldProblems([(("path",), f"{self.path!r} must start with '/'")])
        return self


class ExecProbe(ApiModel):
    """Succeeds when the command exits with status 0."""

    command: list[str] = Field(min_length=1, description="Program and arguments to run.")


_PROBE_KINDS = ("tcp", "http", "exec")


class Probe(ApiModel):
    """A periodic health check. Set exactly one of tcp, http or exec."""

    tcp: TcpProbe | None = Field(default=None, description="Check by opening a TCP connection.")
    http: HttpProbe | None = Field(default=None, description="Check by an HTTP GET request.")
    exec: ExecProbe | None = Field(default=None, description="Check by running a command.")
    initial_delay_seconds: int = Field(
        default=0, ge=0, le=3600, description="Seconds after start before the first check."
    )
    period_seconds: int = Field(default=10, ge=1, le=3600, description="Seconds between checks.")
    timeout_seconds: int = Field(default=1, ge=1, le=3600, description="Seconds before a check fails.")
    failure_threshold: int = Field(
        default=3, ge=1, le=1000, description="Consecutive failures that make the probe fail."
    )
    success_threshold: int = Field(
        default=1, ge=1, le=1000, description="Consecutive successes that make the probe succeed."
    )

    @property
    def kind(self) -> Literal["tcp", "http", "exec"]:
        """Which check this probe runs."""
        if self.tcp is not None:
            return "tcp"
        if self.http is not None:
            return "http"
        return "exec"

    @model_validator(mode="after")
    def _exactly_one(self) -> Probe:
        chosen = [k for k in _PROBE_KINDS if getattr(self, k) is not None]
        if len(chosen) != 1:
            what = "none is set" if not chosen else f"{' and '.join(chosen)} are set"
            raise ValueError(f"set exactly one of tcp, http or exec; {what}")
        return self


class Probes(ApiModel):
    """Health checks of each instance."""

    readiness: Probe | None = Field(
        default=None, description="When it fails, the instance gets no traffic (leaves the registry)."
    )
    liveness: Probe | None = Field(default=None, description="When it fails, the instance is restarted.")

    @model_validator(mode="after")
    def _liveness_success_threshold(self) -> Probes:
        if self.liveness is not None and self.liveness.success_threshold != 1:
            raise FieldProblems(
                [
                    (
                        ("liveness", "successThreshold"),
                        f"{self.liveness.success_threshold} is not allowed; a liveness probe "
                        "must have successThreshold 1",
                    )
                ]
            )
        return self


# -- autoscaling, strategy, references ---------------------------------------------------


class MetricTarget(ApiModel):
    """A metric to scale on: ``{type: cpu, targetUtilization: 80}`` or
    ``{type: load, targetValue: 10}``."""

    type: Literal["cpu", "load"] = Field(
        description="cpu: CPU use in percent of the request; load: the load instances report."
    )
    target_utilization: int | None = Field(
        default=None, ge=1, le=100, description="(cpu) Target average CPU use in percent (1-100)."
    )
    target_value: float | None = Field(
        default=None,
        gt=0,
        le=1e12,
        allow_inf_nan=False,
        description="(load) Target average load per instance, e.g. 10 (at most 1e12).",
    )

    @model_validator(mode="after")
    def _fields_match_type(self) -> MetricTarget:
        items: list[tuple[tuple[LocItem, ...], str]] = []
        if self.type == "cpu":
            if self.target_utilization is None:
                items.append((("targetUtilization",), "required for type cpu"))
            if self.target_value is not None:
                items.append((("targetValue",), "not allowed for type cpu; use targetUtilization"))
        else:
            if self.target_value is None:
                items.append((("targetValue",), "required for type load"))
            if self.target_utilization is not None:
                items.append((("targetUtilization",), "not allowed for type load; use targetValue"))
        if items:
            raise FieldProblems(items)
        return self


def _default_metrics() -> list[MetricTarget]:
    return [MetricTarget(type="cpu", target_utilization=80)]


class Autoscaling(ApiModel):
    """Automatic scaling between minReplicas and maxReplicas (on when present)."""

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest instances.")
    max_replicas: int = Field(ge=1, le=1000, description="Most instances; at least minReplicas.")
    metrics: list[MetricTarget] = Field(
        default_factory=_default_metrics,
        min_length=1,
        description="Metrics to scale on (default: cpu at 80%); the largest proposal wins.",
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="Seconds of lower proposals required before scaling down.",
    )

    @model_validator(mode="after")
    def _check(self) -> Autoscaling:
        items: list[tuple[tuple[LocItem, ...], str]] = []
        if self.max_replicas < self.min_replicas:
            items.append(
                (
                    ("maxReplicas",),
                    f"{self.max_replicas} is below minReplicas ({self.min_replicas}); "
                    f"allowed: {self.min_replicas} or more",
                )
            )
        seen: set[str] = set()
        for i, metric in enumerate(self.metrics):
            if metric.type in seen:
                items.append((("metrics", i, "type"), f"{metric.type!r} is listed more than once"))
            seen.add(metric.type)
        if items:
            raise FieldProblems(items)
        return self


class RollingUpdate(ApiModel):
    """How many instances may be added or missing while instances are replaced."""

    max_surge: IntOrPercent = Field(
        default="25%", description="Instances above replicas during an update: a number or '25%'."
    )
    max_unavailable: IntOrPercent = Field(
        default="25%", description="Instances that may be unavailable during an update: a number or '25%'."
    )

    @model_validator(mode="after")
    def _not_both_zero(self) -> RollingUpdate:
        if is_zero(self.max_surge) and is_zero(self.max_unavailable):
            raise FieldProblems(
                [
                    (
                        ("maxUnavailable",),
                        "maxSurge and maxUnavailable are both zero, so no instance could ever "
                        "be replaced; make one of them larger than zero",
                    )
                ]
            )
        return self


class Strategy(ApiModel):
    """How instances are replaced when the template changes."""

    rolling_update: RollingUpdate = Field(default_factory=RollingUpdate, description="Limits of a rolling update.")


class ClusterRef(ApiModel):
    """A reference to a ZookeeperCluster."""

    name: DnsLabel = Field(description="Name of the ZookeeperCluster.")
    namespace: DnsLabel | None = Field(
        default=None, description="Namespace of the ZookeeperCluster (default: the application's)."
    )


class ZnodeRef(ApiModel):
    """A reference to a ZookeeperZnode."""

    name: DnsLabel = Field(description="Name of the ZookeeperZnode.")
    namespace: DnsLabel | None = Field(
        default=None, description="Namespace of the ZookeeperZnode (default: the application's)."
    )


class ZookeeperRef(ApiModel):
    """The ZooKeeper ensemble the application uses (registry, coordination)."""

    cluster_ref: ClusterRef = Field(description="Which ZookeeperCluster to use.")
    znode_ref: ZnodeRef | None = Field(
        default=None,
        description="A ZookeeperZnode of that cluster: instances get its path as the chroot of ZK_HOSTS and its "
        "identity as ZK_AUTH (user:password).",
    )


LoadBalancing = Literal["round_robin", "random", "least_connections", "consistent_hash", "sticky"]


class ServiceSpec(ApiModel):
    """How clients find and spread work over instances."""

    load_balancing: LoadBalancing = Field(
        default="round_robin",
        description="Default client strategy: round_robin, random, least_connections, consistent_hash or sticky.",
    )


# -- spec, status, kind ------------------------------------------------------------------


class ApplicationSpec(ApiModel):
    """Desired state of an application."""

    replicas: int = Field(
        default=1, ge=0, le=1000, description="Instances to run (the starting point when autoscaling)."
    )
    template: ApplicationTemplate = Field(description="How to start one instance.")
    probes: Probes = Field(default_factory=Probes, description="Health checks of each instance.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="CPU and memory requested and limited for each instance.",
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Automatic scaling; on when present.")
    strategy: Strategy = Field(default_factory=Strategy, description="How instances are replaced on a change.")
    zookeeper: ZookeeperRef | None = Field(
        default=None, description="The ZookeeperCluster the application registers in."
    )
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="Discovery and client load balancing.")

    @model_validator(mode="after")
    def _probe_ports_declared(self) -> ApplicationSpec:
        declared = [p.name for p in self.template.ports]
        items: list[tuple[tuple[LocItem, ...], str]] = []
        for which in ("readiness", "liveness"):
            probe: Probe | None = getattr(self.probes, which)
            if probe is None:
                continue
            action: TcpProbe | HttpProbe | None = probe.tcp or probe.http
            if action is None or not isinstance(action.port, str):
                continue
            if action.port not in declared:
                known = ", ".join(repr(n) for n in declared) or "none"
                items.append(
                    (
                        ("probes", which, probe.kind, "port"),
                        f"port {action.port!r} is not declared in spec.template.ports (declared: {known})",
                    )
                )
        if items:
            raise FieldProblems(items)
        return self


class InstanceStatus(ApiModel):
    """Observed state of one instance."""

    name: str = Field(description="Instance name, e.g. 'counter-3'.")
    phase: str | None = Field(default=None, description="Summary, e.g. Pending, Starting, Running, Failed, Stopped.")
    ready: bool = Field(default=False, description="Whether the readiness probe passes.")
    pid: int | None = Field(default=None, ge=1, le=INT64_MAX, description="(local) Process id.")
    port: int | None = Field(default=None, ge=0, le=65535, description="Port the instance serves on.")
    restarts: int = Field(default=0, ge=0, le=INT64_MAX, description="Times the instance was restarted.")
    exit_code: int | None = Field(
        default=None, ge=-255, le=255, description="Exit status of the last run (negative: signal)."
    )
    reason: str | None = Field(default=None, description="CamelCase reason of the phase.")
    message: str | None = Field(default=None, description="Human-readable details.")


class ApplicationStatus(ApiModel):
    """Observed state of an application."""

    observed_generation: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="The metadata.generation last acted upon."
    )
    replicas: int = Field(default=0, ge=0, le=INT64_MAX, description="Instances that exist.")
    ready_replicas: int = Field(default=0, ge=0, le=INT64_MAX, description="Instances that are ready.")
    updated_replicas: int = Field(default=0, ge=0, le=INT64_MAX, description="Instances running the current template.")
    instances: list[InstanceStatus] = Field(default_factory=list, description="Observed state of each instance.")
    endpoints: list[str] = Field(default_factory=list, description="host:port of each ready instance.")
    current_metric: float | None = Field(
        default=None, allow_inf_nan=False, description="Last observed value of the scaling metric."
    )
    desired_replicas: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="Replicas the autoscaler asks for."
    )
    last_scale_time: Timestamp | None = Field(
        default=None, description="When the autoscaler last changed the replicas."
    )
    selector: str | None = Field(
        default=None,
        description="(kubernetes) Label selector of the instances' pods, in the string form "
        "'key=value,...'; the scale subresource reports it so a HorizontalPodAutoscaler can find them.",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Current conditions of the application.")


class Application(Resource):
    """A service that zkop runs, heals, scales and registers for discovery."""

    KIND: ClassVar[str] = "Application"

    kind: Literal["Application"] = Field(default="Application", description="Kind of the object: Application.")
    spec: ApplicationSpec = Field(description="Desired state of the application.")
    status: ApplicationStatus = Field(
        default_factory=ApplicationStatus,
        description="Observed state of the application, written by the operator.",
    )
