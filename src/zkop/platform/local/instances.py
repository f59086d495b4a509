"""Application instances as supervised local processes.

Layout: ``<state>/apps/<namespace>/<app>/<instance>/`` holds ``instance.json`` (ports,
template hash, requests, crash count, next start), ``pid.json`` (pid and start time, so a
reused pid is never mistaken for the instance), ``instance.log`` and ``exit-code``.

Each instance runs under a small ``/bin/sh`` wrapper that is its process group leader (the
pid record): it joins the instance's cgroup when there is one, runs the command in the
foreground, and writes the command's exit status to ``exit-code``. So the exit status of a
crash is *observed* by whichever operator looks next, not only by the process that started
it; the wrapper ignores nothing (the command keeps default signal handling), SIGTERM and
SIGKILL go to the whole group.

Limits: memory through cgroup v2 ``memory.max`` when zkop may write a cgroup (set
``ZKOP_CGROUP_ROOT`` to a delegated cgroup, or run in a cgroup whose ``memory`` controller
can be enabled for children), else ``RLIMIT_AS`` (address space, which counts reserved as
well as used memory); CPU through cgroup v2 ``cpu.max`` only, else not enforced. What was
enforced, and what was not and why, is kept in the record for the status.

Every action that changes something runs under the platform's epoch fence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from zkop.errors import ZkopError
from zkop.platform.base import Resources
from zkop.platform.local import ports as portlib
from zkop.platform.local.cgroups import Cgroups, Limits, size
from zkop.platform.local.fence import EpochFence
from zkop.platform.local.process import PidRecord, ProcessUnit, exit_code

EXIT_FILE = "exit-code"

# $1: exit-code file, $2: cgroup.procs to join ("" for none), then the command.
# A trap (not an ignore) keeps the wrapper waiting for the command when the group gets
# SIGTERM; the command itself gets the default handlers back, as after any exec.
WRAPPER = r"""
exit_file=$1; procs=$2; shift 2
rm -f "$exit_file"
if [ -n "$procs" ]; then
  echo $$ > "$procs" || { echo "--- zkop: cannot join cgroup $procs; not starting"; echo 125 > "$exit_file"; exit 125; }
