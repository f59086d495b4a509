"""The dashboard on an operator replica's HTTP port (what ``zkop operator run --dashboard``
wires up through :func:`zkop.cli.dashboard.attach`), against a real ZooKeeper."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from zkop.api import parse_object
from zkop.cli.dashboard import attach
from zkop.client.connect import Connection
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.store import Store

pytestmark = pytest.mark.integration


async def get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def snapshot_where(port: int, check: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status, body = await get(port, "/api/snapshot")
            if status == 200:
                data: dict[str, Any] = json.loads(body)
                if check(data):
                    return data
            await asyncio.sleep(0.2)


async def test_the_operator_port_serves_the_dashboard(connection: Connection, store: Store) -> None:
    manager = Manager(connection, ManagerOptions(name="dash-test", session_timeout=6.0, identity="replica-x"))
    stop = asyncio.Event()
    task = attach(manager, connection, None, stop)
    run = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(manager.started.wait(), 30)
        assert manager.health is not None
        port = manager.health.port
        assert (await get(port, "/healthz"))[1] == b"ok\n"  # its own paths are unchanged
        status, page = await get(port, "/")
        assert status == 200 and b'src="app.js"' in page
        data = await snapshot_where(port, lambda d: (d["controlPlane"]["operator"] or {}).get("leader") == "replica-x")
        operator = data["controlPlane"]["operator"]
        assert operator["manager"] == "dash-test" and operator["epoch"] == 1 and operator["since"]
        assert data["controlPlane"]["local"] is None and data["connection"]["state"] == "CONNECTED"
        # A new object reaches the page through the dashboard's watch.
        await store.create(
            parse_object(
                {"apiVersion": "zkop.io/v1", "kind": "ZookeeperCluster", "metadata": {"name": "seen"}, "spec": {}}
            )
        )
        data = await snapshot_where(port, lambda d: [c["key"] for c in d["clusters"]] == ["default/seen"], 10.0)
        assert data["clusters"][0]["now"]["message"] == "not reconciled yet"
    finally:
        stop.set()
        manager.stop()
        await asyncio.wait_for(run, 30)
        await asyncio.wait_for(task, 30)
