"""The zkop command against real processes: up, status, down and its error cases."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from zkop.cli.local import stop_everything

pytestmark = pytest.mark.integration


def zkop(
    state_dir: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, ZKOP_STATE_DIR=str(state_dir), COLUMNS="200")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "zkop.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=180,
        input=input,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr + result.stdout


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    stop_everything(tmp_path, grace=5)  # also when the test failed


def test_up_status_down(state: Path) -> None:
    result = zkop(state, "up", "-d")
    assert result.returncode == 0, result.stderr
    assert "zkop is up" in result.stdout and "leader" in result.stdout

    again = zkop(state, "up", "-d")
    assert again.returncode == 0 and "already up" in again.stdout

    status = zkop(state, "status", "-o", "json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    roles = sorted(m["role"] for m in data["members"])
    assert roles == ["follower", "follower", "leader"]
    pids = [m["pid"] for m in data["members"]]
    assert zkop(state, "status", "-o", "yaml").stdout.startswith("ensemble: control-plane")

    down = zkop(state, "down")
    assert down.returncode == 0 and "zkop is down" in down.stdout
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    assert_clean_error(zkop(state, "down"), "nothing is running")

    # Purge asks first; "n" keeps the data.
    kept = zkop(state, "down", "--purge", input="n\n")
    assert kept.returncode == 0 and (state / "ensembles").exists()
    purged = zkop(state, "down", "--purge", "--yes")
    assert purged.returncode == 0 and not (state / "ensembles").exists()


def test_missing_zookeeper_is_one_clear_line(state: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-zookeeper"
    empty.mkdir()
    result = zkop(state, "up", "-d", env={"ZOOKEEPER_HOME": str(empty)})
    assert_clean_error(result, "does not look like a ZooKeeper release", "apt-get install zookeeper")
    assert not (state / "ensembles" / "control-plane").exists()


def test_missing_java_is_one_clear_line(state: Path) -> None:
    result = zkop(state, "up", "-d", env={"PATH": str(Path(sys.executable).parent), "JAVA_HOME": ""})
    assert_clean_error(result, "Java was not found", "default-jre-headless")


def test_taken_port_is_one_clear_line(state: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = zkop(state, "up", "-d", "--members", "1", "--port-base", str(port))
    assert_clean_error(result, f"port {port} is already in use")


def test_state_dir_that_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = zkop(blocker / "state", "status")
    assert_clean_error(result, "cannot be created")
    result = zkop(blocker, "status")
    assert_clean_error(result, "is not a directory")


def test_status_when_not_up(state: Path) -> None:
    assert_clean_error(zkop(state, "status"), "zkop is not up", "zkop up")


def test_member_that_exits_at_start_shows_log_and_leaves_nothing(state: Path) -> None:
    result = zkop(state, "up", "-d", "--members", "1", "--heap-mb", "0")
    assert_clean_error(result, "member 1 exited during start", "last lines")
    assert not (state / "ensembles" / "control-plane").exists()


def test_usage_error_has_no_traceback(state: Path) -> None:
    assert_clean_error(zkop(state, "up", "--members", "many"), "Invalid value")
    assert_clean_error(zkop(state, "up", "--members", "12"), "out of range")
