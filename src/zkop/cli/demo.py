"""``zkop demo``: the narrated tour on real processes, with measured timings
(``--platform kubernetes``: the same tour on the Kubernetes test bed, :mod:`.demo_kube`).

Control plane up (3 ZooKeeper members, 2 operator replicas), ``examples/`` applied (a
ZookeeperCluster and the counter Application), traffic through the proxy, then: kill an
instance, kill a ZooKeeper member, scale the cluster 3->5, kill the operator leader, raise
and lower the load. Every step is timed; a failed step says why; everything is cleaned up
unless ``--keep``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zkop.api import Application, ZookeeperCluster, load_yaml
from zkop.cli import connection
from zkop.cli.local import MEMBER_COLUMNS, member_rows, stop_everything
from zkop.cli.output import console, table
from zkop.client import connect
from zkop.discovery import AsyncServiceDiscovery, Instance, Proxy
from zkop.errors import ZkopError
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.platform.local.zookeeper import ensemble_name
from zkop.store import NotFound, Store
from zkop.store.apply import apply_all
from zkop.store.base import ResourceStore
from zkop.zk.config import ServerSettings

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@dataclass
class Traffic:
    ok: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (step, what went wrong)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sd: AsyncServiceDiscovery | None = None
    proxy: Proxy | None = None
    task: asyncio.Task[None] | None = None

    async def start(self, state_dir: Path, service: str, tour: Tour) -> tuple[int, list[Instance], str]:
        """A proxy over ``service``'s instances and GETs through it until :meth:`close`: the
        proxy's port, the instances it started with and a reply's body."""
        conn = connection.resolve(None, state_dir)
        self.sd = AsyncServiceDiscovery(conn.hosts, root=conn.root)
        await self.sd.start()
        provider = await self.sd.provider(service, strategy="least_connections")
        await provider.cache.wait_for(lambda xs: len(xs) >= 2)
        # The tour's GETs are idempotent: a request an instance took with it when killed is replayed.
        self.proxy = Proxy(provider, attempts=3, retry_empty_response=True)
        port = await self.proxy.start()
        self.task = asyncio.create_task(send_traffic(port, self, tour))
        await poll(lambda: asyncio.sleep(0, self.ok >= 10))
        sample = (await http(port, "GET", "/")).split(b"\r\n\r\n", 1)[-1].decode().strip()
        return port, provider.instances(), sample

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        if self.proxy is not None:
            await self.proxy.stop()
        if self.sd is not None:
            await self.sd.close()

    def summary(self) -> str:
        return f"{self.ok} ok, {self.failed} failed"

    def explained(self) -> list[str]:
        """One line per kind of failure, with the step it happened in."""
        counts: dict[tuple[str, str], int] = {}
        for failure in self.failures:
            counts[failure] = counts.get(failure, 0) + 1
        return [f"failed request x{n} during {step!r}: {why}" for (step, why), n in counts.items()]


@dataclass
class Tour:
    state_dir: Path
    timings: list[tuple[str, float, str]] = field(default_factory=list)
    current: str = ""

    async def step(self, title: str, action: Callable[[], Awaitable[str]], timeout: float = 120.0) -> None:
        console.rule(f"[bold]{title}")
        self.current = title
        started = time.monotonic()
        with console.status(title + " ..."):
            try:
                async with asyncio.timeout(timeout):
                    detail = await action()
            except TimeoutError:
                raise ZkopError(f"step {title!r} did not finish within {timeout:.0f}s") from None
        elapsed = time.monotonic() - started
        self.timings.append((title, elapsed, detail))
        console.print(f"[green]done[/] in {elapsed:.2f}s: {detail}")


def demo_config(state_dir: Path) -> Path:
    """A short session timeout so a killed operator leader is replaced within seconds."""
    path = state_dir / "demo-operator.yaml"
    path.write_text(
        "apiVersion: zkop.io/v1\nkind: OperatorConfig\nmetadata:\n  name: demo\n"
        "spec:\n  leaderElection:\n    leaderElect: true\n    sessionTimeoutSeconds: 4\n"
    )
    return path


async def poll(check: Callable[[], Awaitable[Any]], every: float = 0.1) -> Any:
    """Until ``check()`` returns something truthy (the caller bounds the time)."""
    while True:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every)


async def http(port: int, method: str, path: str, host: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"{method} {path} HTTP/1.0\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def send_traffic(port: int, traffic: Traffic, tour: Tour) -> None:
    """GET / through the proxy on ``port`` until ``traffic.stop``, counting what failed in which step."""
    for _ in range(100_000):  # bounded; stopped at the end of the tour
        if traffic.stop.is_set():
            return
        why = ""
        try:
            data = await asyncio.wait_for(http(port, "GET", "/"), 5)
            if not data.startswith(b"HTTP/1.1 200"):
                why = data.split(b"\r\n", 1)[0].decode(errors="replace") or "connection closed without a reply"
        except TimeoutError:
            why = "no reply within 5s"
        except OSError as exc:
            why = f"{type(exc).__name__}: {exc.strerror or exc}"
        if why:
            traffic.failed += 1
            traffic.failures.append((tour.current, why))
        else:
            traffic.ok += 1
        await asyncio.sleep(0.02)


def print_summary(tour: Tour, traffic: Traffic) -> None:
    if not tour.timings:
        return
    console.rule("[bold]Summary")
    rows = [(title, f"{secs:.2f}", detail) for title, secs, detail in tour.timings]
    proxy = traffic.proxy
    replays = f" ({proxy.stats.replays} replayed to another instance)" if proxy and proxy.stats.replays else ""
    rows.append(("Requests through the proxy", "", traffic.summary() + replays))
    console.print(table(("STEP", "SECONDS", "RESULT"), rows))
    for line in traffic.explained():
        console.print(line, soft_wrap=True)


@dataclass
class Examples:
    """The ZookeeperCluster ``orders-zk`` and the Application ``counter`` of ``examples/``, read
    from the tour's store (set once the control plane is up) as each step waits on them."""

    namespace: str = "default"
    store: ResourceStore | None = None

    async def zkc(self) -> ZookeeperCluster:
        assert self.store is not None
        obj = await self.store.get("ZookeeperCluster", self.namespace, "orders-zk")
        assert isinstance(obj, ZookeeperCluster)
        return obj

    async def app(self) -> Application:
        assert self.store is not None
        obj = await self.store.get("Application", self.namespace, "counter")
        assert isinstance(obj, Application)
        return obj

    async def zkc_available(self, n: int) -> bool:
        try:
            s = (await self.zkc()).status
        except NotFound:
            return False
        return s.phase == "Running" and s.ready_replicas == n and s.replicas == n

    async def app_ready(self, n: int | None = None) -> bool:
        try:
            a = await self.app()
        except NotFound:
            return False
        want = n if n is not None else (a.status.desired_replicas or a.spec.replicas)
        return a.status.ready_replicas == want and len(a.status.endpoints) == want and a.status.replicas == want

    async def restarted(self, name: str, restarts: int) -> bool:
        """Instance ``name`` restarted since it had ``restarts``, and ready again."""
        a = await self.app()
        return any(i.name == name and i.restarts > restarts and i.ready for i in a.status.instances)

    async def scaled(self, check: Callable[[int], bool]) -> Application | None:
        """The Application once its desired replicas pass ``check``."""
        app = await self.app()
        d = app.status.desired_replicas
        return app if d is not None and check(d) else None

    async def scale_cluster(self, every: float) -> str:
        """The tour's step: orders-zk from 3 to 5 members, polled every ``every`` seconds."""
        assert self.store is not None
        zkc = await self.zkc()
        await self.store.update(zkc.model_copy(update={"spec": zkc.spec.model_copy(update={"replicas": 5})}))
        await poll(lambda: self.zkc_available(5), every=every)
        zkc = await self.zkc()
        return f"5 members, config version {zkc.status.config_version}, members {[m.id for m in zkc.status.members]}"


