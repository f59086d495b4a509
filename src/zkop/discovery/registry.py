"""The service registry in the control-plane ZooKeeper.

Layout under the root (default ``/zkop``)::

    services/<namespace>/<app>/endpoints/<instance-id>   {"id","host","port","payload","registeredAt"}
    services/<namespace>/<app>/load/<instance-id>        {"value": float, "at": epoch seconds}

Who writes what:

* The operator publishes the endpoints of the instances it runs (persistent znodes it
  manages, :func:`publish_endpoint` / :func:`withdraw_endpoint`), and reads the load
  reports for the autoscaler (:func:`read_loads`).
* Services that zkop does not run register themselves with EPHEMERAL znodes, which
  ZooKeeper removes when the registering session ends (see
  :meth:`zkop.discovery.ServiceDiscovery.register`), and may report their load
  (:func:`report_load`).

ACLs, and why:

* Discovery clients need no credentials, so everything under ``services`` is
  world-READable. Only endpoints are there: nothing secret.
* The folders made by :func:`ensure_service` carry the operator identity's ACL (full
  rights) plus world READ. ``services``, ``services/<ns>``, ``endpoints`` and ``load``
  also grant world CREATE, so that a service that zkop does not run can register itself
  (creating its service's folders if they are missing) without operator credentials.
  CREATE does not allow changing or deleting anything that exists: an anonymous client
  can add a znode, never touch the operator's.
* The operator's endpoints carry its ACL plus world READ: readable by all, changed only
  by the operator.
* A self-registered znode (and folders such a client creates) carries world READ plus
  full rights for its creator, written with the ``auth`` scheme when the client is
  authenticated (ZooKeeper expands it to the client's authenticated ids, so only the
  same identity can change or delete it). An anonymous client cannot be named in an ACL
  (the ``ip`` scheme would be wrong behind NAT and for every other process on the
  host), so its znodes get world ALL; they are ephemeral, so they go with the session
  anyway, and a service that needs protection should authenticate.
* The root itself may stay operator-only: ZooKeeper does not check ACLs on the path
  to a znode, only on the znode itself.

Reading is lenient: a znode that is not an endpoint (bad JSON, wrong fields, an id that
differs from its name) or that cannot be read (NoAuth) is skipped, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Sequence
from typing import Any

from kazoo.exceptions import BadVersionError, NoAuthError, NodeExistsError, NoNodeError
from kazoo.security import ACL, Id, Permissions, make_acl

from zkop.client.bridge import ZkClient
from zkop.discovery.instances import Instance
from zkop.errors import ZkopError

__all__ = [
    "OWNER_ALL",
    "WORLD_ALL",
    "WORLD_READ",
    "WORLD_READ_CREATE",
    "creator_acl",
    "decode",
    "encode",
    "endpoints_path",
    "ensure_service",
    "ensure_service_as_client",
    "list_endpoints",
    "load_path",
    "parse_service",
    "publish_endpoint",
    "read_loads",
    "report_load",
    "service_path",
    "withdraw_endpoint",
    "withdraw_load",
]

WORLD_READ = make_acl("world", "anyone", read=True)
WORLD_READ_CREATE = make_acl("world", "anyone", read=True, create=True)
WORLD_ALL = make_acl("world", "anyone", all=True)
OWNER_ALL = ACL(Permissions.ALL, Id("auth", ""))
"""Full rights for whoever creates the znode, as they are authenticated (the ``auth`` scheme)."""


# ---- paths ------------------------------------------------------------------------


def service_path(root: str, namespace: str, app: str) -> str:
    return f"{root.rstrip('/')}/services/{namespace}/{app}"


def endpoints_path(root: str, namespace: str, app: str) -> str:
    return f"{service_path(root, namespace, app)}/endpoints"


def load_path(root: str, namespace: str, app: str) -> str:
    return f"{service_path(root, namespace, app)}/load"


def _check_name(what: str, value: str) -> None:
    if not value or "/" in value or value in (".", "..") or "\0" in value:
        raise ValueError(f"{what} {value!r} is not a valid znode name (non-empty, no '/', not '.' or '..')")


def parse_service(name: str) -> tuple[str, str]:
    """``"ns/app"`` (or ``"app"``, in namespace ``default``) -> ``(namespace, app)``."""
    ns, sep, app = name.strip().partition("/")
    if not sep:
        ns, app = "default", ns
    try:
        _check_name("namespace", ns)
        _check_name("app", app)
    except ValueError:
        raise ValueError(f"service {name!r} is not NAMESPACE/APP (e.g. default/counter)") from None
    return ns, app


# ---- data -------------------------------------------------------------------------


def encode(inst: Instance) -> bytes:
    """An endpoint's znode data."""
    data = inst.to_dict() | {"registeredAt": time.time()}
    return json.dumps(data, sort_keys=True).encode()


