"""The ZookeeperCluster plan: one safe next action from observed member states ("quorum first")."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkop.controllers.zookeepercluster.plan import (
    MAX_MEMBER_ID,
    Action,
    AddMember,
    CreateMembers,
    Degraded,
    DegradedReason,
    Desired,
    Done,
    ObservedMember,
    Quorum,
    ReconfigIn,
    ReconfigOut,
    RemoveReason,
    RestartMember,
    RestartReason,
    Role,
    StartMember,
    StopMember,
    StopReason,
    Wait,
    WaitReason,
    can_lose_one,
    choose_scale_down_victim,
    has_quorum,
    majority,
    plan,
    quorum,
    restart_pending,
    restart_reason,
    roll_order,
)

NOW = 1_700_000_000.0
GRACE = 60.0
HASH = "h-current"
OLD = "h-old"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def mem(member_id: int, **kw: Any) -> ObservedMember:
    """A healthy, current participant (follower), changed by ``kw``."""
    fields: dict[str, Any] = dict(
        id=member_id,
        in_config=True,
        process_running=True,
        paused=False,
        serving=True,
        role="follower",
        syncing=False,
        data_present=True,
        config_hash=HASH,
        unresponsive_since=None,
        started_at=NOW - 1000,
    )
    fields.update(kw)
    return ObservedMember(**fields)


def leader(member_id: int, **kw: Any) -> ObservedMember:
    return mem(member_id, role="leader", **kw)


def dead(member_id: int, **kw: Any) -> ObservedMember:
    return mem(member_id, process_running=False, serving=False, role="unknown", **kw)


def hung(member_id: int, since: float | None = NOW - 2 * GRACE, **kw: Any) -> ObservedMember:
    return mem(member_id, paused=True, serving=False, role="unknown", unresponsive_since=since, **kw)


def booting(member_id: int, **kw: Any) -> ObservedMember:
    return mem(member_id, serving=False, role="unknown", unresponsive_since=NOW - 5, **kw)


def joiner(member_id: int, **kw: Any) -> ObservedMember:
    return mem(member_id, in_config=False, **kw)


def want(replicas: int = 3, **kw: Any) -> Desired:
    return Desired(replicas=replicas, config_hash=HASH, **kw)


def three() -> list[ObservedMember]:
    return [mem(1), mem(2), leader(3)]


def decide(
    members: Sequence[ObservedMember],
    desired: Desired | None = None,
    *,
    next_id: int | None = None,
    now: float = NOW,
) -> Action:
    if next_id is None:
        next_id = max((m.id for m in members), default=0) + 1
    return plan(members, desired or want(), next_id=next_id, now=now, unresponsive_grace=GRACE)


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(("n", "expected"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4), (9, 5)])
def test_majority(n: int, expected: int) -> None:
    assert majority(n) == expected


def test_majority_rejects_negative() -> None:
    with pytest.raises(ValueError, match="participants"):
        majority(-1)


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([], Quorum(0, 0)),
        (three(), Quorum(3, 3)),
        ([mem(1), dead(2), hung(3), joiner(4)], Quorum(3, 1)),
        ([mem(1, process_running=False)], Quorum(1, 0)),  # a stale "serving" report of a dead process
    ],
)
def test_quorum(members: list[ObservedMember], expected: Quorum) -> None:
    assert quorum(members) == expected


@pytest.mark.parametrize(
    ("members", "quorate", "lose_one"),
    [
        ([], False, False),
        ([leader(1)], True, False),
        ([mem(1), leader(2)], True, False),
        (three(), True, True),
        ([mem(1), dead(2), leader(3)], True, False),
        ([mem(1), dead(2), dead(3)], False, False),
        ([mem(1), mem(2), leader(3), dead(4), dead(5)], True, False),
        ([mem(1), mem(2), mem(3), leader(4), dead(5)], True, True),
        ([mem(1), leader(2), joiner(3), joiner(4)], True, False),  # joiners do not vote
    ],
)
def test_has_quorum_and_can_lose_one(members: list[ObservedMember], quorate: bool, lose_one: bool) -> None:
    assert has_quorum(members) is quorate
    assert can_lose_one(members) is lose_one


@pytest.mark.parametrize(
    ("members", "order"),
    [
        (three(), [1, 2, 3]),
        ([leader(1), mem(2), mem(3)], [2, 3, 1]),
        ([mem(5), leader(2), booting(4), hung(3), mem(1)], [3, 4, 1, 5, 2]),
        ([leader(1, serving=False), mem(2)], [1, 2]),  # a non-serving "leader" is just unready
        ([], []),
    ],
)
def test_roll_order(members: list[ObservedMember], order: list[int]) -> None:
    assert roll_order(members) == order


@pytest.mark.parametrize(
    ("members", "stale", "victim"),
    [
        ([leader(1)], (), None),
        ([], (), None),
        (three(), (), 2),  # highest-id follower
        ([mem(1), leader(5), mem(4)], (), 4),
        ([leader(1), mem(2)], (), 2),
        ([mem(1), dead(2), leader(3)], (), 2),  # not serving first
        ([mem(1), booting(2), hung(3), leader(4)], (), 3),  # not serving, then highest id
        ([mem(1), mem(2, data_present=False), leader(3)], (), 2),  # data lost next
        ([mem(1), mem(2), leader(3)], (1,), 1),  # stale before fresh
        ([leader(1), mem(2)], (1,), 1),  # a stale leader before a fresh follower (surge)
        ([leader(1), mem(2), mem(3)], (1, 2), 2),  # stale follower before stale leader
        ([mem(1), leader(2), joiner(9)], (), 1),  # non-participants are not candidates
    ],
)
def test_choose_scale_down_victim(members: list[ObservedMember], stale: tuple[int, ...], victim: int | None) -> None:
    assert choose_scale_down_victim(members, stale=stale) == victim


@pytest.mark.parametrize(
    ("requested", "restarted", "pending"),
    [
        (None, None, False),
        (iso(NOW), None, True),
        (iso(NOW), iso(NOW - 1), True),
        (iso(NOW), iso(NOW), False),
        (iso(NOW), iso(NOW + 1), False),
        ("2024-01-01T00:00:00Z", None, True),
        ("2024-01-01T00:00:00", "2024-01-01T00:00:00+00:00", False),  # naive is UTC
        ("not a time", None, False),
        (iso(NOW), "garbage", True),
    ],
)
def test_restart_pending(requested: str | None, restarted: str | None, pending: bool) -> None:
    assert restart_pending(want(restart_requested_at=requested, restarted_at=restarted)) is pending


@pytest.mark.parametrize(
    ("member", "desired", "reason"),
    [
        (mem(1), want(), None),
        (mem(1, config_hash=OLD), want(), RestartReason.CONFIG_CHANGED),
        (mem(1, config_hash=None), want(), RestartReason.CONFIG_CHANGED),
        (mem(1, started_at=NOW - 10), want(restart_requested_at=iso(NOW - 5)), RestartReason.RESTART_REQUESTED),
        (mem(1, started_at=NOW - 1), want(restart_requested_at=iso(NOW - 5)), None),
        (mem(1, started_at=None), want(restart_requested_at=iso(NOW - 5)), None),
        (mem(1, started_at=NOW - 10), want(restart_requested_at=iso(NOW - 5), restarted_at=iso(NOW - 5)), None),
    ],
)
def test_restart_reason(member: ObservedMember, desired: Desired, reason: RestartReason | None) -> None:
    assert restart_reason(member, desired) == reason


def test_detail_takes_no_part_in_equality() -> None:
    assert Wait(WaitReason.PAUSED, "a") == Wait(WaitReason.PAUSED, "b") == Wait("paused")  # type: ignore[arg-type]
    assert Wait(WaitReason.PAUSED) != Wait(WaitReason.SYNCING)


@pytest.mark.parametrize(
    ("members", "desired", "next_id", "message"),
    [
        ([mem(1), mem(1)], want(), 2, "unique"),
        ([mem(0)], want(), 2, "start at 1"),
        ([mem(1)], want(0), 2, "at least 1 replica"),
        ([mem(1)], want(), 0, "next_id"),
    ],
)
def test_inconsistent_input_is_refused(
    members: list[ObservedMember], desired: Desired, next_id: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan(members, desired, next_id=next_id, now=NOW, unresponsive_grace=GRACE)


# --------------------------------------------------------------------------- the rules, one table each

PAUSED = want(paused=True)
Case = tuple[list[ObservedMember], Desired, Action]


def check(cases: list[Case]) -> None:
    for members, desired, expected in cases:
        assert decide(members, desired) == expected, (members, desired)


@pytest.mark.parametrize(
    "members",
    [
        [],
        three(),
        [dead(1), dead(2), dead(3)],
        [mem(1, config_hash=OLD), leader(2)],
        [mem(1), mem(2), leader(3), mem(4)],
    ],
)
@pytest.mark.parametrize("deleting", [False, True])
def test_paused_changes_nothing(members: list[ObservedMember], deleting: bool) -> None:
    assert decide(members, want(paused=True, deleting=deleting)) == Wait(WaitReason.PAUSED)


DELETE_RETAIN = want(deleting=True)
DELETE_PURGE = want(deleting=True, reclaim_policy="Delete")


@pytest.mark.parametrize(
    ("members", "desired", "expected"),
    [
        # non-members first, then followers by highest id, the leader last
        ([*three(), joiner(4)], DELETE_RETAIN, StopMember(4, False, StopReason.DELETING)),
        (three(), DELETE_RETAIN, StopMember(2, False, StopReason.DELETING)),
        ([mem(1), leader(3), dead(2)], DELETE_RETAIN, StopMember(1, False, StopReason.DELETING)),
        ([leader(3), dead(1), dead(2)], DELETE_PURGE, StopMember(3, True, StopReason.DELETING)),
        # quorum lost does not block deletion
        ([mem(1), hung(2), hung(3)], DELETE_RETAIN, StopMember(3, False, StopReason.DELETING)),
        # stopped: Retain is done, Delete purges the data left
        ([dead(1), dead(2)], DELETE_RETAIN, Done()),
        ([dead(1), dead(2)], DELETE_PURGE, StopMember(1, True, StopReason.DELETING)),
        (
            [dead(2, data_present=False), dead(5, in_config=False)],
            DELETE_PURGE,
            StopMember(5, True, StopReason.DELETING),
        ),
        ([dead(1, data_present=False)], DELETE_PURGE, Done()),
        ([], DELETE_PURGE, Done()),
    ],
)
def test_deleting(members: list[ObservedMember], desired: Desired, expected: Action) -> None:
    assert decide(members, desired) == expected


def test_bootstrap() -> None:
    assert decide([], want(3), next_id=1) == CreateMembers((1, 2, 3))
    assert decide([], want(1), next_id=7) == CreateMembers((7,))
    # retained data of old members (not in any configuration): ids stay above them
    assert decide([dead(9, in_config=False)], want(3), next_id=4) == CreateMembers((10, 11, 12))
    # stray processes are stopped first
    assert decide([joiner(4), joiner(2)], want(3, reclaim_policy="Delete"), next_id=5) == StopMember(
        2, True, StopReason.NOT_A_MEMBER
    )
    assert decide([], want(3), next_id=MAX_MEMBER_ID - 1) == Degraded(DegradedReason.MEMBER_IDS_EXHAUSTED)
    assert decide([], want(2), next_id=MAX_MEMBER_ID - 1) == CreateMembers((MAX_MEMBER_ID - 1, MAX_MEMBER_ID))


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([mem(1), dead(2), dead(3)], StartMember(2)),
        ([mem(1), dead(2, data_present=False), dead(3)], StartMember(3)),
        ([mem(1), dead(2, data_present=False), dead(3, data_present=False)], Degraded(DegradedReason.QUORUM_LOST)),
        ([mem(1), hung(2), hung(3)], Degraded(DegradedReason.QUORUM_LOST)),  # no restart, no replace
        ([mem(1), booting(2), booting(3, config_hash=OLD)], Degraded(DegradedReason.QUORUM_LOST)),
        ([leader(1), dead(2)], StartMember(2)),
        ([dead(1)], StartMember(1)),
        ([dead(1, data_present=False)], Degraded(DegradedReason.QUORUM_LOST)),
        ([mem(1, syncing=True), hung(2), dead(3)], StartMember(3)),  # starting is never blocked
        # a ready joiner is not reconfigured in, strays are not stopped, nothing is added or removed
        ([mem(1), hung(2), hung(3), joiner(4)], Degraded(DegradedReason.QUORUM_LOST)),
        ([mem(1), hung(2), hung(3), joiner(4, config_hash=OLD)], Degraded(DegradedReason.QUORUM_LOST)),
    ],
)
@pytest.mark.parametrize("replicas", [1, 3, 5])
def test_quorum_lost_only_starts_members_with_data(
    members: list[ObservedMember], expected: Action, replicas: int
) -> None:
    assert decide(members, want(replicas)) == expected


ELECTION = 10.0
STARTUP = 60.0


def electing(member_id: int, since: float = NOW - 2, **kw: Any) -> ObservedMember:
    """Running, not serving, noticed ``NOW - since`` seconds ago (its leader went away)."""
    return mem(member_id, serving=False, role="unknown", unresponsive_since=since, **kw)


def decide_graces(members: Sequence[ObservedMember]) -> Action:
    next_id = max(m.id for m in members) + 1
    return plan(
        members,
        want(),
        next_id=next_id,
        now=NOW,
        unresponsive_grace=GRACE,
        startup_grace=STARTUP,
        election_grace=ELECTION,
    )


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        # the leader went: the others elect; not reported as lost quorum for a while
        ([electing(1), electing(2), dead(3, data_present=False)], Wait(WaitReason.UNREADY)),
        ([electing(1), electing(2), electing(3)], Wait(WaitReason.UNREADY)),
        # just started (zkop up, a restart): booting, whatever the timer says
        (
            [electing(1, since=None, started_at=NOW - 5), electing(2, since=NOW - 100, started_at=NOW - 5)],
            Wait(WaitReason.UNREADY),
        ),
        # electing for longer than the grace: quorum is lost
        (
            [electing(1, since=NOW - 30), electing(2, since=NOW - 30), dead(3, data_present=False)],
            Degraded(DegradedReason.QUORUM_LOST),
        ),
        # too few can still serve, however young
        ([electing(1), dead(2, data_present=False), dead(3, data_present=False)], Degraded(DegradedReason.QUORUM_LOST)),
        # a hung (paused) member never counts as electing
        ([hung(1, since=NOW - 1), electing(2), dead(3, data_present=False)], Degraded(DegradedReason.QUORUM_LOST)),
        # a dead member with data is still started first
        ([electing(1), electing(2), dead(3)], StartMember(3)),
    ],
)
def test_an_election_in_progress_is_not_quorum_lost(members: list[ObservedMember], expected: Action) -> None:
    assert decide_graces(members) == expected


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([mem(1), dead(2), leader(3)], StartMember(2)),
        ([dead(1), mem(2, syncing=True), leader(3), dead(4), mem(5)], StartMember(1)),
        ([mem(1, config_hash=OLD), dead(2), leader(3)], StartMember(2)),
        # a dead member without data is not started: it is replaced (removed first)
        ([mem(1), dead(2, data_present=False), leader(3)], ReconfigOut(2, RemoveReason.DATA_LOST)),
        # a running member whose data vanished too
        ([mem(1), mem(2, data_present=False), leader(3)], ReconfigOut(2, RemoveReason.DATA_LOST)),
        # unresponsive beyond grace: replaced; within grace: waited for
        ([mem(1), hung(2), leader(3)], ReconfigOut(2, RemoveReason.UNRESPONSIVE)),
        ([mem(1), hung(2, since=NOW - GRACE), leader(3)], ReconfigOut(2, RemoveReason.UNRESPONSIVE)),
        ([mem(1), hung(2, since=NOW - GRACE + 1), leader(3)], Wait(WaitReason.UNREADY)),
        ([mem(1), hung(2, since=None), leader(3)], Wait(WaitReason.UNREADY)),
        ([mem(1), booting(2), leader(3)], Wait(WaitReason.UNREADY)),
        # not serving first among those to replace
        ([mem(1, data_present=False), hung(2), leader(3)], ReconfigOut(2, RemoveReason.UNRESPONSIVE)),
        # removal that would lose quorum waits
        ([mem(1, data_present=False), booting(2), leader(3)], Wait(WaitReason.UNSAFE)),
        # a member stuck syncing beyond grace does not block its own replacement
        ([mem(1), hung(2, syncing=True), leader(3)], ReconfigOut(2, RemoveReason.UNRESPONSIVE)),
        ([mem(1), hung(2), leader(3, syncing=True)], Wait(WaitReason.SYNCING)),
    ],
)
def test_heal_and_replace(members: list[ObservedMember], expected: Action) -> None:
    assert decide(members, want(3)) == expected


def test_replacement_walkthrough() -> None:
    """Member 2 lost its data: out of the config, stopped, a new id added, then joined."""
    d = want(3, reclaim_policy="Delete")
    assert decide([mem(1), mem(2, data_present=False), leader(3)], d) == ReconfigOut(2, RemoveReason.DATA_LOST)
    after_out = [mem(1), mem(2, in_config=False, data_present=False), leader(3)]
    assert decide(after_out, d, next_id=4) == StopMember(2, True, StopReason.NOT_A_MEMBER)
    assert decide([mem(1), leader(3)], d, next_id=4) == AddMember(4)
    assert decide([mem(1), leader(3), joiner(4, serving=False)], d, next_id=5) == Wait(WaitReason.JOINING)
    assert decide([mem(1), leader(3), joiner(4, syncing=True)], d, next_id=5) == Wait(WaitReason.SYNCING)
    assert decide([mem(1), leader(3), joiner(4)], d, next_id=5) == ReconfigIn(4)
    assert decide([mem(1), leader(3), mem(4)], d, next_id=5) == Done()


def test_single_member_with_lost_data_is_replaced_by_surge() -> None:
    """The only member cannot be removed: a new member is added first (it syncs from
    the running member's memory), then the old one removed."""
    d = want(1)
    assert decide([leader(1, data_present=False)], d) == AddMember(2)
    assert decide([leader(1, data_present=False), joiner(2, serving=False)], d) == Wait(WaitReason.JOINING)
    assert decide([leader(1, data_present=False), joiner(2)], d) == ReconfigIn(2)
    assert decide([leader(1, data_present=False), mem(2)], d) == ReconfigOut(1, RemoveReason.DATA_LOST)


@pytest.mark.parametrize(
    ("members", "desired", "expected"),
    [
        (three(), want(5), AddMember(4)),
        ([mem(1), leader(7)], want(3), AddMember(8)),
        # a stopped non-member is forgotten first (its data kept by Retain)
        ([mem(1), leader(2), dead(3, in_config=False)], want(3), StopMember(3, False, StopReason.NOT_A_MEMBER)),
        ([*three(), joiner(4, serving=False)], want(5), Wait(WaitReason.JOINING)),
        ([*three(), joiner(4)], want(5), ReconfigIn(4)),
        ([*three(), joiner(4, syncing=True)], want(5), Wait(WaitReason.SYNCING)),
        ([mem(1, syncing=True), mem(2), leader(3), joiner(4)], want(5), Wait(WaitReason.SYNCING)),
        # a joiner started with an old configuration, or stuck, is stopped (and another added)
        ([*three(), joiner(4, config_hash=OLD)], want(5), StopMember(4, False, StopReason.NOT_A_MEMBER)),
        (
            [*three(), joiner(4, paused=True, serving=False, unresponsive_since=NOW - GRACE)],
            want(5),
            StopMember(4, False, StopReason.NOT_A_MEMBER),
        ),
        # one joiner at a time: the ready one stays
        ([*three(), joiner(4), joiner(5, serving=False)], want(5), StopMember(5, False, StopReason.NOT_A_MEMBER)),
        ([*three(), joiner(4, serving=False), joiner(5)], want(5), StopMember(4, False, StopReason.NOT_A_MEMBER)),
        # stray processes are stopped even while someone syncs (they are outside quorum)
        ([mem(1, syncing=True), mem(2), leader(3), joiner(4)], want(3), StopMember(4, False, StopReason.NOT_A_MEMBER)),
        # scaling up while a member is down still keeps quorum
        ([mem(1), booting(2), leader(3)], want(5), AddMember(4)),
    ],
)
def test_scale_up(members: list[ObservedMember], desired: Desired, expected: Action) -> None:
    assert decide(members, desired) == expected


def test_scale_up_stops_at_the_id_limit() -> None:
    members = [mem(MAX_MEMBER_ID - 1), leader(MAX_MEMBER_ID)]
    assert decide(members, want(3), next_id=MAX_MEMBER_ID + 1) == Degraded(DegradedReason.MEMBER_IDS_EXHAUSTED)


@pytest.mark.parametrize(
    ("members", "desired", "expected"),
    [
        ([mem(1), mem(2), leader(3), mem(4), mem(5)], want(3), ReconfigOut(5, RemoveReason.SCALE_DOWN)),
        ([mem(1), mem(2), mem(3), mem(4), leader(5)], want(3), ReconfigOut(4, RemoveReason.SCALE_DOWN)),
        ([mem(1), booting(2), mem(3), mem(4), leader(5)], want(3), ReconfigOut(2, RemoveReason.SCALE_DOWN)),
        ([mem(1), leader(2)], want(1), ReconfigOut(1, RemoveReason.SCALE_DOWN)),
        # the removed member is stopped before the next removal; purge per policy
        (
            [mem(1), leader(2), mem(3), mem(4), mem(5, in_config=False)],
            want(3),
            StopMember(5, False, StopReason.NOT_A_MEMBER),
        ),
        (
            [mem(1), leader(2), mem(5, in_config=False)],
            want(2, reclaim_policy="Delete"),
            StopMember(5, True, StopReason.NOT_A_MEMBER),
        ),
        # a stopped non-member is forgotten, running ones go first
        ([mem(1), leader(2), dead(5, in_config=False)], want(2), StopMember(5, False, StopReason.NOT_A_MEMBER)),
        (
            [mem(1), leader(2), dead(4, in_config=False), mem(5, in_config=False)],
            want(2),
            StopMember(5, False, StopReason.NOT_A_MEMBER),
        ),
        # the joiner keeps running while a dead one is forgotten
        (
            [mem(1), leader(2), dead(4, in_config=False), joiner(5, serving=False)],
            want(3),
            StopMember(4, False, StopReason.NOT_A_MEMBER),
        ),
        ([mem(1), leader(2), joiner(5, serving=False)], want(3), Wait(WaitReason.JOINING)),
        ([mem(1), mem(2), leader(3), mem(4, syncing=True)], want(3), Wait(WaitReason.SYNCING)),
        # stale members go first (no point restarting them)
        ([mem(1, config_hash=OLD), mem(2), leader(3), mem(4)], want(3), ReconfigOut(1, RemoveReason.SCALE_DOWN)),
    ],
)
def test_scale_down(members: list[ObservedMember], desired: Desired, expected: Action) -> None:
    assert decide(members, desired) == expected


@pytest.mark.parametrize(
    ("members", "desired", "expected"),
    [
        # followers by id, the leader last
        (
            [leader(1, config_hash=OLD), mem(2, config_hash=OLD), mem(3, config_hash=OLD)],
            want(3),
            RestartMember(2, RestartReason.CONFIG_CHANGED),
        ),
        (
            [leader(1, config_hash=OLD), mem(2), mem(3, config_hash=OLD)],
            want(3),
            RestartMember(3, RestartReason.CONFIG_CHANGED),
        ),
        ([leader(1, config_hash=OLD), mem(2), mem(3)], want(3), RestartMember(1, RestartReason.CONFIG_CHANGED)),
        # unready first, and only when all the others serve
        (
            [mem(1, config_hash=OLD), booting(2, config_hash=OLD), leader(3, config_hash=OLD)],
            want(3),
            RestartMember(2, RestartReason.CONFIG_CHANGED),
        ),
        ([mem(1, config_hash=OLD), booting(2), leader(3)], want(3), Wait(WaitReason.UNREADY)),
        ([mem(1, config_hash=OLD), hung(2, since=NOW - 1), leader(3)], want(3), Wait(WaitReason.UNREADY)),
        ([mem(1, config_hash=OLD), hung(2), leader(3)], want(3), ReconfigOut(2, RemoveReason.UNRESPONSIVE)),
        # nobody syncing
        ([mem(1, config_hash=OLD), mem(2), leader(3, syncing=True)], want(3), Wait(WaitReason.SYNCING)),
        (
            [mem(1, config_hash=OLD), mem(2), leader(3), mem(4, in_config=False, syncing=True)],
            want(3),
            StopMember(4, False, StopReason.NOT_A_MEMBER),
        ),
        # an unknown hash counts as stale
        ([mem(1, config_hash=None), mem(2), leader(3)], want(3), RestartMember(1, RestartReason.CONFIG_CHANGED)),
        # restart requests: members started before the request, until it is recorded as done
        ([mem(1), mem(2, started_at=NOW - 60), leader(3)], want(3, restart_requested_at=iso(NOW - 2000)), Done()),
        (
            [mem(1), mem(2, started_at=NOW - 60), leader(3)],
            want(3, restart_requested_at=iso(NOW - 30)),
            RestartMember(1, RestartReason.RESTART_REQUESTED),
        ),
        (
            [mem(1, started_at=NOW - 10), mem(2, started_at=NOW - 60), leader(3, started_at=NOW - 5)],
            want(3, restart_requested_at=iso(NOW - 30)),
            RestartMember(2, RestartReason.RESTART_REQUESTED),
        ),
        ([mem(1), mem(2), leader(3)], want(3, restart_requested_at=iso(NOW - 30), restarted_at=iso(NOW - 30)), Done()),
        ([mem(1), mem(2), leader(3)], want(3, restart_requested_at="yesterday"), Done()),
        # a five-member ensemble rolls with one member down
        (
            [mem(1, config_hash=OLD), mem(2), leader(3), mem(4), mem(5)],
            want(5),
            RestartMember(1, RestartReason.CONFIG_CHANGED),
        ),
    ],
)
def test_rolling_restart(members: list[ObservedMember], desired: Desired, expected: Action) -> None:
    assert decide(members, desired) == expected


def test_small_ensembles_roll_by_surge() -> None:
    # one member: add a new one, join it, remove the stale one (even though it leads)
    d = want(1)
    assert decide([leader(1, config_hash=OLD)], d) == AddMember(2)
    assert decide([leader(1, config_hash=OLD), joiner(2)], d) == ReconfigIn(2)
    assert decide([leader(1, config_hash=OLD), mem(2)], d) == ReconfigOut(1, RemoveReason.SCALE_DOWN)
    assert decide([leader(1, config_hash=OLD, in_config=False), leader(2)], d) == StopMember(
        1, False, StopReason.NOT_A_MEMBER
    )
    assert decide([leader(2)], d, next_id=3) == Done()
    # two members: the same, one stale member at a time
    d2 = want(2)
    assert decide([mem(1, config_hash=OLD), leader(2, config_hash=OLD)], d2) == AddMember(3)
    assert decide([mem(1, config_hash=OLD), leader(2, config_hash=OLD), mem(3)], d2) == ReconfigOut(
        1, RemoveReason.SCALE_DOWN
    )
    # a removed stale member is never taken back as the surge joiner
    assert decide([mem(1, in_config=False, config_hash=OLD), leader(2, config_hash=OLD), mem(3)], d2) == StopMember(
        1, False, StopReason.NOT_A_MEMBER
    )
    # a restart request on a single member
    d3 = want(1, restart_requested_at=iso(NOW - 30))
    assert decide([leader(1, started_at=NOW - 60)], d3) == AddMember(2)
    assert decide([leader(1, started_at=NOW - 60), joiner(2, started_at=NOW - 10)], d3) == ReconfigIn(2)
    # with a member unready there is no surge: wait (or, with quorum lost, report it)
    assert decide([mem(1, config_hash=OLD), booting(2)], d2) == Degraded(DegradedReason.QUORUM_LOST)


@pytest.mark.parametrize(
    "members",
    [
        three(),
        [mem(1, started_at=NOW - 5), leader(2)],
    ],
)
def test_done(members: list[ObservedMember]) -> None:
    assert decide(members, want(len([m for m in members if m.in_config]))) == Done()


# --------------------------------------------------------------------------- properties over random members

ROLES: st.SearchStrategy[Role] = st.sampled_from(["leader", "follower", "observer", "unknown"])


@st.composite
def member_sets(draw: st.DrawFn) -> list[ObservedMember]:
    ids = draw(st.lists(st.integers(1, 12), unique=True, max_size=8))
    out = []
    for i in ids:
        running = draw(st.booleans())
        out.append(
            ObservedMember(
                id=i,
                in_config=draw(st.booleans()),
                process_running=running,
                paused=draw(st.booleans()) if running else False,
                serving=draw(st.booleans()),
                role=draw(ROLES),
                syncing=draw(st.sampled_from([False, False, True])),
                data_present=draw(st.sampled_from([True, True, False])),
                config_hash=draw(st.sampled_from([HASH, HASH, OLD, None])),
                unresponsive_since=draw(st.none() | st.floats(NOW - 3 * GRACE, NOW)),
                started_at=draw(st.none() | st.floats(NOW - 200, NOW)),
            )
        )
    return out


desireds = st.builds(
    Desired,
    replicas=st.integers(1, 7),
    config_hash=st.just(HASH),
    paused=st.just(False),
    deleting=st.just(False),
    restart_requested_at=st.none() | st.sampled_from([iso(NOW - 100), iso(NOW - 50), "junk"]),
    restarted_at=st.none() | st.sampled_from([iso(NOW - 100), iso(NOW - 70)]),
    reclaim_policy=st.sampled_from(["Retain", "Delete"]),
)


def run_plan(members: list[ObservedMember], desired: Desired, bump: int) -> tuple[Action, int]:
    next_id = max((m.id for m in members), default=0) + 1 + bump
    return plan(members, desired, next_id=next_id, now=NOW, unresponsive_grace=GRACE), next_id


def predicted(members: list[ObservedMember], action: Action) -> list[ObservedMember]:
    """The members right after ``action``, pessimistically (a restarted member is down)."""

    def change(target: int, **kw: Any) -> list[ObservedMember]:
        return [dataclasses.replace(m, **kw) if m.id == target else m for m in members]

    match action:
        case RestartMember(id=i):
            return change(i, serving=False)
        case StopMember(id=i):
            return change(i, process_running=False, serving=False)
        case ReconfigOut(id=i):
            return change(i, in_config=False)
        case ReconfigIn(id=i):
            return change(i, in_config=True)
        case _:
            return members


def unresponsive(m: ObservedMember) -> bool:
    return (
        m.process_running and not m.ready and m.unresponsive_since is not None and NOW - m.unresponsive_since >= GRACE
    )


CHANGES = (ReconfigIn, ReconfigOut, RestartMember, AddMember, CreateMembers)


@settings(max_examples=400, deadline=None)
@given(member_sets(), desireds, st.integers(0, 3))
def test_properties_of_any_decision(members: list[ObservedMember], desired: Desired, bump: int) -> None:
    action, next_id = run_plan(members, desired, bump)
    participants = [m for m in members if m.in_config]
    ids = {m.id for m in members}
    by_id = {m.id: m for m in members}

    # quorum kept by every action, in the worst case
    if has_quorum(members):
        assert has_quorum(predicted(members, action)), action
    # no destructive action without quorum: only starting members that have data
    if participants and not has_quorum(members):
        assert isinstance(action, StartMember | Degraded), action
    # nothing changes membership or restarts while anyone syncs
    if any(m.is_syncing and not unresponsive(m) for m in members):
        assert not isinstance(action, CHANGES), action
    # stopping is only for non-members (outside deletion)
    if isinstance(action, StopMember):
        assert not by_id[action.id].in_config
        # running non-members go before stopped ones; the one kept running is the joiner
        if not by_id[action.id].process_running:
            assert sum(1 for m in members if m.process_running and not m.in_config) <= 1
        assert action.purge is (desired.reclaim_policy == "Delete")
    # starting is only for dead participants with their data
    if isinstance(action, StartMember):
        m = by_id[action.id]
        assert m.in_config and not m.process_running and m.data_present
    # ids are new: at least next_id, never an existing one, within ZooKeeper's range
    if isinstance(action, AddMember):
        assert action.id >= next_id and action.id not in ids and action.id <= MAX_MEMBER_ID
    if isinstance(action, CreateMembers):
        assert len(action.ids) == desired.replicas and not participants
        assert all(i >= next_id and i not in ids for i in action.ids)
    # a joiner is added only when it serves, is synced and current
    if isinstance(action, ReconfigIn):
        m = by_id[action.id]
        assert not m.in_config and m.ready and not m.syncing and m.data_present
        assert restart_reason(m, desired) is None
        assert len(participants) <= desired.replicas
    if isinstance(action, ReconfigOut):
        assert by_id[action.id].in_config and len(participants) >= 2
    # a restart only when every other participant serves
    if isinstance(action, RestartMember):
        assert all(m.ready for m in participants if m.id != action.id)
        assert restart_reason(by_id[action.id], desired) is not None
    if isinstance(action, Done):
        assert len(participants) == desired.replicas and all(m.ready for m in participants)
        assert all(m.in_config for m in members)  # non-members, running or not, are forgotten


@settings(max_examples=150, deadline=None)
@given(member_sets(), desireds, st.booleans())
def test_paused_yields_no_action(members: list[ObservedMember], desired: Desired, deleting: bool) -> None:
    d = dataclasses.replace(desired, paused=True, deleting=deleting)
    assert run_plan(members, d, 0)[0] == Wait(WaitReason.PAUSED)


@settings(max_examples=200, deadline=None)
@given(member_sets())
def test_roll_order_puts_unready_first_and_the_leader_last(members: list[ObservedMember]) -> None:
    order = roll_order(members)
    assert sorted(order) == sorted(m.id for m in members)
    readiness = [next(m for m in members if m.id == i).ready for i in order]
    assert readiness == sorted(readiness)  # every unready member before every ready one
    leaders = [m.id for m in members if m.is_leader]
    if leaders:
        assert order[-len(leaders) :] == sorted(leaders)
    followers = [i for i in order if i not in leaders and next(m for m in members if m.id == i).ready]
    assert followers == sorted(followers)


@settings(max_examples=200, deadline=None)
@given(member_sets())
def test_scale_down_victim_spares_the_leader_and_prefers_unready(members: list[ObservedMember]) -> None:
    victim = choose_scale_down_victim(members)
    participants = [m for m in members if m.in_config]
    if len(participants) < 2:
        assert victim is None
        return
    chosen = next(m for m in participants if m.id == victim)
    if any(not m.ready for m in participants):
        assert not chosen.ready
    if any(m.ready and not m.is_leader for m in participants):
        assert not chosen.is_leader


# --------------------------------------------------------------------------- a fake world, to converge in

DT = 5.0
BOOT = 2  # ticks a started process needs before it can serve


@dataclasses.dataclass
class SimMember:
    id: int
    in_config: bool
    running: bool
    hung: bool = False  # running but never serving (a SIGSTOP, a wedged JVM) until restarted
    data: bool = True
    hash: str | None = HASH
    started_at: float = NOW - 1000
    boot: int = 0
    serving: bool = False
    syncing: bool = False
    role: str = "unknown"
    unresponsive_since: float | None = None


class World:
    def __init__(self, members: list[SimMember], desired: Desired, next_id: int) -> None:
        self.members = {m.id: m for m in members}
        self.desired = desired
        self.next_id = next_id
        self.now = NOW
        self.settle(first=True)

    def participants(self) -> list[SimMember]:
        return [m for m in self.members.values() if m.in_config]

    def quorate(self) -> bool:
        p = self.participants()
        return bool(p) and sum(m.serving for m in p) >= majority(len(p))

    def observe(self) -> list[ObservedMember]:
        return [
            ObservedMember(
                id=m.id,
                in_config=m.in_config,
                process_running=m.running,
                paused=m.hung,
                serving=m.serving,
                role=m.role,  # type: ignore[arg-type]
                syncing=m.syncing,
                data_present=m.data,
                config_hash=m.hash if m.running else None,
                unresponsive_since=m.unresponsive_since,
                started_at=m.started_at if m.running else None,
            )
            for m in sorted(self.members.values(), key=lambda m: m.id)
        ]

    def start(self, m: SimMember) -> None:
        m.running, m.hung, m.boot, m.serving, m.syncing = True, False, BOOT, False, False
        m.hash, m.started_at, m.role = self.desired.config_hash, self.now, "unknown"

    def apply(self, action: Action) -> None:
        match action:
            case CreateMembers(ids=ids):
                for i in ids:
                    assert i not in self.members
                    self.members[i] = SimMember(i, in_config=True, running=True)
                    self.start(self.members[i])
                self.next_id = max(self.next_id, max(ids) + 1)
            case StartMember(id=i):
                m = self.members[i]
                assert m.in_config and not m.running and m.data, "started without data"
                self.start(m)
            case AddMember(id=i):
                assert i not in self.members and i >= self.next_id, "id reused"
                self.members[i] = SimMember(i, in_config=False, running=True)
                self.start(self.members[i])
                self.next_id = i + 1
            case ReconfigIn(id=i):
                m = self.members[i]
                assert not m.in_config and m.serving and not m.syncing
                m.in_config = True
            case ReconfigOut(id=i):
                m = self.members[i]
                assert m.in_config
                m.in_config = False
                m.role = "follower" if m.serving else "unknown"
            case StopMember(id=i, purge=purge):
                m = self.members[i]
                assert self.desired.deleting or not m.in_config, "stopped a participant"
                m.running, m.hung, m.serving, m.syncing, m.role = False, False, False, False, "unknown"
                # The platform forgets a stopped non-member (Retain moves its data aside).
                if purge or not self.desired.deleting:
                    del self.members[i]
            case RestartMember(id=i):
                assert self.members[i].in_config
                self.start(self.members[i])
            case Wait() | Degraded() | Done():
                pass

    def settle(self, first: bool = False) -> None:
        """One tick: processes boot, a quorum (if any) elects a leader and serves."""
        if not first:
            self.now += DT
        for m in self.members.values():
            if m.running and not m.hung and m.boot > 0:
                m.boot -= 1
            if not m.running:
                m.serving = False
        alive = [m for m in self.participants() if m.running and not m.hung and m.boot == 0]
        quorate = len(alive) >= majority(len(self.participants())) and bool(self.participants())
        for m in self.members.values():
            was = m.serving
            m.serving = quorate and m.running and not m.hung and m.boot == 0
            if not first:
                m.syncing = m.serving and not was  # a member that just joined syncs for a tick
            if m.role == "leader" and not (m.serving and m.in_config):
                m.role = "unknown"
        if quorate and not any(m.role == "leader" and m.serving for m in self.participants()):
            new_leader = max(m.id for m in alive)
            self.members[new_leader].role = "leader"
        for m in self.members.values():
            if m.serving and m.role == "unknown":
                m.role = "follower"
            if not m.serving:
                m.role = "unknown"
            if m.running and not m.serving:
                if m.unresponsive_since is None:
                    m.unresponsive_since = self.now
            else:
                m.unresponsive_since = None

    def step(self) -> Action:
        action = plan(self.observe(), self.desired, next_id=self.next_id, now=self.now, unresponsive_grace=GRACE)
        self.apply(action)
        self.settle()
        return action

    def converged(self) -> bool:
        p = self.participants()
        requested = restart_pending(self.desired)
        return (
            len(p) == self.desired.replicas
            and all(m.serving and m.hash == self.desired.config_hash and m.data for m in p)
            and not any(m.running and not m.in_config for m in self.members.values())
            and (not requested or all(m.started_at >= T0 for m in p))
        )


T0 = NOW - 50  # when a restart was requested, in worlds that have one
KINDS_BAD = ["dead", "dead_no_data", "hung", "booting"]
KINDS_GOOD = ["ok", "ok", "ok", "stale", "old_start", "no_data_serving", "syncing"]
KINDS_OUT = ["joiner", "joiner_booting", "stale", "hung", "retained", "no_data"]


def sim_member(i: int, kind: str, in_config: bool) -> SimMember:
    m = SimMember(i, in_config=in_config, running=True, started_at=T0 + 10)
    if kind == "dead":
        m.running = False
    elif kind == "dead_no_data":
        m.running, m.data = False, False
    elif kind == "hung":
        m.hung, m.unresponsive_since = True, NOW - 30
    elif kind == "booting":
        m.boot = BOOT
    elif kind == "stale":
        m.hash = OLD
    elif kind == "old_start":
        m.started_at = T0 - 10
    elif kind in ("no_data_serving", "no_data"):
        m.data = False
    elif kind == "syncing":
        m.syncing = True
    elif kind == "joiner_booting":
        m.boot = BOOT
    elif kind == "retained":
        m.running = False
    return m


@st.composite
def worlds(draw: st.DrawFn, quorate: bool = True, same_size: bool = False) -> World:
    n = draw(st.integers(1, 6))
    bad = draw(st.integers(0, n - majority(n))) if quorate else draw(st.integers(0, n))
    kinds = [draw(st.sampled_from(KINDS_BAD)) for _ in range(bad)]
    kinds += [draw(st.sampled_from(KINDS_GOOD)) for _ in range(n - bad)]
    kinds = draw(st.permutations(kinds))
    outsiders = draw(st.lists(st.sampled_from(KINDS_OUT), max_size=2))
    ids = draw(st.lists(st.integers(1, 30), min_size=n + len(outsiders), max_size=n + len(outsiders), unique=True))
    members = [sim_member(i, k, True) for i, k in zip(ids, kinds, strict=False)]
    members += [sim_member(i, k, False) for i, k in zip(ids[n:], outsiders, strict=True)]
    desired = Desired(
        replicas=n if same_size else draw(st.integers(1, 7)),
        config_hash=HASH,
        restart_requested_at=draw(st.sampled_from([None, iso(T0)])),
        reclaim_policy=draw(st.sampled_from(["Retain", "Delete"])),
    )
    world = World(members, desired, next_id=max(ids) + 1 + draw(st.integers(0, 3)))
    return world


MAX_STEPS = 300


@settings(max_examples=250, deadline=None)
@given(worlds())
def test_converges_from_any_quorate_state_without_losing_quorum(world: World) -> None:
    converge(world)


@settings(max_examples=150, deadline=None)
@given(worlds(same_size=True))
def test_heals_and_rolls_in_place_without_losing_quorum(world: World) -> None:
    """No scaling asked for: only healing, replacement and rolling (surge for 1-2 members)."""
    converge(world)


@settings(max_examples=150, deadline=None)
@given(worlds(), st.integers(0, 12), st.integers(1, 7), st.sampled_from([HASH, "h-next"]))
def test_converges_when_the_spec_changes_midway(world: World, at: int, replicas: int, config_hash: str) -> None:
    trail: list[Action] = []
    for _ in range(at):
        trail.append(world.step())
        assert world.quorate(), trail
    world.desired = dataclasses.replace(world.desired, replicas=replicas, config_hash=config_hash)
    converge(world)


def converge(world: World) -> None:
    assert world.quorate()
    trail: list[Action] = []
    for _ in range(MAX_STEPS):
        action = world.step()
        trail.append(action)
        assert not isinstance(action, Degraded), trail
        assert world.quorate(), trail
        if isinstance(action, Done):
            break
    else:
        pytest.fail(f"no convergence after {MAX_STEPS} steps: {trail[-10:]}")
    assert world.converged(), trail


@settings(max_examples=100, deadline=None)
@given(worlds(quorate=False))
def test_without_quorum_the_world_is_only_ever_started(world: World) -> None:
    for _ in range(30):
        quorate_before = world.quorate()
        action = world.step()
        if not quorate_before and world.participants():
            assert isinstance(action, StartMember | Degraded)


@settings(max_examples=100, deadline=None)
@given(worlds(quorate=False), st.sampled_from(["Retain", "Delete"]))
def test_deletion_converges(world: World, policy: str) -> None:
    world.desired = dataclasses.replace(world.desired, deleting=True, reclaim_policy=policy)  # type: ignore[arg-type]
    for _ in range(MAX_STEPS):
        if isinstance(world.step(), Done):
            break
    else:
        pytest.fail("deletion did not finish")
    assert not any(m.running for m in world.members.values())
    if policy == "Delete":
        assert not any(m.data for m in world.members.values())


def test_a_slow_joiner_is_booting_not_unresponsive_but_a_paused_one_is() -> None:
    def decide_with(members: Sequence[ObservedMember]) -> Action:
        return plan(members, want(4), next_id=5, now=NOW, unresponsive_grace=5.0, startup_grace=60.0)

    slow = joiner(4, serving=False, role="unknown", started_at=NOW - 10, unresponsive_since=NOW - 10)
    assert decide_with([*three(), slow]) == Wait(WaitReason.JOINING)
    stale = joiner(4, serving=False, role="unknown", started_at=NOW - 100, unresponsive_since=NOW - 10)
    assert isinstance(decide_with([*three(), stale]), StopMember)
    paused = joiner(4, paused=True, serving=False, role="unknown", started_at=NOW - 10, unresponsive_since=NOW - 10)
    assert isinstance(decide_with([*three(), paused]), StopMember)
