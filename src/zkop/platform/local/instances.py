"""Application instances as supervised local processes.

Layout: ``<state>/apps/<namespace>/<app>/<instance>/`` with ``instance.json`` (port,
template hash, crash count, next start), ``pid.json`` and ``instance.log``. Every
action runs under the platform's epoch fence.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zkop.errors import ZkopError
from zkop.platform.local import ports as portlib
from zkop.platform.local.fence import EpochFence
from zkop.platform.local.process import PidRecord, ProcessUnit, exit_code


class StartFailed(ZkopError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class InstanceRecord:
    name: str
    index: int
    port: int
    template_hash: str
    crashes: int = 0  # consecutive
    restarts: int = 0
    next_start: float = 0.0  # crash-loop backoff: not before this time
    last_exit: int | None = None
    failed_reason: str | None = None  # permanent: the command cannot start
    failed_message: str | None = None
    enforced: list[str] = field(default_factory=list)


class LocalInstances:
    def __init__(self, state_dir: Path, fence: EpochFence) -> None:
        self.state_dir = state_dir
        self.fence = fence

    def app_dir(self, namespace: str, app: str) -> Path:
        return self.state_dir / "apps" / namespace / app

    def unit(self, namespace: str, app: str, name: str) -> ProcessUnit:
        return ProcessUnit(self.app_dir(namespace, app) / name, log_name="instance.log")

    # ---- records -----------------------------------------------------------------

    def records(self, namespace: str, app: str) -> list[InstanceRecord]:
        base = self.app_dir(namespace, app)
        out = []
        for f in sorted(base.glob("*/instance.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                out.append(InstanceRecord(**json.loads(f.read_text())))
        return sorted(out, key=lambda r: r.index)

    def save(self, namespace: str, app: str, rec: InstanceRecord) -> None:
        d = self.app_dir(namespace, app) / rec.name
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "instance.json.tmp"
        tmp.write_text(json.dumps(asdict(rec)))
        tmp.replace(d / "instance.json")

    def create(
        self, namespace: str, app: str, template_hash: str, fixed_port: int | None, *, epoch: int | None
    ) -> InstanceRecord:
        with self.fence.hold(epoch):
            base = self.app_dir(namespace, app)
            base.mkdir(parents=True, exist_ok=True)
            counter = base / "next-index"
            index = int(counter.read_text()) if counter.exists() else 1
            counter.write_text(str(index + 1))
            used = {r.port for r in self.records(namespace, app)}
            port = fixed_port if fixed_port else portlib.allocate(1, avoid=used)[0]
            rec = InstanceRecord(name=f"{app}-{index}", index=index, port=port, template_hash=template_hash)
            self.save(namespace, app, rec)
            return rec

    # ---- processes -----------------------------------------------------------------

    def running(self, namespace: str, app: str, name: str) -> PidRecord | None:
        return self.unit(namespace, app, name).running()

    def exit_status(self, namespace: str, app: str, name: str) -> int | None:
        rec = self.unit(namespace, app, name).record()
        return exit_code(rec.pid) if rec else None

    def start(
        self,
        namespace: str,
        app: str,
        rec: InstanceRecord,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        memory_limit: int | None,
        *,
        epoch: int | None,
    ) -> PidRecord:
        with self.fence.hold(epoch):
            unit = self.unit(namespace, app, rec.name)
            if not portlib.port_is_free(rec.port):
                owner = portlib.listener_pid(rec.port)
                raise StartFailed("PortConflict", f"port {rec.port} is in use" + (f" by pid {owner}" if owner else ""))
            exe = argv[0]
            if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
                raise StartFailed("CommandNotFound", f"command not found: {exe}")
            if os.sep in exe and not os.access(exe, os.X_OK):
                raise StartFailed("CommandNotFound", f"not an executable file: {exe}")
            limits = []
            enforced = []
            if memory_limit:
                limits.append((resource.RLIMIT_AS, memory_limit, memory_limit))
                enforced.append(f"memory {memory_limit} bytes (RLIMIT_AS)")
            if cwd and not Path(cwd).is_dir():
                raise StartFailed("BadWorkingDir", f"workingDir {cwd} is not a directory")
            try:
                pid = unit.start(list(argv), env=dict(env), cwd=Path(cwd) if cwd else unit.directory, limits=limits)
            except OSError as exc:
                raise StartFailed("StartError", f"cannot start {exe}: {exc.strerror or exc}") from None
            rec.enforced = enforced
            return pid

    def stop(self, namespace: str, app: str, name: str, *, epoch: int | None, remove: bool, grace: float = 5.0) -> None:
        with self.fence.hold(epoch):
            self.unit(namespace, app, name).stop(grace)
            if remove:
                shutil.rmtree(self.app_dir(namespace, app) / name, ignore_errors=True)

    def kill(self, namespace: str, app: str, name: str, *, epoch: int | None) -> None:
        with self.fence.hold(epoch):
            self.unit(namespace, app, name).kill()

    def remove_app(self, namespace: str, app: str, *, epoch: int | None) -> None:
        with self.fence.hold(epoch):
            for rec in self.records(namespace, app):
                self.unit(namespace, app, rec.name).stop(5.0)
            shutil.rmtree(self.app_dir(namespace, app), ignore_errors=True)

    def log_tail(self, namespace: str, app: str, name: str, lines: int = 10) -> list[str]:
        return self.unit(namespace, app, name).log_tail(lines)

    @staticmethod
    def now() -> float:
        return time.time()
