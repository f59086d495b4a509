"""The batched kazoo connection (``zkop.client.kazoo_io``) against real ZooKeeper: many requests
in flight on one session, answers larger than one read, and a connection dropped under load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from kazoo.exceptions import BadVersionError, ConnectionLoss, NodeExistsError, NoNodeError

from zkop.client.bridge import Op, TransactionFailed, ZkClient
from zkop.client.connect import Connection
from zkop.testing import running_ensemble

pytestmark = pytest.mark.integration


@pytest.fixture
async def root(zk_client: ZkClient, connection: Connection) -> AsyncIterator[str]:
    await zk_client.ensure_path(connection.root, acl=connection.acl())
    yield connection.root


async def test_thousands_of_mixed_requests_in_flight_each_get_their_own_answer(zk_client: ZkClient, root: str) -> None:
    n = 1500
    paths = [f"{root}/n-{i:04d}" for i in range(n)]
    created = await asyncio.gather(*(zk_client.create(p, f"v{i}".encode()) for i, p in enumerate(paths)))
    assert created == paths

    # Reads, writes with the right and a wrong version, misses and transactions, all at once.
    reads = [zk_client.get(p) for p in paths]
    good = [zk_client.set(p, f"w{i}".encode(), 0) for i, p in enumerate(paths[: n // 2])]
    stale = [zk_client.set(p, b"x", 7) for p in paths[n // 2 :]]
    misses = [zk_client.get(f"{root}/missing-{i}") for i in range(200)]
    txns = [zk_client.commit([Op.check(p, -1), Op.create(p + "/c", b"c")]) for p in paths[:300]]
    results = await asyncio.gather(*reads, *good, *stale, *misses, *txns, return_exceptions=True)

    got_reads = results[:n]
    for i, value in enumerate(got_reads):
        assert not isinstance(value, BaseException), value
        data, _ = value
        # A read sent before the write of the same path (same session: in order) sees the old
        # value or, if sent after, the new one; never another path's value.
        assert data in (f"v{i}".encode(), f"w{i}".encode()), (i, data)
    offset = n
    assert all(not isinstance(r, BaseException) and r.version == 1 for r in results[offset : offset + n // 2])
    offset += n // 2
    assert all(isinstance(r, BadVersionError) for r in results[offset : offset + n - n // 2])
    offset += n - n // 2
    assert all(isinstance(r, NoNodeError) for r in results[offset : offset + 200])
    offset += 200
    assert all(isinstance(r, list) and r[1] == f"{p}/c" for r, p in zip(results[offset:], paths[:300], strict=True))

    after = await asyncio.gather(*(zk_client.get(p) for p in paths))
    assert [d for d, _ in after] == [f"w{i}".encode() for i in range(n // 2)] + [
        f"v{i}".encode() for i in range(n // 2, n)
    ]
    with pytest.raises(TransactionFailed) as failed:
        await zk_client.commit([Op.create(paths[0], b"")])
    assert isinstance(failed.value.error, NodeExistsError)


async def test_answers_larger_than_one_read_arrive_whole(zk_client: ZkClient, root: str) -> None:
    # 40 answers of 300 KB are more than a read takes at once (256 KB) and cross its boundaries.
    big = [bytes([i]) * (300 * 1024 + i) for i in range(40)]
    paths = [f"{root}/big-{i}" for i in range(len(big))]
    await asyncio.gather(*(zk_client.create(p, b) for p, b in zip(paths, big, strict=True)))
    small = [zk_client.exists(p) for p in paths]
    got = await asyncio.gather(*(zk_client.get(p) for p in paths), *small)
    assert [d for d, _ in got[: len(big)]] == big
    assert all(stat is not None for stat in got[len(big) :])


async def test_watches_fire_once_each_in_the_order_of_the_writes(zk_client: ZkClient, root: str) -> None:
    paths = [f"{root}/w-{i}" for i in range(300)]
    await asyncio.gather(*(zk_client.create(p, b"0") for p in paths))
    fired: list[str] = []
    done = asyncio.Event()

    def on_change(event: object) -> None:
        fired.append(str(getattr(event, "path", "")))
        if len(fired) == len(paths):
            done.set()

    watch = zk_client.hop(on_change)
    await asyncio.gather(*(zk_client.get(p, watch=watch) for p in paths))
    for p in paths:  # one at a time: the events must come in this order
        await zk_client.set(p, b"1")
    await asyncio.wait_for(done.wait(), 10)
    assert fired == paths


async def test_a_connection_dropped_under_load_fails_what_was_in_flight_and_the_session_goes_on() -> None:
    with running_ensemble(3) as zk:
        conn = Connection(zk.connection_string, "zkop", "kazoo-io-test", root="/kazoo-io")
        client = conn.client()
        await client.start()
        try:
            await client.ensure_path("/kazoo-io/d", acl=conn.acl())
            paths = [f"/kazoo-io/d/n-{i}" for i in range(500)]
            await asyncio.gather(*(client.create(p, b"0", acl=conn.acl()) for p in paths))
            session = client.session_id
            watched = asyncio.Event()
            await client.get(paths[0], watch=client.hop(lambda _e: watched.set()))

            # Find the member this session talks to; pause it so requests pile up unanswered,
            # then kill it with them in flight.
            port = client.kazoo._connection._socket.getpeername()[1]
            member = next(m for m in zk.members if m.address.client_port == port)
            member.pause()
            in_flight = asyncio.gather(*(client.set(p, b"1") for p in paths * 4), return_exceptions=True)
            sent_by = time.monotonic() + 10
            while len(client.kazoo._pending) < len(paths) * 4:  # all written to the paused member
                assert time.monotonic() < sent_by, len(client.kazoo._pending)
                await asyncio.sleep(0.01)
            member.kill()
            started = time.monotonic()
            results = await asyncio.wait_for(in_flight, 30)
            # Each ends: written, or refused for a version it no longer had, or lost with the
            # connection. None is left hanging.
            assert all(
                not isinstance(r, BaseException) or isinstance(r, ConnectionLoss | BadVersionError) for r in results
            ), {type(r).__name__ for r in results if isinstance(r, BaseException)}
            assert time.monotonic() - started < 30
            assert any(isinstance(r, ConnectionLoss) for r in results)

            # The session moves to another member; requests made meanwhile are sent there.
            answers = await asyncio.wait_for(asyncio.gather(*(client.get(p) for p in paths)), 30)
            assert all(data in (b"0", b"1") for data, _ in answers)
            assert client.session_id == session
            await client.set(paths[0], b"after")
            await asyncio.wait_for(watched.wait(), 10)
        finally:
            await client.stop()


async def test_requests_queued_from_kazoos_own_threads_never_stall_the_connection(
    zk_client: ZkClient, root: str
) -> None:
    # ensure_path chains its requests on kazoo's completion thread, each with a wake-up of its
    # own; thousands of them fill the wake-up socket while far more than one write's worth of
    # requests wait. Every one must still be answered.
    paths = [f"{root}/a/b/c/d{i % 7}/e{i % 13}" for i in range(3000)]
    gets = [zk_client.exists(f"{root}/missing-{i}") for i in range(3000)]
    await asyncio.wait_for(asyncio.gather(*(zk_client.ensure_path(p) for p in paths), *gets), 60)
    assert len(await zk_client.get_children(f"{root}/a/b/c")) == 7


async def test_a_chrooted_session_keeps_kazoos_paths(zk_client: ZkClient, root: str, connection: Connection) -> None:
    # Paths skip kazoo's normalisation only when they are already normal and there is no chroot.
    chrooted = ZkClient(connection.hosts + root, auth_data=[("digest", f"{connection.user}:{connection.password}")])
    await chrooted.start()
    try:
        await chrooted.create("/inside", b"1", acl=connection.acl())
        await chrooted.commit([Op.check("/inside", 0), Op.create("/inside/.dot", b"2", acl=connection.acl())])
        assert (await chrooted.get("/inside/.dot"))[0] == b"2"
        assert await chrooted.get_children("/inside") == [".dot"]
    finally:
        await chrooted.stop()
    assert (await zk_client.get(f"{root}/inside"))[0] == b"1"
    assert (await zk_client.get(f"{root}/inside/.dot"))[0] == b"2"
    with pytest.raises(TypeError):
        await zk_client.commit([Op("create", f"{root}/bad", "text")])  # type: ignore[arg-type]
    assert (await zk_client.get(f"{root}/inside"))[0] == b"1"  # refused before it was sent
