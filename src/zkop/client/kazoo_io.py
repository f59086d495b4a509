"""kazoo's I/O thread, made cheaper for many requests in flight. Used by :mod:`zkop.client.bridge`
only; on the event loop, only the bridge's requests run here (:meth:`Kazoo.batched`, whose
wake-up :meth:`Kazoo._ring` sends at the end of the loop's turn).

kazoo's connection thread makes one pass of its loop per request sent and per answer read, each
pass a few system calls (a fresh selector, a wake-up byte, a read of the length and one of the
body). Every system call gives the GIL away, and while the event loop is busy the I/O thread waits
for it again, so with hundreds of requests in flight most time goes to handing the GIL back and
forth. Here the same protocol (kazoo's own serialisation, xids, pending queue and error handling)
runs with:

- every queued request sent in one write per pass, the wake-up bytes drained at once;
- the socket read in large chunks, every complete answer in the buffer handled in one pass;
- ``poll`` in place of a selector built and closed per call;
- results handed to the bridge on this thread (no hop through kazoo's completion thread), and
  watches already bound to a loop dispatched here (they only queue for the loop);
- requests made on the loop in one tick waking this thread once.

What a request's life looks like to kazoo (queue, pending, ConnectionLoss on a drop, a request not
yet sent being sent after a reconnect) is unchanged. This leans on kazoo's internals
(``ConnectionHandler._read``, ``_send_request``, ``_read_socket``, ``KazooClient._call``); the
supported kazoo versions are bounded in ``pyproject.toml`` and
``tests/unit/test_kazoo_io.py`` fails when they move.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionClosedError, SessionExpiredError
from kazoo.handlers.threading import AsyncResult, KazooTimeoutError, SequentialThreadingHandler
from kazoo.handlers.utils import _NONE
from kazoo.protocol import connection as _conn
from kazoo.protocol.connection import ConnectionDropped, ConnectionHandler
from kazoo.protocol.paths import _prefix_root
from kazoo.protocol.serialization import Auth, CheckVersion, Create, Delete, Exists, GetData, SetData, Transaction
from kazoo.protocol.states import KeeperState
from kazoo.security import OPEN_ACL_UNSAFE

log = logging.getLogger(__name__)

_INT = struct.Struct("!i")
READ_CHUNK = 256 * 1024
# Bounds one write, so answers are read between large bursts of requests.
SEND_BATCH = 512


# Guards the state of every DirectResult: held for a few assignments only.
_GUARD = threading.Lock()


class DirectResult(AsyncResult):  # type: ignore[misc]
    """kazoo's result (the same contract: ``set``, ``get``, ``wait``, ``rawlink``) without a
    condition variable made for each one: it is made only when a thread blocks on the result,
    which the bridge never does (building one cost a tenth of the loop's time with thousands of
    requests a second). ``link_direct`` hands the result to the bridge on the thread that sets
    it, skipping kazoo's completion thread (its callback only queues for the loop)."""

    def __init__(self, handler: Any) -> None:  # no super(): it would build the condition
        self._handler = handler
        self._exception: Any = _NONE
        self._callbacks: list[Callable[[Any], None]] = []
        self._timeout_factory = KazooTimeoutError
        self.value: Any = None
        self._cond: threading.Condition | None = None
        self._direct: Callable[[DirectResult], None] | None = None

    def link_direct(self, callback: Callable[[DirectResult], None]) -> None:
        """``callback(self)`` once set, on the setting thread (now, if it is set already)."""
        with _GUARD:
            ready = self._exception is not _NONE
            if not ready:
                self._direct = callback
        if ready:
            callback(self)

    def _settle(self, value: Any, exception: Any) -> None:
        with _GUARD:
            self.value = value
            self._exception = exception
            callbacks = list(self._callbacks)
            direct, cond = self._direct, self._cond
        if direct is not None:
            direct(self)
        self._dispatch(callbacks)
        if cond is not None:
            with cond:
                cond.notify_all()

    def set(self, value: Any = None) -> None:
        self._settle(value, None)

    def set_exception(self, exception: BaseException) -> None:
        self._settle(None, exception)

    def _outcome(self) -> Any:
        if self._exception is None:
            return self.value
        raise self._exception

    def _block(self, timeout: float | None) -> None:
        with _GUARD:
            if self._exception is not _NONE:
                return
            cond = self._cond = self._cond or threading.Condition()
            cond.acquire()  # before the guard is let go: a set() now waits to notify until we wait
        try:
            cond.wait(timeout)
        finally:
            cond.release()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if self._exception is _NONE and block:
            self._block(timeout)
        if self._exception is not _NONE:
            return self._outcome()
        raise self._timeout_factory()

    def wait(self, timeout: float | None = None) -> bool:
        if self._exception is _NONE:
            self._block(timeout)
        return self._exception is not _NONE

    def rawlink(self, callback: Callable[[Any], None]) -> None:
        with _GUARD:
            if callback not in self._callbacks:
                self._callbacks.append(callback)
            ready = self._exception is not _NONE
        if ready:
            self._dispatch([callback])

    def unlink(self, callback: Callable[[Any], None]) -> None:
        with _GUARD:
            if self._exception is _NONE and callback in self._callbacks:
                self._callbacks.remove(callback)

    def _dispatch(self, callbacks: list[Callable[[Any], None]]) -> None:
        # As kazoo: through the completion thread while the handler runs, else right here.
        for callback in callbacks:
            if self._handler.running:
                self._handler.completion_queue.put(functools.partial(callback, self))
            else:
                callback(self)


