"""The platform seam holds: both controllers run on in-memory platforms.

The platforms here keep their world in memory (no process, no ZooKeeper JVM for the members or
instances); only the store and the registry are a real ZooKeeper. Every decision the
controllers take is asserted step by step, through the events they record and what the
simulated world then holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from zkop.api import Application, ZookeeperCluster, parse_object
from zkop.controllers.application import controller as app_controller
from zkop.controllers.zookeepercluster import controller as zkc_controller
from zkop.coord.coordination import Coordination
from zkop.discovery import registry
from zkop.platform.base import (
    AppRef,
    ClusterObservation,
    ClusterRef,
    InstanceObservation,
    InstanceTemplate,
    MemberObservation,
    MemberTemplate,
    Resources,
)
from zkop.runtime.controller import Context
from zkop.runtime.result import Request
from zkop.store import NotFound, Store
from zkop.zk.config import MemberAddress
from zkop.zk.fourlw import ServerState

pytestmark = pytest.mark.integration


# ---- a ZooKeeper ensemble in memory --------------------------------------------------------


@dataclass
class SimMember:
    id: int
    running: bool = False
    data: bool = True
    restarts: int = 0
    started: int = 0
    started_at: float | None = None
    config_hash: str | None = None

    @property
    def address(self) -> MemberAddress:
        return MemberAddress(self.id, f"member-{self.id}", 2888, 3888, 2181)


@dataclass
class SimEnsemble:
    """Implements ZookeeperPlatform (members) and EnsembleAdmin (conf, reconfig)."""

    name: str = "memory"
    members: dict[int, SimMember] = field(default_factory=dict)
    config: list[int] = field(default_factory=list)
    version: int = 0
    next_id: int = 1
    removed: list[tuple[int, bool]] = field(default_factory=list)  # (id, purged)
    cluster_removed: bool = False

    def up(self) -> list[int]:
        return [i for i in self.config if (m := self.members.get(i)) is not None and m.running and m.data]

    def quorum(self) -> bool:
        return bool(self.config) and len(self.up()) > len(self.config) // 2

    def leader(self) -> int | None:
        return max(self.up(), default=None) if self.quorum() else None  # the newest serving participant leads

    def _observation(self, m: SimMember) -> MemberObservation:
        ready = m.running and m.data and self.quorum()
        mode = ("leader" if m.id == self.leader() else "follower") if ready else "unknown"
        state = ServerState(m.address.client_endpoint, reachable=ready, serving=ready, mode=mode, peer_state="")
        return MemberObservation(
            id=m.id,
            address=m.address,
            running=m.running,
            ready=ready,
            unresponsive=False,
            restarts=m.restarts,
            data_present=m.data,
            state=state,
            started_at=m.started_at,
            config_hash=m.config_hash,
        )

    async def observe(self, cluster: ClusterRef) -> ClusterObservation | None:
        if not self.members and not self.config:
            return None
        members = tuple(self._observation(m) for m in sorted(self.members.values(), key=lambda m: m.id))
        stored = tuple(self.members[i].address for i in self.config if i in self.members)
        return ClusterObservation(members, self.next_id, stored, self.version or None)

    async def reserve_address(
        self, cluster: ClusterRef, member_id: int, template: MemberTemplate, *, epoch: int | None
    ) -> MemberAddress:
        if member_id not in self.members:
            assert member_id >= self.next_id, "ids are never reused"
            self.members[member_id] = SimMember(member_id, running=False)
            self.next_id = member_id + 1
        return self.members[member_id].address

    async def ensure_member(
        self,
        cluster: ClusterRef,
        member_id: int,
        template: MemberTemplate,
        membership: Sequence[MemberAddress],
        *,
        epoch: int | None,
    ) -> None:
        m = self.members[member_id]
        if not self.config and membership:  # bootstrap: the first configuration
            self.config = sorted(a.id for a in membership)
            self.version = 0x100000000
        if not m.running:
            m.restarts += 1 if m.started else 0
            m.started += 1
            m.running, m.data = True, True
            m.started_at = time.time()
            m.config_hash = template.config_hash

    async def stop_member(self, cluster: ClusterRef, member_id: int, *, epoch: int | None) -> None:
        self.members[member_id].running = False

    async def remove_member(self, cluster: ClusterRef, member_id: int, *, purge_data: bool, epoch: int | None) -> None:
        self.members.pop(member_id)
        self.removed.append((member_id, purge_data))

    async def remove_cluster(self, cluster: ClusterRef, *, purge_data: bool, epoch: int | None) -> None:
        self.cluster_removed = True

    async def super_password(self, cluster: ClusterRef) -> str:
        return "secret"

    def subscribe(self, callback: Callable[[ClusterRef], None]) -> None:
        pass  # the test drives every look itself

    async def committed_config(self, obs: ClusterObservation) -> tuple[tuple[MemberAddress, ...], int | None]:
        return tuple(self.members[i].address for i in self.config if i in self.members), self.version or None

    async def reconfig(
        self,
        via: str,
        password: str,
        *,
        joining: MemberAddress | None,
        leaving: int | None,
        from_config: int,
        tls: object = None,
    ) -> None:
        assert password == "secret" and self.quorum() and int(via.split("-")[1].split(":")[0]) in self.config
        assert from_config == self.version, "reconfig from the configuration observed"
        if joining is not None:
            self.config = sorted({*self.config, joining.id})
        else:
            self.config = [i for i in self.config if i != leaving]
        self.version += 1


# ---- application instances in memory ---------------------------------------------------------


@dataclass
class SimInstance:
    name: str
    index: int
    revision: str
    phase: str = "Starting"
    ready: bool = False
    restarts: int = 0
    cpu: float | None = None


@dataclass
class SimInstances:
    """Implements InstancePlatform; ``tick()`` is the kubelet's work (start, become ready)."""

    name: str = "memory"
    apps_: dict[str, dict[str, SimInstance]] = field(default_factory=dict)
    templates: dict[str, InstanceTemplate] = field(default_factory=dict)
    counter: int = 0
    most: int = 0
    removed_apps: list[str] = field(default_factory=list)
    callbacks: list[Callable[[AppRef], None]] = field(default_factory=list)

    def of(self, app: AppRef) -> dict[str, SimInstance]:
        return self.apps_.setdefault(app.key, {})

    def tick(self) -> None:
        for insts in self.apps_.values():
            for inst in insts.values():
                inst.phase, inst.ready = "Running", True

    def crash(self, app: AppRef, name: str) -> None:
        inst = self.of(app)[name]
        inst.phase, inst.ready, inst.restarts = "Restarting", False, inst.restarts + 1
        for cb in self.callbacks:
            cb(app)

    async def observe(self, app: AppRef) -> list[InstanceObservation]:
        return [
            InstanceObservation(
                name=i.name,
                revision=i.revision,
                phase=i.phase,  # type: ignore[arg-type]
                ready=i.ready,
                restarts=i.restarts,
                host="10.0.0.1",
                ports={"http": 8000 + i.index},
                index=i.index,
                cpu_usage=i.cpu,
            )
            for i in sorted(self.of(app).values(), key=lambda i: i.index)
        ]

    async def set_template(self, app: AppRef, template: InstanceTemplate, *, epoch: int | None) -> None:
        self.templates[app.key] = template

    async def create_instances(
        self, app: AppRef, template: InstanceTemplate, count: int, *, epoch: int | None
    ) -> list[str]:
        names = []
        for _ in range(count):
            self.counter += 1
            name = f"{app.name}-{self.counter}"
            self.of(app)[name] = SimInstance(name, self.counter, template.revision)
            names.append(name)
        self.most = max(self.most, len(self.of(app)))
        return names

    async def stop_instance(self, app: AppRef, name: str, *, epoch: int | None) -> None:
        self.of(app).pop(name)

    async def remove_app(self, app: AppRef, *, epoch: int | None) -> None:
        self.apps_.pop(app.key, None)
        self.removed_apps.append(app.key)

    async def apps(self) -> list[AppRef]:
        return [AppRef(*key.split("/", 1)) for key in self.apps_]

    async def capacity(self) -> Resources:
        return Resources(64, 2**40)

    def subscribe(self, callback: Callable[[AppRef], None]) -> None:
        self.callbacks.append(callback)


