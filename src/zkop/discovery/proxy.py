"""An asyncio TCP proxy over a service's endpoint cache.

For each accepted connection the provider's strategy picks an instance (keyed by the
client's IP address, so ``consistent_hash`` and ``sticky`` give clients affinity). The
proxy connects to it within ``connect_timeout``; when that fails the instance is noted
as erroring (the down-instance policy takes it out after repeated errors) and another
instance, one not tried yet for this connection, is tried, up to ``attempts`` in all.
Nothing is read from the client until an instance is connected, so a retry loses no bytes.

Then bytes flow both ways (asyncio protocols and transports, with flow control: a side
that cannot keep up pauses reading from the other). A half close is passed on: EOF one way,
the other way keeps flowing until it ends too. A reset or close of either side closes
both. The connection counts in flight for its instance while it lasts
(least_connections, bounded loads).

:meth:`Proxy.stop` is graceful: it stops accepting, lets open connections finish for up
to ``grace`` seconds, then closes the rest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field

from zkop.discovery.client import ServiceProvider
from zkop.discovery.instances import Instance

__all__ = ["Proxy", "ProxyStats"]

log = logging.getLogger(__name__)


@dataclass
class ProxyStats:
    accepted: int = 0
    forwarded: int = 0
    """Connections that reached an instance."""
    connect_failures: int = 0
    """Connect attempts that failed (each was then retried on another instance, if any)."""
    refused: int = 0
    """Connections closed because no instance could be reached."""
    active: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    per_instance: collections.Counter[str] = field(default_factory=collections.Counter)
    """Forwarded connections by instance id."""


class _Session:
    """One proxied connection: the client's transport, the instance's, and what is left to end."""

    def __init__(self, proxy: Proxy, client: asyncio.Transport) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: asyncio.Transport | None = None
        self.inst: Instance | None = None
        self.eof_from_client = False
        self.eof_from_upstream = False
        self.client_open = True
        self.upstream_open = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connecting: asyncio.Task[None] | None = None

    # -- data --

    def from_client(self, data: bytes) -> None:
        if self.upstream is not None:
            self.proxy.stats.bytes_up += len(data)
            self.upstream.write(data)

    def from_upstream(self, data: bytes) -> None:
        self.proxy.stats.bytes_down += len(data)
        self.client.write(data)

    def client_eof(self) -> None:
        self.eof_from_client = True
        if self.upstream is not None and self.upstream.can_write_eof():
            self.upstream.write_eof()
        self._close_if_both_eof()

    def upstream_eof(self) -> None:
        self.eof_from_upstream = True
        if self.client_open and self.client.can_write_eof():
            self.client.write_eof()
        self._close_if_both_eof()

    def _close_if_both_eof(self) -> None:
        if self.eof_from_client and self.eof_from_upstream:
            self.close()

    # -- flow control --

    def pause(self, transport: asyncio.Transport | None) -> None:
        if transport is not None and not transport.is_closing():
            with contextlib.suppress(RuntimeError):
                transport.pause_reading()

    def resume(self, transport: asyncio.Transport | None) -> None:
        if transport is not None and not transport.is_closing():
            with contextlib.suppress(RuntimeError):
                transport.resume_reading()

    # -- ends --

    def client_lost(self, exc: Exception | None) -> None:
        self.client_open = False
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        if self.upstream is not None and not self.upstream.is_closing():
            if exc is None:
                self.upstream.close()  # flushes what is buffered first
            else:
                self.upstream.abort()
        self._maybe_done()

    def upstream_lost(self, exc: Exception | None) -> None:
        self.upstream_open = False
        if not self.client.is_closing():
            if exc is None:
                self.client.close()
            else:
                self.client.abort()
        self._maybe_done()

    def close(self) -> None:
        for transport in (self.client, self.upstream):
            if transport is not None and not transport.is_closing():
                transport.close()

    def abort(self) -> None:
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        for transport in (self.client, self.upstream):
            if transport is not None:
                transport.abort()

    def _maybe_done(self) -> None:
        if self.client_open or self.upstream_open or self.done.done():
            return
        if self.connecting is not None and not self.connecting.done():
            return  # finishes when the connect attempt ends
        if self.inst is not None:
            self.proxy.provider.release(self.inst, ok=None)  # the connect already counted as a success
            self.inst = None
        self.proxy.stats.active -= 1
        self.proxy._sessions.discard(self)
        self.done.set_result(None)


class _ClientSide(asyncio.Protocol):
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.session: _Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # nothing is read until an instance is connected
        self.session = self.proxy._open(transport)

    def data_received(self, data: bytes) -> None:
        assert self.session is not None
        self.session.from_client(data)

    def eof_received(self) -> bool:
        assert self.session is not None
        self.session.client_eof()
        return True  # keep the transport: the answer may still be on its way

    def pause_writing(self) -> None:
        assert self.session is not None
        self.session.pause(self.session.upstream)

    def resume_writing(self) -> None:
        assert self.session is not None
        self.session.resume(self.session.upstream)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.client_lost(exc)


class _UpstreamSide(asyncio.Protocol):
    def __init__(self, session: _Session) -> None:
        self.session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.session.upstream = transport
        self.session.upstream_open = True

    def data_received(self, data: bytes) -> None:
        self.session.from_upstream(data)

    def eof_received(self) -> bool:
        self.session.upstream_eof()
        return True

    def pause_writing(self) -> None:
        self.session.pause(self.session.client)

    def resume_writing(self) -> None:
        self.session.resume(self.session.client)

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.upstream_lost(exc)


class Proxy:
    """Accepts TCP connections on ``host:port`` and forwards each to an instance of the provider's service."""

    def __init__(
        self,
        provider: ServiceProvider,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        attempts: int = 3,
        connect_timeout: float = 1.0,
        grace: float = 5.0,
        client_affinity: bool = True,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive, got {connect_timeout}")
        self.provider = provider
        self.host = host
        self.port = port
        self.attempts = attempts
        self.connect_timeout = connect_timeout
        self.grace = grace
        self.client_affinity = client_affinity
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> int:
        """Listen; returns the port (useful with ``port=0``)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ClientSide(self), self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give open connections ``grace`` seconds (default: the proxy's) to end, close the rest."""
        grace = self.grace if grace is None else grace
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._sessions and grace > 0:
            await asyncio.wait([s.done for s in self._sessions], timeout=grace)
        for session in list(self._sessions):
            session.abort()
        pending = [s.done for s in self._sessions] + [s.connecting for s in self._sessions if s.connecting]
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- one connection --

    def _open(self, client: asyncio.Transport) -> _Session:
        self.stats.accepted += 1
        self.stats.active += 1
        session = _Session(self, client)
        self._sessions.add(session)
        peer = client.get_extra_info("peername")
        key = str(peer[0]) if self.client_affinity and peer else None
        session.connecting = asyncio.get_running_loop().create_task(self._connect(session, key))
        return session

    async def _connect(self, session: _Session, key: str | None) -> None:
        """Connect ``session`` to a picked instance, trying others on failure; close it when none answers."""
        loop = asyncio.get_running_loop()
        tried: set[str] = set()
        try:
            for _ in range(self.attempts):
                inst = self.provider.acquire(key, exclude=tried)
                if inst is None:
                    break
                tried.add(inst.id)
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        await loop.create_connection(lambda: _UpstreamSide(session), inst.host, inst.port)
                except (OSError, TimeoutError) as exc:
                    self.stats.connect_failures += 1
                    log.debug("connect to %s (%s) failed: %s", inst.id, inst.address, exc or type(exc).__name__)
                    self.provider.release(inst, ok=False)
                    continue
                except BaseException:
                    self.provider.release(inst, ok=None)
                    raise
                self.provider.note_success(inst)
                session.inst = inst
                self.stats.forwarded += 1
                self.stats.per_instance[inst.id] += 1
                if session.client_open:
                    session.resume(session.client)
                else:
                    session.close()  # the client went while we were connecting
                return
            self.stats.refused += 1
            session.close()
        finally:
            session.connecting = None
            session._maybe_done()
