"""ZooKeeper ensembles on the local platform (the :class:`~zkop.platform.base.ZookeeperPlatform`
contract): one :class:`~zkop.platform.local.ensemble.LocalEnsemble` per cluster, named
``zkc-<namespace>-<name>``, its members supervised processes on loopback ports.

Every action runs under the platform's epoch fence, so an operator replica whose term is
over cannot start, stop or purge anything. The control plane's own ensemble is served by an
instance with ``naming=control_plane_naming`` and no fence (its keeper holds a file lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from zkop.errors import ZkopError
from zkop.platform.base import (
    ClusterObservation,
    ClusterRef,
    LastExit,
    MemberObservation,
    MemberTemplate,
)
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble, MemberStatus
from zkop.platform.local.fence import EpochFence, run_fenced
from zkop.platform.local.process import exit_code
from zkop.platform.local.tls import LocalTls
from zkop.platform.notify import Subscribers
from zkop.zk import tls as tlslib
from zkop.zk.certs import Issued
from zkop.zk.config import MemberAddress

STOP_GRACE = 10.0


def ensemble_name(namespace: str, name: str) -> str:
    return f"zkc-{namespace}-{name}"


def cluster_naming(cluster: ClusterRef) -> str:
    return ensemble_name(cluster.namespace, cluster.name)


def control_plane_naming(_cluster: ClusterRef) -> str:
    return statedir.CONTROL_PLANE


class LocalZookeeperPlatform:
    name = "local"

    def __init__(
        self,
        state_dir: Path,
        fence: EpochFence | None,
        *,
        naming: Callable[[ClusterRef], str] = cluster_naming,
    ) -> None:
        self.state_dir = state_dir
        self.fence = fence
        self.naming = naming
        self._subscribers: Subscribers[ClusterRef] = Subscribers()
        self._exit_watches: dict[int, tuple[int, ClusterRef]] = {}  # pid -> (pidfd, cluster)

    # ---- exits as they happen ---------------------------------------------------------

    def subscribe(self, callback: Callable[[ClusterRef], None]) -> None:
        """``callback(cluster)`` runs (on the event loop) the moment an observed member's
        process ends, so the controller heals at once instead of at its next look."""
        self._subscribers.add(callback)

    def _watch_exits(self, cluster: ClusterRef, ens: LocalEnsemble, statuses: Sequence[MemberStatus]) -> None:
        """Arm a pidfd for every running member seen (Linux); the event loop wakes on its exit."""
        if not hasattr(os, "pidfd_open"):
            return
        loop = asyncio.get_running_loop()
        for s in statuses:
            if s.pid is None or s.pid in self._exit_watches or not s.running:
                continue
            try:
                fd = os.pidfd_open(s.pid)
            except OSError:
                continue
            self._exit_watches[s.pid] = (fd, cluster)
            loop.add_reader(fd, self._exited, s.pid)

    def _exited(self, pid: int) -> None:
        fd, cluster = self._exit_watches.pop(pid)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        self._subscribers.notify(cluster)

    def ensemble(self, cluster: ClusterRef) -> LocalEnsemble:
        return LocalEnsemble(self.state_dir, self.naming(cluster))

    # ---- observation -------------------------------------------------------------

    async def observe(self, cluster: ClusterRef) -> ClusterObservation | None:
        ens = self.ensemble(cluster)
        if not ens.exists():
            return None
        record = await asyncio.to_thread(ens.load)
        tls = LocalTls(ens)
        files = await asyncio.to_thread(tls.operator_files)
        context = tlslib.client_context(files) if files is not None else None
        secure = {m.id for m in record.members if context is not None and tls.client_tls(m.id)}
        statuses = await ens.observe(timeout=1.0, tls=lambda i: context if i in secure else None)
        if self._subscribers:
            self._watch_exits(cluster, ens, statuses)
        members = tuple(self._observation(ens, s, tls, secure) for s in statuses)
        stored, version = await asyncio.to_thread(ens.stored_membership, [s.id for s in statuses])
        return ClusterObservation(members, record.next_id, tuple(stored), version, client_tls=files)

    @staticmethod
    def _observation(ens: LocalEnsemble, s: MemberStatus, tls: LocalTls, secure: set[int]) -> MemberObservation:
        config_hash, _ = ens.started(s.id)
        last_exit = None
        if not s.running and (ens.member_dir(s.id) / "pid.json").is_file():
            rec = ens.unit(s.id).record()
            code = exit_code(rec.pid) if rec is not None else None
            if code is None:
                last_exit = LastExit("Unknown")
            elif code < 0:
                last_exit = LastExit("Killed", code)
            else:
                last_exit = LastExit("Completed" if code == 0 else "Error", code)
        return MemberObservation(
            id=s.id,
            address=s.address,
            running=s.running,
            ready=s.serving and not s.paused,
            unresponsive=s.paused,
            restarts=s.restarts,
            data_present=s.data_present,
            state=s.state,
            started_at=s.started_at,
            config_hash=config_hash,
            last_exit=last_exit,
            client_tls=s.id in secure,
            certificate_expires=tls.member_expires(s.id),
        )

    # ---- effects (all fenced) ----------------------------------------------------

    async def reserve_address(
        self, cluster: ClusterRef, member_id: int, template: MemberTemplate, *, epoch: int | None
    ) -> MemberAddress:
        out: list[MemberAddress] = []

        def work() -> None:
            ens = self.ensemble(cluster)
            ens.ensure_record(template.settings, template.zookeeper_home)
            out.append(ens.reserve_member(member_id).address)

        await run_fenced(self.fence, epoch, work)
        return out[0]

    async def ensure_member(
        self,
        cluster: ClusterRef,
        member_id: int,
        template: MemberTemplate,
        membership: Sequence[MemberAddress],
        *,
        epoch: int | None,
    ) -> None:
        def work() -> None:
            ens = self.ensemble(cluster)
            ens.ensure_record(template.settings, template.zookeeper_home)
            record = ens.reserve_member(member_id)
            if not ens.config_file(member_id).is_file():
                others = [a for a in membership if a.id != member_id]
                ens.write_member_files(member_id, [*others, record.address], template.settings)
            if ens.unit(member_id).running() is not None:
                return
            # Each start renders the current template, as a new Pod would get the new spec (and a
            # certificate is issued when the member has none or its own ends soon).
            ens.update_settings(template.settings, template.zookeeper_home)
            tls = LocalTls(ens)
            if template.tls is not None and template.tls.enabled:
                tls.ensure_member(member_id, record.address, template.tls)
            client, server_tls = tls.server_config(member_id, record.address, template.tls)
            ens.rewrite_static_config(member_id, template.settings, client=client, tls=server_tls)
            ens.start_member(member_id, template.config_hash)

        await run_fenced(self.fence, epoch, work)

    async def stop_member(self, cluster: ClusterRef, member_id: int, *, epoch: int | None) -> None:
        def work() -> None:
            self.ensemble(cluster).stop_member(member_id, grace=STOP_GRACE)

        await run_fenced(self.fence, epoch, work)

    async def remove_member(self, cluster: ClusterRef, member_id: int, *, purge_data: bool, epoch: int | None) -> None:
        def work() -> None:
            ens = self.ensemble(cluster)
            ens.stop_member(member_id, grace=STOP_GRACE)
            ens.forget_member(member_id, purge_data=purge_data)

        await run_fenced(self.fence, epoch, work)

    async def remove_cluster(self, cluster: ClusterRef, *, purge_data: bool, epoch: int | None) -> None:
        def work() -> None:
            ens = self.ensemble(cluster)
            if not ens.exists():
                return
            ens.stop(grace=STOP_GRACE)
            if purge_data:
                ens.destroy()
            else:
                retained = self.state_dir / "retained" / f"{ens.name}-{int(time.time())}"
                retained.parent.mkdir(parents=True, exist_ok=True)
                ens.dir.rename(retained)

        await run_fenced(self.fence, epoch, work)

    async def super_password(self, cluster: ClusterRef) -> str:
        ens = self.ensemble(cluster)
        try:
            return await asyncio.to_thread(ens.super_password)
        except OSError as exc:
            raise ZkopError(f"cluster {cluster.key} has no super-user password: {exc}") from None

    async def client_tls(self, cluster: ClusterRef) -> tlslib.TlsFiles | None:
        ens = self.ensemble(cluster)
        if not ens.exists():
            return None
        return await asyncio.to_thread(LocalTls(ens).operator_files)

    async def member_files(self, cluster: ClusterRef, member_id: int) -> Sequence[str]:
        vdir = self.ensemble(cluster).data_dir(member_id) / "version-2"

        def names() -> list[str]:
            if not vdir.is_dir():
                return []
            return sorted(f.name for f in vdir.iterdir() if f.name.startswith(("snapshot.", "log.")))

        return await asyncio.to_thread(names)

    async def seeding(self, cluster: ClusterRef) -> Sequence[int]:
        return ()  # `zkop backup restore` places the data before the member starts

    async def seed(self, cluster: ClusterRef, member_id: int, files: Sequence[tuple[str, Path, str]]) -> None:
        raise ZkopError("the local platform has no member waiting for data", hint="zkop backup restore places it")

    async def copy_member_file(self, cluster: ClusterRef, member_id: int, name: str, dest: Path) -> None:
        if "/" in name or not name.startswith(("snapshot.", "log.")):
            raise ZkopError(f"not a data file of a member: {name!r}")
        source = self.ensemble(cluster).data_dir(member_id) / "version-2" / name
        await asyncio.to_thread(shutil.copyfile, source, dest)

    # ---- TLS (not in the contract: what the local CLI asks of a cluster's CA) ----------------

    async def issue_client_certificate(
        self, cluster: ClusterRef, name: str, *, validity: float | None = None
    ) -> tuple[Issued, str]:
        """A client certificate for ``name`` signed by the cluster's CA, and the CA's certificate."""
        ens = self.ensemble(cluster)
        try:
            return await asyncio.to_thread(LocalTls(ens).issue_client, name, validity=validity)
        except FileNotFoundError:
            raise ZkopError(
                f"cluster {cluster.key} has no certificate authority", hint="turn TLS on with spec.tls first"
            ) from None
