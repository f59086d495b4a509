"""The kubernetes store against a real API server: the same interface as the ZooKeeper store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from zkop.api import ZookeeperCluster, load_yaml, parse_object
from zkop.api.crd import crds
from zkop.client.kube import api_client
from zkop.errors import Fenced
from zkop.store import Conflict, NotFound
from zkop.store.kube import EPOCH_ANNOTATION, KubeStore
from zkop.store.watch import WatchEvent
from zkop.store.znodes import Fence
from zkop.testing.kube import ControlPlane

pytestmark = pytest.mark.kubernetes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cp(kube_control_plane: ControlPlane) -> Iterator[ControlPlane]:
    kube_control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "deploy" / "crds"))
    for definition in crds():
        kube_control_plane.kubectl(
            "wait", "--for=condition=Established", f"crd/{definition['metadata']['name']}", "--timeout=60s"
        )
    yield kube_control_plane


@pytest.fixture
async def store(cp: ControlPlane) -> AsyncIterator[KubeStore]:
    api = await api_client(cp.kubeconfig)
    try:
        yield KubeStore(api)
    finally:
        await api.close()


def zkc(namespace: str, name: str = "zk", replicas: int = 3, **labels: str) -> ZookeeperCluster:
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"replicas": replicas},
        }
    )
    assert isinstance(obj, ZookeeperCluster)
    return obj


async def test_crud_with_resource_versions_generation_and_status(store: KubeStore, kube_namespace: str) -> None:
    created = await store.create(zkc(kube_namespace, tier="a"))
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.generation == 1
    got = await store.get("zkc", kube_namespace, "zk")
    assert got == created

    # A spec change bumps the generation; a stale resourceVersion is a Conflict, nothing written.
    more = got.model_copy(update={"spec": got.spec.model_copy(update={"replicas": 5})})
    updated = await store.update(more)
    assert updated.metadata.generation == 2 and updated.spec.replicas == 5  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        await store.update(got.model_copy(update={"spec": got.spec.model_copy(update={"replicas": 1})}))
    assert (await store.get("zkc", kube_namespace, "zk")).spec.replicas == 5  # type: ignore[attr-defined]

    # The status subresource: written on its own, never bumps the generation.
    status = updated.status.model_copy(update={"phase": "Running", "ready_replicas": 5})  # type: ignore[attr-defined]
    written = await store.update_status(updated.model_copy(update={"status": status}))
    assert written.status.phase == "Running" and written.metadata.generation == 2  # type: ignore[attr-defined]

    # The object changed between the status write's read and its write (a user's edit): no
    # conflict, the write is made again on a fresh read, and the edit stays.
    real = store.custom.replace_namespaced_custom_object_status
    edits: list[int] = []

    async def edited_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not edits:
            fresh = await store.get("zkc", kube_namespace, "zk")
            edits.append(
                (
                    await store.update(fresh.model_copy(update={"spec": fresh.spec.model_copy(update={"replicas": 3})}))
                ).metadata.generation
            )
        return await real(*args, **kwargs)

    store.custom.replace_namespaced_custom_object_status = edited_meanwhile  # type: ignore[method-assign]
    try:
        status = written.status.model_copy(update={"ready_replicas": 3})  # type: ignore[attr-defined]
        again = await store.update_status(written.model_copy(update={"status": status}))
    finally:
        store.custom.replace_namespaced_custom_object_status = real  # type: ignore[method-assign]
    assert edits == [3] and again.status.ready_replicas == 3  # type: ignore[attr-defined]
    assert again.spec.replicas == 3 and again.metadata.generation == 3  # type: ignore[attr-defined]

    # List, with a label selector; across namespaces.
    await store.create(zkc(kube_namespace, "other", tier="b"))
    assert [o.name for o in (await store.list("zkc", kube_namespace)).items] == ["other", "zk"]
    assert [o.name for o in (await store.list("zkc", kube_namespace, "tier=a")).items] == ["zk"]
    assert {o.key for o in (await store.list("zkc")).items} >= {f"{kube_namespace}/zk", f"{kube_namespace}/other"}

    # Finalizers and deletionTimestamp: terminating until the last finalizer goes.
    current = await store.get("zkc", kube_namespace, "zk")
    meta = current.metadata.model_copy(update={"finalizers": ["zkop.io/test"]})
    await store.update(current.model_copy(update={"metadata": meta}))
    assert await store.delete("zkc", kube_namespace, "zk") == "terminating"
    marked = await store.get("zkc", kube_namespace, "zk")
    assert marked.metadata.deletion_timestamp is not None
    await store.update(marked.model_copy(update={"metadata": marked.metadata.model_copy(update={"finalizers": []})}))
    with pytest.raises(NotFound):
        await store.get("zkc", kube_namespace, "zk")
    assert await store.delete("zkc", kube_namespace, "other") == "deleted"


async def test_every_example_round_trips(store: KubeStore, kube_namespace: str) -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for obj in load_yaml(path.read_text(), source=str(path)):
            meta = obj.metadata.model_copy(update={"namespace": kube_namespace})
            created = await store.create(obj.model_copy(update={"metadata": meta}))
            assert created.spec == obj.spec, path


async def collect(stream: AsyncIterator[WatchEvent], until: Any, timeout: float = 20.0) -> list[WatchEvent]:
    seen: list[WatchEvent] = []
    async with asyncio.timeout(timeout):
        async for event in stream:
            seen.append(event)
            if until(seen):
                return seen
    return seen


async def test_watch_lists_then_streams_and_relists_after_410(
    store: KubeStore, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.create(zkc(kube_namespace, "a"))
    stream = store.watch("zkc", kube_namespace)
    try:
        first = await collect(stream, lambda s: s[-1].type == "SYNCED")
        assert [(e.type, e.key) for e in first] == [("ADDED", f"{kube_namespace}/a"), ("SYNCED", "")]

        await store.create(zkc(kube_namespace, "b"))
        b = await store.get("zkc", kube_namespace, "b")
        await store.update(b.model_copy(update={"spec": b.spec.model_copy(update={"replicas": 1})}))
        await store.delete("zkc", kube_namespace, "a")
        changes = await collect(stream, lambda s: any(e.type == "DELETED" for e in s))
        kinds = [(e.type, e.key.split("/")[1]) for e in changes]
        assert kinds[0] == ("ADDED", "b") and ("DELETED", "a") in kinds
        assert all(t == "MODIFIED" for t, n in kinds[1:-1] if n == "b")
    finally:
        await stream.aclose()  # type: ignore[attr-defined]

    # The history is gone (410): the stream lists again and emits only the difference.
    real = KubeStore._stream
    calls = {"n": 0}

    async def gone_once(self: KubeStore, *args: Any) -> AsyncIterator[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 1:
            yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
            return
        async for event in real(self, *args):
            yield event

    stream = store.watch("zkc", kube_namespace)
    try:
        await collect(stream, lambda s: s[-1].type == "SYNCED")
        monkeypatch.setattr(KubeStore, "_stream", gone_once)
        await store.create(zkc(kube_namespace, "c"))
        after = await collect(stream, lambda s: any(e.key.endswith("/c") for e in s))
        assert [(e.type, e.key.split("/")[1]) for e in after] == [("ADDED", "c")]
        assert calls["n"] >= 1
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_events_are_kubernetes_events_with_a_series(
    store: KubeStore, cp: ControlPlane, kube_namespace: str
) -> None:
    obj = await store.create(zkc(kube_namespace))
    await store.record_event(obj, "Normal", "Created", "started members [1, 2, 3]")
    await store.record_event(obj, "Warning", "QuorumLost", "1 of 3 serve")
    await store.record_event(obj, "Warning", "QuorumLost", "1 of 3 serve")
    events = await store.list_events(kube_namespace, kind="zkc", name="zk")
    assert [(e.reason, e.count) for e in events] == [("Created", 1), ("QuorumLost", 2)]
    out = cp.kubectl("get", "events.events.k8s.io", "-n", kube_namespace, "-o", "json").stdout
    assert '"reportingController": "zkop.io/operator"' in out and '"kind": "ZookeeperCluster"' in out


async def test_a_newer_term_is_never_overwritten_by_an_older_one(store: KubeStore, kube_namespace: str) -> None:
    async def current() -> None:
        return None

    new_term = store.fenced(Fence(epoch=7), current)
    obj = await new_term.create(zkc(kube_namespace))
    assert obj.metadata.annotations[EPOCH_ANNOTATION] == "7"

    # An older term (a deposed leader that still passes its own check) cannot write over it...
    old_term = store.fenced(Fence(epoch=6), current)
    fresh = await old_term.get("zkc", kube_namespace, "zk")
    with pytest.raises(Fenced):
        await old_term.update(fresh.model_copy(update={"spec": fresh.spec.model_copy(update={"replicas": 1})}))
    with pytest.raises(Fenced):
        await old_term.update_status(fresh)
    with pytest.raises(Fenced):
        await old_term.delete("zkc", kube_namespace, "zk")

    # ... and one whose term check fails writes nothing at all, not even a create.
    async def deposed() -> None:
        raise Fenced("term over")

    gone = store.fenced(Fence(epoch=8), deposed)
    with pytest.raises(Fenced):
        await gone.create(zkc(kube_namespace, "never"))
    with pytest.raises(NotFound):
        await store.get("zkc", kube_namespace, "never")

    # A status write stamps the term on the object first (status writes carry no metadata).
    later = store.fenced(Fence(epoch=9), current)
    status_only = await later.update_status(fresh)
    assert status_only.metadata.annotations[EPOCH_ANNOTATION] == "9"
    with pytest.raises(Fenced):
        await new_term.update_status(await store.get("zkc", kube_namespace, "zk"))
