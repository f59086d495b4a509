"""``zkop proxy NS/APP --listen 127.0.0.1:PORT``: a TCP proxy over a service's endpoints.

Discovery needs no credentials (endpoints are world-readable), so the proxy connects
anonymously unless ``ZKOP_AUTH`` is set. The control plane is ``--zk``, else ``ZKOP_ZK``,
else the local one ``zkop up`` started.
"""

from __future__ import annotations

import asyncio
import os
import signal

import typer

from zkop.cli import connection
from zkop.cli.output import console
from zkop.cli.session import root_option, zk_option
from zkop.client import connect
from zkop.discovery import AsyncServiceDiscovery, Proxy, registry
from zkop.discovery.strategies import STRATEGY_NAMES, make_strategy
from zkop.errors import ConfigurationError, ZkopError


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; ``:PORT`` means 127.0.0.1) -> (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ZkopError(f"--listen {value!r} is not HOST:PORT", hint="e.g. --listen 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def _control_plane(zk: str | None, ctx: typer.Context, root: str | None) -> tuple[str, str, list[tuple[str, str]]]:
    """(hosts, root, auth_data) of the control plane; auth only when ZKOP_AUTH asks for it."""
    state_dir = getattr(ctx.obj, "state_dir", None)
    try:
        conn = connection.resolve(zk, state_dir, root)
    except ConfigurationError:
        hosts = zk or os.environ.get("ZKOP_ZK")
        if not hosts or os.environ.get("ZKOP_AUTH"):
            raise
        return hosts, root or connect.DEFAULT_ROOT, []  # no credentials needed for discovery
    return conn.hosts, conn.root, (conn.auth_data if os.environ.get("ZKOP_AUTH") else [])


async def _run(
    hosts: str,
    root: str,
    auth: list[tuple[str, str]],
    service: str,
    listen: tuple[str, int],
    strategy: str,
    attempts: int,
    connect_timeout: float,
    grace: float,
    retry_empty_response: bool = False,
) -> None:
    async with AsyncServiceDiscovery(hosts, root=root, auth_data=auth) as sd:
        provider = await sd.provider(service, strategy=strategy)
        proxy = Proxy(
            provider,
            host=listen[0],
            port=listen[1],
            attempts=attempts,
            connect_timeout=connect_timeout,
            grace=grace,
            retry_empty_response=retry_empty_response,
        )
        try:
            await proxy.start()
        except OSError as exc:
            raise ZkopError(
                f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}",
                hint="choose another --listen port, or port 0 for a free one",
            ) from None
        console.print(
            f"proxying {proxy.address} -> {provider.service} ({strategy}, {len(provider.instances())} endpoint(s) now);"
            " Ctrl-C stops",
            soft_wrap=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        console.print(f"stopping: {proxy.stats.active} open connection(s) get up to {grace:g}s", soft_wrap=True)
        await proxy.stop()
        s = proxy.stats
        replayed = f", {s.replays} replayed after an empty response" if retry_empty_response else ""
        console.print(
            f"stopped: {s.forwarded} forwarded, {s.connect_failures} connect failure(s) retried, {s.refused} refused"
            + replayed,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    @app.command()
    def proxy(
        ctx: typer.Context,
        service: str = typer.Argument(..., help="NAMESPACE/APP (a bare APP means namespace default)."),
        listen: str = typer.Option("127.0.0.1:0", "--listen", help="HOST:PORT to listen on (port 0: a free one)."),
        strategy: str = typer.Option("round_robin", "--strategy", help="One of: " + ", ".join(STRATEGY_NAMES) + "."),
        attempts: int = typer.Option(3, "--attempts", min=1, help="Instances to try per connection."),
        connect_timeout: float = typer.Option(1.0, "--connect-timeout", min=0.01, help="Seconds per connect attempt."),
        grace: float = typer.Option(5.0, "--grace", min=0, help="Seconds open connections get to finish on stop."),
        retry_empty_response: bool = typer.Option(
            False,
            "--retry-empty-response",
            help="When an endpoint ends a connection without answering a byte, send the request (up to 64 KiB)"
            " to another endpoint. Only for idempotent protocols: the first may have acted on it.",
        ),
        zk: str | None = zk_option(),
        root: str | None = root_option(),
    ) -> None:
        """Forward TCP connections to a service's ready endpoints, retrying another on connect failure."""
        try:
            make_strategy(strategy)
            registry.parse_service(service)
        except ValueError as exc:
            raise ZkopError(str(exc)) from None
        hosts, zk_root, auth = _control_plane(zk, ctx, root)
        asyncio.run(
            _run(
                hosts,
                zk_root,
                auth,
                service,
                parse_listen(listen),
                strategy,
                attempts,
                connect_timeout,
                grace,
                retry_empty_response,
            )
        )
