"""The store against real ZooKeeper."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from zkop.api import Resource, ResourceValidationError, parse_object
from zkop.client.bridge import Op, ZkClient
from zkop.client.connect import Connection
from zkop.store import (
    AlreadyExists,
    Conflict,
    CorruptObject,
    Fence,
    Fenced,
    NotFound,
    Store,
    TooLarge,
    WatchEvent,
)
from zkop.store.apply import apply_one
from zkop.store.events import MAX_EVENTS_PER_OBJECT

pytestmark = pytest.mark.integration


def zkc(name: str = "orders", ns: str = "default", replicas: int = 3, **meta: Any) -> Resource:
    return parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": name, "namespace": ns, **meta},
            "spec": {"replicas": replicas},
        }
    )


def with_replicas(obj: Resource, replicas: int) -> Resource:
    return obj.model_copy(update={"spec": obj.spec.model_copy(update={"replicas": replicas})})


async def test_create_get_list_delete(store: Store) -> None:
    created = await store.create(zkc("a", labels={"tier": "gold"}))
    assert created.metadata.uid and created.metadata.generation == 1
    assert created.metadata.resource_version and created.metadata.creation_timestamp
    assert (await store.get("zkc", "default", "a")) == created
    with pytest.raises(AlreadyExists):
        await store.create(zkc("a"))
    await store.create(zkc("b"))
    await store.create(zkc("c", ns="other"))
    assert [o.name for o in (await store.list("zookeeperclusters", "default")).items] == ["a", "b"]
    assert sorted(o.key for o in (await store.list("ZookeeperCluster")).items) == [
        "default/a",
        "default/b",
        "other/c",
    ]
    assert [o.name for o in (await store.list("zkc", selector="tier=gold")).items] == ["a"]
    assert [o.name for o in (await store.list("zkc", selector="tier notin (gold)")).items] == ["b", "c"]
    assert await store.delete("zkc", "default", "a") == "deleted"
    with pytest.raises(NotFound):
        await store.get("zkc", "default", "a")
    with pytest.raises(NotFound):
        await store.delete("zkc", "default", "a")


async def test_stale_resource_version_conflicts(store: Store) -> None:
    obj = await store.create(zkc())
    first = await store.update(with_replicas(obj, 5))
    assert first.metadata.generation == 2
    with pytest.raises(Conflict):
        await store.update(with_replicas(obj, 7))
    assert (await store.get("zkc", "default", "orders")).spec.replicas == 5  # type: ignore[attr-defined]


async def test_concurrent_writers_exactly_one_wins(store: Store) -> None:
    obj = await store.create(zkc())
    results = await asyncio.gather(
        *(store.update(with_replicas(obj, r)) for r in (1, 3, 5, 7, 9)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    final = await store.get("zkc", "default", "orders")
    assert final.spec == winners[0].spec and final.metadata.generation == 2


async def test_status_is_a_subresource(store: Store) -> None:
    obj = await store.create(zkc())
    status = obj.status.model_copy(update={"phase": "Running", "ready_replicas": 3})
    after = await store.update_status(obj.model_copy(update={"status": status}))
    assert after.status.phase == "Running"  # type: ignore[attr-defined]
    assert after.metadata.generation == 1, "status never bumps generation"
    assert after.metadata.resource_version == obj.metadata.resource_version
    # A spec update based on the pre-status read still succeeds and keeps the status.
    updated = await store.update(with_replicas(obj, 5))
    assert updated.metadata.generation == 2 and updated.status.phase == "Running"  # type: ignore[attr-defined]
    assert updated == await store.get("zkc", obj.namespace, obj.name), "update returns what a read returns"
    assert updated.metadata.resource_version != obj.metadata.resource_version
    labelled = updated.model_copy(update={"metadata": updated.metadata.model_copy(update={"labels": {"a": "b"}})})
    assert (await store.update(labelled)).metadata.generation == 2, "metadata changes keep generation"


async def test_finalizers_hold_deletion(store: Store) -> None:
    obj = await store.create(zkc(finalizers=["zkop.io/cleanup"]))
    assert await store.delete("zkc", "default", "orders") == "terminating"
    held = await store.get("zkc", "default", "orders")
    assert held.metadata.deletion_timestamp is not None
    assert await store.delete("zkc", "default", "orders") == "terminating"
    released = held.model_copy(update={"metadata": held.metadata.model_copy(update={"finalizers": []})})
    await store.update(released)
    with pytest.raises(NotFound):
        await store.get("zkc", "default", "orders")
    assert obj.metadata.uid


async def test_immutable_fields_and_size_write_nothing(store: Store) -> None:
    obj = await store.create(zkc())
    renamed = obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"uid": "other"})})
    with pytest.raises(ResourceValidationError):
        await store.update(renamed)
    big = zkc("big", annotations={"blob": "x" * 300_000})
    with pytest.raises(TooLarge):
        await store.create(big)
    with pytest.raises(NotFound):
        await store.get("zkc", "default", "big")
    assert (await store.get("zkc", "default", "orders")) == obj


async def test_corrupt_znode_is_reported_and_skipped(store: Store, zk_client: ZkClient) -> None:
    await store.create(zkc("good"))
    await store.create(zkc("bad"))
    path = store.obj_path(store_kind(), "default", "bad")
    await zk_client.set(path, b"{not json")
    with pytest.raises(CorruptObject) as info:
        await store.get("zkc", "default", "bad")
    assert "not valid JSON" in str(info.value)
    listed = await store.list("zkc")
    assert [o.name for o in listed.items] == ["good"]
    assert [c.path for c in listed.corrupt] == [path]
    await zk_client.set(path, json.dumps({"kind": "Application", "metadata": {"name": "bad"}}).encode())
    with pytest.raises(CorruptObject) as info:
        await store.get("zkc", "default", "bad")
    assert "kind" in str(info.value)


def store_kind() -> Any:
    from zkop.api import resolve_kind

    return resolve_kind("zkc")


async def test_fence_check_fails_the_write_atomically(store: Store, zk_client: ZkClient) -> None:
    epoch_path = f"{store.root}/epoch"
    await zk_client.create(epoch_path, b"", makepath=True)
    fenced = store.fenced(Fence((Op.check(epoch_path, 0),)))
    obj = await fenced.create(zkc())
    await zk_client.set(epoch_path, b"new leader")  # version 1: the old term is over
    with pytest.raises(Fenced):
        await fenced.update(with_replicas(obj, 5))
    with pytest.raises(Fenced):
        await fenced.create(zkc("other"))
    assert (await store.get("zkc", "default", "orders")).spec.replicas == 3  # type: ignore[attr-defined]
    with pytest.raises(NotFound):
        await store.get("zkc", "default", "other")


async def test_znodes_carry_acls(store: Store, connection: Connection) -> None:
    await store.create(zkc())
    anon = KazooClient(connection.hosts)
    anon.start(timeout=10)
    try:
        with pytest.raises(NoAuthError):
            anon.get(store.obj_path(store_kind(), "default", "orders"))
        with pytest.raises(NoAuthError):
            anon.set(store.obj_path(store_kind(), "default", "orders"), b"{}")
    finally:
        anon.stop()
        anon.close()


async def test_events_are_bounded_and_repeats_counted(store: Store) -> None:
    obj = await store.create(zkc())
    for i in range(MAX_EVENTS_PER_OBJECT + 10):
        await store.record_event(obj, "Normal", "Step", f"step {i}")
    await store.record_event(obj, "Normal", "Step", f"step {MAX_EVENTS_PER_OBJECT + 9}")
    events = await store.list_events("default", kind="zkc", name="orders")
    assert len(events) == MAX_EVENTS_PER_OBJECT
    assert events[-1].message == f"step {MAX_EVENTS_PER_OBJECT + 9}" and events[-1].count == 2
    assert events[0].message == "step 10"


async def test_a_new_writer_adds_its_first_event_in_one_write_and_keeps_the_bound(
    store: Store, zk_client: ZkClient, connection: Connection
) -> None:
    obj = await store.create(zkc())
    for i in range(MAX_EVENTS_PER_OBJECT + 5):
        await store.record_event(obj, "Normal", "Step", f"step {i}")
    # Another writer (a new operator term): its first event is added after the newest, even when
    # it repeats it (a repeat is merged only with what the same writer recorded), the oldest
    # dropped.
    other = Store(zk_client, root=connection.root, acl=connection.acl())
    await other.record_event(obj, "Normal", "Step", f"step {MAX_EVENTS_PER_OBJECT + 4}")
    await other.record_event(obj, "Normal", "Step", f"step {MAX_EVENTS_PER_OBJECT + 4}")
    events = await store.list_events("default", kind="zkc", name="orders")
    assert len(events) == MAX_EVENTS_PER_OBJECT
    assert [(e.message, e.count) for e in events[-2:]] == [
        (f"step {MAX_EVENTS_PER_OBJECT + 4}", 1),
        (f"step {MAX_EVENTS_PER_OBJECT + 4}", 2),
    ]
    # On an object with few events, nothing is read: the sequence number bounds the count.
    fresh = await store.create(zkc("fresh"))
    await store.record_event(fresh, "Normal", "Created", "made")
    third = Store(zk_client, root=connection.root, acl=connection.acl())
    reads_before = zk_client.kazoo._connection._xid
    await third.record_event(fresh, "Normal", "Leading", "third leads")
    assert zk_client.kazoo._connection._xid - reads_before == 1  # one request: the create
    assert [e.reason for e in await store.list_events("default", kind="zkc", name="fresh")] == ["Created", "Leading"]


async def collect(stream: AsyncIterator[WatchEvent], until: Any, timeout: float = 10.0) -> list[WatchEvent]:
    seen: list[WatchEvent] = []
    async with asyncio.timeout(timeout):
        async for event in stream:
            seen.append(event)
            if until(seen):
                return seen
    return seen


async def test_watch_lists_then_streams_changes_in_order(store: Store) -> None:
    await store.create(zkc("pre"))
    stream = store.watch("zkc")
    initial = await collect(stream, lambda s: s[-1].type == "SYNCED")
    assert [(e.type, e.key) for e in initial] == [("ADDED", "default/pre"), ("SYNCED", "")]
    obj = await store.create(zkc("live"))
    assert (await collect(stream, lambda s: True))[0].type == "ADDED"
    versions = []
    for replicas in (5, 7, 9):
        obj = await store.update(with_replicas(obj, replicas))
        event = (await collect(stream, lambda s: True))[0]
        assert event.type == "MODIFIED" and event.object is not None
        versions.append(int(event.object.metadata.resource_version or 0))
        assert event.object.spec.replicas == replicas  # type: ignore[attr-defined]
    assert versions == sorted(versions)
    status = obj.status.model_copy(update={"phase": "Running"})
    await store.update_status(obj.model_copy(update={"status": status}))
    event = (await collect(stream, lambda s: True))[0]
    assert event.type == "MODIFIED" and event.object.status.phase == "Running"  # type: ignore[union-attr]
    await store.delete("zkc", "default", "live")
    event = (await collect(stream, lambda s: True))[0]
    assert (event.type, event.key) == ("DELETED", "default/live")
    await store.create(zkc("elsewhere", ns="new-ns"))
    event = (await collect(stream, lambda s: True))[0]
    assert (event.type, event.key) == ("ADDED", "new-ns/elsewhere")
    await stream.aclose()  # type: ignore[attr-defined]


async def test_watch_resumes_from_a_cache(store: Store) -> None:
    a = await store.create(zkc("a"))
    b = await store.create(zkc("b"))
    cache = {a.key: a.metadata.resource_version or "", b.key: b.metadata.resource_version or ""}
    # While nobody watched: a changed, b went, c came.
    await store.update(with_replicas(a, 5))
    await store.delete("zkc", "default", "b")
    await store.create(zkc("c"))
    stream = store.watch("zkc", resume_from=cache)
    events = await collect(stream, lambda s: s[-1].type == "SYNCED")
    assert sorted((e.type, e.key) for e in events if e.type != "SYNCED") == [
        ("ADDED", "default/c"),
        ("DELETED", "default/b"),
        ("MODIFIED", "default/a"),
    ]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_apply_is_idempotent(store: Store) -> None:
    assert await apply_one(store, zkc()) == "created"
    assert await apply_one(store, zkc()) == "unchanged"
    assert await apply_one(store, zkc(replicas=5)) == "configured"
    assert await apply_one(store, zkc(replicas=5, labels={"x": "y"})) == "configured"
    got = await store.get("zkc", "default", "orders")
    assert got.metadata.generation == 2 and got.metadata.labels == {"x": "y"}
