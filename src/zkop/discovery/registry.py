"""The service registry in the control-plane ZooKeeper.

Layout under the root (default ``/zkop``)::

    services/<namespace>/<app>/endpoints/<instance-id>   {"id","host","port","payload","registeredAt"}
    services/<namespace>/<app>/load/<instance-id>        {"value": float, "at": epoch seconds}
    registry/credentials/<namespace>/<app>               {"user": "svc/<ns>/<app>", "password": ...}

Who writes what:

* The operator makes each service's folders (:func:`ensure_service`), publishes the
  endpoints of the instances it runs (persistent znodes it manages,
  :func:`publish_endpoint` / :func:`withdraw_endpoint`), and reads the load reports for
  the autoscaler (:func:`read_loads`). It makes folders for the Applications it runs, and
  for other services when asked to (``zkop registry grant NS/APP``).
* Each service has an identity of its own, the digest user ``svc/<namespace>/<app>``
  with a random password (:class:`ServiceIdentity`, made once by
  :func:`service_identity` and kept under ``registry/credentials``, readable by the
  operator only). Instances zkop runs get it in ``ZKOP_REGISTRY_AUTH``; other services
  get it from ``zkop registry grant``. With it a service registers itself (EPHEMERAL
  znodes, see :meth:`zkop.discovery.ServiceDiscovery.register`) and reports its load
  (:func:`report_load`), in its own service only.
* Nobody else writes: an anonymous client, or another service's identity, can neither
  add an endpoint or a load report, nor make a service, nor change or remove anything.

ACLs, and why:

* Discovery clients need no credentials (like DNS), so every znode under ``services``
  grants world READ. Only endpoints are there: nothing secret.
* ``services``, ``services/<ns>`` and ``services/<ns>/<app>``: the operator identity's
  full rights plus world READ. No world CREATE anywhere: a new service is the operator's
  decision.
* ``endpoints`` and ``load``: the same, plus CREATE|DELETE for the service's identity.
  ZooKeeper checks a child's creation and deletion on its parent, so this lets the
  service add its own znodes and withdraw them; it also lets one instance of a service
  remove another's (instances sharing an identity are one trust domain).
* A znode a service creates carries world READ plus full rights for its creator, written
  with the ``auth`` scheme (ZooKeeper expands it to the session's authenticated ids, so
  only that identity can change it; the operator can still delete it through its rights
  on the folder). A session without an identity cannot create with that ACL at all.
* The operator's own endpoints carry its ACL plus world READ: readable by all, changed
  only by the operator.
* ``registry/credentials/...``: the operator identity only.
* :func:`ensure_service` also repairs the ACLs of the folders on its way that older
  versions of zkop made (with world CREATE), and :func:`close_open_folders` (once per
  operator start) takes world write rights from every other registry folder, so an
  upgrade closes that hole by itself.
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
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kazoo.exceptions import BadVersionError, NoAuthError, NodeExistsError, NoNodeError
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL, Id, Permissions, make_acl, make_digest_acl

from zkop.client.bridge import Op, TransactionFailed, ZkClient
from zkop.discovery.instances import Instance
from zkop.errors import Fenced, ZkopError

__all__ = [
    "AUTH_ENV",
    "OWNER_ALL",
    "WORLD_READ",
    "RegistryError",
    "Revoked",
    "ServiceIdentity",
    "close_open_folders",
    "creator_acl",
    "credentials_path",
    "decode",
    "encode",
    "endpoints_path",
    "ensure_service",
    "list_endpoints",
    "load_path",
    "parse_credentials",
    "parse_service",
    "publish_endpoint",
    "read_loads",
    "remove_service",
    "report_load",
    "revoke_service",
    "service_identity",
    "service_path",
    "service_user",
    "services_path",
    "withdraw_endpoint",
    "withdraw_load",
]

AUTH_ENV = "ZKOP_REGISTRY_AUTH"
"""The environment variable that carries a service's identity to its instances: ``svc/<ns>/<app>:<password>``."""

WORLD_READ = make_acl("world", "anyone", read=True)
OWNER_ALL = ACL(Permissions.ALL, Id("auth", ""))
"""Full rights for whoever creates the znode, as they are authenticated (the ``auth`` scheme)."""

