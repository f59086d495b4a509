"""Tenants: ZookeeperZnode on a real cluster run by the operator, and an Application using one."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError, QuotaExceededError
from kazoo.security import CREATOR_ALL_ACL

from zkop.api import Application, Resource, ZookeeperCluster, ZookeeperZnode, parse_object
from zkop.cli.local import stop_everything
from zkop.client.connect import Connection
from zkop.controllers import zookeeperznode as znode_controller
from zkop.controllers.application import controller as app_controller
from zkop.controllers.zookeepercluster import controller as zkc_controller
from zkop.platform.base import ClusterRef
from zkop.platform.local.applications import LocalInstancePlatform
from zkop.platform.local.platform import LocalPlatform
from zkop.platform.local.secrets import LocalSecretStore
from zkop.platform.local.zookeeper import LocalZookeeperPlatform
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.store import NotFound, Store
from zkop.zk import auth
from zkop.zk.quota import Limits, limits_path
from zkop.zk.tls import TlsFiles, write_private

pytestmark = pytest.mark.integration


def doc(kind: str, name: str, spec: dict[str, Any]) -> Resource:
    return parse_object({"apiVersion": "zkop.io/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})


def znode(name: str, path: str, **spec: Any) -> Resource:
    return doc("ZookeeperZnode", name, {"clusterRef": {"name": "zk"}, "path": path, **spec})


@dataclass
class Env:
    store: Store
    state: Path
    zookeepers: LocalZookeeperPlatform
    secrets: LocalSecretStore

    async def get(self, kind: str, name: str) -> Any:
        return await self.store.get(kind, "default", name)

    async def wait(self, kind: str, name: str, pred: Callable[[Any], bool], timeout: float = 90.0) -> Any:
        last: Any = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        last = await self.get(kind, name)
                        if pred(last):
                            return last
                    except NotFound:
                        pass
                    await asyncio.sleep(0.2)
        except TimeoutError:
            events = await self.store.list_events("default", kind=kind, name=name)
            story = "\n".join(f"  {e.reason}: {e.message}" for e in events)
            raise AssertionError(f"{kind}/{name} timed out; last: {last}\nevents:\n{story}") from None

    async def wait_gone(self, kind: str, name: str, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.get(kind, name)
                except NotFound:
                    return
                await asyncio.sleep(0.2)

    async def hosts(self) -> str:
        zkc = await self.get("ZookeeperCluster", "zk")
        assert isinstance(zkc, ZookeeperCluster) and zkc.status.connection_string
        return zkc.status.connection_string

    async def super_client(self) -> KazooClient:
        password = await self.zookeepers.super_password(ClusterRef("default", "zk"))
        client = KazooClient(await self.hosts(), timeout=10, auth_data=[auth.super_auth(password)])
        await asyncio.to_thread(client.start, 20)
        return client

    async def ready(self, name: str) -> ZookeeperZnode:
        obj = await self.wait("ZookeeperZnode", name, lambda o: o.status.phase == "Ready")
        assert isinstance(obj, ZookeeperZnode)
        return obj


@pytest.fixture
async def env(connection: Connection, store: Store, tmp_path: Path) -> AsyncIterator[Env]:
    state = tmp_path / "state"
    local = LocalPlatform(state, "zkop-operator")
    zookeepers = LocalZookeeperPlatform(state, local.fence)
    secrets = LocalSecretStore(state, local.fence)
    instances = LocalInstancePlatform(state, local.fence)
    manager = Manager(
        connection,
        ManagerOptions(name="tenants", session_timeout=6.0, metrics_port=None),
        controllers=[
            zkc_controller.Controller(
                "zookeepercluster", "ZookeeperCluster", zkc_controller.ZookeeperClusterReconciler(zookeepers), workers=2
            ),
            znode_controller.controller(None, zookeepers, secrets),
            app_controller.controller(None, instances, connection.root, secrets=secrets),
        ],
        platforms=[local],
        runnables=[instances],
    )
    task = asyncio.create_task(manager.run())
    e = Env(store, state, zookeepers, secrets)
    try:
        await store.create(
            doc(
                "ZookeeperCluster",
                "zk",
                {"replicas": 1, "config": {"tickTime": 500}, "jvm": {"heap": "64Mi"}},
            )
        )
        await e.wait(
            "ZookeeperCluster", "zk", lambda o: o.status.ready_replicas == 1 and bool(o.status.connection_string)
        )
        yield e
    finally:
        manager.stop()
        await task
        await asyncio.to_thread(stop_everything, state, 5.0)


def connect(hosts: str, auth_value: str | None = None) -> KazooClient:
    auth_data = [("digest", auth_value)] if auth_value else []
    client = KazooClient(hosts, timeout=10, auth_data=auth_data, default_acl=CREATOR_ALL_ACL if auth_value else None)
    client.start(timeout=20)
    return client


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except NoAuthError:
        return True
    return False


async def test_tenants_cannot_reach_each_other_nor_anonymous_clients(env: Env) -> None:
    await env.store.create(znode("orders", "/apps/orders", quota={"znodes": 5, "bytes": "1Ki"}))
    await env.store.create(znode("billing", "/apps/billing"))
    orders, billing = await env.ready("orders"), await env.ready("billing")
    hosts = await env.hosts()
    assert orders.status.connection_string == f"{hosts}/apps/orders"
    assert orders.status.user == "znode/default/orders"
    creds_dir = Path(orders.status.credentials or "")
    assert (creds_dir / "auth").stat().st_mode & 0o777 == 0o600 and creds_dir.stat().st_mode & 0o777 == 0o700
    a_auth, b_auth = (creds_dir / "auth").read_text(), Path(billing.status.credentials or "", "auth").read_text()
    assert orders.status.quota is not None and orders.status.quota.znodes == 5 and orders.status.quota.bytes == 1024

    def scenario() -> None:
        a = connect(orders.status.connection_string or "", a_auth)  # chrooted at its path
        b = connect(hosts, b_auth)
        anon = connect(hosts)
        try:
            a.create("/cart", b"secret")
            a.set("/", b"root data")
            assert a.get("/cart")[0] == b"secret" and a.get_children("/") == ["cart"]
            # The other tenant: nothing of /apps/orders, neither read nor changed nor listed.
            assert refused(lambda: b.get("/apps/orders"))
            assert refused(lambda: b.get_children("/apps/orders"))
            assert refused(lambda: b.get("/apps/orders/cart"))
            assert refused(lambda: b.create("/apps/orders/intruder", b"x"))
            assert refused(lambda: b.set("/apps/orders", b"x"))
            assert refused(lambda: b.delete("/apps/orders/cart"))
            # Anonymous: not even the list of tenants.
            assert refused(lambda: anon.get("/apps/orders"))
            assert refused(lambda: anon.get_children("/apps"))
            assert refused(lambda: anon.get("/apps/orders/cart"))
            # Its own path works for the other tenant.
            b.create("/apps/billing/invoice", b"1")
            assert b.get("/apps/billing/invoice")[0] == b"1"
            # The root's ACL is the operator's: a tenant may not open it to the world.
            assert refused(lambda: a.set_acls("/", CREATOR_ALL_ACL))
        finally:
            for c in (a, b, anon):
                c.stop()
                c.close()

    await asyncio.to_thread(scenario)
    su = await env.super_client()
    try:
        data, _ = await asyncio.to_thread(su.get, limits_path("/apps/orders"))
        assert Limits.decode(data) == Limits(5, 1024)
    finally:
        await asyncio.to_thread(su.stop)
        su.close()
    # A path inside another tenant's is refused, and nothing is made for it.
    await env.store.create(znode("nested", "/apps/orders/sub"))
    nested = await env.wait("ZookeeperZnode", "nested", lambda o: o.status.phase == "Failed")
    assert any(c.reason == "PathConflict" for c in nested.status.conditions)
    assert await env.secrets.read("default", znode_controller.credentials_name("nested")) is None


async def test_a_hard_quota_is_enforced(env: Env) -> None:
    """With ``enforceQuota`` in the cluster's configuration a hard quota refuses writes."""
    zkc = await env.get("ZookeeperCluster", "zk")
    config = zkc.spec.config.model_copy(update={"additional_config": {"enforceQuota": "true"}})
    await env.store.update(zkc.model_copy(update={"spec": zkc.spec.model_copy(update={"config": config})}))
    await env.wait(
        "ZookeeperCluster", "zk", lambda o: o.status.observed_generation == 2 and o.status.phase == "Running"
    )
    await env.wait("ZookeeperCluster", "zk", lambda o: o.status.ready_replicas == 1)
    await env.store.create(znode("small", "/small", quota={"znodes": 3, "hard": True}))
    small = await env.ready("small")
    auth_value = Path(small.status.credentials or "", "auth").read_text()

    def fill() -> int:
        client = connect(small.status.connection_string or "", auth_value)
        made = 0
        try:
            for i in range(5):
                try:
                    client.create(f"/n{i}", b"")
                    made += 1
                except QuotaExceededError:
                    break
        finally:
            client.stop()
            client.close()
        return made

    assert await asyncio.to_thread(fill) == 2  # the path itself counts


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
async def test_delete_applies_the_reclaim_policy(env: Env, policy: str) -> None:
    await env.store.create(znode("orders", "/apps/orders", reclaimPolicy=policy, quota={"znodes": 10}))
    orders = await env.ready("orders")
    auth_value = Path(orders.status.credentials or "", "auth").read_text()

    def write() -> None:
        c = connect(orders.status.connection_string or "", auth_value)
        try:
            c.create("/kept", b"data")
        finally:
            c.stop()
            c.close()

    await asyncio.to_thread(write)
    await env.store.delete("ZookeeperZnode", "default", "orders")
    await env.wait_gone("ZookeeperZnode", "orders")
    su = await env.super_client()
    try:
        exists = await asyncio.to_thread(su.exists, "/apps/orders/kept")
        quota = await asyncio.to_thread(su.exists, limits_path("/apps/orders"))
    finally:
        await asyncio.to_thread(su.stop)
        su.close()
    creds = await env.secrets.read("default", znode_controller.credentials_name("orders"))
    if policy == "Delete":
        assert exists is None and quota is None and creds is None
        return
    assert exists is not None and quota is not None and creds is not None and creds["auth"] == auth_value
    # A new object of the same name takes the path and its identity over.
    await env.store.create(znode("orders", "/apps/orders", reclaimPolicy="Delete"))
    again = await env.ready("orders")
    assert Path(again.status.credentials or "", "auth").read_text() == auth_value

    def read() -> bytes:
        c = connect(again.status.connection_string or "", auth_value)
        try:
            data: bytes = c.get("/kept")[0]
            return data
        finally:
            c.stop()
            c.close()

    assert await asyncio.to_thread(read) == b"data"


