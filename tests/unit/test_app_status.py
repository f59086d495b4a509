"""An Application's status as a pure function: the scale subresource's selector, and the
MetricsAvailable condition of CPU-based autoscaling."""

from __future__ import annotations

import datetime as dt
from typing import Any

from zkop.api import Application, parse_object
from zkop.controllers.application.status import status_for
from zkop.platform.base import InstanceObservation

AT = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
LONG_AGO = (AT - dt.timedelta(minutes=5)).timestamp()


def application(metrics: list[dict[str, Any]] | None = None) -> Application:
    spec: dict[str, Any] = {"replicas": 2, "template": {"command": ["app"], "ports": [{"name": "http"}]}}
    if metrics is not None:
        spec["autoscaling"] = {"minReplicas": 1, "maxReplicas": 4, "metrics": metrics}
    obj = parse_object({"apiVersion": "zkop.io/v1", "kind": "Application", "metadata": {"name": "web"}, "spec": spec})
    assert isinstance(obj, Application)
    return obj


def inst(name: str, *, cpu: float | None, ready: bool = True, started: float | None = LONG_AGO) -> InstanceObservation:
    return InstanceObservation(
        name=name,
        revision="r",
        phase="Running" if ready else "NotReady",
        ready=ready,
        restarts=0,
        host="10.0.0.1",
        ports={"http": 8080},
        started_at=started,
        cpu_usage=cpu,
    )


def status(app: Application, observed: list[InstanceObservation]) -> Any:
    return status_for(
        app, observed, revision="r", desired=2, decision=None, scaled=False, zk_hosts="", ref_problem=None, at=AT
    )


def condition(app: Application, observed: list[InstanceObservation], type_: str = "MetricsAvailable") -> Any:
    found = [c for c in status(app, observed).conditions if c.type == type_]
    return (found[0].status, found[0].reason, found[0].message) if found else None


CPU = [{"type": "cpu", "targetUtilization": 50}]


def test_the_selector_is_the_label_selector_of_the_instances() -> None:
    assert status(application(), []).selector == "app.kubernetes.io/managed-by=zkop,zkop.io/application=web"


def test_cpu_autoscaling_without_usage_says_metrics_are_missing() -> None:
    got = condition(application(CPU), [inst("web-1", cpu=None), inst("web-2", cpu=None)])
    assert got is not None and got[:2] == ("False", "NoCpuMetrics")
    assert "web-1, web-2" in got[2] and "metrics.k8s.io" in got[2]


def test_cpu_autoscaling_with_usage_says_metrics_are_there() -> None:
    assert condition(application(CPU), [inst("web-1", cpu=0.2), inst("web-2", cpu=None)]) == (
        "True",
        "CpuMetrics",
        "1/2 ready instances report CPU usage",
    )


def test_no_condition_without_a_cpu_metric() -> None:
    assert condition(application(), [inst("web-1", cpu=None)]) is None
    assert condition(application([{"type": "load", "targetValue": 5}]), [inst("web-1", cpu=None)]) is None
    # A cpu metric removed: the condition it had goes.
    app = application(CPU)
    app = app.model_copy(update={"status": status(app, [inst("web-1", cpu=None)])})
    plain = application().model_copy(update={"status": app.status})
    assert condition(plain, [inst("web-1", cpu=None)]) is None


def test_new_or_unready_instances_do_not_count_and_the_last_word_is_kept() -> None:
    app = application(CPU)
    # Nothing to judge by: a just started instance has not been measured yet, an unready one is not used.
    fresh = [inst("web-1", cpu=None, started=AT.timestamp() - 2), inst("web-2", cpu=None, ready=False)]
    assert condition(app, fresh) is None
    app = app.model_copy(update={"status": status(app, [inst("web-1", cpu=None)])})
    assert condition(app, fresh) is not None and condition(app, fresh)[1] == "NoCpuMetrics"  # kept, not dropped
