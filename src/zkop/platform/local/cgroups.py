"""Per-instance cgroup v2 directories: memory.max and cpu.max limits, CPU accounting.

Used when zkop may write a cgroup: ``ZKOP_CGROUP_ROOT`` names a delegated one, else this
process's own cgroup when its controllers can be enabled for children.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_PREFIX = "zkop."
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes
    cpu: float | None = None  # cores


def size(n: int) -> str:
    """Bytes as a readable quantity: ``314572800`` -> ``300Mi``."""
    for unit, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n} bytes"


def _own_cgroup() -> Path | None:
    """This process's cgroup v2 directory, when the unified hierarchy is mounted."""
    try:
        rel = next(
            line[3:].strip() for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::")
        )
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                mount = Path(left.split()[4])
                candidate = mount / rel.lstrip("/")
                if candidate.is_dir():
                    return candidate
    except (OSError, StopIteration, IndexError):
        pass
    return None


class Cgroups:
    """Per-instance cgroups under ``root`` (a cgroup v2 directory zkop may write)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    @classmethod
    def detect(cls) -> Cgroups:
        configured = os.environ.get("ZKOP_CGROUP_ROOT")
        return cls(Path(configured) if configured else _own_cgroup())

    def _controllers(self) -> tuple[set[str], str]:
        """Controllers children of the root get, and why the others are missing."""
        if self.root is None:
            return set(), "no cgroup v2 hierarchy is mounted"
        try:
            available = set((self.root / "cgroup.controllers").read_text().split())
            enabled = set((self.root / "cgroup.subtree_control").read_text().split())
        except OSError as exc:
            return set(), f"cannot read cgroup {self.root}: {exc.strerror or exc}"
        for ctl in ("cpu", "memory"):
            if ctl in available and ctl not in enabled:
                try:
                    (self.root / "cgroup.subtree_control").write_text(f"+{ctl}")
                    enabled.add(ctl)
                except OSError:
                    pass
        missing = {"cpu", "memory"} - enabled
        if not missing:
            return enabled, ""
        which = " and ".join(sorted(missing))
        why = (
            f"the cgroup v2 {which} controller{'s are' if len(missing) > 1 else ' is'} not available to zkop"
            f" in {self.root}; set ZKOP_CGROUP_ROOT to a delegated cgroup"
        )
        return enabled, why

    def prepare(self, name: str, limits: Limits) -> tuple[Path | None, list[str], list[str], set[str]]:
        """Make the instance's cgroup with its limits.

        Returns (cgroup dir or None, enforced, not enforced, controllers used).
        """
        if limits.memory is None and limits.cpu is None:
            return None, [], [], set()
        enabled, why = self._controllers()
        wanted = {c for c, v in (("memory", limits.memory), ("cpu", limits.cpu)) if v is not None}
        usable = wanted & enabled
        if not usable or self.root is None:
            return None, [], [why], set()
        directory = self.root / f"{CGROUP_PREFIX}{name}"
        enforced: list[str] = []
        problems: list[str] = []
        try:
            directory.mkdir(exist_ok=True)
        except OSError as exc:
            return None, [], [f"cannot create cgroup {directory}: {exc.strerror or exc}"], set()
        used: set[str] = set()
        if "memory" in usable and limits.memory is not None:
            try:
                (directory / "memory.max").write_text(str(limits.memory))
                with contextlib.suppress(OSError):
                    (directory / "memory.swap.max").write_text("0")
                enforced.append(f"memory {size(limits.memory)} (cgroup v2 memory.max)")
                used.add("memory")
            except OSError as exc:
                problems.append(f"memory.max: {exc.strerror or exc}")
        if "cpu" in usable and limits.cpu is not None:
            quota = max(1000, round(limits.cpu * CPU_PERIOD_US))
            try:
                (directory / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
                enforced.append(f"cpu {limits.cpu:g} cores (cgroup v2 cpu.max {quota}/{CPU_PERIOD_US})")
                used.add("cpu")
            except OSError as exc:
                problems.append(f"cpu.max: {exc.strerror or exc}")
        if why:
            problems.append(why)
        return (directory if used else None), enforced, problems, used

    def remove(self, name: str) -> None:
        if self.root is not None:
            with contextlib.suppress(OSError):
                (self.root / f"{CGROUP_PREFIX}{name}").rmdir()

    def cpu_seconds(self, name: str) -> float | None:
        if self.root is None:
            return None
        try:
            for line in (self.root / f"{CGROUP_PREFIX}{name}" / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        except (OSError, ValueError):
            pass
        return None
