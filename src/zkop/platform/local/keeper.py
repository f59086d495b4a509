"""What the local control-plane keeper needs of this machine: a lock so one keeper acts at a
time, an event log that needs no quorum, the desired size, and supervision of the local
processes zkop keeps running (operator replicas and the keeper process itself).

Layout under the state dir::

    keeper/keeper.lock      flock held by the acting keeper (released by the kernel when it dies)
    keeper/holder.json      who holds it: pid, identity, since
    keeper/disabled         written by ``zkop down`` before it stops anything: keepers stand still
    keeper/pid.json, keeper.log    the keeper process ``zkop up -d`` starts
    ensembles/control-plane/events.jsonl   the control plane's events, newest last, bounded
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zkop.platform.local import statedir
from zkop.platform.local.process import ProcessUnit

MAX_EVENTS = 200
BACKOFF_MAX = 60.0
STABLE_RUN = 30.0  # a process that ran this long before dying restarts without delay


def keeper_dir(state_dir: Path) -> Path:
    return state_dir / "keeper"


def keeper_unit(state_dir: Path) -> ProcessUnit:
    return ProcessUnit(keeper_dir(state_dir), log_name="keeper.log")


def disabled(state_dir: Path) -> bool:
    return (keeper_dir(state_dir) / "disabled").exists()


def set_disabled(state_dir: Path, value: bool) -> None:
    flag = keeper_dir(state_dir) / "disabled"
    if value:
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.write_text(f"{time.time()}\n")
    else:
        with contextlib.suppress(FileNotFoundError):
            flag.unlink()


class KeeperLock:
    """A non-blocking exclusive flock; whoever holds it is the acting keeper."""

    def __init__(self, state_dir: Path, identity: str) -> None:
        self.dir = keeper_dir(state_dir)
        self.identity = identity
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "keeper.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        holder = {"pid": os.getpid(), "identity": self.identity, "since": time.time()}
        tmp = self.dir / "holder.tmp"
        tmp.write_text(json.dumps(holder))
        tmp.replace(self.dir / "holder.json")
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def holder(state_dir: Path) -> dict[str, Any] | None:
    """The acting keeper, when one holds the lock now (a stale holder file says nothing)."""
    directory = keeper_dir(state_dir)
    lock = directory / "keeper.lock"
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                data = json.loads((directory / "holder.json").read_text())
                return data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                return {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class EventLog:
    """Events of the control plane as JSON lines, newest last, at most ``MAX_EVENTS``.
    A repeat of the newest event bumps its count (as store events do)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "ensembles" / statedir.CONTROL_PLANE / "events.jsonl"

    def append(self, type_: str, reason: str, message: str, *, source: str = "keeper") -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        events = self.read()
        last = events[-1] if events else None
        if last and (last.get("type"), last.get("reason"), last.get("message")) == (type_, reason, message):
            last["count"] = int(last.get("count", 1)) + 1
            last["lastTimestamp"] = stamp
        else:
            events.append(
                {
                    "type": type_,
                    "reason": reason,
                    "message": message,
                    "count": 1,
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "source": source,
                }
            )
        events = events[-MAX_EVENTS:]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
        tmp.replace(self.path)

    def read(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict):
                    out.append(data)
        return out


@dataclass
class _Backoff:
    failures: int = 0
    next_start: float = 0.0


@dataclass
class ProcessKeeper:
    """Restarts the local zkop processes that died (operator replicas and the keeper process),
    with their recorded command line and a crash-loop backoff (1 s doubling to 60 s; a run of
    30 s resets it). Only processes that zkop started and ``zkop down`` did not stop are kept."""

    state_dir: Path
    backoff: dict[Path, _Backoff] = field(default_factory=dict)

    def units(self) -> list[ProcessUnit]:
        found = [keeper_unit(self.state_dir)]
        operators = self.state_dir / "operators"
        if operators.is_dir():
            found += [ProcessUnit(d, log_name="operator.log") for d in sorted(operators.iterdir()) if d.is_dir()]
        return found

    def restart_dead(self, *, now: float | None = None) -> list[tuple[str, str]]:
        """Start what died; returns (unit, what happened) for events."""
        at = time.time() if now is None else now
        done: list[tuple[str, str]] = []
        for unit in self.units():
            rec = unit.record()
            if rec is None or rec.pid == os.getpid() or unit.running() is not None:
                continue
            state = self.backoff.setdefault(unit.directory, _Backoff())
            if at < state.next_start:
                continue
            ran = at - rec.started_at
            state.failures = 0 if ran > STABLE_RUN else state.failures + 1
            state.next_start = at + min(BACKOFF_MAX, 2.0 ** max(0, state.failures - 1))
            name = unit.directory.relative_to(self.state_dir).as_posix()
            try:
                new = unit.start(list(rec.argv))
            except OSError as exc:
                done.append((name, f"could not be restarted: {exc}"))
                continue
            done.append((name, f"restarted (pid {new.pid}) after it ended"))
        return done
