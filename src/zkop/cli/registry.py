"""``zkop registry grant | revoke | list``: who may write in the service registry.

Reading the registry needs no credentials; writing in it does. zkop makes the registry
folders and the identity (``svc/<ns>/<app>``) of every Application it runs and passes the
identity to the instances (``ZKOP_REGISTRY_AUTH``). A service that zkop does not run gets
both from ``zkop registry grant NS/APP``, run as the operator (``ZKOP_AUTH`` or the local
control plane's credentials), and registers with them
(``ServiceDiscovery.register(..., credentials=...)``). ``revoke`` takes them away again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import Permissions

from zkop.api import resolve_kind
from zkop.cli.output import Output, console, emit, err_console, table
from zkop.cli.session import Target, open_store, root_option, run, timeout_option, user_errors, zk_option
from zkop.client import connect
from zkop.client.bridge import ZkClient
from zkop.discovery import registry
from zkop.errors import ValidationError, ZkopError
from zkop.store import Store

app = typer.Typer(
    name="registry",
    help="Grant, revoke and list the identities that may write in the service registry.",
    no_args_is_help=True,
)


def _service(value: str) -> tuple[str, str]:
    """``NAMESPACE/APP`` (a bare APP means namespace default), checked before connecting."""
    try:
        ns, name = registry.parse_service(value)
        registry.service_user(ns, name)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    return ns, name


def _checked_secret_file(path: Path) -> Path:
    """Refuse a file that cannot be written before anything is granted."""
    path = path.expanduser()
    if path.is_dir():
        raise ValidationError(f"--secret-file {path} is a directory", hint="give a file name")
    if not path.parent.is_dir():
        raise ValidationError(f"--secret-file {path}: directory {path.parent} does not exist")
    return path


def _write_secret(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` with mode 0600 from its first byte (a temporary file in the
    same directory, then renamed over ``path``, so a reader never sees a partial file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ZkopError(f"cannot write {path}: {exc.strerror or exc}") from None


async def _application_exists(store: Store, namespace: str, name: str) -> bool:
    return await store.client.exists(store.obj_path(resolve_kind("Application"), namespace, name)) is not None


# ---- grant ---------------------------------------------------------------------------


async def _grant(conn: connect.Connection, timeout: float, ns: str, name: str) -> tuple[registry.ServiceIdentity, bool]:
    async with open_store(conn, timeout) as store:
        existed = await store.client.exists(registry.credentials_path(conn.root, ns, name)) is not None
        identity = await registry.ensure_service(store.client, conn.root, ns, name, conn.acl())
        return identity, not existed


@app.command()
def grant(
    ctx: typer.Context,
    service: str = typer.Argument(..., metavar="NAMESPACE/APP", help="The service (a bare APP: namespace default)."),
    secret_file: Path | None = typer.Option(
        None, "--secret-file", help="Write the ZKOP_REGISTRY_AUTH value to FILE (mode 0600) instead of printing it."
    ),
    output: Output = typer.Option(
        Output.table, "--output", "-o", help="table (the ZKOP_REGISTRY_AUTH value alone), yaml or json."
    ),
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
) -> None:
    """Make a service's registry folders and identity (or show the existing ones)."""
    with user_errors():
        ns, name = _service(service)
        path = _checked_secret_file(secret_file) if secret_file is not None else None
        target = Target.of(ctx, zk, timeout, root)
        conn = target.connection()
        identity, created = run(_grant(conn, target.timeout, ns, name))
        data: dict[str, Any] = {"service": f"{ns}/{name}", "user": identity.user, "created": created}
        if path is not None:
            _write_secret(path, identity.credentials + "\n")
            data["secretFile"] = str(path)
        else:
            data |= {"password": identity.password, registry.AUTH_ENV: identity.credentials}
        if emit(data, output):
            return
        what = "granted" if created else "already granted"
        if path is not None:
            console.print(
                f"{ns}/{name} {what}: {registry.AUTH_ENV} for {identity.user} written to {path} (mode 0600)",
                soft_wrap=True,
            )
            return
        # The value alone on stdout (for $(...) and env files); the explanation on stderr.
        sys.stdout.write(identity.credentials + "\n")
        sys.stdout.flush()
        err_console.print(
            f"{ns}/{name} {what}: give the line above to the service as {registry.AUTH_ENV}"
            " (ServiceDiscovery.register(..., credentials=...)); it can register and report load"
            " in this service only",
            soft_wrap=True,
        )


# ---- revoke --------------------------------------------------------------------------


async def _revoke(conn: connect.Connection, timeout: float, ns: str, name: str) -> registry.Revoked:
    async with open_store(conn, timeout) as store:
        if await _application_exists(store, ns, name):
            raise ValidationError(
                f"{ns}/{name} is the service of application {ns}/{name}, which zkop runs;"
                " its identity goes when the application is deleted",
                hint=f"zkop delete app {name} -n {ns}",
            )
        return await registry.revoke_service(store.client, conn.root, ns, name, conn.acl())


