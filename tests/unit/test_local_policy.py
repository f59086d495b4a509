"""The local platform's supervision decisions: back-off, exits, placement, phases."""

from __future__ import annotations

import pytest

from zkop.platform.base import Resources
from zkop.platform.local import policy as P
from zkop.platform.local.policy import Observed

# -- crash loop ----------------------------------------------------------------------------


def test_crash_backoff_doubles_up_to_a_minute() -> None:
    assert [P.crash_backoff(n) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert P.crash_backoff(10_000) == 60.0


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (None, "exit code unknown"),
        (0, "exit code 0"),
        (3, "exit code 3"),
        (-9, "killed by SIGKILL"),
        (137, "exit code 137 (SIGKILL)"),
        (-200, "killed by signal 200"),
    ],
)
def test_describe_exit(code: int | None, text: str) -> None:
    assert P.describe_exit(code) == text


# -- capacity ------------------------------------------------------------------------------

MACHINE = Resources(cpu=2.0, memory=4 * 2**30)


def test_fits_within_capacity() -> None:
    assert P.unschedulable(Resources(0.5, 2**30), Resources(1.5, 2**30), MACHINE) is None
    assert P.unschedulable(Resources(), Resources(5, 10 * 2**30), MACHINE) is None  # no requests: always fits


def test_cpu_and_memory_over_capacity_say_why() -> None:
    why = P.unschedulable(Resources(1.0, 0), Resources(1.5, 0), MACHINE)
    assert why is not None and "requests 1 CPU" in why and "0.5 of the machine's 2 are free" in why
    why = P.unschedulable(Resources(0, 3 * 2**30), Resources(0, 2 * 2**30), MACHINE)
    assert why is not None and "3072Mi memory" in why and "2048Mi of the machine's 4096Mi" in why
    both = P.unschedulable(Resources(4, 8 * 2**30), Resources(), MACHINE)
    assert both is not None and "CPU" in both and "memory" in both


# -- phases --------------------------------------------------------------------------------


def test_phases() -> None:
    assert P.instance_phase(Observed(running=True, ready=True)) == ("Running", None, None)
    assert P.instance_phase(Observed(running=True, ready=False))[0] == "NotReady"
    assert P.instance_phase(Observed(running=False, ready=False)) == ("Starting", None, None)
    assert P.instance_phase(Observed(running=False, ready=False, pending="no room")) == (
        "Pending",
        "InsufficientResources",
        "no room",
    )
    failed = P.instance_phase(
        Observed(running=False, ready=False, start_error=("CommandNotFound", "command not found: x"), backoff=4)
    )
    assert failed == ("Failed", "CommandNotFound", "command not found: x; retrying with a 4s back-off")


def test_crash_loop_message_has_exit_code_duration_and_log() -> None:
    obs = Observed(
        running=False,
        ready=False,
        crashes=3,
        last_exit=3,
        last_run=0.12,
        last_reason="Error",
        backoff=4,
        log_tail=("starting", "", "about to fail"),
    )
    phase, reason, message = P.instance_phase(obs)
    assert (phase, reason) == ("CrashLoopBackOff", "CrashLoopBackOff")
    assert message == "exit code 3 after 0.1s (Error); back-off 4s; last log lines: starting | about to fail"
    first = P.instance_phase(Observed(running=False, ready=False, crashes=1, last_exit=-9, last_reason="Error"))
    assert first[:2] == ("Restarting", "Error") and first[2] is not None and "killed by SIGKILL" in first[2]
