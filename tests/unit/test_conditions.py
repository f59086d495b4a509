"""merge_conditions: transition times, kept and cleared types."""

from __future__ import annotations

import datetime as dt

from zkop.api import Condition
from zkop.runtime.conditions import merge_conditions

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def cond(type_: str, status: str, reason: str = "R") -> Condition:
    return Condition.model_validate({"type": type_, "status": status, "reason": reason, "lastTransitionTime": T0})


def test_transition_time_moves_only_when_the_status_flips() -> None:
    old = [cond("Available", "True"), cond("Degraded", "False")]
    out = merge_conditions(
        old, {"Available": (True, "Still", "m"), "Degraded": (True, "Broke", "")}, generation=3, at=T1
    )
    by = {c.type: c for c in out}
    assert by["Available"].last_transition_time == T0 and by["Available"].reason == "Still"
    assert by["Degraded"].last_transition_time == T1 and by["Degraded"].status == "True"
    assert by["Degraded"].message is None and by["Available"].message == "m"
    assert {c.observed_generation for c in out} == {3}


def test_new_types_are_stamped_and_the_result_is_sorted() -> None:
    out = merge_conditions([], {"Progressing": (False, "Done", ""), "Available": (True, "Up", "")}, generation=1, at=T1)
    assert [c.type for c in out] == ["Available", "Progressing"]
    assert all(c.last_transition_time == T1 for c in out)


def test_other_types_are_kept_but_a_reconcile_error_is_cleared() -> None:
    old = [cond("Custom", "True"), cond("ReconcileError", "True"), cond("Available", "False")]
    out = merge_conditions(old, {"Available": (True, "Up", "")}, generation=None, at=T1)
    assert [c.type for c in out] == ["Available", "Custom"]
    assert out[1] == old[0]


def test_a_failed_reconcile_keeps_the_reconcile_error() -> None:
    old = [cond("ReconcileError", "True"), cond("Available", "True")]
    out = merge_conditions(old, {"Available": (True, "Up", "")}, generation=1, succeeded=False, at=T1)
    assert [c.type for c in out] == ["Available", "ReconcileError"]


def test_owned_types_not_computed_are_dropped() -> None:
    old = [cond("LimitsEnforced", "False"), cond("ClusterReady", "True"), cond("Custom", "True")]
    out = merge_conditions(
        old, {"Available": (True, "Up", "")}, generation=1, drop=("LimitsEnforced", "ClusterReady"), at=T1
    )
    assert [c.type for c in out] == ["Available", "Custom"]
