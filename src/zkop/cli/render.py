"""How resources and events look on the terminal: kubectl-style columns per kind (never
wrapped, easy to grep), ``-o yaml|json`` documents, ``get -w`` rows as they come, and
``describe``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import yaml

from zkop.api import Application, OperatorConfig, Resource, ZookeeperCluster, dump_yaml, resolve_kind, to_dict
from zkop.api.registry import KindInfo
from zkop.cli.output import Output, out
from zkop.store import EventRecord


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Plain columns as kubectl prints them: never wrapped, easy to grep."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [header, *rows]
    return "".join(
        indent + "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in lines
    )


def cell(value: object) -> str:
    if value is None or value == "":
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def age(when: dt.datetime | str | None, now: dt.datetime | None = None) -> str:
    """``45s``, ``12m``, ``5h``, ``3d``."""
    if when is None or when == "":
        return "<unknown>"
    if isinstance(when, str):
        try:
            when = dt.datetime.fromisoformat(when)
        except ValueError:
            return "<unknown>"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = int(((now or dt.datetime.now(dt.UTC)) - when).total_seconds())
    seconds = max(0, seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _metric(app: Application) -> str:
    scaling = app.spec.autoscaling
    if scaling is None or not scaling.metrics:
        return "<none>"
    target = scaling.metrics[0]
    current = app.status.current_metric
    if target.type == "cpu":
        shown = "<unknown>" if current is None else f"{current:g}%"
        return f"{shown}/{target.target_utilization}%"
    shown = "<unknown>" if current is None else f"{current:g}"
    return f"{shown}/{target.target_value:g}"


def columns(info: KindInfo, *, wide: bool, all_namespaces: bool) -> list[str]:
    if info.kind == "ZookeeperCluster":
        cols = ["NAME", "REPLICAS", "PHASE", "LEADER", "AGE"]
        if wide:
            cols += ["CONNECTION", "CONFIG-VERSION", "GENERATION/OBSERVED"]
    elif info.kind == "Application":
        cols = ["NAME", "READY", "DESIRED", "UPDATED", "ENDPOINTS", "AGE"]
        if wide:
            cols += ["METRIC", "LAST-SCALE"]
    else:
        cols = ["NAME", "TARGET-NAMESPACE", "LEADER-ELECT", "REPLICAS", "AGE"]
    return ["NAMESPACE", *cols] if all_namespaces else cols


def row(obj: Resource, *, wide: bool, all_namespaces: bool) -> list[str]:
    meta = obj.metadata
    created = age(meta.creation_timestamp)
    cells: list[object]
    if isinstance(obj, ZookeeperCluster):
        st = obj.status
        cells = [obj.name, f"{st.ready_replicas}/{obj.spec.replicas}", st.phase, st.leader, created]
        if wide:
            observed = "-" if st.observed_generation is None else st.observed_generation
            cells += [st.connection_string, st.config_version, f"{meta.generation}/{observed}"]
    elif isinstance(obj, Application):
        ast = obj.status
        desired = ast.desired_replicas if ast.desired_replicas is not None else obj.spec.replicas
        cells = [obj.name, ast.ready_replicas, desired, ast.updated_replicas, len(ast.endpoints), created]
        if wide:
            cells += [_metric(obj), age(ast.last_scale_time) if ast.last_scale_time else None]
    elif isinstance(obj, OperatorConfig):
        spec = obj.spec
        cells = [obj.name, spec.target_namespace or "<all>", spec.leader_election.leader_elect, spec.replicas, created]
    else:  # pragma: no cover - every kind is handled above
        cells = [obj.name, created]
    out = [cell(c) for c in cells]
    return [obj.namespace, *out] if all_namespaces else out


def list_document(objects: Sequence[Resource]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": [to_dict(o) for o in objects]}


def list_yaml(objects: Sequence[Resource]) -> str:
    """A ``kind: List`` in YAML, each item written by the api's dumper."""
    if not objects:
        return "apiVersion: v1\nkind: List\nitems: []\n"
    text = "apiVersion: v1\nkind: List\nitems:\n"
    for obj in objects:
        lines = dump_yaml(obj).splitlines()
        text += "".join(("- " if i == 0 else "  ") + line + "\n" for i, line in enumerate(lines))
    return text


def render(objects: Sequence[Resource], output: Output, *, single: bool, all_namespaces: bool) -> str:
    if output is Output.json:
        data = to_dict(objects[0]) if single else list_document(objects)
        return json.dumps(data, indent=2) + "\n"
    if output is Output.yaml:
        return dump_yaml(objects[0]) if single else list_yaml(objects)
    info = resolve_kind(objects[0].kind)
    wide = output is Output.wide
    return format_table(
        columns(info, wide=wide, all_namespaces=all_namespaces),
        [row(o, wide=wide, all_namespaces=all_namespaces) for o in objects],
    )


