"""One look at an ensemble and one step towards what is desired: observe through the platform
contract, ask the pure planner (:mod:`.plan`), act, say what was done.

Shared by the ZookeeperCluster controller (desired state from the store, events and status
there) and the control-plane keeper (desired state from the local state dir, which must heal
even when the store is down). Nothing here knows where members run.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from zkop.client.bridge import ZkClient
from zkop.controllers.zookeepercluster import plan as P
from zkop.platform.base import (
    ClusterObservation,
    ClusterRef,
    MemberObservation,
    MemberTemplate,
    TlsFiles,
    ZookeeperPlatform,
)
from zkop.zk import auth, fourlw
from zkop.zk import tls as tlslib
from zkop.zk.config import MemberAddress

HANDOVER_TIMEOUT = 30.0  # seconds to wait for a new leader after the leader was stopped to roll
HANDOVER_POLL = 0.2

# (type, reason, message): Normal or Warning, a CamelCase reason, a sentence.
EventSink = Callable[[str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class Look:
    """What one observation found: the platform's members and the committed configuration."""

    observation: ClusterObservation | None
    config_members: tuple[MemberAddress, ...]
    config_version: int | None
    members: tuple[P.ObservedMember, ...]

    @property
    def platform_members(self) -> tuple[MemberObservation, ...]:
        return self.observation.members if self.observation else ()

    @property
    def next_id(self) -> int:
        return self.observation.next_id if self.observation else 1

    @property
    def participants(self) -> set[int]:
        return {m.id for m in self.config_members if m.role == "participant"}


def _role(m: MemberObservation) -> P.Role:
    if m.ready and m.state.mode in ("leader", "follower", "observer"):
        return m.state.mode  # type: ignore[return-value]
    return "unknown"


def tls_context(obs: ClusterObservation, member: MemberObservation) -> ssl.SSLContext | None:
    """How the operator reaches ``member``'s client port: with its client certificate when the
    port speaks TLS (the four-letter words are answered there after the handshake)."""
    if not member.client_tls or obs.client_tls is None:
        return None
    return tlslib.client_context(obs.client_tls)


async def committed_config(obs: ClusterObservation) -> tuple[tuple[MemberAddress, ...], int | None]:
    """The membership the ensemble has committed: asked of a serving member, the leader first
    (a follower may not have activated a just-committed change yet, and a member wrongly seen
    outside the configuration would be stopped), else what the members keep on disk."""
    for m in sorted(obs.members, key=lambda m: (m.state.mode != "leader", m.id)):
        if m.ready:
            host, _, port = m.endpoint.rpartition(":")
            conf = await fourlw.conf(host, int(port), timeout=1.0, tls=tls_context(obs, m))
            if conf.reachable and conf.members:
                return tuple(conf.members), conf.config_version
    return obs.stored_membership, obs.stored_config_version


class EnsembleAdmin(Protocol):
    """What the operator asks of the ZooKeeper servers themselves (the same on every platform)."""

    async def committed_config(self, obs: ClusterObservation) -> tuple[tuple[MemberAddress, ...], int | None]: ...

    async def reconfig(
        self,
        via: str,
        password: str,
        *,
        joining: MemberAddress | None,
        leaving: int | None,
        from_config: int,
        tls: TlsFiles | None = None,
    ) -> None:
        """``via``: host:port of a member's client port that stays; ``tls``: the operator's
        client certificate when that port speaks TLS."""
        ...


class ZooKeeperAdmin:
    """The servers asked over the network: ``conf`` (four-letter word) and ``reconfig`` as the
    cluster's super user."""

    async def committed_config(self, obs: ClusterObservation) -> tuple[tuple[MemberAddress, ...], int | None]:
        return await committed_config(obs)

    async def reconfig(
        self,
        via: str,
        password: str,
        *,
        joining: MemberAddress | None,
        leaving: int | None,
        from_config: int,
        tls: TlsFiles | None = None,
    ) -> None:
        client = ZkClient(via, auth_data=[auth.super_auth(password)], session_timeout=10, tls=tls)
        await client.start(timeout=10)
        try:
            if joining is not None:
                await client.reconfig(joining=joining.server_line(), from_config=from_config)
            else:
                await client.reconfig(leaving=str(leaving), from_config=from_config)
        finally:
            await client.stop()


