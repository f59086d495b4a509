"""The control-plane keeper: operates the ZooKeeper ensemble that holds zkop's own store.

The operator cannot heal this ensemble through its store (the store *is* this ensemble, and
without quorum nobody can write or even elect a leader). So the keeper takes its desired
state from outside the store (a source the composition root gives it), acts without a
leadership epoch (exactly one keeper acts at a time, by a lock the caller holds), and reports
through an event sink that needs no quorum. The decisions are the ZookeeperCluster
operator's own (:mod:`zkop.controllers.zookeepercluster.plan`): a dead member is restarted
with its id and data, a lost or hung one is replaced by a new id through reconfig, the size
follows the desired count, one change at a time, quorum first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kazoo.exceptions import KazooException

from zkop.controllers.zookeepercluster import plan as P
from zkop.controllers.zookeepercluster.driver import EnsembleDriver, EventSink, Look
from zkop.errors import ZkopError
from zkop.platform.base import ClusterRef, MemberTemplate, ZookeeperPlatform

log = logging.getLogger("zkop.keeper")

CONTROL_PLANE = ClusterRef("zkop-system", "control-plane")


@dataclass(frozen=True)
class ControlPlaneSpec:
    """What the control plane should be: its size and what its members run."""

    members: int
    template: MemberTemplate


@dataclass(frozen=True)
class Step:
    action: P.Action
    look: Look
    error: Exception | None = None

    @property
    def next_look(self) -> float:
        """Seconds until the keeper should look again."""
        if self.error is not None:
            return 1.0
        if isinstance(self.action, P.Done | P.Wait | P.Degraded):
            return 0.5
        return 0.2


class ControlPlaneKeeper:
    def __init__(
        self,
        platform: ZookeeperPlatform,
        spec: Callable[[], Awaitable[ControlPlaneSpec | None]],
        event: EventSink,
        *,
        unresponsive_grace: float = 30.0,
        startup_grace: float = 60.0,
        cluster: ClusterRef = CONTROL_PLANE,
    ) -> None:
        self.spec = spec
        self.event = event
        self.cluster = cluster
        self.driver = EnsembleDriver(platform, unresponsive_grace=unresponsive_grace, startup_grace=startup_grace)
        self._last: P.Action | None = None

    async def step(self) -> Step | None:
        """One look and at most one action. None when there is no control plane."""
        spec = await self.spec()
        if spec is None:
            return None
        desired = P.Desired(replicas=spec.members, config_hash=spec.template.config_hash, reclaim_policy="Retain")
        look = await self.driver.look(self.cluster)
        if look.observation is None:
            return None
        action = self.driver.decide(look, desired)
        # A lasting state (quorum lost, or a wait) is reported once, not at every look.
        quiet = isinstance(action, P.Done | P.Wait) or action == self._last
        self._last = action

        async def event(type_: str, reason: str, message: str) -> None:
            if not (quiet and isinstance(action, P.Degraded)):
                await self.event(type_, reason, message)

        if not quiet:
            log.info("control plane: %s", action.detail or type(action).__name__)
        try:
            await self.driver.act(self.cluster, look, action, spec.template, epoch=None, event=event)
        except (KazooException, OSError, TimeoutError, ZkopError) as exc:
            log.warning("control plane: %s failed: %s", type(action).__name__, exc)
            await self.event("Warning", "ActionFailed", f"{action.detail or type(action).__name__}: {exc}")
            self._last = None
            return Step(action, look, exc)
        return Step(action, look)


__all__ = ["CONTROL_PLANE", "ControlPlaneKeeper", "ControlPlaneSpec", "Step"]
