"""The ZookeeperZnode controller: a tenant's path in a managed cluster.

Each reconcile reads the object and its ZookeeperCluster, makes sure the tenant's identity
exists (``znode/<namespace>/<name>`` with a random password, handed over through the
platform's :class:`~zkop.platform.base.SecretStore`: a directory of 0600 files locally, a
Secret on Kubernetes), and then, connected to the cluster as its super user:

- the parents of the path exist (made readable by the super user only, so the tenants of a
  cluster do not list each other); the path exists with the ACL ``digest:<tenant>`` (read,
  write, create, delete; not admin: the ACL of the root is the operator's), set again when it
  was changed;
- the quota (``/zookeeper/quota<path>``) is what spec.quota says, or absent.

Status gives the connection string with the path as chroot, the identity and where its
credentials are. Two objects may not claim overlapping paths of one cluster: the younger is
Failed (PathConflict) and changes nothing. On deletion (finalizer) ``Delete`` removes the
subtree, its quota and the credentials, ``Retain`` keeps all three (a new object of the same
name takes them over); data is only removed from a path whose ACL names this object's identity.

ZooKeeper ACLs are not inherited: a tenant creates its znodes with its own ACL (kazoo:
``default_acl=CREATOR_ALL_ACL``, ``auth:`` in zkCli) so that nobody else may read them.
"""

from __future__ import annotations

import contextlib
import logging
import secrets as pysecrets
from collections.abc import Iterable, Mapping
from typing import Any

from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError, NotEmptyError
from kazoo.security import ACL, Id, Permissions, make_digest_acl

from zkop.api import Resource, ZookeeperCluster
from zkop.api.zookeeperznode import ZnodeQuotaStatus, ZookeeperZnode, ZookeeperZnodeStatus
from zkop.client.bridge import ZkClient
from zkop.platform.base import ClusterRef, SecretStore, ZookeeperPlatform
from zkop.runtime.conditions import merge_conditions
from zkop.runtime.controller import Context, Controller, Watch
from zkop.runtime.result import Request, Result
from zkop.store import NotFound
from zkop.store.modify import add_finalizer, remove_finalizer
from zkop.zk import auth
from zkop.zk import quota as Q

log = logging.getLogger("zkop.zookeeperznode")

FINALIZER = "zkop.io/zookeeperznode"
RESYNC = 30.0
TENANT_PERMS = Permissions.READ | Permissions.WRITE | Permissions.CREATE | Permissions.DELETE


def credentials_name(name: str) -> str:
    """The name of the secret that holds a ZookeeperZnode's credentials (in its namespace)."""
    return f"zkop-znode-{name}"


def tenant_user(namespace: str, name: str) -> str:
    return f"znode/{namespace}/{name}"


def paths_overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def cluster_of(obj: ZookeeperZnode) -> ClusterRef:
    ref = obj.spec.cluster_ref
    return ClusterRef(ref.namespace or obj.namespace, ref.name)


def _age(obj: ZookeeperZnode) -> tuple[float, str]:
    created = obj.metadata.creation_timestamp
    return (created.timestamp() if created is not None else float("inf"), obj.key)


def _acl_key(acls: Iterable[Any]) -> set[tuple[int, str, str]]:
    return {(a.perms, a.id.scheme, a.id.id) for a in acls}


