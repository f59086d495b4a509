"""The Application controller on the local platform.

Each reconcile observes the instances (processes, probes), decides with the pure
helpers in :mod:`.plan` and :mod:`.autoscale`, acts under the leader's fence, publishes
the ready instances as endpoints, and writes status. Probe results and autoscaling
history live in memory: a restarted operator re-probes (instances are not ready until
probed) and waits a stabilisation window before scaling down.
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
from typing import Literal

import psutil

from zkop.api import Application, Condition, ZookeeperCluster
from zkop.api.application import InstanceStatus, Probe
from zkop.client.bridge import Op
from zkop.controllers.application import plan as P
from zkop.controllers.application.autoscale import MetricSamples, Recommendations
from zkop.discovery import registry
from zkop.discovery.instances import Instance
from zkop.platform.local import probes
from zkop.platform.local.instances import InstanceRecord, LocalInstances, StartFailed
from zkop.runtime.controller import Context, Controller
from zkop.runtime.result import Request, Result
from zkop.store import Conflict, NotFound
from zkop.store.store import now as store_now

log = logging.getLogger("zkop.application")

FINALIZER = "zkop.io/application"
HOST = "127.0.0.1"
DRAIN_SECONDS = 1.0  # between withdrawing an endpoint and stopping its instance


def template_hash(app: Application) -> str:
    data = app.spec.template.model_dump(mode="json") | {"resources": app.spec.resources.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class ProbeState:
    successes: int = 0
    failures: int = 0
    last: float = 0.0
    ready: bool = False


@dataclass
class AppMemory:
    readiness: dict[str, ProbeState] = field(default_factory=dict)
    liveness: dict[str, ProbeState] = field(default_factory=dict)
    recommendations: Recommendations | None = None
    cpu: dict[int, psutil.Process] = field(default_factory=dict)


class ApplicationReconciler:
    def __init__(self, instances: LocalInstances, *, registry_root: str) -> None:
        self.instances = instances
        self.root = registry_root
        self.memory: dict[str, AppMemory] = {}
        self._loads: dict[str, dict[str, float]] = {}  # reported loads of ready instances, per app

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        try:
            app = await ctx.store.get("Application", request.namespace, request.name)
        except NotFound:
            self.memory.pop(request.key, None)
            return Result()
        assert isinstance(app, Application)
        ns, name = app.namespace, app.name
        if app.metadata.deletion_timestamp is not None:
            await self._withdraw_all(ctx, app, {r.name for r in self.instances.records(ns, name)})
            await asyncio.to_thread(self.instances.remove_app, ns, name, epoch=ctx.epoch)
            meta = app.metadata.model_copy(
                update={"finalizers": [f for f in app.metadata.finalizers if f != FINALIZER]}
            )
            with contextlib.suppress(Conflict, NotFound):
                await ctx.store.update(app.model_copy(update={"metadata": meta}))
            self.memory.pop(request.key, None)
            return Result()
        if FINALIZER not in app.metadata.finalizers:
            meta = app.metadata.model_copy(update={"finalizers": [*app.metadata.finalizers, FINALIZER]})
            with contextlib.suppress(Conflict):
                await ctx.store.update(app.model_copy(update={"metadata": meta}))
            return Result(requeue_after=0.0)
        mem = self.memory.setdefault(request.key, AppMemory())

        # The ZooKeeper the instances use.
        zk_hosts, ref_problem = await self._cluster_hosts(ctx, app)
        if ref_problem is not None:
            await self._write_status(ctx, app, [], mem, None, None, conditions={"ClusterReady": (False, *ref_problem)})
            return Result(requeue_after=2.0)

        now = time.time()
        thash = template_hash(app)
        records = self.instances.records(ns, name)
        # Observe: processes, crashes, probes.
        for rec in records:
            if rec.failed_reason:
                continue
            running = self.instances.running(ns, name, rec.name)
            if running is None:
                await self._note_exit(ctx, app, rec, now)
                if rec.next_start <= now:
                    await self._start(ctx, app, rec, zk_hosts)
            elif rec.crashes and now - running.started_at > P.STABLE_RUN:
                rec.crashes = 0  # it has run long enough: the next crash starts the backoff over
                self.instances.save(ns, name, rec)
        await self._probe_all(ctx, app, records, mem, now)

        # Desired count: the autoscaler's, else the spec's.
        desired, metric, scaled = self._desired(app, records, mem, now)
        if scaled:
            await ctx.event(app, "Normal", "Scaled", f"desired replicas {app.status.desired_replicas} -> {desired}")
        view = [
            P.Inst(
                name=r.name,
                index=r.index,
                updated=r.template_hash == thash,
                ready=mem.readiness.get(r.name, ProbeState()).ready,
                alive=r.failed_reason is None,
            )
            for r in records
        ]
        failed = [r for r in records if r.failed_reason]
        step = P.rollout(
            [v for v in view if v.alive],
            desired,
            app.spec.strategy.rolling_update.max_surge,
            app.spec.strategy.rolling_update.max_unavailable,
        )
        fixed_port = next((p.container_port for p in app.spec.template.ports if p.container_port), None)
        pending_reason = self._capacity_problem(app, len(records) + step.start)
        for _ in range(step.start):
            if pending_reason:
                break
            rec = await asyncio.to_thread(self.instances.create, ns, name, thash, fixed_port, epoch=ctx.epoch)
            records.append(rec)
            await self._start(ctx, app, rec, zk_hosts)
        stopped = set(step.stop)
        # A failed instance of an old template is replaced like any old one.
        stopped |= {r.name for r in failed if r.template_hash != thash}
        if stopped:
            await self._withdraw_all(ctx, app, stopped)
            # Give discovery caches time to drop the endpoints and in-flight calls time to finish.
            await asyncio.sleep(DRAIN_SECONDS)
            for victim in stopped:
                await asyncio.to_thread(self.instances.stop, ns, name, victim, epoch=ctx.epoch, remove=True)
                mem.readiness.pop(victim, None)
                mem.liveness.pop(victim, None)
            records = [r for r in records if r.name not in stopped]
            await ctx.event(app, "Normal", "InstancesStopped", ", ".join(sorted(stopped)))

        # Endpoints: ready instances only.
        ready = [
            r
            for r in records
            if mem.readiness.get(r.name, ProbeState()).ready and self.instances.running(ns, name, r.name) is not None
        ]
        await self._sync_endpoints(ctx, app, ready, records)
        conditions = {"ClusterReady": (True, "Resolved", zk_hosts or "no clusterRef")}
        if pending_reason:
            conditions["Schedulable"] = (False, "InsufficientResources", pending_reason)
        else:
            conditions["Schedulable"] = (True, "Fits", "")
        await self._write_status(
            ctx,
            app,
            records,
            mem,
            desired,
            metric,
            conditions=conditions,
            scaled_at=store_now() if scaled else None,
            pending=pending_reason,
        )
        period = min([p.period_seconds for p in (app.spec.probes.readiness, app.spec.probes.liveness) if p] or [2])
        waits = [r.next_start - now for r in records if r.next_start > now and not r.failed_reason]
        return Result(requeue_after=max(0.2, min([float(period), *waits, 2.0])))

    # ---- pieces ---------------------------------------------------------------------

    async def _cluster_hosts(self, ctx: Context, app: Application) -> tuple[str, tuple[str, str] | None]:
        ref = app.spec.zookeeper.cluster_ref if app.spec.zookeeper else None
        if ref is None:
            return "", None
        ns = ref.namespace or app.namespace
        try:
            zkc = await ctx.store.get("ZookeeperCluster", ns, ref.name)
        except NotFound:
            return "", ("ClusterNotFound", f"zookeepercluster {ns}/{ref.name} does not exist; nothing started")
        assert isinstance(zkc, ZookeeperCluster)
        if not zkc.status.connection_string or not zkc.status.ready_replicas:
            return "", ("ClusterNotReady", f"zookeepercluster {ns}/{ref.name} is not serving yet")
        return zkc.status.connection_string, None

    def _env(self, app: Application, rec: InstanceRecord, zk_hosts: str, ctx: Context) -> dict[str, str]:
        env = dict(os.environ)
        # The operator's own Python comes first on PATH, so `python3 -m ...` finds zkop's libraries.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        if app.spec.resources.limits.memory is not None:
            env.setdefault("MALLOC_ARENA_MAX", "2")  # RLIMIT_AS counts reserved arenas, not use
        for var in app.spec.template.env:
            env[var.name] = var.value
        env |= {
            "ZKOP_INSTANCE": rec.name,
            "ZKOP_NAMESPACE": app.namespace,
            "ZKOP_APP": app.name,
            "PORT": str(rec.port),
            "ZK_HOSTS": zk_hosts,
            # Where instances report their load (anonymous, ephemeral znodes).
            "ZKOP_REGISTRY_HOSTS": ctx.store.client.hosts,
            "ZKOP_REGISTRY_ROOT": self.root,
        }
        return env

    async def _note_exit(self, ctx: Context, app: Application, rec: InstanceRecord, now: float) -> None:
        """An instance whose process is gone crashed (or was killed): schedule its restart with backoff."""
        ns, name = app.namespace, app.name
        unit = self.instances.unit(ns, name, rec.name)
        if unit.record() is None:
            return  # never started, or its exit was already noted
        rec.last_exit = self.instances.exit_status(ns, name, rec.name)
        rec.crashes += 1
        rec.restarts += 1
        delay = P.crash_backoff(rec.crashes)
        rec.next_start = now + delay
        unit.forget()
        self.instances.save(ns, name, rec)
        reason = "BackOff" if rec.crashes > 1 else "Restarting"
        await ctx.event(app, "Warning", reason, f"{rec.name} exited (code {rec.last_exit}); restart in {delay:.0f}s")

    async def _start(self, ctx: Context, app: Application, rec: InstanceRecord, zk_hosts: str) -> None:
        ns, name = app.namespace, app.name
        argv = [*app.spec.template.command, *app.spec.template.args]
        memory = app.spec.resources.limits.memory
        try:
            await asyncio.to_thread(
                self.instances.start,
                ns,
                name,
                rec,
                argv,
                self._env(app, rec, zk_hosts, ctx),
                app.spec.template.working_dir,
                int(memory.bytes) if memory else None,
                epoch=ctx.epoch,
            )
        except StartFailed as exc:
            rec.failed_reason, rec.failed_message = exc.reason, exc.message
            await ctx.event(app, "Warning", exc.reason, f"{rec.name}: {exc.message}")
        self.instances.save(ns, name, rec)

    async def _check(self, probe: Probe, app: Application, rec: InstanceRecord) -> bool:
        timeout = float(probe.timeout_seconds)
        if probe.tcp is not None:
            return await probes.tcp(HOST, self._port(app, rec, probe.tcp.port), timeout)
        if probe.http is not None:
            return await probes.http(HOST, self._port(app, rec, probe.http.port), probe.http.path, timeout)
        if probe.exec is not None:
            return await probes.run_command(list(probe.exec.command), timeout)
        return True

    @staticmethod
    def _port(app: Application, rec: InstanceRecord, ref: int | str) -> int:
        if isinstance(ref, int):
            return ref
        # A named port is the instance's port: one port per instance on the local platform.
        return rec.port

    async def _probe_all(
        self, ctx: Context, app: Application, records: list[InstanceRecord], mem: AppMemory, now: float
    ) -> None:
        ns, name = app.namespace, app.name

        async def one(rec: InstanceRecord) -> None:
            running = self.instances.running(ns, name, rec.name)
            rstate = mem.readiness.setdefault(rec.name, ProbeState())
            if running is None:
                rstate.ready, rstate.successes = False, 0
                return
            age = now - running.started_at
            for kind, probe, state in (
                ("readiness", app.spec.probes.readiness, rstate),
                ("liveness", app.spec.probes.liveness, mem.liveness.setdefault(rec.name, ProbeState())),
            ):
                if probe is None:
                    if kind == "readiness":
                        state.ready = True
                    continue
                if age < probe.initial_delay_seconds or now - state.last < probe.period_seconds * 0.9:
                    continue
                state.last = now
                if await self._check(probe, app, rec):
                    state.successes, state.failures = state.successes + 1, 0
                    if state.successes >= probe.success_threshold:
                        state.ready = True
                else:
                    state.failures, state.successes = state.failures + 1, 0
                    if state.failures >= probe.failure_threshold:
                        state.ready = False
                        if kind == "liveness":
                            await ctx.event(app, "Warning", "Unhealthy", f"{rec.name}: liveness failed; restarting")
                            await asyncio.to_thread(self.instances.kill, ns, name, rec.name, epoch=ctx.epoch)
                            state.failures = 0

        await asyncio.gather(*(one(r) for r in records if not r.failed_reason))

    def _desired(
        self, app: Application, records: list[InstanceRecord], mem: AppMemory, now: float
    ) -> tuple[int, float | None, bool]:
        auto = app.spec.autoscaling
        if auto is None:
            return app.spec.replicas, None, False
        current = app.status.desired_replicas or app.spec.replicas
        if mem.recommendations is None:
            mem.recommendations = Recommendations(window=float(auto.scale_down_stabilization_seconds))
        samples: list[MetricSamples] = []
        for metric in auto.metrics or []:
            if metric.type == "load":
                values = self._loads.get(app.key, {})
                target = float(metric.target_value or 1.0)
                samples.append(MetricSamples(target=target, samples=dict(values), name="load"))
            else:
                values = self._cpu(app, records, mem)
                samples.append(MetricSamples(target=float(metric.target_utilization or 80), samples=values, name="cpu"))
        decision = mem.recommendations.decide_many(
            current_replicas=current,
            metrics=samples,
            min_replicas=auto.min_replicas,
            max_replicas=auto.max_replicas,
            now=now,
        )
        return decision.desired, decision.metric, decision.desired != current

    def _cpu(self, app: Application, records: list[InstanceRecord], mem: AppMemory) -> dict[str, float]:
        request = app.spec.resources.requests.cpu
        cores = float(request.cores) if request else 1.0
        out = {}
        for rec in records:
            running = self.instances.running(app.namespace, app.name, rec.name)
            if running is None:
                continue
            proc = mem.cpu.get(running.pid)
            if proc is None:
                with contextlib.suppress(psutil.Error):
                    proc = psutil.Process(running.pid)
                    proc.cpu_percent(None)
                    mem.cpu[running.pid] = proc
                continue
            with contextlib.suppress(psutil.Error):
                out[rec.name] = proc.cpu_percent(None) / cores
        return out

    @staticmethod
    def _capacity_problem(app: Application, count: int) -> str | None:
        req = app.spec.resources.requests
        if req.cpu is not None and float(req.cpu.cores) * count > (os.cpu_count() or 1):
            return f"{count} instances request {float(req.cpu.cores) * count:g} CPUs; the machine has {os.cpu_count()}"
        if req.memory is not None and int(req.memory.bytes) * count > psutil.virtual_memory().total:
            return f"{count} instances request more memory than the machine has"
        return None

    async def _sync_endpoints(
        self, ctx: Context, app: Application, ready: list[InstanceRecord], records: list[InstanceRecord]
    ) -> None:
        client = ctx.store.client
        ns, name = app.namespace, app.name
        acl = ctx.store.acl or []
        await registry.ensure_service(client, self.root, ns, name, acl)
        base = registry.endpoints_path(self.root, ns, name)
        try:
            present = set(await client.get_children(base))
        except Exception:
            present = set()
        want = {r.name: Instance(r.name, HOST, r.port, {"app": name}) for r in ready}
        fence = list(ctx.store.fence.ops)
        for inst_name, inst in want.items():
            if inst_name not in present:
                await client.commit(
                    [*fence, Op.create(f"{base}/{inst_name}", registry.encode(inst), acl=[*acl, registry.WORLD_READ])]
                )
        operator_owned = {r.name for r in records} | present
        for gone in (present - set(want)) & operator_owned:
            with contextlib.suppress(Exception):
                await client.commit([*fence, Op.delete(f"{base}/{gone}")])
        loads = await registry.read_loads(client, self.root, ns, name)
        self._loads[app.key] = {k: v for k, v in loads.items() if k in want}

    async def _withdraw_all(self, ctx: Context, app: Application, names: set[str]) -> None:
        base = registry.endpoints_path(self.root, app.namespace, app.name)
        for n in names:
            with contextlib.suppress(Exception):
                await ctx.store.client.commit([*ctx.store.fence.ops, Op.delete(f"{base}/{n}")])

    async def _write_status(
        self,
        ctx: Context,
        app: Application,
        records: list[InstanceRecord],
        mem: AppMemory,
        desired: int | None,
        metric: float | None,
        *,
        conditions: dict[str, tuple[bool, str, str]],
        scaled_at: object = None,
        pending: str | None = None,
    ) -> None:
        ns, name = app.namespace, app.name
        thash = template_hash(app)
        insts = []
        for r in records:
            running = self.instances.running(ns, name, r.name)
            ready = running is not None and mem.readiness.get(r.name, ProbeState()).ready
            if r.failed_reason:
                phase, reason, message = "Failed", r.failed_reason, r.failed_message
            elif running is None and r.crashes > 1:
                tail = " | ".join(self.instances.log_tail(ns, name, r.name, 3))
                phase, reason, message = (
                    "CrashLoopBackOff",
                    "CrashLoopBackOff",
                    f"exit code {'unknown' if r.last_exit is None else r.last_exit}; last log lines: {tail}"[:500],
                )
            elif running is None:
                phase, reason, message = "Starting", None, None
            else:
                phase, reason, message = ("Running" if ready else "NotReady"), None, None
            insts.append(
                InstanceStatus(
                    name=r.name,
                    phase=phase,
                    ready=ready,
                    pid=running.pid if running else None,
                    port=r.port,
                    restarts=r.restarts,
                    exit_code=r.last_exit,
                    reason=reason,
                    message=message or (("; ".join(r.enforced)) if r.enforced else None),
                )
            )
        if pending:
            insts.append(
                InstanceStatus(name=f"{name}-pending", phase="Pending", reason="InsufficientResources", message=pending)
            )
        ready_n = sum(1 for i in insts if i.ready)
        target = desired if desired is not None else app.spec.replicas
        conds = {
            **conditions,
            "Available": (ready_n >= max(1, target) if target else True, "MinimumReady", f"{ready_n}/{target} ready"),
        }
        old = {c.type: c for c in app.status.conditions}
        new_conds = []
        for type_, (value, why, text) in sorted(conds.items()):
            flag: Literal["True", "False"] = "True" if value else "False"
            prev = old.get(type_)
            changed = prev is None or prev.status != flag
            new_conds.append(
                Condition(
                    type=type_,
                    status=flag,
                    reason=why,
                    message=text or None,
                    last_transition_time=store_now() if changed or prev is None else prev.last_transition_time,
                )
            )
        status = app.status.model_copy(
            update={
                "observed_generation": app.metadata.generation,
                "replicas": len(records),
                "ready_replicas": ready_n,
                "updated_replicas": sum(1 for r in records if r.template_hash == thash),
                "instances": insts,
                "endpoints": [f"{HOST}:{i.port}" for i in insts if i.ready],
                "current_metric": metric if metric is not None else app.status.current_metric,
                "desired_replicas": desired if desired is not None else app.status.desired_replicas,
                "last_scale_time": scaled_at or app.status.last_scale_time,
                "conditions": new_conds,
            }
        )
        if status != app.status:
            with contextlib.suppress(NotFound):
                await ctx.store.update_status(app.model_copy(update={"status": status}))


def controller(namespace: str | None, instances: LocalInstances, registry_root: str) -> Controller:
    return Controller(
        "application",
        "Application",
        ApplicationReconciler(instances, registry_root=registry_root),
        workers=2,
        namespace=namespace,
        resync_period=30.0,
    )
