"""Backups of a running cluster, restore into a new one, damage refused, schedules with retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.security import ACL, ANYONE_ID_UNSAFE, Permissions, make_digest_acl
from typer.testing import CliRunner, Result

from tests.integration.test_zookeepercluster import Operator, available, cluster
from zkop.api import parse_object, to_dict
from zkop.backup.schedule import REQUEST_ANNOTATION, ScheduledBackups
from zkop.cli.local import stop_everything
from zkop.cli.main import app
from zkop.client.connect import Connection
from zkop.controllers.zookeepercluster import controller as zkc_controller
from zkop.platform.base import ClusterRef
from zkop.platform.local.platform import LocalPlatform
from zkop.platform.local.zookeeper import LocalZookeeperPlatform
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.store import NotFound, Store
from zkop.store.modify import set_annotation
from zkop.zk import auth
from zkop.zk.quota import Limits, limits_path, quota_node, stats_path

pytestmark = pytest.mark.integration

APP_ACL = make_digest_acl("app", "app-password", all=True)
READ_ALL = ACL(Permissions.READ, ANYONE_ID_UNSAFE)
N = 40


@pytest.fixture
async def op(connection: Connection, store: Store, tmp_path: Path) -> AsyncIterator[Operator]:
    """The ZookeeperCluster operator with scheduled backups (looked at every second)."""
    state = tmp_path / "state"
    local = LocalPlatform(state, "zkop-operator")
    platform = LocalZookeeperPlatform(state, local.fence)
    backups = ScheduledBackups(platform, state / "backups", check_period=1.0)
    reconciler = zkc_controller.ZookeeperClusterReconciler(platform, unresponsive_grace=5.0, backups=backups)
    ctrl = zkc_controller.Controller("zookeepercluster", "ZookeeperCluster", reconciler, workers=2)
    manager = Manager(
        connection,
        ManagerOptions(name="backup-test", session_timeout=6.0, metrics_port=None),
        controllers=[ctrl],
        platforms=[local],
    )
    task = asyncio.create_task(manager.run())
    try:
        yield Operator(store, platform, state)
    finally:
        manager.stop()
        await task
        await asyncio.to_thread(stop_everything, state, 5.0)


def cli(connection: Connection, state: Path, *args: str) -> Result:
    env = {
        "ZKOP_ZK": connection.hosts,
        "ZKOP_AUTH": f"{connection.user}:{connection.password}",
        "ZKOP_ROOT": connection.root,
        "ZKOP_STATE_DIR": str(state),
    }
    return CliRunner().invoke(app, list(args), env=env)


async def zkop(connection: Connection, state: Path, *args: str) -> Any:
    result = await asyncio.to_thread(cli, connection, state, *args, "-o", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


async def refused(connection: Connection, state: Path, *args: str) -> str:
    result = await asyncio.to_thread(cli, connection, state, *args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


async def super_client(op: Operator, name: str) -> KazooClient:
    obj = await op.get(name)
    password = await op.platform.super_password(ClusterRef("default", name))
    client = KazooClient(obj.status.connection_string, timeout=10, auth_data=[auth.super_auth(password)])
    await asyncio.to_thread(client.start, 20)
    return client


@pytest.mark.timeout(420)
async def test_backup_then_restore_into_a_new_cluster(op: Operator, connection: Connection) -> None:
    await op.store.create(cluster("zk", replicas=3, policy="Delete"))
    await op.wait(available(3), timeout=120)
    su = await super_client(op, "zk")

    def write(first: int, last: int) -> None:
        su.ensure_path("/data")
        for i in range(first, last):
            acl = [APP_ACL] if i % 2 == 0 else [APP_ACL, READ_ALL]
            su.create(f"/data/n{i:03d}", f"value {i}".encode(), acl=acl)
        su.ensure_path("/open")

    try:
        await asyncio.to_thread(write, 0, N)
        # A quota on /data, as zkCli's setquota writes it.
        await asyncio.to_thread(su.ensure_path, quota_node("/data"))
        await asyncio.to_thread(su.create, limits_path("/data"), Limits(1000, None).encode())
        await asyncio.to_thread(su.create, stats_path("/data"), b"count=0,bytes=0")
        made = await zkop(connection, op.state_dir, "backup", "create", "zkc", "zk")
        await asyncio.to_thread(write, N, N + 20)  # after the backup: not in it
    finally:
        await asyncio.to_thread(su.stop)
        su.close()
    assert made["acls"] > N and made["quotas"] == 1 and made["files"] >= 4
    backup_dir = op.state_dir / "backups" / made["name"]
    acls = json.loads((backup_dir / "acls.json").read_text())
    assert acls["/data/n000"] == [[31, "digest", APP_ACL.id.id]]
    assert json.loads((backup_dir / "quotas.json").read_text()) == {"/data": "count=1000,bytes=-1"}

    # Destroy the cluster (and its data), then restore.
    await op.store.delete("zkc", "default", "zk")
    await op.wait_gone("zk", timeout=120)
    listed = await zkop(connection, op.state_dir, "backup", "list")
    assert [b["name"] for b in listed] == [made["name"]] and listed[0]["lastZxid"] == made["lastZxid"]
    restored = await zkop(connection, op.state_dir, "backup", "restore", made["name"], "--into", "zk2")
    assert restored["restoredZxid"] == made["lastZxid"]
    obj = await op.wait(lambda o: available(3)(o) and o.status.restored is not None, name="zk2", timeout=180)
    assert obj.status.restored is not None
    assert (obj.status.restored.backup, obj.status.restored.zxid) == (made["name"], made["lastZxid"])
    assert sorted(m.id for m in obj.status.members) == [1, 2, 3]

    client = KazooClient(obj.status.connection_string, timeout=10, auth_data=[("digest", "app:app-password")])
    await asyncio.to_thread(client.start, 20)
    try:
        children = sorted(await asyncio.to_thread(client.get_children, "/data"))
        assert children == [f"n{i:03d}" for i in range(N)], "the first N are there, the later ones not"
        for i in range(N):
            data, _ = await asyncio.to_thread(client.get, f"/data/n{i:03d}")
            assert data == f"value {i}".encode()
            found, _ = await asyncio.to_thread(client.get_acls, f"/data/n{i:03d}")
            assert [[a.perms, a.id.scheme, a.id.id] for a in found] == acls[f"/data/n{i:03d}"]
        limits, _ = await asyncio.to_thread(client.get, limits_path("/data"))
        assert Limits.decode(limits) == Limits(1000, None)
    finally:
        await asyncio.to_thread(client.stop)
        client.close()
    # Restoring over a cluster that exists is refused.
    out = await refused(connection, op.state_dir, "backup", "restore", made["name"], "--into", "zk2")
    assert "exists" in out and "refused" in out


async def test_a_damaged_backup_is_refused_and_nothing_starts(op: Operator, connection: Connection) -> None:
    await op.store.create(cluster("zk", replicas=1))
    obj = await op.wait(available(1), timeout=120)
    su = await super_client(op, "zk")
    try:
        for i in range(20):
            await asyncio.to_thread(su.create, f"/n{i}", b"x" * 100)
    finally:
        await asyncio.to_thread(su.stop)
        su.close()
    made = await zkop(connection, op.state_dir, "backup", "create", "zkc", "zk", "--name", "nightly")
    assert made["name"] == "nightly" and obj.status.connection_string
    where = op.state_dir / "backups" / "nightly"
    log = sorted((where / "data").glob("log.*"))[-1]
    raw = bytearray(log.read_bytes())
    raw[40] ^= 0x01  # one bit of a transaction
    log.write_bytes(bytes(raw))
    out = await refused(connection, op.state_dir, "backup", "restore", "nightly", "--into", "copy")
    assert "damaged" in out and log.name in out and "nothing was restored" in out
    assert not LocalZookeeperPlatform(op.state_dir, None).ensemble(ClusterRef("default", "copy")).exists()
    with pytest.raises(NotFound):
        await op.get("copy")
    # The manifest itself changed: refused by its own checksum.
    raw[40] ^= 0x01
    log.write_bytes(bytes(raw))
    manifest = (where / "backup.json").read_text()
    (where / "backup.json").write_text(manifest.replace('"acls": ', '"acls": 1'))
    out = await refused(connection, op.state_dir, "backup", "restore", "nightly", "--into", "copy")
    assert "backup.json does not match its sha256" in out
    out = await refused(connection, op.state_dir, "backup", "restore", "nope", "--into", "copy")
    assert "there is no backup 'nope'" in out


async def test_scheduled_backups_keep_the_newest(op: Operator, connection: Connection) -> None:
    doc = to_dict(cluster("zk", replicas=1))
    doc["spec"]["backup"] = {"intervalSeconds": 10, "retain": 2}
    await op.store.create(parse_object(doc))
    await op.wait_event("BackupCreated", 3, timeout=120)
    await op.wait_event("BackupRemoved", 1, timeout=30)
    listed = await zkop(connection, op.state_dir, "backup", "list")
    assert 2 <= len(listed) <= 3 and {b["cluster"] for b in listed} == {"default/zk"}
    obj = await op.wait(lambda o: o.status.last_backup is not None)
    assert obj.status.last_backup is not None and obj.status.last_backup.name in {b["name"] for b in listed}


async def test_a_backup_asked_for_by_annotation_is_taken_once(op: Operator, connection: Connection) -> None:
    """What `zkop backup create --kubeconfig` does, on the local operator: the annotation asks for
    a backup of a cluster without a schedule; a request older than the newest backup asks nothing."""
    await op.store.create(cluster("zk", replicas=1))
    obj = await op.wait(available(1), timeout=120)
    asked = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    await op.store.modify("ZookeeperCluster", "default", "zk", set_annotation(REQUEST_ANNOTATION, asked))
    obj = await op.wait(lambda o: o.status.last_backup is not None, timeout=60)
    assert obj.status.last_backup is not None
    first = obj.status.last_backup.name
    assert [b["name"] for b in await zkop(connection, op.state_dir, "backup", "list")] == [first]
    # The reconciles that follow (status writes, resyncs) see the request answered.
    await op.store.modify("ZookeeperCluster", "default", "zk", set_annotation("zkop.io/touched", "yes"))
    await op.wait(
        lambda o: o.metadata.annotations.get("zkop.io/touched") == "yes" and o.status.observed_generation is not None
    )
    assert (await op.reasons("zk")).count("BackupCreated") == 1
