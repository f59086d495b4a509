"""What the local platform decides for the instances it supervises, as a kubelet would: the
crash-loop back-off, how an exit is described, whether requests fit the machine, and the phase
a user sees. Pure functions, tested on their own.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from zkop.platform.base import InstancePhase, Resources

BACKOFF_BASE = 1.0  # seconds; doubles per consecutive crash
BACKOFF_CAP = 60.0
STABLE_RUN = 30.0  # a run this long resets the crash count


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


def instance_phase(obs: Observed) -> tuple[InstancePhase, str | None, str | None]:
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