class EnsembleDriver:
    """Observe, decide, act for any number of ensembles on one platform. Keeps only timers
    (since when a member has not answered), never the world's state."""

    def __init__(
        self,
        platform: ZookeeperPlatform,
        *,
        unresponsive_grace: float = 30.0,
        startup_grace: float = 60.0,
        election_grace: float = 10.0,
        admin: EnsembleAdmin | None = None,
    ) -> None:
        self.platform = platform
        self.admin = admin or ZooKeeperAdmin()
        self.unresponsive_grace = unresponsive_grace
        self.startup_grace = startup_grace
        self.election_grace = election_grace
        self._stuck_since: dict[str, dict[int, float]] = {}

    def forget(self, cluster: ClusterRef) -> None:
        self._stuck_since.pop(cluster.key, None)

    async def look(self, cluster: ClusterRef, *, now: float | None = None) -> Look:
        obs = await self.platform.observe(cluster)
        if obs is None:
            self.forget(cluster)
            return Look(None, (), None, ())
        config_members, version = await self.admin.committed_config(obs)
        in_config = {m.id for m in config_members if m.role == "participant"}
        stuck = self._stuck_since.setdefault(cluster.key, {})
        at = time.time() if now is None else now
        members = []
        for m in obs.members:
            if m.running and not m.ready:
                stuck.setdefault(m.id, at)
            else:
                stuck.pop(m.id, None)
            members.append(
                P.ObservedMember(
                    id=m.id,
                    in_config=m.id in in_config,
                    process_running=m.running,
                    paused=m.unresponsive,
                    serving=m.ready,
                    role=_role(m),
                    syncing=m.state.syncing,
                    data_present=m.data_present,
                    config_hash=m.config_hash,
                    unresponsive_since=stuck.get(m.id),
                    started_at=m.started_at,
                    certificate_expires=m.certificate_expires,
                )
            )
        for gone in set(stuck) - {m.id for m in obs.members}:
            stuck.pop(gone)
        return Look(obs, config_members, version, tuple(members))

    def decide(self, look: Look, desired: P.Desired, *, now: float | None = None) -> P.Action:
        return P.plan(
            look.members,
            desired,
            next_id=look.next_id,
            now=time.time() if now is None else now,
            unresponsive_grace=self.unresponsive_grace,
            startup_grace=self.startup_grace,
            election_grace=self.election_grace,
        )

    async def act(
        self,
        cluster: ClusterRef,
        look: Look,
        action: P.Action,
        template: MemberTemplate,
        *,
        epoch: int | None,
        event: EventSink,
    ) -> None:
        """Do ``action`` and record an event saying so. Wait, Done and Degraded change nothing
        (Degraded is reported as a Warning)."""
        platform = self.platform
        if isinstance(action, P.CreateMembers):
            addresses = [await platform.reserve_address(cluster, i, template, epoch=epoch) for i in action.ids]
            for i in action.ids:
                await platform.ensure_member(cluster, i, template, addresses, epoch=epoch)
            await event("Normal", "Created", f"started members {list(action.ids)}")
        elif isinstance(action, P.StartMember):
            await platform.ensure_member(cluster, action.id, template, look.config_members, epoch=epoch)
            await event("Normal", "Healed", f"restarted member {action.id} with its id and data")
        elif isinstance(action, P.AddMember):
            await platform.reserve_address(cluster, action.id, template, epoch=epoch)
            await platform.ensure_member(cluster, action.id, template, look.config_members, epoch=epoch)
            await event("Normal", "MemberStarting", f"started member {action.id}; it joins once synced")
        elif isinstance(action, P.ReconfigIn):
            joiner = next(m for m in look.platform_members if m.id == action.id)
            await self.reconfig(cluster, look, joining=joiner.address)
            await event("Normal", "MemberAdded", f"member {action.id} is a participant (reconfig)")
        elif isinstance(action, P.ReconfigOut):
            await self.reconfig(cluster, look, leaving=action.id)
            await event("Normal", "MemberRemoved", f"member {action.id} left the configuration ({action.reason})")
        elif isinstance(action, P.StopMember):
            await platform.remove_member(cluster, action.id, purge_data=action.purge, epoch=epoch)
            what = "purged" if action.purge else "retained"
            await event("Normal", "MemberStopped", f"member {action.id} stopped ({action.reason}); data {what}")
        elif isinstance(action, P.RestartMember):
            was_leader = any(m.id == action.id and m.is_leader for m in look.members)
            await platform.stop_member(cluster, action.id, epoch=epoch)
            if was_leader:
                # Let the others elect a leader before the old one is back: restarted at once it
                # would join the election and, with the highest id, lead again (the leader would
                # change twice instead of once).
                await self._await_new_leader(cluster, action.id)
            await platform.ensure_member(cluster, action.id, template, look.config_members, epoch=epoch)
            await event("Normal", "RollingRestart", f"restarted member {action.id} ({action.reason})")
        elif isinstance(action, P.Degraded):
            await event("Warning", str(action.reason), action.detail or str(action.reason))

    async def _await_new_leader(self, cluster: ClusterRef, old: int, timeout: float = HANDOVER_TIMEOUT) -> None:
        """Until a member other than ``old`` leads (bounded: a slow election only costs time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obs = await self.platform.observe(cluster)
            if obs is None or any(m.ready and m.state.mode == "leader" and m.id != old for m in obs.members):
                return
            await asyncio.sleep(HANDOVER_POLL)

    async def reconfig(
        self,
        cluster: ClusterRef,
        look: Look,
        *,
        joining: MemberAddress | None = None,
        leaving: int | None = None,
    ) -> None:
        """Reconfigure as the cluster's super user, through a member that stays, from the
        configuration version observed (a concurrent change makes this fail, not vanish)."""
        changing = joining.id if joining is not None else leaving
        via = sorted(
            (m for m in look.platform_members if m.ready and m.id != changing),
            key=lambda m: m.state.mode != "leader",
        )
        if not via:
            raise TimeoutError("no serving member to reconfigure through")
        password = await self.platform.super_password(cluster)
        tls = look.observation.client_tls if look.observation is not None and via[0].client_tls else None
        await self.admin.reconfig(
            via[0].endpoint,
            password,
            joining=joining,
            leaving=leaving,
            from_config=look.config_version or -1,
            tls=tls,
        )


def connection_string(look: Look) -> str:
    """The client endpoints of the members in the configuration, in id order."""
    ids = look.participants | {m.id for m in look.config_members}
    return ",".join(m.address.client_endpoint for m in sorted(look.platform_members, key=lambda m: m.id) if m.id in ids)


__all__ = [
    "EnsembleAdmin",
    "EnsembleDriver",
    "EventSink",
    "Look",
    "ZooKeeperAdmin",
    "committed_config",
    "connection_string",
    "tls_context",
]
