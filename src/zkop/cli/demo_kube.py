"""``zkop demo --platform kubernetes``: the narrated tour on the Kubernetes test bed.

A real control plane (etcd, kube-apiserver, kube-controller-manager: :mod:`zkop.testing.kube`),
one node run by the node agent (:mod:`zkop.testing.nodeagent`: Pods as local processes on their
own loopback addresses), a coordination ZooKeeper (the local control plane, one member) and two
operator replicas (``zkop operator run --platform kubernetes``). ``examples/`` is applied in the
``default`` namespace: the ZookeeperCluster's members and the counter's instances are Pods. Then,
as in the local tour: traffic through the proxy (in this process, straight to the Pod addresses),
kill an instance's process, delete a ZooKeeper member's Pod, scale the cluster 3->5, kill the
operator leader, raise and lower the load. Every step is timed; everything is stopped at the end.

The Kubernetes binaries are built by ``make kube-tools`` (tools/kube/build.sh); the demo does not
build them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from zkop.api import load_yaml
from zkop.api.crd import crds
from zkop.cli import connection
from zkop.cli.demo import (
    EXAMPLES,
    Examples,
    Tour,
    Traffic,
    http,
    kill_operator_leader,
    poll,
    print_summary,
    replicas_in_line,
)
from zkop.cli.local import stop_everything
from zkop.cli.output import console
from zkop.errors import ZkopError
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.store.apply import apply_all
from zkop.zk.config import ServerSettings

NAMESPACE = "default"
SESSION_TIMEOUT = 4  # seconds: a killed operator leader is replaced within a few


def binaries() -> Any:
    """The built Kubernetes binaries, or a one-line error that says how to build them."""
    from zkop.testing.kube import KubeError, find_binaries

    try:
        return find_binaries()
    except KubeError as exc:
        detail = str(exc).split(" (make kube-tools")[0]
        raise ZkopError(
            f"the Kubernetes test bed is not built: {detail}", hint="build it with `make kube-tools`"
        ) from None


def operator_config(state_dir: Path) -> Path:
    path = state_dir / "demo-operator.yaml"
    path.write_text(
        "apiVersion: zkop.io/v1\nkind: OperatorConfig\nmetadata:\n  name: demo\n"
        f"spec:\n  leaderElection:\n    leaderElect: true\n    sessionTimeoutSeconds: {SESSION_TIMEOUT}\n"
    )
    return path


def start_replica(state_dir: Path, n: int, kubeconfig: Path, hosts_file: Path) -> int:
    """Operator replica ``n`` on the Kubernetes platform (coordination: the local control plane)."""
    from zkop.cli import operator as op

    argv = [
        sys.executable, "-m", "zkop.cli.main", "--state-dir", str(state_dir), "operator", "run",
        "--identity", f"replica-{n}", "--config", str(operator_config(state_dir)),
        "--platform", "kubernetes", "--kubeconfig", str(kubeconfig),
    ]  # fmt: skip
    env = dict(os.environ, ZKOP_HOSTS_FILE=str(hosts_file))
    return op.replica_unit(state_dir, n).start(argv, env=env).pid


async def run_demo(state_dir: Path) -> None:
    from zkop.client.kube import api_client
    from zkop.store.kube import KubeStore
    from zkop.testing.kube import ControlPlane
    from zkop.testing.nodeagent import NodeAgent

    tour = Tour(state_dir)
    bins = binaries()
    cp = ControlPlane(state_dir / "kube", bins)
    agent: NodeAgent | None = None
    control = LocalEnsemble(state_dir, statedir.CONTROL_PLANE)
    store: KubeStore | None = None
    examples = Examples(NAMESPACE)
    traffic = Traffic()

    async def kubectl(*args: str, input: str | None = None) -> str:
        return (await asyncio.to_thread(cp.kubectl, *args, input=input)).stdout

    async def up() -> str:
        nonlocal agent, store
        await asyncio.to_thread(cp.start)
        await kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(crds()))
        for definition in crds():
            await kubectl("wait", "--for=condition=Established", f"crd/{definition['metadata']['name']}")

        def service_account() -> bool | None:
            return True if cp.request(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")[0] == 200 else None

        await asyncio.to_thread(cp.wait_for, "the default ServiceAccount", service_account, 60)
        agent = NodeAgent(
            cp, state_dir / "node", node_name="demo-node", namespaces=[NAMESPACE], backoff_scale=0.1, shutdown_grace=10
        )
        await asyncio.to_thread(agent.start)
        if not control.exists():
            control.create(1, settings=ServerSettings(tick_time=1000))
        control.start()
        await control.wait_serving(timeout=90)
        for n in (1, 2):
            start_replica(state_dir, n, cp.kubeconfig, agent.hosts_file)
        conn = connection.resolve(None, state_dir)
        data = await replicas_in_line(conn)
        store = examples.store = KubeStore(await api_client(str(cp.kubeconfig)), source="zkop-demo")
        return (
            f"API server {cp.server}, node {agent.node_name}, coordination ZooKeeper {conn.hosts}; "
            f"operator replicas {data['candidates']}, {data['leader']} leads"
        )

    async def apply() -> str:
        assert store is not None
        objs = []
        for f in sorted(EXAMPLES.glob("*.yaml")):
            for obj in load_yaml(f.read_text(), source=str(f)):
                if obj.kind in ("ZookeeperCluster", "Application"):
                    objs.append(
                        obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"namespace": NAMESPACE})})
                    )
        results = await apply_all(store, objs)
        await poll(lambda: examples.zkc_available(3), every=0.5)
        await poll(examples.app_ready, every=0.5)
        pods = sorted(agent.pids() if agent else {})
        return ", ".join(f"{o.kind.lower()}/{o.name} {what}" for o, what in results) + f"; Pods: {len(pods)} containers"

    async def start_traffic() -> str:
        port, instances, sample = await traffic.start(state_dir, f"{NAMESPACE}/counter", tour)
        where = ", ".join(sorted(f"{x.host}:{x.port}" for x in instances))
        return f"proxy on 127.0.0.1:{port} over the Pods {where}; a reply: {sample!r}"

    async def kill_instance() -> str:
        assert agent is not None
        app = await examples.app()
        victim = app.status.instances[0]
        pid = agent.pids()[f"{NAMESPACE}/{victim.name}/app"]
        os.kill(pid, signal.SIGKILL)
        await poll(lambda: examples.restarted(victim.name, victim.restarts))
        await poll(examples.app_ready)
        return f"killed the process of Pod {victim.name} (pid {pid}); the kubelet restarted it, serving again"

    async def delete_member_pod() -> str:
        zkc = await examples.zkc()
        victim = next(m for m in zkc.status.members if m.id != zkc.status.leader)
        name = f"orders-zk-{victim.id}"
        uid = cp.kubectl_json("get", "pod", name, "-n", NAMESPACE)["metadata"]["uid"]
        await kubectl("delete", "pod", name, "-n", NAMESPACE, "--wait=false")

        async def healed() -> bool:
            found = await asyncio.to_thread(cp.kubectl, "get", "pod", name, "-n", NAMESPACE, "-o", "yaml", check=False)
            pod = yaml.safe_load(found.stdout) if found.returncode == 0 else None
            members = {m.id: m for m in (await examples.zkc()).status.members}
            again = members.get(victim.id)
            back = pod is not None and pod["metadata"]["uid"] != uid and again is not None and again.ready
            return back and await examples.zkc_available(3)

        await poll(healed, every=0.5)
        return f"deleted Pod {name} (member {victim.id}); a new Pod has its id and volume, serving again"

    def start_standby(n: int) -> None:
        assert agent is not None
        start_replica(state_dir, n, cp.kubeconfig, agent.hosts_file)

    async def set_load(value: float) -> None:
        app = await examples.app()
        for endpoint in app.status.endpoints:
            host, _, port = endpoint.rpartition(":")
            await http(int(port), "POST", f"/load?value={value}", host=host)

    async def load_up() -> str:
        await set_load(30)
        app = await poll(lambda: examples.scaled(lambda d: d > 2))
        await poll(examples.app_ready, every=0.5)
        return f"load 30 per instance (target 10): desired {app.status.desired_replicas}, Pods started"

    async def load_down() -> str:
        await set_load(0)
        app = await poll(lambda: examples.scaled(lambda d: d == 2), every=0.5)
        await poll(examples.app_ready, every=0.5)
        return f"load 0: back to {app.status.desired_replicas} after the stabilisation window"

    try:
        await tour.step(
            "Test bed: a Kubernetes control plane, a node, a coordination ZooKeeper, 2 operator replicas", up, 300
        )
        await tour.step("Apply examples/: a ZookeeperCluster and the counter Application, as Pods", apply, 600)
        await tour.step("Send traffic through the proxy", start_traffic)
        await tour.step("Kill an application instance's process", kill_instance, 180)
        await tour.step("Delete a ZooKeeper member's Pod", delete_member_pod, 300)
        await tour.step("Scale orders-zk from 3 to 5 members", lambda: examples.scale_cluster(every=0.5), 600)
        await tour.step("Kill the operator leader", lambda: kill_operator_leader(state_dir, start_standby))
        await tour.step("Raise the load: autoscale up", load_up, 300)
        await tour.step("Lower the load: autoscale down", load_down, 300)
    finally:
        await traffic.close()
        if store is not None:
            await store.api.close()
        print_summary(tour, traffic)
        # The operators first (they act no more), then the node (its Pods), then the control plane.
        await asyncio.to_thread(stop_everything, state_dir, 5.0)
        if agent is not None:
            await asyncio.to_thread(agent.stop)
        await asyncio.to_thread(cp.stop)


def demo(state_dir: Path | None, keep: bool) -> None:
    if keep:
        raise ZkopError(
            "--keep is not available with --platform kubernetes",
            hint="the test bed (API server, node agent) lives in the demo's process and ends with it",
        )
    binaries()  # before anything is made: one line when the tools are not built
    own = state_dir is None
    root = Path(tempfile.mkdtemp(prefix="zkop-demo-kube-")) if state_dir is None else state_dir
    try:
        asyncio.run(run_demo(root))
    finally:
        stop_everything(root, grace=5)
        if own:
            shutil.rmtree(root, ignore_errors=True)
        console.print("cleaned up: every process the demo started is stopped")


__all__ = ["demo", "run_demo"]
