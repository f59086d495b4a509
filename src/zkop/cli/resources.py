"""``zkop apply | get | describe | delete | events | explain``: resources in the control plane.

The CLI only reads files, parses arguments and formats output; validation belongs to
``zkop.api`` and storage to ``zkop.store``. Every command checks all of its input before
it connects, runs in one ``asyncio.run``, and turns any refusal into one clear message and
exit status 1 (never a traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer
import yaml
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NoNodeError,
    SessionExpiredError,
)
from rich.markup import escape

from zkop.api import (
    Application,
    InvalidYamlError,
    OperatorConfig,
    Resource,
    ResourceValidationError,
    ZookeeperCluster,
    dump_yaml,
    explain,
    load_yaml,
    resolve_kind,
    to_dict,
    warnings_for,
)
from zkop.api.meta import dns_label_problem
from zkop.api.registry import KindInfo
from zkop.cli.output import Output, err_console
from zkop.client import connect
from zkop.client.bridge import TransactionFailed, Unavailable
from zkop.errors import Refused, ValidationError, ZkopError
from zkop.store import CorruptObject, EventRecord, NotFound, Selector, Store, parse_selector
from zkop.store.apply import Outcome, apply_all, ref

T = TypeVar("T")

DEFAULT_NAMESPACE = "default"
PANEL = "Resources"


# ---- errors and output ---------------------------------------------------------------


def _error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning: {escape(message)}[/]", soft_wrap=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Any refusal becomes one message on stderr and exit status 1."""
    try:
        yield
    except ZkopError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    except KazooException as exc:  # pragma: no cover - mapped in open_store already
        _error(f"ZooKeeper refused the request: {type(exc).__name__} {exc}".strip())
        raise typer.Exit(1) from None


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Plain columns as kubectl prints them: never wrapped, easy to grep."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [header, *rows]
    return "".join(
        indent + "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in lines
    )


def _cell(value: object) -> str:
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


# ---- connecting ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the control plane is: the common options of every command."""

    zk: str | None
    timeout: float
    root: str | None
    state_dir: Path | None

    def connection(self) -> connect.Connection:
        if self.root is not None and (not self.root.startswith("/") or self.root.rstrip("/") == ""):
            raise ValidationError(f"invalid root {self.root!r}", hint="use an absolute znode path such as /zkop")
        return connect.resolve(self.zk, self.state_dir, self.root)


def _zk_error(exc: BaseException, conn: connect.Connection) -> ZkopError | None:
    if isinstance(exc, TransactionFailed) and isinstance(exc.error, BaseException):
        exc = exc.error
    if isinstance(exc, NoAuthError):
        return ZkopError(
            f"not allowed to use {conn.root} on {conn.hosts} as {conn.user!r}",
            hint="check ZKOP_AUTH=user:password",
        )
    if isinstance(exc, ConnectionLoss | ConnectionClosedError | SessionExpiredError):
        return Unavailable(
            f"lost the connection to ZooKeeper at {conn.hosts}", hint="is the control plane up? then retry"
        )
    if isinstance(exc, KazooException):
        return ZkopError(f"ZooKeeper refused the request: {type(exc).__name__}", hint=str(exc) or None)
    return None


@contextlib.asynccontextmanager
async def open_store(conn: connect.Connection, timeout: float) -> AsyncIterator[Store]:
    """A store on a fresh session. Waiting for ZooKeeper is bounded by ``timeout``: to
    connect, and again whenever the connection drops while the command runs."""
    try:
        client = conn.client()
    except ValueError as exc:
        raise ValidationError(
            f"invalid ZooKeeper hosts {conn.hosts!r}: {exc}", hint="use host:port[,host:port...]"
        ) from None
    await client.start(timeout=timeout)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    lost: list[str] = []
    pending: list[asyncio.TimerHandle] = []

    def give_up(why: str) -> None:
        if not lost and task is not None:
            lost.append(why)
            task.cancel()

    def on_state(state: str) -> None:
        if state == "SUSPENDED" and not pending:
            pending.append(loop.call_later(timeout, give_up, f"no connection for {timeout:.0f}s"))
        elif state == "CONNECTED":
            while pending:
                pending.pop().cancel()
        elif state == "LOST":
            give_up("the session expired")

    client.add_state_listener(on_state)
    try:
        yield Store(client, root=conn.root, acl=conn.acl())
    except asyncio.CancelledError:
        if lost:
            raise Unavailable(
                f"lost the connection to ZooKeeper at {conn.hosts} ({lost[0]})",
                hint="is the control plane up? then retry",
            ) from None
        raise
    except (KazooException, TransactionFailed) as exc:
        mapped = _zk_error(exc, conn)
        if mapped is None:
            raise
        raise mapped from None
    finally:
        client.remove_state_listener(on_state)
        for handle in pending:
            handle.cancel()
        await client.stop()


