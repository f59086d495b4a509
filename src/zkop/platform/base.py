"""The seam between controllers and where processes run.

A controller asks a platform to make a member exist, to stop it, or to tell what
exists; it never starts processes itself. Every action carries the epoch of the
leadership term it was decided in, and a platform refuses an action whose epoch
is older than the newest it has seen (fencing). ``epoch=None`` is a person acting
by hand through the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from zkop.errors import ZkopError
from zkop.zk.config import MemberAddress, ServerSettings
from zkop.zk.fourlw import ServerState


class FencedError(ZkopError):
    """A platform action carried an epoch older than one already seen: the caller was deposed."""


@dataclass(frozen=True)
class Resources:
    """CPU (cores) and memory (bytes), as requested by an instance or offered by a machine."""

    cpu: float = 0.0
    memory: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.memory + other.memory)


@dataclass(frozen=True)
class MemberSpec:
    """What one ZooKeeper member should be."""

    cluster: str
    member_id: int
    settings: ServerSettings
    # The dynamic configuration a brand-new member starts with (ignored when it has data).
    membership: tuple[MemberAddress, ...] = ()
    zookeeper_home: str | None = None


@dataclass(frozen=True)
class MemberObservation:
    """One member as the platform sees it now."""

    cluster: str
    member_id: int
    address: MemberAddress
    running: bool
    paused: bool
    pid: int | None
    restarts: int
    data_present: bool
    state: ServerState

    @property
    def serving(self) -> bool:
        return self.running and not self.paused and self.state.serving


class Platform(Protocol):
    """Where ZooKeeper members run: local processes now, Kubernetes Pods later."""

    name: str

    async def ensure_member(self, spec: MemberSpec, *, epoch: int | None) -> MemberObservation:
        """Make the member exist and run (create its files on first use)."""
        ...

    async def stop_member(self, cluster: str, member_id: int, *, epoch: int | None, grace: float = 10.0) -> None:
        """Stop the member's process; keep its data."""
        ...

    async def remove_member(self, cluster: str, member_id: int, *, epoch: int | None, purge_data: bool) -> None:
        """Stop the member and forget it; delete its data when ``purge_data``."""
        ...

    async def observe(self, cluster: str) -> Sequence[MemberObservation]:
        """Every member the platform knows for the cluster, running or not."""
        ...
