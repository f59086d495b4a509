"""``zkop restart zookeepercluster NAME``: ask for a rolling restart."""

from __future__ import annotations

import asyncio
import datetime as dt

import typer

from zkop.api import resolve_kind
from zkop.cli import connection
from zkop.cli.output import console
from zkop.cli.session import open_store, root_option, zk_option
from zkop.client import connect
from zkop.controllers.zookeepercluster.controller import RESTART_ANNOTATION
from zkop.errors import ZkopError
from zkop.store.modify import set_annotation


async def _restart(conn: connect.Connection, namespace: str, name: str) -> str:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    async with open_store(conn, timeout=10) as store:
        await store.modify("ZookeeperCluster", namespace, name, set_annotation(RESTART_ANNOTATION, stamp))
    return stamp


def register(app: typer.Typer) -> None:
    @app.command()
    def restart(
        ctx: typer.Context,
        kind: str = typer.Argument(..., help="zookeepercluster (zkc)"),
        name: str = typer.Argument(...),
        namespace: str = typer.Option("default", "--namespace", "-n"),
        zk: str | None = zk_option(),
        root: str | None = root_option(),
    ) -> None:
        """Roll every member (unready first, followers next, the leader last), keeping quorum."""
        info = resolve_kind(kind)
        if info.kind != "ZookeeperCluster":
            raise ZkopError(f"restart applies to zookeeperclusters, not {info.plural}")
        conn = connection.resolve(zk, ctx.obj.state_dir, root)
        stamp = asyncio.run(_restart(conn, namespace, name))
        console.print(f"zookeepercluster/{name} restart requested ({RESTART_ANNOTATION}={stamp})")
