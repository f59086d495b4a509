"""The ``ZookeeperCluster`` kind: a ZooKeeper ensemble operated by zkop."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from zkop.api.errors import FieldProblems, LocItem
from zkop.api.meta import (
    INT64_MAX,
    ApiModel,
    Condition,
    Resource,
    ResourceRequirements,
)
from zkop.api.quantity import Quantity

_OWN_MEMBERSHIP = "zkop owns the ensemble membership; change spec.replicas instead"
_OWN_STORAGE = "zkop places the data on the platform's storage (see spec.storage)"
_OWN_PORTS = "zkop allocates the ports and publishes them in status.connectionString"
_OWN_ADMIN = "zkop uses the AdminServer to observe members and allocates its port"
_OWN_TLS = "zkop configures TLS from spec.tls (certificates, ports, quorum TLS)"

#: zoo.cfg keys zkop writes itself, with the reason each is refused in additionalConfig.
RESERVED_CONFIG_KEYS: dict[str, str] = {
    "dataDir": _OWN_STORAGE,
    "dataLogDir": _OWN_STORAGE,
    "clientPort": _OWN_PORTS,
    "clientPortAddress": _OWN_PORTS,
    "secureClientPort": _OWN_PORTS,
    "secureClientPortAddress": _OWN_PORTS,
    "dynamicConfigFile": "zkop writes the dynamic configuration file and changes it by reconfig",
    "skipACL": "zkop never turns ACLs off; reconfig runs as an authenticated super user",
    "reconfigEnabled": "zkop needs dynamic reconfiguration to scale and roll without downtime",
    "standaloneEnabled": "zkop runs every ensemble in replicated mode so it can grow from 1 member",
    "4lw.commands.whitelist": "zkop needs the four-letter words it uses for health checks",
    "DigestAuthenticationProvider.superDigest": "zkop keeps a per-cluster super user digest",
    "admin.enableServer": _OWN_ADMIN,
    "admin.serverAddress": _OWN_ADMIN,
    "admin.serverPort": _OWN_ADMIN,
    "serverCnxnFactory": _OWN_TLS,
    "sslQuorum": _OWN_TLS,
    "portUnification": _OWN_TLS,
    "client.portUnification": _OWN_TLS,
    "authProvider.x509": _OWN_TLS,
    "enforce.auth.enabled": _OWN_TLS,
    "enforce.auth.schemes": _OWN_TLS,
    "tickTime": "set spec.config.tickTime instead",
    "initLimit": "set spec.config.initLimit instead",
    "syncLimit": "set spec.config.syncLimit instead",
    "maxClientCnxns": "set spec.config.maxClientCnxns instead",
    "minSessionTimeout": "set spec.config.minSessionTimeout instead",
    "maxSessionTimeout": "set spec.config.maxSessionTimeout instead",
    "autopurge.snapRetainCount": "set spec.config.autopurge.snapRetainCount instead",
    "autopurge.purgeInterval": "set spec.config.autopurge.purgeInterval instead",
}
_RESERVED_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^server\.\d+$"), _OWN_MEMBERSHIP),
    (re.compile(r"^group\.\d+$"), _OWN_MEMBERSHIP),
    (re.compile(r"^weight\.\d+$"), _OWN_MEMBERSHIP),
    (re.compile(r"^ssl\."), _OWN_TLS),
)
#: Keys allowed in additionalConfig (besides the reserved ones), as a regular expression that
#: Python, JSON Schema and Kubernetes (RE2) read alike.
CONFIG_KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
_CONFIG_KEY = re.compile(CONFIG_KEY_PATTERN)
#: Most keys in additionalConfig (ZooKeeper has about a hundred settings). The bound also lets
#: the Kubernetes API server afford checking every key (its CEL cost estimate needs one).
MAX_ADDITIONAL_CONFIG = 256


def reserved_config_key(key: str) -> str | None:
    """Why zkop refuses ``key`` in ``additionalConfig``, or None if the key is allowed.

    The ``zookeeper.`` system-property spelling of a reserved key is refused as well.
    """
    bare = key.removeprefix("zookeeper.")
    for candidate in (key, bare):
        if candidate in RESERVED_CONFIG_KEYS:
            return RESERVED_CONFIG_KEYS[candidate]
        for pattern, reason in _RESERVED_PATTERNS:
            if pattern.match(candidate):
                return reason
    return None


def _scalars_to_str(value: Any) -> Any:
    """``additionalConfig`` values are strings; YAML scalars (numbers, booleans) are
    converted the way zoo.cfg spells them."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, val in value.items():
        if isinstance(val, bool):
            out[key] = "true" if val else "false"
        elif isinstance(val, int | float):
            out[key] = str(val)
        else:
            out[key] = val
    return out