APP = textwrap.dedent(
    """
    import os, time
    from kazoo.client import KazooClient
    from kazoo.security import CREATOR_ALL_ACL
    client = KazooClient(os.environ["ZK_HOSTS"], auth_data=[("digest", os.environ["ZK_AUTH"])],
                         default_acl=CREATOR_ALL_ACL)
    client.start(timeout=30)
    client.ensure_path("/instances")
    client.create("/instances/" + os.environ["ZKOP_INSTANCE"], os.environ["ZK_HOSTS"].encode())
    client.stop()
    while True:
        time.sleep(60)
    """
)


async def test_an_application_gets_the_znode_as_chroot_and_its_identity(env: Env, tmp_path: Path) -> None:
    await env.store.create(znode("web-data", "/apps/web"))
    web = await env.ready("web-data")
    script = tmp_path / "app.py"
    script.write_text(APP)
    app = doc(
        "Application",
        "web",
        {
            "replicas": 2,
            "template": {"command": [sys.executable, str(script)]},
            "zookeeper": {"clusterRef": {"name": "zk"}, "znodeRef": {"name": "web-data"}},
        },
    )
    await env.store.create(app)
    auth_value = Path(web.status.credentials or "", "auth").read_text()

    def instances() -> dict[str, bytes]:
        c = connect(web.status.connection_string or "", auth_value)
        try:
            return {n: c.get(f"/instances/{n}")[0] for n in c.get_children("/instances")}
        except NoNodeError:
            return {}
        finally:
            c.stop()
            c.close()

    async with asyncio.timeout(60):
        while len(found := await asyncio.to_thread(instances)) < 2:  # noqa: ASYNC110 - polled znodes
            await asyncio.sleep(0.5)
    assert set(found.values()) == {(web.status.connection_string or "").encode()}
    # Anonymous clients see nothing of what the instances wrote.
    hosts = await env.hosts()

    def anonymous() -> bool:
        c = connect(hosts)
        try:
            return refused(lambda: c.get_children("/apps/web"))
        finally:
            c.stop()
            c.close()

    assert await asyncio.to_thread(anonymous)
    obj = await env.get("Application", "web")
    assert isinstance(obj, Application)