class Handler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler with direct results, loop-bound watches dispatched on the I/O
    thread, and a ``select`` that knows the connection's read buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.connection: BatchingConnection | None = None

    def async_result(self) -> AsyncResult:
        return DirectResult(self)

    def dispatch_callback(self, callback: Any) -> None:
        # Watches bound to a loop (``ZkClient.hop``) only queue for it; the thread that reads
        # events in order queues them in order.
        if getattr(callback.func, "_zkop_hopped", False):
            callback.func(*callback.args)
        else:
            super().dispatch_callback(callback)

    def select(
        self, rlist: list[Any], wlist: list[Any], xlist: list[Any], timeout: float | None = None
    ) -> tuple[list[Any], list[Any], list[Any]]:
        conn = self.connection
        if conn is not None:
            if conn._socket in rlist and conn.answer_buffered():
                return [conn._socket], [], []
            if conn._more and conn._read_sock in rlist:
                # Answers first, as kazoo does, then the rest of the requests.
                readable, writable = _poll(rlist, wlist, 0)
                if conn._read_sock not in readable:
                    readable.append(conn._read_sock)
                return readable, writable, []
        readable, writable = _poll(rlist, wlist, timeout)
        return readable, writable, []


def _poll(rlist: list[Any], wlist: list[Any], timeout: float | None) -> tuple[list[Any], list[Any]]:
    """``select`` for a few descriptors: one system call (kazoo builds and closes a selector
    each time), and no limit on descriptor numbers."""
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be non-negative")
    poller = select.poll()
    masks: dict[int, int] = {}
    objs: dict[int, Any] = {}
    for obj in rlist:
        fd = obj if isinstance(obj, int) else obj.fileno()
        masks[fd] = masks.get(fd, 0) | select.POLLIN | select.POLLPRI
        objs[fd] = obj
    for obj in wlist:
        fd = obj if isinstance(obj, int) else obj.fileno()
        masks[fd] = masks.get(fd, 0) | select.POLLOUT
        objs.setdefault(fd, obj)
    for fd, mask in masks.items():
        poller.register(fd, mask)
    ready = poller.poll(None if timeout is None else timeout * 1000)
    readable: list[Any] = []
    writable: list[Any] = []
    for fd, events in ready:
        broken = events & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
        if masks[fd] & select.POLLIN and (events & (select.POLLIN | select.POLLPRI) or broken):
            readable.extend(o for o in rlist if (o if isinstance(o, int) else o.fileno()) == fd)
        if masks[fd] & select.POLLOUT and (events & select.POLLOUT or broken):
            writable.extend(o for o in wlist if (o if isinstance(o, int) else o.fileno()) == fd)
    return readable, writable