# ---- driving the reconcilers ------------------------------------------------------------------


async def reasons(store: Store, kind: str, name: str) -> list[str]:
    return [e.reason for e in await store.list_events("default", kind=kind, name=name)]


async def run(reconcile: Callable[[], Any], store: Store, kind: str, name: str, until: Callable[[], bool]) -> list[str]:
    """Reconcile until ``until()`` holds; the events recorded meanwhile, in order."""
    before = len(await reasons(store, kind, name))
    for _ in range(60):
        await reconcile()
        if until():
            return (await reasons(store, kind, name))[before:]
    raise AssertionError(f"did not converge; events: {(await reasons(store, kind, name))[before:]}")


def zkc(replicas: int, tick: int = 2000) -> ZookeeperCluster:
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk"},
            "spec": {"replicas": replicas, "config": {"tickTime": tick}},
        }
    )
    assert isinstance(obj, ZookeeperCluster)
    return obj


async def test_the_zookeepercluster_controller_runs_on_an_in_memory_platform(store: Store) -> None:
    sim = SimEnsemble()
    reconciler = zkc_controller.ZookeeperClusterReconciler(sim, admin=sim, startup_grace=0.0)
    ctx = Context(store, epoch=None, identity="seam-test")
    request = Request("default", "zk")

    async def step() -> None:
        await reconciler.reconcile(request, ctx)

    async def status() -> Any:
        obj = await store.get("ZookeeperCluster", "default", "zk")
        assert isinstance(obj, ZookeeperCluster)
        return obj.status

    def serving(ids: list[int]) -> Callable[[], bool]:
        return lambda: sim.config == ids and all(sim.members[i].running for i in ids) and set(sim.members) == set(ids)

    # Create: three members at once, one configuration.
    await store.create(zkc(3))
    assert await run(step, store, "zkc", "zk", serving([1, 2, 3])) == ["Created"]
    await step()
    s = await status()
    assert (s.phase, s.ready_replicas, s.leader) == ("Running", 3, 3)

    async def change(**spec: Any) -> None:
        obj = await store.get("ZookeeperCluster", "default", "zk")
        await store.update(obj.model_copy(update={"spec": obj.spec.model_copy(update=spec)}))  # type: ignore[attr-defined]

    # Scale 3 -> 5: one member at a time, each started before it is reconfigured in.
    await change(replicas=5)
    assert await run(step, store, "zkc", "zk", serving([1, 2, 3, 4, 5])) == [
        "MemberStarting",
        "MemberAdded",
        "MemberStarting",
        "MemberAdded",
    ]
    # ... and back to 3: reconfigured out first, stopped after; followers, never the leader (5) first.
    await change(replicas=3)
    assert await run(step, store, "zkc", "zk", lambda: len(sim.config) == 3 and len(sim.members) == 3) == [
        "MemberRemoved",
        "MemberStopped",
        "MemberRemoved",
        "MemberStopped",
    ]
    assert sim.config == [1, 2, 5] and [r[0] for r in sim.removed] == [4, 3]

    # Heal: a dead member comes back with its id and data.
    sim.members[2].running = False
    assert await run(step, store, "zkc", "zk", lambda: sim.members[2].running) == ["Healed"]
    assert sim.members[2].restarts == 1

    # Lost data: removed from the configuration, replaced by a new id (6), never by 1 again.
    sim.members[1].running, sim.members[1].data = False, False
    assert await run(step, store, "zkc", "zk", serving([2, 5, 6])) == [
        "MemberRemoved",
        "MemberStopped",
        "MemberStarting",
        "MemberAdded",
    ]
    assert sim.next_id == 7

    # Roll on a configuration change: one at a time, the leader (6) last.
    await change(
        config=(await store.get("ZookeeperCluster", "default", "zk")).spec.config.model_copy(  # type: ignore[attr-defined]
            update={"tick_time": 3000}
        )
    )
    order: list[int] = []
    started = {i: m.started for i, m in sim.members.items()}

    def rolled() -> bool:
        for i, m in sim.members.items():
            if m.started != started[i] and i not in order:
                order.append(i)
        return len(order) == 3

    assert await run(step, store, "zkc", "zk", rolled) == ["RollingRestart"] * 3
    assert order == [2, 5, 6]

    # Delete: every member stopped (the leader last), then the cluster removed and the object gone.
    await store.delete("ZookeeperCluster", "default", "zk")

    def gone() -> bool:
        return sim.cluster_removed

    events = await run(step, store, "zkc", "zk", gone)
    assert events == ["MemberStopped", "MemberStopped", "MemberStopped", "Deleted"]
    with pytest.raises(NotFound):
        await store.get("ZookeeperCluster", "default", "zk")