T = TypeVar("T")


class RegistryError(ZkopError):
    """A registry write that cannot be made: no identity, a service not in the registry,
    or an identity that may not write there. Says what to pass and how to get it."""


# ---- paths ------------------------------------------------------------------------


def services_path(root: str) -> str:
    return f"{root.rstrip('/')}/services"


def service_path(root: str, namespace: str, app: str) -> str:
    return f"{services_path(root)}/{namespace}/{app}"


def endpoints_path(root: str, namespace: str, app: str) -> str:
    return f"{service_path(root, namespace, app)}/endpoints"


def load_path(root: str, namespace: str, app: str) -> str:
    return f"{service_path(root, namespace, app)}/load"


def credentials_base(root: str) -> str:
    return f"{root.rstrip('/')}/registry/credentials"


def credentials_path(root: str, namespace: str, app: str) -> str:
    """Where the operator keeps a service's identity (readable by the operator only)."""
    return f"{credentials_base(root)}/{namespace}/{app}"


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


# ---- reads and deletes -------------------------------------------------------------


async def _get(client: ZkClient, path: str) -> tuple[bytes, ZnodeStat] | None:
    """The data and stat of ``path``; None when it does not exist."""
    try:
        return await client.get(path)
    except NoNodeError:
        return None


async def _children(client: ZkClient, path: str) -> list[str] | None:
    """The children of ``path``; None when it does not exist."""
    try:
        return await client.get_children(path)
    except NoNodeError:
        return None


async def _read_children(client: ZkClient, base: str, parse: Callable[[str, bytes], T | None]) -> dict[str, T]:
    """``parse(name, data)`` of each child of ``base``, by name; children that are gone, not
    readable (NoAuth) or that ``parse`` refuses (None) are left out."""
    names = await _children(client, base) or []

    async def one(name: str) -> T | None:
        try:
            raw, _ = await client.get(f"{base}/{name}")
        except (NoNodeError, NoAuthError):
            return None
        return parse(name, raw)

    values = await asyncio.gather(*map(one, names))
    return {name: v for name, v in zip(names, values, strict=True) if v is not None}


async def _delete(client: ZkClient, path: str) -> bool:
    """Delete ``path``; False when it was not there."""
    try:
        await client.delete(path)
    except NoNodeError:
        return False
    return True


# ---- identities -----------------------------------------------------------------------


def service_user(namespace: str, app: str) -> str:
    """The digest user of a service: ``svc/<namespace>/<app>`` ('/' cannot occur in either
    name, so no two services share a user; ':' would end a digest user name, so it is refused)."""
    _check_name("namespace", namespace)
    _check_name("app", app)
    for what, value in (("namespace", namespace), ("app", app)):
        if ":" in value:
            raise ValueError(f"{what} {value!r} cannot have a registry identity: digest user names cannot contain ':'")
    return f"svc/{namespace}/{app}"


def parse_credentials(value: str) -> tuple[str, str]:
    """``"USER:PASSWORD"`` -> ``(user, password)`` (the value itself is never echoed: it is a secret)."""
    user, sep, password = value.strip().partition(":")
    if not sep or not user or not password:
        raise ValueError(f"registry credentials must look like USER:PASSWORD, as in ${AUTH_ENV}")
    return user, password


@dataclass(frozen=True)
class ServiceIdentity:
    """A service's registry identity: digest user ``svc/<ns>/<app>`` and its password."""

    namespace: str
    app: str
    password: str = field(repr=False)

    @property
    def user(self) -> str:
        return service_user(self.namespace, self.app)

    @property
    def credentials(self) -> str:
        """``user:password``: the value of ``ZKOP_REGISTRY_AUTH`` and of ``register(credentials=...)``."""
        return f"{self.user}:{self.password}"

    @property
    def auth_data(self) -> list[tuple[str, str]]:
        """kazoo ``auth_data`` for a session with this identity."""
        return [("digest", self.credentials)]

    def folder_acl(self) -> ACL:
        """Its entry on ``endpoints`` and ``load``: add and remove children, nothing else."""
        return make_digest_acl(self.user, self.password, create=True, delete=True)

    def to_json(self) -> bytes:
        return json.dumps({"user": self.user, "password": self.password}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, namespace: str, app: str, raw: bytes) -> ServiceIdentity | None:
        """The identity in ``raw``, or None when it is not one (for that service)."""
        try:
            data = json.loads(raw.decode("utf-8"))
            user, password = data["user"], data["password"]
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError):
            return None
        if user != service_user(namespace, app) or not isinstance(password, str) or not password:
            return None
        return cls(namespace, app, password)