class Autopurge(ApiModel):
    """Automatic removal of old snapshots and transaction logs."""

    snap_retain_count: int = Field(default=3, ge=3, le=1000, description="Snapshots (and their logs) kept; at least 3.")
    purge_interval: int = Field(default=1, ge=0, le=8760, description="Hours between purges; 0 turns purging off.")


class ZookeeperConfig(ApiModel):
    """ZooKeeper server settings (zoo.cfg). Keys zkop owns are not settable."""

    tick_time: int = Field(default=2000, ge=100, le=60000, description="Length of a tick in milliseconds (tickTime).")
    init_limit: int = Field(
        default=10, ge=1, le=1000, description="Ticks a follower may take to connect and sync to the leader."
    )
    sync_limit: int = Field(default=5, ge=1, le=1000, description="Ticks a follower may lag behind the leader.")
    max_client_cnxns: int = Field(
        default=60, ge=0, le=100000, description="Connections per client IP address; 0 means unlimited."
    )
    min_session_timeout: int | None = Field(
        default=None,
        ge=1,
        le=INT64_MAX,
        description="Smallest session timeout in ms granted to clients (default 2 x tickTime).",
    )
    max_session_timeout: int | None = Field(
        default=None,
        ge=1,
        le=INT64_MAX,
        description="Largest session timeout in ms granted to clients (default 20 x tickTime).",
    )
    autopurge: Autopurge = Field(default_factory=Autopurge, description="Automatic removal of old snapshots and logs.")
    additional_config: Annotated[dict[str, str], BeforeValidator(_scalars_to_str)] = Field(
        default_factory=dict,
        max_length=MAX_ADDITIONAL_CONFIG,
        description=(
            "Other zoo.cfg settings as key: value strings. Keys zkop owns (server.N, dataDir, "
            f"clientPort, skipACL, reconfigEnabled, ...) are refused. At most {MAX_ADDITIONAL_CONFIG} keys."
        ),
    )

    @field_validator("additional_config")
    @classmethod
    def _check_additional_config(cls, value: dict[str, str]) -> dict[str, str]:
        items: list[tuple[tuple[LocItem, ...], str]] = []
        for key, val in value.items():
            reason = reserved_config_key(key)
            if reason:
                items.append(((key,), f"the key {key!r} is managed by zkop: {reason}"))
            elif not _CONFIG_KEY.fullmatch(key):
                items.append(
                    (
                        (key,),
                        f"{key!r} is not a valid zoo.cfg key; allowed: letters, digits, '_', "
                        "'.' and '-', not starting with '.' or '-'",
                    )
                )
            elif any(c in val for c in "\r\n\0"):
                items.append(((key,), "the value must be a single line"))
        if items:
            raise FieldProblems(items)
        return value

    @property
    def effective_min_session_timeout(self) -> int:
        """``minSessionTimeout`` or ZooKeeper's default of 2 x tickTime."""
        if self.min_session_timeout is not None:
            return self.min_session_timeout
        return 2 * self.tick_time

    @property
    def effective_max_session_timeout(self) -> int:
        """``maxSessionTimeout`` or ZooKeeper's default of 20 x tickTime."""
        if self.max_session_timeout is not None:
            return self.max_session_timeout
        return 20 * self.tick_time

    @model_validator(mode="after")
    def _check_session_timeouts(self) -> ZookeeperConfig:
        items: list[tuple[tuple[LocItem, ...], str]] = []
        floor = 2 * self.tick_time
        if self.min_session_timeout is not None and self.min_session_timeout < floor:
            items.append(
                (
                    ("minSessionTimeout",),
                    f"{self.min_session_timeout} is below 2 x tickTime ({floor}); allowed: {floor} or more",
                )
            )
        lowest = max(floor, self.min_session_timeout or 0)
        if self.max_session_timeout is not None and self.max_session_timeout < lowest:
            items.append(
                (
                    ("maxSessionTimeout",),
                    f"{self.max_session_timeout} is below the minimum session timeout "
                    f"({lowest}); allowed: {lowest} or more",
                )
            )
        if (
            self.min_session_timeout is not None
            and self.max_session_timeout is None
            and self.min_session_timeout > 20 * self.tick_time
        ):
            items.append(
                (
                    ("minSessionTimeout",),
                    f"{self.min_session_timeout} is above the default maxSessionTimeout "
                    f"(20 x tickTime = {20 * self.tick_time}); set maxSessionTimeout too",
                )
            )
        if items:
            raise FieldProblems(items)
        return self


