"""The ``OperatorConfig`` kind: how the zkop operator itself runs."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from zkop.api.errors import FieldProblems
from zkop.api.meta import (
    INT64_MAX,
    ApiModel,
    Condition,
    Resource,
    ResourceRequirements,
    dns_label_problem,
)


class LeaderElection(ApiModel):
    """Leader election among operator replicas (through ZooKeeper)."""

    leader_elect: bool = Field(
        default=True, description="Elect one active replica; turn off only when running one replica."
    )
    session_timeout_seconds: int = Field(
        default=10,
        ge=2,
        le=120,
        description="ZooKeeper session timeout of the election (2-120 s); a leader that loses "
        "its session for this long is replaced.",
    )


class OperatorConfigSpec(ApiModel):
    """Desired configuration of the operator."""

    target_namespace: str = Field(
        default="", description="Namespace whose resources the operator manages; empty means all."
    )
    leader_election: LeaderElection = Field(
        default_factory=LeaderElection, description="Leader election among operator replicas."
    )
    replicas: int = Field(default=2, ge=1, le=16, description="Operator replicas (one leads, the others stand by).")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="CPU and memory requested and limited for each operator replica.",
    )

    @field_validator("target_namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if value:
            problem = dns_label_problem(value)
            if problem:
                raise ValueError(f"{problem}; or empty for all namespaces")
        return value

    @model_validator(mode="after")
    def _several_replicas_need_election(self) -> OperatorConfigSpec:
        if self.replicas > 1 and not self.leader_election.leader_elect:
            raise FieldProblems(
                [
                    (
                        ("leaderElection", "leaderElect"),
                        f"must be true with {self.replicas} replicas, or replicas active at "
                        "once would act without fencing; set replicas to 1 to turn it off",
                    )
                ]
            )
        return self


class OperatorConfigStatus(ApiModel):
    """Observed state of the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="The metadata.generation last acted upon."
    )
    leader: str | None = Field(default=None, description="Identity of the replica that leads.")
    epoch: int | None = Field(
        default=None, ge=0, le=INT64_MAX, description="Fencing epoch of the current leadership term."
    )
    replicas: int = Field(default=0, ge=0, le=INT64_MAX, description="Operator replicas running.")
    ready_replicas: int = Field(default=0, ge=0, le=INT64_MAX, description="Operator replicas ready.")
    conditions: list[Condition] = Field(default_factory=list, description="Current conditions of the operator.")


class OperatorConfig(Resource):
    """Configuration of the zkop operator (namespace scope, leader election, replicas)."""

    KIND: ClassVar[str] = "OperatorConfig"

    kind: Literal["OperatorConfig"] = Field(default="OperatorConfig", description="Kind of the object: OperatorConfig.")
    spec: OperatorConfigSpec = Field(
        default_factory=OperatorConfigSpec, description="Desired configuration of the operator."
    )
    status: OperatorConfigStatus = Field(
        default_factory=OperatorConfigStatus,
        description="Observed state of the operator, written by the operator.",
    )
