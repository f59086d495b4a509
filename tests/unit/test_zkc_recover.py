"""Recovery from lost quorum: which survivor, whether it is allowed, the new membership."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkop.controllers.zookeepercluster.recover import (
    RecoveryPlan,
    Refusal,
    RefusalReason,
    SurvivorFacts,
    decide,
    rank,
)


def m(
    id: int,
    *,
    participant: bool = True,
    running: bool = False,
    serving: bool = False,
    data: bool = True,
    zxid: int | None = 0x100000010,
    epoch: int | None = None,
) -> SurvivorFacts:
    return SurvivorFacts(id, participant, running, serving, data, zxid if data else None, epoch)


def plan_of(result: RecoveryPlan | Refusal) -> RecoveryPlan:
    assert isinstance(result, RecoveryPlan), result
    return result


def refusal_of(result: RecoveryPlan | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


def test_the_one_survivor_of_three_is_rebuilt_from() -> None:
    p = plan_of(decide([m(1, running=True), m(2, data=False), m(3, data=False)]))
    assert p.survivor == 1 and p.survivor_zxid == 0x100000010
    assert p.membership == (1,) and p.forget == (2, 3) and p.stop == (1, 2, 3)
    assert not p.finish_only


def test_the_highest_zxid_wins() -> None:
    p = plan_of(decide([m(1, zxid=0x100000005), m(2, zxid=0x100000009), m(3, zxid=0x100000007)]))
    assert p.survivor == 2 and p.ranking == (2, 3, 1) and p.forget == (1, 3)


def test_a_later_epoch_beats_a_higher_counter() -> None:
    """zxid = epoch << 32 | counter: 0x2_00000001 (epoch 2) is newer than 0x1_ffffff00 (epoch 1)."""
    p = plan_of(decide([m(1, zxid=0x1FFFFFF00), m(2, zxid=0x200000001), m(3, data=False)]))
    assert p.survivor == 2


def test_ties_go_to_the_higher_current_epoch_then_the_lower_id() -> None:
    p = plan_of(decide([m(3, epoch=2), m(2, epoch=3), m(1, epoch=2), m(4, data=False), m(5, data=False)]))
    assert p.ranking == (2, 1, 3)
    p = plan_of(decide([m(3), m(2), m(4, data=False)]))
    assert p.survivor == 2


def test_refused_while_a_majority_serves() -> None:
    r = refusal_of(decide([m(1, running=True, serving=True), m(2, running=True, serving=True), m(3, data=False)]))
    assert r.reason is RefusalReason.QUORUM_HELD and "2 of 3" in r.message
    r = refusal_of(decide([m(1, running=True, serving=True)]))
    assert r.reason is RefusalReason.QUORUM_HELD


def test_quorum_counts_participants_only() -> None:
    """Two serving joiners outside the configuration do not make a quorum of three."""
    members = [
        m(1, running=True, serving=True),
        m(2, data=False),
        m(3, data=False),
        m(4, participant=False, running=True, serving=True, zxid=0x100000099),
        m(5, participant=False, running=True, serving=True),
    ]
    p = plan_of(decide(members))
    # ... and an outsider is never the survivor, whatever its zxid: it is not in the history's quorum.
    assert p.survivor == 1 and p.forget == (2, 3, 4, 5)


def test_refused_when_no_participant_has_data() -> None:
    r = refusal_of(decide([m(1, data=False), m(2, data=False), m(3, data=False)]))
    assert r.reason is RefusalReason.NO_SURVIVOR
    assert "member 1: data lost" in r.message
    r = refusal_of(decide([m(1, zxid=None), m(2, data=False), m(3, data=False)]))
    assert r.reason is RefusalReason.NO_SURVIVOR and "no readable" in r.message


def test_refused_without_members() -> None:
    assert refusal_of(decide([])).reason is RefusalReason.NO_MEMBERS


def test_an_unknown_configuration_counts_every_member() -> None:
    p = plan_of(decide([m(1, participant=False, zxid=5), m(2, participant=False, zxid=9), m(3, participant=False)]))
    assert p.survivor == 3
    up = {"participant": False, "running": True, "serving": True}
    r = refusal_of(decide([m(1, **up), m(2, **up), m(3, participant=False)]))  # type: ignore[arg-type]
    assert r.reason is RefusalReason.QUORUM_HELD


def test_interrupted_recovery_with_the_survivor_serving_alone_is_finished() -> None:
    members = [m(1, running=True, serving=True), m(2, participant=False, data=False), m(3, participant=False)]
    r = refusal_of(decide(members))
    assert r.reason is RefusalReason.QUORUM_HELD
    p = plan_of(decide(members, interrupted=True))
    assert p.finish_only and p.survivor == 1 and p.forget == (2, 3) and p.membership == (1,)


def test_interrupted_recovery_without_quorum_starts_over() -> None:
    p = plan_of(decide([m(1), m(2, data=False), m(3, data=False)], interrupted=True))
    assert not p.finish_only and p.survivor == 1


def test_duplicate_ids_are_a_bug() -> None:
    with pytest.raises(ValueError):
        decide([m(1), m(1)])


facts = st.builds(
    SurvivorFacts,
    id=st.integers(1, 30),
    participant=st.booleans(),
    running=st.booleans(),
    serving=st.booleans(),
    data_present=st.booleans(),
    last_zxid=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    current_epoch=st.one_of(st.none(), st.integers(0, 2**31)),
)


@given(st.lists(facts, max_size=9, unique_by=lambda f: f.id), st.booleans())
def test_properties(members: list[SurvivorFacts], interrupted: bool) -> None:
    result = decide(members, interrupted=interrupted)
    known = any(f.participant for f in members)
    participants = [f for f in members if f.participant or not known]
    serving = sum(1 for f in participants if f.serving)
    if isinstance(result, Refusal):
        return
    # Never while quorum holds (except finishing a recovery whose survivor serves alone).
    if result.finish_only:
        assert interrupted and len(participants) == 1 and participants[0].serving
    else:
        assert serving < len(participants) // 2 + 1
        best = next(f for f in members if f.id == result.survivor)
        as_participant = dataclasses.replace(best, participant=True)
        assert as_participant.eligible
        # No eligible member has a higher zxid.
        eligible = [dataclasses.replace(f, participant=f.participant or not known) for f in members]
        assert all((f.last_zxid or 0) <= result.survivor_zxid for f in eligible if f.eligible)
        assert rank(eligible)[0].id == result.survivor
    # Every other member is forgotten, the survivor never is; the new configuration is the survivor.
    assert set(result.forget) == {f.id for f in members} - {result.survivor}
    assert result.membership == (result.survivor,)
