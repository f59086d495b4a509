"""The Application controller on the local platform.

Each reconcile observes the instances (processes, exit statuses, probes, the endpoints in
the registry), decides with the pure helpers in :mod:`.plan` and :mod:`.autoscale`, acts
under the leader's fence (platform actions in ``fence.hold(epoch)``, registry writes in
transactions that check the epoch), and writes status. It asks to run again within the
shortest probe period, so probes run periodically and an instance that fails or dies
leaves the registry within one period: the reconcile *is* the prober, level-triggered.

Decisions worth knowing:

- **Scaling writes status, not spec.** ``spec.replicas`` stays the user's (the starting
  point when autoscaling); the autoscaler's answer is ``status.desiredReplicas`` and that
  many instances run. ``zkop scale`` changes ``spec.replicas``, which autoscaling, when
  on, overrides within its bounds.
- **Memory, not ZooKeeper, holds probe results and autoscaling history.** A restarted (or
  new leader) operator adopts running instances; an instance whose endpoint is in the
  registry counts as ready until its next probe says otherwise (no flapping on failover),
  and the autoscaler records the current count as its first recommendation, so it waits a
  full stabilisation window before scaling down.
- **Load metrics**: each instance reports its load itself, as an ephemeral znode under
  ``services/<ns>/<app>/load/<instance>`` in the control-plane ZooKeeper. Instances get the
  address (``ZKOP_REGISTRY_HOSTS``) and their service's own registry identity
  (``ZKOP_REGISTRY_AUTH``, which may write only in that service's ``endpoints`` and
  ``load``), never the operator's credentials. The controller reads the loads of ready
  instances. CPU utilisation is measured by the controller (cgroup accounting or the
  process tree's CPU time) relative to ``resources.requests.cpu`` (one core when no
  request is given).
- **Bad input never loops wildly**: a start that cannot work (command not found, a fixed
  port in use, a missing workingDir) leaves the instance ``Failed`` with the reason and is
  retried with the crash-loop backoff, so fixing the machine fixes the application; a
  missing ``clusterRef`` starts nothing new and says so in the ``ClusterReady`` condition.
- ``ZK_HOSTS`` is read from the ZookeeperCluster's status when an instance starts; a later
  change of that connection string (the cluster was scaled) does not restart instances,
  a change of ``clusterRef`` does (it is part of the template hash).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field

from kazoo.exceptions import NoNodeError

from zkop.api import Application, Resource, ZookeeperCluster, resolve_kind
from zkop.api.application import InstanceStatus, Probe
from zkop.client.bridge import Op, TransactionFailed
from zkop.controllers.application import plan as P
from zkop.controllers.application.autoscale import MetricSamples, Recommendations, ScaleDecision
from zkop.discovery import registry
from zkop.discovery.instances import Instance
from zkop.platform.base import Resources
from zkop.platform.local import probes
from zkop.platform.local.instances import InstanceRecord, Limits, LocalInstances, StartFailed, env_name
from zkop.runtime.conditions import merge_conditions
from zkop.runtime.controller import Context, Controller, Periodic, Watch
from zkop.runtime.result import Request, Result
from zkop.store import Conflict, Fenced, NotFound
from zkop.store.store import now as store_now

log = logging.getLogger("zkop.application")

FINALIZER = "zkop.io/application"
HOST = "127.0.0.1"
DRAIN_SECONDS = 1.0  # between withdrawing an endpoint and stopping its instance
MAX_REQUEUE = 2.0  # look at least this often (death is noticed within it)
PENDING_EXTRA = "pending"
# The operator's own settings (credentials among them) are not passed on to instances.
PRIVATE_ENV_PREFIX = "ZKOP_"


def template_hash(app: Application) -> str:
    """What an instance is started from: a change rolls the instances."""
    spec = app.spec
    data = {
        "template": spec.template.model_dump(mode="json"),
        "resources": spec.resources.model_dump(mode="json"),
    }
    if spec.zookeeper is not None:
        data["zookeeper"] = spec.zookeeper.model_dump(mode="json")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class ProbeState:
    pid: int  # the run it is about: a restarted instance is probed afresh
    ready: bool = False
    successes: int = 0
    failures: int = 0
    last: float = 0.0


@dataclass
class AppMemory:
    readiness: dict[str, ProbeState] = field(default_factory=dict)
    liveness: dict[str, ProbeState] = field(default_factory=dict)
    recommendations: Recommendations | None = None
    cpu: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # name -> (pid, monotonic, cpu s)


class ApplicationReconciler:
    def __init__(self, instances: LocalInstances, *, registry_root: str) -> None:
        self.instances = instances
        self.root = registry_root
        self.memory: dict[str, AppMemory] = {}
        self.refs: dict[tuple[str, str], set[Request]] = {}  # ZookeeperCluster -> applications using it
        self._placing = asyncio.Lock()  # capacity check and placement, across applications
        # Applications whose registry folders and identity were made (or repaired) by this run.
        self._ensured: dict[str, registry.ServiceIdentity] = {}
        self._registry_closed = False  # world write rights taken from every registry folder (upgrades)

    def apps_using(self, obj: Resource) -> list[Request]:
        """Applications to look at again when a ZookeeperCluster changes."""
        return list(self.refs.get((obj.namespace, obj.name), ()))

    # ---- the reconcile ----------------------------------------------------------------

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        try:
            app = await ctx.store.get("Application", request.namespace, request.name)
        except NotFound:
            # Gone without its finalizer having run (removed by hand): nothing of it may stay.
            ns, name = request.namespace, request.name
            if await asyncio.to_thread(self.instances.app_dir(ns, name).exists) and await self._really_gone(
                ctx, request
            ):
                log.info("application %s is gone: stopping the instances it left", request.key)
                await self._withdraw(ctx, ns, name, await self._endpoints(ctx, ns, name))
                await asyncio.to_thread(self.instances.remove_app, ns, name, epoch=ctx.epoch)
                await self._remove_service(ctx, ns, name)
            self._forget(request)
            return Result()
        assert isinstance(app, Application)
        if app.metadata.deletion_timestamp is not None:
            await self._finalize(ctx, app)
            self._forget(request)
            return Result()
        if FINALIZER not in app.metadata.finalizers:
            meta = app.metadata.model_copy(update={"finalizers": [*app.metadata.finalizers, FINALIZER]})
            with contextlib.suppress(Conflict):
                await ctx.store.update(app.model_copy(update={"metadata": meta}))
            return Result(requeue_after=0.0)

        ns, name = app.namespace, app.name
        mem = self.memory.setdefault(request.key, AppMemory())
        await self._ensure_service(ctx, app)  # before any start: instances get its identity
        zk_hosts, ref_problem = await self._cluster_hosts(ctx, app)
        thash = template_hash(app)
        present = await self._endpoints(ctx, app.namespace, app.name)
        for broken in await asyncio.to_thread(self.instances.corrupt, ns, name):
            await ctx.event(app, "Warning", "CorruptInstanceRecord", f"{broken}: unreadable record; stopping it")
            await self._withdraw(ctx, app.namespace, app.name, {broken} & present)
            await asyncio.to_thread(self.instances.stop, ns, name, broken, epoch=ctx.epoch, remove=True)
        records = await asyncio.to_thread(self.instances.records, ns, name)

        # Observe and supervise: exits, restarts, placement of pending instances; then probe.
        for rec in records:
            await self._supervise(ctx, app, rec, zk_hosts, ref_problem)
        await self._probe_all(ctx, app, records, mem, present)

        # Decide: how many, and which to start and stop.
        desired, decision = await self._desired(ctx, app, records, mem)
        scaled = decision is not None and desired != self._current(app)
        if scaled and decision is not None:
            await ctx.event(app, "Normal", "Scaled", f"replicas {self._current(app)} -> {desired}: {decision.reason}")
        view = [P.Inst(r.name, r.index, r.template_hash == thash, self._ready(mem, r)) for r in records]
        rolling = app.spec.strategy.rolling_update
        step = P.rollout(view, desired, rolling.max_surge, rolling.max_unavailable)

        if step.stop:
            victims = [r for r in records if r.name in step.stop]
            await self._stop(ctx, app, victims, mem, present)
            records = [r for r in records if r.name not in step.stop]
        if step.start and ref_problem is None:
            records += await self._create(ctx, app, step.start, thash, zk_hosts)

        ready = [r for r in records if self._ready(mem, r)]
        await self._sync_endpoints(ctx, app, ready, present)
        await self._write_status(ctx, app, records, mem, desired, decision, scaled, zk_hosts, ref_problem)
        return Result(requeue_after=self._next_look(app, records))

    # ---- the ZooKeeper the instances use ------------------------------------------------

    async def _cluster_hosts(self, ctx: Context, app: Application) -> tuple[str, tuple[str, str] | None]:
        for users in self.refs.values():
            users.discard(Request(app.namespace, app.name))
        ref = app.spec.zookeeper.cluster_ref if app.spec.zookeeper else None
        if ref is None:
            return "", None
        ns = ref.namespace or app.namespace
        self.refs.setdefault((ns, ref.name), set()).add(Request(app.namespace, app.name))
        try:
            zkc = await ctx.store.get("ZookeeperCluster", ns, ref.name)
        except NotFound:
            return "", (
                "ClusterNotFound",
                f"zookeepercluster {ns}/{ref.name} (spec.zookeeper.clusterRef) does not exist; no instance is started",
            )
        assert isinstance(zkc, ZookeeperCluster)
        if not zkc.status.connection_string or not zkc.status.ready_replicas:
            return "", ("ClusterNotReady", f"zookeepercluster {ns}/{ref.name} is not serving yet; waiting")
        return zkc.status.connection_string, None

    # ---- instances ---------------------------------------------------------------------

    def _env(self, app: Application, rec: InstanceRecord, zk_hosts: str, ctx: Context) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_ENV_PREFIX)}
        # The operator's own Python comes first on PATH, so `python3 -m ...` finds zkop's libraries.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)])
        if app.spec.resources.limits.memory is not None:
            env.setdefault("MALLOC_ARENA_MAX", "2")  # RLIMIT_AS counts reserved arenas, not use
        for var in app.spec.template.env:
            env[var.name] = var.value
        env |= {
            "ZKOP_INSTANCE": rec.name,
            "ZKOP_NAMESPACE": app.namespace,
            "ZKOP_APP": app.name,
            "PORT": str(rec.port),
            **{env_name(n): str(p) for n, p in rec.ports.items()},
            "ZK_HOSTS": zk_hosts,
            # Where instances report their load, and as whom: the service's identity, which may
            # write only in its own registry folders (never the operator's credentials).
            "ZKOP_REGISTRY_HOSTS": ctx.store.client.hosts,
            "ZKOP_REGISTRY_ROOT": self.root,
        }
        identity = self._ensured.get(app.key)
        if identity is not None:
            env[registry.AUTH_ENV] = identity.credentials
        return env

    async def _supervise(
        self, ctx: Context, app: Application, rec: InstanceRecord, zk_hosts: str, ref_problem: tuple[str, str] | None
    ) -> None:
        ns, name = app.namespace, app.name
        now = time.time()
        if rec.pending is not None:
            if ref_problem is not None:
                return
            async with self._placing:
                committed = await asyncio.to_thread(self.instances.committed, (ns, name, rec.name))
                reason = P.unschedulable(rec.request, committed, self.instances.capacity())
                if reason is not None:
                    if reason != rec.pending:
                        rec.pending = reason
                        await self._save(ctx, app, rec)
                    return
                rec.pending = None
                await self._save(ctx, app, rec)
                await self._start(ctx, app, rec, zk_hosts)
            return
        running = await asyncio.to_thread(self.instances.running, ns, name, rec.name)
        if running is not None:
            if rec.crashes and now - running.started_at > P.STABLE_RUN:
                rec.crashes = 0  # it has run long enough: the next crash starts the backoff over
                await self._save(ctx, app, rec)
            return
        if self.instances.started(ns, name, rec.name) is not None:
            await self._note_exit(ctx, app, rec, now)
        if rec.next_start > now:
            return
        hosts = zk_hosts if ref_problem is None else rec.zk_hosts
        if ref_problem is not None and app.spec.zookeeper is not None and not hosts:
            return  # never started, and its ZooKeeper is unknown
        await self._start(ctx, app, rec, hosts)

    async def _save(self, ctx: Context, app: Application, rec: InstanceRecord) -> None:
        # In a thread: the fence's lock may be held for a while by another action.
        await asyncio.to_thread(self.instances.save, app.namespace, app.name, rec, epoch=ctx.epoch)

    async def _note_exit(self, ctx: Context, app: Application, rec: InstanceRecord, now: float) -> None:
        """The process of an instance's last run is gone: note how it ended, schedule a restart."""
        ns, name = app.namespace, app.name
        started = self.instances.started(ns, name, rec.name)
        rec.last_exit = await asyncio.to_thread(self.instances.exit_status, ns, name, rec.name)
        rec.last_run = max(0.0, now - started.started_at) if started else None
        rec.last_reason = rec.killed_for or ("Completed" if rec.last_exit == 0 else "Error")
        rec.killed_for = None
        rec.crashes += 1
        rec.restarts += 1
        delay = P.crash_backoff(rec.crashes)
        rec.next_start = now + delay
        await asyncio.to_thread(self.instances.forget_run, ns, name, rec.name, epoch=ctx.epoch)
        await self._save(ctx, app, rec)
        reason = "BackOff" if rec.crashes > 1 else "Restarting"
        ran = f" after {rec.last_run:.1f}s" if rec.last_run is not None else ""
        await ctx.event(
            app,
            "Warning",
            reason,
            f"{rec.name} exited ({P.describe_exit(rec.last_exit)}){ran}; restart in {delay:.0f}s",
        )

    async def _start(self, ctx: Context, app: Application, rec: InstanceRecord, zk_hosts: str) -> None:
        ns, name = app.namespace, app.name
        template = app.spec.template
        lim = app.spec.resources.limits
        limits = Limits(
            memory=int(lim.memory.bytes) if lim.memory is not None else None,
            cpu=float(lim.cpu.cores) if lim.cpu is not None else None,
        )
        try:
            await asyncio.to_thread(
                self.instances.start,
                ns,
                name,
                rec,
                [*template.command, *template.args],
                self._env(app, rec, zk_hosts, ctx),
                template.working_dir,
                limits,
                epoch=ctx.epoch,
            )
        except StartFailed as exc:
            rec.start_failures += 1
            rec.next_start = time.time() + P.crash_backoff(rec.start_failures)
            if rec.start_error != [exc.reason, exc.message]:
                await ctx.event(app, "Warning", exc.reason, f"{rec.name}: {exc.message}")
            rec.start_error = [exc.reason, exc.message]
        else:
            rec.start_error, rec.start_failures, rec.zk_hosts = None, 0, zk_hosts
        await self._save(ctx, app, rec)

    async def _create(
        self, ctx: Context, app: Application, count: int, thash: str, zk_hosts: str
    ) -> list[InstanceRecord]:
        ns, name = app.namespace, app.name
        req = app.spec.resources.requests
        request = Resources(
            float(req.cpu.cores) if req.cpu is not None else 0.0,
            int(req.memory.bytes) if req.memory is not None else 0,
        )
        ports = [(p.name, p.container_port or None) for p in app.spec.template.ports]
        created: list[InstanceRecord] = []
        async with self._placing:
            for _ in range(count):
                committed = await asyncio.to_thread(self.instances.committed)
                pending = P.unschedulable(request, committed, self.instances.capacity())
                rec = await asyncio.to_thread(
                    self.instances.create, ns, name, thash, ports, request, pending=pending, epoch=ctx.epoch
                )
                created.append(rec)
                if pending is not None:
                    await ctx.event(app, "Warning", "FailedScheduling", f"{rec.name}: {pending}")
                    continue
                await self._start(ctx, app, rec, zk_hosts)
        await ctx.event(app, "Normal", "Created", ", ".join(r.name for r in created))
        return created

    async def _stop(
        self, ctx: Context, app: Application, victims: list[InstanceRecord], mem: AppMemory, present: set[str]
    ) -> None:
        names = {r.name for r in victims}
        withdrawn = names & present
        await self._withdraw(ctx, app.namespace, app.name, withdrawn)
        present -= withdrawn
        if withdrawn:
            # Discovery caches drop the endpoints; calls in flight finish.
            await asyncio.sleep(DRAIN_SECONDS)
        for rec in victims:
            await asyncio.to_thread(
                self.instances.stop, app.namespace, app.name, rec.name, epoch=ctx.epoch, remove=True
            )
            for states in (mem.readiness, mem.liveness, mem.cpu):
                states.pop(rec.name, None)
        await ctx.event(app, "Normal", "InstancesStopped", ", ".join(sorted(names)))

    async def _finalize(self, ctx: Context, app: Application) -> None:
        """Deleting: withdraw every endpoint, stop every instance, then let the object go."""
        if FINALIZER not in app.metadata.finalizers:
            return
        present = await self._endpoints(ctx, app.namespace, app.name)
        await self._withdraw(ctx, app.namespace, app.name, present)
        await asyncio.to_thread(self.instances.remove_app, app.namespace, app.name, epoch=ctx.epoch)
        await self._remove_service(ctx, app.namespace, app.name)
        await ctx.event(app, "Normal", "Deleted", "instances stopped and endpoints withdrawn")
        meta = app.metadata.model_copy(update={"finalizers": [f for f in app.metadata.finalizers if f != FINALIZER]})
        with contextlib.suppress(Conflict, NotFound):
            await ctx.store.update(app.model_copy(update={"metadata": meta}))

    @staticmethod
    async def _really_gone(ctx: Context, request: Request) -> bool:
        """Asked again after a sync: a new session may sit on a follower that has not seen the
        Application created yet, and its instances must not be stopped for that."""
        await ctx.store.client.sync(ctx.store.ns_path(resolve_kind("Application"), request.namespace))
        try:
            await ctx.store.get("Application", request.namespace, request.name)
        except NotFound:
            return True
        return False

    async def _remove_service(self, ctx: Context, namespace: str, app: str) -> None:
        """The service's registry folders go with the application, with the loads its stopped
        instances reported, and then its registry identity. Left in place while anything else
        is registered there."""
        client = ctx.store.client
        load = registry.load_path(self.root, namespace, app)
        try:
            stale = await client.get_children(load)
        except NoNodeError:
            stale = []
        ops = [Op.delete(f"{load}/{n}") for n in stale]
        ops += [Op.delete(registry.endpoints_path(self.root, namespace, app)), Op.delete(load)]
        ops.append(Op.delete(registry.service_path(self.root, namespace, app)))
        with contextlib.suppress(TransactionFailed):  # gone already, or someone else registered
            await self._commit(ctx, ops)
        if await client.exists(registry.service_path(self.root, namespace, app)) is None:
            with contextlib.suppress(TransactionFailed):  # never made, or removed already
                await self._commit(ctx, [Op.delete(registry.credentials_path(self.root, namespace, app))])

    def _forget(self, request: Request) -> None:
        self.memory.pop(request.key, None)
        self._ensured.pop(request.key, None)
        for users in self.refs.values():
            users.discard(request)

    # ---- probes -----------------------------------------------------------------------

    @staticmethod
    def _ready(mem: AppMemory, rec: InstanceRecord) -> bool:
        state = mem.readiness.get(rec.name)
        return state is not None and state.ready

    @staticmethod
    def _port(rec: InstanceRecord, ref: int | str) -> int:
        if isinstance(ref, int):
            return ref
        return rec.ports.get(ref, rec.port)

    async def _check(self, ctx: Context, app: Application, probe: Probe, rec: InstanceRecord) -> bool:
        timeout = float(probe.timeout_seconds)
        if probe.tcp is not None:
            return await probes.tcp(HOST, self._port(rec, probe.tcp.port), timeout)
        if probe.http is not None:
            return await probes.http(HOST, self._port(rec, probe.http.port), probe.http.path, timeout)
        if probe.exec is not None:
            env = self._env(app, rec, rec.zk_hosts, ctx)
            return await probes.run_command(list(probe.exec.command), timeout, env, app.spec.template.working_dir)
        return True

    async def _probe_all(
        self, ctx: Context, app: Application, records: list[InstanceRecord], mem: AppMemory, present: set[str]
    ) -> None:
        ns, name = app.namespace, app.name
        spec = app.spec.probes

        async def one(rec: InstanceRecord) -> None:
            running = self.instances.running(ns, name, rec.name)
            if running is None:
                mem.readiness.pop(rec.name, None)
                mem.liveness.pop(rec.name, None)
                return
            now = time.time()
            rstate = mem.readiness.get(rec.name)
            if rstate is None or rstate.pid != running.pid:
                # First sight of this run. An operator that just took over trusts the registry
                # until the next probe: an endpoint there was ready a moment ago.
                adopted = rstate is None and rec.name in present and spec.readiness is not None
                rstate = mem.readiness[rec.name] = ProbeState(running.pid, ready=adopted)
            lstate = mem.liveness.get(rec.name)
            if lstate is None or lstate.pid != running.pid:
                lstate = mem.liveness[rec.name] = ProbeState(running.pid, ready=True)
            age = now - running.started_at
            if spec.readiness is None:
                rstate.ready = True
            elif self._due(spec.readiness, rstate, age, now):
                if await self._check(ctx, app, spec.readiness, rec):
                    rstate.successes, rstate.failures = rstate.successes + 1, 0
                    if rstate.successes >= spec.readiness.success_threshold:
                        rstate.ready = True
                else:
                    rstate.failures, rstate.successes = rstate.failures + 1, 0
                    if rstate.failures >= spec.readiness.failure_threshold:
                        rstate.ready = False
            if spec.liveness is not None and self._due(spec.liveness, lstate, age, now):
                if await self._check(ctx, app, spec.liveness, rec):
                    lstate.failures = 0
                else:
                    lstate.failures += 1
                    if lstate.failures >= spec.liveness.failure_threshold:
                        rstate.ready = lstate.ready = False
                        rec.killed_for = "LivenessProbeFailed"
                        await self._save(ctx, app, rec)
                        await ctx.event(
                            app,
                            "Warning",
                            "Unhealthy",
                            f"{rec.name}: liveness probe failed {lstate.failures} times; restarting",
                        )
                        await asyncio.to_thread(self.instances.kill, ns, name, rec.name, epoch=ctx.epoch)

        await asyncio.gather(*(one(r) for r in records if r.pending is None))

    @staticmethod
    def _due(probe: Probe, state: ProbeState, age: float, now: float) -> bool:
        if age < probe.initial_delay_seconds or now - state.last < probe.period_seconds * 0.9:
            return False
        state.last = now
        return True

    # ---- scaling ----------------------------------------------------------------------

    @staticmethod
    def _current(app: Application) -> int:
        if app.spec.autoscaling is not None and app.status.desired_replicas is not None:
            return app.status.desired_replicas
        return app.spec.replicas

    async def _desired(
        self, ctx: Context, app: Application, records: list[InstanceRecord], mem: AppMemory
    ) -> tuple[int, ScaleDecision | None]:
        auto = app.spec.autoscaling
        if auto is None:
            mem.recommendations = None
            return app.spec.replicas, None
        window = float(auto.scale_down_stabilization_seconds)
        if mem.recommendations is None:
            mem.recommendations = Recommendations(window=window)
        mem.recommendations.window = window
        ready = {r.name for r in records if self._ready(mem, r)}
        samples: list[MetricSamples] = []
        for metric in auto.metrics:
            if metric.type == "load":
                loads = await registry.read_loads(ctx.store.client, self.root, app.namespace, app.name)
                values = {k: v for k, v in loads.items() if k in ready}
                samples.append(MetricSamples(float(metric.target_value or 1.0), values, "load"))
            else:
                values = self._cpu(app, [r for r in records if r.name in ready], mem)
                samples.append(MetricSamples(float(metric.target_utilization or 80), values, "cpu"))
        decision = mem.recommendations.decide_many(
            current_replicas=self._current(app),
            metrics=samples,
            min_replicas=auto.min_replicas,
            max_replicas=auto.max_replicas,
            now=time.monotonic(),
        )
        return decision.desired, decision

    def _cpu(self, app: Application, records: list[InstanceRecord], mem: AppMemory) -> dict[str, float]:
        """CPU use of each ready instance since the last look, in percent of its CPU request."""
        request = app.spec.resources.requests.cpu
        cores = float(request.cores) if request is not None else 1.0
        out: dict[str, float] = {}
        for rec in records:
            running = self.instances.running(app.namespace, app.name, rec.name)
            used = self.instances.cpu_seconds(app.namespace, app.name, rec.name)
            if running is None or used is None:
                continue
            now = time.monotonic()
            prev = mem.cpu.get(rec.name)
            mem.cpu[rec.name] = (running.pid, now, used)
            if prev is not None and prev[0] == running.pid and now - prev[1] > 0.2:
                out[rec.name] = max(0.0, used - prev[2]) / (now - prev[1]) / cores * 100.0
        return out

    # ---- the registry -----------------------------------------------------------------

    async def _endpoints(self, ctx: Context, namespace: str, app: str) -> set[str]:
        """The endpoints in the registry now (observed each time, never remembered)."""
        try:
            return set(await ctx.store.client.get_children(registry.endpoints_path(self.root, namespace, app)))
        except NoNodeError:
            return set()

    async def _commit(self, ctx: Context, ops: list[Op]) -> None:
        fence = list(ctx.store.fence.ops)
        try:
            await ctx.store.client.commit([*fence, *ops])
        except TransactionFailed as exc:
            if exc.failed_op is not None and exc.failed_op in fence:
                raise Fenced("registry write refused: leadership check failed", hint="no longer the leader") from None
            raise

    async def _sync_endpoints(
        self, ctx: Context, app: Application, ready: list[InstanceRecord], present: set[str]
    ) -> None:
        client = ctx.store.client
        acl = list(ctx.store.acl or [])
        await self._ensure_service(ctx, app)
        base = registry.endpoints_path(self.root, app.namespace, app.name)
        want = {r.name: Instance(r.name, HOST, r.port, {"app": app.name, "namespace": app.namespace}) for r in ready}
        for inst_name, inst in want.items():
            path = f"{base}/{inst_name}"
            if inst_name not in present:
                try:
                    await self._commit(ctx, [Op.create(path, registry.encode(inst), acl=[*acl, registry.WORLD_READ])])
                except TransactionFailed:
                    self._ensured.pop(app.key, None)  # its folders may be gone: make them next time
                continue
            with contextlib.suppress(Exception):
                raw, _ = await client.get(path)
                if registry.decode(raw) != inst:  # e.g. its port was reallocated
                    await self._commit(ctx, [Op.set(path, registry.encode(inst))])
        # Everything else under the endpoints of an application zkop runs is stale.
        await self._withdraw(ctx, app.namespace, app.name, present - set(want))

    async def _ensure_service(self, ctx: Context, app: Application) -> registry.ServiceIdentity:
        """The service's registry folders (ACLs repaired) and identity, once per operator run."""
        identity = self._ensured.get(app.key)
        if identity is None:
            acl = list(ctx.store.acl or [])
            if not self._registry_closed:
                # Folders older versions left open, also of services zkop does not run.
                for problem in await registry.close_open_folders(ctx.store.client, self.root, acl):
                    log.warning("registry: %s", problem)
                self._registry_closed = True
            identity = await registry.ensure_service(ctx.store.client, self.root, app.namespace, app.name, acl)
            self._ensured[app.key] = identity
        return identity

    async def _withdraw(self, ctx: Context, namespace: str, app: str, names: set[str]) -> None:
        base = registry.endpoints_path(self.root, namespace, app)
        for n in sorted(names):
            with contextlib.suppress(TransactionFailed):
                await self._commit(ctx, [Op.delete(f"{base}/{n}")])

    # ---- status -----------------------------------------------------------------------

    def _instance_status(self, app: Application, rec: InstanceRecord, mem: AppMemory) -> InstanceStatus:
        ns, name = app.namespace, app.name
        running = self.instances.running(ns, name, rec.name) if rec.pending is None else None
        ready = running is not None and self._ready(mem, rec)
        backoff = P.crash_backoff(rec.start_failures if rec.start_error else rec.crashes)
        phase, reason, message = P.instance_phase(
            P.Observed(
                running=running is not None,
                ready=ready,
                pending=rec.pending,
                start_error=(rec.start_error[0], rec.start_error[1]) if rec.start_error else None,
                crashes=rec.crashes,
                last_exit=rec.last_exit,
                last_run=rec.last_run,
                last_reason=rec.last_reason,
                backoff=backoff,
                log_tail=self._log_tail(ns, name, rec) if rec.crashes else (),
            )
        )
        if phase == "Running" and (rec.enforced or rec.not_enforced):
            message = "limits: " + "; ".join([*rec.enforced, *rec.not_enforced])
        pid = (self.instances.app_pid(running) or running.pid) if running is not None else None
        return InstanceStatus(
            name=rec.name,
            phase=phase,
            ready=ready,
            pid=pid,
            port=rec.port,
            restarts=rec.restarts,
            exit_code=rec.last_exit if rec.last_exit is None or -255 <= rec.last_exit <= 255 else None,
            reason=reason,
            message=message,
        )

    def _log_tail(self, ns: str, name: str, rec: InstanceRecord) -> tuple[str, ...]:
        """The last lines the last run wrote (not the wrapper's own)."""
        lines: list[str] = []
        for line in self.instances.log_tail(ns, name, rec.name, 40):
            if line.startswith("--- zkop: starting"):
                lines = []
            elif not line.startswith("--- zkop:"):
                lines.append(line)
        return tuple(lines[-3:])

    async def _write_status(
        self,
        ctx: Context,
        app: Application,
        records: list[InstanceRecord],
        mem: AppMemory,
        desired: int,
        decision: ScaleDecision | None,
        scaled: bool,
        zk_hosts: str,
        ref_problem: tuple[str, str] | None,
    ) -> None:
        thash = template_hash(app)
        insts = await asyncio.to_thread(lambda: [self._instance_status(app, r, mem) for r in records])
        ready_n = sum(1 for i in insts if i.ready)
        updated = sum(1 for r in records if r.template_hash == thash)
        rolling = app.spec.strategy.rolling_update
        _, unavailable = P.limits(desired, rolling.max_surge, rolling.max_unavailable)
        pending = [i for i in insts if i.phase == "Pending"]
        troubled = [i for i in insts if i.phase in ("CrashLoopBackOff", "Failed")]
        conds: dict[str, tuple[bool, str, str]] = {}
        if ref_problem is not None:
            conds["ClusterReady"] = (False, *ref_problem)
        elif app.spec.zookeeper is not None:
            conds["ClusterReady"] = (True, "Serving", f"ZK_HOSTS={zk_hosts}")
        conds["Available"] = (
            ready_n >= max(0, desired - unavailable) and (ready_n > 0 or desired == 0),
            "MinimumReplicasAvailable" if ready_n >= desired - unavailable else "MinimumReplicasUnavailable",
            f"{ready_n}/{desired} ready",
        )
        converged = updated == len(records) == desired == ready_n
        conds["Progressing"] = (
            not converged,
            "Complete" if converged else ("RollingUpdate" if updated < len(records) else "Scaling"),
            f"{updated} updated, {len(records)} instances, {ready_n} ready, {desired} desired",
        )
        conds["Degraded"] = (
            bool(troubled),
            (troubled[0].reason or "Unhealthy") if troubled else "AsExpected",
            "; ".join(f"{i.name}: {i.phase}: {i.message}" for i in troubled)[:1000],
        )
        conds["Schedulable"] = (
            not pending,
            "InsufficientResources" if pending else "Fits",
            "; ".join(f"{i.name}: {i.message}" for i in pending)[:1000],
        )
        enforced = {e for r in records for e in r.enforced}
        not_enforced = {e for r in records for e in r.not_enforced}
        if enforced or not_enforced:
            conds["LimitsEnforced"] = (
                not not_enforced,
                "Enforced" if not not_enforced else "NotEnforced",
                "; ".join([*sorted(enforced), *sorted(not_enforced)]),
            )
        status = app.status.model_copy(
            update={
                "observed_generation": app.metadata.generation,
                "replicas": len(records),
                "ready_replicas": ready_n,
                "updated_replicas": updated,
                "instances": insts,
                "endpoints": [f"{HOST}:{i.port}" for i in insts if i.ready],
                "current_metric": decision.metric if decision is not None else None,
                "desired_replicas": desired,
                "last_scale_time": store_now() if scaled else app.status.last_scale_time,
                "conditions": merge_conditions(
                    app.status.conditions, conds, generation=app.metadata.generation, drop=APP_CONDITIONS
                ),
            }
        )
        if status != app.status:
            with contextlib.suppress(NotFound):
                await ctx.store.update_status(app.model_copy(update={"status": status}))

    @staticmethod
    def _next_look(app: Application, records: list[InstanceRecord]) -> float:
        periods = [float(p.period_seconds) for p in (app.spec.probes.readiness, app.spec.probes.liveness) if p]
        now = time.time()
        waits = [r.next_start - now for r in records if r.next_start > now]
        return max(0.2, min([*periods, *waits, MAX_REQUEUE]))


# Every condition type this controller sets; one it did not compute this time is stale.
APP_CONDITIONS = ("Available", "ClusterReady", "Degraded", "LimitsEnforced", "Progressing", "Schedulable")
LEFTOVER_PERIOD = 60.0  # how often instance directories without an Application are looked for


def controller(
    namespace: str | None,
    instances: LocalInstances,
    registry_root: str = "/zkop",
    *,
    leftover_period: float = LEFTOVER_PERIOD,
) -> Controller:
    """The Application controller for the local platform (``instances`` carries the platform's fence)."""
    reconciler = ApplicationReconciler(instances, registry_root=registry_root)
    return Controller(
        "application",
        "Application",
        reconciler,
        workers=2,
        namespace=namespace,
        resync_period=30.0,
        watches=[Watch("ZookeeperCluster", reconciler.apps_using)],
        # An Application removed behind the operator's back (its finalizer never ran) leaves
        # instances on disk; their key is reconciled, finds no object, and stops them.
        periodic=[Periodic(leftover_period, lambda: [Request(ns, app) for ns, app in instances.apps()])],
    )