async def test_a_tenant_on_a_cluster_with_client_tls(env: Env, tmp_path: Path) -> None:
    """The operator reaches a TLS-only cluster with its own certificate; the tenant brings one."""
    tls_spec = {"replicas": 1, "config": {"tickTime": 500}, "jvm": {"heap": "64Mi"}, "tls": {"client": {}}}
    await env.store.create(doc("ZookeeperCluster", "zks", tls_spec))
    await env.wait(
        "ZookeeperCluster", "zks", lambda o: o.status.ready_replicas == 1 and bool(o.status.connection_string)
    )
    await env.store.create(doc("ZookeeperZnode", "secure", {"clusterRef": {"name": "zks"}, "path": "/apps/secure"}))
    secure = await env.ready("secure")
    auth_value = Path(secure.status.credentials or "", "auth").read_text()
    issued, ca = await env.zookeepers.issue_client_certificate(ClusterRef("default", "zks"), "tenant")
    write_private(tmp_path / "ca.crt", ca)
    write_private(tmp_path / "tenant.pem", issued.key_store)
    files = TlsFiles(tmp_path / "ca.crt", tmp_path / "tenant.pem")

    def use() -> bytes:
        client = KazooClient(
            secure.status.connection_string or "",
            timeout=10,
            auth_data=[("digest", auth_value)],
            default_acl=CREATOR_ALL_ACL,
            **files.kazoo_options(),
        )
        client.start(timeout=20)
        try:
            client.create("/x", b"over tls")
            data: bytes = client.get("/x")[0]
            return data
        finally:
            client.stop()
            client.close()

    assert await asyncio.to_thread(use) == b"over tls"