def _quiet_kazoo() -> None:
    """kazoo logs every failed connection attempt; with no logging set up those lines would
    reach stderr through logging's last resort. The command reports the outcome itself."""
    kazoo_log = logging.getLogger("kazoo")
    if not any(isinstance(h, logging.NullHandler) for h in kazoo_log.handlers):
        kazoo_log.addHandler(logging.NullHandler())


def _on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # A failed read whose sibling read also failed leaves a task nobody awaits; its
    # exception (NoAuth, connection loss) was already reported through the awaited one.
    if isinstance(context.get("exception"), KazooException | ZkopError):
        return
    loop.default_exception_handler(context)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` for one command, without kazoo's or asyncio's noise on stderr."""
    _quiet_kazoo()

    async def wrapped() -> T:
        asyncio.get_running_loop().set_exception_handler(_on_loop_error)
        return await main

    return asyncio.run(wrapped())


# ---- input ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The text of one input file (or stdin) and the name it is reported under."""

    name: str
    text: str


def _read_file(path: Path) -> Source:
    try:
        return Source(str(path), path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file or directory") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{path}: not UTF-8 text", hint="resource files are YAML") from None
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_sources(files: Sequence[str]) -> list[Source]:
    """Each ``-f`` value: a file, a directory (its ``*.yaml``/``*.yml``, sorted) or ``-`` (stdin)."""
    if not files:
        raise ValidationError("no input", hint="pass -f FILE, -f DIR or -f - (stdin)")
    sources: list[Source] = []
    for item in files:
        if item == "-":
            sources.append(Source("<stdin>", sys.stdin.read()))
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml")), key=lambda p: p.name
            )
            if not found:
                raise ValidationError(f"{path}: no *.yaml or *.yml files in this directory")
            sources.extend(_read_file(p) for p in found)
        else:
            sources.append(_read_file(path))
    return sources


def parse_sources(sources: Sequence[Source], *, what: str = "applied") -> list[Resource]:
    """Validate every document of every source; refuse all of them if any is invalid."""
    objects: list[Resource] = []
    errors: list[ZkopError] = []
    for src in sources:
        try:
            objects.extend(load_yaml(src.text, source=src.name))
        except (InvalidYamlError, ResourceValidationError) as exc:
            errors.append(exc)
    if errors:
        raise Refused(errors, what=what)
    if not objects:
        names = ", ".join(s.name for s in sources)
        raise ValidationError(f"no objects in {names}", hint="each YAML document needs apiVersion, kind, metadata")
    return objects


# ---- apply ---------------------------------------------------------------------------


async def apply_sources(
    store: Store,
    sources: Sequence[Source],
    on_result: Callable[[Resource, Outcome], None] | None = None,
) -> list[tuple[Resource, Outcome]]:
    """``zkop apply`` without the terminal: parse and validate all, then apply in order."""
    return await apply_all(store, parse_sources(sources), on_result)


# ---- tables per kind -----------------------------------------------------------------


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
    out = [_cell(c) for c in cells]
    return [obj.namespace, *out] if all_namespaces else out


def list_document(objects: Sequence[Resource]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": [to_dict(o) for o in objects]}


def _list_yaml(objects: Sequence[Resource]) -> str:
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
        return dump_yaml(objects[0]) if single else _list_yaml(objects)
    info = resolve_kind(objects[0].kind)
    wide = output is Output.wide
    return format_table(
        columns(info, wide=wide, all_namespaces=all_namespaces),
        [row(o, wide=wide, all_namespaces=all_namespaces) for o in objects],
    )


# ---- arguments -----------------------------------------------------------------------


def _check_name(value: str, what: str = "name") -> str:
    problem = dns_label_problem(value)
    if problem:
        raise ValidationError(f"invalid {what} {value!r}: {problem}")
    return value


def _split_kind(kind: str, name: str | None) -> tuple[KindInfo, str | None]:
    """``KIND NAME`` or ``KIND/NAME``."""
    if "/" in kind:
        kind, _, inline = kind.partition("/")
        if name is not None:
            raise ValidationError(f"give the name once: {kind}/{inline} or {kind} {inline}, not both")
        name = inline
    info = resolve_kind(kind)
    return info, (_check_name(name) if name is not None else None)


def _namespace(namespace: str | None, all_namespaces: bool) -> str | None:
    if all_namespaces:
        if namespace is not None:
            raise ValidationError("use either --namespace or --all-namespaces, not both")
        return None
    return _check_name(namespace or DEFAULT_NAMESPACE, "namespace")


def _target(ctx: typer.Context, zk: str | None, timeout: float, root: str | None) -> Target:
    state_dir = getattr(ctx.obj, "state_dir", None) if ctx.obj is not None else None
    return Target(zk=zk, timeout=timeout, root=root, state_dir=state_dir)


def _zk_option() -> Any:
    return typer.Option(
        None,
        "--zk",
        envvar="ZKOP_ZK",
        help="Control-plane hosts (host:port,...); default: the local control plane.",
    )


def _timeout_option() -> Any:
    return typer.Option(
        10.0, "--timeout", min=0.1, max=600.0, help="Seconds to wait for the control plane before giving up."
    )


def _root_option() -> Any:
    return typer.Option(None, "--root", envvar="ZKOP_ROOT", hidden=True, help="Root znode of the control plane.")


def _namespace_option() -> Any:
    return typer.Option(None, "--namespace", "-n", help="Namespace (default: default).")


def _all_namespaces_option() -> Any:
    return typer.Option(False, "--all-namespaces", "-A", help="Every namespace.")


def _files_option(help_text: str) -> Any:
    return typer.Option(None, "--filename", "-f", help=help_text)


# ---- commands ------------------------------------------------------------------------


def apply_cmd(
    ctx: typer.Context,
    files: list[str] | None = _files_option("A YAML file, a directory of them, or - for stdin (repeatable)."),
    zk: str | None = _zk_option(),
    timeout: float = _timeout_option(),
    root: str | None = _root_option(),
) -> None:
    """Create or change resources from YAML: every document is validated before any is written."""
    with user_errors():
        target = _target(ctx, zk, timeout, root)
        objects = parse_sources(read_sources(files or []))
        for obj in objects:
            for warning in warnings_for(obj):
                _warn(f"{ref(obj)}: {warning}")
        conn = target.connection()

        def echo(obj: Resource, outcome: Outcome) -> None:
            _out(f"{ref(obj)} {outcome}\n")

        async def main() -> None:
            async with open_store(conn, target.timeout) as store:
                await apply_all(store, objects, echo)

        run(main())


def get_cmd(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="Kind: zookeepercluster (zkc), application (app), operatorconfig."),
    name: str | None = typer.Argument(None, help="One object (default: all)."),
    namespace: str | None = _namespace_option(),
    all_namespaces: bool = _all_namespaces_option(),
    selector: str | None = typer.Option(None, "--selector", "-l", help="Label selector, e.g. tier=gold,env!=dev."),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, wide, yaml or json."),
    watch: bool = typer.Option(False, "--watch", "-w", help="After listing, print changes as they happen."),
    zk: str | None = _zk_option(),
    timeout: float = _timeout_option(),
    root: str | None = _root_option(),
    max_events: int = typer.Option(0, "--max-events", hidden=True, help="Stop watching after N events."),
    watch_seconds: float = typer.Option(0.0, "--watch-seconds", hidden=True, help="Stop watching after N s."),
) -> None:
    """List resources, or show one."""
    with user_errors():
        target = _target(ctx, zk, timeout, root)
        info, name = _split_kind(kind, name)
        ns = _namespace(namespace, all_namespaces)
        if name is not None and ns is None:
            raise ValidationError("a name cannot be looked up across all namespaces", hint="use -n NAMESPACE")
        if name is not None and selector:
            raise ValidationError("give a name or a label selector (-l), not both")
        sel = parse_selector(selector) if selector else None
        conn = target.connection()
        if watch:
            try:
                run(_watch(conn, target.timeout, info, ns, name, sel, output, max_events, watch_seconds))
            except KeyboardInterrupt:
                return
            return
        run(_get(conn, target.timeout, info, ns, name, sel, output))


async def _get(
    conn: connect.Connection,
    timeout: float,
    info: KindInfo,
    namespace: str | None,
    name: str | None,
    selector: Selector | None,
    output: Output,
) -> None:
    async with open_store(conn, timeout) as store:
        if name is not None:
            assert namespace is not None
            obj = await store.get(info.kind, namespace, name)
            _out(render([obj], output, single=True, all_namespaces=False))
            return
        result = await store.list(info.kind, namespace, selector)
    for corrupt in result.corrupt:
        _warn(f"skipped {corrupt}")
    items = result.items
    if output is Output.json:
        _out(json.dumps(list_document(items), indent=2) + "\n")
    elif output is Output.yaml:
        _out(_list_yaml(items))
    elif not items:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        err_console.print(f"No {info.plural} found in {where}.")
    else:
        _out(render(items, output, single=False, all_namespaces=namespace is None))


class _WatchPrinter:
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
            _out(json.dumps(to_dict(obj), indent=2) + "\n")
        elif self.output is Output.yaml:
            _out("---\n" + dump_yaml(obj))
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
        _out(text)


async def _watch(
    conn: connect.Connection,
    timeout: float,
    info: KindInfo,
    namespace: str | None,
    name: str | None,
    selector: Selector | None,
    output: Output,
    max_events: int,
    seconds: float,
) -> None:
    printer = _WatchPrinter(info, output, all_namespaces=namespace is None)
    count = 0
    async with open_store(conn, timeout) as store:
        stream = store.watch(info.kind, namespace)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds if seconds > 0 else None):
                    async for event in stream:
                        if event.type == "SYNCED":
                            printer.sync()
                            continue
                        if event.type == "ERROR":
                            _warn(f"skipped {event.error}")
                            continue
                        obj = event.object
                        if obj is None:
                            continue
                        if name is not None and obj.name != name:
                            continue
                        if selector is not None and not selector.matches(obj.metadata.labels):
                            continue
                        printer.event(event.type, obj)
                        count += 1
                        if max_events and count >= max_events:
                            break
        finally:
            printer.sync()
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                await closer()


def describe_cmd(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="Kind: zookeepercluster (zkc), application (app), operatorconfig."),
    name: str | None = typer.Argument(None, help="Name of the object."),
    namespace: str | None = _namespace_option(),
    zk: str | None = _zk_option(),
    timeout: float = _timeout_option(),
    root: str | None = _root_option(),
) -> None:
    """Show one object: metadata, spec, status, conditions and recent events."""
    with user_errors():
        target = _target(ctx, zk, timeout, root)
        info, name = _split_kind(kind, name)
        if name is None:
            raise ValidationError(f"which {info.singular}? give its name", hint=f"zkop get {info.short_names[0]}")
        ns = _namespace(namespace, False)
        assert ns is not None
        conn = target.connection()

        async def main() -> tuple[Resource, list[EventRecord]]:
            async with open_store(conn, target.timeout) as store:
                obj = await store.get(info.kind, ns, name)
                events = await store.list_events(ns, kind=info.kind, name=name)
            return obj, events

        obj, events = run(main())
        _out(describe_text(obj, events))


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
        ("UID", _cell(meta.uid)),
        ("Resource Version", _cell(meta.resource_version)),
        ("Generation", _cell(meta.generation)),
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
                    _cell(c.get("type")),
                    _cell(c.get("status")),
                    _cell(c.get("reason")),
                    _cell(c.get("message")),
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


def delete_cmd(
    ctx: typer.Context,
    kind: str | None = typer.Argument(None, help="Kind of the objects (or use -f)."),
    names: list[str] | None = typer.Argument(None, help="Names of the objects."),
    files: list[str] | None = _files_option("Delete the objects a YAML file (or directory, or -) names."),
    namespace: str | None = _namespace_option(),
    ignore_not_found: bool = typer.Option(False, "--ignore-not-found", help="Missing objects are not an error."),
    force: bool = typer.Option(False, "--force", help="Also remove a corrupt object's znodes."),
    zk: str | None = _zk_option(),
    timeout: float = _timeout_option(),
    root: str | None = _root_option(),
) -> None:
    """Delete objects by kind and name, or those named in files.

    Objects with finalizers are marked for deletion and go once their finalizers are removed.
    """
    with user_errors():
        target = _target(ctx, zk, timeout, root)
        keys: list[tuple[KindInfo, str, str]] = []
        if files:
            if kind is not None or names:
                raise ValidationError("give KIND NAME or -f FILE, not both")
            objects = parse_sources(read_sources(files), what="deleted")
            keys = [(resolve_kind(o.kind), o.namespace, o.name) for o in objects]
        else:
            if kind is None:
                raise ValidationError("what should be deleted?", hint="zkop delete KIND NAME, or -f FILE")
            info, inline = _split_kind(kind, None)
            wanted = ([inline] if inline else []) + list(names or [])
            if not wanted:
                raise ValidationError(f"which {info.singular}? give its name")
            ns = _namespace(namespace, False)
            assert ns is not None
            keys = [(info, ns, _check_name(n)) for n in wanted]
        conn = target.connection()
        failed = run(_delete(conn, target.timeout, keys, ignore_not_found, force))
        if failed:
            raise typer.Exit(1)


async def _delete(
    conn: connect.Connection,
    timeout: float,
    keys: Sequence[tuple[KindInfo, str, str]],
    ignore_not_found: bool,
    force: bool,
) -> int:
    failed = 0
    async with open_store(conn, timeout) as store:
        for info, ns, name in keys:
            what = f"{info.singular}/{name}"
            try:
                outcome = await store.delete(info.kind, ns, name)
            except NotFound:
                if not ignore_not_found:
                    _error(f"{what} not found in namespace {ns}")
                    failed += 1
                continue
            except CorruptObject as exc:
                if not force:
                    _error(f"{exc.message} (use --force to remove its znodes)")
                    failed += 1
                    continue
                await _force_delete(store, info, ns, name)
                _out(f"{what} deleted (corrupt znodes removed)\n")
                continue
            if outcome == "deleted":
                _out(f"{what} deleted\n")
                continue
            try:
                pending = (await store.get(info.kind, ns, name)).metadata.finalizers
            except (NotFound, CorruptObject):
                pending = []
            detail = f" (finalizers: {', '.join(pending)})" if pending else ""
            _out(f"{what} terminating{detail}\n")
    return failed


async def _force_delete(store: Store, info: KindInfo, namespace: str, name: str) -> None:
    path = store.obj_path(info, namespace, name)
    with contextlib.suppress(NoNodeError):
        await store.client.delete(path + "/status")
    with contextlib.suppress(NoNodeError):
        await store.client.delete(path)


def events_cmd(
    ctx: typer.Context,
    namespace: str | None = _namespace_option(),
    all_namespaces: bool = _all_namespaces_option(),
    for_object: str | None = typer.Option(None, "--for", help="Only events of KIND/NAME."),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, yaml or json."),
    zk: str | None = _zk_option(),
    timeout: float = _timeout_option(),
    root: str | None = _root_option(),
) -> None:
    """Recent events, oldest first."""
    with user_errors():
        target = _target(ctx, zk, timeout, root)
        ns = _namespace(namespace, all_namespaces)
        kind: str | None = None
        name: str | None = None
        if for_object is not None:
            if "/" not in for_object:
                raise ValidationError(f"--for {for_object!r}: use KIND/NAME, e.g. zkc/orders")
            info, name = _split_kind(for_object, None)
            kind = info.kind
            if ns is None:
                raise ValidationError("--for needs a namespace", hint="use -n NAMESPACE instead of -A")
        conn = target.connection()

        async def main() -> list[EventRecord]:
            async with open_store(conn, target.timeout) as store:
                return await store.list_events(ns, kind=kind, name=name)

        events = run(main())
        if output in (Output.json, Output.yaml):
            doc = {"apiVersion": "v1", "kind": "List", "items": [e.to_json() for e in events]}
            _out(
                json.dumps(doc, indent=2) + "\n"
                if output is Output.json
                else yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
            )
            return
        if not events:
            where = "any namespace" if ns is None else f"namespace {ns}"
            err_console.print(f"No events found in {where}.")
            return
        header = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"]
        rows = [
            [age(e.last_timestamp), e.type, e.reason, f"{e.kind.lower()}/{e.name}", str(e.count), e.message]
            for e in events
        ]
        if ns is None:
            header = ["NAMESPACE", *header]
            rows = [[e.namespace, *r] for e, r in zip(events, rows, strict=True)]
        _out(format_table(header, rows))


def explain_cmd(
    path: str = typer.Argument(..., help="KIND or KIND.field.path, e.g. zkc.spec.config."),
) -> None:
    """Documentation of a kind or one of its fields."""
    with user_errors():
        _out(explain(path))


def register(app: typer.Typer) -> None:
    """Add the resource commands to the ``zkop`` app."""
    app.command("apply", rich_help_panel=PANEL)(apply_cmd)
    app.command("get", rich_help_panel=PANEL)(get_cmd)
    app.command("describe", rich_help_panel=PANEL)(describe_cmd)
    app.command("delete", rich_help_panel=PANEL)(delete_cmd)
    app.command("events", rich_help_panel=PANEL)(events_cmd)
    app.command("explain", rich_help_panel=PANEL)(explain_cmd)