def _owner(operator_acl: Sequence[Any]) -> list[ACL]:
    owner = list(operator_acl)
    if not owner:
        # Without it the credentials would get kazoo's default (world ALL) ACL.
        raise ValueError("the operator's ACL is needed to manage the registry")
    return owner


async def service_identity(
    client: ZkClient, root: str, namespace: str, app: str, operator_acl: Sequence[Any]
) -> ServiceIdentity:
    """The service's identity, created on first use (as the operator).

    Kept only in ZooKeeper, and made with a create that fails when another writer was
    first (then theirs is read), so every operator replica and the CLI agree on it.
    """
    owner = _owner(operator_acl)
    service_user(namespace, app)  # validates the names
    path = credentials_path(root, namespace, app)
    for _ in range(3):
        found = await _get(client, path)
        if found is not None:
            identity = ServiceIdentity.from_json(namespace, app, found[0])
            if identity is None:
                raise RegistryError(
                    f"{path} is not a registry identity of {namespace}/{app}",
                    hint=f"remove it with `zkop registry revoke {namespace}/{app}`, then grant again",
                )
            return identity
        fresh = ServiceIdentity(namespace, app, secrets.token_urlsafe(24))
        try:
            await client.create(path, fresh.to_json(), acl=owner, makepath=True)
        except NodeExistsError:
            continue  # another replica (or the CLI) made it meanwhile: read theirs
        return fresh
    raise RegistryError(f"the identity at {path} keeps changing", hint="is it being revoked meanwhile?")


def _users(client: ZkClient) -> list[str]:
    """The identities a session authenticated with, for messages (never the passwords)."""
    return sorted({f"{scheme}:{cred.partition(':')[0]}" for scheme, cred in client.kazoo.auth_data})


def no_identity(namespace: str, app: str, doing: str) -> RegistryError:
    return RegistryError(
        f"{doing} in {namespace}/{app} needs the service's registry identity, and none was given",
        hint=f"pass credentials='svc/{namespace}/{app}:PASSWORD' (or auth_data): instances zkop runs find it in"
        f" ${AUTH_ENV}; for another service `zkop registry grant {namespace}/{app}` (as the operator) prints it",
    )


def not_in_registry(namespace: str, app: str) -> RegistryError:
    return RegistryError(
        f"service {namespace}/{app} is not in the registry (its folders do not exist)",
        hint=f"zkop makes them for the applications it runs; for another service run"
        f" `zkop registry grant {namespace}/{app}` as the operator",
    )


def refused(client: ZkClient, namespace: str, app: str, doing: str) -> RegistryError:
    who = ", ".join(_users(client)) or "an anonymous session"
    return RegistryError(
        f"{doing} in {namespace}/{app} refused for {who} (NoAuth)",
        hint=f"only the operator and svc/{namespace}/{app} may write there;"
        f" `zkop registry grant {namespace}/{app}` prints that identity",
    )


def creator_acl() -> list[ACL]:
    """The ACL of a znode a service creates for itself: world READ, everything for its creator."""
    return [WORLD_READ, OWNER_ALL]


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


# ---- folders ----------------------------------------------------------------------


def _describe(acl: Iterable[ACL]) -> str:
    return ", ".join(f"{a.id.scheme}:{a.id.id}" for a in acl) or "none"


def _not_ours(path: str, acl: Iterable[ACL] = ()) -> RegistryError:
    return RegistryError(
        f"cannot repair the ACL of {path}: the operator has no ADMIN right on it (it grants {_describe(acl)})",
        hint="an older zkop let clients make registry folders; remove it as the control plane's super user"
        " (zkCli.sh: addauth digest super:PASSWORD, then deleteall PATH) and zkop makes it again",
    )


