"""Pure decisions of the Application controller.

Nothing here does I/O: the reconciler observes instances, hands what it saw to these
functions, and acts on their answer. Each is small enough to be tested exhaustively:

- :func:`rollout`: which instances to create and which to stop, for a replica count and
  a rolling update that honours ``maxSurge`` / ``maxUnavailable`` and readiness;
- :func:`crash_backoff`: the crash-loop restart schedule (1 s, 2 s, 4 s ... 60 s);
- :func:`unschedulable`: whether an instance's requests fit the machine's free capacity;
- :func:`instance_phase`: the phase, reason and message a user sees for one instance.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from zkop.platform.base import Resources

BACKOFF_BASE = 1.0  # seconds; doubles per consecutive crash
BACKOFF_CAP = 60.0
STABLE_RUN = 30.0  # a run this long resets the crash count


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


# -- crash loop ----------------------------------------------------------------------------


def crash_backoff(consecutive_crashes: int) -> float:
    """Seconds to wait before restarting after the n-th consecutive crash (1 s, 2 s, 4 s ... 60 s)."""
    if consecutive_crashes <= 0:
        return 0.0
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(consecutive_crashes - 1, 16)))


def describe_exit(code: int | None) -> str:
    """``exit code 3``, ``killed by SIGKILL`` (negative codes, and 128+n as a shell reports it)."""
    if code is None:
        return "exit code unknown"
    sig = -code if code < 0 else code - 128 if 128 < code < 128 + 65 else None
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}" if code < 0 else f"exit code {code} ({name})"
    return f"exit code {code}"


# -- capacity ------------------------------------------------------------------------------


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f}Mi"


def unschedulable(request: Resources, committed: Resources, capacity: Resources) -> str | None:
    """Why an instance requesting ``request`` does not fit, or None when it does.

    ``committed`` is what the instances already placed on the machine request (of every
    application); ``capacity`` what the machine has. Requests are reservations, so an
    instance fits when the sum of requests stays within capacity, whatever is in use.
    """
    problems = []
    if request.cpu > 0 and committed.cpu + request.cpu > capacity.cpu + 1e-9:
        free = max(0.0, capacity.cpu - committed.cpu)
        problems.append(
            f"requests {request.cpu:g} CPU but {free:g} of the machine's {capacity.cpu:g} are free "
            f"({committed.cpu:g} requested by placed instances)"
        )
    if request.memory > 0 and committed.memory + request.memory > capacity.memory:
        free_mem = max(0, capacity.memory - committed.memory)
        problems.append(
            f"requests {_mib(request.memory)} memory but {_mib(free_mem)} of the machine's "
            f"{_mib(capacity.memory)} are free ({_mib(committed.memory)} requested by placed instances)"
        )
    return "; ".join(problems) or None


# -- what a user sees ----------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """One instance as observed in one reconcile."""

    running: bool
    ready: bool
    pending: str | None = None  # does not fit: never started
    start_error: tuple[str, str] | None = None  # (reason, message) of the last failed start
    crashes: int = 0  # consecutive
    last_exit: int | None = None
    last_run: float | None = None  # seconds the last run lasted
    last_reason: str | None = None  # why the last run ended, e.g. LivenessProbeFailed
    backoff: float = 0.0  # the current back-off between starts (constant until the next crash)
    log_tail: tuple[str, ...] = ()


def instance_phase(obs: Observed) -> tuple[str, str | None, str | None]:
    """``(phase, reason, message)``: Pending, Failed, CrashLoopBackOff, Restarting, Starting,
    NotReady or Running."""
    if obs.pending is not None:
        return "Pending", "InsufficientResources", obs.pending
    if obs.running:
        return ("Running", None, None) if obs.ready else ("NotReady", "ReadinessProbe", "not ready yet")
    if obs.start_error is not None:
        reason, message = obs.start_error
        retry = f"; retrying with a {obs.backoff:.0f}s back-off" if obs.backoff > 0 else ""
        return "Failed", reason, message + retry
    if obs.crashes == 0:
        return "Starting", None, None
    ran = f" after {obs.last_run:.1f}s" if obs.last_run is not None else ""
    why = f" ({obs.last_reason})" if obs.last_reason else ""
    tail = " | ".join(line.strip() for line in obs.log_tail if line.strip())
    message = f"{describe_exit(obs.last_exit)}{ran}{why}; back-off {obs.backoff:.0f}s"
    if tail:
        message += f"; last log lines: {tail}"
    message = message[:900]
    if obs.crashes > 1:
        return "CrashLoopBackOff", "CrashLoopBackOff", message
    return "Restarting", obs.last_reason or "Exited", message