class BatchingConnection(ConnectionHandler):  # type: ignore[misc]
    """kazoo's connection with batched writes and buffered reads (see the module's notes)."""

    def __init__(self, client: KazooClient, retry_sleeper: Any, logger: Any = None, sasl_options: Any = None) -> None:
        super().__init__(client, retry_sleeper, logger=logger, sasl_options=sasl_options)
        self._inbuf = bytearray()
        self._sent = 0
        self._more = False  # requests are left for another pass of sending

    # ---- reads -------------------------------------------------------------------

    def answer_buffered(self) -> bool:
        """A whole answer is in the buffer (or inside the TLS layer), so reading needs no wait."""
        buf = self._inbuf
        if len(buf) >= 4 and len(buf) >= 4 + _INT.unpack_from(buf)[0]:
            return True
        sock = self._socket
        return sock is not None and hasattr(sock, "pending") and sock.pending() > 0

    def _connect(self, host: str, hostip: str, port: int) -> Any:
        self._inbuf = bytearray()  # a new socket: nothing of the old one is valid
        return super()._connect(host, hostip, port)

    def _read(self, length: int, timeout: float) -> bytes:
        buf = self._inbuf
        with self._socket_error_handling():
            while len(buf) < length:
                sock = self._socket
                if not (hasattr(sock, "pending") and sock.pending() > 0) and not _poll([sock], [], timeout)[0]:
                    raise self.handler.timeout_exception("socket time-out during read")
                try:
                    chunk = sock.recv(max(READ_CHUNK, length - len(buf)))
                except ssl.SSLError as exc:
                    if exc.errno in (ssl.SSL_ERROR_WANT_READ, ssl.SSL_ERROR_WANT_WRITE):
                        continue
                    raise
                except BlockingIOError:
                    continue  # woken without data (spurious): wait again
                if chunk == b"":
                    raise ConnectionDropped("socket connection broken")
                buf += chunk
        out = bytes(buf[:length])
        del buf[:length]
        return out

    def _read_socket(self, read_timeout: float) -> Any:
        # Every whole answer already read is handled now: the loop's next wait only wakes for
        # new bytes on the socket.
        while True:
            response = super()._read_socket(read_timeout)
            if response == _conn.CLOSE_RESPONSE or not self.answer_buffered():
                return response

    # ---- writes ------------------------------------------------------------------

    def _send_request(self, read_timeout: float, connect_timeout: float) -> None:
        client = self.client
        queue = client._queue
        if queue:
            # kazoo's test hooks, raised as its own code raises them
            head = queue[0][0]
            if head is _conn._SESSION_EXPIRED:
                raise SessionExpiredError("Session expired: Testing")
            if head is _conn._CONNECTION_DROP:
                raise ConnectionDropped("Connection dropped: Testing")
        # The wake-ups first (without waiting: this pass may be one the thread gave itself): a
        # request queued after this is followed by a wake-up of its own.
        self._more = False
        with contextlib.suppress(OSError):
            self._read_sock.recv(65536, socket.MSG_DONTWAIT)
        if not queue:
            return
        # Only this thread takes from the left of the queue, so indexing is safe while the loop
        # appends on the right.
        frames: list[bytes] = []
        ends: list[int] = []
        sending: list[tuple[Any, Any, int]] = []
        size = 0
        debug = self.logger.isEnabledFor(logging.DEBUG)
        for i in range(min(len(queue), SEND_BATCH)):
            request, async_object = queue[i]
            if request is _conn._SESSION_EXPIRED or request is _conn._CONNECTION_DROP:
                break
            if request.type == Auth.type:
                xid = _conn.AUTH_XID
            else:
                xid = self._xid = (int(self._xid) % 2147483647) + 1  # type: ignore[has-type]
            body = bytearray(_INT.pack(xid))
            if request.type:
                body += _INT.pack(request.type)
            body += request.serialize()
            if debug:
                self.logger.debug("Sending request(xid=%s): %s", xid, request)
            frames.append(_INT.pack(len(body)) + body)
            size += len(frames[-1])
            ends.append(size)
            sending.append((request, async_object, xid))
        self._sent = 0
        try:
            self._write_all(b"".join(frames), connect_timeout)
        finally:
            # A request whose bytes all went out is pending (a drop fails it with ConnectionLoss,
            # as kazoo does); the rest stay queued and go out after a reconnect.
            for end, item in zip(ends, sending, strict=True):
                if end > self._sent:
                    break
                queue.popleft()
                client._pending.append(item)
        # More was queued than one write takes: another pass, without a wake-up byte (this
        # thread must never wait on its own wake-up socket, which other threads may have filled).
        self._more = bool(queue)

    def _write_all(self, msg: bytes, timeout: float) -> None:
        """Write ``msg``, counting in ``self._sent`` what went out (read when a send fails)."""
        view = memoryview(msg)
        with self._socket_error_handling():
            while self._sent < len(msg):
                if not _poll([], [self._socket], timeout)[1]:
                    raise self.handler.timeout_exception("socket time-out during write")
                try:
                    n = self._socket.send(view[self._sent :])
                except ssl.SSLError as exc:
                    if exc.errno in (ssl.SSL_ERROR_WANT_READ, ssl.SSL_ERROR_WANT_WRITE):
                        continue
                    raise
                except BlockingIOError:
                    continue
                if not n:
                    raise ConnectionDropped("socket connection broken")
                self._sent += n


