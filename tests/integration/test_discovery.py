"""Service discovery, self-registration and the TCP proxy against real ZooKeeper.

Every wait is on a condition with a bound (``cache.wait_for`` or ``eventually``), never
a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import Permissions, make_digest_acl

from zkop.client.bridge import ZkClient
from zkop.client.connect import Connection
from zkop.discovery import (
    AsyncServiceDiscovery,
    DownInstancePolicy,
    Instance,
    NoInstanceError,
    Proxy,
    ServiceDiscovery,
    registry,
)
from zkop.discovery.strategies import ConsistentHash
from zkop.testing import Ensemble

pytestmark = pytest.mark.integration

BOUND = 10.0  # seconds any change may take to reach a cache (it takes milliseconds)


@pytest.fixture
async def sd(connection: Connection) -> AsyncIterator[AsyncServiceDiscovery]:
    # Discovery clients need no credentials: endpoints are world-readable.
    async with AsyncServiceDiscovery(connection.hosts, root=connection.root) as d:
        yield d


def inst(i: int, port: int = 0) -> Instance:
    return Instance(f"i{i}", "127.0.0.1", port or 40000 + i)


async def publish(client: ZkClient, conn: Connection, *instances: Instance, app: str = "web") -> None:
    for x in instances:
        await registry.publish_endpoint(client, conn.root, "default", app, x, conn.acl())


def ids(xs: list[Instance]) -> list[str]:
    return sorted(x.id for x in xs)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def expire_session(client: ZkClient) -> None:
    """End a client's session from outside (as the server does after a partition)."""
    session_id, password = client.kazoo.client_id
    other = KazooClient(client.hosts, client_id=(session_id, password))
    other.start(timeout=10)
    other.stop()
    other.close()


# ---- the cache ----------------------------------------------------------------------------


