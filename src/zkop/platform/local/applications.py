"""Applications on the local platform: the :class:`~zkop.platform.base.InstancePlatform`
contract over supervised local processes (:mod:`.instances`).

The platform does what a kubelet does, so the Application controller only decides rollout,
registry, autoscaling and status:

* **placement**: an instance whose requests do not fit the machine's free capacity (counting
  every application's placed instances) stays Pending and is placed when room appears;
* **supervision**: while this operator replica leads, :meth:`LocalInstancePlatform.run`
  looks at every instance every quarter second: an ended run is noted (exit code, how long it
  ran) and restarted after the crash-loop back-off; a failed start (command not found, a fixed
  port in use) is retried with the same back-off;
* **probes**: readiness and liveness (tcp, http, exec) at their periods; readiness is kept in
  the instance record (a new leader does not start from "not ready"), a failing liveness
  probe kills the run (and the back-off restarts it);
* **usage**: CPU (cgroup accounting or the process tree) sampled every second, memory (RSS).

Every change goes through the epoch fence; events (Restarting, BackOff, Unhealthy,
FailedScheduling, start failures) go to the sink the runtime gives :meth:`run`, and
subscribers hear which application changed, so its controller looks at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from zkop.api.application import Probe
from zkop.errors import Fenced
from zkop.platform.base import (
    AppRef,
    InstanceObservation,
    InstanceTemplate,
    LastExit,
    PlatformEvents,
    PortSpec,
    Resources,
)
from zkop.platform.local import policy, probes
from zkop.platform.local.cgroups import Cgroups, Limits
from zkop.platform.local.fence import EpochFence
from zkop.platform.local.instances import InstanceRecord, LocalInstances, StartFailed, env_name
from zkop.platform.local.process import PidRecord
from zkop.platform.notify import Subscribers, app_event

log = logging.getLogger("zkop.platform.local")

HOST = "127.0.0.1"
TICK = 0.25  # seconds between two looks of the supervisor
CPU_SAMPLE = 1.0  # seconds between two CPU samples of one instance
# The operator's own settings (credentials among them) are not passed on to instances.
PRIVATE_ENV_PREFIX = "ZKOP_"


# ---- templates on disk ----------------------------------------------------------------


def template_to_json(t: InstanceTemplate) -> dict[str, Any]:
    def probe(p: Probe | None) -> Any:
        return None if p is None else p.model_dump(mode="json", by_alias=True, exclude_none=True)

    return {
        "revision": t.revision,
        "command": list(t.command),
        "env": [list(kv) for kv in t.env],
        "workingDir": t.working_dir,
        "image": t.image,
        "ports": [[p.name, p.number] for p in t.ports],
        "requests": {"cpu": t.requests.cpu, "memory": t.requests.memory},
        "memoryLimit": t.memory_limit,
        "cpuLimit": t.cpu_limit,
        "readiness": probe(t.readiness),
        "liveness": probe(t.liveness),
        "secretEnv": sorted(t.secret_env),
    }


def template_from_json(data: Mapping[str, Any]) -> InstanceTemplate:
    def probe(raw: Any) -> Probe | None:
        return None if raw is None else Probe.model_validate(raw)

    req = data.get("requests") or {}
    return InstanceTemplate(
        revision=str(data["revision"]),
        command=tuple(str(a) for a in data["command"]),
        env=tuple((str(k), str(v)) for k, v in data.get("env", [])),
        working_dir=data.get("workingDir"),
        image=data.get("image"),
        ports=tuple(PortSpec(str(n), int(v) if v else None) for n, v in data.get("ports", [])),
        requests=Resources(float(req.get("cpu", 0.0)), int(req.get("memory", 0))),
        memory_limit=data.get("memoryLimit"),
        cpu_limit=data.get("cpuLimit"),
        readiness=probe(data.get("readiness")),
        liveness=probe(data.get("liveness")),
        secret_env=frozenset(str(k) for k in data.get("secretEnv", [])),
    )


# ---- what the supervisor keeps in memory (per run; the record keeps the rest) ------------


@dataclass
class _ProbeState:
    run: float  # create time of the process it is about: a restarted run is probed afresh
    ready: bool = False
    successes: int = 0
    failures: int = 0
    last: float = 0.0


@dataclass
class _Usage:
    run: float
    sampled: float  # monotonic
    cpu_seconds: float
    cores: float | None = None


@dataclass
class _Memory:
    readiness: dict[str, _ProbeState] = field(default_factory=dict)
    liveness: dict[str, _ProbeState] = field(default_factory=dict)
    usage: dict[str, _Usage] = field(default_factory=dict)

    def forget(self, name: str) -> None:
        for states in (self.readiness, self.liveness, self.usage):
            states.pop(name, None)


def _due(probe: Probe, state: _ProbeState, age: float, now: float) -> bool:
    if age < probe.initial_delay_seconds or now - state.last < probe.period_seconds * 0.9:
        return False
    state.last = now
    return True


class LocalInstancePlatform:
    name = "local"

    def __init__(self, state_dir: Path, fence: EpochFence, *, cgroups: Cgroups | None = None, host: str = HOST) -> None:
        self.instances = LocalInstances(state_dir, fence, cgroups)
        self.host = host
        self._events: PlatformEvents | None = None
        self._subscribers: Subscribers[AppRef] = Subscribers()
        self._memory: dict[str, _Memory] = {}
        self._placing = threading.Lock()  # capacity check and placement, across applications
        # One change at a time per application: the supervisor's look and the controller's
        # actions (a stopped instance must not be seen as crashed and started again).
        self._locks: dict[str, asyncio.Lock] = {}

    # ---- plumbing ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[AppRef], None]) -> None:
        """``callback(app)`` runs (on the event loop) when an instance of ``app`` changed."""
        self._subscribers.add(callback)

    async def _event(self, ref: AppRef, type_: str, reason: str, message: str) -> None:
        await app_event(self._events, ref, type_, reason, message)

    def _lock(self, ref: AppRef) -> asyncio.Lock:
        return self._locks.setdefault(ref.key, asyncio.Lock())

    def _mem(self, ref: AppRef) -> _Memory:
        return self._memory.setdefault(ref.key, _Memory())

    def _templates(self, ref: AppRef) -> Path:
        return self.instances.app_dir(ref.namespace, ref.name) / "templates"

    def _template(self, ref: AppRef, revision: str) -> InstanceTemplate | None:
        try:
            return template_from_json(json.loads((self._templates(ref) / f"{revision}.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _env(self, ref: AppRef, rec: InstanceRecord, template: InstanceTemplate) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_ENV_PREFIX)}
        # The operator's own Python comes first on PATH, so `python3 -m ...` finds zkop's libraries.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)])
        if template.memory_limit is not None:
            env.setdefault("MALLOC_ARENA_MAX", "2")  # RLIMIT_AS counts reserved arenas, not use
        env.update(dict(template.env))
        env |= {
            "ZKOP_INSTANCE": rec.name,
            "ZKOP_NAMESPACE": ref.namespace,
            "ZKOP_APP": ref.name,
            "HOST": self.host,  # where to listen: this machine's loopback (a Pod listens on all its addresses)
            "PORT": str(rec.port),
            **{env_name(n): str(p) for n, p in rec.ports.items()},
        }
        return env

    # ---- the contract -----------------------------------------------------------------

    async def capacity(self) -> Resources:
        return self.instances.capacity()

    async def apps(self) -> list[AppRef]:
        return [AppRef(ns, app) for ns, app in await asyncio.to_thread(self.instances.apps)]

    async def set_template(self, app: AppRef, template: InstanceTemplate, *, epoch: int | None) -> None:
        path = self._templates(app) / f"{template.revision}.json"
        raw = json.dumps(template_to_json(template), sort_keys=True)

        def work() -> None:
            with contextlib.suppress(OSError):
                if path.read_text() == raw:
                    return
            with self.instances.fence.hold(epoch):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(raw)
                tmp.replace(path)

        await asyncio.to_thread(work)

    async def observe(self, app: AppRef) -> list[InstanceObservation]:
        return await asyncio.to_thread(self._observe, app)

    def _observe(self, ref: AppRef) -> list[InstanceObservation]:
        mem = self._mem(ref)
        return [self._observation(ref, rec, mem) for rec in self.instances.records(ref.namespace, ref.name)]

    def _observation(self, ref: AppRef, rec: InstanceRecord, mem: _Memory) -> InstanceObservation:
        ns, name = ref.namespace, ref.name
        running = self.instances.running(ns, name, rec.name) if rec.pending is None else None
        ready = running is not None and rec.ready and rec.ready_run == running.create_time
        backoff = policy.crash_backoff(rec.start_failures if rec.start_error else rec.crashes)
        phase, reason, message = policy.instance_phase(
            policy.Observed(
                running=running is not None,
                ready=ready,
                pending=rec.pending,
                start_error=(rec.start_error[0], rec.start_error[1]) if rec.start_error else None,
                crashes=rec.crashes,
                last_exit=rec.last_exit,
                last_run=rec.last_run,
                last_reason=rec.last_reason,
                backoff=backoff,
                log_tail=self._log_tail(ref, rec) if rec.crashes else (),
            )
        )
        if phase == "Running" and (rec.enforced or rec.not_enforced):
            message = "limits: " + "; ".join([*rec.enforced, *rec.not_enforced])
        pid = (self.instances.app_pid(running) or running.pid) if running is not None else None
        usage = mem.usage.get(rec.name)
        return InstanceObservation(
            name=rec.name,
            revision=rec.template_hash,
            phase=phase,
            ready=ready,
            restarts=rec.restarts,
            host=self.host,
            ports=dict(rec.ports),
            index=rec.index,
            started_at=running.started_at if running is not None else None,
            last_exit=_last_exit(rec),
            reason=reason,
            message=message,
            cpu_usage=usage.cores
            if usage is not None and running is not None and usage.run == running.create_time
            else None,
            memory=_rss(running) if running is not None else None,
            limits_enforced=tuple(rec.enforced),
            limits_not_enforced=tuple(rec.not_enforced),
            process_id=str(pid) if pid is not None else None,
        )

    def _log_tail(self, ref: AppRef, rec: InstanceRecord) -> tuple[str, ...]:
        """The last lines the last run wrote (not the wrapper's own)."""
        lines: list[str] = []
        for line in self.instances.log_tail(ref.namespace, ref.name, rec.name, 40):
            if line.startswith("--- zkop: starting"):
                lines = []
            elif not line.startswith("--- zkop:"):
                lines.append(line)
        return tuple(lines[-3:])

    async def create_instances(
        self, app: AppRef, template: InstanceTemplate, count: int, *, epoch: int | None
    ) -> list[str]:
        await self.set_template(app, template, epoch=epoch)

        def work() -> list[tuple[InstanceRecord, str | None]]:
            out: list[tuple[InstanceRecord, str | None]] = []
            ports = [(p.name, p.number) for p in template.ports]
            with self._placing:
                for _ in range(count):
                    pending = policy.unschedulable(
                        template.requests, self.instances.committed(), self.instances.capacity()
                    )
                    rec = self.instances.create(
                        app.namespace,
                        app.name,
                        template.revision,
                        ports,
                        template.requests,
                        pending=pending,
                        epoch=epoch,
                    )
                    failure = None if pending is not None else self._start(app, rec, template, epoch)
                    out.append((rec, failure))
            return out

        async with self._lock(app):
            created = await asyncio.to_thread(work)
        for rec, failure in created:
            if rec.pending is not None:
                await self._event(app, "Warning", "FailedScheduling", f"{rec.name}: {rec.pending}")
            elif failure is not None:
                await self._event(
                    app, "Warning", failure, f"{rec.name}: {rec.start_error[1] if rec.start_error else ''}"
                )
        self._subscribers.notify(app)
        return [rec.name for rec, _ in created]

    def _start(self, ref: AppRef, rec: InstanceRecord, template: InstanceTemplate, epoch: int | None) -> str | None:
        """Start a run (in a thread); a start that cannot work is noted and retried with back-off.
        Returns the failure's reason when it failed for a new reason (to be reported once)."""
        failure = None
        try:
            self.instances.start(
                ref.namespace,
                ref.name,
                rec,
                [*template.command],
                self._env(ref, rec, template),
                template.working_dir,
                Limits(memory=template.memory_limit, cpu=template.cpu_limit),
                epoch=epoch,
            )
        except StartFailed as exc:
            rec.start_failures += 1
            rec.next_start = time.time() + policy.crash_backoff(rec.start_failures)
            if rec.start_error != [exc.reason, exc.message]:
                failure = exc.reason
            rec.start_error = [exc.reason, exc.message]
        else:
            rec.start_error, rec.start_failures = None, 0
            rec.ready, rec.ready_run = False, None
        self.instances.save(ref.namespace, ref.name, rec, epoch=epoch)
        return failure

    async def stop_instance(self, app: AppRef, name: str, *, epoch: int | None) -> None:
        async with self._lock(app):
            await asyncio.to_thread(self.instances.stop, app.namespace, app.name, name, epoch=epoch, remove=True)
            self._mem(app).forget(name)

    async def remove_app(self, app: AppRef, *, epoch: int | None) -> None:
        async with self._lock(app):
            await asyncio.to_thread(self.instances.remove_app, app.namespace, app.name, epoch=epoch)
            self._memory.pop(app.key, None)

    # ---- supervision (a kubelet's job) ------------------------------------------------

    async def run(self, epoch: int, events: PlatformEvents) -> None:
        """Supervise every instance on this machine until cancelled (while the caller leads)."""
        self._events = events
        try:
            while True:
                started = time.monotonic()
                try:
                    await self.supervise(epoch)
                except asyncio.CancelledError:
                    raise
                except Fenced:
                    raise
                except Exception:
                    log.exception("supervising instances failed")
                await asyncio.sleep(max(0.05, TICK - (time.monotonic() - started)))
        finally:
            self._events = None

    async def supervise(self, epoch: int | None) -> None:
        """One look at every instance of every application."""
        await asyncio.gather(*(self._supervise_app(ref, epoch) for ref in await self.apps()))

    async def _supervise_app(self, ref: AppRef, epoch: int | None) -> None:
        async with self._lock(ref):
            changed = await self._supervise_app_locked(ref, epoch)
        if changed:
            self._subscribers.notify(ref)

    async def _supervise_app_locked(self, ref: AppRef, epoch: int | None) -> bool:
        ns, name = ref.namespace, ref.name
        changed = False
        for broken in await asyncio.to_thread(self.instances.corrupt, ns, name):
            await self._event(ref, "Warning", "CorruptInstanceRecord", f"{broken}: unreadable record; stopping it")
            await asyncio.to_thread(self.instances.stop, ns, name, broken, epoch=epoch, remove=True)
            self._mem(ref).forget(broken)
            changed = True
        records = await asyncio.to_thread(self.instances.records, ns, name)
        results = await asyncio.gather(*(self._supervise_instance(ref, rec, epoch) for rec in records))
        return changed or any(results)

    async def _supervise_instance(self, ref: AppRef, rec: InstanceRecord, epoch: int | None) -> bool:
        """Place, note an exit, restart, probe, sample; True when something a user sees changed."""
        ns, name = ref.namespace, ref.name
        now = time.time()
        template = self._template(ref, rec.template_hash)
        if rec.pending is not None:
            if template is None:
                return False
            return await asyncio.to_thread(self._place, ref, rec, template, epoch)
        running = await asyncio.to_thread(self.instances.running, ns, name, rec.name)
        if running is not None:
            changed = False
            if rec.crashes and now - running.started_at > policy.STABLE_RUN:
                rec.crashes = 0  # it has run long enough: the next crash starts the back-off over
                await asyncio.to_thread(self.instances.save, ns, name, rec, epoch=epoch)
                changed = True
            if template is not None:
                changed = await self._probe(ref, rec, running, template, epoch) or changed
            await asyncio.to_thread(self._sample, ref, rec, running)
            return changed
        changed = False
        if self.instances.started(ns, name, rec.name) is not None:
            await self._note_exit(ref, rec, now, epoch)
            changed = True
        if rec.next_start > now:
            return changed
        if template is None:
            if rec.start_error is None or rec.start_error[0] != "TemplateGone":
                rec.start_error = ["TemplateGone", f"the template of revision {rec.template_hash} is gone"]
                await asyncio.to_thread(self.instances.save, ns, name, rec, epoch=epoch)
                return True
            return changed
        failure = await asyncio.to_thread(self._start, ref, rec, template, epoch)
        if failure is not None:
            await self._event(ref, "Warning", failure, f"{rec.name}: {rec.start_error[1] if rec.start_error else ''}")
        return True

    def _place(self, ref: AppRef, rec: InstanceRecord, template: InstanceTemplate, epoch: int | None) -> bool:
        with self._placing:
            committed = self.instances.committed((ref.namespace, ref.name, rec.name))
            reason = policy.unschedulable(rec.request, committed, self.instances.capacity())
            if reason is not None:
                if reason != rec.pending:
                    rec.pending = reason
                    self.instances.save(ref.namespace, ref.name, rec, epoch=epoch)
                    return True
                return False
            rec.pending = None
            self.instances.save(ref.namespace, ref.name, rec, epoch=epoch)
            self._start(ref, rec, template, epoch)
            return True

    async def _note_exit(self, ref: AppRef, rec: InstanceRecord, now: float, epoch: int | None) -> None:
        """The last run's process is gone: note how it ended, schedule the restart."""
        ns, name = ref.namespace, ref.name
        started = self.instances.started(ns, name, rec.name)
        rec.last_exit = await asyncio.to_thread(self.instances.exit_status, ns, name, rec.name)
        rec.last_run = max(0.0, now - started.started_at) if started else None
        rec.last_reason = rec.killed_for or ("Completed" if rec.last_exit == 0 else "Error")
        rec.killed_for = None
        rec.crashes += 1
        rec.restarts += 1
        rec.ready, rec.ready_run = False, None
        delay = policy.crash_backoff(rec.crashes)
        rec.next_start = now + delay
        await asyncio.to_thread(self.instances.forget_run, ns, name, rec.name, epoch=epoch)
        await asyncio.to_thread(self.instances.save, ns, name, rec, epoch=epoch)
        self._mem(ref).forget(rec.name)
        reason = "BackOff" if rec.crashes > 1 else "Restarting"
        ran = f" after {rec.last_run:.1f}s" if rec.last_run is not None else ""
        await self._event(
            ref,
            "Warning",
            reason,
            f"{rec.name} exited ({policy.describe_exit(rec.last_exit)}){ran}; restart in {delay:.0f}s",
        )

    async def _check(self, ref: AppRef, rec: InstanceRecord, probe: Probe, template: InstanceTemplate) -> bool:
        timeout = float(probe.timeout_seconds)

        def port(value: int | str) -> int:
            return value if isinstance(value, int) else rec.ports.get(value, rec.port)

        if probe.tcp is not None:
            return await probes.tcp(self.host, port(probe.tcp.port), timeout)
        if probe.http is not None:
            return await probes.http(self.host, port(probe.http.port), probe.http.path, timeout)
        if probe.exec is not None:
            env = self._env(ref, rec, template)
            return await probes.run_command(list(probe.exec.command), timeout, env, template.working_dir)
        return True

    async def _probe(
        self, ref: AppRef, rec: InstanceRecord, running: PidRecord, template: InstanceTemplate, epoch: int | None
    ) -> bool:
        mem = self._mem(ref)
        now = time.time()
        run = running.create_time
        rstate = mem.readiness.get(rec.name)
        if rstate is None or rstate.run != run:
            # Readiness of this run as recorded (by this or an earlier leader's supervisor).
            rstate = mem.readiness[rec.name] = _ProbeState(run, ready=rec.ready and rec.ready_run == run)
        lstate = mem.liveness.get(rec.name)
        if lstate is None or lstate.run != run:
            lstate = mem.liveness[rec.name] = _ProbeState(run, ready=True)
        age = now - running.started_at
        if template.readiness is None:
            rstate.ready = True
        elif _due(template.readiness, rstate, age, now):
            if await self._check(ref, rec, template.readiness, template):
                rstate.successes, rstate.failures = rstate.successes + 1, 0
                if rstate.successes >= template.readiness.success_threshold:
                    rstate.ready = True
            else:
                rstate.failures, rstate.successes = rstate.failures + 1, 0
                if rstate.failures >= template.readiness.failure_threshold:
                    rstate.ready = False
        changed = False
        if template.liveness is not None and _due(template.liveness, lstate, age, now):
            if await self._check(ref, rec, template.liveness, template):
                lstate.failures = 0
            else:
                lstate.failures += 1
                if lstate.failures >= template.liveness.failure_threshold:
                    rstate.ready = lstate.ready = False
                    rec.killed_for = "LivenessProbeFailed"
                    await self._event(
                        ref,
                        "Warning",
                        "Unhealthy",
                        f"{rec.name}: liveness probe failed {lstate.failures} times; restarting",
                    )
                    await asyncio.to_thread(self.instances.kill, ref.namespace, ref.name, rec.name, epoch=epoch)
                    changed = True
        if (rstate.ready, run) != (rec.ready, rec.ready_run) or changed:
            rec.ready, rec.ready_run = rstate.ready, run
            await asyncio.to_thread(self.instances.save, ref.namespace, ref.name, rec, epoch=epoch)
            return True
        return False

    def _sample(self, ref: AppRef, rec: InstanceRecord, running: PidRecord) -> None:
        """CPU use of the run since the last sample, in cores."""
        mem = self._mem(ref)
        prev = mem.usage.get(rec.name)
        now = time.monotonic()
        if prev is not None and prev.run == running.create_time and now - prev.sampled < CPU_SAMPLE:
            return
        used = self.instances.cpu_seconds(ref.namespace, ref.name, rec.name)
        if used is None:
            return
        sample = _Usage(running.create_time, now, used)
        if prev is not None and prev.run == running.create_time and now - prev.sampled > 0.2:
            sample.cores = max(0.0, used - prev.cpu_seconds) / (now - prev.sampled)
        elif prev is not None and prev.run == running.create_time:
            sample.cores = prev.cores
        mem.usage[rec.name] = sample


def _last_exit(rec: InstanceRecord) -> LastExit | None:
    if rec.last_exit is None and rec.last_reason is None:
        return None
    return LastExit(rec.last_reason or "Unknown", rec.last_exit)


def _rss(running: PidRecord) -> int | None:
    try:
        root = psutil.Process(running.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return None


__all__ = ["LocalInstancePlatform", "template_from_json", "template_to_json"]