def decode(raw: bytes, name: str | None = None) -> Instance | None:
    """The endpoint in ``raw``, or None for data that is not one (skipped, never fatal).

    With ``name`` (the znode's name), data whose ``id`` differs from it is refused too:
    two znodes must never claim the same instance.
    """
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            return None
        data.pop("registeredAt", None)
        inst = Instance.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    if name is not None and inst.id != name:
        return None
    return inst


def creator_acl(authenticated: bool) -> list[ACL]:
    """The ACL of a znode a client creates for itself (see the module docstring)."""
    if authenticated:
        return [WORLD_READ, OWNER_ALL]
    return [WORLD_ALL]


def _authenticated(client: ZkClient) -> bool:
    return bool(client.kazoo.auth_data)


# ---- folders ----------------------------------------------------------------------


async def _create_missing(client: ZkClient, plan: Sequence[tuple[str, list[ACL]]]) -> None:
    for path, acl in plan:
        if await client.exists(path) is None:
            with contextlib.suppress(NodeExistsError):
                await client.create(path, b"", acl=acl)


async def _folders_exist(client: ZkClient, root: str, namespace: str, app: str) -> bool:
    found = await asyncio.gather(
        client.exists(endpoints_path(root, namespace, app)), client.exists(load_path(root, namespace, app))
    )
    return all(stat is not None for stat in found)


async def ensure_service(client: ZkClient, root: str, namespace: str, app: str, operator_acl: Sequence[Any]) -> None:
    """Create the service's folders with the operator's ACLs (idempotent; two reads when they exist)."""
    if await _folders_exist(client, root, namespace, app):
        return
    owner = list(operator_acl)
    base = f"{root.rstrip('/')}/services"
    if await client.exists(root) is None:
        await client.ensure_path(root, acl=owner)  # stays operator-only: traversal needs no rights
    await _create_missing(
        client,
        [
            (base, [*owner, WORLD_READ_CREATE]),
            (f"{base}/{namespace}", [*owner, WORLD_READ_CREATE]),
            (service_path(root, namespace, app), [*owner, WORLD_READ]),
            (endpoints_path(root, namespace, app), [*owner, WORLD_READ_CREATE]),
            (load_path(root, namespace, app), [*owner, WORLD_READ_CREATE]),
        ],
    )


async def ensure_service_as_client(client: ZkClient, root: str, namespace: str, app: str, authenticated: bool) -> None:
    """The folders for a service that registers itself, made by that client where missing:
    readable and open to registration by anyone, fully owned by their creator."""
    if await _folders_exist(client, root, namespace, app):
        return
    acl = [WORLD_READ_CREATE, OWNER_ALL] if authenticated else [WORLD_ALL]
    base = f"{root.rstrip('/')}/services"
    await _create_missing(
        client,
        [
            (path, acl)
            for path in (
                root.rstrip("/"),
                base,
                f"{base}/{namespace}",
                service_path(root, namespace, app),
                endpoints_path(root, namespace, app),
                load_path(root, namespace, app),
            )
        ],
    )


# ---- endpoints (the operator's side) ------------------------------------------------