async def replicas_in_line(conn: connect.Connection) -> dict[str, Any]:
    """The leader record once both operator replicas stand in the election."""
    from zkop.cli import operator as op

    async def both_in_line() -> Any:
        data = await op.wait_leader(conn, timeout=60)
        return data if data["replicas"] >= 2 else None

    data: dict[str, Any] = await poll(both_in_line)
    return data


async def kill_operator_leader(state_dir: Path, start_again: Callable[[int], object]) -> str:
    """The tour's step: kill -9 the leading replica, time until another leads, then
    ``start_again(n)`` brings replica ``n`` back as a standby."""
    from zkop.cli import operator as op

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
    start_again(n)
    return (
        f"{before['leader']} killed (epoch {before['epoch']}); "
        f"{after['leader']} leads in epoch {after['epoch']} after {took:.1f}s"
    )


async def run_demo(state_dir: Path) -> None:
    from zkop.cli import operator as op

    tour = Tour(state_dir)
    control = LocalEnsemble(state_dir, statedir.CONTROL_PLANE)
    store: Store | None = None
    examples = Examples()
    traffic = Traffic()

    async def up() -> str:
        nonlocal store
        if not control.exists():
            control.create(3, settings=ServerSettings(tick_time=1000))
        control.start()
        statuses = await control.wait_serving(timeout=90)
        console.print(table(MEMBER_COLUMNS, member_rows(statuses, control.name)))
        op.start_replicas(state_dir, 2, demo_config(state_dir))
        conn = connection.resolve(None, state_dir)
        data = await replicas_in_line(conn)
        client = conn.client()
        await client.start()
        store = examples.store = Store(client, root=conn.root, acl=conn.acl())
        return f"3 ZooKeeper members; operator replicas {data['candidates']}, {data['leader']} leads"

    async def apply() -> str:
        assert store is not None
        objs = []
        for f in sorted(EXAMPLES.glob("*.yaml")):
            objs += load_yaml(f.read_text(), source=str(f))
        results = await apply_all(store, objs)
        await poll(lambda: examples.zkc_available(3))
        await poll(examples.app_ready)
        return ", ".join(f"{o.kind.lower()}/{o.name} {what}" for o, what in results)

    async def start_traffic() -> str:
        port, instances, sample = await traffic.start(state_dir, "default/counter", tour)
        return f"proxy on 127.0.0.1:{port} over {len(instances)} endpoints; a reply: {sample!r}"

    async def kill_instance() -> str:
        app = await examples.app()
        victim = app.status.instances[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        await poll(lambda: examples.restarted(victim.name, victim.restarts))
        await poll(examples.app_ready)
        return f"killed {victim.name} (pid {victim.pid}); restarted and serving again"

    async def kill_member() -> str:
        zkc = await examples.zkc()
        ens = LocalEnsemble(state_dir, ensemble_name("default", "orders-zk"))
        victim = next(m for m in zkc.status.members if m.id != zkc.status.leader)
        ens.kill_member(victim.id)

        async def healed() -> bool:
            # The status must show it back: restarted (its count went up), ready, and quorum whole.
            members = {m.id: m for m in (await examples.zkc()).status.members}
            again = members.get(victim.id)
            back = again is not None and again.ready and again.restarts > victim.restarts
            return back and await examples.zkc_available(3)

        await poll(healed)
        return f"killed member {victim.id} of orders-zk (kill -9); restarted with its id and data, serving again"

    async def set_load(value: float) -> None:
        app = await examples.app()
        for inst in app.status.instances:
            if inst.port:
                await http(inst.port, "POST", f"/load?value={value}")

    async def load_up() -> str:
        await set_load(30)
        app = await poll(lambda: examples.scaled(lambda d: d > 2))
        await poll(examples.app_ready)
        return f"load 30 per instance (target 10): desired {app.status.desired_replicas}"

    async def load_down() -> str:
        await set_load(0)
        app = await poll(lambda: examples.scaled(lambda d: d == 2), every=0.5)
        await poll(examples.app_ready)
        return f"load 0: back to {app.status.desired_replicas} after the stabilisation window"

    try:
        await tour.step("Control plane: 3 ZooKeeper members and 2 operator replicas", up)
        await tour.step("Apply examples/: a ZookeeperCluster and the counter Application", apply)
        await tour.step("Send traffic through the proxy", start_traffic)
        await tour.step("Kill an application instance", kill_instance)
        await tour.step("Kill a ZooKeeper member of orders-zk", kill_member)
        await tour.step("Scale orders-zk from 3 to 5 members", lambda: examples.scale_cluster(every=0.1))
        await tour.step(
            "Kill the operator leader",
            # the killed one returns as a standby
            lambda: kill_operator_leader(state_dir, lambda n: op.start_replicas(state_dir, 2, demo_config(state_dir))),
        )
        await tour.step("Raise the load: autoscale up", load_up)
        await tour.step("Lower the load: autoscale down", load_down, timeout=180)
    finally:
        await traffic.close()
        if store is not None:
            await store.client.stop()
        print_summary(tour, traffic)


def demo(state_dir: Path | None, keep: bool, platform: str = "local") -> None:
    if platform == "kubernetes":
        from zkop.cli.demo_kube import demo as demo_on_kubernetes

        demo_on_kubernetes(state_dir, keep)
        return
    if platform != "local":
        raise ZkopError(f"--platform {platform!r} is not known", hint="use local or kubernetes")
    own = state_dir is None
    root = Path(tempfile.mkdtemp(prefix="zkop-demo-")) if state_dir is None else state_dir
    try:
        asyncio.run(run_demo(root))
    finally:
        if keep:
            console.print(
                f"left running (--keep); inspect with: ZKOP_STATE_DIR={root} zkop get zkc,app; "
                f"stop with: ZKOP_STATE_DIR={root} zkop down --purge --yes"
            )
        else:
            stop_everything(root, grace=5)
            if own:
                shutil.rmtree(root, ignore_errors=True)
            console.print("cleaned up: every process the demo started is stopped")