def web(replicas: int, **spec: Any) -> Application:
    body: dict[str, Any] = {
        "replicas": replicas,
        "template": {"command": ["serve"], "ports": [{"name": "http"}]},
        "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    }
    body.update(spec)
    obj = parse_object({"apiVersion": "zkop.io/v1", "kind": "Application", "metadata": {"name": "web"}, "spec": body})
    assert isinstance(obj, Application)
    return obj


async def test_the_application_controller_runs_on_an_in_memory_platform(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_controller, "DRAIN_SECONDS", 0.0)
    sim = SimInstances()
    root = store.root
    ctrl = app_controller.controller(None, sim, root)
    reconciler = ctrl.reconciler
    coordination = Coordination(store.client, root, tuple(store.acl or ()))
    ctx = Context(store, epoch=None, identity="seam-test", coordination=coordination)
    ref = AppRef("default", "web")
    request = Request("default", "web")

    async def step() -> None:
        await reconciler.reconcile(request, ctx)

    async def endpoints() -> list[str]:
        return sorted(i.id for i in await registry.list_endpoints(store.client, root, "default", "web"))

    async def app() -> Application:
        obj = await store.get("Application", "default", "web")
        assert isinstance(obj, Application)
        return obj

    # Created, started by the platform, ready: published in the registry with the platform's address.
    await store.create(web(2))
    assert await run(step, store, "app", "web", lambda: len(sim.of(ref)) == 2) == ["Created"]
    sim.tick()
    await step()
    assert await endpoints() == ["web-1", "web-2"]
    listed = await registry.list_endpoints(store.client, root, "default", "web")
    assert {(i.host, i.port) for i in listed} == {("10.0.0.1", 8001), ("10.0.0.1", 8002)}
    assert (await app()).status.ready_replicas == 2
    template = sim.templates[ref.key]
    assert ("ZKOP_REGISTRY_ROOT", root) in template.env and template.command == ("serve",)

    # A crash: the endpoint goes at the next look (the platform asked for one), comes back when ready.
    sim.crash(ref, "web-1")
    await step()
    assert await endpoints() == ["web-2"]
    sim.tick()
    await step()
    assert await endpoints() == ["web-1", "web-2"]

    # A rollout: maxSurge 1, maxUnavailable 0 -- never more than 3, never fewer than 2 ready.
    obj = await app()
    new_template = obj.spec.template.model_copy(update={"args": ["--v2"]})
    await store.update(obj.model_copy(update={"spec": obj.spec.model_copy(update={"template": new_template})}))
    revision = app_controller.template_hash(await app())

    def rolled() -> bool:
        insts = sim.of(ref).values()
        assert sum(1 for i in insts if i.ready) >= 2
        sim.tick()
        return len(insts) == 2 and all(i.revision == revision for i in insts)

    events = await run(step, store, "app", "web", rolled)
    assert events.count("Created") == 2 and events.count("InstancesStopped") == 2 and sim.most == 3
    await step()
    assert await endpoints() == ["web-3", "web-4"]

    # Autoscaling on CPU: twice the target on both instances -> 4 (bounded by maxReplicas).
    obj = await app()
    auto = {"minReplicas": 2, "maxReplicas": 4, "metrics": [{"type": "cpu", "targetUtilization": 50}]}
    spec = web(2, autoscaling=auto, resources={"requests": {"cpu": "1"}}).spec
    await store.update(obj.model_copy(update={"spec": spec}))  # a new revision (requests): rolled too

    def busy_four() -> bool:
        sim.tick()
        for inst in sim.of(ref).values():
            inst.cpu = 1.0  # a full core each: 100% of the request, twice the target
        return len(sim.of(ref)) == 4 and all(i.ready for i in sim.of(ref).values())

    events = await run(step, store, "app", "web", busy_four)
    assert "Scaled" in events and (await app()).status.desired_replicas == 4

    # Delete: endpoints withdrawn, instances removed, the service's folders gone, the object gone.
    await store.delete("Application", "default", "web")
    await step()
    assert sim.removed_apps == [ref.key]
    assert await store.client.exists(registry.service_path(root, "default", "web")) is None
    with pytest.raises(NotFound):
        await app()
