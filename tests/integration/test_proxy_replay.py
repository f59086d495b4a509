"""The proxy's opt-in replay after an empty response (``retry_empty_response``), against real
ZooKeeper and real upstream servers on loopback.

Instances are named a, b, c, ... and the provider uses least_connections, which with nothing
in flight picks them in id order: the first connection always goes to ``a`` first. Every wait
is on a condition with a bound, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from zkop.client.bridge import ZkClient
from zkop.client.connect import Connection
from zkop.discovery import AsyncServiceDiscovery, Instance, Proxy, registry
from zkop.discovery.client import ServiceProvider

pytestmark = pytest.mark.integration

BOUND = 10.0


@pytest.fixture
async def sd(connection: Connection) -> AsyncIterator[AsyncServiceDiscovery]:
    async with AsyncServiceDiscovery(connection.hosts, root=connection.root) as d:
        yield d


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Upstream:
    """A real server on 127.0.0.1 that reads one request (a line, or everything up to the
    client's EOF with ``until_eof``) and then answers ``name:request``, or, with ``end``, dies
    without answering: ``"close"`` (FIN) or ``"reset"`` (SO_LINGER 0, RST). With ``partial`` it
    first sends ``b"partial:"`` and waits for :attr:`proceed` before dying."""

    def __init__(
        self, name: str, *, end: str | None = None, partial: bool = False, until_eof: bool = False, idle: bool = False
    ) -> None:
        assert end in (None, "close", "reset")
        self.idle = idle  # closes each connection at once, before reading anything (an idle timeout)
        self.name = name
        self.end = end
        self.partial = partial
        self.until_eof = until_eof
        self.requests: list[bytes] = []
        self.proceed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.proceed.set()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def instance(self) -> Instance:
        return Instance(self.name, "127.0.0.1", self.port)

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self.idle:
            w.close()
            return
        data = await (r.read() if self.until_eof else r.readline())
        self.requests.append(data)
        if self.end is None:
            w.write(self.name.encode() + b":" + data)
            await w.drain()
            w.close()
            return
        if self.partial:
            w.write(b"partial:")
            await w.drain()
            await self.proceed.wait()
        if self.end == "reset":
            w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
        else:
            w.close()


@pytest.fixture
async def upstreams() -> AsyncIterator[list[Upstream]]:
    """Upstreams a test starts go in this list; they are stopped at teardown."""
    started: list[Upstream] = []
    yield started
    for u in started:
        await u.stop()


async def serve(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery, started: list[Upstream], *ups: Upstream
) -> ServiceProvider:
    """Start the upstreams, publish them as default/web, and return a least_connections provider that sees them."""
    for u in ups:
        await u.start()
        started.append(u)
        await registry.publish_endpoint(zk_client, connection.root, "default", "web", u.instance, connection.acl())
    provider = await sd.provider("default/web", strategy="least_connections")
    await provider.cache.wait_for(lambda xs: len(xs) == len(ups), BOUND)
    return provider


def track(provider: ServiceProvider) -> Counter[str]:
    """Acquires minus releases per instance id, of the calls the proxy makes on ``provider``."""
    held: Counter[str] = Counter()
    acquire, release = provider.acquire, provider.release

    def tracked_acquire(key: str | None = None, exclude: object = ()) -> Instance | None:
        inst = acquire(key, exclude)  # type: ignore[arg-type]
        if inst is not None:
            held[inst.id] += 1
        return inst

    def tracked_release(inst: Instance, *, ok: bool | None = True) -> None:
        held[inst.id] -= 1
        release(inst, ok=ok)

    provider.acquire = tracked_acquire  # type: ignore[method-assign]
    provider.release = tracked_release  # type: ignore[method-assign]
    return held


def assert_nothing_leaked(proxy: Proxy, provider: ServiceProvider, held: Counter[str], *ups: Upstream) -> None:
    assert proxy.stats.active == 0
    assert set(held.values()) <= {0}, f"each instance acquired is released exactly once: {held}"
    strategy = provider.picker.strategy
    assert all(strategy.in_flight(u.instance) == 0 for u in ups)  # type: ignore[attr-defined]


async def exchange(port: int, request: bytes, *, eof: bool = False) -> tuple[bytes, bool]:
    """Send ``request`` (then EOF) through the proxy and read until it ends the connection:
    (what came back, whether it ended with a reset)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(request)
        if eof:
            w.write_eof()
        await w.drain()
        return await read_to_end(r)
    finally:
        w.close()


async def read_to_end(r: asyncio.StreamReader) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(BOUND):
            while chunk := await r.read(65536):
                chunks.append(chunk)
    except ConnectionResetError:
        return b"".join(chunks), True
    return b"".join(chunks), False


async def ended(proxy: Proxy) -> None:
    await eventually(lambda: asyncio.sleep(0, proxy.stats.active == 0))


# ---- replays -------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["close", "reset"])
async def test_an_empty_response_is_replayed_to_another_instance(
    end: str,
    zk_client: ZkClient,
    connection: Connection,
    sd: AsyncServiceDiscovery,
    upstreams: list[Upstream],
) -> None:
    a, b = Upstream("a", end=end), Upstream("b")
    provider = await serve(zk_client, connection, sd, upstreams, a, b)
    held = track(provider)
    async with Proxy(provider, retry_empty_response=True) as proxy:
        assert await exchange(proxy.port, b"GET /x\n") == (b"b:GET /x\n", False)
        await ended(proxy)
    assert a.requests == [b"GET /x\n"], "the request did reach the first instance, which died on it"
    assert b.requests == [b"GET /x\n"]
    s = proxy.stats
    assert s.replays == 1 and s.forwarded == 1 and s.connect_failures == 0 and s.refused == 0
    assert s.per_instance == {"a": 1, "b": 1}
    assert s.bytes_up == 2 * len(b"GET /x\n") and s.bytes_down == len(b"b:GET /x\n")
    assert provider.picker.errors_noted(a.instance) == 1, "the instance that died is noted as erroring"
    assert provider.picker.errors_noted(b.instance) == 0
    assert_nothing_leaked(proxy, provider, held, a, b)


@pytest.mark.parametrize("end", ["close", "reset"])
async def test_without_the_option_an_empty_response_fails_the_connection(
    end: str,
    zk_client: ZkClient,
    connection: Connection,
    sd: AsyncServiceDiscovery,
    upstreams: list[Upstream],
) -> None:
    a, b = Upstream("a", end=end), Upstream("b")
    provider = await serve(zk_client, connection, sd, upstreams, a, b)
    held = track(provider)
    async with Proxy(provider) as proxy:
        answer, _ = await exchange(proxy.port, b"GET /x\n")
        await ended(proxy)
    assert answer == b"", "the client sees the connection end without an answer"
    assert a.requests == [b"GET /x\n"] and b.requests == []
    assert proxy.stats.replays == 0 and proxy.stats.per_instance == {"a": 1}
    assert provider.picker.errors_noted(a.instance) == 0
    assert_nothing_leaked(proxy, provider, held, a, b)


@pytest.mark.parametrize("end", ["close", "reset"])
async def test_no_replay_once_the_answer_has_begun(
    end: str,
    zk_client: ZkClient,
    connection: Connection,
    sd: AsyncServiceDiscovery,
    upstreams: list[Upstream],
) -> None:
    a, b = Upstream("a", end=end, partial=True), Upstream("b")
    provider = await serve(zk_client, connection, sd, upstreams, a, b)
    held = track(provider)
    async with Proxy(provider, retry_empty_response=True) as proxy:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            w.write(b"GET /x\n")
            assert await asyncio.wait_for(r.readexactly(len(b"partial:")), BOUND) == b"partial:"
            a.proceed.set()  # the instance dies only now, after the client has part of the answer
            rest, _ = await read_to_end(r)
        finally:
            w.close()
        await ended(proxy)
    assert rest == b"", "the answer stays truncated: nothing is replayed"
    assert b.requests == [] and proxy.stats.replays == 0 and proxy.stats.per_instance == {"a": 1}
    assert_nothing_leaked(proxy, provider, held, a, b)


@pytest.mark.parametrize("over", [0, 1])
async def test_no_replay_of_a_request_larger_than_the_replay_buffer(
    over: int, zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery, upstreams: list[Upstream]
) -> None:
    a, b = Upstream("a", end="close"), Upstream("b")
    provider = await serve(zk_client, connection, sd, upstreams, a, b)
    held = track(provider)
    request = b"P" * 200 + b"\n"
    async with Proxy(provider, retry_empty_response=True, replay_buffer=len(request) - over) as proxy:
        answer = await exchange(proxy.port, request)
        await ended(proxy)
    assert a.requests == [request]
    if over:  # one byte too many to keep: the connection fails as without the option
        assert answer == (b"", False) and b.requests == [] and proxy.stats.replays == 0
        assert provider.picker.errors_noted(a.instance) == 0
    else:  # exactly replay_buffer bytes still fit
        assert answer == (b"b:" + request, False) and b.requests == [request] and proxy.stats.replays == 1
    assert_nothing_leaked(proxy, provider, held, a, b)


async def test_an_idle_connection_closed_by_its_instance_is_neither_replayed_nor_blamed(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery, upstreams: list[Upstream]
) -> None:
    ups = [Upstream("a", idle=True), Upstream("b", idle=True)]
    provider = await serve(zk_client, connection, sd, upstreams, *ups)
    held = track(provider)
    async with Proxy(provider, retry_empty_response=True) as proxy:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            assert (await read_to_end(r))[0] == b""  # the client asked nothing; the instance hung up
        finally:
            w.close()
        await ended(proxy)
    assert proxy.stats.replays == 0 and proxy.stats.forwarded == 1
    assert [provider.picker.errors_noted(u.instance) for u in ups] == [0, 0]
    assert_nothing_leaked(proxy, provider, held, *ups)


async def test_all_instances_answer_empty(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery, upstreams: list[Upstream]
) -> None:
    ups = [Upstream("a", end="close"), Upstream("b", end="reset"), Upstream("c", end="close"), Upstream("d")]
    provider = await serve(zk_client, connection, sd, upstreams, *ups)
    held = track(provider)
    async with Proxy(provider, retry_empty_response=True, attempts=3) as proxy:
        assert await exchange(proxy.port, b"GET /x\n") == (b"", False)
        await ended(proxy)
        assert_nothing_leaked(proxy, provider, held, *ups)
    assert [u.requests for u in ups] == [[b"GET /x\n"]] * 3 + [[]], "attempts=3: three instances tried, no more"
    s = proxy.stats
    assert s.replays == 2 and s.forwarded == 1 and s.refused == 0
    assert s.per_instance == {"a": 1, "b": 1, "c": 1}
    # Every instance that ended the request empty is noted, the last one too; d was never asked.
    assert [provider.picker.errors_noted(u.instance) for u in ups] == [1, 1, 1, 0]
    assert_nothing_leaked(proxy, provider, held, *ups)


@pytest.mark.parametrize("end", ["close", "reset"])
async def test_a_half_closed_request_is_replayed_with_its_eof(
    end: str,
    zk_client: ZkClient,
    connection: Connection,
    sd: AsyncServiceDiscovery,
    upstreams: list[Upstream],
) -> None:
    # Like HTTP/1.0: the client sends its request, shuts down writing, and reads the answer.
    a, b = Upstream("a", end=end, until_eof=True), Upstream("b", until_eof=True)
    provider = await serve(zk_client, connection, sd, upstreams, a, b)
    held = track(provider)
    request = b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"
    async with Proxy(provider, retry_empty_response=True) as proxy:
        assert await exchange(proxy.port, request, eof=True) == (b"b:" + request, False)
        await ended(proxy)
    # b read until EOF: it answered, so the client's EOF was passed on after the replayed bytes.
    assert a.requests == [request] and b.requests == [request]
    assert proxy.stats.replays == 1
    assert provider.picker.errors_noted(a.instance) == 1
    assert_nothing_leaked(proxy, provider, held, a, b)


@pytest.mark.parametrize("attempts", [2, 3])
async def test_replays_and_connect_failures_share_the_attempts(
    attempts: int, zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery, upstreams: list[Upstream]
) -> None:
    # a resets without answering, nothing listens for b (its connect fails), c answers.
    a, c = Upstream("a", end="reset"), Upstream("c")
    provider = await serve(zk_client, connection, sd, upstreams, a, c)
    dead = Instance("b", "127.0.0.1", free_port())
    await registry.publish_endpoint(zk_client, connection.root, "default", "web", dead, connection.acl())
    await provider.cache.wait_for(lambda xs: len(xs) == 3, BOUND)
    held = track(provider)
    async with Proxy(provider, retry_empty_response=True, attempts=attempts) as proxy:
        answer, _ = await exchange(proxy.port, b"GET /x\n")
        await ended(proxy)
    s = proxy.stats
    assert a.requests == [b"GET /x\n"]
    assert s.connect_failures == 1 and s.forwarded == 1 and s.refused == 0
    if attempts == 3:
        assert answer == b"c:GET /x\n" and c.requests == [b"GET /x\n"]
        assert s.replays == 1 and s.per_instance == {"a": 1, "c": 1}
    else:  # a and b used both attempts: the client's connection ends without an answer
        assert answer == b"" and c.requests == []
        assert s.replays == 0 and s.per_instance == {"a": 1}
    assert provider.picker.errors_noted(a.instance) == 1 and provider.picker.errors_noted(dead) == 1
    assert provider.picker.errors_noted(c.instance) == 0
    assert_nothing_leaked(proxy, provider, held, a, c)


async def test_zkop_proxy_command_retries_an_empty_response(
    zk_client: ZkClient,
    connection: Connection,
    tmp_path: Path,
    sd: AsyncServiceDiscovery,
    upstreams: list[Upstream],
) -> None:
    a, b = Upstream("a", end="close"), Upstream("b")
    await serve(zk_client, connection, sd, upstreams, a, b)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ZKOP_AUTH", "ZKOP_ZK")}
    env["ZKOP_STATE_DIR"] = str(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    zkop = Path(sys.executable).parent / "zkop"
    proc = subprocess.Popen(
        [
            *(str(zkop), "proxy", "default/web", "--zk", connection.hosts, "--root", connection.root),
            *("--listen", f"127.0.0.1:{port}", "--strategy", "least-connections", "--retry-empty-response"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Wait for its first line (it listens by then) rather than probe the port: a probe would be
        # a connection too, and move least_connections' rotation past a.
        assert proc.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert first.startswith("proxying 127.0.0.1:"), first
        assert await exchange(port, b"cli\n") == (b"b:cli\n", False)
        assert a.requests == [b"cli\n"]
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=BOUND)
        assert proc.returncode == 0, first + out
        assert "1 replayed after an empty response" in out, first + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def hanging_port() -> Iterator[int]:
    """A loopback port whose connects hang: Linux drops SYNs to a listener whose accept queue is full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=BOUND)  # fills the queue of one
    try:
        yield int(listener.getsockname()[1])
    finally:
        filler.close()
        listener.close()


async def test_stop_while_a_replay_connects(
    zk_client: ZkClient, connection: Connection, sd: AsyncServiceDiscovery, upstreams: list[Upstream]
) -> None:
    a = Upstream("a", end="close")
    provider = await serve(zk_client, connection, sd, upstreams, a)
    with hanging_port() as port:
        b = Instance("b", "127.0.0.1", port)
        await registry.publish_endpoint(zk_client, connection.root, "default", "web", b, connection.acl())
        await provider.cache.wait_for(lambda xs: len(xs) == 2, BOUND)
        held = track(provider)
        strategy = provider.picker.strategy
        proxy = Proxy(provider, retry_empty_response=True, connect_timeout=60, grace=0)
        await proxy.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
            w.write(b"GET /x\n")
            # a ended the connection empty; the replay is connecting to b.
            await eventually(lambda: asyncio.sleep(0, held["b"] == 1 and held["a"] == 0))
            assert strategy.in_flight(b) == 1 and proxy.stats.active == 1  # type: ignore[attr-defined]
            await asyncio.wait_for(proxy.stop(), BOUND)
            answer, _ = await read_to_end(r)
            w.close()
        finally:
            await proxy.stop()
    assert answer == b"" and a.requests == [b"GET /x\n"]
    assert proxy.stats.replays == 0 and proxy.stats.per_instance == {"a": 1}
    assert provider.picker.errors_noted(a.instance) == 1
    assert provider.picker.errors_noted(b) == 0, "a connect the proxy gave up says nothing about b"
    assert_nothing_leaked(proxy, provider, held, a)
    assert strategy.in_flight(b) == 0  # type: ignore[attr-defined]
