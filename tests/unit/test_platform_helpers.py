"""The small pieces the platforms share: subscribers, application events, Secret manifests,
404 as "not there", fenced local work and the members' stored configuration."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from kubernetes_asyncio.client.rest import ApiException

from zkop.errors import Fenced
from zkop.platform.base import AppRef, ClusterRef, ObjectRef
from zkop.platform.kubernetes.apierrors import KubernetesError, unless_absent
from zkop.platform.kubernetes.manifests import opaque_secret
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.platform.local.fence import EpochFence, run_fenced
from zkop.platform.notify import Subscribers, app_event


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    seen: list[ClusterRef] = []
    subscribers: Subscribers[ClusterRef] = Subscribers()
    assert not subscribers

    def fails(ref: ClusterRef) -> None:
        raise RuntimeError("boom")

    subscribers.add(fails)
    subscribers.add(seen.append)
    subscribers.notify(ClusterRef("ns", "a"))
    assert subscribers
    assert seen == [ClusterRef("ns", "a")]


async def test_application_events_go_to_the_recorder_and_failures_are_let_go() -> None:
    recorded: list[tuple[str, ...]] = []

    async def events(*args: str) -> None:
        recorded.append(args)

    async def broken(*args: str) -> None:
        raise RuntimeError("store away")

    ref = AppRef("ns", "web")
    await app_event(None, ref, "Normal", "Started", "nobody listens")
    await app_event(broken, ref, "Normal", "Started", "lost")
    await app_event(events, ref, "Warning", "Restarting", "web-1 restarted")
    assert recorded == [("Application", "ns", "web", "Warning", "Restarting", "web-1 restarted")]


def test_references_of_different_kinds_never_equal() -> None:
    assert ClusterRef("ns", "x").key == AppRef("ns", "x").key == "ns/x"
    app: ObjectRef = AppRef("ns", "x")
    assert ClusterRef("ns", "x") != app
    assert {ClusterRef("ns", "x"): 1}[ClusterRef("ns", "x")] == 1


def test_opaque_secret_encodes_its_data() -> None:
    body = opaque_secret({"name": "s", "namespace": "ns"}, {"password": "pw"})
    assert body["kind"] == "Secret" and body["type"] == "Opaque"
    assert body["metadata"] == {"name": "s", "namespace": "ns"}
    assert base64.b64decode(body["data"]["password"]).decode() == "pw"


async def test_unless_absent_takes_404_as_none_and_reports_other_refusals() -> None:
    async def answer(status: int | None) -> str:
        if status is not None:
            raise ApiException(status=status, reason="no")
        return "found"

    assert await unless_absent(answer(None), "reading") == "found"
    assert await unless_absent(answer(404), "reading") is None
    with pytest.raises(KubernetesError, match="reading: the API server answered 403"):
        await unless_absent(answer(403), "reading")


async def test_run_fenced_refuses_an_older_epoch(tmp_path: Path) -> None:
    done: list[int] = []
    fence = EpochFence(tmp_path / "epoch.json")
    await run_fenced(fence, 2, lambda: done.append(2))
    await run_fenced(None, 1, lambda: done.append(0))  # no fence: nothing refused
    with pytest.raises(Fenced):
        await run_fenced(fence, 1, lambda: done.append(1))
    assert done == [2, 0]


def test_stored_membership_is_the_newest_dynamic_file_else_the_initial_one(tmp_path: Path) -> None:
    ens = LocalEnsemble(tmp_path, "e")
    for member_id in (1, 2):
        ens.member_dir(member_id).mkdir(parents=True)
    assert ens.stored_membership([1, 2]) == ([], None)
    (ens.member_dir(1) / "zoo.cfg.dynamic").write_text("server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n")
    found, version = ens.stored_membership([1, 2])
    assert [a.id for a in found] == [1] and version is None
    (ens.member_dir(2) / "zoo.cfg.dynamic.100000000").write_text(
        "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n"
        "server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n"
    )
    found, version = ens.stored_membership([1, 2])
    assert [a.id for a in found] == [1, 2] and version == 0x100000000
