"""``zkop logs app/NAME [INSTANCE] [-f]`` and ``zkop scale app|zkc NAME --replicas N``."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TextIO

import typer

from zkop.api import Application, Resource, parse_object, resolve_kind, to_dict
from zkop.api.meta import dns_label_problem
from zkop.api.registry import KindInfo
from zkop.cli.output import console
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
from zkop.errors import ValidationError, ZkopError
from zkop.store.modify import set_spec

SCALABLE = ("Application", "ZookeeperCluster")


def _app_name(target: str) -> str:
    kind, sep, name = target.partition("/")
    if not sep:
        return kind
    if resolve_kind(kind).kind != "Application":
        raise ZkopError(f"logs are kept for applications, not {kind}", hint="use app/NAME")
    return name


def _follow(base: Path, pattern: str, follow: bool, lines: int) -> None:
    """Print the last ``lines`` of each log; with ``follow``, keep printing what is appended,
    also from instances that start later (all logs are prefixed by their instance when
    ``pattern`` can match more than one)."""
    many = pattern == "*"
    handles: dict[Path, TextIO] = {}

    def open_new(tail: int | None) -> None:
        for f in sorted(base.glob(f"{pattern}/instance.log")):
            if f in handles:
                continue
            with contextlib.suppress(OSError):
                fh = f.open("r", errors="replace")
                if tail is not None:  # the end is enough
                    size = fh.seek(0, 2)
                    fh.seek(max(0, size - 256 * 1024))
                text = fh.read().splitlines()
                for line in text[-tail:] if tail is not None else text:
                    sys.stdout.write((f"[{f.parent.name}] " if many else "") + line + "\n")
                handles[f] = fh
        sys.stdout.flush()

    open_new(lines)
    last_scan = time.monotonic()
    try:
        while follow:
            wrote = False
            for f, fh in list(handles.items()):
                for line in fh.readlines():
                    sys.stdout.write((f"[{f.parent.name}] " if many else "") + line)
                    wrote = True
                if not f.exists():  # the instance was removed
                    fh.close()
                    handles.pop(f)
            if time.monotonic() - last_scan > 1.0:
                open_new(None)  # an instance that started since: all of its log
                last_scan = time.monotonic()
            if wrote:
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    finally:
        for fh in handles.values():
            fh.close()


def _check_replicas(info: KindInfo, replicas: int) -> None:
    """Refuse a count the kind's spec.replicas does not allow, before anything is read."""
    field = info.model.model_fields["spec"].annotation.model_fields["replicas"]  # type: ignore[union-attr]
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    if (low is not None and replicas < low) or (high is not None and replicas > high):
        raise ValidationError(
            f"invalid --replicas {replicas}: {info.singular} spec.replicas allows {low} to {high}",
            hint=field.description,
        )


async def _scale(
    where: connect.Connection | KubeTarget,
    namespace: str,
    name: str,
    replicas: int,
    *,
    kind: str = "Application",
    timeout: float = 10.0,
) -> tuple[int, bool]:
    """Set spec.replicas (compare-and-set, retried on conflict): (the old value, autoscaling on).
    The changed object is validated as a whole before it is written."""
    old: list[int] = []
    set_replicas = set_spec(replicas=replicas)

    def change(obj: Resource) -> Resource | None:
        old[:] = [obj.spec.replicas]  # type: ignore[attr-defined]
        changed = set_replicas(obj)
        if changed is not None:
            parse_object(to_dict(changed), source=f"{obj.kind.lower()}/{obj.name}")
        return changed

    async with open_store(where, timeout) as store:
        written = await store.modify(kind, namespace, name, change)
    assert written is not None
    return old[0], isinstance(written, Application) and written.spec.autoscaling is not None


def register(app: typer.Typer) -> None:
    @app.command()
    def logs(
        ctx: typer.Context,
        target: str = typer.Argument(..., help="app/NAME"),
        instance: str | None = typer.Argument(None, help="One instance (default: all)."),
        follow: bool = typer.Option(False, "--follow", "-f"),
        namespace: str = typer.Option("default", "--namespace", "-n"),
        tail: int = typer.Option(50, "--tail"),
    ) -> None:
        """Show an application's instance logs (local platform)."""
        name = _app_name(target)
        base = ctx.obj.state_dir / "apps" / namespace / name
        pattern = instance or "*"
        if not any(base.glob(f"{pattern}/instance.log")):
            raise ZkopError(
                f"no logs for application {namespace}/{name}" + (f" instance {instance}" if instance else ""),
                hint=f"logs are kept in {base} on the machine that runs the instances (see --state-dir)",
            )
        with contextlib.suppress(KeyboardInterrupt):
            _follow(base, pattern, follow, tail)

    @app.command()
    def scale(
        ctx: typer.Context,
        kind: str = typer.Argument(..., help="app or zkc (KIND NAME, or KIND/NAME)"),
        name: str | None = typer.Argument(None),
        replicas: int = typer.Option(..., "--replicas", min=0, help="New spec.replicas."),
        namespace: str = typer.Option("default", "--namespace", "-n"),
        zk: str | None = zk_option(),
        timeout: float = timeout_option(),
        root: str | None = root_option(),
        kubeconfig: str | None = kubeconfig_option(),
        context: str | None = context_option(),
    ) -> None:
        """Set the replicas of an application (autoscaling, when on, keeps its own bounds) or of
        a ZooKeeper cluster (the operator changes its membership one member at a time)."""
        with user_errors():
            if "/" in kind:
                if name is not None:
                    raise ValidationError(f"give the name once: {kind} or {kind.partition('/')[0]} NAME, not both")
                kind, _, name = kind.partition("/")
            info = resolve_kind(kind)
            if info.kind not in SCALABLE:
                raise ZkopError(f"scale applies to applications and zookeeperclusters, not {info.plural}")
            if not name:
                raise ValidationError(f"which {info.singular}? give its name")
            for what, value in (("name", name), ("namespace", namespace)):
                if problem := dns_label_problem(value):
                    raise ValidationError(f"invalid {what} {value!r}: {problem}")
            _check_replicas(info, replicas)
            target = Target.of(ctx, zk, timeout, root, kubeconfig, context)
            place = target.where()
            old, autoscaling = run(_scale(place, namespace, name, replicas, kind=info.kind, timeout=target.timeout))
        console.print(f"{info.singular}/{name} scaled from {old} to {replicas}")
        if autoscaling:
            console.print(
                "note: autoscaling is on; it decides the running count (status.desiredReplicas) "
                "within minReplicas..maxReplicas, spec.replicas is only its starting point"
            )
