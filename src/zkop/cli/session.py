"""One command's session with the control plane: where it is (the common ``--zk``,
``--timeout`` and ``--root`` options), a store on a fresh ZooKeeper session whose waits are
bounded, one ``asyncio.run``, and every refusal turned into one message and exit status 1
(never a traceback)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer
from kazoo.exceptions import ConnectionClosedError, ConnectionLoss, KazooException, NoAuthError, SessionExpiredError

from zkop.cli.connection import resolve as resolve_connection
from zkop.cli.output import fail
from zkop.client import connect
from zkop.client.bridge import TransactionFailed, Unavailable
from zkop.errors import ValidationError, ZkopError
from zkop.store import Store

T = TypeVar("T")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Any refusal becomes one message on stderr and exit status 1."""
    try:
        yield
    except ZkopError as exc:
        fail(str(exc))
        raise typer.Exit(1) from None
    except KazooException as exc:  # pragma: no cover - mapped in open_store already
        fail(f"ZooKeeper refused the request: {type(exc).__name__} {exc}".strip())
        raise typer.Exit(1) from None


@dataclass(frozen=True)
class Target:
    """Where the control plane is: the common options of every command."""

    zk: str | None
    timeout: float
    root: str | None
    state_dir: Path | None

    def connection(self) -> connect.Connection:
        if self.root is not None and (not self.root.startswith("/") or self.root.rstrip("/") == ""):
            raise ValidationError(f"invalid root {self.root!r}", hint="use an absolute znode path such as /zkop")
        return resolve_connection(self.zk, self.state_dir, self.root)

    @classmethod
    def of(cls, ctx: typer.Context, zk: str | None, timeout: float, root: str | None) -> Target:
        """The target a command's ``--zk``, ``--timeout`` and ``--root`` name."""
        state_dir = getattr(ctx.obj, "state_dir", None) if ctx.obj is not None else None
        return cls(zk=zk, timeout=timeout, root=root, state_dir=state_dir)


def _zk_error(exc: BaseException, conn: connect.Connection) -> ZkopError | None:
    if isinstance(exc, TransactionFailed) and isinstance(exc.error, BaseException):
        exc = exc.error
    if isinstance(exc, NoAuthError):
        return ZkopError(
            f"not allowed to use {conn.root} on {conn.hosts} as {conn.user!r}",
            hint="check ZKOP_AUTH=user:password",
        )
    if isinstance(exc, ConnectionLoss | ConnectionClosedError | SessionExpiredError):
        return Unavailable(
            f"lost the connection to ZooKeeper at {conn.hosts}", hint="is the control plane up? then retry"
        )
    if isinstance(exc, KazooException):
        return ZkopError(f"ZooKeeper refused the request: {type(exc).__name__}", hint=str(exc) or None)
    return None


@contextlib.asynccontextmanager
async def open_store(conn: connect.Connection, timeout: float) -> AsyncIterator[Store]:
    """A store on a fresh session. Waiting for ZooKeeper is bounded by ``timeout``: to
    connect, and again whenever the connection drops while the command runs."""
    try:
        client = conn.client()
    except ValueError as exc:
        raise ValidationError(
            f"invalid ZooKeeper hosts {conn.hosts!r}: {exc}", hint="use host:port[,host:port...]"
        ) from None
    await client.start(timeout=timeout)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    lost: list[str] = []
    pending: list[asyncio.TimerHandle] = []

    def give_up(why: str) -> None:
        if not lost and task is not None:
            lost.append(why)
            task.cancel()

    def on_state(state: str) -> None:
        if state == "SUSPENDED" and not pending:
            pending.append(loop.call_later(timeout, give_up, f"no connection for {timeout:.0f}s"))
        elif state == "CONNECTED":
            while pending:
                pending.pop().cancel()
        elif state == "LOST":
            give_up("the session expired")

    client.add_state_listener(on_state)
    try:
        yield Store(client, root=conn.root, acl=conn.acl())
    except asyncio.CancelledError:
        if lost:
            raise Unavailable(
                f"lost the connection to ZooKeeper at {conn.hosts} ({lost[0]})",
                hint="is the control plane up? then retry",
            ) from None
        raise
    except (KazooException, TransactionFailed) as exc:
        mapped = _zk_error(exc, conn)
        if mapped is None:
            raise
        raise mapped from None
    finally:
        client.remove_state_listener(on_state)
        for handle in pending:
            handle.cancel()
        await client.stop()


def _quiet_kazoo() -> None:
    """kazoo logs every failed connection attempt; with no logging set up those lines would
    reach stderr through logging's last resort. The command reports the outcome itself."""
    kazoo_log = logging.getLogger("kazoo")
    if not any(isinstance(h, logging.NullHandler) for h in kazoo_log.handlers):
        kazoo_log.addHandler(logging.NullHandler())


def _on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # A failed read whose sibling read also failed leaves a task nobody awaits; its
    # exception (NoAuth, connection loss) was already reported through the awaited one.
    if isinstance(context.get("exception"), KazooException | ZkopError):
        return
    loop.default_exception_handler(context)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` for one command, without kazoo's or asyncio's noise on stderr."""
    _quiet_kazoo()

    async def wrapped() -> T:
        asyncio.get_running_loop().set_exception_handler(_on_loop_error)
        return await main

    return asyncio.run(wrapped())


def zk_option() -> Any:
    return typer.Option(
        None,
        "--zk",
        envvar="ZKOP_ZK",
        help="Control-plane hosts (host:port,...); default: the local control plane.",
    )


def timeout_option() -> Any:
    return typer.Option(
        10.0, "--timeout", min=0.1, max=600.0, help="Seconds to wait for the control plane before giving up."
    )


def root_option() -> Any:
    return typer.Option(None, "--root", envvar="ZKOP_ROOT", hidden=True, help="Root znode of the control plane.")


__all__ = ["Target", "open_store", "root_option", "run", "timeout_option", "user_errors", "zk_option"]
