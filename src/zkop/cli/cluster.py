"""``zkop restart zookeepercluster NAME``: ask for a rolling restart; ``zkop zkc ...`` (:mod:`.zkc`) and
``zkop backup ...`` (:mod:`.backup`) are registered here too."""

from __future__ import annotations

import datetime as dt

import typer

from zkop.api import resolve_kind
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
from zkop.controllers.zookeepercluster.controller import RESTART_ANNOTATION
from zkop.errors import ZkopError
from zkop.store.modify import set_annotation


async def _restart(where: connect.Connection | KubeTarget, namespace: str, name: str, *, timeout: float = 10.0) -> str:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    async with open_store(where, timeout) as store:
        await store.modify("ZookeeperCluster", namespace, name, set_annotation(RESTART_ANNOTATION, stamp))
    return stamp


def register(app: typer.Typer) -> None:
    from zkop.cli import backup
    from zkop.cli.zkc import app as zkc_app

    app.add_typer(zkc_app, name="zkc")
    backup.register(app)

    @app.command()
    def restart(
        ctx: typer.Context,
        kind: str = typer.Argument(..., help="zookeepercluster (zkc)"),
        name: str = typer.Argument(...),
        namespace: str = typer.Option("default", "--namespace", "-n"),
        zk: str | None = zk_option(),
        timeout: float = timeout_option(),
        root: str | None = root_option(),
        kubeconfig: str | None = kubeconfig_option(),
        context: str | None = context_option(),
    ) -> None:
        """Roll every member (unready first, followers next, the leader last), keeping quorum."""
        with user_errors():
            info = resolve_kind(kind)
            if info.kind != "ZookeeperCluster":
                raise ZkopError(f"restart applies to zookeeperclusters, not {info.plural}")
            target = Target.of(ctx, zk, timeout, root, kubeconfig, context)
            stamp = run(_restart(target.where(), namespace, name, timeout=target.timeout))
        console.print(f"zookeepercluster/{name} restart requested ({RESTART_ANNOTATION}={stamp})")
