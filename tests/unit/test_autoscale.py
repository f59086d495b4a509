"""The autoscaling decision: the Kubernetes HPA rule with scale-down stabilisation."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zkop.controllers.application.autoscale import (
    MetricSamples,
    Recommendation,
    Recommendations,
    ScaleDecision,
    decide_scale,
    decide_scale_many,
    prune_history,
)

NOW = 10_000.0
WINDOW = 300.0


def decide(
    current: int,
    samples: Any,
    target: float = 50.0,
    *,
    lo: int = 1,
    hi: int = 10,
    history: list[tuple[float, int]] | None = None,
    tolerance: float = 0.1,
) -> ScaleDecision:
    return decide_scale(
        current_replicas=current,
        samples=samples,
        target=target,
        min_replicas=lo,
        max_replicas=hi,
        now=NOW,
        history=history or [],
        tolerance=tolerance,
        scale_down_window=WINDOW,
    )


# (case, current, samples, target, min, max, history, expected desired, words in the reason)
CASES: list[tuple[str, int, Any, float, int, int, list[tuple[float, int]], int, str]] = [
    ("at target", 3, [50, 50, 50], 50, 1, 10, [], 3, "keeping 3"),
    ("at the tolerance edge", 3, [55, 55, 55], 50, 1, 10, [], 3, "within tolerance"),
    ("below the tolerance edge", 3, [45, 45, 45], 50, 1, 10, [], 3, "within tolerance"),
    ("just over tolerance", 3, [56, 56, 56], 50, 1, 10, [], 4, "scale up 3 -> 4"),
    ("double the target", 3, [100, 100, 100], 50, 1, 10, [], 6, "scale up"),
    ("uneven load uses the average", 2, [10, 190], 50, 1, 10, [], 4, "scale up"),
    ("float-exact ceil", 5, [60] * 5, 50, 1, 10, [], 6, "scale up 5 -> 6"),
    ("capped by max", 3, [200, 200, 200], 50, 1, 10, [], 10, "brought within [1, 10]"),
    ("mapping of samples", 2, {"a": 100.0, "b": 100.0}, 50, 1, 10, [], 4, "scale up"),
    ("down with no history", 4, [25] * 4, 50, 1, 10, [], 2, "scale down 4 -> 2"),
    ("down held by the window", 4, [25] * 4, 50, 1, 10, [(NOW - 100, 4)], 4, "keeping 4"),
    ("down after the window", 4, [25] * 4, 50, 1, 10, [(NOW - 400, 4)], 2, "scale down"),
    ("window boundary excluded", 4, [25] * 4, 50, 1, 10, [(NOW - WINDOW, 4)], 2, "scale down"),
    ("down to the window max", 4, [25] * 4, 50, 1, 10, [(NOW - 100, 3)], 3, "highest"),
    ("down floored by min", 4, [25] * 4, 50, 3, 10, [], 3, "scale down 4 -> 3"),
    ("history above current", 2, [25] * 2, 50, 1, 10, [(NOW - 10, 8)], 2, "keeping 2"),
    ("no samples", 3, [], 50, 1, 10, [], 3, "no metrics"),
    ("no samples, below min", 0, [], 50, 2, 10, [], 2, "no metrics"),
    ("no samples, above max", 12, [], 50, 1, 10, [], 10, "no metrics"),
    ("broken samples only", 3, [math.nan, -1.0, math.inf], 50, 1, 10, [], 3, "no metrics"),
    ("at target but above max", 12, [50] * 12, 50, 1, 10, [], 10, "scale down 12 -> 10"),
    ("idle but below min", 1, [1], 50, 2, 10, [], 2, "scale up 1 -> 2"),
    # Replicas without a sample (starting, unready): idle for a scale-up ...
    ("missing, evens out", 4, [100, 100], 50, 1, 10, [], 4, "2 replica(s) without a sample"),
    ("missing, still up", 4, [150, 150], 50, 1, 10, [], 6, "counted as idle"),
    # ... and at the target for a scale-down.
    ("missing, conservative down", 4, [10, 10], 50, 1, 10, [], 3, "counted as at the target"),
    ("missing, within tolerance", 4, [45, 45], 50, 1, 10, [], 4, "keeping 4"),
    ("missing, a broken sample", 2, [math.nan, 100], 50, 1, 10, [], 2, "keeping 2"),
    # More samples than replicas (instances still terminating): never against the metric.
    ("extra samples, low load", 2, [40] * 4, 50, 1, 10, [], 2, "keeping 2"),
    ("extra samples, high load", 2, [100] * 4, 50, 1, 10, [], 8, "scale up"),
]


@pytest.mark.parametrize(
    ("current", "samples", "target", "lo", "hi", "history", "expected", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_cases(
    current: int,
    samples: Any,
    target: float,
    lo: int,
    hi: int,
    history: list[tuple[float, int]],
    expected: int,
    words: str,
) -> None:
    decision = decide(current, samples, target, lo=lo, hi=hi, history=history)
    assert decision.desired == expected, decision.reason
    assert words in decision.reason


def test_metric_and_ratio_reported() -> None:
    decision = decide(3, [30, 60, 90])
    assert decision.metric == pytest.approx(60.0)
    assert decision.ratio == pytest.approx(1.2)
    assert decision.recommendation == 4
    missing = decide(3, [])
    assert (missing.metric, missing.ratio, missing.recommendation) == (None, None, None)


def test_tolerance_zero_reacts_to_any_difference() -> None:
    assert decide(2, [51, 51], tolerance=0.0).desired == 3
    assert decide(2, [50, 50], tolerance=0.0).desired == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": 0.0},
        {"target": math.nan},
        {"lo": 5, "hi": 4},
        {"lo": -1},
        {"current": -1},
        {"tolerance": -0.1},
    ],
)
def test_invalid_settings(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"current": 2, "samples": [50, 50], "target": 50.0, "lo": 1, "hi": 5}
    args.update(kwargs)
    current, samples, target = args.pop("current"), args.pop("samples"), args.pop("target")
    with pytest.raises(ValueError):
        decide(current, samples, target, **args)


def many(current: int, *metrics: MetricSamples, lo: int = 1, hi: int = 10) -> ScaleDecision:
    return decide_scale_many(
        current_replicas=current,
        metrics=metrics,
        min_replicas=lo,
        max_replicas=hi,
        now=NOW,
        scale_down_window=WINDOW,
    )


class TestSeveralMetrics:
    def test_the_largest_recommendation_wins(self) -> None:
        cpu = MetricSamples(50, {"a": 90.0, "b": 90.0}, "cpu")  # -> 4
        load = MetricSamples(10, [5, 5], "load")  # -> 1
        decision = many(2, cpu, load)
        assert decision.desired == 4
        assert decision.reason.startswith("scale up 2 -> 4: cpu: average 90")
        assert decision.ratio == pytest.approx(1.8)
        assert many(2, MetricSamples(50, [10, 10], "cpu"), MetricSamples(10, [30, 30], "load")).desired == 6

    def test_a_missing_metric_blocks_scaling_down_only(self) -> None:
        down = many(4, MetricSamples(50, [10] * 4, "cpu"), MetricSamples(10, [], "load"))
        assert down.desired == 4
        assert down.recommendation is None
        assert "not scaling down while load has no usable sample" in down.reason
        up = many(4, MetricSamples(50, [100] * 4, "cpu"), MetricSamples(10, [math.nan], "load"))
        assert up.desired == 8
        held_in_bounds = many(12, MetricSamples(50, [10] * 12, "cpu"), MetricSamples(10, [], "load"))
        assert held_in_bounds.desired == 10

    def test_all_missing(self) -> None:
        decision = many(3, MetricSamples(50, [], "cpu"), MetricSamples(10, [], "load"))
        assert decision.desired == 3
        assert "for cpu, load" in decision.reason

    def test_samples_are_copied(self) -> None:
        source = [1.0, 2.0]
        metric = MetricSamples(1.0, (v for v in source))
        assert metric.samples == (1.0, 2.0)
        assert many(2, metric).desired == many(2, metric).desired == 3
        with pytest.raises(ValueError, match="'cpu'"):
            MetricSamples(0, [], "cpu")


def test_prune_history() -> None:
    history = [(NOW - 400, 5), (NOW - WINDOW, 4), (NOW - 10, 3), (NOW, 2)]
    assert prune_history(history, NOW, WINDOW) == [
        Recommendation(NOW - 10, 3),
        Recommendation(NOW, 2),
    ]


# -- the history class ---------------------------------------------------------------------


class TestRecommendations:
    def test_keeps_only_what_can_still_be_the_maximum(self) -> None:
        recs = Recommendations(window=WINDOW)
        recs.record(0, 5)
        recs.record(1, 3)
        recs.record(2, 4)
        assert list(recs) == [Recommendation(0, 5), Recommendation(2, 4)]
        assert recs.highest(10) == 5
        assert recs.highest(300) == 4
        assert recs.highest(302) is None
        assert len(recs) == 0

    def test_entries_given_out_of_order(self) -> None:
        recs = Recommendations(window=WINDOW, entries=[(5, 2), (1, 7), (3, 4)])
        assert recs.highest(5) == 7

    def test_a_new_operator_waits_a_window_before_scaling_down(self) -> None:
        recs = Recommendations(window=WINDOW)

        def step(t: float, current: int, load: float) -> ScaleDecision:
            return recs.decide(
                current_replicas=current,
                samples=[load] * current,
                target=50.0,
                min_replicas=1,
                max_replicas=10,
                now=t,
            )

        assert step(0, 4, 10).desired == 4  # first look: the found count is the floor
        assert step(150, 4, 10).desired == 4
        assert step(299, 4, 10).desired == 4
        down = step(300, 4, 10)
        assert down.desired == 1, down.reason
        assert step(301, 1, 400).desired == 8  # scaling up is immediate
        assert step(400, 8, 50).desired == 8
        assert step(600, 8, 10).desired == 8  # 8 was recommended at 400, within the window
        assert step(700, 8, 10).desired == 2  # 400 has left the window; 2 is the highest

    def test_missing_metrics_record_nothing_but_the_seed(self) -> None:
        recs = Recommendations(window=WINDOW)
        decision = recs.decide(current_replicas=3, samples=[], target=50, min_replicas=1, max_replicas=5, now=0)
        assert decision.desired == 3
        assert list(recs) == [Recommendation(0, 3)]


# -- properties ----------------------------------------------------------------------------

bounds = st.tuples(st.integers(0, 20), st.integers(0, 20)).map(sorted)
sample_values = st.floats(0, 1_000, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    current=st.integers(0, 40),
    samples=st.lists(st.one_of(sample_values, st.just(math.nan), st.just(-1.0)), max_size=40),
    target=st.floats(0.01, 500),
    bounds=bounds,
    tolerance=st.floats(0, 0.5),
    history=st.lists(st.tuples(st.floats(NOW - 2 * WINDOW, NOW), st.integers(0, 60)), max_size=8),
)
def test_always_within_min_and_max(
    current: int,
    samples: list[float],
    target: float,
    bounds: list[int],
    tolerance: float,
    history: list[tuple[float, int]],
) -> None:
    lo, hi = bounds
    decision = decide(current, samples, target, lo=lo, hi=hi, history=history, tolerance=tolerance)
    assert lo <= decision.desired <= hi
    if decision.recommendation is not None:
        assert lo <= decision.recommendation <= hi


@settings(max_examples=200, deadline=None)
@given(
    current=st.integers(1, 30),
    target=st.floats(0.5, 500),
    tolerance=st.sampled_from([0.0, 0.05, 0.1, 0.25]),
    position=st.floats(-0.99, 0.99),
    weights=st.lists(st.floats(0.1, 10), min_size=1, max_size=30),
    history=st.lists(st.tuples(st.floats(NOW - 2 * WINDOW, NOW), st.integers(0, 60)), max_size=8),
)
def test_within_tolerance_no_change(
    current: int,
    target: float,
    tolerance: float,
    position: float,
    weights: list[float],
    history: list[tuple[float, int]],
) -> None:
    """All replicas measured, the average within tolerance: nothing changes, whatever the history."""
    weights = (weights * current)[:current]
    average = target * (1 + position * tolerance)
    scale = average * current / math.fsum(weights)
    samples = [w * scale for w in weights]
    decision = decide(current, samples, target, lo=1, hi=30, history=history, tolerance=tolerance)
    assert decision.desired == current, decision.reason


@settings(max_examples=150, deadline=None)
@given(
    current=st.integers(1, 20),
    load=st.floats(0, 1_000),
    target=st.floats(1, 200),
    history=st.lists(st.tuples(st.floats(NOW - 2 * WINDOW, NOW), st.integers(0, 60)), max_size=8),
)
def test_scale_up_is_immediate_and_ignores_history(
    current: int, load: float, target: float, history: list[tuple[float, int]]
) -> None:
    ratio = Fraction(load) / Fraction(target)
    assume(ratio - 1 > Fraction(1, 10) + Fraction(1, 10**6))
    decision = decide(current, [load] * current, target, lo=1, hi=40, history=history)
    assert decision.desired == min(40, math.ceil(ratio * current))
    assert decision.desired > current


@settings(max_examples=150, deadline=None)
@given(
    start=st.integers(1, 10),
    steps=st.lists(st.tuples(st.floats(1, 120), st.floats(0, 400), st.integers(0, 3)), min_size=1, max_size=40),
    window=st.sampled_from([0.0, 60.0, 300.0]),
)
def test_scale_down_waits_for_the_window(start: int, steps: list[tuple[float, float, int]], window: float) -> None:
    """Simulate a controller applying every decision.

    A scale-down happens only once the operator has watched for a full window,
    never within a window of a scale-up, and never below a recommendation made
    within the window. The compact history decides exactly as the full log does.
    """
    recs = Recommendations(window=window)
    full_log: list[tuple[float, int]] = []
    now, current = 0.0, start
    last_up = -math.inf
    log_of_recs: list[tuple[float, int]] = []
    for dt, load, unmeasured in steps:
        measured = max(0, current - unmeasured)
        samples = [load] * measured
        if not any(t > now - window for t, _ in full_log):
            full_log.append((now, current))  # the documented seed
        reference = decide_scale(
            current_replicas=current,
            samples=samples,
            target=100.0,
            min_replicas=1,
            max_replicas=25,
            now=now,
            history=full_log,
            scale_down_window=window,
        )
        decision = recs.decide(
            current_replicas=current,
            samples=samples,
            target=100.0,
            min_replicas=1,
            max_replicas=25,
            now=now,
        )
        assert decision == reference
        if decision.recommendation is not None:
            full_log.append((now, decision.recommendation))
        if decision.desired < current:
            assert now >= window  # the operator started at 0
            assert now - last_up >= window
            assert all(r <= decision.desired for t, r in log_of_recs if t > now - window)
        if decision.desired > current:
            last_up = now
        if decision.recommendation is not None:
            log_of_recs.append((now, decision.recommendation))
        current = decision.desired
        now += dt
