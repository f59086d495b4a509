"""``zkop dashboard``: a live, read-only web page of the control plane, the ZooKeeper clusters,
the applications and the events (see :mod:`zkop.dashboard`), and the same page on the
operator's HTTP port (``zkop operator run --dashboard``, through :func:`attach`)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import signal
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from zkop.api import Application
from zkop.cli.operator import MANAGER_NAME
from zkop.cli.output import out
from zkop.cli.session import Target, root_option, run, timeout_option, user_errors, zk_option
from zkop.client.connect import Connection
from zkop.dashboard import Dashboard, DashboardHTTP, Guard, LocalSources, is_loopback, parse_listen
from zkop.dashboard.auth import DEFAULT_HOST, DEFAULT_PORT, new_token
from zkop.errors import ValidationError, ZkopError
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.runtime.manager import Manager

log = logging.getLogger("zkop.dashboard")

_TOKEN = re.compile(r"^[A-Za-z0-9._~-]{12,256}$")


def check_token(token: str | None) -> str | None:
    if token is None or token == "":
        return None
    if not _TOKEN.fullmatch(token):
        raise ValidationError(
            "invalid --token: use at least 12 characters of letters, digits, '.', '_', '~' and '-'",
            hint="or leave it out and zkop dashboard makes one",
        )
    return token


def revision_of(app: Application) -> str:
    from zkop.controllers.application.controller import template_hash

    return template_hash(app)


def local_sources(state_dir: Path) -> LocalSources:
    """The local control plane's members and keeper events, and the revision of each instance
    the local platform runs on this machine."""
    from zkop.cli.local import status_dict
    from zkop.platform.local.cgroups import Cgroups
    from zkop.platform.local.instances import LocalInstances
    from zkop.platform.local.platform import LocalPlatform

    ensemble = LocalEnsemble(state_dir, statedir.CONTROL_PLANE)
    instances = LocalInstances(state_dir, LocalPlatform(state_dir).fence, Cgroups(None))  # read-only use

    async def control_plane() -> Mapping[str, Any]:
        return status_dict(ensemble, await ensemble.observe(timeout=0.5))

    def instance_revisions(namespace: str, app: str) -> Mapping[str, str]:
        return {r.name: r.template_hash for r in instances.records(namespace, app)}

    return LocalSources(control_plane=control_plane, instance_revisions=instance_revisions)


def _listen_error(host: str, port: int, exc: OSError) -> ZkopError:
    # asyncio words a failed bind its own way ("error while attempting to bind on address ...").
    if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
        reason = exc.strerror or str(exc) or type(exc).__name__
    else:
        reason = os.strerror(exc.errno)
    if exc.errno == errno.EADDRINUSE:
        hint = "another process uses that port: pick another with --listen HOST:PORT (port 0 picks a free one)"
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need privileges: pick a higher one with --listen HOST:PORT"
    elif isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        hint = "the host is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its addresses"
    else:
        hint = "check --listen HOST:PORT"
    return ZkopError(f"cannot listen on {host}:{port}: {reason}", hint=hint)


def url(host: str, port: int, token: str | None) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


async def serve(
    conn: Connection,
    host: str,
    port: int,
    token: str | None,
    local: LocalSources | None,
    *,
    refresh: float = 2.0,
    connect_timeout: float = 10.0,
) -> None:
    """Serve until SIGINT or SIGTERM."""
    dashboard = Dashboard(
        conn,
        manager=MANAGER_NAME,
        local=local,
        refresh=refresh,
        revision_of=revision_of,
        connect_timeout=connect_timeout,
    )
    web = DashboardHTTP(dashboard.feed, Guard(token))
    try:
        server = await asyncio.start_server(web.connection, host, port)
    except OSError as exc:
        raise _listen_error(host, port, exc) from None
    bound = int(server.sockets[0].getsockname()[1])
    web.guard = Guard(token, cookie_name=f"zkop_dashboard_{bound}")  # one cookie per port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    out(f"zkop dashboard: {url(host, bound, token)}\n")
    if token is not None:
        out("  every request needs this token (the link carries it; or send Authorization: Bearer TOKEN)\n")
    out(f"  control plane {conn.hosts}; read-only; Ctrl-C stops it\n")
    try:
        await dashboard.run(stop)
    finally:
        server.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def attach(manager: Manager, conn: Connection, state_dir: Path | None, stop: asyncio.Event) -> asyncio.Task[None]:
    """Serve the dashboard on the operator's HTTP port (its other paths than /metrics, /healthz
    and /readyz) until ``stop``; ``state_dir``: the local control plane's, when it is local.
    Call before the manager runs."""
    host = manager.options.metrics_host
    token = None if is_loopback(host) else new_token()
    dashboard = Dashboard(
        conn,
        manager=manager.options.name,
        local=local_sources(state_dir) if state_dir is not None else None,
        revision_of=revision_of,
    )
    web = DashboardHTTP(dashboard.feed, Guard(token, cookie_name="zkop_operator_dashboard"))
    manager.options.http_fallback = web.handle

    async def run_it() -> None:
        started = asyncio.create_task(manager.started.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({started, stopped}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        stopped.cancel()
        if manager.health is not None:
            log.info("dashboard on %s", url(host, manager.health.port, token))
        await dashboard.run(stop)

    return asyncio.create_task(run_it(), name="dashboard")


def register(app: typer.Typer) -> None:
    @app.command()
    def dashboard(
        ctx: typer.Context,
        listen: str = typer.Option(
            f"{DEFAULT_HOST}:{DEFAULT_PORT}",
            "--listen",
            "-l",
            metavar="HOST:PORT",
            help="Where to serve the page (port 0: any free one). Beyond loopback a token is required.",
        ),
        token: str | None = typer.Option(
            None,
            "--token",
            envvar="ZKOP_DASHBOARD_TOKEN",
            help="The token every request must carry (default beyond loopback: a new one, printed).",
        ),
        refresh: float = typer.Option(
            2.0, "--refresh", min=0.5, max=60.0, help="Seconds between looks besides those watches trigger."
        ),
        zk: str | None = zk_option(),
        timeout: float = timeout_option(),
        root: str | None = root_option(),
    ) -> None:
        """Serve a live, read-only web page: the control plane, each ZooKeeper cluster and
        application, and recent events (updated over server-sent events; no internet needed)."""
        with user_errors():
            host, port = parse_listen(listen)
            token = check_token(token)
            if token is None and not is_loopback(host):
                token = new_token()
            target = Target.of(ctx, zk, timeout, root)
            conn = target.connection()
            try:
                conn.client()  # only checks the host list; connecting is the dashboard's, retried
            except ValueError as exc:
                raise ValidationError(
                    f"invalid ZooKeeper hosts {conn.hosts!r}: {exc}", hint="use host:port[,...]"
                ) from None
            state_dir = target.state_dir
            local = None
            if zk is None and state_dir is not None and LocalEnsemble(state_dir, statedir.CONTROL_PLANE).exists():
                local = local_sources(state_dir)
            run(serve(conn, host, port, token, local, refresh=refresh, connect_timeout=target.timeout))


__all__ = ["attach", "check_token", "local_sources", "register", "serve", "url"]
