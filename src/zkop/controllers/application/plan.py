"""Pure decisions of the Application controller.

Nothing here does I/O: the reconciler observes instances, hands what it saw to these
functions, and acts on their answer. :func:`rollout` decides which instances to create and
which to stop, for a replica count and a rolling update that honours ``maxSurge`` /
``maxUnavailable`` and readiness. (Restarts, back-off, placement and phases are the
platform's job, a kubelet's on Kubernetes; the local platform does them itself.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# -- rolling update and replicas -----------------------------------------------------------


@dataclass(frozen=True)
class Inst:
    """What the planner needs to know about one existing instance."""

    name: str
    index: int  # creation order: higher is newer
    updated: bool  # runs the current template
    ready: bool  # passes its readiness probe (and runs)


@dataclass(frozen=True)
class Rollout:
    start: int  # new instances (current template) to create
    stop: tuple[str, ...]  # instances to stop and remove


def int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """An ``IntOrPercent`` as a count of instances (surge rounds up, unavailable down, as in Kubernetes)."""
    if isinstance(value, int):
        return value
    pct = float(value.rstrip("%")) / 100 * total
    return math.ceil(pct) if round_up else math.floor(pct)


def limits(desired: int, max_surge: int | str, max_unavailable: int | str) -> tuple[int, int]:
    """``(surge, unavailable)`` as counts; never both zero, so a rollout can always progress."""
    surge = int_or_percent(max_surge, desired, round_up=True)
    unavailable = int_or_percent(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _victims(insts: Sequence[Inst]) -> list[Inst]:
    """Stop order: not ready before ready, then the newest first."""
    return sorted(insts, key=lambda i: (i.ready, -i.index))


def rollout(insts: Sequence[Inst], desired: int, max_surge: int | str, max_unavailable: int | str) -> Rollout:
    """One step towards ``desired`` ready instances of the current template.

    Like a Kubernetes Deployment: while old instances exist, at most ``desired + maxSurge``
    instances exist, and ready instances are stopped only while at least
    ``desired - maxUnavailable`` stay ready. Instances that are not ready (starting,
    crash-looping, pending, failed) cost no availability, so old ones of those go first.
    Without old instances it is plain scaling: create the missing, stop the excess
    (unready and newest first).
    """
    surge, unavailable = limits(desired, max_surge, max_unavailable)
    updated = [i for i in insts if i.updated]
    old = [i for i in insts if not i.updated]
    if not old:
        if len(updated) > desired:
            return Rollout(0, tuple(i.name for i in _victims(updated)[: len(updated) - desired]))
        return Rollout(desired - len(updated), ())
    max_total = desired + surge
    min_ready = max(0, desired - unavailable)
    stop: list[str] = []
    ready = sum(1 for i in insts if i.ready)
    # More updated instances than wanted (the count went down mid-rollout): the excess goes,
    # within the availability budget.
    for inst in _victims(updated)[: max(0, len(updated) - desired)]:
        if not inst.ready:
            stop.append(inst.name)
        elif ready - 1 >= min_ready:
            stop.append(inst.name)
            ready -= 1
    for inst in _victims(old):
        if not inst.ready:
            stop.append(inst.name)
        elif ready - 1 >= min_ready:
            stop.append(inst.name)
            ready -= 1
    remaining = len(insts) - len(stop)
    kept_updated = len(updated) - sum(1 for i in updated if i.name in stop)
    start = max(0, min(desired - kept_updated, max_total - remaining))
    return Rollout(start, tuple(stop))
