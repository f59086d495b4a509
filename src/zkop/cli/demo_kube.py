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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from zkop.api import Application, Resource, ZookeeperCluster, load_yaml
from zkop.api.crd import crds
from zkop.cli import connection
from zkop.cli.demo import EXAMPLES, Tour, Traffic, http, poll, print_summary, send_traffic
from zkop.cli.local import stop_everything
from zkop.cli.output import console
from zkop.discovery import AsyncServiceDiscovery, Proxy
from zkop.errors import ZkopError
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.store import NotFound
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
    from zkop.cli import operator as op
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
    sd: AsyncServiceDiscovery | None = None
    proxy: Proxy | None = None
    traffic = Traffic()
    traffic_task: asyncio.Task[None] | None = None

    async def kubectl(*args: str, input: str | None = None) -> str:
        return (await asyncio.to_thread(cp.kubectl, *args, input=input)).stdout

    async def get(kind: str, name: str) -> Resource | None:
        assert store is not None
        try:
            return await store.get(kind, NAMESPACE, name)
        except NotFound:
            return None

    async def get_zkc() -> ZookeeperCluster:
        obj = await get("ZookeeperCluster", "orders-zk")
        assert isinstance(obj, ZookeeperCluster)
        return obj

    async def get_app() -> Application:
        obj = await get("Application", "counter")
        assert isinstance(obj, Application)
        return obj

    async def zkc_available(n: int) -> bool:
        obj = await get("ZookeeperCluster", "orders-zk")
        if not isinstance(obj, ZookeeperCluster):
            return False
        s = obj.status
        return s.phase == "Running" and s.ready_replicas == n and s.replicas == n

    async def app_ready(n: int | None = None) -> bool:
        a = await get("Application", "counter")
        if not isinstance(a, Application):
            return False
        want = n if n is not None else (a.status.desired_replicas or a.spec.replicas)
        return a.status.ready_replicas == want and len(a.status.endpoints) == want and a.status.replicas == want

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

        async def both_in_line() -> Any:
            data = await op.wait_leader(conn, timeout=60)
            return data if data["replicas"] >= 2 else None

        data = await poll(both_in_line)
        store = KubeStore(await api_client(str(cp.kubeconfig)), source="zkop-demo")
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
        await poll(lambda: zkc_available(3), every=0.5)
        await poll(app_ready, every=0.5)
        pods = sorted(agent.pids() if agent else {})
        return ", ".join(f"{o.kind.lower()}/{o.name} {what}" for o, what in results) + f"; Pods: {len(pods)} containers"

    async def start_traffic() -> str:
        nonlocal sd, proxy, traffic_task
        conn = connection.resolve(None, state_dir)
        sd = AsyncServiceDiscovery(conn.hosts, root=conn.root)
        await sd.start()
        provider = await sd.provider(f"{NAMESPACE}/counter", strategy="least_connections")
        await provider.cache.wait_for(lambda xs: len(xs) >= 2)
        # The tour's GETs are idempotent: a request an instance took with it when killed is replayed.
        proxy = Proxy(provider, attempts=3, retry_empty_response=True)
        port = await proxy.start()
        traffic_task = asyncio.create_task(send_traffic(port, traffic, tour))
        await poll(lambda: asyncio.sleep(0, traffic.ok >= 10))
        sample = (await http(port, "GET", "/")).split(b"\r\n\r\n", 1)[-1].decode().strip()
        where = ", ".join(sorted(f"{x.host}:{x.port}" for x in provider.instances()))
        return f"proxy on 127.0.0.1:{port} over the Pods {where}; a reply: {sample!r}"

    async def kill_instance() -> str:
        assert agent is not None
        app = await get_app()
        victim = app.status.instances[0]
        pid = agent.pids()[f"{NAMESPACE}/{victim.name}/app"]
        os.kill(pid, signal.SIGKILL)
        await poll(lambda: _restarted(victim.name, victim.restarts))
        await poll(app_ready)
        return f"killed the process of Pod {victim.name} (pid {pid}); the kubelet restarted it, serving again"

    async def _restarted(name: str, restarts: int) -> bool:
        a = await get_app()
        return any(i.name == name and i.restarts > restarts and i.ready for i in a.status.instances)

    async def delete_member_pod() -> str:
        zkc = await get_zkc()
        victim = next(m for m in zkc.status.members if m.id != zkc.status.leader)
        name = f"orders-zk-{victim.id}"
        uid = cp.kubectl_json("get", "pod", name, "-n", NAMESPACE)["metadata"]["uid"]
        await kubectl("delete", "pod", name, "-n", NAMESPACE, "--wait=false")

        async def healed() -> bool:
            found = await asyncio.to_thread(cp.kubectl, "get", "pod", name, "-n", NAMESPACE, "-o", "yaml", check=False)
            pod = yaml.safe_load(found.stdout) if found.returncode == 0 else None
            members = {m.id: m for m in (await get_zkc()).status.members}
            again = members.get(victim.id)
            back = pod is not None and pod["metadata"]["uid"] != uid and again is not None and again.ready
            return back and await zkc_available(3)

        await poll(healed, every=0.5)
        return f"deleted Pod {name} (member {victim.id}); a new Pod has its id and volume, serving again"

    async def scale_cluster() -> str:
        assert store is not None
        zkc = await get_zkc()
        await store.update(zkc.model_copy(update={"spec": zkc.spec.model_copy(update={"replicas": 5})}))
        await poll(lambda: zkc_available(5), every=0.5)
        zkc = await get_zkc()
        return f"5 members, config version {zkc.status.config_version}, members {[m.id for m in zkc.status.members]}"

    async def kill_operator_leader() -> str:
        assert agent is not None
        conn = connection.resolve(None, state_dir)
        before = await op.wait_leader(conn, timeout=30)
        n = int(str(before["leader"]).rsplit("-", 1)[1])
        rec = op.replica_unit(state_dir, n).running()
        if rec is None:
            raise ZkopError(f"leader {before['leader']} has no running process")
        os.kill(rec.pid, signal.SIGKILL)
        killed = time.monotonic()

        async def new_leader() -> Any:
            data = await op.wait_leader(conn, timeout=30)
            return data if data["leader"] != before["leader"] else None

        after = await poll(new_leader)
        took = time.monotonic() - killed
        start_replica(state_dir, n, cp.kubeconfig, agent.hosts_file)  # back as a standby
        return (
            f"{before['leader']} killed (epoch {before['epoch']}); "
            f"{after['leader']} leads in epoch {after['epoch']} after {took:.1f}s"
        )

    async def set_load(value: float) -> None:
        app = await get_app()
        for endpoint in app.status.endpoints:
            host, _, port = endpoint.rpartition(":")
            await http(int(port), "POST", f"/load?value={value}", host=host)

    async def _scaled(check: Callable[[int], bool]) -> Application | None:
        app = await get_app()
        d = app.status.desired_replicas
        return app if d is not None and check(d) else None

    async def load_up() -> str:
        await set_load(30)
        app = await poll(lambda: _scaled(lambda d: d > 2))
        await poll(app_ready, every=0.5)
        return f"load 30 per instance (target 10): desired {app.status.desired_replicas}, Pods started"

    async def load_down() -> str:
        await set_load(0)
        app = await poll(lambda: _scaled(lambda d: d == 2), every=0.5)
        await poll(app_ready, every=0.5)
        return f"load 0: back to {app.status.desired_replicas} after the stabilisation window"

    try:
        await tour.step(
            "Test bed: a Kubernetes control plane, a node, a coordination ZooKeeper, 2 operator replicas", up, 300
        )
        await tour.step("Apply examples/: a ZookeeperCluster and the counter Application, as Pods", apply, 600)
        await tour.step("Send traffic through the proxy", start_traffic)
        await tour.step("Kill an application instance's process", kill_instance, 180)
        await tour.step("Delete a ZooKeeper member's Pod", delete_member_pod, 300)
        await tour.step("Scale orders-zk from 3 to 5 members", scale_cluster, 600)
        await tour.step("Kill the operator leader", kill_operator_leader)
        await tour.step("Raise the load: autoscale up", load_up, 300)
        await tour.step("Lower the load: autoscale down", load_down, 300)
    finally:
        traffic.stop.set()
        if traffic_task is not None:
            await traffic_task
        if proxy is not None:
            await proxy.stop()
        if sd is not None:
            await sd.close()
        if store is not None:
            await store.api.close()
        print_summary(tour, traffic, proxy)
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
