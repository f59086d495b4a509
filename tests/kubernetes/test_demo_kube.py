"""`zkop demo --platform kubernetes`: the whole tour (ZooKeeper and the Application as Pods) on
the test bed the demo starts itself (its own control plane, node agent, coordination ZooKeeper and
operator replicas)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from zkop.testing.kube import KubeError, ensure_binaries

pytestmark = pytest.mark.kubernetes


def _binaries_or_skip() -> None:
    if os.environ.get("ZKOP_SKIP_KUBE") == "1":
        pytest.skip("ZKOP_SKIP_KUBE=1: Kubernetes tests skipped on request")
    try:
        ensure_binaries(sys.stderr)
    except KubeError as e:
        pytest.fail(f"the Kubernetes test bed's binaries could not be built:\n{e}", pytrace=False)


def _left_running(state: Path) -> list[str]:
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with_state = " ".join(proc.info["cmdline"] or [])
        if str(state) in with_state:
            out.append(f"{proc.info['pid']}: {with_state[:200]}")
    return out


@pytest.mark.timeout(1800)
def test_the_demo_on_kubernetes_runs_every_step_without_a_failed_request(tmp_path: Path) -> None:
    _binaries_or_skip()
    state = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "zkop.cli.main", "--state-dir", str(state), "demo", "--platform", "kubernetes"],
        capture_output=True,
        text=True,
        timeout=1700,
        env=dict(os.environ, COLUMNS="200"),
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    for step in (
        "Test bed: a Kubernetes control plane",
        "Apply examples/",
        "Send traffic through the proxy",
        "Kill an application instance's process",
        "Delete a ZooKeeper member's Pod",
        "Scale orders-zk from 3 to 5",
        "Kill the operator leader",
        "autoscale up",
        "autoscale down",
    ):
        assert step in out, out[-3000:]
    assert "over the Pods 127.0.0." in out  # the proxy reaches the Pods at their own addresses
    counts = re.search(r"(\d+) ok, (\d+) failed", out)
    assert counts is not None, out[-2000:]
    assert int(counts[1]) > 200 and int(counts[2]) == 0, out[-2000:]
    assert "cleaned up" in out
    assert _left_running(state) == []


def test_without_the_kube_tools_the_demo_says_how_to_build_them(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zkop.cli.main", "--state-dir", str(tmp_path / "s"), "demo", "--platform", "kubernetes"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, ZKOP_KUBE_BIN=str(tmp_path / "no-tools")),
    )
    out = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert len(out.splitlines()) == 1 and "Traceback" not in out, out
    assert "not built" in out and "make kube-tools" in out, out
    assert not (tmp_path / "s" / "kube").exists()  # nothing was started