class Kazoo(KazooClient):  # type: ignore[misc]
    """A KazooClient on the handler and connection above. Requests the bridge makes on its loop
    (inside :meth:`batched`) wake the I/O thread once per loop tick instead of once each."""

    def __init__(self, **kwargs: Any) -> None:
        handler = Handler()
        super().__init__(handler=handler, **kwargs)
        old: Any = self._connection  # type: ignore[has-type]
        conn = BatchingConnection(self, old.retry_sleeper, logger=old.logger, sasl_options=old.sasl_options)
        self._connection = conn
        handler.connection = conn
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._batching = False
        self._ring_scheduled = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop whose requests may share wake-ups (called on that loop's thread)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def batched(self, make: Callable[[], Any]) -> Any:
        """``make()`` (a kazoo ``*_async`` call) with its wake-up deferred to the end of this tick."""
        self._batching = True
        try:
            return make()
        finally:
            self._batching = False

    # ---- requests without kazoo's per-call path normalisation ------------------------------
    # zkop's paths are absolute and normal; kazoo normalises (and joins a chroot to) every path
    # of every call, which was a tenth of the loop's time at thousands of requests a second.

    def _path(self, path: str) -> str:
        if not isinstance(path, str):
            raise TypeError("Invalid type for 'path' (string expected)")
        if not self.chroot and path.startswith("/") and "//" not in path and "/." not in path and path[-1] != "/":
            return path
        return str(_prefix_root(self.chroot, path))

    def get_async(self, path: str, watch: Any = None) -> Any:
        result = self.handler.async_result()
        self._call(GetData(self._path(path), watch), result)
        return result

    def exists_async(self, path: str, watch: Any = None) -> Any:
        result = self.handler.async_result()
        self._call(Exists(self._path(path), watch), result)
        return result

    def transact_async(self, ops: list[tuple[str, str, bytes, int, Any, int]]) -> Any:
        """One multi-op transaction of ``(kind, path, data, version, acl, flags)``; kind is
        create, set, delete or check (flags: 1 ephemeral, 2 sequence)."""
        requests: list[Any] = []
        for kind, path, data, version, acl, flags in ops:
            # Checked here: a bad type would otherwise fail on the I/O thread, when serialised.
            if not isinstance(data, bytes) or not isinstance(version, int):
                raise TypeError(f"transaction op {kind} {path}: data must be bytes and version an int")
            full = self._path(path)
            if kind == "create":
                requests.append(Create(full, data, acl or self.default_acl or OPEN_ACL_UNSAFE, flags))
            elif kind == "set":
                requests.append(SetData(full, data, version))
            elif kind == "delete":
                requests.append(Delete(full, version))
            elif kind == "check":
                requests.append(CheckVersion(full, version))
            else:
                raise ValueError(f"unknown transaction op {kind!r}")
        result = self.handler.async_result()
        self._call(Transaction(requests), result)
        return result

    def _call(self, request: Any, async_object: Any) -> Any:
        if not (self._batching and self._loop is not None and threading.get_ident() == self._loop_thread):
            return super()._call(request, async_object)
        if self._state in (KeeperState.AUTH_FAILED, KeeperState.CLOSED, KeeperState.EXPIRED_SESSION):
            return super()._call(request, async_object)  # kazoo's own refusal
        self._queue.append((request, async_object))
        if not self._ring_scheduled:
            try:
                self._loop.call_soon(self._ring)
            except RuntimeError:  # the loop is closed: wake the thread now
                self._ring()
            else:
                self._ring_scheduled = True
        return None

    def _ring(self) -> None:
        self._ring_scheduled = False
        write_sock = self._connection._write_sock
        try:
            if write_sock is None:
                raise ConnectionClosedError("Connection has been closed")
            write_sock.send(b"\0", socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass  # the socket is full of wake-ups already: the thread will wake
        except Exception:  # closed meanwhile: fail what waits, as kazoo's _call does
            with contextlib.suppress(RuntimeError):  # the I/O thread took from the queue meanwhile
                for _, async_object in list(self._queue):
                    if async_object is not None and not async_object.ready():
                        async_object.set_exception(ConnectionClosedError("Connection has been closed"))


__all__ = ["BatchingConnection", "DirectResult", "Handler", "Kazoo"]
