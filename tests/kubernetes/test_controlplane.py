"""The Kubernetes test bed itself: a real control plane, RBAC, garbage collection, namespaces, helm."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest

from zkop.testing.kube import (
    KUBERNETES_VERSION,
    ControlPlane,
    KubeBinaries,
    KubeError,
    pinned_kubernetes_version,
    tools_dir,
)

pytestmark = pytest.mark.kubernetes


def _absent(cp: ControlPlane, path: str) -> bool | None:
    """True once GET ``path`` answers 404."""
    status, _ = cp.request(path)
    return True if status == 404 else None


def test_pinned_version_matches_go_mod() -> None:
    assert tools_dir() is not None
    assert pinned_kubernetes_version() == KUBERNETES_VERSION


def test_apiserver_is_ready_and_runs_the_pinned_version(kube_control_plane: ControlPlane) -> None:
    cp = kube_control_plane
    status, body = cp.request("/readyz?verbose")
    assert status == 200, body
    assert "readyz check passed" in body
    status, body = cp.request("/version")
    assert status == 200
    assert json.loads(body)["gitVersion"] == KUBERNETES_VERSION
    # Without credentials: anonymous may read /readyz, but not list namespaces.
    status, _ = cp.request("/api/v1/namespaces", token="not-a-token")
    assert status == 401


def test_everything_listens_on_loopback_only(kube_control_plane: ControlPlane) -> None:
    pids = kube_control_plane.pids
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    listening = [
        (name, c.laddr.ip)
        for name, pid in pids.items()
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert {name for name, _ in listening} == set(pids)
    assert all(ip == "127.0.0.1" for _, ip in listening), listening


def test_configmap_round_trip_with_kubectl(kube_control_plane: ControlPlane, kube_namespace: str) -> None:
    cp = kube_control_plane
    cp.kubectl("create", "configmap", "demo", "--from-literal=greeting=hello", "-n", kube_namespace)
    cm = cp.kubectl_json("get", "configmap", "demo", "-n", kube_namespace)
    assert cm["data"] == {"greeting": "hello"}
    assert cm["metadata"]["namespace"] == kube_namespace


def test_rbac_forbids_a_service_account_until_a_role_binding(
    kube_control_plane: ControlPlane, kube_namespace: str
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    cp.kubectl("create", "serviceaccount", "reader", "-n", ns)
    token = cp.kubectl("create", "token", "reader", "-n", ns).stdout.strip()
    assert cp.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", token=token).stdout == (
        f"system:serviceaccount:{ns}:reader"
    )

    denied = cp.kubectl("get", "pods", "-n", ns, token=token, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower(), denied.stderr

    cp.kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", ns)
    cp.kubectl("create", "rolebinding", "reader-reads", "--role=pod-reader", f"--serviceaccount={ns}:reader", "-n", ns)
    # The RBAC authorizer reads bindings from an informer: the grant shows up shortly after.
    cp.wait_for(
        "the RoleBinding to take effect",
        lambda: True if cp.kubectl("get", "pods", "-n", ns, token=token, check=False).returncode == 0 else None,
        timeout=30,
    )
    # Still nothing outside what the Role grants.
    assert cp.kubectl("get", "secrets", "-n", ns, token=token, check=False).returncode != 0


def test_garbage_collector_deletes_dependents_of_a_deleted_owner(
    kube_control_plane: ControlPlane, kube_namespace: str
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    cp.kubectl("create", "configmap", "owner", "-n", ns)
    owner_uid = cp.kubectl_json("get", "configmap", "owner", "-n", ns)["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": ns,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
        "data": {"k": "v"},
    }
    cp.kubectl("create", "-f", "-", input=json.dumps(dependent))
    cp.kubectl("delete", "configmap", "owner", "-n", ns)
    cp.wait_for(
        "the garbage collector to delete the dependent ConfigMap",
        lambda: _absent(cp, f"/api/v1/namespaces/{ns}/configmaps/dependent"),
        timeout=60,
    )


def test_namespace_deletion_completes(kube_control_plane: ControlPlane) -> None:
    cp = kube_control_plane
    ns = f"doomed-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("create", "configmap", "content", "--from-literal=a=b", "-n", ns)
    cp.kubectl("delete", "namespace", ns, "--wait=false")
    phase = cp.kubectl_json("get", "namespace", ns)["status"].get("phase")
    assert phase in ("Terminating", None)  # unless the controller was faster than this read
    cp.wait_for(
        f"namespace {ns} to be finalized and gone",
        lambda: _absent(cp, f"/api/v1/namespaces/{ns}"),
        timeout=60,
    )


def test_helm_version_and_install(kube_control_plane: ControlPlane, kube_namespace: str, tmp_path: Path) -> None:
    cp, ns = kube_control_plane, kube_namespace
    assert cp.helm("version", "--short").stdout.startswith("v3.")
    chart = tmp_path / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-greeting
            data:
              greeting: {{ .Values.greeting | quote }}
            """
        )
    )
    cp.helm("install", "hello", str(chart), "-n", ns, "--set", "greeting=hi")
    cm = cp.kubectl_json("get", "configmap", "hello-greeting", "-n", ns)
    assert cm["data"] == {"greeting": "hi"}
    releases = json.loads(cp.helm("list", "-n", ns, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("hello", "deployed")]


def test_a_failed_start_stops_what_it_started(kube_control_plane: ControlPlane, tmp_path: Path) -> None:
    """An apiserver that exits at once: start() raises with its output and etcd is stopped."""
    bins = tmp_path / "bin"
    bins.mkdir()
    for name in KubeBinaries.NAMES:
        (bins / name).symlink_to(kube_control_plane.binaries.path(name))
    (bins / "kube-apiserver").unlink()
    (bins / "kube-apiserver").write_text("#!/bin/sh\necho 'no apiserver today' >&2\nexit 3\n")
    (bins / "kube-apiserver").chmod(0o755)
    root = tmp_path / "cp"
    cp = ControlPlane(root, KubeBinaries(bins), start_timeout=60)
    with pytest.raises(KubeError, match=r"(?s)kube-apiserver exited with 3.*no apiserver today"):
        cp.start()
    assert cp.pids == {}
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if str(root) in " ".join(p.info["cmdline"] or ())]
    assert leftovers == []
