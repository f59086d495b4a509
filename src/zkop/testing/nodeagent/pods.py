"""Running a bound Pod: its sandbox (address, directories, hosts file), volumes, init containers
in order, containers with probes and restarts, status, and termination.

One :class:`PodWorker` per Pod (by uid) and one :class:`ContainerRunner` per container, all
tasks of the agent's event loop. The status is recomputed from the runners whenever something
changes and written (when it differs) through the status subresource.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from zkop.testing.nodeagent.envvars import ConfigError, build_env, expand
from zkop.testing.nodeagent.images import ImageRef, ImageRule, ImageTable, NoCommand, container_argv, search_path
from zkop.testing.nodeagent.kube import ApiError, Kube, Obj, api_path, meta
from zkop.testing.nodeagent.probes import Target, run_action
from zkop.testing.nodeagent.process import (
    ISOLATION_MOUNT,
    Launch,
    Mount,
    Proc,
    command_line,
    exec_argv,
    run_command,
)
from zkop.testing.nodeagent.status import (
    ContainerView,
    Running,
    State,
    Terminated,
    Waiting,
    container_status,
    pod_conditions,
    pod_phase,
    rfc3339,
    terminal_phase,
)
from zkop.testing.nodeagent.volumes import PodVolumes, VolumeNotReady

log = logging.getLogger("zkop.testing.nodeagent")

SHUTDOWN_REASON = "Terminated"
SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."


@dataclass
class BackOff:
    """The kubelet's crash-loop back-off: the first restart at once, then ``initial`` doubling to
    ``maximum``; a container that ran ``reset_after`` seconds starts over."""

    initial: float = 10.0
    maximum: float = 300.0
    reset_after: float = 600.0

    def scaled(self, factor: float) -> BackOff:
        return BackOff(self.initial * factor, self.maximum * factor, self.reset_after * factor)


class _Delay:
    def __init__(self, policy: BackOff) -> None:
        self.policy = policy
        self.current = 0.0

    def next(self, ran_for: float) -> float:
        if ran_for >= self.policy.reset_after:
            self.current = 0.0
        delay = self.current
        self.current = self.policy.initial if delay == 0 else min(delay * 2, self.policy.maximum)
        return delay


def _seconds(delay: float) -> str:
    return f"{delay:g}s" if delay < 60 else f"{int(delay // 60)}m{delay % 60:g}s"


class Host(Protocol):
    """What a Pod worker needs from its node agent."""

    node_name: str
    host_ip: str
    isolation: str
    root: Path
    kube: Kube
    images: ImageTable
    backoff: BackOff
    bind_shim: Path | None
    api_host: str
    api_port: int
    node_allocatable: dict[str, str]
    refresh_interval: float

    def allocate_ip(self, owner: str) -> str: ...
    def release_ip(self, address: str) -> None: ...
    async def fetch(self, kind: str, namespace: str, name: str) -> Obj | None: ...
    async def token(self, pod: Obj, account: str, audience: str | None, seconds: int) -> tuple[str, float]: ...
    async def claim_path(self, namespace: str, claim: str) -> Path: ...
    def event(
        self, obj: Obj, reason: str, message: str, kind: str = "Normal", field_path: str | None = None
    ) -> None: ...
    def track(self, proc: Proc) -> None: ...
    def untrack(self, proc: Proc) -> None: ...
    def sandbox_ready(self, worker: PodWorker) -> None: ...
    def sandbox_gone(self, worker: PodWorker) -> None: ...
    def worker_done(self, worker: PodWorker) -> None: ...


class ContainerRunner:
    """One container (init, sidecar or regular) of a Pod: start, probe, restart, stop."""

    def __init__(self, worker: PodWorker, spec: Obj, *, init: bool, index: int) -> None:
        self.worker = worker
        self.spec = spec
        self.init = init
        self.index = index
        self.name: str = spec.get("name", "")
        self.image: str = spec.get("image", "")
        self.sidecar = init and spec.get("restartPolicy") == "Always"
        first = "PodInitializing" if (init or worker.init_specs) else "ContainerCreating"
        self.state: State = Waiting(first)
        self.last: Terminated | None = None
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.started_event = asyncio.Event()
        self.proc: Proc | None = None
        self.container_id: str | None = None
        self.rule: ImageRule | None = None
        self.env: dict[str, str] = {}
        self.stopping = False
        self.wake = asyncio.Event()
        self.kill_reason: str | None = None
        self.delay = _Delay(worker.host.backoff)
        self.pull_delay = _Delay(worker.host.backoff)
        self._problem: tuple[str, str] | None = None
        self._kills: set[asyncio.Task[None]] = set()

    @property
    def field_path(self) -> str:
        return f"spec.{'initContainers' if self.init else 'containers'}{{{self.name}}}"

    def view(self) -> ContainerView:
        return ContainerView(
            name=self.name,
            image=self.image,
            image_id=f"zkop-nodeagent://{self.rule.label}" if self.rule else "",
            state=self.state,
            container_id=self.container_id,
            last=self.last,
            restart_count=self.restart_count,
            ready=self.ready,
            started=self.started,
        )

    def _set(self, state: State) -> None:
        self.state = state
        self.worker.dirty()

    def _event(self, reason: str, message: str, kind: str = "Normal") -> None:
        self.worker.host.event(self.worker.pod, reason, message, kind, self.field_path)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, woken early by stop()."""
        if seconds <= 0 or self.stopping:
            return
        self.wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    # ---- preparing a launch

    def _waiting(self, reason: str, message: str, kind: str = "Warning", event: str = "Failed") -> None:
        if self._problem != (reason, message):
            self._event(event, message, kind)
        self._problem = (reason, message)
        self._set(Waiting(reason, message))

    async def _prepare(self) -> Launch | Terminated | None:
        """The launch, or a start failure (StartError), or None after setting a waiting state."""
        w = self.worker
        host = w.host
        rule = host.images.find(self.image)
        if rule is None:
            ref = ImageRef.parse(self.image)
            message = (
                f'image "{self.image}" is not in the zkop node agent\'s image table (it runs images as local '
                f"commands and pulls nothing): add an ImageRule matching {ref.name!r}"
            )
            self._waiting("ErrImagePull", message)
            await self._sleep(max(1.0, host.backoff.initial / 10))
            if self.stopping:
                return None
            delay = max(self.pull_delay.next(0), host.backoff.initial)
            self._waiting("ImagePullBackOff", f'Back-off pulling image "{self.image}": {message}', "Normal", "BackOff")
            await self._sleep(delay)
            return None
        self.rule = rule
        base: dict[str, str] = {
            "PATH": search_path(rule, rule.env.get("PATH")),
            "HOSTNAME": w.hostname,
            "HOME": "/root" if os.geteuid() == 0 else os.environ.get("HOME", "/"),
            **{k: v for k, v in rule.env.items() if k != "PATH"},
            "KUBERNETES_SERVICE_HOST": host.api_host,
            "KUBERNETES_SERVICE_PORT": str(host.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(host.api_port),
            "KUBERNETES_PORT": f"tcp://{host.api_host}:{host.api_port}",
        }
        try:
            env = await build_env(
                w.pod,
                self.spec,
                host.fetch,
                base=base,
                pod_ip=w.ip,
                host_ip=host.host_ip,
                node_allocatable=host.node_allocatable,
            )
        except (ConfigError, ApiError) as e:
            self._waiting("CreateContainerConfigError", str(e))
            await self._sleep(max(1.0, host.backoff.initial / 5))
            return None
        assert w.ip is not None
        env.setdefault("POD_IP", w.ip)
        env["ZKOP_POD_IP"] = w.ip
        env["ZKOP_HOSTS_FILE"] = str(w.hosts_path)
        if host.bind_shim is not None:
            env["LD_PRELOAD"] = " ".join(filter(None, [str(host.bind_shim), env.get("LD_PRELOAD")]))
        try:
            argv = container_argv(
                rule,
                [expand(str(a), env) for a in self.spec.get("command") or []],
                [expand(str(a), env) for a in self.spec.get("args") or []],
            )
            mounts = w.volumes.mounts(self.spec, env)
        except (NoCommand, VolumeNotReady) as e:
            self._waiting("CreateContainerError", str(e))
            await self._sleep(max(1.0, host.backoff.initial / 5))
            return None
        self._problem = None
        self.env = env
        run_dir = w.dir / "containers" / self.name
        scratch = run_dir / f"run-{self.restart_count}"
        scratch.mkdir(parents=True, exist_ok=True)
        for old in run_dir.glob("run-*") if run_dir.is_dir() else []:
            if old != scratch:
                shutil.rmtree(old, ignore_errors=True)
        covered = {m.target.rstrip("/") for m in mounts}
        image_dirs: list[Mount] = []
        for d in rule.dirs:
            if d.rstrip("/") not in covered:
                fresh = scratch / "image" / d.strip("/")
                fresh.mkdir(parents=True, exist_ok=True)
                image_dirs.append(Mount(fresh, d))
        if host.isolation != ISOLATION_MOUNT:
            env["ZKOP_POD_ROOT"] = str(w.rootfs(self.name))
            self._link_mounts(w.rootfs(self.name), [*image_dirs, *mounts])
        program = argv[0]
        if "/" not in program and shutil.which(program, path=env["PATH"]) is None:
            now = time.time()
            return Terminated(
                128, "StartError", now, now, None, f'exec: "{program}": executable file not found in $PATH'
            )
        return Launch(
            argv=argv,
            env=env,
            log=w.log_dir / self.name / f"{self.restart_count}.log",
            root=w.rootfs(self.name) if host.isolation != ISOLATION_MOUNT else run_dir,
            hostname=w.hostname,
            workdir=self.spec.get("workingDir"),
            mounts=[*image_dirs, *mounts],
            hosts_file=w.hosts_path,
        )

    @staticmethod
    def _link_mounts(root: Path, mounts: list[Mount]) -> None:
        """Without mount namespaces: each mount is a symlink at ``root/<mountPath>``."""
        root.mkdir(parents=True, exist_ok=True)
        for m in sorted(mounts, key=lambda m: m.target.count("/")):
            link = root / m.target.strip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.is_dir():
                shutil.rmtree(link)
            link.symlink_to(m.source)

    # ---- running

    def _restart(self, policy: str, code: int) -> bool:
        if self.sidecar:
            return True
        if self.init:
            return code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    async def run(self, policy: str) -> int | None:
        """Run until the container is done for good (per ``policy``); its last exit code, or None when stopped."""
        while not self.stopping:
            prepared = await self._prepare()
            if self.stopping:
                return None
            if prepared is None:
                continue
            if isinstance(prepared, Terminated):
                outcome = prepared
                self._event("Failed", f"Error: {prepared.message}", "Warning")
            else:
                outcome = await self._run_once(prepared)
            if self.stopping:
                self._set(outcome)
                return None
            if not self._restart(policy, outcome.exit_code):
                self._set(outcome)
                return outcome.exit_code
            ran = outcome.finished_at - (outcome.started_at or outcome.finished_at)
            delay = self.delay.next(ran)
            self.last = outcome
            w = self.worker
            if delay > 0:
                pod = f"{w.name}_{w.namespace}({w.uid})"
                self._set(
                    Waiting(
                        "CrashLoopBackOff",
                        f"back-off {_seconds(delay)} restarting failed container={self.name} pod={pod}",
                    )
                )
                self._event("BackOff", f"Back-off restarting failed container {self.name} in pod {pod}", "Warning")
            else:
                self._set(Waiting("ContainerCreating"))
            await self._sleep(delay)
            if not self.stopping:
                self.restart_count += 1  # counts the instances started after the first, as the kubelet does
        return None

    async def _run_once(self, launch: Launch) -> Terminated:
        w = self.worker
        host = w.host
        argv, cwd = command_line(launch, host.isolation)
        if self.stopping:
            now = time.time()
            return Terminated(137, "Error", now, now)
        self.container_id = f"zkop://{uuid.uuid4().hex}"
        try:
            proc = Proc.spawn(argv, launch.env, cwd, launch.log)
        except OSError as e:
            now = time.time()
            return Terminated(128, "StartError", now, now, self.container_id, str(e))
        self.proc = proc
        self.kill_reason = None
        host.track(proc)
        self._event("Created", f"Created container {self.name}")
        self._event("Started", f"Started container {self.name}")
        probes = self.spec
        self.started = "startupProbe" not in probes
        if self.started:
            self.started_event.set()
        else:
            self.started_event.clear()
        self.ready = self.started and "readinessProbe" not in probes
        self._set(Running(proc.started))
        tasks = [
            asyncio.create_task(self._probe(kind, probes[f"{kind}Probe"]), name=f"probe-{kind}-{self.name}")
            for kind in ("startup", "readiness", "liveness")
            if probes.get(f"{kind}Probe")
        ]
        post = ((self.spec.get("lifecycle") or {}).get("postStart")) or None
        if post:
            ok, message = await run_action(post, self._target(), 30)
            if not ok:
                self._event("FailedPostStartHook", f"PostStartHook failed: {message}", "Warning")
                await self.kill("FailedPostStartHook")
        try:
            code = await asyncio.shield(proc.wait())
        finally:
            for t in tasks:
                t.cancel()
            if proc.running():  # cancelled with the process still there: it goes too
                proc.signal_group(signal.SIGKILL)
                proc.wait().add_done_callback(lambda _: host.untrack(proc))
            else:
                host.untrack(proc)
            await asyncio.gather(*tasks, return_exceptions=True)
            self.proc = None
            self.ready = False
            self.started = False
        reason = "Completed" if code == 0 else "Error"
        return Terminated(code, reason, proc.started, time.time(), self.container_id)

    def _target(self) -> Target:
        ports = {p["name"]: int(p["containerPort"]) for p in self.spec.get("ports") or [] if p.get("name")}
        return Target(self.worker.ip or "127.0.0.1", ports, self.exec)

    async def exec(self, command: list[str], timeout: float) -> tuple[int | None, str]:
        """Run ``command`` in this container (its namespaces, environment, working directory)."""
        proc = self.proc
        if proc is None or not proc.running():
            return 126, f"container {self.name} is not running"
        host = self.worker.host
        workdir = self.spec.get("workingDir")
        argv = exec_argv(command, proc.pid, host.isolation, workdir)
        env = dict(self.env)
        cwd = str(self.worker.dir)
        if host.isolation != ISOLATION_MOUNT:
            root = self.worker.rootfs(self.name)
            cwd = str(root / workdir.lstrip("/")) if workdir else str(root)
            if shutil.which(command[0], path=env.get("PATH")) is None and "/" not in command[0]:
                return 127, f'exec: "{command[0]}": executable file not found in $PATH'
        return await run_command(argv, env, cwd, timeout)

    async def _probe(self, kind: str, probe: Obj) -> None:
        period = max(1, int(probe.get("periodSeconds") or 10))
        timeout = max(1, int(probe.get("timeoutSeconds") or 1))
        success_needed = max(1, int(probe.get("successThreshold") or 1))
        failure_needed = max(1, int(probe.get("failureThreshold") or 3))
        started = self.proc.started if self.proc else time.time()
        if kind != "startup":
            await self.started_event.wait()
        await asyncio.sleep(max(0.0, started + int(probe.get("initialDelaySeconds") or 0) - time.time()))
        label = kind.capitalize()
        last: bool | None = None
        streak = 0
        target = self._target()
        while self.proc is not None and self.proc.running():
            ok, message = await run_action(probe, target, timeout)
            streak = streak + 1 if ok == last else 1
            last = ok
            if not ok:
                self._event("Unhealthy", f"{label} probe failed: {message.strip()}", "Warning")
            if kind == "readiness":
                if ok and streak >= success_needed and not self.ready:
                    self.ready = True
                    self.worker.dirty()
                elif not ok and streak >= failure_needed and self.ready:
                    self.ready = False
                    self.worker.dirty()
            elif kind == "startup":
                if ok:
                    self.started = True
                    self.ready = "readinessProbe" not in self.spec
                    self.started_event.set()
                    self.worker.dirty()
                    return
                if streak >= failure_needed:
                    self._event("Killing", f"Container {self.name} failed startup probe, will be restarted")
                    self._kill_later("startup probe failed", probe.get("terminationGracePeriodSeconds"))
                    return
            elif kind == "liveness" and not ok and streak >= failure_needed:
                self._event("Killing", f"Container {self.name} failed liveness probe, will be restarted")
                self._kill_later("liveness probe failed", probe.get("terminationGracePeriodSeconds"))
                return
            await asyncio.sleep(period)

    def _kill_later(self, reason: str, grace: float | None) -> None:
        task = asyncio.create_task(self.kill(reason, grace), name=f"kill-{self.name}")
        self._kills.add(task)
        task.add_done_callback(self._kills.discard)

    async def kill(self, reason: str, grace: float | None = None) -> None:
        """Stop the running process (preStop, SIGTERM, SIGKILL after the grace period); it may restart."""
        proc = self.proc
        if proc is None or not proc.running():
            return
        self.kill_reason = reason
        if grace is None:
            grace = float(self.worker.grace_period())
        deadline = time.monotonic() + grace
        pre = (self.spec.get("lifecycle") or {}).get("preStop")
        if pre and not self.init:
            with contextlib.suppress(asyncio.TimeoutError):
                ok, message = await asyncio.wait_for(run_action(pre, self._target(), grace), timeout=max(grace, 0.1))
                if not ok:
                    self._event("FailedPreStopHook", f"PreStopHook failed: {message}", "Warning")
        await proc.terminate(max(0.0, deadline - time.monotonic()))

    async def stop(self, grace: float) -> None:
        """Stop for good: no restart after this."""
        self.stopping = True
        self.wake.set()
        if self.proc is not None and self.proc.running():
            self._event("Killing", f"Stopping container {self.name}")
            await self.kill("stopping", grace)


class PodWorker:
    """Everything the agent does for one Pod bound to its node."""

    def __init__(self, host: Host, pod: Obj) -> None:
        self.host = host
        self.pod = pod
        m = meta(pod)
        self.uid: str = m.get("uid", "")
        self.namespace: str = m.get("namespace", "")
        self.name: str = m.get("name", "")
        spec = pod.get("spec") or {}
        self.hostname: str = (spec.get("hostname") or self.name)[:63]
        self.subdomain: str | None = spec.get("subdomain")
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.init_specs: list[Obj] = list(spec.get("initContainers") or [])
        self.dir: Path = host.root / "pods" / self.uid
        self.log_dir = host.root / "logs" / f"{self.namespace}_{self.name}_{self.uid}"
        self.hosts_path = self.dir / "etc-hosts"
        self.ip: str | None = None
        self.sandbox = False
        self.initialized = not self.init_specs
        self.start_time: float | None = None
        self.phase_override: str | None = None
        self.reason: str | None = None
        self.message: str | None = None
        self.init_runners = [ContainerRunner(self, c, init=True, index=i) for i, c in enumerate(self.init_specs)]
        self.runners = [
            ContainerRunner(self, c, init=False, index=i) for i, c in enumerate(spec.get("containers") or [])
        ]
        self.volumes = PodVolumes(
            pod=pod,
            pod_dir=self.dir,
            fetch=host.fetch,
            token=self._token,
            claim_path=host.claim_path,
            node_allocatable=host.node_allocatable,
            host_ip=host.host_ip,
        )
        self.changed = asyncio.Event()
        self.deleting = asyncio.Event()
        self.gone = False
        self.shutting_down: float | None = None
        self._written: Obj | None = None
        self._life: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] | None = None
        if m.get("deletionTimestamp"):
            self.deleting.set()

    def rootfs(self, container: str) -> Path:
        return self.dir / "rootfs" / container

    def all_runners(self) -> list[ContainerRunner]:
        return [*self.init_runners, *self.runners]

    def runner(self, name: str) -> ContainerRunner | None:
        return next((r for r in self.all_runners() if r.name == name), None)

    async def _token(self, account: str, audience: str | None, seconds: int) -> tuple[str, float]:
        return await self.host.token(self.pod, account, audience, seconds)

    def dirty(self) -> None:
        self.changed.set()

    def update(self, pod: Obj) -> None:
        """A newer version of the Pod from the API."""
        self.pod = pod
        self.volumes.pod = pod
        if meta(pod).get("deletionTimestamp"):
            self.deleting.set()
        self.dirty()

    def removed(self) -> None:
        """The Pod object is gone from the API (deleted with grace 0 by someone, or its namespace)."""
        self.gone = True
        self.deleting.set()

    def grace_period(self) -> int:
        m = meta(self.pod)
        grace = m.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return int(30 if grace is None else grace)

    # ---- status

    def status(self) -> Obj:
        init = [r.view() for r in self.init_runners]
        main = [r.view() for r in self.runners]
        phase = self.phase_override or pod_phase(self.restart_policy, init, main, self.initialized)
        status: Obj = {
            "phase": phase,
            "conditions": pod_conditions(
                self.pod,
                sandbox=self.sandbox,
                init=init,
                main=main,
                initialized=self.initialized,
                phase=phase,
                now=time.time(),
            ),
            "hostIP": self.host.host_ip,
            "hostIPs": [{"ip": self.host.host_ip}],
            "containerStatuses": [container_status(v) for v in main],
            "reason": self.reason,
            "message": self.message,
        }
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"$patch": "replace"}, {"ip": self.ip}]  # not merged with an earlier one
        if self.start_time is not None:
            status["startTime"] = rfc3339(self.start_time)
        if init:
            status["initContainerStatuses"] = [container_status(v) for v in init]
        return status

    def _comparable(self, status: Obj) -> Obj:
        # lastTransitionTime is recomputed each time (from the Pod we last saw): compare without it
        conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]]
        return status | {"conditions": conditions}

    async def write_status(self, timeout: float = 15.0) -> None:
        status = self.status()
        if self._written is not None and self._comparable(status) == self._written:
            return
        path = api_path("v1", "pods", self.namespace, self.name) + "/status"
        body = {"metadata": {"uid": self.uid}, "status": status}
        result = await asyncio.wait_for(self.host.kube.patch(path, body, strategic=True), timeout)
        if meta(result).get("uid") == self.uid:
            self.pod = result
            self.volumes.pod = result
        self._written = self._comparable(status)

    async def _status_loop(self) -> None:
        delay = 0.5
        refused = ""
        while True:
            await self.changed.wait()
            self.changed.clear()
            await asyncio.sleep(0.05)  # let a burst of changes settle into one write
            try:
                await self.write_status()
                delay = 0.5
            except ApiError as e:
                if self.gone:
                    return
                if e.status in (404, 409) or (e.status == 422 and "metadata.uid" in str(e)):
                    # gone, or a new Pod of that name now (the uid in the patch does not match)
                    self.removed()
                    return
                if e.status == 422 and str(e) != refused:
                    refused = str(e)
                    log.warning("the API server refused the status of %s/%s: %s", self.namespace, self.name, e)
                else:
                    log.debug("status of %s/%s: %s", self.namespace, self.name, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                self.changed.set()
            except TimeoutError:
                self.changed.set()

    # ---- life

    def _event(self, reason: str, message: str, kind: str = "Normal") -> None:
        self.host.event(self.pod, reason, message, kind)

    async def _setup_sandbox(self) -> None:
        self.start_time = time.time()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ip = self.host.allocate_ip(f"{self.host.node_name} {self.namespace}/{self.name} {self.uid}")
        self.volumes.pod_ip = self.ip
        self.host.sandbox_ready(self)
        self.sandbox = True
        self.dirty()

    async def _setup_volumes(self) -> None:
        delay = 0.5
        last = ""
        while True:
            try:
                await self.volumes.setup()
                return
            except (VolumeNotReady, ApiError) as e:
                message = str(e)
                if message != last:
                    self._event("FailedMount", f"MountVolume.SetUp failed: {message}", "Warning")
                    last = message
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _refresh_volumes(self) -> None:
        while True:
            await asyncio.sleep(self.host.refresh_interval)
            try:
                await self.volumes.refresh()
            except Exception as e:
                log.debug("refreshing volumes of %s/%s: %r", self.namespace, self.name, e)

    async def _live(self) -> None:
        await self._setup_sandbox()
        await self._setup_volumes()
        refresher = asyncio.create_task(self._refresh_volumes(), name=f"volumes-{self.name}")
        sidecars: list[asyncio.Task[int | None]] = []
        try:
            for runner in self.init_runners:
                if runner.sidecar:
                    sidecars.append(asyncio.create_task(runner.run("Always"), name=f"sidecar-{runner.name}"))
                    await runner.started_event.wait()
                    continue
                code = await runner.run(self.restart_policy)
                if code != 0:
                    self.dirty()
                    for s in self.init_runners:
                        if s.sidecar:
                            await s.stop(self.grace_period())
                    return  # a failed init container with restartPolicy Never: the Pod failed
            self.initialized = True
            for runner in self.runners:
                runner._set(Waiting("ContainerCreating"))
            await asyncio.gather(*(r.run(self.restart_policy) for r in self.runners))
            # Every container is done for good: sidecars go too, last started first.
            for s in reversed([r for r in self.init_runners if r.sidecar]):
                await s.stop(self.grace_period())
            await asyncio.gather(*sidecars, return_exceptions=True)
        finally:
            refresher.cancel()
        self.dirty()

    async def _stop_containers(self, grace: float) -> None:
        """Regular containers together, then sidecars in reverse order, then init containers."""
        deadline = time.monotonic() + grace
        await asyncio.gather(*(r.stop(grace) for r in self.runners))
        for r in reversed(self.init_runners):
            await r.stop(max(0.0, deadline - time.monotonic()))

    async def run(self) -> None:
        status = asyncio.create_task(self._status_loop(), name=f"status-{self.name}")
        try:
            phase = (self.pod.get("status") or {}).get("phase")
            if phase not in ("Succeeded", "Failed") and not self.deleting.is_set():
                self._restore_counts()
                self._life = asyncio.create_task(self._live(), name=f"pod-{self.namespace}-{self.name}")
                waiter = asyncio.create_task(self.deleting.wait())
                await asyncio.wait({self._life, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if self._life.done() and not self._life.cancelled() and self._life.exception() is not None:
                    log.error(
                        "pod %s/%s failed in the agent", self.namespace, self.name, exc_info=self._life.exception()
                    )
            await self.deleting.wait()
            await self.terminate(self.grace_period() if not self.gone else min(self.grace_period(), 2))
            if not self.gone:
                with contextlib.suppress(ApiError, asyncio.TimeoutError):
                    await self.write_status()
                await self._delete()
        finally:
            status.cancel()
            await asyncio.gather(status, return_exceptions=True)
            await self._cleanup()

    def _restore_counts(self) -> None:
        """After an agent restart: containers that ran before count a restart, as after a node reboot."""
        previous = {
            s.get("name"): s
            for key in ("containerStatuses", "initContainerStatuses")
            for s in (self.pod.get("status") or {}).get(key) or []
        }
        for r in self.all_runners():
            s = previous.get(r.name)
            if s and ((s.get("state") or {}).get("running") or (s.get("state") or {}).get("terminated")):
                r.restart_count = int(s.get("restartCount") or 0) + 1

    async def terminate(self, grace: float, *, phase: str | None = None) -> None:
        """Stop every container (graceful), end the life task and settle the terminal phase."""
        if self.phase_override is None:
            self.phase_override = phase
        await self._stop_containers(grace)
        if self._life is not None and not self._life.done():
            self._life.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._life
        if self.phase_override is None:
            init = [r.view() for r in self.init_runners]
            main = [r.view() for r in self.runners]
            current = pod_phase(self.restart_policy, init, main, self.initialized)
            self.phase_override = current if current in ("Succeeded", "Failed") else terminal_phase(main)
        self.dirty()

    async def shutdown(self, grace: float) -> None:
        """Node shutdown: containers stopped within ``grace``, the Pod Failed as the kubelet's
        graceful node shutdown leaves it."""
        current = (self.pod.get("status") or {}).get("phase")
        running = any(r.proc is not None for r in self.all_runners())
        if current not in ("Succeeded", "Failed") or running:
            self.reason, self.message = SHUTDOWN_REASON, SHUTDOWN_MESSAGE
            await self.terminate(min(grace, self.grace_period()), phase="Failed")
            with contextlib.suppress(ApiError, asyncio.TimeoutError, OSError):
                await self.write_status(timeout=5)

    async def _delete(self) -> None:
        path = api_path("v1", "pods", self.namespace, self.name)
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            await self.host.kube.delete(path, body)
        except ApiError as e:
            if e.status != 409:  # 409: another Pod of that name now
                log.warning("deleting %s/%s: %s", self.namespace, self.name, e)

    async def _cleanup(self) -> None:
        for r in self.all_runners():
            if r.proc is not None:
                r.proc.kill_now()
                self.host.untrack(r.proc)
        if self.sandbox:
            self.host.sandbox_gone(self)
        if self.ip is not None and self.gone_for_good():
            self.host.release_ip(self.ip)
        if self.gone_for_good():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.host.worker_done(self)

    def gone_for_good(self) -> bool:
        return self.gone or self.deleting.is_set() or self.shutting_down is not None