async def _acl_of(client: ZkClient, path: str) -> tuple[list[ACL], ZnodeStat] | None:
    try:
        return await client.get_acls(path)
    except NoNodeError:
        return None
    except NoAuthError:
        raise _not_ours(path) from None


async def _ensure_folder(
    client: ZkClient, path: str, acl: list[ACL], current: tuple[list[ACL], ZnodeStat] | None
) -> None:
    """Make the folder with ``acl``, or set ``acl`` on it when it differs (compare-and-set)."""
    for _ in range(5):
        if current is None:
            try:
                await client.create(path, b"", acl=acl)
                return
            except NodeExistsError:
                pass
        elif set(current[0]) == set(acl):
            return
        else:
            try:
                await client.set_acls(path, acl, current[1].aversion)
                return
            except BadVersionError:
                pass
            except NoNodeError:
                current = None
                continue
            except NoAuthError:
                raise _not_ours(path, current[0]) from None
        current = await _acl_of(client, path)
    raise RegistryError(f"the ACL of {path} keeps changing under us", hint="is an older operator still running?")


async def _ensure_folders(client: ZkClient, plan: Sequence[tuple[str, list[ACL]]]) -> None:
    found = await asyncio.gather(*(_acl_of(client, path) for path, _ in plan))
    for (path, acl), current in zip(plan, found, strict=True):  # parents first
        if current is None or set(current[0]) != set(acl):
            await _ensure_folder(client, path, acl, current)


async def ensure_service(
    client: ZkClient, root: str, namespace: str, app: str, operator_acl: Sequence[Any]
) -> ServiceIdentity:
    """Make (or repair) the service's folders and identity, as the operator; returns the identity.

    Idempotent: two round trips when everything is in place. Folders whose ACL differs
    (made by an older zkop, with world CREATE) get the ACL of the module docstring.
    """
    identity = await service_identity(client, root, namespace, app, operator_acl)
    closed = [*_owner(operator_acl), WORLD_READ]
    writable = [*closed, identity.folder_acl()]
    base = services_path(root)
    await _ensure_folders(
        client,
        [
            (base, closed),
            (f"{base}/{namespace}", closed),
            (service_path(root, namespace, app), closed),
            (endpoints_path(root, namespace, app), writable),
            (load_path(root, namespace, app), writable),
        ],
    )
    return identity


async def close_open_folders(client: ZkClient, root: str, operator_acl: Sequence[Any]) -> list[str]:
    """Take every right but READ from the world on every registry folder, also of services
    the operator does not run (run once per operator start, after an upgrade).

    Older versions granted world CREATE on ``services``, ``<ns>``, ``endpoints`` and ``load``,
    and world ALL on folders an anonymous client made; those get the operator's full rights
    plus world READ (other entries, such as a service identity's, are kept). Returns what
    could not be repaired (folders the operator has no ADMIN right on), as messages.
    """
    owner = _owner(operator_acl)
    problems: list[str] = []

    async def close(path: str) -> list[str]:
        """Close ``path``; its children (to walk on)."""
        for _ in range(5):
            try:
                acl, stat = await client.get_acls(path)
            except NoNodeError:
                return []
            except NoAuthError:
                problems.append(str(_not_ours(path)))
                return []
            if not any(a.id.scheme == "world" and a.perms & ~Permissions.READ for a in acl):
                break
            fixed = [*owner, WORLD_READ, *(a for a in acl if a.id.scheme != "world" and a not in owner)]
            try:
                await client.set_acls(path, fixed, stat.aversion)
                break
            except BadVersionError:
                continue  # changed meanwhile (e.g. by ensure_service): look again
            except NoNodeError:
                return []
            except NoAuthError:
                problems.append(str(_not_ours(path, acl)))
                break
        try:
            return await client.get_children(path)
        except (NoNodeError, NoAuthError):
            return []

    async def service(path: str) -> None:
        await close(path)
        await asyncio.gather(close(f"{path}/endpoints"), close(f"{path}/load"))

    async def namespace(path: str) -> None:
        await asyncio.gather(*(service(f"{path}/{app}") for app in await close(path)))

    base = services_path(root)
    await asyncio.gather(*(namespace(f"{base}/{ns}") for ns in await close(base)))
    return problems


