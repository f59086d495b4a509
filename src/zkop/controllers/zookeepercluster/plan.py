"""What to do next to a ZooKeeper ensemble, as a pure function of what was observed.

:func:`plan` takes the members the controller observed, the desired state and the
clock, and returns exactly one :data:`Action`. The controller applies it, observes
again and asks again (level-triggered): nothing here remembers anything, and no
function does I/O.

The rules, in the order :func:`plan` applies them ("quorum first"):

1. **Paused**: ``Wait("paused")``; nothing is changed, not even deletion.
2. **Deleting**: stop the members one at a time (non-members first, the leader
   last), purging their data when the reclaim policy is ``Delete``; then purge the
   data of members already stopped; then ``Done``.
3. **Bootstrap**: with no member listed in the configuration, stop stray processes,
   then ``CreateMembers`` with fresh ids, all at once.
4. **Quorum lost** (fewer than ``majority(N)`` of the ``N`` participants serve):
   the only action is ``StartMember`` of a dead participant that still has its
   data; otherwise, while enough members to make a majority serve or are
   electing (a process started less than ``startup_grace`` seconds ago, or one
   that stopped serving less than ``election_grace`` seconds ago: a leader
   election after the leader went), ``Wait("unready")``; otherwise
   ``Degraded("QuorumLost")``. No reconfiguration,
   stop, restart or replacement happens without quorum.
5. **Heal**: ``StartMember`` for a participant whose process died but whose data
   is intact.
6. **Strays**: ``StopMember`` for members that are not in the configuration and
   are not the one member being added (left over from a removal, a failed or stale
   joiner, a second joiner), running ones first; stopped ones are forgotten too, their
   data kept or purged by the reclaim policy.
7. **Syncing**: while any member is syncing, ``Wait("syncing")``; nothing below
   runs. (A member unresponsive beyond the grace period does not count: a sync that
   never ends must not block its own replacement.)
8. **Join**: a joiner that serves and is not syncing is added as a participant
   (``ReconfigIn``).
9. **Replace**: a participant whose data is gone, or which has been unresponsive
   (running but not serving) for ``unresponsive_grace`` seconds -- and, unless it cannot
   answer at all (paused), was started more than ``startup_grace`` seconds ago -- is removed from
   the configuration (``ReconfigOut``); step 6 then stops it and step 10 adds a
   member with a new id. There is no separate "replace" action: each step is
   observed before the next is taken, so a replacement interrupted anywhere is
   simply continued.
10. **Scale up**: one member at a time: ``AddMember`` with a new id (never reused),
    then wait for it to serve and sync, then step 8.
11. **Scale down**: one member at a time: ``ReconfigOut`` of the victim chosen by
    :func:`choose_scale_down_victim`, then step 6 stops it.
12. **Roll**: participants started with an old configuration, or before a restart
    request, are restarted one at a time in :func:`roll_order` (unready first,
    followers by id, the leader last), only when every other participant serves.
13. ``Wait("unready")`` while a participant does not serve, else ``Done``.

Every membership change and restart keeps a majority of the resulting
configuration serving. An ensemble of one or two members cannot restart (or, with
one, remove) a serving member in place without losing quorum; such a cluster is
rolled by *surge*: one member with a new id is added first, then the stale one is
removed as an ordinary scale-down (which prefers stale members).

Member ids are never reused: new ids are ``>= next_id`` and above every observed
id, and never above :data:`MAX_MEMBER_ID` (ZooKeeper's limit) -- when they run out
the plan reports ``Degraded("MemberIdsExhausted")``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, TypeAlias

from zkop.zk.quorum import majority

__all__ = [
    "MAX_MEMBER_ID",
    "Action",
    "AddMember",
    "CreateMembers",
    "Degraded",
    "DegradedReason",
    "Desired",
    "Done",
    "ObservedMember",
    "Quorum",
    "ReclaimPolicy",
    "ReconfigIn",
    "ReconfigOut",
    "RemoveReason",
    "RestartMember",
    "RestartReason",
    "Role",
    "StartMember",
    "StopMember",
    "StopReason",
    "Wait",
    "WaitReason",
    "can_lose_one",
    "choose_scale_down_victim",
    "has_quorum",
    "majority",
    "plan",
    "quorum",
    "restart_pending",
    "restart_reason",
    "roll_order",
]

#: Largest ZooKeeper server id (``myid``): 1-255, and below 255 when extended types
#: (TTL nodes) are enabled, so zkop stays at 254 or below.
MAX_MEMBER_ID = 254

Role: TypeAlias = Literal["leader", "follower", "observer", "unknown"]
ReclaimPolicy: TypeAlias = Literal["Retain", "Delete"]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ObservedMember:
    """One ensemble member as observed now.

    ``in_config``: listed as a participant in the ensemble's committed dynamic
    configuration (read from the members' dynamic files when none answers).
    ``serving``: answers clients as part of a quorum. ``syncing``: its peer state is
    not yet broadcast, or (leader) it has learners still syncing.
    ``data_present``: its data directory (with ``myid``) is intact.
    ``config_hash``: hash of the rendered configuration the process was started
    with (``None``: unknown, treated as stale). ``unresponsive_since``: when the
    controller first saw it running but not serving (``None`` while it serves).
    ``started_at``: when its process started (seconds since the epoch); needed for
    restart requests to take effect (``None``: unknown, not restarted for them).
    ``certificate_expires``: when its TLS certificate ends (``None``: it has none).
    """

    id: int
    in_config: bool
    process_running: bool
    paused: bool
    serving: bool
    role: Role
    syncing: bool
    data_present: bool
    config_hash: str | None
    unresponsive_since: float | None
    started_at: float | None = None
    certificate_expires: float | None = None

    @property
    def ready(self) -> bool:
        """Running, not paused and serving clients."""
        return self.process_running and self.serving and not self.paused

    @property
    def is_leader(self) -> bool:
        """The leader of a working ensemble (a non-serving "leader" is a stale report)."""
        return self.ready and self.role == "leader"

    @property
    def is_syncing(self) -> bool:
        """Syncing, as reported by a running process."""
        return self.process_running and self.syncing


@dataclass(frozen=True)
class Desired:
    """What the ``ZookeeperCluster`` asks for.

    ``restart_requested_at`` / ``restarted_at``: ISO 8601 timestamps (naive ones are
    UTC) of the last restart request and of the last completed rolling restart. A
    request is pending while it is later than ``restarted_at``; the controller sets
    ``restarted_at`` to the request once :func:`plan` returns :class:`Done`.
    """

    replicas: int
    config_hash: str
    paused: bool = False
    deleting: bool = False
    restart_requested_at: str | None = None
    restarted_at: str | None = None
    reclaim_policy: ReclaimPolicy = "Retain"
    # A member whose certificate ends within this many seconds is restarted (it gets a new one).
    renew_certificates_before: float | None = None


# --------------------------------------------------------------------------- actions


class WaitReason(StrEnum):
    PAUSED = "paused"
    SYNCING = "syncing"
    JOINING = "joining"
    UNREADY = "unready"
    UNSAFE = "unsafe"


class DegradedReason(StrEnum):
    QUORUM_LOST = "QuorumLost"
    MEMBER_IDS_EXHAUSTED = "MemberIdsExhausted"


class RemoveReason(StrEnum):
    SCALE_DOWN = "ScaleDown"
    DATA_LOST = "DataLost"
    UNRESPONSIVE = "Unresponsive"


class StopReason(StrEnum):
    DELETING = "Deleting"
    NOT_A_MEMBER = "NotAMember"


class RestartReason(StrEnum):
    CONFIG_CHANGED = "ConfigChanged"
    RESTART_REQUESTED = "RestartRequested"
    CERTIFICATE_EXPIRING = "CertificateExpiring"


# ``detail`` is a sentence for events and logs; it takes no part in equality.


@dataclass(frozen=True)
class CreateMembers:
    """Bootstrap a new ensemble: start all these members at once, each listed in the
    initial configuration."""

    ids: tuple[int, ...]
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class StartMember:
    """Start the dead process of a participant, with its id and its data."""

    id: int
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class AddMember:
    """Start a new member with this (never used) id, not yet in the configuration."""

    id: int
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class ReconfigIn:
    """Add a serving, synced member to the configuration as a participant."""

    id: int
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class ReconfigOut:
    """Remove a participant from the configuration (its process is stopped later)."""

    id: int
    reason: RemoveReason
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class StopMember:
    """Stop a member that is not (or no longer needs to be) in the configuration;
    ``purge`` also deletes its data."""

    id: int
    purge: bool
    reason: StopReason
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class RestartMember:
    """Restart one participant with the current configuration, keeping its data."""

    id: int
    reason: RestartReason
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class Wait:
    """Nothing may be done now; observe again later."""

    reason: WaitReason
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class Degraded:
    """Nothing safe can be done; report the condition and observe again later."""

    reason: DegradedReason
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class Done:
    """The ensemble is as desired."""

    detail: str = field(default="", compare=False)


Action: TypeAlias = (
    CreateMembers
    | StartMember
    | AddMember
    | ReconfigIn
    | ReconfigOut
    | StopMember
    | RestartMember
    | Wait
    | Degraded
    | Done
)


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Quorum:
    """How the participants of an ensemble stand."""

    participants: int
    serving: int

    @property
    def majority(self) -> int:
        return majority(self.participants)

    @property
    def has_quorum(self) -> bool:
        return self.participants > 0 and self.serving >= self.majority

    @property
    def spare(self) -> int:
        """Serving participants that may be lost while keeping quorum (negative: lost)."""
        return self.serving - self.majority


def quorum(members: Iterable[ObservedMember]) -> Quorum:
    """The quorum state of the participants (members ``in_config``) among ``members``."""
    participants = [m for m in members if m.in_config]
    return Quorum(participants=len(participants), serving=sum(1 for m in participants if m.ready))


def has_quorum(members: Iterable[ObservedMember]) -> bool:
    """Whether a majority of the participants serve."""
    return quorum(members).has_quorum


def can_lose_one(members: Iterable[ObservedMember]) -> bool:
    """Whether one serving participant may stop (the configuration unchanged) and a
    majority still serve."""
    return quorum(members).spare >= 1


def roll_order(members: Iterable[ObservedMember]) -> list[int]:
    """The order to restart ``members`` in: unready ones first, then the followers by
    ascending id, the leader last."""
    return [m.id for m in sorted(members, key=lambda m: (m.ready, m.is_leader, m.id))]


def choose_scale_down_victim(members: Iterable[ObservedMember], *, stale: Collection[int] = ()) -> int | None:
    """The participant to remove first when scaling down, or ``None`` when fewer than
    two participants remain (a configuration cannot be empty).

    Preference, in order: members that do not serve; members whose data is lost;
    members in ``stale`` (they would need a restart anyway -- this ranks above
    sparing the leader, so a surge roll removes the stale leader rather than the
    fresh member just added); followers before the leader; the highest id.
    """
    participants = [m for m in members if m.in_config]
    if len(participants) < 2:
        return None
    return min(participants, key=lambda m: (m.ready, m.data_present, m.id not in stale, m.is_leader, -m.id)).id


def _epoch(timestamp: str | None) -> float | None:
    if timestamp is None:
        return None
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _pending_restart(desired: Desired) -> float | None:
    requested = _epoch(desired.restart_requested_at)
    if requested is None:
        return None
    done = _epoch(desired.restarted_at)
    if done is not None and done >= requested:
        return None
    return requested


def restart_pending(desired: Desired) -> bool:
    """Whether a restart was requested after the last completed rolling restart.
    (An unparseable ``restart_requested_at`` requests nothing; the API validates it.)"""
    return _pending_restart(desired) is not None


def restart_reason(member: ObservedMember, desired: Desired, now: float | None = None) -> RestartReason | None:
    """Why ``member`` must be restarted to be current, or ``None`` if it is current. With ``now``,
    a certificate that ends within ``desired.renew_certificates_before`` asks for a restart too."""
    if member.config_hash != desired.config_hash:
        return RestartReason.CONFIG_CHANGED
    requested = _pending_restart(desired)
    if requested is not None and member.started_at is not None and member.started_at < requested:
        return RestartReason.RESTART_REQUESTED
    renew, ends = desired.renew_certificates_before, member.certificate_expires
    if now is not None and renew is not None and ends is not None and ends - now <= renew:
        return RestartReason.CERTIFICATE_EXPIRING
    return None


def _ids(members: Iterable[ObservedMember]) -> str:
    return ", ".join(str(m.id) for m in members)


def _without(members: Sequence[ObservedMember], member: ObservedMember) -> list[ObservedMember]:
    return [m for m in members if m.id != member.id]


def _removal_keeps_quorum(participants: Sequence[ObservedMember], member: ObservedMember) -> bool:
    """Whether removing ``member`` from the configuration leaves a majority of the
    resulting (non-empty) configuration serving."""
    rest = _without(participants, member)
    return bool(rest) and has_quorum(rest)


def _restart_keeps_quorum(participants: Sequence[ObservedMember], member: ObservedMember) -> bool:
    """Whether a majority of the (unchanged) configuration serves while ``member`` is down."""
    serving = sum(1 for m in participants if m.ready and m.id != member.id)
    return serving >= majority(len(participants))


def _validate(members: Sequence[ObservedMember], desired: Desired, next_id: int) -> None:
    ids = [m.id for m in members]
    if len(ids) != len(set(ids)):
        raise ValueError(f"member ids must be unique, got {sorted(ids)}")
    if any(i < 1 for i in ids):
        raise ValueError(f"member ids start at 1, got {sorted(ids)}")
    if desired.replicas < 1:
        raise ValueError(f"an ensemble needs at least 1 replica, got {desired.replicas}")
    if next_id < 1:
        raise ValueError(f"next_id starts at 1, got {next_id}")


# --------------------------------------------------------------------------- the plan


def plan(
    members: Sequence[ObservedMember],
    desired: Desired,
    *,
    next_id: int,
    now: float,
    unresponsive_grace: float,
    startup_grace: float = 0.0,
    election_grace: float = 0.0,
) -> Action:
    """The one next action for the ensemble ``members`` to become ``desired``.

    ``next_id`` is the lowest id never handed out (kept in status); new ids are also
    above every observed id. ``now``, ``unresponsive_since`` and ``started_at`` share one
    clock (seconds since the epoch).
    Raises ``ValueError`` only for inconsistent input (duplicate ids, replicas < 1).
    """
    _validate(members, desired, next_id)
    if desired.paused:
        return Wait(WaitReason.PAUSED, "spec.paused is true: observing only")
    purge = desired.reclaim_policy == "Delete"
    if desired.deleting:
        return _plan_delete(members, purge)

    new_id = max([next_id, *(m.id + 1 for m in members)])
    participants = [m for m in members if m.in_config]
    outsiders = sorted((m for m in members if not m.in_config), key=lambda m: m.id)

    # 3. Bootstrap.
    if not participants:
        strays = [m for m in outsiders if m.process_running]
        if strays:
            return StopMember(
                strays[0].id, purge, StopReason.NOT_A_MEMBER, f"member {strays[0].id} runs outside any ensemble"
            )
        ids = tuple(range(new_id, new_id + desired.replicas))
        if ids[-1] > MAX_MEMBER_ID:
            return _ids_exhausted(ids[-1])
        return CreateMembers(ids, f"bootstrapping {desired.replicas} member(s)")

    # 4./5. Quorum, and healing dead processes (allowed with or without quorum).
    q = quorum(participants)
    dead = sorted((m for m in participants if not m.process_running and m.data_present), key=lambda m: m.id)
    if not q.has_quorum:
        if dead:
            return StartMember(dead[0].id, f"quorum lost ({q.serving}/{q.majority}); starting member {dead[0].id}")
        electing = [m for m in participants if not m.ready and _electing(m, now, startup_grace, election_grace)]
        if electing and q.serving + len(electing) >= q.majority:
            return Wait(WaitReason.UNREADY, f"member(s) {_ids(electing)} electing a leader")
        return Degraded(
            DegradedReason.QUORUM_LOST,
            f"{q.serving} of {q.participants} participants serve, {q.majority} needed; "
            "no participant can be started with its data",
        )
    if dead:
        return StartMember(dead[0].id, f"member {dead[0].id} is not running")

    def unresponsive(m: ObservedMember) -> bool:
        # A process started within the start-up grace that does not serve yet is booting (a
        # slow JVM on a busy machine), unless it cannot answer at all (paused).
        booting = not m.paused and m.started_at is not None and now - m.started_at < startup_grace
        return (
            m.process_running
            and not m.ready
            and not booting
            and m.unresponsive_since is not None
            and now - m.unresponsive_since >= unresponsive_grace
        )

    n = len(participants)
    all_ready = all(m.ready for m in participants)
    stale = [m for m in participants if restart_reason(m, desired, now) is not None]
    # Every participant is running here unless its data is gone.
    doomed = sorted(
        (m for m in participants if not m.data_present or unresponsive(m)),
        key=lambda m: (m.ready, m.id),
    )
    if doomed:
        in_place_ok = _removal_keeps_quorum(participants, doomed[0])
    elif stale:
        in_place_ok = _restart_keeps_quorum(participants, _first(stale))
    else:
        in_place_ok = True
    surge = n == desired.replicas and all_ready and not in_place_ok
    want_joiner = n < desired.replicas or surge

    # 6. Strays: running non-participants other than the one wanted joiner.
    joiner = None
    if want_joiner:
        viable = [
            m
            for m in outsiders
            if m.process_running and m.data_present and not unresponsive(m) and restart_reason(m, desired, now) is None
        ]
        joiner = min(viable, key=lambda m: (not m.ready, -m.id), default=None)
    # A dead outsider (removed after its data was lost, a joiner that died) is forgotten too,
    # its data kept or purged by the reclaim policy: it never comes back under its old id.
    strays = [m for m in outsiders if m is not joiner]
    if strays:
        stray = min(strays, key=lambda m: (not m.process_running, m.id))
        state = "is running" if stray.process_running else "has stopped"
        return StopMember(stray.id, purge, StopReason.NOT_A_MEMBER, f"member {stray.id} {state} outside the ensemble")

    # 7. Nothing changes membership or restarts while anyone syncs. A member stuck
    # (not serving) beyond the grace period no longer counts: it is being replaced.
    syncing = [m for m in members if m.is_syncing and not unresponsive(m)]
    if syncing:
        return Wait(WaitReason.SYNCING, f"member(s) {_ids(syncing)} syncing")

    # 8. Join a ready member (it adds a serving participant: always keeps quorum).
    if joiner is not None and joiner.ready:
        return ReconfigIn(joiner.id, f"member {joiner.id} serves and is synced")

    # 9. Replace: remove first; scale-up (or surge) brings a new id in.
    if doomed:
        victim = doomed[0]
        reason = RemoveReason.DATA_LOST if not victim.data_present else RemoveReason.UNRESPONSIVE
        if in_place_ok:
            return ReconfigOut(victim.id, reason, f"replacing member {victim.id}: {reason}")
        if not want_joiner:
            return Wait(
                WaitReason.UNSAFE,
                f"removing member {victim.id} ({reason}) would lose quorum; waiting for the others to serve",
            )

    # 10. Scale up (or surge), one member at a time.
    if want_joiner:
        if joiner is not None:
            return Wait(WaitReason.JOINING, f"waiting for new member {joiner.id} to serve")
        if new_id > MAX_MEMBER_ID:
            return _ids_exhausted(new_id)
        why = "surge: adding a member before replacing one in place" if surge else f"scaling up to {desired.replicas}"
        return AddMember(new_id, why)

    # 11. Scale down, one member at a time.
    if n > desired.replicas:
        victim_id = choose_scale_down_victim(participants, stale={m.id for m in stale})
        victim = next(m for m in participants if m.id == victim_id)
        if _removal_keeps_quorum(participants, victim):
            return ReconfigOut(victim.id, RemoveReason.SCALE_DOWN, f"scaling down to {desired.replicas}")
        return Wait(WaitReason.UNSAFE, f"removing member {victim.id} would lose quorum")

    # 12. Roll, one member at a time, the leader last.
    if stale:
        target = _first(stale)
        others_unready = [m for m in participants if m.id != target.id and not m.ready]
        if others_unready:
            return Wait(
                WaitReason.UNREADY,
                f"member(s) {_ids(others_unready)} must serve before member {target.id} restarts",
            )
        if not _restart_keeps_quorum(participants, target):
            return Wait(WaitReason.UNSAFE, f"restarting member {target.id} would lose quorum")
        reason_ = restart_reason(target, desired, now)
        assert reason_ is not None
        return RestartMember(target.id, reason_, f"rolling restart: member {target.id} ({reason_})")

    unready = [m for m in participants if not m.ready]
    if unready:
        return Wait(WaitReason.UNREADY, f"member(s) {_ids(unready)} not serving yet")
    return Done(f"{n} member(s) serving, configuration current")


def _electing(m: ObservedMember, now: float, startup_grace: float, election_grace: float) -> bool:
    """A process that started, or stopped serving, so recently that it is electing, not lost."""
    if not m.process_running or m.paused or not m.data_present:
        return False
    booting = m.started_at is not None and now - m.started_at < startup_grace
    return booting or (m.unresponsive_since is not None and now - m.unresponsive_since < election_grace)


def _first(stale: Sequence[ObservedMember]) -> ObservedMember:
    first = roll_order(stale)[0]
    return next(m for m in stale if m.id == first)


def _ids_exhausted(wanted: int) -> Degraded:
    return Degraded(
        DegradedReason.MEMBER_IDS_EXHAUSTED,
        f"member id {wanted} is above ZooKeeper's limit of {MAX_MEMBER_ID}; ids are never reused",
    )


def _plan_delete(members: Sequence[ObservedMember], purge: bool) -> Action:
    running = [m for m in members if m.process_running]
    if running:
        victim = min(running, key=lambda m: (m.in_config, m.is_leader, -m.id))
        return StopMember(victim.id, purge, StopReason.DELETING, f"deleting: stopping member {victim.id}")
    if purge:
        kept = sorted(m.id for m in members if m.data_present)
        if kept:
            return StopMember(kept[0], True, StopReason.DELETING, f"deleting: purging the data of member {kept[0]}")
    return Done("deleted")
