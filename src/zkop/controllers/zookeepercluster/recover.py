"""Whether and how to rebuild a ZooKeeper ensemble that has lost quorum for good.

When a majority of an ensemble's participants lost their data (or their processes cannot
come back), the operator can do nothing safe: every membership change needs a quorum.
``zkop recover`` then rebuilds the ensemble from one survivor: stop every member, make the
survivor's configuration list only itself, start it (a quorum of one), forget the other
members (their data kept aside, their ids never reused), and let the operator add new
members with new ids. :func:`decide` is the pure part of that: which survivor, whether
recovery is allowed at all, and the new membership. It does no I/O.

The survivor is the participant with the highest zxid on disk: a zxid's high 32 bits are
the epoch of the leader that proposed it, so a whole-zxid comparison puts a later epoch
first, as ZooKeeper's own election does. Ties go to the higher ``currentEpoch``, then the
lower id (any of them has the same history up to that zxid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from zkop.controllers.zookeepercluster.plan import majority

__all__ = ["RecoveryPlan", "Refusal", "RefusalReason", "SurvivorFacts", "decide", "rank"]


@dataclass(frozen=True)
class SurvivorFacts:
    """One member of the ensemble as observed now (the record on the platform).

    ``participant``: listed as a participant in the committed configuration. ``serving``:
    answers clients as part of a quorum. ``data_present``: its data directory is intact
    (``myid``). ``last_zxid``: the highest zxid readable from its data directory (None:
    nothing readable). ``current_epoch``: the epoch it last acknowledged (None: unknown).
    """

    id: int
    participant: bool
    running: bool
    serving: bool
    data_present: bool
    last_zxid: int | None
    current_epoch: int | None = None

    @property
    def eligible(self) -> bool:
        """Whether the ensemble may be rebuilt from this member."""
        return self.participant and self.data_present and self.last_zxid is not None

    def why_not(self) -> str:
        """Why this member cannot be the survivor ('' when it can)."""
        if not self.participant:
            return "not a participant of the configuration"
        if not self.data_present:
            return "data lost"
        if self.last_zxid is None:
            return "no readable snapshot or transaction log"
        return ""


class RefusalReason(StrEnum):
    NO_MEMBERS = "NoMembers"
    QUORUM_HELD = "QuorumHeld"
    NO_SURVIVOR = "NoSurvivor"


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    message: str


@dataclass(frozen=True)
class RecoveryPlan:
    """Rebuild from ``survivor``: stop ``stop``, make ``membership`` the configuration, start the
    survivor, forget ``forget`` (data kept aside). With ``finish_only`` an earlier recovery
    already got the survivor serving alone; only forgetting and unpausing are left."""

    survivor: int
    survivor_zxid: int
    stop: tuple[int, ...]
    forget: tuple[int, ...]
    membership: tuple[int, ...]
    ranking: tuple[int, ...]  # eligible members, best first
    finish_only: bool = False


def rank(members: Sequence[SurvivorFacts]) -> list[SurvivorFacts]:
    """The eligible members, the one to rebuild from first."""
    eligible = [m for m in members if m.eligible]
    return sorted(
        eligible,
        key=lambda m: (-(m.last_zxid or 0), -(m.current_epoch if m.current_epoch is not None else -1), m.id),
    )


def decide(members: Sequence[SurvivorFacts], *, interrupted: bool = False) -> RecoveryPlan | Refusal:
    """Whether ``members`` (every member the platform has for the cluster) may be rebuilt
    from one survivor, and how.

    Refused when there are no members, while a majority of the configuration's participants
    serve (the operator handles that; nothing is lost), and when no participant has readable
    data. When the configuration is unknown (no participant listed), every member counts as
    one. ``interrupted``: an earlier recovery of this cluster did not finish; when its survivor
    already serves alone, what is left is forgetting the others and unpausing.
    """
    ids = [m.id for m in members]
    if len(ids) != len(set(ids)):
        raise ValueError(f"member ids must be unique, got {sorted(ids)}")
    if not members:
        return Refusal(RefusalReason.NO_MEMBERS, "the cluster has no members on this platform")
    if not any(m.participant for m in members):
        members = [SurvivorFacts(**{**m.__dict__, "participant": True}) for m in members]
    participants = [m for m in members if m.participant]
    serving = [m for m in participants if m.serving]
    if len(serving) >= majority(len(participants)):
        if interrupted and len(participants) == 1 and serving:
            alone = serving[0]
            others = tuple(sorted(m.id for m in members if m.id != alone.id))
            return RecoveryPlan(
                survivor=alone.id,
                survivor_zxid=alone.last_zxid or 0,
                stop=others,
                forget=others,
                membership=(alone.id,),
                ranking=(alone.id,),
                finish_only=True,
            )
        return Refusal(
            RefusalReason.QUORUM_HELD,
            f"the cluster has quorum ({len(serving)} of {len(participants)} participants serve, "
            f"{majority(len(participants))} needed); the operator heals it without recovery",
        )
    ranking = rank(members)
    if not ranking:
        return Refusal(
            RefusalReason.NO_SURVIVOR,
            "no participant has data to rebuild from ("
            + "; ".join(f"member {m.id}: {m.why_not()}" for m in sorted(participants, key=lambda m: m.id))
            + ")",
        )
    best = ranking[0]
    assert best.last_zxid is not None
    return RecoveryPlan(
        survivor=best.id,
        survivor_zxid=best.last_zxid,
        stop=tuple(sorted(ids)),
        forget=tuple(sorted(i for i in ids if i != best.id)),
        membership=(best.id,),
        ranking=tuple(m.id for m in ranking),
    )