class JvmSpec(ApiModel):
    """Settings of the Java virtual machine each member runs in."""

    heap: Quantity = Field(
        default=Quantity("128Mi"),
        description="Maximum Java heap (-Xmx), e.g. '128Mi' or '1Gi'; at least 16Mi.",
    )

    @field_validator("heap")
    @classmethod
    def _check_heap(cls, value: Quantity) -> Quantity:
        if value.bytes < 16 * 1024 * 1024:
            raise ValueError(f"{value} is too small for ZooKeeper; allowed: 16Mi or more")
        return value


class StorageSpec(ApiModel):
    """Where members keep their data."""

    reclaim_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="What happens to a member's data when the cluster is deleted: Retain or Delete.",
    )


class ClientTls(ApiModel):
    """TLS on the members' client ports."""

    mode: Literal["Tls", "Both"] = Field(
        default="Tls",
        description="Tls: only TLS clients presenting a certificate signed by the cluster's CA (`zkop zkc cert`) "
        "get a session (a plain connection is closed at its first request); Both: TLS and plain clients do "
        "(for a migration).",
    )


class QuorumTls(ApiModel):
    """TLS between the members (quorum and leader election)."""

    mode: Literal["Tls", "Both", "Accept"] = Field(
        default="Tls",
        description="Tls: members talk TLS only; Both: they connect with TLS and still accept plain peers; "
        "Accept: they connect plain and accept TLS peers. Turning quorum TLS on in a running cluster goes "
        "Accept, then Both, then Tls (each a rolling restart).",
    )


#: Bounds of certificate lifetimes, in seconds (a minute, for tests, up to ten years).
MIN_VALIDITY, MAX_VALIDITY = 60, 10 * 365 * 24 * 3600


class CertificatesSpec(ApiModel):
    """Lifetimes of the certificates the operator issues to members (its CA lives ten years)."""

    validity_seconds: int = Field(
        default=90 * 24 * 3600,
        ge=MIN_VALIDITY,
        le=MAX_VALIDITY,
        description="How long a member certificate is valid, in seconds (default 90 days).",
    )
    renew_before_seconds: int = Field(
        default=30 * 24 * 3600,
        ge=10,
        le=MAX_VALIDITY,
        description="A member whose certificate ends within this many seconds gets a new one by a rolling "
        "restart (default 30 days); less than validitySeconds.",
    )

    @model_validator(mode="after")
    def _renew_within_validity(self) -> CertificatesSpec:
        if self.renew_before_seconds >= self.validity_seconds:
            raise FieldProblems(
                [
                    (
                        ("renewBeforeSeconds",),
                        f"{self.renew_before_seconds} is not below validitySeconds ({self.validity_seconds}); "
                        "members would be restarted for new certificates all the time",
                    )
                ]
            )
        return self


class TlsSpec(ApiModel):
    """TLS of the ensemble; off unless client or quorum is given."""

    client: ClientTls | None = Field(default=None, description="TLS on the client ports; on when present.")
    quorum: QuorumTls | None = Field(default=None, description="TLS between members; on when present.")
    certificates: CertificatesSpec = Field(
        default_factory=CertificatesSpec, description="Lifetimes of the member certificates."
    )

    @property
    def enabled(self) -> bool:
        return self.client is not None or self.quorum is not None


class BackupSpec(ApiModel):
    """Backups taken on a schedule (a consistent copy of a serving member's data, with the ACLs
    and quotas), the newest ``retain`` kept; ``zkop backup list`` shows them."""

    interval_seconds: int = Field(
        ge=10, le=366 * 24 * 3600, description="Seconds between backups (e.g. 86400 for a daily one)."
    )
    retain: int = Field(default=7, ge=1, le=1000, description="Backups of this cluster to keep; older ones go.")
    directory: str | None = Field(
        default=None,
        description="(local) Absolute directory of the backups (default: backups/ in the operator's state dir).",
    )

    @field_validator("directory")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "\0" in value):
            raise ValueError(f"{value!r} is not an absolute path")
        return value


