"""The ZookeeperCluster status as a pure function of a look and an action."""

from __future__ import annotations

import datetime as dt

from zkop.api.zookeepercluster import ZookeeperClusterStatus
from zkop.controllers.zookeepercluster import plan as P
from zkop.controllers.zookeepercluster.driver import Look
from zkop.controllers.zookeepercluster.status import stable, status_for
from zkop.platform.base import ClusterObservation, MemberObservation
from zkop.zk.config import MemberAddress
from zkop.zk.fourlw import ServerState

AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DESIRED = P.Desired(replicas=3, config_hash="h")


def addr(i: int) -> MemberAddress:
    return MemberAddress(i, "127.0.0.1", 1000 + i, 2000 + i, 3000 + i)


def member(i: int, mode: str = "follower", *, ready: bool = True, running: bool = True) -> MemberObservation:
    state = ServerState(f"127.0.0.1:{3000 + i}", reachable=ready, serving=ready, mode=mode, zxid=0x100000005)
    return MemberObservation(
        id=i,
        address=addr(i),
        running=running,
        ready=ready,
        unresponsive=False,
        restarts=i - 1,
        data_present=True,
        state=state,
    )


def look(members: list[MemberObservation], config: list[int], version: int | None = 0x100000000) -> Look:
    obs = ClusterObservation(tuple(members), next_id=len(members) + 1)
    return Look(obs, tuple(addr(i) for i in config), version, ())


def cond(status: ZookeeperClusterStatus, type_: str) -> tuple[str, str]:
    c = next(c for c in status.conditions if c.type == type_)
    return c.status, c.reason or ""


def test_a_healthy_cluster_is_running_and_available() -> None:
    seen = look([member(1), member(2, "leader"), member(3)], [1, 2, 3])
    status = status_for(ZookeeperClusterStatus(), seen, P.Done(), DESIRED, generation=4, at=AT)
    assert status.phase == "Running"
    assert (status.replicas, status.ready_replicas, status.leader) == (3, 3, 2)
    assert status.connection_string == "127.0.0.1:3001,127.0.0.1:3002,127.0.0.1:3003"
    assert status.config_version == "0x100000000"
    assert [m.restarts for m in status.members] == [0, 1, 2]
    assert cond(status, "Available") == ("True", "QuorumUp")
    assert cond(status, "Progressing") == ("False", "Done")
    assert cond(status, "Degraded") == ("False", "AsExpected")
    assert status.observed_generation == 4


def test_a_joiner_outside_the_configuration_is_listed_but_not_counted() -> None:
    seen = look([member(1), member(2, "leader"), member(3), member(4)], [1, 2, 3])
    status = status_for(ZookeeperClusterStatus(), seen, P.ReconfigIn(4), DESIRED, generation=1, at=AT)
    assert status.phase == "Updating" and status.replicas == 3 and len(status.members) == 4
    assert "3004" not in (status.connection_string or "")
    assert cond(status, "Progressing") == ("True", "ReconfigIn")


def test_quorum_lost_is_degraded_and_not_available() -> None:
    seen = look([member(1, ready=False), member(2, running=False, ready=False), member(3)], [1, 2, 3])
    action = P.Degraded(P.DegradedReason.QUORUM_LOST, "1 of 3 participants serve")
    status = status_for(ZookeeperClusterStatus(), seen, action, DESIRED, generation=1, at=AT)
    assert status.phase == "Degraded"
    assert cond(status, "Available") == ("False", "NoQuorum")
    assert cond(status, "Degraded") == ("True", "QuorumLost")
    assert [m.role for m in status.members] == ["unknown", "down", "follower"]


def test_a_failed_action_is_degraded_and_paused_wins_over_everything() -> None:
    seen = look([member(1), member(2, "leader"), member(3)], [1, 2, 3])
    failed = status_for(
        ZookeeperClusterStatus(), seen, P.AddMember(4), DESIRED, generation=1, error=TimeoutError("x"), at=AT
    )
    assert cond(failed, "Degraded") == ("True", "ActionFailed")
    paused = P.Desired(replicas=3, config_hash="h", paused=True)
    assert status_for(ZookeeperClusterStatus(), seen, P.Wait(P.WaitReason.PAUSED), paused, generation=1).phase == (
        "Paused"
    )


def test_a_completed_restart_request_is_recorded_and_volatile_figures_do_not_count() -> None:
    seen = look([member(1), member(2, "leader"), member(3)], [1, 2, 3])
    asked = P.Desired(replicas=3, config_hash="h", restart_requested_at="2026-01-01T00:00:00Z")
    status = status_for(ZookeeperClusterStatus(), seen, P.Done(), asked, generation=1, at=AT)
    assert status.restarted_at == "2026-01-01T00:00:00Z"
    busier = status.model_copy(
        update={"members": [m.model_copy(update={"zxid": 99, "latency_ms": 7.0}) for m in status.members]}
    )
    assert stable(busier) == stable(status) and busier != status


def test_nothing_observed_is_creating() -> None:
    empty = Look(ClusterObservation((), next_id=1), (), None, ())
    status = status_for(ZookeeperClusterStatus(), empty, P.CreateMembers((1, 2, 3)), DESIRED, generation=1, at=AT)
    assert status.phase == "Creating" and status.connection_string is None and status.members == []
