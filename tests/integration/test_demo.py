"""The main job end to end: `zkop demo` on real processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zkop.cli.local import stop_everything

pytestmark = pytest.mark.integration


def test_demo_runs_every_step_and_fails_no_request_but_one_cut_by_kill(tmp_path: Path) -> None:
    """Every step passes; the only request allowed to fail is one in flight on the instance
    the demo kills with SIGKILL (traffic is sequential, so at most one)."""
    state = tmp_path / "demo"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "zkop.cli.main", "--state-dir", str(state), "demo"],
            capture_output=True,
            text=True,
            timeout=400,
            env=dict(os.environ, COLUMNS="200"),
        )
    finally:
        stop_everything(state, 5.0)  # also when the demo failed half-way
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    for step in (
        "Kill an application instance",
        "Kill a ZooKeeper member",
        "Scale orders-zk from 3 to 5",
        "Kill the operator leader",
        "autoscale up",
        "autoscale down",
    ):
        assert step in out
    counts = re.search(r"(\d+) ok, (\d+) failed", out)
    assert counts is not None, out[-2000:]
    ok, failed = int(counts[1]), int(counts[2])
    assert ok > 500, out[-2000:]
    explained = re.findall(r"failed request x(\d+) during '([^']*)': (.*)", out)
    assert sum(int(n) for n, _, _ in explained) == failed, out[-2000:]
    assert failed <= 1, out[-2000:]
    for _, step, why in explained:
        assert step == "Kill an application instance", out[-2000:]
        assert "without a reply" in why or "reset" in why.lower(), out[-2000:]
    assert "cleaned up" in out
