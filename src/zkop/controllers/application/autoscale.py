"""How many replicas an Application should run: the Kubernetes HPA rule, as a pure function.

:func:`decide_scale` takes what the controller observed (the replica count and
one metric sample per ready instance) and the recommendations it made in the
last few minutes, and returns a :class:`ScaleDecision`. The rule is the one the
Kubernetes Horizontal Pod Autoscaler uses:

1. ``ratio = average(samples) / target``. Within ``tolerance`` of 1 the
   recommendation is the current count (no flapping on noise).
2. Otherwise the recommendation is ``ceil(ready * average / target)``: the
   number of replicas that would bring the average to the target.
3. Replicas without a sample (starting, not ready, not reporting) are treated
   conservatively, as Kubernetes treats missing pods: as idle when the ready
   ones ask for more (so a scale-up is not inflated), and as exactly at the
   target when the ready ones ask for fewer (so a scale-down never removes
   replicas on the strength of instances nobody has measured). If that
   adjustment brings the ratio within tolerance or reverses its direction,
   nothing changes.
4. The recommendation is clamped to ``[min_replicas, max_replicas]``.
5. Scaling up is immediate. Scaling down goes only to the *highest*
   recommendation made within the last ``scale_down_window`` seconds, so a
   service is shrunk only after its load has stayed low for the whole window.

Without any usable sample nothing is scaled, except that the count is always
brought within ``[min_replicas, max_replicas]``.

With several metrics (:func:`decide_scale_many`) each gives a recommendation
by steps 1-3 and the largest wins, as in Kubernetes; while any metric has no
usable sample, the others may scale up but never down.

:class:`Recommendations` keeps the history between reconciles. Its first
entry is the replica count it found, recorded as if recommended then, so that
an operator that just started (or restarted) waits a full window before it
scales anything down.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

__all__ = [
    "DEFAULT_SCALE_DOWN_WINDOW",
    "DEFAULT_TOLERANCE",
    "MetricSamples",
    "Recommendation",
    "Recommendations",
    "ScaleDecision",
    "decide_scale",
    "decide_scale_many",
    "prune_history",
]

DEFAULT_TOLERANCE = 0.1
DEFAULT_SCALE_DOWN_WINDOW = 300.0  # seconds, as in Kubernetes

# Samples are floats: a sum meant to be exactly 9 may be 9.000000000000002. This
# slack keeps such noise from counting as "outside tolerance" or as one more replica.
_SLACK = Fraction(1, 10**9)


class Recommendation(NamedTuple):
    """A replica count recommended at ``timestamp`` (seconds on the controller's clock)."""

    timestamp: float
    replicas: int


@dataclass(frozen=True)
class ScaleDecision:
    """What to do, and why.

    ``desired`` is the replica count to run. ``metric`` is the average sample
    over the ready instances and ``ratio`` that average over the target (both
    ``None`` without metrics; with several metrics, those of the one that
    won). ``recommendation`` is the metric-based count before stabilisation,
    which the caller records in its history (``None`` when there is nothing to
    record: no metrics, or a scale-down refused for a missing metric).
    """

    desired: int
    reason: str
    metric: float | None
    ratio: float | None
    recommendation: int | None = None


@dataclass(frozen=True)
class MetricSamples:
    """One metric's readings, one per ready instance, and its target (same unit).

    ``samples`` may be a mapping from instance id or just the values; it is
    copied into a tuple of values. ``name`` labels the metric in reasons.
    """

    target: float
    samples: Mapping[str, float] | Iterable[float]
    name: str = ""

    def __post_init__(self) -> None:
        values = self.samples.values() if isinstance(self.samples, Mapping) else self.samples
        object.__setattr__(self, "samples", tuple(values))
        if not (math.isfinite(self.target) and self.target > 0):
            label = f" {self.name!r}" if self.name else ""
            raise ValueError(f"the target of metric{label} must be a positive number, got {self.target!r}")


def prune_history(history: Iterable[tuple[float, int]], now: float, window: float) -> list[Recommendation]:
    """The recommendations made within ``window`` seconds before ``now``."""
    cutoff = now - window
    return [Recommendation(t, r) for t, r in history if t > cutoff]


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _usable(samples: Mapping[str, float] | Iterable[float]) -> list[float]:
    values = samples.values() if isinstance(samples, Mapping) else samples
    # NaN, infinities and negative readings are broken samples, not load.
    return [float(v) for v in values if math.isfinite(v) and v >= 0]


def _validate(current: int, low: int, high: int, tolerance: float, window: float) -> None:
    if current < 0:
        raise ValueError(f"current_replicas must be 0 or more, got {current}")
    if low < 0 or high < low:
        raise ValueError(f"need 0 <= min_replicas <= max_replicas, got min={low} max={high}")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be 0 or more, got {tolerance!r}")
    if not (math.isfinite(window) and window >= 0):
        raise ValueError(f"scale_down_window must be 0 or more seconds, got {window!r}")


class _Raw(NamedTuple):
    replicas: int  # before clamping and stabilisation
    note: str  # how unmeasured replicas were counted, or ""
    hold: str  # why the metric does not move the count, or ""


def _recommend(current: int, values: list[float], target: Fraction, tolerance: Fraction) -> _Raw:
    """The metric-based count before clamping and stabilisation."""
    ready = len(values)
    total = sum((Fraction(v) for v in values), Fraction(0))
    ratio = total / ready / target

    def within(r: Fraction) -> bool:
        return abs(r - 1) <= tolerance + _SLACK

    missing = max(0, current - ready)
    if missing == 0:
        note = ""
        if within(ratio):
            return _Raw(current, note, "within tolerance")
        recommended = math.ceil(total / target - _SLACK)  # = ceil(ready * ratio)
    else:
        scaling_up = ratio >= 1
        filled = total if scaling_up else total + missing * target
        adjusted = filled / (ready + missing) / target
        counted = "idle" if scaling_up else "at the target"
        note = f" ({missing} replica(s) without a sample counted as {counted})"
        if within(adjusted):
            return _Raw(current, note, "within tolerance once those are counted")
        if (adjusted < 1) == scaling_up:
            return _Raw(current, note, "no longer above the target once those are counted")
        recommended = math.ceil(filled / target - _SLACK)
    # Never move against the direction the metric points to (more samples than replicas).
    if (ratio < 1 and recommended > current) or (ratio > 1 and recommended < current):
        return _Raw(current, note, f"{recommended} would move against the metric")
    return _Raw(recommended, note, "")


def decide_scale(
    *,
    current_replicas: int,
    samples: Mapping[str, float] | Iterable[float],
    target: float,
    min_replicas: int,
    max_replicas: int,
    now: float,
    history: Iterable[tuple[float, int]] = (),
    tolerance: float = DEFAULT_TOLERANCE,
    scale_down_window: float = DEFAULT_SCALE_DOWN_WINDOW,
) -> ScaleDecision:
    """The replica count to run now, for one metric (see the module doc for the rule).

    ``samples`` holds one reading per ready instance (a mapping from instance
    id, or just the values), in the same unit as ``target``: for CPU, percent
    of the requested CPU. ``history`` holds earlier recommendations as
    ``(timestamp, replicas)``; entries older than ``scale_down_window`` are
    ignored, so it need not be pruned. Raises ``ValueError`` on impossible
    settings (``target <= 0``, ``min > max``, ...).
    """
    return decide_scale_many(
        current_replicas=current_replicas,
        metrics=[MetricSamples(target, samples)],
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        now=now,
        history=history,
        tolerance=tolerance,
        scale_down_window=scale_down_window,
    )


def decide_scale_many(
    *,
    current_replicas: int,
    metrics: Sequence[MetricSamples],
    min_replicas: int,
    max_replicas: int,
    now: float,
    history: Iterable[tuple[float, int]] = (),
    tolerance: float = DEFAULT_TOLERANCE,
    scale_down_window: float = DEFAULT_SCALE_DOWN_WINDOW,
) -> ScaleDecision:
    """:func:`decide_scale` for several metrics: the largest recommendation wins.

    While some metric has no usable sample, the others may scale up but not
    down (its load is unknown, and might be the one that needs the replicas).
    """
    current, low, high = current_replicas, min_replicas, max_replicas
    _validate(current, low, high, tolerance, scale_down_window)
    bounds = f"[{low}, {high}]"
    exact_tolerance = Fraction(tolerance).limit_denominator(1_000_000)

    best: tuple[_Raw, MetricSamples, list[float]] | None = None
    unmeasured: list[str] = []
    for metric in metrics:
        values = _usable(metric.samples)
        if not values:
            unmeasured.append(metric.name or "the metric")
            continue
        raw = _recommend(current, values, Fraction(metric.target), exact_tolerance)
        if best is None or raw.replicas > best[0].replicas:
            best = (raw, metric, values)

    if best is None:
        desired = _clamp(current, low, high)
        why = "no metrics: no ready instance reported a usable sample"
        if len(metrics) > 1:
            why += f" for {', '.join(unmeasured)}"
        if desired == current:
            return ScaleDecision(current, f"{why}; keeping {current}", None, None)
        return ScaleDecision(desired, f"{why}; {current} -> {desired} to stay within {bounds}", None, None)

    raw, metric, values = best
    average = math.fsum(values) / len(values)
    ratio = average / metric.target
    label = f"{metric.name}: " if metric.name else ""
    seen = f"{label}average {average:g} is {ratio:.2f}x the target {metric.target:g}{raw.note}"

    if unmeasured and raw.replicas < current:
        desired = _clamp(current, low, high)
        reason = (
            f"not scaling down while {', '.join(unmeasured)} has no usable sample;"
            f" keeping {desired}: {seen}, which recommends {raw.replicas}"
        )
        return ScaleDecision(desired, reason, average, ratio, None)

    rec = _clamp(raw.replicas, low, high)
    if rec != raw.replicas:
        seen += f", recommendation {raw.replicas} brought within {bounds}"
    elif raw.hold:
        seen += f", {raw.hold}"

    if rec > current:
        return ScaleDecision(rec, f"scale up {current} -> {rec}: {seen}", average, ratio, rec)

    cutoff = now - scale_down_window
    highest = max((r for t, r in history if t > cutoff), default=rec)
    stabilised = _clamp(max(rec, highest), low, high)
    desired = min(current, stabilised)
    if desired < current:
        held = f" (the highest recommendation in the last {scale_down_window:g}s)" if stabilised > rec else ""
        reason = f"scale down {current} -> {desired}{held}: {seen}"
    elif rec < current:
        reason = (
            f"keeping {current}: {seen}; it recommends {rec}, but {stabilised}"
            f" was recommended within the last {scale_down_window:g}s"
        )
    else:
        reason = f"keeping {current}: {seen}"
    return ScaleDecision(desired, reason, average, ratio, rec)


class Recommendations:
    """The recommendations of the last ``window`` seconds for one Application.

    Only entries that can still be the maximum of a future window are kept (a
    newer, higher or equal recommendation outlives an older, lower one), so the
    history stays small however often the controller reconciles.
    """

    def __init__(
        self,
        window: float = DEFAULT_SCALE_DOWN_WINDOW,
        entries: Iterable[tuple[float, int]] = (),
    ) -> None:
        if not (math.isfinite(window) and window >= 0):
            raise ValueError(f"window must be 0 or more seconds, got {window!r}")
        self.window = window
        self._entries: deque[Recommendation] = deque()
        for timestamp, replicas in sorted(entries):
            self.record(timestamp, replicas)

    def __iter__(self) -> Iterator[Recommendation]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, now: float, replicas: int) -> None:
        """Remember that ``replicas`` was recommended at ``now``."""
        while self._entries and self._entries[-1].replicas <= replicas:
            self._entries.pop()
        self._entries.append(Recommendation(now, replicas))

    def prune(self, now: float) -> None:
        """Forget recommendations older than the window."""
        cutoff = now - self.window
        while self._entries and self._entries[0].timestamp <= cutoff:
            self._entries.popleft()

    def highest(self, now: float) -> int | None:
        """The highest recommendation within the window, if any."""
        self.prune(now)
        return self._entries[0].replicas if self._entries else None

    def decide(
        self,
        *,
        current_replicas: int,
        samples: Mapping[str, float] | Iterable[float],
        target: float,
        min_replicas: int,
        max_replicas: int,
        now: float,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> ScaleDecision:
        """:func:`decide_scale` with this history, then record its recommendation.

        With no entry in the window (first call, or none for a whole window)
        the current count is recorded first, so a scale-down waits a window.
        """
        return self.decide_many(
            current_replicas=current_replicas,
            metrics=[MetricSamples(target, samples)],
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            now=now,
            tolerance=tolerance,
        )

    def decide_many(
        self,
        *,
        current_replicas: int,
        metrics: Sequence[MetricSamples],
        min_replicas: int,
        max_replicas: int,
        now: float,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> ScaleDecision:
        """:func:`decide_scale_many` with this history, recorded as :meth:`decide` does."""
        self.prune(now)
        if not self._entries:
            self.record(now, current_replicas)
        decision = decide_scale_many(
            current_replicas=current_replicas,
            metrics=metrics,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            now=now,
            history=self._entries,
            tolerance=tolerance,
            scale_down_window=self.window,
        )
        if decision.recommendation is not None:
            self.record(now, decision.recommendation)
        return decision
