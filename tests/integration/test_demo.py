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


def test_demo_runs_every_step_without_a_failed_request(tmp_path: Path) -> None:
    """Every step passes and no request through the proxy fails (one in flight on the killed
    instance is replayed: the demo's proxy retries empty responses)."""
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
    assert int(counts[1]) > 500 and int(counts[2]) == 0, out[-2000:]
    assert "cleaned up" in out