async def publish_endpoint(
    client: ZkClient, root: str, namespace: str, app: str, instance: Instance, acl: Sequence[Any]
) -> bool:
    """Write (or refresh) an endpoint the operator manages: a persistent znode with ``acl``
    (the operator identity's) plus world READ. Returns whether anything changed.

    Two round trips when the service's folders exist; they are created when missing.
    """
    path = f"{endpoints_path(root, namespace, app)}/{instance.id}"
    raw = encode(instance)
    for _ in range(3):
        try:
            current, stat = await client.get(path)
        except NoNodeError:
            pass
        else:
            if decode(current, instance.id) == instance:
                return False
            try:
                await client.set(path, raw, stat.version)
            except (NoNodeError, BadVersionError):
                continue  # withdrawn or changed meanwhile: look again
            return True
        try:
            await client.create(path, raw, acl=[*acl, WORLD_READ])
        except NodeExistsError:
            continue
        except NoNodeError:
            await ensure_service(client, root, namespace, app, acl)
            continue
        return True
    raise ZkopError(f"endpoint {path} keeps changing under us", hint="is another operator writing it?")


async def withdraw_endpoint(client: ZkClient, root: str, namespace: str, app: str, instance_id: str) -> bool:
    """Remove an endpoint; False when it was not there."""
    try:
        await client.delete(f"{endpoints_path(root, namespace, app)}/{instance_id}")
    except NoNodeError:
        return False
    return True


async def list_endpoints(client: ZkClient, root: str, namespace: str, app: str) -> list[Instance]:
    """The service's endpoints now, sorted by id (a one-off read; clients use the cache)."""
    base = endpoints_path(root, namespace, app)
    try:
        names = sorted(await client.get_children(base))
    except NoNodeError:
        return []

    async def one(name: str) -> Instance | None:
        try:
            raw, _ = await client.get(f"{base}/{name}")
        except (NoNodeError, NoAuthError):
            return None
        return decode(raw, name)

    return [inst for inst in await asyncio.gather(*map(one, names)) if inst is not None]


# ---- load reports -------------------------------------------------------------------


async def report_load(
    client: ZkClient,
    root: str,
    namespace: str,
    app: str,
    instance_id: str,
    value: float,
    *,
    acl: Sequence[Any] | None = None,
    ephemeral: bool = True,
) -> None:
    """Report ``value`` as the load of ``instance_id`` (for the autoscaler).

    The znode is ephemeral by default (a report goes with the session that made it).
    ``acl=None`` is for a client reporting for itself (world READ plus its creator, as
    for self-registration); the operator passes its own ACL.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"a load must be a finite number, got {value!r}")
    _check_name("instance id", instance_id)
    path = f"{load_path(root, namespace, app)}/{instance_id}"
    raw = json.dumps({"value": value, "at": time.time()}).encode()
    own = acl is None
    create_acl = creator_acl(_authenticated(client)) if own else [*(acl or ()), WORLD_READ]
    for _ in range(3):
        try:
            await client.set(path, raw)
            return
        except NoNodeError:
            pass
        try:
            await client.create(path, raw, acl=create_acl, ephemeral=ephemeral)
            return
        except NodeExistsError:
            continue
        except NoNodeError:
            if own:
                await ensure_service_as_client(client, root, namespace, app, _authenticated(client))
            else:
                await ensure_service(client, root, namespace, app, acl or ())
    raise ZkopError(f"cannot write the load report {path}: it keeps changing", hint="is the instance id unique?")


async def withdraw_load(client: ZkClient, root: str, namespace: str, app: str, instance_id: str) -> bool:
    try:
        await client.delete(f"{load_path(root, namespace, app)}/{instance_id}")
    except NoNodeError:
        return False
    return True


async def read_loads(
    client: ZkClient, root: str, namespace: str, app: str, *, max_age: float | None = None
) -> dict[str, float]:
    """The newest load each instance reported, by instance id (for the autoscaler).

    Reports that are not ``{"value": <finite number>, ...}`` are skipped, and with
    ``max_age`` (seconds) so are reports older than that.
    """
    base = load_path(root, namespace, app)
    try:
        names = await client.get_children(base)
    except NoNodeError:
        return {}

    async def one(name: str) -> float | None:
        try:
            raw, _ = await client.get(f"{base}/{name}")
            data = json.loads(raw)
            value = float(data["value"])
            at = float(data.get("at", 0.0))
        except (NoNodeError, NoAuthError, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            return None
        if not math.isfinite(value):
            return None
        if max_age is not None and time.time() - at > max_age:
            return None
        return value

    values = await asyncio.gather(*map(one, names))
    return {name: v for name, v in zip(names, values, strict=True) if v is not None}
