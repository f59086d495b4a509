"""What ``zkop.client.kazoo_io`` relies on in kazoo, and its ``poll``-based select."""

from __future__ import annotations

import socket
import threading

import pytest
from kazoo.client import KazooClient
from kazoo.handlers import utils
from kazoo.handlers.threading import KazooTimeoutError, SequentialThreadingHandler
from kazoo.handlers.utils import AsyncResult
from kazoo.protocol import connection

from zkop.client.kazoo_io import BatchingConnection, DirectResult, Handler, Kazoo, _poll


def test_the_kazoo_internals_the_batched_connection_overrides_are_still_there() -> None:
    # A kazoo release that renames these would silently bypass the overrides: fail here instead.
    for name in ("_read", "_read_socket", "_send_request", "_connect", "_socket_error_handling", "_submit"):
        assert callable(getattr(connection.ConnectionHandler, name, None)), name
    for name in ("_SESSION_EXPIRED", "_CONNECTION_DROP", "CLOSE_RESPONSE", "AUTH_XID"):
        assert hasattr(connection, name), name
    assert callable(getattr(KazooClient, "_call", None))
    assert callable(getattr(AsyncResult, "_do_callbacks", None))
    assert hasattr(utils, "_NONE")
    client = Kazoo(hosts="127.0.0.1:1")
    try:
        assert isinstance(client._connection, BatchingConnection)
        assert isinstance(client.handler, Handler) and client.handler.connection is client._connection
        for name in ("_queue", "_pending"):
            assert hasattr(client, name), name
        assert isinstance(client.handler.async_result(), DirectResult)
    finally:
        client.close()


def test_poll_reports_readable_and_writable_like_select() -> None:
    a, b = socket.socketpair()
    try:
        assert _poll([a], [], 0) == ([], [])
        assert _poll([a], [a], 0) == ([], [a])
        b.send(b"x")
        assert _poll([a, b], [], 0) == ([a], [])
        assert _poll([a.fileno()], [], 0) == ([a.fileno()], [])
        b.close()
        a.recv(1)
        assert _poll([a], [], 0) == ([a], [])  # the peer hung up: a read would say so
    finally:
        a.close()


def test_a_direct_result_keeps_kazoos_result_contract() -> None:
    handler = SequentialThreadingHandler()  # not started: callbacks run where the result is set
    seen: list[object] = []

    result = DirectResult(handler)
    assert not result.ready() and not result.wait(0.01)
    with pytest.raises(KazooTimeoutError):
        result.get(block=False)
    with pytest.raises(KazooTimeoutError):
        result.get(timeout=0.01)
    result.rawlink(lambda r: seen.append(("linked", r.get_nowait())))
    result.link_direct(lambda r: seen.append(("direct", r.get_nowait())))
    result.set(7)
    assert result.get() == 7 and result.successful() and result.wait(0)
    assert sorted(seen) == [("direct", 7), ("linked", 7)]
    result.rawlink(lambda r: seen.append(("late", r.value)))  # linked after: called at once
    late: list[int] = []
    result.link_direct(lambda r: late.append(r.get()))
    assert ("late", 7) in seen and late == [7]

    failed = DirectResult(handler)
    failed.set_exception(ValueError("no"))
    assert not failed.successful() and isinstance(failed.exception, ValueError)
    with pytest.raises(ValueError):
        failed.get()

    # A thread blocked in get() is woken by a set() from another thread, every time.
    for _ in range(200):
        blocked = DirectResult(handler)
        out: list[object] = []
        waiter = threading.Thread(target=lambda b=blocked, o=out: o.append(b.get(timeout=5)))
        waiter.start()
        threading.Thread(target=blocked.set, args=("v",)).start()
        waiter.join(10)
        assert out == ["v"]
