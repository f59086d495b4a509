"""``zkop files serve | seed``: the member file agent a ZooKeeper member Pod runs
(:mod:`zkop.platform.kubernetes.files`). Not for people: the Kubernetes platform puts it in the
Pods it makes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import typer

from zkop.cli.session import user_errors
from zkop.errors import ZkopError

app = typer.Typer(name="files", help="The member file agent run in ZooKeeper member Pods.", no_args_is_help=True)


def _run(data: Path, host: str | None, port: int, tls_pem: Path | None, truststore: Path | None, *, seed: bool) -> None:
    from zkop.platform.kubernetes.files import TOKEN_ENV, serve, server_context

    token = os.environ.get(TOKEN_ENV, "")
    tls = None
    with user_errors():
        if not token:
            raise ZkopError(f"{TOKEN_ENV} is empty", hint="the Pod takes it from the cluster Secret's files-token key")
        if tls_pem is not None:
            if truststore is None:
                raise ZkopError("--tls-pem needs --truststore (the CA that signs client certificates)")
            tls = server_context(tls_pem, truststore)

    async def main() -> None:
        task = asyncio.ensure_future(serve(data, token, host=host, port=port, seed=seed, tls=tls))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


DATA = typer.Option(Path("/data"), "--data", help="The member's data directory (holding version-2).")
PORT_OPT = typer.Option(9141, "--port", min=1, max=65535)
HOST = typer.Option(None, "--host", help="The address to listen on (default: every address of the Pod).")
TLS_PEM = typer.Option(None, "--tls-pem", help="Key and certificate (PEM) to serve TLS with.")
TRUST = typer.Option(None, "--truststore", help="CA certificates (PEM) client certificates must chain to.")


@app.command()
def serve(
    data: Path = DATA,
    host: str | None = HOST,
    port: int = PORT_OPT,
    tls_pem: Path | None = TLS_PEM,
    truststore: Path | None = TRUST,
) -> None:
    """Serve the member's snapshots and logs (read-only) until stopped."""
    _run(data, host, port, tls_pem, truststore, seed=False)


@app.command()
def seed(
    data: Path = DATA,
    host: str | None = HOST,
    port: int = PORT_OPT,
    tls_pem: Path | None = TLS_PEM,
    truststore: Path | None = TRUST,
) -> None:
    """Receive a backup's files into an empty volume, then end (at once when it holds data)."""
    _run(data, host, port, tls_pem, truststore, seed=True)
