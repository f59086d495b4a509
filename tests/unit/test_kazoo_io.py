"""What ``zkop.client.kazoo_io`` relies on in kazoo, and its ``poll``-based select."""

from __future__ import annotations

import socket

from kazoo.client import KazooClient
from kazoo.handlers.utils import AsyncResult
from kazoo.protocol import connection

from zkop.client.kazoo_io import BatchingConnection, Handler, Kazoo, _poll


def test_the_kazoo_internals_the_batched_connection_overrides_are_still_there() -> None:
    # A kazoo release that renames these would silently bypass the overrides: fail here instead.
    for name in ("_read", "_read_socket", "_send_request", "_connect", "_socket_error_handling", "_submit"):
        assert callable(getattr(connection.ConnectionHandler, name, None)), name
    for name in ("_SESSION_EXPIRED", "_CONNECTION_DROP", "CLOSE_RESPONSE", "AUTH_XID"):
        assert hasattr(connection, name), name
    assert callable(getattr(KazooClient, "_call", None))
    assert callable(getattr(AsyncResult, "_do_callbacks", None))
    client = Kazoo(hosts="127.0.0.1:1")
    try:
        assert isinstance(client._connection, BatchingConnection)
        assert isinstance(client.handler, Handler) and client.handler.connection is client._connection
        for name in ("_queue", "_pending"):
            assert hasattr(client, name), name
        result = client.handler.async_result()
        assert hasattr(result, "_condition")
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
