"""The ZookeeperCluster operator on Kubernetes next to the local platform, in one run: time to
Available (3 members), heal (a member's Pod deleted / process killed), scale 3 -> 5, and a
rolling restart (a configuration change).

    python bench/kube_zookeepercluster.py

Kubernetes side: a real etcd + kube-apiserver + kube-controller-manager (zkop.testing.kube),
the node agent test double running the members' Pods as real ZooKeeper JVMs, a coordination
ZooKeeper, and one operator replica (``zkop operator run --platform kubernetes``) as a
process. Local side: bench/zookeepercluster.py's own figures (one rep). Writes
bench/results/kube_zookeepercluster.json; the ratios are kubernetes / local.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubernetes_asyncio import client as k8s

from common import ratio, write
from zkop.api.crd import crds
from zkop.client.kube import api_client
from zkop.testing import running_ensemble
from zkop.testing.kube import ControlPlane, ensure_binaries
from zkop.testing.nodeagent import NodeAgent
from zookeepercluster import run as local_run

ROOT = Path(__file__).resolve().parents[1]
NS = "bench"
POLL = 0.1


async def zkc(api: k8s.CustomObjectsApi) -> dict[str, Any]:
    try:
        data: dict[str, Any] = await api.get_namespaced_custom_object("zkop.io", "v1", NS, "zookeeperclusters", "zk")
        return data
    except k8s.ApiException:
        return {}


def available(n: int, generation: int | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        s = obj.get("status", {})
        cond = {c["type"]: c["status"] for c in s.get("conditions", [])}
        current = generation is None or s.get("observedGeneration", 0) >= generation
        return (
            current
            and s.get("phase") == "Running"
            and s.get("readyReplicas") == n
            and s.get("replicas") == n
            and cond.get("Available") == "True"
        )

    return check


async def until(api: k8s.CustomObjectsApi, check: Callable[[dict[str, Any]], bool], timeout: float = 300.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if check(await zkc(api)):
            return time.perf_counter() - t0
        await asyncio.sleep(POLL)
    raise TimeoutError(f"not reached within {timeout:.0f}s: {json.dumps((await zkc(api)).get('status', {}))[:800]}")


async def kube_run(work: Path) -> dict[str, Any]:
    binaries = ensure_binaries()
    out: dict[str, Any] = {}
    with (
        ControlPlane(work / "cp", binaries) as cp,
        running_ensemble(1, state_dir=work / "coordination") as zk,
        NodeAgent(cp, work / "node", node_name="bench-node", namespaces=[NS], backoff_scale=0.1) as agent,
    ):
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "deploy" / "crds"))
        for definition in crds():
            cp.kubectl("wait", "--for=condition=Established", f"crd/{definition['metadata']['name']}", "--timeout=60s")
        cp.kubectl("create", "namespace", NS)
        config = work / "operator.yaml"
        config.write_text(
            "apiVersion: zkop.io/v1\nkind: OperatorConfig\nmetadata: {name: zkop}\n"
            f"spec: {{targetNamespace: {NS}, leaderElection: {{sessionTimeoutSeconds: 6}}}}\n"
        )
        env = dict(os.environ, ZKOP_AUTH=f"zkop:{uuid.uuid4().hex}", ZKOP_STATE_DIR=str(work / "state"))
        argv = [
            sys.executable, "-m", "zkop.cli.main", "operator", "run", "--zk", zk.connection_string,
            "--kubeconfig", str(cp.kubeconfig), "--platform", "kubernetes", "--config", str(config),
            "--identity", "bench", "--metrics-port", "0",
        ]  # fmt: skip
        log = (work / "operator.log").open("wb")
        operator = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        api = await api_client(cp.kubeconfig)
        custom = k8s.CustomObjectsApi(api)
        core = k8s.CoreV1Api(api)
        try:
            spec = {"replicas": 3, "config": {"tickTime": 2000}, "jvm": {"heap": "128Mi"}}
            body = {"apiVersion": "zkop.io/v1", "kind": "ZookeeperCluster", "metadata": {"name": "zk"}, "spec": spec}
            t0 = time.perf_counter()
            await custom.create_namespaced_custom_object("zkop.io", "v1", NS, "zookeeperclusters", body)
            await until(custom, available(3))
            out["time_to_available_3_s"] = time.perf_counter() - t0

            # Heal: the member's Pod deleted (a new Pod, same id and volume).
            await core.delete_namespaced_pod("zk-2", NS)
            t0 = time.perf_counter()
            await until(custom, lambda o: not available(3)(o), 60)
            await until(custom, available(3))
            out["heal_pod_deleted_s"] = time.perf_counter() - t0
            # Heal: the member's JVM killed (the kubelet -- here the node agent -- restarts it).
            pid = agent.pids().get(f"{NS}/zk-1/zookeeper")
            if pid:
                os.kill(pid, signal.SIGKILL)
                t0 = time.perf_counter()
                await until(custom, lambda o: not available(3)(o), 60)
                await until(custom, available(3))
                out["heal_process_killed_s"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            patch = {"spec": {"replicas": 5}}
            obj = await custom.patch_namespaced_custom_object(
                "zkop.io", "v1", NS, "zookeeperclusters", "zk", patch, _content_type="application/merge-patch+json"
            )
            await until(custom, available(5, obj["metadata"]["generation"]))
            out["scale_3_to_5_s"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            patch = {"spec": {"config": {"tickTime": 2500}}}
            obj = await custom.patch_namespaced_custom_object(
                "zkop.io", "v1", NS, "zookeeperclusters", "zk", patch, _content_type="application/merge-patch+json"
            )
            generation = obj["metadata"]["generation"]

            def rolled(o: dict[str, Any]) -> bool:
                progressing = {c["type"]: c for c in o.get("status", {}).get("conditions", [])}.get("Progressing", {})
                return available(5, generation)(o) and progressing.get("status") == "False"

            await until(custom, lambda o: {c["type"]: c["status"] for c in o.get("status", {}).get("conditions", [])}
                        .get("Progressing") == "True", 60)  # fmt: skip
            await until(custom, rolled, 600)
            out["rolling_restart_5_s"] = time.perf_counter() - t0
        finally:
            await api.close()
            os.killpg(operator.pid, signal.SIGTERM)
            try:
                operator.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(operator.pid, signal.SIGKILL)
                operator.wait(5)
    return out


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="zkop-bench-kube-zkc-"))
    kube = await kube_run(work)
    local = await local_run(1, 1)

    def p50(key: str, field: str | None = None) -> float | None:
        samples = [x[field] if field else x for x in local.get(key, [])]
        return sorted(samples)[len(samples) // 2] if samples else None

    pairs = {
        "time_to_available_3_s": p50("available_3"),
        "heal_process_killed_s": p50("heal_follower", "total"),
        "scale_3_to_5_s": p50("scale_3_to_5"),
    }
    result = {
        "kubernetes": kube,
        "local": local,
        "ratios_kubernetes_to_local": {
            k: ratio(kube[k], v) for k, v in pairs.items() if k in kube and isinstance(v, int | float) and v
        },
        "notes": "one operator replica; Pods run by the node agent test double (no kubelet), real JVMs; "
        "the local figures are bench/zookeepercluster.py's (1 rep) in the same run",
    }
    path = write("kube_zookeepercluster", result)
    print(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
