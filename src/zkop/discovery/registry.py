"""The service registry in the control-plane ZooKeeper.

Layout under the root (default ``/zkop``)::

    services/<namespace>/<app>/endpoints/<instance-id>   {"id","host","port","payload","registeredAt"}
    services/<namespace>/<app>/load/<instance-id>        {"value": float, "at": epoch seconds}

ACLs: discovery clients need no credentials, so the ``services`` subtree is readable by
anyone and writable by the operator identity. The folders also let anyone *create* a
child, for services that zkop does not run and that register themselves (creating their
service's folders if needed): such a znode is ephemeral (it goes with the session that made it) and carries
world:READ plus full rights for its creator only (the ``auth`` scheme when the client is
authenticated, else world rights, since an anonymous creator cannot be named).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.security import ACL, Id, Permissions, make_acl

from zkop.client.bridge import ZkClient
from zkop.discovery.instances import Instance

WORLD_READ = make_acl("world", "anyone", read=True)
WORLD_READ_CREATE = make_acl("world", "anyone", read=True, create=True)


def service_path(root: str, namespace: str, app: str) -> str:
    return f"{root.rstrip('/')}/services/{namespace}/{app}"


def endpoints_path(root: str, namespace: str, app: str) -> str:
    return f"{service_path(root, namespace, app)}/endpoints"


def load_path(root: str, namespace: str, app: str) -> str:
    return f"{service_path(root, namespace, app)}/load"


def parse_service(name: str) -> tuple[str, str]:
    """``"ns/app"`` (or ``"app"`` in ``default``) -> (namespace, app)."""
    ns, sep, app = name.partition("/")
    if not sep:
        return "default", ns
    if not ns or not app or "/" in app:
        raise ValueError(f"service {name!r} is not NAMESPACE/APP")
    return ns, app


def encode(inst: Instance) -> bytes:
    data = inst.to_dict() | {"registeredAt": time.time()}
    return json.dumps(data, sort_keys=True).encode()


def decode(raw: bytes) -> Instance | None:
    """An endpoint, or None for data that is not one (it is skipped, never fatal)."""
    try:
        data = json.loads(raw.decode("utf-8"))
        data.pop("registeredAt", None)
        return Instance.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        return None


OWNER_ALL = ACL(Permissions.ALL, Id("auth", ""))  # whoever created the znode, as authenticated


def creator_acl(authenticated: bool) -> list[ACL]:
    if authenticated:
        return [WORLD_READ, OWNER_ALL]
    return [make_acl("world", "anyone", all=True)]


async def ensure_service(client: ZkClient, root: str, namespace: str, app: str, operator_acl: Sequence[Any]) -> None:
    """Create the service's folders with their ACLs (idempotent)."""
    owner = list(operator_acl)
    base = f"{root.rstrip('/')}/services"
    if await client.exists(root) is None:
        # ZooKeeper ACLs do not apply to traversal, so the root can stay operator-only.
        await client.ensure_path(root, acl=owner)
    for path, acl in (
        (base, [*owner, WORLD_READ_CREATE]),
        (f"{base}/{namespace}", [*owner, WORLD_READ_CREATE]),
        (service_path(root, namespace, app), [*owner, WORLD_READ]),
        (endpoints_path(root, namespace, app), [*owner, WORLD_READ_CREATE]),
        (load_path(root, namespace, app), [*owner, WORLD_READ_CREATE]),
    ):
        if await client.exists(path) is None:
            with contextlib.suppress(NodeExistsError):
                await client.create(path, b"", acl=acl)


async def ensure_service_as_client(client: ZkClient, root: str, namespace: str, app: str, authenticated: bool) -> None:
    """Folders for a service that registers itself (zkop does not run it): made by that client,
    readable and open to registration by anyone, fully owned by their creator."""
    creator = [WORLD_READ_CREATE, OWNER_ALL] if authenticated else creator_acl(False)
    base = f"{root.rstrip('/')}/services"
    for path in (
        root.rstrip("/"),
        base,
        f"{base}/{namespace}",
        service_path(root, namespace, app),
        endpoints_path(root, namespace, app),
        load_path(root, namespace, app),
    ):
        if await client.exists(path) is None:
            with contextlib.suppress(NodeExistsError):
                await client.create(path, b"", acl=creator)


async def publish_endpoint(
    client: ZkClient, root: str, namespace: str, app: str, inst: Instance, operator_acl: Sequence[Any]
) -> None:
    """Write (or refresh) an endpoint the operator manages."""
    await ensure_service(client, root, namespace, app, operator_acl)
    path = f"{endpoints_path(root, namespace, app)}/{inst.id}"
    raw = encode(inst)
    try:
        current, _ = await client.get(path)
        if decode(current) == inst:
            return
        await client.set(path, raw)
    except NoNodeError:
        with contextlib.suppress(NodeExistsError):
            await client.create(path, raw, acl=[*operator_acl, WORLD_READ])


async def withdraw_endpoint(client: ZkClient, root: str, namespace: str, app: str, instance_id: str) -> bool:
    try:
        await client.delete(f"{endpoints_path(root, namespace, app)}/{instance_id}")
    except NoNodeError:
        return False
    return True


async def list_endpoints(client: ZkClient, root: str, namespace: str, app: str) -> list[Instance]:
    base = endpoints_path(root, namespace, app)
    try:
        names = await client.get_children(base)
    except NoNodeError:
        return []
    out = []
    for name in sorted(names):
        with contextlib.suppress(NoNodeError):
            raw, _ = await client.get(f"{base}/{name}")
            inst = decode(raw)
            if inst is not None:
                out.append(inst)
    return out


async def read_loads(client: ZkClient, root: str, namespace: str, app: str) -> dict[str, float]:
    """The newest load each instance reported (for the autoscaler)."""
    base = load_path(root, namespace, app)
    try:
        names = await client.get_children(base)
    except NoNodeError:
        return {}
    out: dict[str, float] = {}
    for name in names:
        with contextlib.suppress(NoNodeError, ValueError, TypeError, KeyError):
            raw, _ = await client.get(f"{base}/{name}")
            out[name] = float(json.loads(raw)["value"])
    return out
