"""Prometheus metrics of one manager (its own registry, so several can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ManagerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_total = Counter(
            "zkop_reconcile_total",
            "Reconciles by controller and result.",
            ["controller", "result"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "zkop_reconcile_errors_total", "Reconciles that raised.", ["controller"], registry=r
        )
        self.reconcile_duration = Histogram(
            "zkop_reconcile_duration_seconds",
            "Time spent in one reconcile.",
            ["controller"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.queue_depth = Gauge("zkop_workqueue_depth", "Keys waiting.", ["name"], registry=r)
        self.queue_adds = Counter("zkop_workqueue_adds_total", "Keys added.", ["name"], registry=r)
        self.queue_retries = Counter("zkop_workqueue_retries_total", "Rate-limited re-adds.", ["name"], registry=r)
        self.queue_latency = Histogram(
            "zkop_workqueue_queue_duration_seconds", "Time a key waited.", ["name"], registry=r
        )
        self.queue_longest = Gauge(
            "zkop_workqueue_longest_running_processor_seconds",
            "How long the longest-running reconcile has run.",
            ["name"],
            registry=r,
        )
        self.leader = Gauge("zkop_leader", "1 while this replica leads.", ["manager"], registry=r)
        self.leader_transitions = Counter(
            "zkop_leader_transitions_total",
            "Times this replica gained or lost leadership.",
            ["manager"],
            registry=r,
        )
        self.epoch = Gauge(
            "zkop_leader_epoch", "Epoch of the term this replica leads (0: none).", ["manager"], registry=r
        )
        self.fencing_rejections = Counter(
            "zkop_fencing_rejections_total",
            "Writes or actions refused because the term was over.",
            ["manager"],
            registry=r,
        )
        self.session_state = Gauge(
            "zkop_zookeeper_session_state", "1 for the current session state.", ["state"], registry=r
        )


class QueueMetrics:
    """Adapter from the workqueue's metrics hooks to Prometheus."""

    def __init__(self, metrics: ManagerMetrics) -> None:
        self.m = metrics

    def on_add(self, queue: str) -> None:
        self.m.queue_adds.labels(queue).inc()

    def on_retry(self, queue: str) -> None:
        self.m.queue_retries.labels(queue).inc()

    def on_depth(self, queue: str, depth: int) -> None:
        self.m.queue_depth.labels(queue).set(depth)

    def on_queue_latency(self, queue: str, seconds: float) -> None:
        self.m.queue_latency.labels(queue).observe(seconds)

    def on_work_duration(self, queue: str, seconds: float) -> None:
        pass  # the controller records reconcile durations itself
