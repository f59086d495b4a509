"""Fixtures for tests against a real Kubernetes control plane (no kubelet).

- ``kube_control_plane``: etcd, kube-apiserver and kube-controller-manager on free loopback
  ports, started once per session (:class:`zkop.testing.kube.ControlPlane`).
- ``kube_namespace``: a fresh namespace for one test (its ``default`` ServiceAccount exists),
  deleted after it.
- ``node_agent``: a node agent (:mod:`zkop.testing.nodeagent`) serving ``kube_namespace``: its
  Pods are scheduled and run as local processes (crash-loop back-off scaled to a tenth).
- ``cp``: the control plane with the checked-in CRDs applied (server-side, so any module may
  apply them again) and Established, per module.
- ``zk``: a one-member coordination ZooKeeper for a module's operators.

The binaries come from ``tools/kube/build.sh`` (``make kube-tools``). When they are missing
they are built once, right after collection when a selected test uses the control plane
(outside any test's timeout, progress on the terminal), else by the fixture. A failed build
fails those tests with the build's output, on CI (``CI=true``) and elsewhere alike; they are
skipped only when ``ZKOP_SKIP_KUBE=1`` says so.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from zkop.api.crd import crds
from zkop.testing import Ensemble, running_ensemble
from zkop.testing.kube import ControlPlane, KubeBinaries, KubeError, ensure_binaries
from zkop.testing.nodeagent import NodeAgent

_SKIP_ENV = "ZKOP_SKIP_KUBE"
# Per session: the built binaries, or the build's error text.
_BUILD = pytest.StashKey[KubeBinaries | str]()


def _skipping() -> bool:
    return os.environ.get(_SKIP_ENV) == "1"


def _build(config: pytest.Config) -> None:
    """Build (or find up to date) the binaries once per session, showing build.sh's progress."""
    if _BUILD in config.stash:
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    uncaptured = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
    with uncaptured:
        try:
            config.stash[_BUILD] = ensure_binaries(sys.stderr)
        except KubeError as e:
            config.stash[_BUILD] = str(e)


def _binaries_or_fail(config: pytest.Config) -> KubeBinaries:
    _build(config)
    built = config.stash[_BUILD]
    if isinstance(built, str):
        where = " on CI" if os.environ.get("CI") == "true" else ""
        pytest.fail(
            f"the Kubernetes test bed's binaries could not be built{where} "
            f"(set {_SKIP_ENV}=1 to skip these tests on purpose):\n{built}",
            pytrace=False,
        )
    return built


def pytest_collection_finish(session: pytest.Session) -> None:
    if _skipping() or session.config.option.collectonly:
        return
    if any("kube_control_plane" in getattr(item, "fixturenames", ()) for item in session.items):
        _build(session.config)


@pytest.fixture(scope="session")
def kube_control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    if _skipping():
        pytest.skip(f"{_SKIP_ENV}=1: Kubernetes tests skipped on request")
    binaries = _binaries_or_fail(request.config)
    cp = ControlPlane(tmp_path_factory.mktemp("kube"), binaries)
    try:
        cp.start()
    except KubeError as e:
        pytest.fail(f"the Kubernetes control plane did not start (logs in {cp.log_dir}):\n{e}", pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def kube_namespace(kube_control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    cp = kube_control_plane
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem or 't'}-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", name)
    path = f"/api/v1/namespaces/{name}/serviceaccounts/default"
    cp.wait_for(
        f"the default ServiceAccount in {name}",
        lambda: True if cp.request(path)[0] == 200 else None,
        timeout=60,
    )
    try:
        yield name
    finally:
        cp.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture
def node_agent(
    kube_control_plane: ControlPlane, kube_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeAgent]:
    """A Node of its own for one test, serving its namespace; every process it started is stopped
    (by pid) at teardown, also when the test fails. Back-off 1 s doubling to 30 s; ConfigMap and
    Secret volumes refreshed every 2 s."""
    agent = NodeAgent(
        kube_control_plane,
        tmp_path_factory.mktemp("node"),
        node_name=f"node-{kube_namespace}",
        namespaces=[kube_namespace],
        backoff_scale=0.1,
        refresh_interval=2.0,
        shutdown_grace=10.0,
        delete_node_on_stop=True,
    )
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="module")
def cp(kube_control_plane: ControlPlane) -> ControlPlane:
    deploy = Path(__file__).resolve().parents[2] / "deploy" / "crds"
    kube_control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(deploy))
    for definition in crds():
        kube_control_plane.kubectl(
            "wait", "--for=condition=Established", f"crd/{definition['metadata']['name']}", "--timeout=60s"
        )
    return kube_control_plane


@pytest.fixture(scope="module")
def zk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ensemble]:
    with running_ensemble(1, state_dir=tmp_path_factory.mktemp("coordination")) as ensemble:
        yield ensemble