class ZookeeperZnodeReconciler:
    def __init__(self, platform: ZookeeperPlatform, secrets: SecretStore) -> None:
        self.platform = platform
        self.secrets = secrets
        self.refs: dict[tuple[str, str], set[Request]] = {}  # ZookeeperCluster -> znodes in it

    def znodes_in(self, obj: Resource) -> list[Request]:
        """ZookeeperZnodes to look at again when their ZookeeperCluster changes."""
        return list(self.refs.get((obj.namespace, obj.name), ()))

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        try:
            obj = await ctx.store.get("ZookeeperZnode", request.namespace, request.name)
        except NotFound:
            for users in self.refs.values():
                users.discard(request)
            return Result()
        assert isinstance(obj, ZookeeperZnode)
        cluster = cluster_of(obj)
        self.refs.setdefault((cluster.namespace, cluster.name), set()).add(request)
        if obj.metadata.deletion_timestamp is not None:
            return await self._finalize(ctx, obj)
        if FINALIZER not in obj.metadata.finalizers:
            await add_finalizer(ctx.store, obj, FINALIZER)
            return Result(requeue_after=0.0)

        hosts, problem = await self._cluster_hosts(ctx, obj)
        if problem is not None:
            await self._status(ctx, obj, "Pending", ready=(False, *problem), cluster_ready=(False, *problem))
            return Result(requeue_after=5.0)
        conflict = await self._conflict(ctx, obj)
        if conflict is not None:
            message = f"the path overlaps {conflict}'s in the same cluster; nothing is done"
            await self._status(
                ctx, obj, "Failed", ready=(False, "PathConflict", message), cluster_ready=(True, "Serving", hosts)
            )
            await ctx.event(obj, "Warning", "PathConflict", message)
            return Result(requeue_after=RESYNC)
        creds = await self._credentials(ctx, obj)
        try:
            client = await self._connect(cluster, hosts)
        except KazooException as exc:
            reason = ("ClusterUnreachable", f"{type(exc).__name__}: {exc}")
            await self._status(ctx, obj, "Pending", ready=(False, *reason), cluster_ready=(False, *reason))
            return Result(requeue_after=5.0)
        try:
            created = await self._ensure_path(client, obj, creds)
            limits = await self._ensure_quota(client, obj)
        finally:
            await client.stop()
        if created:
            await ctx.event(obj, "Normal", "Created", f"{obj.spec.path} in {cluster.key}, owned by {creds['user']}")
        quota = ZnodeQuotaStatus(znodes=limits.count, bytes=limits.size, hard=limits.hard) if limits else None
        await self._status(
            ctx,
            obj,
            "Ready",
            ready=(True, "Ready", f"{obj.spec.path} belongs to {creds['user']}"),
            cluster_ready=(True, "Serving", hosts),
            connection_string=hosts + obj.spec.path,
            user=creds["user"],
            quota=quota,
        )
        return Result(requeue_after=RESYNC)

    # ---- the cluster ---------------------------------------------------------------------

    async def _cluster_hosts(self, ctx: Context, obj: ZookeeperZnode) -> tuple[str, tuple[str, str] | None]:
        cluster = cluster_of(obj)
        try:
            zkc = await ctx.store.get("ZookeeperCluster", cluster.namespace, cluster.name)
        except NotFound:
            return "", ("ClusterNotFound", f"zookeepercluster {cluster.key} (spec.clusterRef) does not exist")
        assert isinstance(zkc, ZookeeperCluster)
        if not zkc.status.connection_string or not zkc.status.ready_replicas:
            return "", ("ClusterNotReady", f"zookeepercluster {cluster.key} is not serving yet")
        return zkc.status.connection_string, None

    async def _reach(self, cluster: ClusterRef, hosts: str) -> str:
        """Where the operator reaches the members now (on Kubernetes a Pod's IP), which need not
        be the names of the connection string that tenants get (cluster DNS, which the operator
        may not have); those names when the platform reports no serving member."""
        seen = await self.platform.observe(cluster)
        members = sorted(seen.members, key=lambda m: m.id) if seen is not None else []
        return ",".join(m.endpoint for m in members if m.ready) or hosts

    async def _connect(self, cluster: ClusterRef, hosts: str) -> ZkClient:
        password = await self.platform.super_password(cluster)
        tls = await self.platform.client_tls(cluster)
        via = await self._reach(cluster, hosts)
        client = ZkClient(via, auth_data=[auth.super_auth(password)], session_timeout=10, tls=tls)
        try:
            await client.start(timeout=15)
        except Exception as exc:
            raise KazooException(str(exc)) from None
        return client

    async def _conflict(self, ctx: Context, obj: ZookeeperZnode) -> str | None:
        """Another object with an overlapping path in the same cluster that was there first."""
        listed = await ctx.store.list("ZookeeperZnode")
        mine = cluster_of(obj)
        for other in listed.items:
            if not isinstance(other, ZookeeperZnode) or other.key == obj.key:
                continue
            if cluster_of(other) != mine or not paths_overlap(other.spec.path, obj.spec.path):
                continue
            if other.metadata.deletion_timestamp is not None and other.status.phase != "Ready":
                continue
            first = _age(other) < _age(obj)
            if first or other.status.phase == "Ready":
                return f"zookeeperznode {other.key} ({other.spec.path})"
        return None

    # ---- the identity ----------------------------------------------------------------------

    async def _credentials(self, ctx: Context, obj: ZookeeperZnode) -> Mapping[str, str]:
        """The tenant's identity, made once and handed over; what is there is kept."""
        name = credentials_name(obj.name)
        found = await self.secrets.read(obj.namespace, name)
        user = tenant_user(obj.namespace, obj.name)
        if found and found.get("user") == user and found.get("password"):
            return found
        password = pysecrets.token_urlsafe(24)
        data = {"user": user, "password": password, "auth": f"{user}:{password}"}
        await self.secrets.write(obj.namespace, name, data, epoch=ctx.epoch)
        await ctx.event(
            obj, "Normal", "CredentialsCreated", f"identity {user} in {self.secrets.reference(obj.namespace, name)}"
        )
        return data

    # ---- the path ---------------------------------------------------------------------------

    async def _ensure_path(self, client: ZkClient, obj: ZookeeperZnode, creds: Mapping[str, str]) -> bool:
        """Parents (super user only), then the path with the tenant's ACL; True when it was made."""
        password = await self._super_password(obj)
        operator_only = [ACL(Permissions.ALL, Id("digest", auth.digest(auth.SUPER_USER, password)))]
        parts = obj.spec.path.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/" + "/".join(parts[:i])
            with contextlib.suppress(NodeExistsError):
                await client.create(parent, b"", acl=operator_only)
        tenant = [make_digest_acl(creds["user"], creds["password"], read=True, write=True, create=True, delete=True)]
        try:
            await client.create(obj.spec.path, b"", acl=tenant)
            return True
        except NodeExistsError:
            pass
        acls, stat = await client.get_acls(obj.spec.path)
        if _acl_key(acls) != _acl_key(tenant):
            await client.set_acls(obj.spec.path, tenant, stat.aversion)
        return False

    async def _super_password(self, obj: ZookeeperZnode) -> str:
        return await self.platform.super_password(cluster_of(obj))

    async def _ensure_quota(self, client: ZkClient, obj: ZookeeperZnode) -> Q.Limits | None:
        wanted = obj.spec.quota
        path = obj.spec.path
        if wanted is None:
            await _delete_tree(client, Q.quota_node(path))
            return None
        limits = Q.Limits(
            wanted.znodes, int(wanted.bytes.bytes) if wanted.bytes is not None else None, hard=wanted.hard
        )
        try:
            data, _ = await client.get(Q.limits_path(path))
            if Q.Limits.decode(data) != limits:
                await client.set(Q.limits_path(path), limits.encode())
        except NoNodeError:
            await client.ensure_path(Q.quota_node(path))
            with contextlib.suppress(NodeExistsError):
                await client.create(Q.limits_path(path), limits.encode())
        # The stats node last: the server counts the subtree when it is made.
        with contextlib.suppress(NodeExistsError):
            await client.create(Q.stats_path(path), Q.EMPTY_STATS)
        return limits

    # ---- status and deletion ---------------------------------------------------------------

    async def _status(
        self,
        ctx: Context,
        obj: ZookeeperZnode,
        phase: str,
        *,
        ready: tuple[bool, str, str],
        cluster_ready: tuple[bool, str, str],
        connection_string: str | None = None,
        user: str | None = None,
        quota: ZnodeQuotaStatus | None = None,
    ) -> None:
        old = obj.status
        status = ZookeeperZnodeStatus(
            observed_generation=obj.metadata.generation,
            phase=phase,
            connection_string=connection_string or old.connection_string,
            user=user or old.user,
            credentials=self.secrets.reference(obj.namespace, credentials_name(obj.name)) if user else old.credentials,
            quota=quota if phase == "Ready" else old.quota,
            conditions=merge_conditions(
                old.conditions,
                {"Ready": ready, "ClusterReady": cluster_ready},
                generation=obj.metadata.generation,
                succeeded=True,
            ),
        )
        if status != old:
            with contextlib.suppress(NotFound):
                await ctx.store.update_status(obj.model_copy(update={"status": status}))

    async def _finalize(self, ctx: Context, obj: ZookeeperZnode) -> Result:
        if FINALIZER not in obj.metadata.finalizers:
            return Result()
        cluster = cluster_of(obj)
        user = tenant_user(obj.namespace, obj.name)
        if obj.spec.reclaim_policy == "Delete":
            hosts, problem = await self._cluster_hosts(ctx, obj)
            if problem is not None and problem[0] == "ClusterNotReady":
                return Result(requeue_after=5.0)  # the data is there: remove it once the cluster serves
            if problem is None:
                client = await self._connect(cluster, hosts)
                try:
                    if await self._owned(client, obj.spec.path, user):
                        await _delete_tree(client, obj.spec.path)
                        await _delete_tree(client, Q.quota_node(obj.spec.path))
                finally:
                    await client.stop()
            await self.secrets.delete(obj.namespace, credentials_name(obj.name), epoch=ctx.epoch)
            await ctx.event(obj, "Normal", "Deleted", f"{obj.spec.path} removed with its quota and credentials")
        else:
            await ctx.event(obj, "Normal", "Retained", f"{obj.spec.path} and the credentials of {user} kept")
        await remove_finalizer(ctx.store, obj, FINALIZER)
        return Result()

    @staticmethod
    async def _owned(client: ZkClient, path: str, user: str) -> bool:
        """Whether the path's ACL names ``user`` (its data is this object's to remove)."""
        try:
            acls, _ = await client.get_acls(path)
        except NoNodeError:
            return False
        return any(a.id.scheme == "digest" and a.id.id.split(":", 1)[0] == user for a in acls)


async def _delete_tree(client: ZkClient, path: str) -> None:
    """Remove ``path`` and everything under it (children first); gone already is fine."""
    try:
        children = await client.get_children(path)
    except NoNodeError:
        return
    for child in children:
        await _delete_tree(client, f"{path.rstrip('/')}/{child}")
    for _ in range(3):
        try:
            await client.delete(path)
            return
        except NoNodeError:
            return
        except NotEmptyError:  # a tenant's client still writes: look again
            for child in await client.get_children(path):
                await _delete_tree(client, f"{path.rstrip('/')}/{child}")


def controller(namespace: str | None, platform: ZookeeperPlatform, secrets: SecretStore) -> Controller:
    reconciler = ZookeeperZnodeReconciler(platform, secrets)
    return Controller(
        "zookeeperznode",
        "ZookeeperZnode",
        reconciler,
        workers=2,
        namespace=namespace,
        resync_period=RESYNC,
        watches=[Watch("ZookeeperCluster", reconciler.znodes_in)],
    )


__all__ = [
    "FINALIZER",
    "ZookeeperZnodeReconciler",
    "controller",
    "credentials_name",
    "paths_overlap",
    "tenant_user",
]
