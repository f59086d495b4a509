"""ZooKeeper clusters on the local platform: the effects the ZookeeperCluster controller asks for.

One :class:`~zkop.platform.local.ensemble.LocalEnsemble` per cluster, named
``zkc-<namespace>-<name>``. Every action runs under the platform's epoch fence, so an
operator replica whose term is over cannot start, stop or purge anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from zkop.platform.local.ensemble import EnsembleRecord, LocalEnsemble, MemberRecord, MemberStatus
from zkop.platform.local.fence import EpochFence
from zkop.zk import fourlw
from zkop.zk.config import MemberAddress, ServerSettings, parse_membership


def ensemble_name(namespace: str, name: str) -> str:
    return f"zkc-{namespace}-{name}"


def settings_hash(settings: ServerSettings, zookeeper_home: str | None) -> str:
    data = asdict(settings) | {"additional": dict(settings.additional), "home": zookeeper_home}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ClusterView:
    """Everything observed about one cluster's members, right now."""

    members: list[MemberStatus]
    started: dict[int, tuple[str | None, float | None]]  # id -> (config hash, started_at)
    config_members: list[MemberAddress]
    config_version: int | None
    next_id: int


class LocalZookeeperPlatform:
    def __init__(self, state_dir: Path, fence: EpochFence) -> None:
        self.state_dir = state_dir
        self.fence = fence

    def ensemble(self, namespace: str, name: str) -> LocalEnsemble:
        return LocalEnsemble(self.state_dir, ensemble_name(namespace, name))

    # ---- observation -------------------------------------------------------------

    async def observe(self, namespace: str, name: str) -> ClusterView | None:
        ens = self.ensemble(namespace, name)
        if not ens.exists():
            return None
        record = ens.load()
        members = await ens.observe(timeout=1.0)
        started = {m.id: self._started(ens, m.id) for m in members}
        config_members, version = await self._committed_config(ens, members)
        return ClusterView(members, started, config_members, version, record.next_id)

    @staticmethod
    def _started(ens: LocalEnsemble, member_id: int) -> tuple[str | None, float | None]:
        try:
            data = json.loads((ens.member_dir(member_id) / "started.json").read_text())
            return data.get("hash"), data.get("at")
        except (OSError, ValueError):
            return None, None

    async def _committed_config(
        self, ens: LocalEnsemble, members: Sequence[MemberStatus]
    ) -> tuple[list[MemberAddress], int | None]:
        """The membership the ensemble has committed: asked of a serving member, the leader
        first (a follower may not have activated a just-committed change yet, and a member
        wrongly seen outside the configuration would be forgotten), else read from the newest
        dynamic file on disk (ZooKeeper writes one per config version)."""
        for m in sorted(members, key=lambda m: (m.state.mode != "leader", m.id)):
            if m.serving:
                conf = await fourlw.conf(m.address.host, m.address.client_port, timeout=1.0)
                if conf.reachable and conf.members:
                    return list(conf.members), conf.config_version
        best: tuple[int, str] | None = None
        for m in members:
            for f in ens.member_dir(m.id).glob("zoo.cfg.dynamic.*"):
                try:
                    version = int(f.name.rsplit(".", 1)[1], 16)
                except ValueError:
                    continue
                if best is None or version > best[0]:
                    best = (version, f.read_text())
        if best is None:
            for m in members:
                f = ens.member_dir(m.id) / "zoo.cfg.dynamic"
                if f.is_file():
                    found, _ = parse_membership(f.read_text())
                    return found, None
            return [], None
        found, _ = parse_membership(best[1])
        return found, best[0]

    # ---- effects (all fenced) ----------------------------------------------------

    def _mark_started(self, ens: LocalEnsemble, member_id: int, config_hash: str) -> None:
        (ens.member_dir(member_id) / "started.json").write_text(json.dumps({"hash": config_hash, "at": time.time()}))

    async def create(
        self,
        namespace: str,
        name: str,
        ids: Sequence[int],
        settings: ServerSettings,
        zookeeper_home: str | None,
        config_hash: str,
        *,
        epoch: int | None,
    ) -> None:
        def work() -> None:
            with self.fence.hold(epoch):
                ens = self.ensemble(namespace, name)
                if not ens.exists():
                    ens.create(len(ids), settings=settings, zookeeper_home=zookeeper_home)
                for i in ens.member_ids():
                    ens.start_member(i)
                    self._mark_started(ens, i, config_hash)

        await asyncio.to_thread(work)

    async def start_member(self, namespace: str, name: str, member_id: int, *, epoch: int | None) -> None:
        def work() -> None:
            with self.fence.hold(epoch):
                ens = self.ensemble(namespace, name)
                ens.start_member(member_id)

        await asyncio.to_thread(work)

    async def add_member(
        self,
        namespace: str,
        name: str,
        member_id: int,
        membership: Sequence[MemberAddress],
        settings: ServerSettings,
        zookeeper_home: str | None,
        config_hash: str,
        *,
        epoch: int | None,
    ) -> MemberRecord:
        def work() -> MemberRecord:
            with self.fence.hold(epoch):
                ens = self.ensemble(namespace, name)
                ens.update_settings(settings, zookeeper_home)
                new = ens.add_member(membership, member_id)
                ens.start_member(new.id)
                self._mark_started(ens, new.id, config_hash)
                return new

        return await asyncio.to_thread(work)

    async def stop_member(self, namespace: str, name: str, member_id: int, *, purge: bool, epoch: int | None) -> None:
        def work() -> None:
            with self.fence.hold(epoch):
                ens = self.ensemble(namespace, name)
                ens.stop_member(member_id, grace=10.0)
                ens.forget_member(member_id, purge_data=purge)

        await asyncio.to_thread(work)

    async def restart_member(
        self,
        namespace: str,
        name: str,
        member_id: int,
        settings: ServerSettings,
        zookeeper_home: str | None,
        config_hash: str,
        *,
        epoch: int | None,
    ) -> None:
        def work() -> None:
            with self.fence.hold(epoch):
                ens = self.ensemble(namespace, name)
                ens.update_settings(settings, zookeeper_home)
                ens.stop_member(member_id, grace=10.0)
                ens.rewrite_static_config(member_id, settings)
                ens.start_member(member_id)
                self._mark_started(ens, member_id, config_hash)

        await asyncio.to_thread(work)

    async def destroy(self, namespace: str, name: str, *, purge: bool, epoch: int | None) -> None:
        """After the last member stopped: remove the ensemble's files, or keep them (Retain)."""

        def work() -> None:
            with self.fence.hold(epoch):
                ens = self.ensemble(namespace, name)
                if not ens.exists():
                    return
                if purge:
                    ens.stop(grace=10.0)
                    ens.destroy()
                else:
                    retained = self.state_dir / "retained" / f"{ens.name}-{int(time.time())}"
                    retained.parent.mkdir(parents=True, exist_ok=True)
                    ens.stop(grace=10.0)
                    ens.dir.rename(retained)

        await asyncio.to_thread(work)

    def super_password(self, namespace: str, name: str) -> str:
        return self.ensemble(namespace, name).super_password()

    def record(self, namespace: str, name: str) -> EnsembleRecord:
        return self.ensemble(namespace, name).load()