class WatchPrinter:
    """Prints watch events as rows (aligned as they come) or as yaml/json documents."""

    def __init__(self, info: KindInfo, output: Output, all_namespaces: bool) -> None:
        self.info = info
        self.output = output
        self.all_namespaces = all_namespaces
        self.wide = output is Output.wide
        self.header = ["EVENT", *columns(info, wide=self.wide, all_namespaces=all_namespaces)]
        self.widths: list[int] | None = None
        self.buffer: list[list[str]] = []
        self.synced = False

    def event(self, type_: str, obj: Resource) -> None:
        if self.output is Output.json:
            out(json.dumps(to_dict(obj), indent=2) + "\n")
        elif self.output is Output.yaml:
            out("---\n" + dump_yaml(obj))
        else:
            cells = [type_, *row(obj, wide=self.wide, all_namespaces=self.all_namespaces)]
            if self.synced:
                self._print([cells])
            else:
                self.buffer.append(cells)

    def sync(self) -> None:
        """The initial list is complete: print it with columns fitted to it."""
        self.synced = True
        if self.buffer:
            self._print(self.buffer)
        self.buffer = []

    def _print(self, rows: list[list[str]]) -> None:
        # EVENT is as wide as its longest value from the start, so later rows stay aligned.
        widths = self.widths or [max(len(h), len("MODIFIED") if i == 0 else 0) for i, h in enumerate(self.header)]
        for cells in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
        text = ""
        if self.widths is None:
            text += "   ".join(h.ljust(w) for h, w in zip(self.header, widths, strict=True)).rstrip() + "\n"
        self.widths = widths
        for cells in rows:
            text += "   ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n"
        out(text)


def _indent_yaml(data: object, indent: str = "  ") -> str:
    if data in ({}, [], None):
        return f"{indent}<none>\n"
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "".join(f"{indent}{line}\n" for line in text.splitlines())


def describe_text(obj: Resource, events: Sequence[EventRecord]) -> str:
    meta = obj.metadata
    data = to_dict(obj)

    def pairs(values: dict[str, str]) -> str:
        if not values:
            return "<none>"
        return ("\n" + " " * 20).join(f"{k}={v}" for k, v in values.items())

    created = meta.creation_timestamp
    fields: list[tuple[str, str]] = [
        ("Name", obj.name),
        ("Namespace", obj.namespace),
        ("Kind", obj.kind),
        ("API Version", obj.api_version),
        ("Labels", pairs(meta.labels)),
        ("Annotations", pairs(meta.annotations)),
        ("UID", cell(meta.uid)),
        ("Resource Version", cell(meta.resource_version)),
        ("Generation", cell(meta.generation)),
        ("Created", f"{created.isoformat()} ({age(created)} ago)" if created else "<unknown>"),
    ]
    if meta.deletion_timestamp is not None:
        fields.append(("Deletion Requested", f"{meta.deletion_timestamp.isoformat()} (terminating)"))
    fields.append(("Finalizers", ", ".join(meta.finalizers) or "<none>"))
    text = "".join(f"{(label + ':').ljust(20)}{value}\n" for label, value in fields)
    text += "Spec:\n" + _indent_yaml(data.get("spec"))
    status = dict(data.get("status") or {})
    conditions = status.pop("conditions", [])
    text += "Status:\n" + _indent_yaml(status)
    text += "Conditions:\n"
    if conditions:
        text += format_table(
            ["TYPE", "STATUS", "REASON", "MESSAGE", "LAST-TRANSITION"],
            [
                [
                    cell(c.get("type")),
                    cell(c.get("status")),
                    cell(c.get("reason")),
                    cell(c.get("message")),
                    age(c.get("lastTransitionTime")) + " ago" if c.get("lastTransitionTime") else "<unknown>",
                ]
                for c in conditions
            ],
            indent="  ",
        )
    else:
        text += "  <none>\n"
    text += "Events:\n"
    if events:
        text += format_table(
            ["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"],
            [[age(e.last_timestamp), e.type, e.reason, str(e.count), e.message] for e in events],
            indent="  ",
        )
    else:
        text += "  <none>\n"
    return text


def events_document(events: Sequence[EventRecord], output: Output) -> str:
    """Events as a ``kind: List`` in JSON or YAML."""
    doc = {"apiVersion": "v1", "kind": "List", "items": [e.to_json() for e in events]}
    if output is Output.json:
        return json.dumps(doc, indent=2) + "\n"
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def events_table(events: Sequence[EventRecord], *, all_namespaces: bool) -> str:
    header = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"]
    rows = [
        [age(e.last_timestamp), e.type, e.reason, f"{e.kind.lower()}/{e.name}", str(e.count), e.message] for e in events
    ]
    if all_namespaces:
        header = ["NAMESPACE", *header]
        rows = [[e.namespace, *r] for e, r in zip(events, rows, strict=True)]
    return format_table(header, rows)


__all__ = [
    "WatchPrinter",
    "age",
    "cell",
    "columns",
    "describe_text",
    "events_document",
    "events_table",
    "format_table",
    "list_document",
    "list_yaml",
    "render",
    "row",
]