async def test_cache_follows_adds_changes_and_removes(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    await registry.ensure_service(zk_client, connection.root, "default", "web", connection.acl())
    provider = await sd.provider("default/web")
    assert provider.get_instance() is None
    for n in range(1, 6):
        await publish(zk_client, connection, inst(n))
        await provider.cache.wait_for(lambda xs, n=n: len(xs) == n, BOUND)
    picks = Counter(provider.get_instance().id for _ in range(10))  # type: ignore[union-attr]
    assert picks == {f"i{n}": 2 for n in range(1, 6)}, "round robin visits each instance in turn"
    await registry.withdraw_endpoint(zk_client, connection.root, "default", "web", "i1")
    await provider.cache.wait_for(lambda xs: "i1" not in ids(xs), BOUND)
    moved = Instance("i2", "127.0.0.1", 40999, {"zone": "b"})
    assert await registry.publish_endpoint(zk_client, connection.root, "default", "web", moved, connection.acl())
    assert not await registry.publish_endpoint(zk_client, connection.root, "default", "web", moved, connection.acl())
    await provider.cache.wait_for(lambda xs: moved in xs, BOUND)
    assert provider.instances() == [moved, inst(3), inst(4), inst(5)]


async def test_cache_of_a_service_that_does_not_exist_yet(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    provider = await sd.provider("default/later")
    assert provider.instances() == []
    await publish(zk_client, connection, inst(1), app="later")  # creates the folders
    await provider.cache.wait_for(lambda xs: ids(xs) == ["i1"], BOUND)


async def test_unreadable_and_corrupt_endpoints_are_skipped(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    await publish(zk_client, connection, inst(1))
    base = registry.endpoints_path(connection.root, "default", "web")
    readable = [*connection.acl(), registry.WORLD_READ]
    await zk_client.create(f"{base}/junk", b"{not json", acl=readable)
    await zk_client.create(f"{base}/liar", registry.encode(inst(9)), acl=readable)  # id != name
    await zk_client.create(f"{base}/secret", registry.encode(Instance("secret", "h", 1)), acl=connection.acl())
    provider = await sd.provider("default/web")
    assert ids(provider.instances()) == ["i1"]
    assert set(provider.cache.skipped) == {"junk", "liar", "secret"}
    assert "NoAuth" in provider.cache.skipped["secret"]
    # Fixing the data brings the endpoint in; breaking an endpoint takes it out.
    await zk_client.set(f"{base}/junk", registry.encode(Instance("junk", "127.0.0.1", 40100)))
    await provider.cache.wait_for(lambda xs: ids(xs) == ["i1", "junk"], BOUND)
    await zk_client.set(f"{base}/i1", b"\xff\xfe")
    await provider.cache.wait_for(lambda xs: ids(xs) == ["junk"], BOUND)
    assert set(provider.cache.skipped) == {"i1", "liar", "secret"}
    # The cache still follows the service.
    await publish(zk_client, connection, inst(2))
    await provider.cache.wait_for(lambda xs: ids(xs) == ["i2", "junk"], BOUND)


async def test_cache_survives_a_session_expiry(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    await publish(zk_client, connection, inst(1))
    provider = await sd.provider("default/web")
    first_session = sd.client.session_id
    await asyncio.to_thread(expire_session, sd.client)
    await eventually(lambda: asyncio.sleep(0, sd.client.connected and sd.client.session_id != first_session))
    # Watches are set again on the new session: later changes still arrive.
    await publish(zk_client, connection, inst(2))
    await provider.cache.wait_for(lambda xs: ids(xs) == ["i1", "i2"], BOUND)
    await registry.withdraw_endpoint(zk_client, connection.root, "default", "web", "i1")
    await provider.cache.wait_for(lambda xs: ids(xs) == ["i2"], BOUND)


async def test_cache_follows_changes_after_a_disconnect(zk_single: Ensemble) -> None:
    """kazoo drops its watches when the connection drops, even if the session survives:
    the cache must arm them again when it is back."""
    hosts = zk_single.connection_string
    conn = Connection(hosts, "zkop", "pw", root="/d")
    writer = conn.client()
    await writer.start()
    states: list[str] = []
    try:
        async with AsyncServiceDiscovery(hosts, root="/d", session_timeout=4.0) as sd:
            sd.client.add_state_listener(states.append)
            await publish(writer, conn, inst(1))
            provider = await sd.provider("default/web")
            session = sd.client.session_id
            member = zk_single.members[0]
            member.pause()  # a GC pause: the connection times out, the session does not
            try:
                await eventually(lambda: asyncio.sleep(0, "SUSPENDED" in states), 20)
            finally:
                member.resume()
            await eventually(lambda: asyncio.sleep(0, states[-1] == "CONNECTED"), 20)
            assert sd.client.session_id == session, "the same session"
            await publish(writer, conn, inst(2))
            await provider.cache.wait_for(lambda xs: ids(xs) == ["i1", "i2"], BOUND)
    finally:
        await writer.stop()


# ---- strategies and the down-instance policy ----------------------------------------------


async def test_strategies_through_the_provider(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    await publish(zk_client, connection, inst(1), inst(2), inst(3))
    await (await sd.cache("default/web")).wait_for(lambda xs: len(xs) == 3, BOUND)

    rand = await sd.provider("default/web", strategy="random")
    assert {rand.get_instance().id for _ in range(200)} == {"i1", "i2", "i3"}  # type: ignore[union-attr]

    least = await sd.provider("default/web", strategy="least_connections")
    with least.call() as a, least.call() as b, least.call() as c:
        assert {a.id, b.id, c.id} == {"i1", "i2", "i3"}, "each call goes to an idle instance"
        with least.call() as d:
            assert d.id in {"i1", "i2", "i3"}
    with least.call() as a, least.call() as b:
        assert b != a

    hashed = await sd.provider("default/web", strategy="consistent_hash")
    owner = hashed.get_instance("user-42")
    assert owner is not None and all(hashed.get_instance("user-42") == owner for _ in range(20))
    held = [hashed.call("user-42") for _ in range(6)]
    got = [c.__enter__() for c in held]
    # Bounded loads (epsilon 0.25): no instance takes more than ceil(1.25 * 6 / 3) = 3 of them.
    assert max(Counter(x.id for x in got).values()) <= 3 and got[0] == owner
    for c in held:
        c.__exit__(None, None, None)

    sticky = await sd.provider("default/web", strategy="sticky")
    stuck = sticky.get_instance()
    assert stuck is not None and all(sticky.get_instance() == stuck for _ in range(10))
    for _ in range(3):
        sticky.note_error(stuck)
    moved = sticky.get_instance()
    assert moved is not None and moved != stuck and all(sticky.get_instance() == moved for _ in range(10))


async def test_down_instance_policy(zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery) -> None:
    await publish(zk_client, connection, inst(1), inst(2), inst(3))
    now = [1000.0]
    policy = DownInstancePolicy(error_threshold=2, window=60, down_for=30, clock=lambda: now[0])
    provider = await sd.provider("default/web", down=policy)
    await provider.cache.wait_for(lambda xs: len(xs) == 3, BOUND)
    bad = inst(2)
    provider.note_error(bad)
    assert any(provider.get_instance() == bad for _ in range(3)), "one error is not enough"
    for _ in range(3):  # round robin: one of these calls goes to the bad instance
        with contextlib.suppress(ConnectionError), provider.call() as chosen:
            if chosen == bad:
                raise ConnectionError("refused")  # an exception leaving the block counts as an error
    assert provider.is_down(bad)
    assert all(provider.get_instance() != bad for _ in range(9)), "a failing instance is out"
    now[0] += 31
    assert any(provider.get_instance() == bad for _ in range(3)), "and back after down_for"
    # When all are down the policy fails open rather than refusing every call.
    for x in (inst(1), inst(2), inst(3)):
        provider.note_error(x)
        provider.note_error(x)
    assert {provider.get_instance().id for _ in range(3)} == {"i1", "i2", "i3"}  # type: ignore[union-attr]


async def test_no_instance(connection: Connection, zk_client: ZkClient, sd: AsyncServiceDiscovery) -> None:
    provider = await sd.provider("default/empty")
    assert provider.get_instance() is None
    with pytest.raises(NoInstanceError, match="default/empty has no endpoint"), provider.call():
        pass
    with pytest.raises(NoInstanceError):
        await provider.aget_instance(timeout=0.2)
    waiter = asyncio.create_task(provider.aget_instance(timeout=BOUND))
    await publish(zk_client, connection, inst(5), app="empty")
    assert await waiter == inst(5)


# ---- self-registration and load reports ---------------------------------------------------


async def test_self_registration_is_ephemeral(
    connection: Connection, sd: AsyncServiceDiscovery, zk_client: ZkClient
) -> None:
    identity = await registry.ensure_service(zk_client, connection.root, "default", "legacy", connection.acl())
    provider = await sd.provider("default/legacy")
    other = AsyncServiceDiscovery(connection.hosts, root=connection.root)  # a service with its identity
    await other.start()
    reg = await other.register("default", "legacy", inst(7), credentials=identity.credentials)
    await reg.report_load(0.5)
    await provider.cache.wait_for(lambda xs: ids(xs) == ["i7"], BOUND)
    assert await registry.read_loads(zk_client, connection.root, "default", "legacy") == {"i7": 0.5}
    stat = await zk_client.exists(reg.path)
    assert stat is not None and stat.ephemeralOwner == reg.client.session_id
    await other.close()  # the process goes: its endpoint and load report go with its session
    await provider.cache.wait_for(lambda xs: xs == [], BOUND)
    assert await registry.read_loads(zk_client, connection.root, "default", "legacy") == {}


async def test_unregister_and_reregister_after_session_expiry(
    connection: Connection, sd: AsyncServiceDiscovery, zk_client: ZkClient
) -> None:
    provider = await sd.provider("default/svc")  # before the service is in the registry
    identity = await registry.ensure_service(zk_client, connection.root, "default", "svc", connection.acl())
    reg = await sd.register("default", "svc", inst(1), credentials=identity.credentials)
    await reg.report_load(2.0)
    await provider.cache.wait_for(lambda xs: ids(xs) == ["i1"], BOUND)
    # The session expires: the endpoint goes, and comes back with the new session, load too.
    old = reg.client.session_id
    await asyncio.to_thread(expire_session, reg.client)

    async def registered_again() -> bool:
        stat = await zk_client.exists(reg.path)
        return stat is not None and stat.ephemeralOwner not in (0, old)

    await eventually(registered_again)
    await provider.cache.wait_for(lambda xs: ids(xs) == ["i1"], BOUND)

    async def load_back() -> bool:
        return await registry.read_loads(zk_client, connection.root, "default", "svc") == {"i1": 2.0}

    await eventually(load_back)
    # unregister takes it out at once (it ends the registration's session).
    await reg.unregister()
    await provider.cache.wait_for(lambda xs: xs == [], BOUND)
    assert await registry.read_loads(zk_client, connection.root, "default", "svc") == {}


async def test_self_registered_znode_acls(connection: Connection, zk_client: ZkClient) -> None:
    identity = await registry.ensure_service(zk_client, connection.root, "default", "authed", connection.acl())
    # The identity may come as auth_data of the discovery client, too.
    async with AsyncServiceDiscovery(connection.hosts, root=connection.root, auth_data=identity.auth_data) as owner:
        reg = await owner.register("default", "authed", inst(1))
        anon = KazooClient(connection.hosts)
        anon.start(timeout=10)
        try:
            acl, _ = anon.get_acls(reg.path)  # (ZooKeeper shows others a digest's hash as "x")
            assert sorted((a.perms, a.id.scheme, a.id.id.split(":")[0]) for a in acl) == [
                (Permissions.READ, "world", "anyone"),
                (Permissions.ALL, "digest", "svc/default/authed"),
            ], "world READ plus full rights for its creator"
            assert make_digest_acl(identity.user, identity.password, all=True) in reg.client.kazoo.get_acls(reg.path)[0]
            assert registry.decode(anon.get(reg.path)[0]) == inst(1), "readable by anyone"
            with pytest.raises(NoAuthError):
                anon.set(reg.path, b"{}")
            other = KazooClient(connection.hosts, auth_data=[("digest", "svc/default/other:secret")])
            other.start(timeout=10)
            try:
                with pytest.raises(NoAuthError):
                    other.set(reg.path, b"{}")
            finally:
                other.stop()
                other.close()
            await reg.report_load(1.0)  # the creator itself may write
            assert await zk_client.exists(reg.path) is not None
        finally:
            anon.stop()
            anon.close()


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
        with pytest.raises(NoAuthError):
            anon.get(connection.root)  # the rest of the control plane stays closed
    finally:
        anon.stop()
        anon.close()


async def _grant(connection: Connection, namespace: str, app: str) -> registry.ServiceIdentity:
    client = connection.client()
    await client.start()
    try:
        return await registry.ensure_service(client, connection.root, namespace, app, connection.acl())
    finally:
        await client.stop()


def test_blocking_api(connection: Connection, shared_zk: object) -> None:
    identity = asyncio.run(_grant(connection, "default", "sync"))
    with ServiceDiscovery(connection.hosts, root=connection.root) as sd:
        provider = sd.provider("default/sync", strategy="least_connections")
        assert provider.get_instance() is None
        with pytest.raises(registry.RegistryError, match="registry identity"):
            sd.register("default", "sync", inst(3))  # anonymous: refused before writing
        reg = sd.register("default", "sync", inst(3), credentials=identity.credentials)
        reg.report_load(1.5)
        assert provider.wait_instance(timeout=BOUND).id == "i3"
        with provider.call() as chosen:
            assert chosen.id == "i3"
        reg.unregister()
        deadline = time.monotonic() + BOUND
        while provider.instances():
            assert time.monotonic() < deadline, "the endpoint should go with its session"
            time.sleep(0.02)
        with pytest.raises(NoInstanceError):
            provider.wait_instance(timeout=0.1)


# ---- the proxy ----------------------------------------------------------------------------


async def tagged_server(tag: bytes) -> asyncio.Server:
    """Reads until EOF (or 1 KiB), answers ``tag:data``, closes."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read(1024)
        w.write(tag + b":" + data)
        await w.drain()
        w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def ask(port: int, data: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(data)
    await w.drain()
    answer = await asyncio.wait_for(r.read(), BOUND)
    w.close()
    return answer


async def test_proxy_forwards_and_retries_a_dead_endpoint(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    a, b = await tagged_server(b"a"), await tagged_server(b"b")
    candidates = [Instance(n, "127.0.0.1", 1) for n in ("a", "b", "dead")]
    # Make the dead instance the one the client's address hashes to, so every connection tries it first.
    owner = ConsistentHash().owner(candidates, "127.0.0.1")
    assert owner is not None
    live = iter([port_of(a), port_of(b)])
    ports = {c.id: (free_port() if c.id == owner.id else next(live)) for c in candidates}
    try:
        await publish(zk_client, connection, *(Instance(n, "127.0.0.1", p) for n, p in ports.items()))
        provider = await sd.provider("default/web", strategy="consistent_hash")
        await provider.cache.wait_for(lambda xs: len(xs) == 3, BOUND)
        async with Proxy(provider, attempts=2, connect_timeout=1.0) as proxy:
            answers = [await ask(proxy.port, b"ping%d" % i) for i in range(20)]
        assert all(x.endswith(b":ping%d" % i) for i, x in enumerate(answers)), "no request failed"
        # Three failed connects put the dead instance down; later connections skip it.
        assert proxy.stats.connect_failures == 3
        assert proxy.stats.refused == 0 and proxy.stats.forwarded == 20
        assert owner.id not in proxy.stats.per_instance
    finally:
        for s in (a, b):
            s.close()
            await s.wait_closed()


async def test_proxy_refuses_when_nothing_answers(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    provider = await sd.provider("default/web")
    async with Proxy(provider) as proxy:
        assert await ask(proxy.port, b"") == b"", "no endpoint: closed at once"
        await publish(zk_client, connection, Instance("gone", "127.0.0.1", free_port()))
        await provider.cache.wait_for(lambda xs: len(xs) == 1, BOUND)
        assert await ask(proxy.port, b"") == b""
    assert proxy.stats.refused == 2 and proxy.stats.connect_failures == 1


async def test_proxy_half_close_and_graceful_stop(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    release = asyncio.Event()

    async def slow_echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read()  # until the client's EOF
        await release.wait()
        w.write(data.upper())
        await w.drain()
        w.close()

    server = await asyncio.start_server(slow_echo, "127.0.0.1", 0)
    try:
        await publish(zk_client, connection, Instance("echo", "127.0.0.1", port_of(server)))
        provider = await sd.provider("default/web", strategy="least_connections")
        await provider.cache.wait_for(lambda xs: len(xs) == 1, BOUND)
        proxy = Proxy(provider, grace=BOUND)
        port = await proxy.start()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"half closed")
        w.write_eof()  # the client's EOF reaches the instance; the answer still comes back
        await eventually(lambda: asyncio.sleep(0, proxy.stats.forwarded == 1))
        stopping = asyncio.create_task(proxy.stop())
        await eventually(lambda: asyncio.sleep(0, not proxy.serving))
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)  # no new connections while stopping
        assert not stopping.done(), "an open connection gets its grace period"
        release.set()
        assert await asyncio.wait_for(r.read(), BOUND) == b"HALF CLOSED"
        await asyncio.wait_for(stopping, BOUND)
        w.close()
        assert proxy.stats.active == 0 and proxy.stats.bytes_up == 11 and proxy.stats.bytes_down == 11
    finally:
        server.close()
        await server.wait_closed()


async def test_proxy_streams_large_payloads_both_ways(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery
) -> None:
    async def banner_echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"hello\n")  # the server speaks first: the proxy must pass that on before any request
        while chunk := await r.read(65536):
            w.write(chunk)
            await w.drain()
        w.close()

    server = await asyncio.start_server(banner_echo, "127.0.0.1", 0)
    payload = os.urandom(4 * 1024 * 1024)
    try:
        await publish(zk_client, connection, Instance("echo", "127.0.0.1", port_of(server)))
        provider = await sd.provider("default/web")
        await provider.cache.wait_for(lambda xs: len(xs) == 1, BOUND)
        async with Proxy(provider) as proxy:
            r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await asyncio.wait_for(r.readline(), BOUND) == b"hello\n"

            async def send() -> None:
                for i in range(0, len(payload), 100_000):
                    w.write(payload[i : i + 100_000])
                    await w.drain()
                w.write_eof()

            sender = asyncio.create_task(send())
            echoed = await asyncio.wait_for(r.read(), 60)
            await sender
            w.close()
        assert echoed == payload
        assert proxy.stats.bytes_up == len(payload) and proxy.stats.bytes_down == len(payload) + 6
    finally:
        server.close()
        await server.wait_closed()


async def test_zkop_proxy_command(
    zk_client: ZkClient, connection: Connection, tmp_path: Path, sd: AsyncServiceDiscovery
) -> None:
    a = await tagged_server(b"a")
    proc: subprocess.Popen[str] | None = None
    try:
        await publish(zk_client, connection, Instance("a", "127.0.0.1", port_of(a)))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("ZKOP_AUTH", "ZKOP_ZK")}
        env["ZKOP_STATE_DIR"] = str(tmp_path)  # no local control plane, no credentials: anonymous
        zkop = Path(sys.executable).parent / "zkop"
        proc = subprocess.Popen(
            [
                *(str(zkop), "proxy", "default/web", "--zk", connection.hosts, "--root", connection.root),
                *("--listen", f"127.0.0.1:{port}", "--strategy", "least-connections"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        async def answers() -> bool:
            assert proc is not None and proc.poll() is None, "zkop proxy exited"
            try:
                return await ask(port, b"cli") == b"a:cli"
            except OSError:
                return False

        await eventually(answers, 30)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=BOUND)
        assert proc.returncode == 0, out
        assert "proxying 127.0.0.1:" in out and "stopped: " in out and "refused" in out, out
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        a.close()
        await a.wait_closed()
