"""One command's session with the control plane: where it is (the common ``--zk``,
``--timeout`` and ``--root`` options, or ``--kubeconfig`` and ``--context`` for the custom
resources of a Kubernetes API server), a store on a fresh session whose waits are bounded,
one ``asyncio.run``, and every refusal turned into one message and exit status 1 (never a
traceback).

Kubernetes is chosen only by ``--kubeconfig PATH`` or ``ZKOP_KUBECONFIG``: the plain
``KUBECONFIG`` and ``~/.kube/config`` are never read on their own, so a kubectl user's
environment does not move zkop's commands off the local control plane by accident.
``--kubeconfig in-cluster`` uses the ServiceAccount of the Pod zkop runs in (a file of that
name is ``./in-cluster``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import typer
from kazoo.exceptions import ConnectionClosedError, ConnectionLoss, KazooException, NoAuthError, SessionExpiredError

from zkop.cli.connection import resolve as resolve_connection
from zkop.cli.output import fail
from zkop.client import connect
from zkop.client.bridge import TransactionFailed, Unavailable
from zkop.errors import ConfigurationError, ValidationError, ZkopError
from zkop.store import Store
from zkop.store.base import ResourceStore

if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s

    from zkop.store.kube import KubeStore

T = TypeVar("T")

#: ``--kubeconfig in-cluster``: the ServiceAccount of the Pod zkop runs in.
IN_CLUSTER = "in-cluster"
#: How to install zkop's CustomResourceDefinitions (the hint when they are missing).
INSTALL_CRDS = "zkop kube crds | kubectl apply -f -"


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
class KubeTarget:
    """A Kubernetes API server: a kubeconfig file (and one of its contexts), or in-cluster."""

    kubeconfig: str
    context: str | None = None

    @property
    def in_cluster(self) -> bool:
        return self.kubeconfig == IN_CLUSTER

    def check(self) -> KubeTarget:
        """Refuse what cannot work before anything is asked of the API server."""
        if self.in_cluster:
            if self.context is not None:
                raise ValidationError("--context names a context of a kubeconfig file, not of --kubeconfig in-cluster")
            return self
        path = Path(self.kubeconfig).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"no kubeconfig at {path}",
                hint="--kubeconfig (or ZKOP_KUBECONFIG) names a kubeconfig file, or in-cluster inside a Pod",
            )
        return self


@dataclass(frozen=True)
class Target:
    """Where the control plane is: the common options of every command."""

    zk: str | None
    timeout: float
    root: str | None
    state_dir: Path | None
    kubeconfig: str | None = None
    context: str | None = None

    @property
    def on_kubernetes(self) -> bool:
        """Whether the resources are the custom resources of a Kubernetes API server."""
        return self.kubeconfig is not None

    def connection(self) -> connect.Connection:
        if self.root is not None and (not self.root.startswith("/") or self.root.rstrip("/") == ""):
            raise ValidationError(f"invalid root {self.root!r}", hint="use an absolute znode path such as /zkop")
        return resolve_connection(self.zk, self.state_dir, self.root)

    def kube(self) -> KubeTarget:
        if self.kubeconfig is None:
            raise ValidationError("no Kubernetes API server given", hint="pass --kubeconfig PATH")
        return KubeTarget(self.kubeconfig, self.context).check()

    def where(self) -> connect.Connection | KubeTarget:
        """The store to open (:func:`open_store`): the Kubernetes API with ``--kubeconfig``,
        else the ZooKeeper control plane. Resolved before anything runs, so a missing
        kubeconfig or control plane is reported before any input is sent."""
        return self.kube() if self.on_kubernetes else self.connection()

    @classmethod
    def of(
        cls,
        ctx: typer.Context,
        zk: str | None,
        timeout: float,
        root: str | None,
        kubeconfig: str | None = None,
        context: str | None = None,
    ) -> Target:
        """The target a command's ``--zk``, ``--timeout``, ``--root``, ``--kubeconfig`` and
        ``--context`` name."""
        if kubeconfig == "":
            kubeconfig = None
        if context is not None and kubeconfig is None:
            if _given_on_command_line(ctx, "context"):
                raise ValidationError(
                    "--context needs --kubeconfig",
                    hint="zkop reads no kubeconfig unless --kubeconfig or ZKOP_KUBECONFIG names one",
                )
            context = None  # ZKOP_KUBE_CONTEXT alone does not switch to Kubernetes
        if kubeconfig is not None and zk is not None and _given_on_command_line(ctx, "zk"):
            raise ValidationError("give --zk or --kubeconfig, not both: they name different stores")
        state_dir = getattr(ctx.obj, "state_dir", None) if ctx.obj is not None else None
        return cls(zk=zk, timeout=timeout, root=root, state_dir=state_dir, kubeconfig=kubeconfig, context=context)


def _given_on_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", None) == "COMMANDLINE"


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
async def _open_zk_store(conn: connect.Connection, timeout: float) -> AsyncIterator[Store]:
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


@contextlib.asynccontextmanager
async def _open_kube_store(target: KubeTarget, timeout: float) -> AsyncIterator[KubeStore]:
    """The custom resources of a Kubernetes API server. ``timeout`` bounds reaching it: the
    first request (discovery of the ``zkop.io/v1`` group, which also tells whether zkop's CRDs
    are installed) must be answered within it."""
    import aiohttp
    from kubernetes_asyncio.client.rest import ApiException

    from zkop.client.kube import api_client
    from zkop.store.kube import KubeStore

    api = await api_client(target.kubeconfig, target.context)
    server = str(api.configuration.host)
    try:
        try:
            await _served_kinds(api, server, timeout)
            yield KubeStore(api, source="zkop-cli")
        except ApiException as exc:
            raise _kube_error(exc, server) from None
        except aiohttp.ClientError as exc:
            raise Unavailable(
                f"cannot reach the Kubernetes API server at {server}: {_reason(exc)}",
                hint="is it up? check --kubeconfig and --context",
            ) from None
    finally:
        await api.close()


async def _served_kinds(api: k8s.ApiClient, server: str, timeout: float) -> None:
    """Check that the API server answers and serves every zkop kind (its CRDs are installed)."""
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio.client.rest import ApiException

    from zkop.api import KINDS
    from zkop.store.kube import GROUP, VERSION

    try:
        async with asyncio.timeout(timeout):
            found = await k8s.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
    except TimeoutError:
        raise Unavailable(
            f"no answer from the Kubernetes API server at {server} within {timeout:g}s",
            hint="is it up? check --kubeconfig and --context, or raise --timeout",
        ) from None
    except ApiException as exc:
        if exc.status == 404:
            raise ConfigurationError(
                f"zkop's CustomResourceDefinitions are not installed on {server} (no {GROUP}/{VERSION} API)",
                hint=INSTALL_CRDS,
            ) from None
        raise
    served = {r.name for r in found.resources or []}
    missing = sorted(info.plural for info in KINDS.values() if info.plural not in served)
    if missing:
        raise ConfigurationError(
            f"zkop's CustomResourceDefinitions are not all installed on {server} (missing: {', '.join(missing)})",
            hint=INSTALL_CRDS,
        )


def _kube_error(exc: Any, server: str) -> ZkopError:
    """An ApiException no store call mapped (the discovery request's, mostly)."""
    from zkop.store.kube import forbidden

    if exc.status == 403:
        return forbidden(exc)
    if exc.status == 401:
        return ZkopError(
            f"unauthorized: the API server at {server} did not accept the credentials",
            hint="check the kubeconfig's user, or renew its token",
        )
    return ZkopError(f"the API server at {server} answered {exc.status} {exc.reason}".strip())


def _reason(exc: BaseException) -> str:
    """A connection failure in one line."""
    return " ".join((str(exc) or type(exc).__name__).split())


@overload
def open_store(where: connect.Connection, timeout: float) -> AbstractAsyncContextManager[Store]: ...


@overload
def open_store(where: KubeTarget, timeout: float) -> AbstractAsyncContextManager[KubeStore]: ...


@overload
def open_store(
    where: connect.Connection | KubeTarget, timeout: float
) -> AbstractAsyncContextManager[ResourceStore]: ...


def open_store(where: connect.Connection | KubeTarget, timeout: float) -> AbstractAsyncContextManager[Any]:
    """The store ``where`` names (:meth:`Target.where`): resources in ZooKeeper on a fresh
    session, or the custom resources of a Kubernetes API server. Reaching either is bounded by
    ``timeout``; their refusals come out as :class:`ZkopError` (one line)."""
    if isinstance(where, KubeTarget):
        return _open_kube_store(where, timeout)
    return _open_zk_store(where, timeout)


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


def kubeconfig_option() -> Any:
    return typer.Option(
        None,
        "--kubeconfig",
        envvar="ZKOP_KUBECONFIG",
        metavar="PATH",
        help="Use the custom resources of this Kubernetes API (a kubeconfig file, or in-cluster inside a Pod). "
        "KUBECONFIG alone is not read.",
    )


def context_option() -> Any:
    return typer.Option(
        None, "--context", envvar="ZKOP_KUBE_CONTEXT", help="The kubeconfig context to use (with --kubeconfig)."
    )


def root_option() -> Any:
    return typer.Option(None, "--root", envvar="ZKOP_ROOT", hidden=True, help="Root znode of the control plane.")


__all__ = [
    "INSTALL_CRDS",
    "IN_CLUSTER",
    "KubeTarget",
    "Target",
    "context_option",
    "kubeconfig_option",
    "open_store",
    "root_option",
    "run",
    "timeout_option",
    "user_errors",
    "zk_option",
]
