"""Pure decisions of the Application controller: rollout steps and crash-loop backoff."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

BACKOFF_BASE = 1.0  # seconds; doubles per consecutive crash
BACKOFF_CAP = 60.0
STABLE_RUN = 30.0  # a run this long resets the crash count


@dataclass(frozen=True)
class Inst:
    name: str
    index: int
    updated: bool  # runs the current template
    ready: bool
    alive: bool  # running, or waiting to be restarted after a crash (it still counts)


@dataclass(frozen=True)
class Rollout:
    start: int  # new instances (current template) to create
    stop: tuple[str, ...]  # instances to stop and remove


def int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    pct = float(value.rstrip("%")) / 100 * total
    return math.ceil(pct) if round_up else math.floor(pct)


def crash_backoff(consecutive_crashes: int) -> float:
    """Seconds to wait before restarting after the n-th consecutive crash (1 s, 2 s, 4 s ... 60 s)."""
    if consecutive_crashes <= 0:
        return 0.0
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (consecutive_crashes - 1)))


def _victims(insts: Sequence[Inst]) -> list[Inst]:
    """Stop order: not ready before ready, then the newest first."""
    return sorted(insts, key=lambda i: (i.ready, -i.index))


def rollout(insts: Sequence[Inst], desired: int, max_surge: int | str, max_unavailable: int | str) -> Rollout:
    """One step towards ``desired`` instances of the current template.

    Like a Kubernetes Deployment: at most ``desired + maxSurge`` instances exist, and old
    ready instances are stopped only while at least ``desired - maxUnavailable`` stay ready.
    """
    surge = int_or_percent(max_surge, desired, round_up=True)
    unavailable = int_or_percent(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    updated = [i for i in insts if i.updated]
    old = [i for i in insts if not i.updated]
    if not old:
        if len(updated) > desired:
            return Rollout(0, tuple(i.name for i in _victims(updated)[: len(updated) - desired]))
        return Rollout(desired - len(updated), ())
    max_total = desired + surge
    min_ready = max(0, desired - unavailable)
    start = max(0, min(desired - len(updated), max_total - len(insts)))
    stop: list[str] = []
    ready = sum(1 for i in insts if i.ready)
    # Old instances that are not ready cost no availability: they go first, all of them.
    for inst in _victims(old):
        if not inst.ready:
            stop.append(inst.name)
        elif ready - 1 >= min_ready:
            stop.append(inst.name)
            ready -= 1
    # Never more old instances stopped than needed once the updated ones cover desired.
    excess_updated = max(0, len(updated) - desired)
    if excess_updated:
        stop += [i.name for i in _victims(updated)[:excess_updated]]
    return Rollout(start, tuple(stop))