@dataclass(frozen=True)
class Revoked:
    """What :func:`revoke_service` did."""

    found: bool  # there was an identity or folders
    identity: bool  # the identity was removed
    folders: bool  # the folders were removed (nothing was registered)
    endpoints: int  # still registered, when the folders were kept
    loads: int


async def _count(client: ZkClient, path: str) -> int | None:
    names = await _children(client, path)
    return None if names is None else len(names)


async def revoke_service(client: ZkClient, root: str, namespace: str, app: str, operator_acl: Sequence[Any]) -> Revoked:
    """Take a service's identity away (as the operator), and its folders when nothing is registered.

    The identity's rights go from the folders first, so its password is worth nothing even
    to a client that kept it; endpoints still registered stay until their sessions end.
    """
    closed = [*_owner(operator_acl), WORLD_READ]
    folders = [endpoints_path(root, namespace, app), load_path(root, namespace, app)]
    for path in folders:
        current = await _acl_of(client, path)
        if current is not None:
            await _ensure_folder(client, path, closed, current)
    identity = await _delete(client, credentials_path(root, namespace, app))
    service = service_path(root, namespace, app)
    if await client.exists(service) is None:
        return Revoked(identity, identity, folders=False, endpoints=0, loads=0)
    for _ in range(5):
        endpoints, loads = await asyncio.gather(*(_count(client, p) for p in folders))
        if endpoints or loads:
            return Revoked(True, identity, folders=False, endpoints=endpoints or 0, loads=loads or 0)
        ops = [Op.delete(p) for p, n in zip(folders, (endpoints, loads), strict=True) if n is not None]
        try:
            await client.commit([*ops, Op.delete(service)])
        except TransactionFailed:
            if await client.exists(service) is None:
                return Revoked(True, identity, folders=True, endpoints=0, loads=0)  # removed meanwhile
            continue  # something was registered (or made) meanwhile: count again
        return Revoked(True, identity, folders=True, endpoints=0, loads=0)
    # Something else than endpoints and load is in the service's folder: keep it.
    return Revoked(True, identity, folders=False, endpoints=0, loads=0)


# ---- endpoints (the operator's side) ------------------------------------------------


async def _fenced(client: ZkClient, fence: Sequence[Op], ops: Sequence[Op]) -> None:
    """One transaction of ``ops`` after the term's ``fence`` checks (Fenced when it is over)."""
    try:
        await client.commit([*fence, *ops])
    except TransactionFailed as exc:
        if exc.failed_op is not None and exc.failed_op in fence:
            raise Fenced("registry write refused: leadership check failed", hint="no longer the leader") from None
        raise


async def publish_endpoint(
    client: ZkClient,
    root: str,
    namespace: str,
    app: str,
    instance: Instance,
    acl: Sequence[Any],
    *,
    fence: Sequence[Op] = (),
) -> bool:
    """Write (or refresh) an endpoint the operator manages: a persistent znode with ``acl``
    (the operator identity's) plus world READ. Returns whether anything changed. Every write
    checks ``fence`` (the operator's leadership term) in the same transaction.

    Two round trips when the service's folders exist; they are created when missing.
    """
    path = f"{endpoints_path(root, namespace, app)}/{instance.id}"
    raw = encode(instance)
    for _ in range(3):
        found = await _get(client, path)
        try:
            if found is not None:
                current, stat = found
                if decode(current, instance.id) == instance:
                    return False
                await _fenced(client, fence, [Op.set(path, raw, stat.version)])
            else:
                await _fenced(client, fence, [Op.create(path, raw, acl=[*acl, WORLD_READ])])
        except TransactionFailed as exc:
            if isinstance(exc.error, NoNodeError) and found is None:
                await ensure_service(client, root, namespace, app, acl)
            continue  # withdrawn, changed or made meanwhile: look again
        return True
    raise ZkopError(f"endpoint {path} keeps changing under us", hint="is another operator writing it?")


