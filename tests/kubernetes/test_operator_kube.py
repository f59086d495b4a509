"""The operator with its desired state in the Kubernetes API and its coordination in ZooKeeper:
it reconciles, and a deposed (paused) leader changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from zkop.testing import Ensemble
from zkop.testing.kube import ControlPlane

pytestmark = pytest.mark.kubernetes

ROOT = Path(__file__).resolve().parents[2]
SESSION = 4  # seconds: the replicas' ZooKeeper session timeout, so a paused leader is deposed quickly


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def replicas(cp: ControlPlane, zk: Ensemble, kube_namespace: str, tmp_path: Path) -> Iterator[Callable[[str], Replica]]:
    config = tmp_path / "operator.yaml"
    config.write_text(
        "apiVersion: zkop.io/v1\nkind: OperatorConfig\nmetadata: {name: zkop}\n"
        f"spec: {{targetNamespace: {kube_namespace}, leaderElection: {{sessionTimeoutSeconds: {SESSION}}}}}\n"
    )
    started: list[Replica] = []
    auth = f"zkop:{uuid.uuid4().hex}"
    env = dict(os.environ, ZKOP_AUTH=auth, ZKOP_STATE_DIR=str(tmp_path / "state"))
    root = f"/kube-{uuid.uuid4().hex[:8]}"
    candidates.update(root=root, auth=auth, hosts=zk.connection_string)

    def start(name: str) -> Replica:
        log = tmp_path / f"{name}.log"
        argv = [
            sys.executable, "-m", "zkop.cli.main", "operator", "run", "--zk", zk.connection_string,
            "--root", root, "--kubeconfig", str(cp.kubeconfig), "--config", str(config),
            "--identity", name, "--metrics-port", "0", "--log-level", "DEBUG",
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        replica = Replica(name, proc, log)
        started.append(replica)
        return replica

    try:
        yield start
    finally:
        for r in started:
            if r.process.poll() is None:
                os.killpg(r.process.pid, signal.SIGCONT)
                os.killpg(r.process.pid, signal.SIGTERM)
                try:
                    r.process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(r.process.pid, signal.SIGKILL)
                    r.process.wait(5)


candidates: dict[str, str] = {}


def in_line() -> int:
    """Replicas campaigning in the election (leader and standbys)."""
    zk = KazooClient(candidates["hosts"], auth_data=[("digest", candidates["auth"])])
    zk.start(timeout=10)
    try:
        return len(zk.get_children(f"{candidates['root']}/leader/zkop-operator/candidates"))
    except NoNodeError:
        return 0
    finally:
        zk.stop()
        zk.close()


def opconfig(cp: ControlPlane, ns: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cp.kubectl("get", "opconfig", "zkop", "-n", ns, "-o", "json").stdout)
    return data


def wait(what: str, check: Callable[[], Any], timeout: float = 60.0, *logs: Replica) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline or any(r.process.poll() is not None for r in logs):
            tails = "\n".join(f"--- {r.name}\n" + "\n".join(r.text().splitlines()[-25:]) for r in logs)
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.2)


def test_a_paused_leader_changes_nothing_after_a_standby_took_over(
    cp: ControlPlane, kube_namespace: str, replicas: Callable[[str], Replica]
) -> None:
    ns = kube_namespace
    cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples" / "operatorconfig.yaml"))
    a = replicas("replica-a")
    first = wait("a leader reconciles", lambda: opconfig(cp, ns).get("status", {}).get("leader"), 60, a)
    assert first == "replica-a" and opconfig(cp, ns)["status"]["epoch"] == 1
    b = replicas("replica-b")
    wait("the standby campaigns", lambda: in_line() == 2, 30, b)

    # The leader pauses (a long GC pause): its session expires, the standby leads in epoch 2.
    os.killpg(a.process.pid, signal.SIGSTOP)
    try:
        wait(
            "the standby leads and writes",
            lambda: opconfig(cp, ns).get("status", {}).get("leader") == "replica-b",
            SESSION * 6,
            b,
        )
        obj = opconfig(cp, ns)
        assert obj["status"]["epoch"] == 2 and obj["metadata"]["annotations"]["zkop.io/epoch"] == "2"
        # A change while the old leader is frozen: when it wakes, its watch delivers it at once.
        cp.kubectl("patch", "opconfig", "zkop", "-n", ns, "--type", "merge", "-p", '{"spec": {"replicas": 3}}')
        wait(
            "the new leader observes generation 2",
            lambda: opconfig(cp, ns)["status"].get("observedGeneration") == 2,
            30,
            b,
        )
        before = opconfig(cp, ns)
    finally:
        os.killpg(a.process.pid, signal.SIGCONT)
    # The old leader wakes up, learns it was deposed and steps down; it has written nothing.
    wait(
        "the old leader steps down",
        lambda: "stopped leading" in a.text() or "fenced" in a.text().lower(),
        SESSION * 6,
        a,
    )
    after = opconfig(cp, ns)
    # Whether its watch delivered the change before it learnt its session was gone (then its
    # write was refused: "fenced" in its log) or after (then it never tried), nothing changed.
    assert after["status"] == before["status"]
    assert after["status"]["leader"] == "replica-b" and after["status"]["epoch"] == 2
    assert after["metadata"]["annotations"]["zkop.io/epoch"] == "2"
    assert psutil.Process(a.process.pid).status() != psutil.STATUS_STOPPED