fi
trap : TERM INT HUP
"$@"
rc=$?
echo "$rc" > "$exit_file.tmp" && mv -f "$exit_file.tmp" "$exit_file"
echo "--- zkop: exited with code $rc"
exit "$rc"
"""


class StartFailed(ZkopError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class InstanceRecord:
    name: str
    index: int
    ports: dict[str, int]  # port name -> number; the first is PORT and the endpoint
    template_hash: str
    fixed_ports: list[str] = field(default_factory=list)  # names given a containerPort (never reallocated)
    requests: dict[str, float] = field(default_factory=dict)  # {"cpu": cores, "memory": bytes}
    crashes: int = 0  # consecutive
    restarts: int = 0
    next_start: float = 0.0  # crash-loop backoff: not before this time
    last_exit: int | None = None
    last_run: float | None = None  # seconds the last run lasted
    last_reason: str | None = None  # why the last run ended: Completed, Error, LivenessProbeFailed
    killed_for: str | None = None  # set before zkop kills a run on purpose (e.g. LivenessProbeFailed)
    pending: str | None = None  # does not fit the machine: not started
    start_error: list[str] | None = None  # [reason, message] of the last failed start (retried)
    start_failures: int = 0
    enforced: list[str] = field(default_factory=list)
    not_enforced: list[str] = field(default_factory=list)
    # Readiness as the supervisor last found it, and the run (process start time) it is about:
    # kept on disk, so a new leader's supervisor does not start from "not ready".
    ready: bool = False
    ready_run: float | None = None

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))

    @property
    def request(self) -> Resources:
        return Resources(float(self.requests.get("cpu", 0.0)), int(self.requests.get("memory", 0)))

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> InstanceRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "ports" not in values and isinstance(data.get("port"), int):  # records of older versions
            values["ports"] = {"port": data["port"]}
        return cls(**values)  # type: ignore[arg-type]


def env_name(port_name: str) -> str:
    """``PORT_<NAME>`` for a named port: ``metrics-http`` -> ``PORT_METRICS_HTTP``."""
    return "PORT_" + "".join(c if c.isalnum() else "_" for c in port_name.upper())


def _lives(proc: psutil.Process) -> bool:
    """Still running (a zombie has ended; whoever is its parent reaps it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# -- instances -----------------------------------------------------------------------------------


class LocalInstances:
    def __init__(self, state_dir: Path, fence: EpochFence, cgroups: Cgroups | None = None) -> None:
        self.state_dir = state_dir
        self.fence = fence
        self.cgroups = cgroups if cgroups is not None else Cgroups.detect()

    def app_dir(self, namespace: str, app: str) -> Path:
        return self.state_dir / "apps" / namespace / app

    def unit(self, namespace: str, app: str, name: str) -> ProcessUnit:
        return ProcessUnit(self.app_dir(namespace, app) / name, log_name="instance.log")

    @staticmethod
    def cgroup_name(namespace: str, app: str, name: str) -> str:
        return f"{namespace}.{app}.{name}"

    # ---- records -----------------------------------------------------------------

    def records(self, namespace: str, app: str) -> list[InstanceRecord]:
        return self._records_in(self.app_dir(namespace, app))

    @staticmethod
    def _records_in(base: Path) -> list[InstanceRecord]:
        out = []
        for f in sorted(base.glob("*/instance.json")):
            with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                out.append(InstanceRecord.from_json(json.loads(f.read_text())))
        return sorted(out, key=lambda r: r.index)

    def corrupt(self, namespace: str, app: str) -> list[str]:
        """Instances whose record cannot be read (they are stopped and replaced, not kept blindly)."""
        out = []
        for f in sorted(self.app_dir(namespace, app).glob("*/instance.json")):
            try:
                InstanceRecord.from_json(json.loads(f.read_text()))
            except (ValueError, TypeError, AttributeError):
                out.append(f.parent.name)
            except OSError:
                pass
        return out

    def apps(self) -> list[tuple[str, str]]:
        """(namespace, app) of every application with a directory on this machine."""
        return [(d.parent.name, d.name) for d in sorted((self.state_dir / "apps").glob("*/*")) if d.is_dir()]

    def all_records(self) -> list[tuple[str, str, InstanceRecord]]:
        """Every instance of every application on this machine: (namespace, app, record)."""
        out = []
        for app_dir in sorted((self.state_dir / "apps").glob("*/*")):
            for rec in self._records_in(app_dir):
                out.append((app_dir.parent.name, app_dir.name, rec))
        return out

    def committed(self, exclude: tuple[str, str, str] | None = None) -> Resources:
        """What the placed (not pending) instances of all applications request."""
        total = Resources()
        for ns, app, rec in self.all_records():
            if rec.pending is None and (ns, app, rec.name) != exclude:
                total = total + rec.request
        return total

    @staticmethod
    def capacity() -> Resources:
        return Resources(float(psutil.cpu_count() or 1), int(psutil.virtual_memory().total))

    def save(self, namespace: str, app: str, rec: InstanceRecord, *, epoch: int | None) -> None:
        with self.fence.hold(epoch):
            self._save(namespace, app, rec)

    def _save(self, namespace: str, app: str, rec: InstanceRecord) -> None:
        d = self.app_dir(namespace, app) / rec.name
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "instance.json.tmp"
        tmp.write_text(json.dumps(asdict(rec)))
        tmp.replace(d / "instance.json")

    def create(
        self,
        namespace: str,
        app: str,
        template_hash: str,
        ports: Sequence[tuple[str, int | None]],
        requests: Resources,
        *,
        pending: str | None,
        epoch: int | None,
    ) -> InstanceRecord:
        """A new instance record (not started). ``ports``: (name, fixed number or None)."""
        with self.fence.hold(epoch):
            base = self.app_dir(namespace, app)
            base.mkdir(parents=True, exist_ok=True)
            counter = base / "next-index"
            try:
                index = int(counter.read_text())
            except (OSError, ValueError):
                index = max([r.index for r in self.records(namespace, app)] or [0]) + 1
            counter.write_text(str(index + 1))
            used = {p for _, _, r in self.all_records() for p in r.ports.values()}
            wanted = list(ports) or [("port", None)]
            free = iter(portlib.allocate(sum(1 for _, n in wanted if not n), avoid=used))
            rec = InstanceRecord(
                name=f"{app}-{index}",
                index=index,
                ports={name: number or next(free) for name, number in wanted},
                fixed_ports=[name for name, number in wanted if number],
                template_hash=template_hash,
                requests={"cpu": requests.cpu, "memory": requests.memory},
                pending=pending,
            )
            self._save(namespace, app, rec)
            return rec

    # ---- processes -----------------------------------------------------------------

    def running(self, namespace: str, app: str, name: str) -> PidRecord | None:
        return self.unit(namespace, app, name).running()

    def started(self, namespace: str, app: str, name: str) -> PidRecord | None:
        """The pid record of the last start, whether or not the process still runs."""
        return self.unit(namespace, app, name).record()

    @staticmethod
    def app_pid(wrapper: PidRecord) -> int | None:
        """The pid of the command itself (the wrapper's child), for users and CPU use."""
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(wrapper.pid).children()
            if children:
                return children[0].pid
        return None

    def exit_status(self, namespace: str, app: str, name: str) -> int | None:
        """The command's exit status as the wrapper wrote it; else the wrapper's own (a signal
        that killed the group shows as negative), when this process started it."""
        directory = self.app_dir(namespace, app) / name
        with contextlib.suppress(OSError, ValueError):
            return int((directory / EXIT_FILE).read_text().strip())
        rec = self.unit(namespace, app, name).record()
        return exit_code(rec.pid) if rec else None

    def _check_start(self, rec: InstanceRecord, argv: list[str], env: Mapping[str, str], cwd: str | None) -> list[str]:
        """Refuse a start that cannot work, with a reason; returns argv with the program resolved."""
        if cwd and not Path(cwd).is_dir():
            raise StartFailed("BadWorkingDir", f"workingDir {cwd} is not a directory")
        exe = argv[0]
        if os.sep in exe:
            path = exe if os.path.isabs(exe) or not cwd else os.path.join(cwd, exe)
            if not os.path.isfile(path) or not os.access(path, os.X_OK):
                raise StartFailed("CommandNotFound", f"not an executable file: {exe}")
        else:
            found = shutil.which(exe, path=env.get("PATH"))
            if found is None:
                raise StartFailed("CommandNotFound", f"command not found: {exe} (PATH={env.get('PATH', '')})")
            argv = [found, *argv[1:]]
        for port_name, port in rec.ports.items():
            if portlib.port_is_free(port):
                continue
            if port_name not in rec.fixed_ports:
                # An allocated port someone took while the instance was down: take another.
                used = {p for _, _, r in self.all_records() for p in r.ports.values()}
                rec.ports[port_name] = portlib.allocate(1, avoid=used)[0]
                continue
            owner = portlib.listener_pid(port)
            raise StartFailed(
                "PortConflict",
                f"containerPort {port} ({port_name}) is already in use" + (f" by pid {owner}" if owner else ""),
            )
        return argv

    def start(
        self,
        namespace: str,
        app: str,
        rec: InstanceRecord,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        limits: Limits,
        *,
        epoch: int | None,
    ) -> PidRecord:
        """Start the instance (its record is updated: ports, enforced limits); raises StartFailed."""
        with self.fence.hold(epoch):
            unit = self.unit(namespace, app, rec.name)
            if (current := unit.running()) is not None:
                return current
            self._reap_group(unit.record())
            resolved = self._check_start(rec, list(argv), env, cwd)
            env = dict(env) | {"PORT": str(rec.port)} | {env_name(n): str(p) for n, p in rec.ports.items()}
            cgroup, enforced, problems, used = self.cgroups.prepare(self.cgroup_name(namespace, app, rec.name), limits)
            rlimits = []
            not_enforced = []
            if limits.memory is not None and "memory" not in used:
                rlimits.append((resource.RLIMIT_AS, limits.memory, limits.memory))
                enforced.append(f"memory {size(limits.memory)} (RLIMIT_AS: address space, not resident memory)")
            if limits.cpu is not None and "cpu" not in used:
                why = "; ".join(problems) or "no writable cgroup v2"
                not_enforced.append(f"cpu {limits.cpu:g} cores: not enforced ({why})")
            directory = self.app_dir(namespace, app) / rec.name
            wrapper = [
                "/bin/sh",
                "-c",
                WRAPPER,
                "zkop-instance",
                str(directory / EXIT_FILE),
                str(cgroup / "cgroup.procs") if cgroup else "",
                *resolved,
            ]
            try:
                pid = unit.start(wrapper, env=env, cwd=Path(cwd) if cwd else directory, limits=rlimits)
            except OSError as exc:
                raise StartFailed("StartError", f"cannot start {argv[0]}: {exc.strerror or exc}") from None
            rec.enforced, rec.not_enforced = enforced, not_enforced
            return pid

    @staticmethod
    def _reap_group(rec: PidRecord | None) -> None:
        """Kill what is left of a previous run's process group: its wrapper (the group leader)
        died and a command did not. A pid is never handed out while a group of that id exists,
        so members of group ``rec.pid`` are ours unless the pid now names another process."""
        if rec is None:
            return
        with contextlib.suppress(psutil.Error):
            leader = psutil.Process(rec.pid)
            if abs(leader.create_time() - rec.create_time) > 0.05:
                return  # the pid (and so the group id) now belongs to someone else
            if leader.status() != psutil.STATUS_ZOMBIE:
                return  # still running: not leftovers
        leftovers = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if proc.pid != rec.pid and os.getpgid(proc.pid) == rec.pid:
                    leftovers.append(proc)
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while leftovers and time.monotonic() < deadline:
            leftovers = [p for p in leftovers if _lives(p)]
            if leftovers:
                time.sleep(0.02)

    def stop(self, namespace: str, app: str, name: str, *, epoch: int | None, remove: bool, grace: float = 5.0) -> None:
        with self.fence.hold(epoch):
            unit = self.unit(namespace, app, name)
            unit.stop(grace)
            self._reap_group(unit.record())
            self.cgroups.remove(self.cgroup_name(namespace, app, name))
            if remove:
                shutil.rmtree(self.app_dir(namespace, app) / name, ignore_errors=True)

    def kill(self, namespace: str, app: str, name: str, *, epoch: int | None) -> None:
        with self.fence.hold(epoch):
            self.unit(namespace, app, name).kill()

    def forget_run(self, namespace: str, app: str, name: str, *, epoch: int | None) -> None:
        """The last run's exit has been noted: end what is left of it (the wrapper may have been
        killed on its own, leaving the command running) and drop its pid record."""
        with self.fence.hold(epoch):
            unit = self.unit(namespace, app, name)
            self._reap_group(unit.record())
            unit.forget()

    def remove_app(self, namespace: str, app: str, *, epoch: int | None) -> None:
        with self.fence.hold(epoch):
            base = self.app_dir(namespace, app)
            # Every instance directory, also one whose record is unreadable: its pid record says what runs.
            for name in sorted(d.name for d in base.glob("*") if d.is_dir()) if base.is_dir() else []:
                unit = self.unit(namespace, app, name)
                unit.stop(5.0)
                self._reap_group(unit.record())
                self.cgroups.remove(self.cgroup_name(namespace, app, name))
            shutil.rmtree(base, ignore_errors=True)

    def cpu_seconds(self, namespace: str, app: str, name: str) -> float | None:
        """CPU time used by the instance's current run (cgroup accounting, else its process tree)."""
        running = self.running(namespace, app, name)
        if running is None:
            return None
        from_cgroup = self.cgroups.cpu_seconds(self.cgroup_name(namespace, app, name))
        if from_cgroup is not None:
            return from_cgroup
        try:
            root = psutil.Process(running.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        total = 0.0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + (t.children_user + t.children_system if proc is root else 0.0)
        return total

    def log_tail(self, namespace: str, app: str, name: str, lines: int = 10) -> list[str]:
        return self.unit(namespace, app, name).log_tail(lines)