class ZookeeperClusterSpec(ApiModel):
    """Desired state of a ZooKeeper ensemble."""

    replicas: int = Field(
        default=3,
        ge=1,
        le=9,
        description="Number of voting members (1-9); an odd number is recommended.",
    )
    zookeeper_home: str | None = Field(
        default=None,
        description="(local) Directory of the Apache ZooKeeper distribution to run (default: found automatically).",
    )
    image: str | None = Field(
        default=None, description="(kubernetes) Container image of ZooKeeper for the member pods."
    )
    config: ZookeeperConfig = Field(default_factory=ZookeeperConfig, description="ZooKeeper server settings (zoo.cfg).")
    jvm: JvmSpec = Field(default_factory=JvmSpec, description="JVM settings of each member.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="CPU and memory requested and limited for each member.",
    )
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Where and how members keep their data.")
    tls: TlsSpec = Field(default_factory=TlsSpec, description="TLS for clients and between members (off by default).")
    backup: BackupSpec | None = Field(default=None, description="Scheduled backups with retention; none when absent.")
    paused: bool = Field(default=False, description="When true, the operator observes the cluster but changes nothing.")

    @field_validator("zookeeper_home", "image")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; leave the field out for the default")
        return value

    @model_validator(mode="after")
    def _heap_within_memory_limit(self) -> ZookeeperClusterSpec:
        limit = self.resources.limits.memory
        if limit is not None and self.jvm.heap > limit:
            raise FieldProblems(
                [
                    (
                        ("jvm", "heap"),
                        f"{self.jvm.heap} is above resources.limits.memory ({limit}); "
                        "the heap must fit in the memory limit",
                    )
                ]
            )
        return self


MemberRole = Literal["leader", "follower", "observer", "standalone", "looking", "down", "unknown"]


class MemberStatus(ApiModel):
    """What the operator observed of one ensemble member."""

    id: int = Field(ge=1, le=INT64_MAX, description="Member id (myid); ids are never reused.")
    role: MemberRole = Field(
        default="unknown",
        description="Role reported by the member: leader, follower, observer, standalone, looking, down or unknown.",
    )
    ready: bool = Field(default=False, description="Whether the member serves clients.")
    zxid: int | None = Field(default=None, ge=0, le=2**64 - 1, description="Last zxid the member has seen (64-bit).")
    client_endpoint: str | None = Field(default=None, description="host:port where clients reach this member.")
    restarts: int = Field(default=0, ge=0, le=INT64_MAX, description="Times the member was restarted.")
    latency_ms: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Average request latency in milliseconds."
    )
    outstanding_requests: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="Requests queued in the member."
    )


class BackupStatus(ApiModel):
    """A backup as its manifest says."""

    name: str = Field(description="Name of the backup in its target.")
    zxid: str = Field(description="The last transaction it holds (hex).")
    created_at: str = Field(description="When it was taken (ISO 8601, UTC).")
    location: str | None = Field(default=None, description="Where the backups are kept.")


class RestoreStatus(ApiModel):
    """Where a restored cluster's data came from."""

    backup: str = Field(description="The backup restored.")
    zxid: str = Field(description="The last transaction of the backup, which the cluster holds (hex).")


class ZookeeperClusterStatus(ApiModel):
    """Observed state of a ZooKeeper ensemble."""

    observed_generation: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="The metadata.generation last acted upon."
    )
    phase: str | None = Field(
        default=None,
        description="Summary of the cluster's state, e.g. Pending, Creating, Running, "
        "Scaling, Rolling, Degraded, Failed.",
    )
    replicas: int = Field(default=0, ge=0, le=INT64_MAX, description="Members that exist.")
    ready_replicas: int = Field(default=0, ge=0, le=INT64_MAX, description="Members that serve clients.")
    leader: int | None = Field(default=None, ge=1, le=INT64_MAX, description="Member id of the leader, if any.")
    members: list[MemberStatus] = Field(default_factory=list, description="Observed state of each member.")
    connection_string: str | None = Field(
        default=None, description="Client connection string, e.g. 'host1:2181,host2:2181'."
    )
    config_version: str | None = Field(
        default=None, description="Version of the ensemble's dynamic configuration (hex)."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Current conditions of the cluster.")
    restarted_at: str | None = Field(
        default=None,
        description="The restart request (annotation zkop.io/restartedAt) the last finished rolling restart served.",
    )
    certificates_expire_at: str | None = Field(
        default=None,
        description="With TLS: when the first of the members' certificates ends (ISO 8601, UTC).",
    )
    last_backup: BackupStatus | None = Field(default=None, description="The newest scheduled backup.")
    restored: RestoreStatus | None = Field(
        default=None, description="The backup the cluster was restored from (`zkop backup restore`)."
    )


class ZookeeperCluster(Resource):
    """A ZooKeeper ensemble that zkop creates, scales, heals and rolls."""

    KIND: ClassVar[str] = "ZookeeperCluster"

    kind: Literal["ZookeeperCluster"] = Field(
        default="ZookeeperCluster", description="Kind of the object: ZookeeperCluster."
    )
    spec: ZookeeperClusterSpec = Field(
        default_factory=ZookeeperClusterSpec, description="Desired state of the ensemble."
    )
    status: ZookeeperClusterStatus = Field(
        default_factory=ZookeeperClusterStatus,
        description="Observed state of the ensemble, written by the operator.",
    )
