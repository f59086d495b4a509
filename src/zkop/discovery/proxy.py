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

With ``retry_empty_response`` (off by default) a connection also survives an instance that
ends it (EOF, close or reset) without having sent back a single byte, as HAProxy's
``retry-on empty-response`` does: until the first reply byte arrives the proxy keeps a copy
of what the client sent (up to ``replay_buffer`` bytes) and whether the client sent EOF.
When the instance ends the connection empty, the instance is noted as erroring and, if
attempts are left and an instance not tried yet for this connection is there, the client
stays open while the proxy connects to it and sends the copy (and the EOF) again. Once a
reply byte has come, or the copy has outgrown ``replay_buffer``, nothing is replayed.
The instance may have acted on the request before dying, so this is only safe for
idempotent requests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field

from zkop.discovery.instances import Instance
from zkop.discovery.provider import ServiceProvider

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
    """Connections made to each instance, by instance id (a replayed connection counts for each instance)."""
    replays: int = 0
    """Times a client's request was sent again to another instance after an empty response
    (``retry_empty_response``); ``bytes_up`` counts the replayed bytes again."""


class _Session:
    """One proxied connection: the client's transport, the instance's, and what is left to end."""

    def __init__(self, proxy: Proxy, client: asyncio.Transport, key: str | None) -> None:
        self.proxy = proxy
        self.client = client
        self.key = key
        self.upstream: asyncio.Transport | None = None
        self.inst: Instance | None = None
        self.eof_from_client = False
        self.eof_from_upstream = False
        self.client_open = True
        self.upstream_open = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connecting: asyncio.Task[None] | None = None
        self.tried: set[str] = set()
        """Ids of the instances tried for this connection (connects and replays)."""
        self.tries = 0
        self.replay: bytearray | None = bytearray() if proxy.retry_empty_response else None
        """What the client sent so far, while a replay is still possible (None: it is not)."""
        self.resend: bytes | None = None
        """The copy to send to the instance being connected, when this connect is a replay."""
        self.next_inst: Instance | None = None
        """The instance acquired for a replay, until the connect task takes it over."""
        self.replay_reset = False
        """Whether the instance that ended empty reset the connection (not closed it)."""
        self.ended_empty = False
        """Whether the instance ended the connection without answering when no replay was possible."""

    # -- data --

    def from_client(self, data: bytes) -> None:
        if self.replay is not None and self.upstream is not None:  # (the client is not read without one)
            if len(self.replay) + len(data) <= self.proxy.replay_buffer:
                self.replay += data
            else:
                self.replay = None  # too much to keep: no replay for this connection
        if self.upstream is not None:
            self.proxy.stats.bytes_up += len(data)
            self.upstream.write(data)

    def from_upstream(self, data: bytes) -> None:
        self.replay = None  # the answer has begun: from now on it cannot be asked again
        self.proxy.stats.bytes_down += len(data)
        self.client.write(data)

    def client_eof(self) -> None:
        self.eof_from_client = True
        if self.upstream is not None and self.upstream.can_write_eof():
            self.upstream.write_eof()
        self._close_if_both_eof()

    def upstream_eof(self, side: _UpstreamSide) -> None:
        if self._replay_elsewhere(side, reset=False):
            return
        self.eof_from_upstream = True
        if self.client_open and self.client.can_write_eof():
            self.client.write_eof()
        self._close_if_both_eof()

    def _close_if_both_eof(self) -> None:
        if self.eof_from_client and self.eof_from_upstream:
            self.close()

    # -- replay after an empty response --

    def _replay_elsewhere(self, side: _UpstreamSide, *, reset: bool) -> bool:
        """The instance ended the connection: when it sent nothing back and the request can be
        sent again, drop it and connect to another (True); else False, and no replay from now on."""
        replay, self.replay = self.replay, None
        # Nothing asked (an idle connection the instance closed): nothing to replay, no one to blame.
        if not replay or len(replay) > self.proxy.replay_buffer:
            return False
        if not self.client_open or self.client.is_closing() or self.connecting is not None:
            return False
        nxt = self.proxy.provider.acquire(self.key, exclude=self.tried) if self.tries < self.proxy.attempts else None
        if nxt is None:
            self.ended_empty = True  # no one left to ask: still, this instance failed the request
            return False
        # Let go of the instance: its transport's later callbacks are ignored.
        side.detached = True
        transport, self.upstream, self.upstream_open = self.upstream, None, False
        if transport is not None:
            transport.abort()
        old, self.inst = self.inst, None
        if old is not None:
            log.debug("%s (%s) ended the connection without answering", old.id, old.address)
            self.proxy.provider.release(old, ok=False)
        self.replay = replay  # still kept: the next instance may end empty too
        self.resend = bytes(replay)
        self.replay_reset = reset
        self.next_inst = nxt
        if not self.eof_from_client:  # (after its EOF the client is not read anyway)
            self.pause(self.client)  # nothing more is read until the next instance is connected
        self.connecting = self.proxy._start_connect(self)
        return True

    def send_resend(self) -> None:
        """The replacement instance is connected: send it the copy, and the client's EOF if it came."""
        data, self.resend = self.resend, None
        assert data is not None and self.upstream is not None
        self.proxy.stats.replays += 1
        if data:
            self.proxy.stats.bytes_up += len(data)
            self.upstream.write(data)
        if self.eof_from_client and self.upstream.can_write_eof():
            self.upstream.write_eof()

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

    def upstream_lost(self, side: _UpstreamSide, exc: Exception | None) -> None:
        if self._replay_elsewhere(side, reset=exc is not None):
            return
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
        self.replay = None
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        for transport in (self.client, self.upstream):
            if transport is not None:
                transport.abort()

    def connect_ended(self, task: asyncio.Task[None]) -> None:
        """Done callback of a replay's connect task, for when it was cancelled before it started."""
        if self.connecting is not task:
            return  # it ran: it cleaned up itself
        self.connecting = None
        if self.next_inst is not None:
            self.proxy.provider.release(self.next_inst, ok=None)
            self.next_inst = None
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.client_open or self.upstream_open or self.done.done():
            return
        if self.connecting is not None and not self.connecting.done():
            return  # finishes when the connect attempt ends
        if self.inst is not None:
            # The connect already counted as a success; an answer that never began is an error.
            self.proxy.provider.release(self.inst, ok=False if self.ended_empty else None)
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
        self.detached = False
        """Set when the session replays to another instance: this transport's news no longer matter."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.session.upstream = transport
        self.session.upstream_open = True

    def data_received(self, data: bytes) -> None:
        if not self.detached:
            self.session.from_upstream(data)

    def eof_received(self) -> bool:
        if not self.detached:
            self.session.upstream_eof(self)
        return True

    def pause_writing(self) -> None:
        if not self.detached:
            self.session.pause(self.session.client)

    def resume_writing(self) -> None:
        if not self.detached:
            self.session.resume(self.session.client)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.detached:
            self.session.upstream_lost(self, exc)


class Proxy:
    """Accepts TCP connections on ``host:port`` and forwards each to an instance of the provider's service.

    ``retry_empty_response``: replay a request (of up to ``replay_buffer`` bytes) to another
    instance when one ends the connection without sending a byte back; for idempotent
    protocols only (see the module doc).
    """

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
        retry_empty_response: bool = False,
        replay_buffer: int = 64 * 1024,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive, got {connect_timeout}")
        if replay_buffer < 0:
            raise ValueError(f"replay_buffer must be zero or more bytes, got {replay_buffer}")
        self.provider = provider
        self.host = host
        self.port = port
        self.attempts = attempts
        self.connect_timeout = connect_timeout
        self.grace = grace
        self.client_affinity = client_affinity
        self.retry_empty_response = retry_empty_response
        """Replay a request to another instance when one ends the connection without answering
        (only for idempotent requests: see the module doc)."""
        self.replay_buffer = replay_buffer
        """The most bytes of a request kept for a replay; a longer request is not replayed."""
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
        peer = client.get_extra_info("peername")
        key = str(peer[0]) if self.client_affinity and peer else None
        session = _Session(self, client, key)
        self._sessions.add(session)
        session.connecting = asyncio.get_running_loop().create_task(self._connect(session))
        return session

    def _start_connect(self, session: _Session) -> asyncio.Task[None]:
        """A connect task for a replay (``session.next_inst`` is the first instance to try)."""
        task = asyncio.get_running_loop().create_task(self._connect(session))
        task.add_done_callback(session.connect_ended)
        return task

    async def _connect(self, session: _Session) -> None:
        """Connect ``session`` to a picked instance, trying others on failure; close it when none answers.

        For a replay (``session.resend`` set) the first instance was acquired already, and the
        copy of the request is sent once connected.
        """
        loop = asyncio.get_running_loop()
        replaying = session.resend is not None
        try:
            while session.tries < self.attempts:
                inst, session.next_inst = session.next_inst, None
                if inst is None:
                    inst = self.provider.acquire(session.key, exclude=session.tried)
                if inst is None:
                    break
                session.tried.add(inst.id)
                session.tries += 1
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
                if not replaying:
                    self.stats.forwarded += 1
                self.stats.per_instance[inst.id] += 1
                if session.client_open:
                    if replaying:
                        session.send_resend()
                    session.resume(session.client)
                else:
                    session.close()  # the client went while we were connecting
                return
            if not replaying:
                self.stats.refused += 1
                session.close()
            elif session.replay_reset:
                session.client.abort()  # as when there is nothing to replay: a reset is passed on
            else:
                session.close()
        finally:
            if session.connecting is asyncio.current_task():
                session.connecting = None
            session._maybe_done()
