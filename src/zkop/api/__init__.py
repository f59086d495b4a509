"""zkop.api: the resource kinds as typed models, their validation, YAML in/out, schemas.

Kinds (``apiVersion: zkop.io/v1``): :class:`ZookeeperCluster` (``zkc``), :class:`Application`
(``app``), :class:`OperatorConfig` (``opconfig``) and :class:`ZookeeperZnode` (``znode``).
Invalid input is refused with a :class:`ResourceValidationError` that names each field path,
the value and what is allowed.
"""

from __future__ import annotations

from zkop.api.application import (
    Application,
    ApplicationSpec,
    ApplicationStatus,
    ApplicationTemplate,
    Autoscaling,
    ClusterRef,
    ContainerPort,
    EnvVar,
    ExecProbe,
    HttpProbe,
    InstanceStatus,
    MetricTarget,
    Probe,
    Probes,
    RollingUpdate,
    ServiceSpec,
    Strategy,
    TcpProbe,
    ZookeeperRef,
)
from zkop.api.checks import check_update, warnings_for
from zkop.api.errors import InvalidYamlError, Problem, ResourceValidationError
from zkop.api.explain import explain, json_schema
from zkop.api.meta import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ObjectMeta,
    Resource,
    ResourceList,
    ResourceRequirements,
)
from zkop.api.operatorconfig import (
    LeaderElection,
    OperatorConfig,
    OperatorConfigSpec,
    OperatorConfigStatus,
)
from zkop.api.parsing import parse_object, to_dict
from zkop.api.quantity import Quantity
from zkop.api.registry import KINDS, KindInfo, resolve_kind
from zkop.api.yamlio import dump_yaml, load_yaml
from zkop.api.zookeepercluster import (
    Autopurge,
    JvmSpec,
    MemberStatus,
    StorageSpec,
    ZookeeperCluster,
    ZookeeperClusterSpec,
    ZookeeperClusterStatus,
    ZookeeperConfig,
    reserved_config_key,
)
from zkop.api.zookeeperznode import (
    ZnodeQuota,
    ZookeeperZnode,
    ZookeeperZnodeSpec,
    ZookeeperZnodeStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "Application",
    "ApplicationSpec",
    "ApplicationStatus",
    "ApplicationTemplate",
    "Autopurge",
    "Autoscaling",
    "ClusterRef",
    "Condition",
    "ContainerPort",
    "EnvVar",
    "ExecProbe",
    "HttpProbe",
    "InstanceStatus",
    "InvalidYamlError",
    "JvmSpec",
    "KindInfo",
    "LeaderElection",
    "MemberStatus",
    "MetricTarget",
    "ObjectMeta",
    "OperatorConfig",
    "OperatorConfigSpec",
    "OperatorConfigStatus",
    "Probe",
    "Probes",
    "Problem",
    "Quantity",
    "Resource",
    "ResourceList",
    "ResourceRequirements",
    "ResourceValidationError",
    "RollingUpdate",
    "ServiceSpec",
    "StorageSpec",
    "Strategy",
    "TcpProbe",
    "ZnodeQuota",
    "ZookeeperCluster",
    "ZookeeperClusterSpec",
    "ZookeeperClusterStatus",
    "ZookeeperConfig",
    "ZookeeperRef",
    "ZookeeperZnode",
    "ZookeeperZnodeSpec",
    "ZookeeperZnodeStatus",
    "check_update",
    "dump_yaml",
    "explain",
    "json_schema",
    "load_yaml",
    "parse_object",
    "reserved_config_key",
    "resolve_kind",
    "to_dict",
    "warnings_for",
]
