"""``zkop logs app/NAME [INSTANCE] [-f]`` and ``zkop scale app NAME --replicas N``."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import TextIO

import typer

from zkop.api import Application, Resource, resolve_kind
from zkop.cli import connection
from zkop.cli.output import console
from zkop.cli.session import open_store, root_option, zk_option
from zkop.client import connect
from zkop.errors import ZkopError
from zkop.store.modify import set_spec


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


async def _scale(conn: connect.Connection, namespace: str, name: str, replicas: int) -> tuple[int, bool]:
    """Set spec.replicas (compare-and-set, retried on conflict): (the old value, autoscaling on)."""
    old: list[int] = []
    set_replicas = set_spec(replicas=replicas)

    def change(obj: Resource) -> Resource | None:
        assert isinstance(obj, Application)
        old[:] = [obj.spec.replicas]
        return set_replicas(obj)

    async with open_store(conn, timeout=10) as store:
        written = await store.modify("Application", namespace, name, change)
    assert isinstance(written, Application)
    return old[0], written.spec.autoscaling is not None


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
        kind: str = typer.Argument(..., help="app"),
        name: str = typer.Argument(...),
        replicas: int = typer.Option(..., "--replicas", min=0, help="New spec.replicas."),
        namespace: str = typer.Option("default", "--namespace", "-n"),
        zk: str | None = zk_option(),
        root: str | None = root_option(),
    ) -> None:
        """Set an application's replicas (autoscaling, when on, keeps its own bounds)."""
        if resolve_kind(kind).kind != "Application":
            raise ZkopError(f"scale applies to applications, not {kind}")
        conn = connection.resolve(zk, ctx.obj.state_dir, root)
        old, autoscaling = asyncio.run(_scale(conn, namespace, name, replicas))
        console.print(f"application/{name} scaled from {old} to {replicas}")
        if autoscaling:
            console.print(
                "note: autoscaling is on; it decides the running count (status.desiredReplicas) "
                "within minReplicas..maxReplicas, spec.replicas is only its starting point"
            )
