"""``zkop logs app/NAME [INSTANCE] [-f]`` and ``zkop scale app NAME --replicas N``."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import typer

from zkop.api import Application, resolve_kind
from zkop.cli.output import console
from zkop.client import connect
from zkop.errors import ZkopError
from zkop.store import Conflict, Store


def _app_name(target: str) -> str:
    kind, sep, name = target.partition("/")
    if not sep:
        return kind
    if resolve_kind(kind).kind != "Application":
        raise ZkopError(f"logs are kept for applications, not {kind}", hint="use app/NAME")
    return name


def _follow(files: list[Path], follow: bool, lines: int) -> None:
    handles = []
    for f in files:
        text = f.read_text(errors="replace").splitlines()[-lines:]
        prefix = f"[{f.parent.name}] " if len(files) > 1 else ""
        for line in text:
            sys.stdout.write(prefix + line + "\n")
        fh = f.open("r", errors="replace")
        fh.seek(0, 2)
        handles.append((prefix, fh))
    sys.stdout.flush()
    while follow:
        wrote = False
        for prefix, fh in handles:
            for line in fh.readlines():
                sys.stdout.write(prefix + line)
                wrote = True
        if wrote:
            sys.stdout.flush()
        else:
            time.sleep(0.2)


async def _scale(conn: connect.Connection, namespace: str, name: str, replicas: int) -> int:
    client = conn.client()
    await client.start(timeout=10)
    try:
        store = Store(client, root=conn.root, acl=conn.acl())
        for _ in range(5):
            obj = await store.get("Application", namespace, name)
            assert isinstance(obj, Application)
            old = obj.spec.replicas
            try:
                await store.update(obj.model_copy(update={"spec": obj.spec.model_copy(update={"replicas": replicas})}))
                return old
            except Conflict:
                continue
        raise ZkopError(f"application {namespace}/{name} kept changing; try again")
    finally:
        await client.stop()


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
        files = sorted(base.glob(f"{instance or '*'}/instance.log"))
        if not files:
            raise ZkopError(
                f"no logs for application {namespace}/{name}" + (f" instance {instance}" if instance else "")
            )
        with contextlib.suppress(KeyboardInterrupt):
            _follow(files, follow, tail)

    @app.command()
    def scale(
        ctx: typer.Context,
        kind: str = typer.Argument(..., help="app"),
        name: str = typer.Argument(...),
        replicas: int = typer.Option(..., "--replicas", min=0, help="New spec.replicas."),
        namespace: str = typer.Option("default", "--namespace", "-n"),
        zk: str | None = typer.Option(None, "--zk", envvar="ZKOP_ZK"),
        root: str | None = typer.Option(None, "--root", envvar="ZKOP_ROOT", hidden=True),
    ) -> None:
        """Set an application's replicas (autoscaling, when on, keeps its own bounds)."""
        if resolve_kind(kind).kind != "Application":
            raise ZkopError(f"scale applies to applications, not {kind}")
        conn = connect.resolve(zk, ctx.obj.state_dir, root)
        old = asyncio.run(_scale(conn, namespace, name, replicas))
        console.print(f"application/{name} scaled from {old} to {replicas}")
