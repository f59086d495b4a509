"""``zkop apply | get | describe | delete | events | explain``: resources in the control plane.

The CLI only reads files, parses arguments and formats output; validation belongs to
``zkop.api`` and storage (apply too) to ``zkop.store``. The store is the control-plane
ZooKeeper, or with ``--kubeconfig``/``--context`` the custom resources of a Kubernetes API
server (:class:`zkop.cli.session.Target`); the commands are the same on both. Every command checks all of its
input before it connects, runs in one ``asyncio.run``, and turns any refusal into one clear
message and exit status 1 (:mod:`zkop.cli.session`). Input: :mod:`zkop.cli.input`; what the
terminal shows: :mod:`zkop.cli.render`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import typer
from kazoo.exceptions import NoNodeError

from zkop.api import Resource, explain, resolve_kind, warnings_for
from zkop.api.meta import dns_label_problem
from zkop.api.registry import KindInfo
from zkop.cli.input import Source, parse_sources, read_sources
from zkop.cli.output import Output, err_console, fail, out, warn
from zkop.cli.render import (
    WatchPrinter,
    describe_text,
    events_document,
    events_table,
    list_document,
    list_yaml,
    render,
)
from zkop.cli.session import (
    KubeTarget,
    Target,
    context_option,
    kubeconfig_option,
    open_store,
    root_option,
    run,
    timeout_option,
    user_errors,
    zk_option,
)
from zkop.client import connect
from zkop.errors import ValidationError
from zkop.store import CorruptObject, EventRecord, Forbidden, NotFound, Selector, Store, parse_selector
from zkop.store.apply import Outcome, apply_all, ref
from zkop.store.base import ResourceStore

# Where a command's store is: the control-plane ZooKeeper, or a Kubernetes API server.
Where = connect.Connection | KubeTarget

DEFAULT_NAMESPACE = "default"
PANEL = "Resources"


async def apply_sources(
    store: ResourceStore,
    sources: Sequence[Source],
    on_result: Callable[[Resource, Outcome], None] | None = None,
) -> list[tuple[Resource, Outcome]]:
    """``zkop apply`` without the terminal: parse and validate all, then apply in order."""
    return await apply_all(store, parse_sources(sources), on_result)


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


def _in_namespace(objects: Sequence[Resource], namespace: str | None) -> list[Resource]:
    """``-n NAMESPACE`` with ``-f``: objects that name no namespace go there; one that names
    another is refused (as kubectl does)."""
    if namespace is None:
        return list(objects)
    ns = _check_name(namespace, "namespace")
    placed: list[Resource] = []
    for obj in objects:
        if "namespace" in obj.metadata.model_fields_set:
            if obj.namespace != ns:
                raise ValidationError(
                    f"{ref(obj)} names namespace {obj.namespace}, not {ns} (-n)",
                    hint="leave metadata.namespace out of the file, or -n out of the command",
                )
            placed.append(obj)
            continue
        placed.append(obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"namespace": ns})}))
    return placed


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
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="Namespace of the objects that name none (default: default)."
    ),
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
    kubeconfig: str | None = kubeconfig_option(),
    context: str | None = context_option(),
) -> None:
    """Create or change resources from YAML: every document is validated before any is written."""
    with user_errors():
        target = Target.of(ctx, zk, timeout, root, kubeconfig, context)
        objects = _in_namespace(parse_sources(read_sources(files or [])), namespace)
        for obj in objects:
            for warning in warnings_for(obj):
                warn(f"{ref(obj)}: {warning}")
        place = target.where()

        def echo(obj: Resource, outcome: Outcome) -> None:
            out(f"{ref(obj)} {outcome}\n")

        async def main() -> None:
            async with open_store(place, target.timeout) as store:
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
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
    kubeconfig: str | None = kubeconfig_option(),
    context: str | None = context_option(),
    max_events: int = typer.Option(0, "--max-events", hidden=True, help="Stop watching after N events."),
    watch_seconds: float = typer.Option(0.0, "--watch-seconds", hidden=True, help="Stop watching after N s."),
) -> None:
    """List resources, or show one."""
    with user_errors():
        target = Target.of(ctx, zk, timeout, root, kubeconfig, context)
        info, name = _split_kind(kind, name)
        ns = _namespace(namespace, all_namespaces)
        if name is not None and ns is None:
            raise ValidationError("a name cannot be looked up across all namespaces", hint="use -n NAMESPACE")
        if name is not None and selector:
            raise ValidationError("give a name or a label selector (-l), not both")
        sel = parse_selector(selector) if selector else None
        query = _Query(info, ns, name, sel, output)
        place = target.where()
        if watch:
            try:
                run(_watch(place, target.timeout, query, max_events, watch_seconds))
            except KeyboardInterrupt:
                return
            return
        run(_get(place, target.timeout, query))


@dataclass(frozen=True)
class _Query:
    """What ``zkop get`` lists or watches: one object (``name``) or those of a namespace (all
    with None) that ``selector`` matches, and how to print them."""

    info: KindInfo
    namespace: str | None
    name: str | None
    selector: Selector | None
    output: Output


async def _get(place: Where, timeout: float, query: _Query) -> None:
    namespace, output = query.namespace, query.output
    async with open_store(place, timeout) as store:
        if query.name is not None:
            assert namespace is not None
            obj = await store.get(query.info.kind, namespace, query.name)
            out(render([obj], output, single=True, all_namespaces=False))
            return
        result = await store.list(query.info.kind, namespace, query.selector)
    for corrupt in result.corrupt:
        warn(f"skipped {corrupt}")
    items = result.items
    if output is Output.json:
        out(json.dumps(list_document(items), indent=2) + "\n")
    elif output is Output.yaml:
        out(list_yaml(items))
    elif not items:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        err_console.print(f"No {query.info.plural} found in {where}.")
    else:
        out(render(items, output, single=False, all_namespaces=namespace is None))


async def _watch(place: Where, timeout: float, query: _Query, max_events: int, seconds: float) -> None:
    name, selector = query.name, query.selector
    printer = WatchPrinter(query.info, query.output, all_namespaces=query.namespace is None)
    count = 0
    async with open_store(place, timeout) as store:
        stream = store.watch(query.info.kind, query.namespace)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds if seconds > 0 else None):
                    async for event in stream:
                        if event.type == "SYNCED":
                            printer.sync()
                            continue
                        if event.type == "ERROR":
                            warn(f"skipped {event.error}")
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
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
    kubeconfig: str | None = kubeconfig_option(),
    context: str | None = context_option(),
) -> None:
    """Show one object: metadata, spec, status, conditions and recent events."""
    with user_errors():
        target = Target.of(ctx, zk, timeout, root, kubeconfig, context)
        info, name = _split_kind(kind, name)
        if name is None:
            raise ValidationError(f"which {info.singular}? give its name", hint=f"zkop get {info.short_names[0]}")
        ns = _namespace(namespace, False)
        assert ns is not None
        place = target.where()

        async def main() -> tuple[Resource, list[EventRecord]]:
            async with open_store(place, target.timeout) as store:
                obj = await store.get(info.kind, ns, name)
                try:
                    events = await store.list_events(ns, kind=info.kind, name=name)
                except Forbidden as exc:  # the object is worth showing without them
                    warn(f"events not shown: {exc}")
                    events = []
            return obj, events

        obj, events = run(main())
        out(describe_text(obj, events))


def delete_cmd(
    ctx: typer.Context,
    kind: str | None = typer.Argument(None, help="Kind of the objects (or use -f)."),
    names: list[str] | None = typer.Argument(None, help="Names of the objects."),
    files: list[str] | None = _files_option("Delete the objects a YAML file (or directory, or -) names."),
    namespace: str | None = _namespace_option(),
    ignore_not_found: bool = typer.Option(False, "--ignore-not-found", help="Missing objects are not an error."),
    force: bool = typer.Option(False, "--force", help="Also remove a corrupt object's znodes."),
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
    kubeconfig: str | None = kubeconfig_option(),
    context: str | None = context_option(),
) -> None:
    """Delete objects by kind and name, or those named in files.

    Objects with finalizers are marked for deletion and go once their finalizers are removed.
    """
    with user_errors():
        target = Target.of(ctx, zk, timeout, root, kubeconfig, context)
        keys: list[tuple[KindInfo, str, str]] = []
        if files:
            if kind is not None or names:
                raise ValidationError("give KIND NAME or -f FILE, not both")
            objects = _in_namespace(parse_sources(read_sources(files), what="deleted"), namespace)
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
        place = target.where()
        failed = run(_delete(place, target.timeout, keys, ignore_not_found, force))
        if failed:
            raise typer.Exit(1)


async def _delete(
    place: Where,
    timeout: float,
    keys: Sequence[tuple[KindInfo, str, str]],
    ignore_not_found: bool,
    force: bool,
) -> int:
    failed = 0
    async with open_store(place, timeout) as store:
        for info, ns, name in keys:
            what = f"{info.singular}/{name}"
            try:
                outcome = await store.delete(info.kind, ns, name)
            except NotFound:
                if not ignore_not_found:
                    fail(f"{what} not found in namespace {ns}")
                    failed += 1
                continue
            except CorruptObject as exc:
                if not force:
                    fail(f"{exc.message} (use --force to remove its znodes)")
                    failed += 1
                    continue
                if not isinstance(store, Store):  # pragma: no cover - only znodes can be corrupt
                    raise
                await _force_delete(store, info, ns, name)
                out(f"{what} deleted (corrupt znodes removed)\n")
                continue
            if outcome == "deleted":
                out(f"{what} deleted\n")
                continue
            try:
                pending = (await store.get(info.kind, ns, name)).metadata.finalizers
            except (NotFound, CorruptObject):
                pending = []
            detail = f" (finalizers: {', '.join(pending)})" if pending else ""
            out(f"{what} terminating{detail}\n")
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
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
    kubeconfig: str | None = kubeconfig_option(),
    context: str | None = context_option(),
) -> None:
    """Recent events, oldest first."""
    with user_errors():
        target = Target.of(ctx, zk, timeout, root, kubeconfig, context)
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
        place = target.where()

        async def main() -> list[EventRecord]:
            async with open_store(place, target.timeout) as store:
                return await store.list_events(ns, kind=kind, name=name)

        events = run(main())
        if output in (Output.json, Output.yaml):
            out(events_document(events, output))
        elif not events:
            where = "any namespace" if ns is None else f"namespace {ns}"
            err_console.print(f"No events found in {where}.")
        else:
            out(events_table(events, all_namespaces=ns is None))


def explain_cmd(
    path: str = typer.Argument(..., help="KIND or KIND.field.path, e.g. zkc.spec.config."),
) -> None:
    """Documentation of a kind or one of its fields."""
    with user_errors():
        out(explain(path))


def register(app: typer.Typer) -> None:
    """Add the resource commands to the ``zkop`` app."""
    app.command("apply", rich_help_panel=PANEL)(apply_cmd)
    app.command("get", rich_help_panel=PANEL)(get_cmd)
    app.command("describe", rich_help_panel=PANEL)(describe_cmd)
    app.command("delete", rich_help_panel=PANEL)(delete_cmd)
    app.command("events", rich_help_panel=PANEL)(events_cmd)
    app.command("explain", rich_help_panel=PANEL)(explain_cmd)