@app.command()
def revoke(
    ctx: typer.Context,
    service: str = typer.Argument(..., metavar="NAMESPACE/APP", help="The service (a bare APP: namespace default)."),
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
) -> None:
    """Take a service's identity away, and its registry folders when nothing is registered."""
    with user_errors():
        ns, name = _service(service)
        target = Target.of(ctx, zk, timeout, root)
        conn = target.connection()
        done = run(_revoke(conn, target.timeout, ns, name))
        if not done.found:
            raise ZkopError(
                f"service {ns}/{name} is not in the registry: nothing to revoke",
                hint="`zkop registry list` shows the services",
            )
        if done.identity:
            console.print(
                f"{ns}/{name}: identity svc/{ns}/{name} revoked (it can no longer register or report load)",
                soft_wrap=True,
            )
        if done.folders:
            console.print(f"{ns}/{name}: registry folders removed", soft_wrap=True)
            return
        if done.endpoints or done.loads:
            why = f"{done.endpoints} endpoint(s) and {done.loads} load report(s) are still registered"
            hint = "they go when their sessions end; run this again then to remove the folders"
        else:
            why, hint = "they hold other znodes", "look with zkCli.sh as the operator"
        err_console.print(
            f"[yellow]warning:[/] kept the registry folders of {ns}/{name}: {why} ({hint})", soft_wrap=True
        )


# ---- list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRow:
    namespace: str
    app: str
    endpoints: int | None  # None: no folders
    loads: int | None
    granted: bool
    application: bool
    writers: list[str]  # who may add endpoints, besides the operator

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": f"{self.namespace}/{self.app}",
            "endpoints": self.endpoints,
            "loads": self.loads,
            "granted": self.granted,
            "application": self.application,
            "writers": self.writers,
        }


async def _children(client: ZkClient, path: str) -> list[str]:
    try:
        return sorted(await client.get_children(path))
    except NoNodeError:
        return []


async def _count(client: ZkClient, path: str) -> int | None:
    try:
        return len(await client.get_children(path))
    except NoNodeError:
        return None


async def _writers(client: ZkClient, path: str, operator: str) -> list[str]:
    """Identities other than the operator's that may create znodes in ``path``."""
    try:
        acl, _ = await client.get_acls(path)
    except (NoNodeError, NoAuthError):
        return []
    out = []
    for entry in acl:
        if not entry.perms & Permissions.CREATE:
            continue
        if entry.id.scheme == "world":
            out.append("anyone")  # made by an older zkop; `zkop registry grant` repairs it
        elif entry.id.scheme == "digest":
            user = entry.id.id.partition(":")[0]
            if user != operator:
                out.append(user)
        else:
            out.append(f"{entry.id.scheme}:{entry.id.id}")
    return sorted(out)


async def _row(store: Store, root: str, operator: str, ns: str, name: str, granted: bool) -> ServiceRow:
    client = store.client
    endpoints, loads, writers, managed = await asyncio.gather(
        _count(client, registry.endpoints_path(root, ns, name)),
        _count(client, registry.load_path(root, ns, name)),
        _writers(client, registry.endpoints_path(root, ns, name), operator),
        _application_exists(store, ns, name),
    )
    return ServiceRow(ns, name, endpoints, loads, granted, managed, writers)


async def _list(conn: connect.Connection, timeout: float, namespace: str | None) -> list[ServiceRow]:
    async with open_store(conn, timeout) as store:
        client = store.client
        services, creds = registry.services_path(conn.root), registry.credentials_base(conn.root)
        found: dict[tuple[str, str], bool] = {}
        for base, granted in ((services, False), (creds, True)):
            namespaces = [namespace] if namespace else await _children(client, base)
            for ns in namespaces:
                for name in await _children(client, f"{base}/{ns}"):
                    found[(ns, name)] = found.get((ns, name), False) or granted
        rows = await asyncio.gather(
            *(_row(store, conn.root, conn.user, ns, name, granted) for (ns, name), granted in sorted(found.items()))
        )
        return list(rows)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="One namespace (default: all)."),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, yaml or json."),
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
) -> None:
    """List the services in the registry: endpoints, load reports, and who may write there."""
    with user_errors():
        if namespace is not None:
            try:
                registry.service_user(namespace, "x")  # the namespace alone, checked as a service's is
            except ValueError as exc:
                raise ValidationError(str(exc)) from None
        target = Target.of(ctx, zk, timeout, root)
        conn = target.connection()
        rows = run(_list(conn, target.timeout, namespace))
        if emit([r.to_dict() for r in rows], output):
            return
        if not rows:
            err_console.print("no services in the registry")
            return
        shown = table(
            ["SERVICE", "ENDPOINTS", "LOADS", "GRANTED", "APPLICATION", "WRITERS"],
            [
                [
                    f"{r.namespace}/{r.app}",
                    "no folders" if r.endpoints is None else r.endpoints,
                    r.loads,
                    "yes" if r.granted else "no",
                    "yes" if r.application else "no",
                    ", ".join(r.writers) or "operator only",
                ]
                for r in rows
            ],
        )
        for column in shown.columns:
            column.overflow = "fold"  # a narrow terminal folds names, never cuts them off
        console.print(shown)
