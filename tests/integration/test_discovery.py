"""Service discovery and the TCP proxy against real ZooKeeper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from zkop.client.bridge import ZkClient
from zkop.client.connect import Connection
from zkop.discovery import AsyncServiceDiscovery, Instance, Proxy, ServiceDiscovery, registry

pytestmark = pytest.mark.integration


@pytest.fixture
async def sd(connection: Connection) -> AsyncIterator[AsyncServiceDiscovery]:
    # Discovery clients need no credentials: endpoints are world-readable.
    d = AsyncServiceDiscovery(connection.hosts, root=connection.root)
    await d.start()
    try:
        yield d
    finally:
        await d.close()


def inst(i: int, port: int = 0) -> Instance:
    return Instance(f"i{i}", "127.0.0.1", port or 40000 + i)


async def publish(client: ZkClient, conn: Connection, *instances: Instance, app: str = "web") -> None:
    for x in instances:
        await registry.publish_endpoint(client, conn.root, "default", app, x, conn.acl())


async def test_cache_follows_publish_and_withdraw(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    provider = await sd.provider("default/web")
    assert provider.get_instance() is None
    await publish(zk_client, connection, inst(1), inst(2))
    await provider.cache.wait_for(lambda xs: len(xs) == 2)
    picks = {provider.get_instance().id for _ in range(4)}  # type: ignore[union-attr]
    assert picks == {"i1", "i2"}, "round robin visits every instance"
    await registry.withdraw_endpoint(zk_client, connection.root, "default", "web", "i1")
    await provider.cache.wait_for(lambda xs: [x.id for x in xs] == ["i2"])
    moved = Instance("i2", "127.0.0.1", 40999)
    await publish(zk_client, connection, moved)
    await provider.cache.wait_for(lambda xs: xs == [moved])


async def test_corrupt_endpoint_is_skipped(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    await publish(zk_client, connection, inst(1))
    base = registry.endpoints_path(connection.root, "default", "web")
    await zk_client.create(f"{base}/junk", b"{not json", acl=[*connection.acl(), registry.WORLD_READ])
    provider = await sd.provider("default/web")
    await provider.cache.wait_for(lambda xs: [x.id for x in xs] == ["i1"])


async def test_strategies_and_down_policy(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    await publish(zk_client, connection, inst(1), inst(2), inst(3))
    hashed = await sd.provider("default/web", strategy="consistent_hash")
    await hashed.cache.wait_for(lambda xs: len(xs) == 3)
    owner = hashed.get_instance("user-42")
    assert owner is not None and all(hashed.get_instance("user-42") == owner for _ in range(20))
    rr = await sd.provider("default/web")
    bad = rr.get_instance()
    assert bad is not None
    for _ in range(3):
        rr.note_error(bad)
    assert all(rr.get_instance() != bad for _ in range(9)), "an erroring instance is out for a while"
    with rr.call() as chosen:
        assert chosen is not None and chosen != bad


async def test_self_registration_is_ephemeral(
    connection: Connection, sd: AsyncServiceDiscovery, zk_client: ZkClient
) -> None:
    await registry.ensure_service(zk_client, connection.root, "default", "legacy", connection.acl())
    provider = await sd.provider("default/legacy")
    other = AsyncServiceDiscovery(connection.hosts, root=connection.root)  # anonymous, like a service
    await other.start()
    reg = await other.register("default", "legacy", inst(7))
    await reg.report_load(0.5)
    await provider.cache.wait_for(lambda xs: [x.id for x in xs] == ["i7"])
    assert await registry.read_loads(zk_client, connection.root, "default", "legacy") == {"i7": 0.5}
    await other.close()  # the session ends: its endpoint goes with it
    await provider.cache.wait_for(lambda xs: xs == [])


async def test_anonymous_clients_read_but_cannot_change_operator_endpoints(
    zk_client: ZkClient, connection: Connection
) -> None:
    await publish(zk_client, connection, inst(1))
    anon = KazooClient(connection.hosts)
    anon.start(timeout=10)
    try:
        path = f"{registry.endpoints_path(connection.root, 'default', 'web')}/i1"
        assert registry.decode(anon.get(path)[0]) == inst(1)
        with pytest.raises(NoAuthError):
            anon.set(path, b"{}")
        with pytest.raises(NoAuthError):
            anon.delete(path)
    finally:
        anon.stop()
        anon.close()


def test_blocking_api(connection: Connection, shared_zk: object) -> None:
    with ServiceDiscovery(connection.hosts, root=connection.root, auth_data=connection.auth_data) as sd:
        reg = sd.register("default", "sync", inst(3))
        provider = sd.provider("default/sync", strategy="least_connections")
        assert provider.wait_instance().id == "i3"
        with provider.call() as chosen:
            assert chosen is not None and chosen.id == "i3"
        reg.unregister()


async def echo_server(tag: bytes) -> asyncio.Server:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read(1024)
        w.write(tag + b":" + data)
        await w.drain()
        w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_proxy_forwards_and_retries_a_dead_endpoint(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    a, b = await echo_server(b"a"), await echo_server(b"b")
    dead = await echo_server(b"dead")
    dead_port = dead.sockets[0].getsockname()[1]
    dead.close()
    await dead.wait_closed()
    try:
        await publish(
            zk_client,
            connection,
            Instance("a", "127.0.0.1", a.sockets[0].getsockname()[1]),
            Instance("b", "127.0.0.1", b.sockets[0].getsockname()[1]),
            Instance("dead", "127.0.0.1", dead_port),
        )
        provider = await sd.provider("default/web")
        await provider.cache.wait_for(lambda xs: len(xs) == 3)
        proxy = Proxy(provider, attempts=3)
        port = await proxy.start()
        answers = []
        for i in range(30):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"ping%d" % i)
            await w.drain()
            answers.append(await r.read())
            w.close()
        await proxy.stop()
        assert all(x.endswith(b"ping%d" % i) for i, x in enumerate(answers)), "no request failed"
        assert {x.split(b":")[0] for x in answers} == {b"a", b"b"}
        assert proxy.stats.connect_failures >= 1 and proxy.stats.refused == 0
    finally:
        for s in (a, b):
            s.close()
            await s.wait_closed()
