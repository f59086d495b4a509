"""Shared fixtures: one ZooKeeper for the session, a fresh store root per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from zkop.client.bridge import ZkClient
from zkop.client.connect import Connection
from zkop.store import Store
from zkop.testing import Ensemble, running_ensemble


@pytest.fixture(scope="session")
def shared_zk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ensemble]:
    with running_ensemble(1, state_dir=tmp_path_factory.mktemp("shared-zk")) as ensemble:
        yield ensemble


@pytest.fixture
def connection(shared_zk: Ensemble) -> Connection:
    return Connection(
        hosts=shared_zk.connection_string,
        user="zkop",
        password="test-" + uuid.uuid4().hex[:8],
        root=f"/t-{uuid.uuid4().hex[:12]}",
    )


@pytest.fixture
async def zk_client(connection: Connection) -> AsyncIterator[ZkClient]:
    client = connection.client()
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@pytest.fixture
async def store(zk_client: ZkClient, connection: Connection) -> Store:
    return Store(zk_client, root=connection.root, acl=connection.acl())
