"""Container processes: how one is started (with or without a mount namespace), waited for and stopped.

Isolation ``mount`` (root with util-linux ``unshare``): each container runs in a mount and UTS
namespace of its own. Its volumes are bind-mounted at their real ``mountPath`` (read-only where
the Pod says so), the Pod's hosts file is bound over ``/etc/hosts`` and its hostname is the Pod's;
everything else is the machine's filesystem. Mount points that do not exist on the machine are
created there (empty directories or files) and left in place: a mount point may be in use by a
container of another agent on the same machine, and removing it would detach that mount.

Isolation ``none`` (fallback): the program runs as is; its volumes are symlinks under a
per-container root (``ZKOP_POD_ROOT``) that programs must prefix themselves.

Every container is its own process group (its own session); stopping it signals the group,
and when its first process exits the rest of the group is killed, as when a container's pid 1
exits. With ``setpriv`` present, a container's first process is also killed if the agent's
thread that started it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ISOLATION_MOUNT = "mount"
ISOLATION_NONE = "none"


@dataclass(frozen=True)
class Mount:
    """A volume (``source`` on the machine) seen at ``target`` (an absolute path) in a container."""

    source: Path
    target: str
    read_only: bool = False


@dataclass
class Launch:
    """Everything needed to start one container process."""

    argv: list[str]
    env: dict[str, str]
    log: Path
    root: Path  # the container's own directory (its root with isolation "none")
    hostname: str
    workdir: str | None = None
    mounts: list[Mount] = field(default_factory=list)
    hosts_file: Path | None = None


def detect_isolation(requested: str = "auto") -> str:
    """``mount`` when asked or possible (root, ``unshare`` works), else ``none``."""
    if requested == ISOLATION_NONE:
        return ISOLATION_NONE
    problem = ""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0:
        problem = "not root"
    elif unshare is None:
        problem = "unshare (util-linux) not found"
    else:
        try:
            probe = subprocess.run(
                [unshare, "--mount", "--uts", "--propagation", "private", "--", "true"],
                capture_output=True,
                timeout=10,
                check=False,
            )
            if probe.returncode != 0:
                problem = f"unshare failed: {probe.stderr.decode(errors='replace').strip()}"
        except (OSError, subprocess.TimeoutExpired) as e:
            problem = f"unshare failed: {e}"
    if problem:
        if requested == ISOLATION_MOUNT:
            raise RuntimeError(f"isolation 'mount' is not available: {problem}")
        return ISOLATION_NONE
    return ISOLATION_MOUNT


def _pdeathsig_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL"] if setpriv else []


def _mount_script(launch: Launch) -> str:
    q = shlex.quote
    lines = ["set -e", f"echo {q(launch.hostname)} > /proc/sys/kernel/hostname"]
    # Parents before children, so a volume mounted inside another one lands in it.
    for m in sorted(launch.mounts, key=lambda m: (m.target.rstrip("/").count("/"), m.target)):
        t, s = q(m.target), q(str(m.source))
        if m.source.is_dir():
            lines.append(f"[ -e {t} ] || mkdir -p {t}")
        else:
            lines.append(f"[ -e {t} ] || {{ mkdir -p {q(os.path.dirname(m.target) or '/')}; : > {t}; }}")
        lines.append(f"mount --bind {s} {t}")
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {t}")
    if launch.hosts_file is not None:
        lines.append(f"mount --bind {q(str(launch.hosts_file))} /etc/hosts")
    if launch.workdir:
        lines.append(f"mkdir -p {q(launch.workdir)}")
        lines.append(f"cd {q(launch.workdir)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def command_line(launch: Launch, isolation: str) -> tuple[list[str], str]:
    """The argv to spawn and the directory to spawn it in."""
    if isolation == ISOLATION_MOUNT:
        argv = [
            *_pdeathsig_prefix(),
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            _mount_script(launch),
            "zkop-container",
            *launch.argv,
        ]
        return argv, str(launch.root)
    cwd = launch.root
    if launch.workdir:
        candidate = launch.root / launch.workdir.lstrip("/")
        candidate.mkdir(parents=True, exist_ok=True)
        cwd = candidate
    return [*_pdeathsig_prefix(), *launch.argv], str(cwd)


def exit_code(returncode: int) -> int:
    """A container's exit code: 128 + the signal for a process killed by one."""
    return 128 - returncode if returncode < 0 else returncode


class Proc:
    """A started process that leads its own process group."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.started = time.time()
        self._done: asyncio.Future[int] | None = None

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        output: Path | int | None = None,
    ) -> Proc:
        """Start ``argv`` at once (no await: nothing can be lost to a cancellation half way).

        Its stdout and stderr go to ``output``: a file appended to, an open descriptor, or nowhere.
        """
        if isinstance(output, Path):
            output.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        else:
            fd = subprocess.DEVNULL if output is None else output
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            if isinstance(output, Path):
                os.close(fd)
        return cls(popen)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def running(self) -> bool:
        return self.popen.returncode is None

    def signal_group(self, sig: int) -> None:
        """Signal the process group (only while the leader is not reaped: its pid holds the group id)."""
        if self.popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _reap(self) -> int:
        # The leader is a zombie here, so its pid (the group's id) cannot have been reused:
        # kill what is left of the group, as a container's processes die with its pid 1.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return exit_code(self.popen.wait())

    def wait(self) -> asyncio.Future[int]:
        """A future of the exit code (container style), resolved when the process exits."""
        if self._done is not None:
            return self._done
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self._done = done

        def finish() -> None:
            if not done.done():
                done.set_result(self._reap())

        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            pidfd = -1
        if pidfd >= 0:

            def readable() -> None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                finish()

            loop.add_reader(pidfd, readable)
        else:

            def waiter() -> None:
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                loop.call_soon_threadsafe(finish)

            threading.Thread(target=waiter, name=f"wait-{self.pid}", daemon=True).start()
        return done

    async def terminate(self, grace: float, sig: int = signal.SIGTERM) -> int:
        """``sig`` (SIGTERM) to the group, SIGKILL after ``grace`` seconds; the exit code."""
        done = self.wait()
        if not done.done():
            self.signal_group(sig)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), timeout=max(grace, 0.0))
        if not done.done():
            self.signal_group(signal.SIGKILL)
        return await asyncio.shield(done)

    def kill_now(self) -> None:
        """SIGKILL the group and reap the leader, blocking (for the last resort at shutdown)."""
        if self.popen.returncode is None:
            self.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)


async def run_command(
    argv: Sequence[str], env: Mapping[str, str], cwd: str, timeout: float, limit: int = 10240
) -> tuple[int | None, str]:
    """Run a short command; ``(exit code, or None when it timed out and was killed; its output)``."""
    with tempfile.TemporaryFile() as out:
        proc = Proc.spawn(argv, env, cwd, out.fileno())
        try:
            code: int | None = await asyncio.wait_for(asyncio.shield(proc.wait()), timeout)
        except TimeoutError:
            code = None
            await proc.terminate(0, signal.SIGKILL)
        except asyncio.CancelledError:
            proc.signal_group(signal.SIGKILL)
            raise
        out.seek(0)
        return code, out.read(limit).decode("utf-8", "replace")


def exec_argv(command: Sequence[str], pid: int | None, isolation: str, workdir: str | None) -> list[str]:
    """``command`` run inside a container's namespaces (the container's first process is ``pid``)."""
    if isolation == ISOLATION_MOUNT and pid is not None:
        return ["nsenter", f"--target={pid}", "--mount", "--uts", f"--wd={workdir or '/'}", "--", *command]
    return list(command)
