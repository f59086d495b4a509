"""Supervise one OS process through a pid record that survives the supervisor.

The record keeps the process's start time next to its pid, so a pid that the
kernel has handed to another program is never mistaken for ours. A new
supervisor (another CLI call, a restarted operator) adopts what is running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

# Children this Python process started: polled so that they never linger as zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

# psutil reports create_time with clock-tick resolution; two reads of one process agree.
_START_TIME_TOLERANCE = 0.05


@dataclass(frozen=True)
class PidRecord:
    pid: int
    create_time: float
    argv: tuple[str, ...]
    started_at: float  # wall clock, for humans

    def to_json(self) -> str:
        data = asdict(self)
        data["argv"] = list(self.argv)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> PidRecord:
        data = json.loads(text)
        return cls(
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            argv=tuple(data.get("argv", ())),
            started_at=float(data.get("started_at", 0.0)),
        )


# Exit statuses of reaped children, until the pid is used again.
_EXITED: dict[int, int] = {}


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and (rc := child.poll()) is not None:
        _EXITED[pid] = rc
        _CHILDREN.pop(pid, None)


def is_alive(record: PidRecord) -> bool:
    """True when the recorded process still runs (not a zombie, not a reused pid)."""
    _reap(record.pid)
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > _START_TIME_TOLERANCE:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def is_stopped(record: PidRecord) -> bool:
    """True when the process is paused (SIGSTOP)."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > _START_TIME_TOLERANCE:
            return False
        return proc.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def exit_code(pid: int) -> int | None:
    """The exit status of a child of this process, when it has ended."""
    _reap(pid)
    return _EXITED.get(pid)


class ProcessUnit:
    """One supervised process: its directory holds ``pid.json`` and the log."""

    def __init__(self, directory: Path, *, log_name: str = "process.log") -> None:
        self.directory = directory
        self.pid_file = directory / "pid.json"
        self.log_file = directory / log_name

    def record(self) -> PidRecord | None:
        try:
            return PidRecord.from_json(self.pid_file.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def running(self) -> PidRecord | None:
        """The record when its process is alive, else None."""
        rec = self.record()
        return rec if rec is not None and is_alive(rec) else None

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        limits: Sequence[tuple[int, int, int]] = (),
    ) -> PidRecord:
        """Start the process detached (own session) with output appended to the log."""
        existing = self.running()
        if existing is not None:
            return existing
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"--- zkop: starting at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            log.flush()

            def preexec() -> None:
                import resource

                for which, soft, hard in limits:
                    resource.setrlimit(which, (soft, hard))

            child = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(cwd or self.directory),
                env=dict(env) if env is not None else None,
                start_new_session=True,
                preexec_fn=preexec if limits else None,
            )
        _CHILDREN[child.pid] = child
        _EXITED.pop(child.pid, None)
        try:
            create_time = psutil.Process(child.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = 0.0
        rec = PidRecord(child.pid, create_time, tuple(argv), time.time())
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(rec.to_json())
        tmp.replace(self.pid_file)
        return rec

    def signal(self, sig: int) -> bool:
        """Send a signal to our process (and its process group, which it leads)."""
        rec = self.running()
        if rec is None:
            return False
        try:
            if os.getpgid(rec.pid) == rec.pid:
                os.killpg(rec.pid, sig)
            else:
                os.kill(rec.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait_exit(self, timeout: float) -> bool:
        """Block until the process has exited or the timeout passes."""
        rec = self.record()
        if rec is None:
            return True
        child = _CHILDREN.get(rec.pid)
        if child is not None:
            try:
                _EXITED[rec.pid] = child.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            _CHILDREN.pop(rec.pid, None)
            return True
        deadline = time.monotonic() + timeout
        while is_alive(rec):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self, grace: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after ``grace`` seconds. True if something was stopped."""
        rec = self.running()
        if rec is None:
            return False
        if is_stopped(rec):
            # A paused process cannot act on SIGTERM until it runs again.
            self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if not self.wait_exit(grace):
            self.signal(signal.SIGKILL)
            self.wait_exit(10.0)
        return True

    def kill(self) -> bool:
        """SIGKILL, the way a crash looks. True if something was killed."""
        rec = self.running()
        if rec is None:
            return False
        self.signal(signal.SIGKILL)
        self.wait_exit(10.0)
        return True

    def pause(self, timeout: float = 5.0) -> bool:
        """SIGSTOP, returning once the kernel shows the process stopped."""
        rec = self.running()
        if rec is None or not self.signal(signal.SIGSTOP):
            return False
        return self._wait_for(lambda: is_stopped(rec), timeout)

    def resume(self, timeout: float = 5.0) -> bool:
        rec = self.running()
        if rec is None or not self.signal(signal.SIGCONT):
            return False
        return self._wait_for(lambda: not is_stopped(rec), timeout)

    @staticmethod
    def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def log_tail(self, lines: int = 20) -> list[str]:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 64 * 1024))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
