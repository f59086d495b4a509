"""``zkop proxy NS/APP --listen 127.0.0.1:PORT``: a TCP proxy over a service's endpoints."""

from __future__ import annotations

import asyncio
import signal

import typer

from zkop.cli.output import console
from zkop.client import connect
from zkop.discovery import AsyncServiceDiscovery, Proxy
from zkop.discovery.strategies import STRATEGY_NAMES
from zkop.errors import ZkopError


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ZkopError(f"--listen {value!r} is not HOST:PORT", hint="e.g. --listen 127.0.0.1:8080")
    return host or "127.0.0.1", int(port)


async def _run(conn: connect.Connection, service: str, host: str, port: int, strategy: str) -> None:
    sd = AsyncServiceDiscovery(conn.hosts, root=conn.root, auth_data=conn.auth_data)
    await sd.start()
    try:
        provider = await sd.provider(service, strategy=strategy)
        proxy = Proxy(provider, host=host, port=port)
        bound = await proxy.start()
        console.print(
            f"proxying {host}:{bound} -> {service} ({strategy}); "
            f"{len(provider.instances())} endpoint(s) now; Ctrl-C stops"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await proxy.stop()
        s = proxy.stats
        console.print(f"stopped: {s.forwarded} forwarded, {s.connect_failures} connect failures, {s.refused} refused")
    finally:
        await sd.close()


def register(app: typer.Typer) -> None:
    @app.command()
    def proxy(
        ctx: typer.Context,
        service: str = typer.Argument(..., help="NAMESPACE/APP"),
        listen: str = typer.Option("127.0.0.1:0", "--listen", help="HOST:PORT to accept connections on."),
        strategy: str = typer.Option("round_robin", "--strategy", help=", ".join(STRATEGY_NAMES)),
        zk: str | None = typer.Option(None, "--zk", envvar="ZKOP_ZK", help="Control-plane hosts."),
        root: str | None = typer.Option(None, "--root", envvar="ZKOP_ROOT", hidden=True),
    ) -> None:
        """Forward TCP connections to a service's ready endpoints, retrying another on connect failure."""
        if strategy.replace("-", "_") not in STRATEGY_NAMES:
            raise ZkopError(f"unknown strategy {strategy!r}", hint=f"use one of {', '.join(STRATEGY_NAMES)}")
        if "/" not in service:
            raise ZkopError(f"service {service!r} is not NAMESPACE/APP", hint="e.g. default/counter")
        host, port = _listen(listen)
        conn = connect.resolve(zk, ctx.obj.state_dir, root)
        asyncio.run(_run(conn, service, host, port, strategy))