async def withdraw_endpoint(
    client: ZkClient, root: str, namespace: str, app: str, instance_id: str, *, fence: Sequence[Op] = ()
) -> bool:
    """Remove an endpoint; False when it was not there. Checks ``fence`` in the same transaction."""
    try:
        await _fenced(client, fence, [Op.delete(f"{endpoints_path(root, namespace, app)}/{instance_id}")])
    except TransactionFailed as exc:
        if isinstance(exc.error, NoNodeError):
            return False
        raise
    return True


async def remove_service(client: ZkClient, root: str, namespace: str, app: str, *, fence: Sequence[Op] = ()) -> bool:
    """Remove a service's folders with the loads its stopped instances left, and then its
    identity. Left in place (False) while anything else is registered there."""
    load = load_path(root, namespace, app)
    stale = await _children(client, load) or []
    ops = [Op.delete(f"{load}/{n}") for n in stale]
    ops += [
        Op.delete(endpoints_path(root, namespace, app)),
        Op.delete(load),
        Op.delete(service_path(root, namespace, app)),
    ]
    with contextlib.suppress(TransactionFailed):  # gone already, or someone else registered meanwhile
        await _fenced(client, fence, ops)
    if await client.exists(service_path(root, namespace, app)) is not None:
        return False
    with contextlib.suppress(TransactionFailed):  # never made, or removed already
        await _fenced(client, fence, [Op.delete(credentials_path(root, namespace, app))])
    return True


async def list_endpoints(client: ZkClient, root: str, namespace: str, app: str) -> list[Instance]:
    """The service's endpoints now, sorted by id (a one-off read; clients use the cache)."""
    found = await _read_children(client, endpoints_path(root, namespace, app), lambda name, raw: decode(raw, name))
    return [found[name] for name in sorted(found)]


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
    ``acl=None`` is for a service reporting for itself: ``client`` must be authenticated
    with its identity (the znode gets world READ plus full rights for that identity), and
    the service must be in the registry (:class:`RegistryError` otherwise, before anything
    is written). The operator passes its own ACL, and makes the folders when missing.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"a load must be a finite number, got {value!r}")
    _check_name("instance id", instance_id)
    own = acl is None
    if own and not client.kazoo.auth_data:
        raise no_identity(namespace, app, "reporting load")
    path = f"{load_path(root, namespace, app)}/{instance_id}"
    raw = json.dumps({"value": value, "at": time.time()}).encode()
    create_acl = creator_acl() if own else [*(acl or ()), WORLD_READ]
    for _ in range(3):
        try:
            await client.set(path, raw)
            return
        except NoNodeError:
            pass
        except NoAuthError:
            raise refused(client, namespace, app, f"reporting load for {instance_id!r}") from None
        try:
            await client.create(path, raw, acl=create_acl, ephemeral=ephemeral)
            return
        except NodeExistsError:
            continue
        except NoAuthError:
            raise refused(client, namespace, app, "reporting load") from None
        except NoNodeError:
            if own:
                raise not_in_registry(namespace, app) from None
            await ensure_service(client, root, namespace, app, acl or ())
    raise ZkopError(f"cannot write the load report {path}: it keeps changing", hint="is the instance id unique?")


async def withdraw_load(client: ZkClient, root: str, namespace: str, app: str, instance_id: str) -> bool:
    return await _delete(client, f"{load_path(root, namespace, app)}/{instance_id}")


async def read_loads(
    client: ZkClient, root: str, namespace: str, app: str, *, max_age: float | None = None
) -> dict[str, float]:
    """The newest load each instance reported, by instance id (for the autoscaler).

    Reports that are not ``{"value": <finite number>, ...}`` are skipped, and with
    ``max_age`` (seconds) so are reports older than that.
    """

    def parse(_name: str, raw: bytes) -> float | None:
        try:
            data = json.loads(raw)
            value = float(data["value"])
            at = float(data.get("at", 0.0))
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            return None
        if not math.isfinite(value):
            return None
        if max_age is not None and time.time() - at > max_age:
            return None
        return value

    return await _read_children(client, load_path(root, namespace, app), parse)
