"""The ``ZookeeperZnode`` kind: a path in a managed ZooKeeper cluster that belongs to one
application (a tenant), with its own digest identity, an optional quota and a reclaim policy."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from zkop.api.application import ClusterRef
from zkop.api.meta import INT64_MAX, ApiModel, Condition, Resource
from zkop.api.quantity import Quantity

#: A znode path zkop hands to a tenant: absolute, segments of letters, digits, '_', '.' and '-'
#: (not starting with '.' or '-'), no trailing '/', as a regular expression that Python, JSON
#: Schema and Kubernetes (RE2) read alike.
ZNODE_PATH_PATTERN = r"^(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)+$"
ZNODE_PATH_MAX = 512
_PATH = re.compile(ZNODE_PATH_PATTERN)


def check_znode_path(value: str) -> str:
    if len(value) > ZNODE_PATH_MAX or not _PATH.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a tenant path; expected an absolute path like '/apps/orders' whose segments are "
            f"letters, digits, '_', '.' and '-' (not starting with '.' or '-'), at most {ZNODE_PATH_MAX} characters"
        )
    if value == "/zookeeper" or value.startswith("/zookeeper/"):
        raise ValueError(f"{value!r} is under /zookeeper, which ZooKeeper keeps for itself")
    return value


class ZnodeQuota(ApiModel):
    """A ZooKeeper quota on the path (set as the super user): how many znodes and bytes of data
    the subtree may hold. ZooKeeper logs a warning when a soft quota is exceeded; with ``hard``
    it refuses the write (QuotaExceeded) when the cluster runs with ``enforceQuota: "true"`` in
    spec.config.additionalConfig."""

    znodes: int | None = Field(default=None, ge=1, le=2**31 - 1, description="Most znodes in the subtree.")
    bytes: Quantity | None = Field(default=None, description="Most bytes of data in the subtree, e.g. '10Mi'.")
    hard: bool = Field(default=False, description="Refuse writes beyond the quota instead of logging a warning.")


class ZookeeperZnodeSpec(ApiModel):
    """Desired state of a tenant's path."""

    cluster_ref: ClusterRef = Field(description="The ZookeeperCluster the path lives in.")
    path: str = Field(
        description="Absolute path of the tenant's znode, e.g. '/apps/orders'; applications get it as their chroot.",
        json_schema_extra={"pattern": ZNODE_PATH_PATTERN, "maxLength": ZNODE_PATH_MAX},
    )
    quota: ZnodeQuota | None = Field(default=None, description="A quota on the subtree; none when absent.")
    reclaim_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="When the object is deleted: Retain keeps the znodes and the credentials (a new object with "
        "the same name takes them over), Delete removes the subtree, its quota and the credentials.",
    )

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        return check_znode_path(value)


class ZnodeQuotaStatus(ApiModel):
    """The quota as set in the cluster."""

    znodes: int | None = Field(default=None, ge=1, le=2**31 - 1, description="Most znodes.")
    bytes: int | None = Field(default=None, ge=1, le=INT64_MAX, description="Most bytes.")
    hard: bool = Field(default=False, description="Whether the quota is a hard one.")


class ZookeeperZnodeStatus(ApiModel):
    """Observed state of a tenant's path."""

    observed_generation: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="The metadata.generation last acted upon."
    )
    phase: str | None = Field(default=None, description="Pending, Ready or Failed.")
    connection_string: str | None = Field(
        default=None,
        description="The cluster's connection string with the path as chroot, e.g. 'h1:2181,h2:2181/apps/orders'.",
    )
    user: str | None = Field(default=None, description="The digest identity that owns the path.")
    credentials: str | None = Field(
        default=None,
        description="Where the identity's credentials are handed over (a directory of files locally, a Secret on "
        "Kubernetes): keys user, password and auth (user:password).",
    )
    quota: ZnodeQuotaStatus | None = Field(default=None, description="The quota set in the cluster.")
    conditions: list[Condition] = Field(default_factory=list, description="Current conditions of the path.")


class ZookeeperZnode(Resource):
    """A znode path in a ZookeeperCluster that belongs to one application: zkop creates it with a digest ACL for
    a generated identity, hands the credentials over and sets the quota."""

    KIND: ClassVar[str] = "ZookeeperZnode"

    kind: Literal["ZookeeperZnode"] = Field(default="ZookeeperZnode", description="Kind of the object: ZookeeperZnode.")
    spec: ZookeeperZnodeSpec = Field(description="Desired state of the path.")
    status: ZookeeperZnodeStatus = Field(
        default_factory=ZookeeperZnodeStatus, description="Observed state of the path, written by the operator."
    )


__all__ = [
    "ZNODE_PATH_PATTERN",
    "ZnodeQuota",
    "ZnodeQuotaStatus",
    "ZookeeperZnode",
    "ZookeeperZnodeSpec",
    "ZookeeperZnodeStatus",
    "check_znode_path",
]
