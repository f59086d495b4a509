"""A ZooKeeper ensemble as supervised local processes.

Layout under ``<state>/ensembles/<name>/``::

    ensemble.json          members (id, ports, restarts), next id, settings
    super.password         the super user's password (0600); only its digest reaches the JVM
    members/<id>/zoo.cfg   static config; ZooKeeper rewrites its dynamic-file line on reconfig
    members/<id>/zoo.cfg.dynamic[.<version>]
    members/<id>/data/     myid, snapshots, transaction logs
    members/<id>/member.log, pid.json

Nothing here knows about resources or controllers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zkop.errors import ZkopError
from zkop.platform.local import ports as portlib
from zkop.platform.local.process import PidRecord, ProcessUnit, is_stopped
from zkop.zk import auth, fourlw
from zkop.zk.config import (
    MemberAddress,
    ServerSettings,
    ServerTls,
    current_dynamic_file,
    jvm_args,
    parse_membership,
    render_dynamic,
    render_static,
    settings_hash,
)
from zkop.zk.distribution import Distribution, locate
from zkop.zk.quorum import majority

MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


class EnsembleError(ZkopError):
    pass


class MemberExitedError(EnsembleError):
    """A member's process ended while it was expected to come up."""

    def __init__(self, member_id: int, log_tail: list[str], log_file: Path) -> None:
        tail = "\n".join(f"    {line}" for line in log_tail) or "    (the log is empty)"
        super().__init__(
            f"member {member_id} exited during start; last lines of {log_file}:\n{tail}",
        )
        self.member_id = member_id
        self.log_tail = log_tail


class PortInUseError(EnsembleError):
    pass


@dataclass
class MemberRecord:
    id: int
    client_port: int
    quorum_port: int
    election_port: int
    host: str = portlib.LOOPBACK
    restarts: int = 0
    role: str = "participant"

    @property
    def address(self) -> MemberAddress:
        return MemberAddress(self.id, self.host, self.quorum_port, self.election_port, self.client_port, self.role)

    @property
    def ports(self) -> tuple[int, int, int]:
        return (self.client_port, self.quorum_port, self.election_port)


@dataclass
class EnsembleRecord:
    name: str
    next_id: int = 1
    members: list[MemberRecord] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    zookeeper_home: str | None = None
    created_at: float = field(default_factory=time.time)
    # How many members the ensemble should have (the control plane's keeper scales to it).
    desired_members: int | None = None

    def member(self, member_id: int) -> MemberRecord:
        for m in self.members:
            if m.id == member_id:
                return m
        raise EnsembleError(f"ensemble {self.name!r} has no member {member_id}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EnsembleRecord:
        data = json.loads(text)
        members = [MemberRecord(**m) for m in data.pop("members", [])]
        return cls(members=members, **data)


def settings_from_dict(data: dict[str, Any]) -> ServerSettings:
    data = dict(data)
    data["additional"] = dict(data.get("additional") or {})
    return ServerSettings(**data)


@dataclass(frozen=True)
class MemberStatus:
    """One member as observed now: its process and what the server says."""

    id: int
    address: MemberAddress
    pid: int | None
    running: bool
    paused: bool
    restarts: int
    state: fourlw.ServerState
    started_at: float | None = None
    data_present: bool = True

    @property
    def serving(self) -> bool:
        return self.running and self.state.serving

    @property
    def role(self) -> str:
        if not self.running:
            return "down"
        if self.paused:
            return "paused"
        if not self.state.reachable or not self.state.serving:
            return "starting"
        return self.state.mode


class LocalEnsemble:
    """The members of one ensemble, started and observed as local processes."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.state_dir = state_dir
        self.name = name
        self.dir = state_dir / "ensembles" / name
        self.record_file = self.dir / "ensemble.json"
        self.password_file = self.dir / "super.password"

    # ---- records -------------------------------------------------------------------

    def exists(self) -> bool:
        return self.record_file.is_file()

    def load(self) -> EnsembleRecord:
        try:
            return EnsembleRecord.from_json(self.record_file.read_text())
        except FileNotFoundError:
            raise EnsembleError(
                f"no ensemble named {self.name!r} in {self.state_dir}", hint="run `zkop up` first"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise EnsembleError(f"{self.record_file} is corrupt: {exc}") from exc

    def _save(self, record: EnsembleRecord) -> None:
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(record.to_json())
        tmp.replace(self.record_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "ensemble.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def settings(self) -> ServerSettings:
        return settings_from_dict(self.load().settings)

    def distribution(self) -> Distribution:
        return locate(self.load().zookeeper_home)

    def super_password(self) -> str:
        return self.password_file.read_text().strip()

    def member_ids(self) -> list[int]:
        return sorted(m.id for m in self.load().members)

    def addresses(self) -> list[MemberAddress]:
        return [m.address for m in sorted(self.load().members, key=lambda m: m.id)]

    def connection_string(self) -> str:
        return ",".join(a.client_endpoint for a in self.addresses())

    def member_dir(self, member_id: int) -> Path:
        return self.dir / "members" / str(member_id)

    def data_dir(self, member_id: int) -> Path:
        return self.member_dir(member_id) / "data"

    def config_file(self, member_id: int) -> Path:
        return self.member_dir(member_id) / "zoo.cfg"

    def stored_membership(self, ids: Sequence[int]) -> tuple[list[MemberAddress], int | None]:
        """The newest dynamic configuration on the members' disks (ZooKeeper writes one file per
        version, ``zoo.cfg.dynamic.<hex version>``); the initial file when there is none yet."""
        best: tuple[int, str] | None = None
        for member_id in ids:
            for f in self.member_dir(member_id).glob("zoo.cfg.dynamic.*"):
                try:
                    version = int(f.name.rsplit(".", 1)[1], 16)
                    text = f.read_text()
                except (ValueError, OSError):
                    continue
                if best is None or version > best[0]:
                    best = (version, text)
        if best is not None:
            return parse_membership(best[1])[0], best[0]
        for member_id in ids:
            f = self.member_dir(member_id) / "zoo.cfg.dynamic"
            if f.is_file():
                return parse_membership(f.read_text())[0], None
        return [], None

    def unit(self, member_id: int) -> ProcessUnit:
        return ProcessUnit(self.member_dir(member_id), log_name="member.log")

    # ---- creation and membership -----------------------------------------------------

    def _used_ports(self) -> set[int]:
        used: set[int] = set()
        root = self.state_dir / "ensembles"
        if root.is_dir():
            for rec_file in root.glob("*/ensemble.json"):
                with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                    for m in EnsembleRecord.from_json(rec_file.read_text()).members:
                        used.update(m.ports)
        return used

    def create(
        self,
        members: int,
        *,
        settings: ServerSettings | None = None,
        zookeeper_home: str | None = None,
        port_base: int | None = None,
    ) -> EnsembleRecord:
        """Record a new ensemble of ``members`` members with ids 1..N; start nothing."""
        if members < 1:
            raise EnsembleError("an ensemble needs at least one member")
        locate(zookeeper_home)  # fail early when Java or ZooKeeper is missing
        settings = settings or ServerSettings()
        with self._locked():
            if self.exists():
                raise EnsembleError(f"ensemble {self.name!r} already exists in {self.dir}")
            if port_base is not None:
                wanted = list(range(port_base, port_base + 3 * members))
                busy = [p for p in wanted if not portlib.port_is_free(p)]
                if busy:
                    raise PortInUseError(
                        f"port {busy[0]} is already in use on {portlib.LOOPBACK}",
                        hint="choose another --port-base or stop what listens there",
                    )
                ports = wanted
            else:
                ports = portlib.allocate(3 * members, avoid=self._used_ports())
            record = EnsembleRecord(
                name=self.name,
                next_id=members + 1,
                settings=asdict(settings) | {"additional": dict(settings.additional)},
                zookeeper_home=zookeeper_home,
            )
            for i in range(members):
                c, q, e = ports[3 * i : 3 * i + 3]
                record.members.append(MemberRecord(id=i + 1, client_port=c, quorum_port=q, election_port=e))
            self.dir.mkdir(parents=True, exist_ok=True)
            auth.load_or_create_password(self.password_file)
            membership = [m.address for m in record.members]
            for m in record.members:
                self.write_member_files(m.id, membership, settings)
            self._save(record)
            return record

    def write_member_files(
        self,
        member_id: int,
        membership: Sequence[MemberAddress],
        settings: ServerSettings,
        *,
        with_client: bool = True,
    ) -> None:
        """``with_client``: the dynamic configuration gives members' client addresses (not when
        their client ports speak TLS only: zoo.cfg gives those)."""
        mdir = self.member_dir(member_id)
        data = self.data_dir(member_id)
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{member_id}\n")
        dynamic = mdir / "zoo.cfg.dynamic"
        for old in mdir.glob("zoo.cfg.dynamic*"):
            old.unlink()
        dynamic.write_text(render_dynamic(membership, with_client=with_client))
        me = next((m for m in membership if m.id == member_id), None)
        self.config_file(member_id).write_text(
            render_static(data_dir=data, dynamic_file=dynamic, settings=settings, client=None if with_client else me)
        )

    def ensure_record(self, settings: ServerSettings, zookeeper_home: str | None) -> None:
        """Record an ensemble without members when there is none (members are reserved one by one)."""
        if self.exists():
            return
        locate(zookeeper_home)  # fail early when Java or ZooKeeper is missing
        with self._locked():
            if self.exists():
                return
            self.dir.mkdir(parents=True, exist_ok=True)
            auth.load_or_create_password(self.password_file)
            record = EnsembleRecord(
                name=self.name,
                settings=asdict(settings) | {"additional": dict(settings.additional)},
                zookeeper_home=zookeeper_home,
            )
            self._save(record)

    def reserve_member(self, member_id: int) -> MemberRecord:
        """The member's record, made with free ports when it has none. Ids only grow: an id
        below ``next_id`` that is not in the record (removed, perhaps with data kept) is refused."""
        with self._locked():
            record = self.load()
            for m in record.members:
                if m.id == member_id:
                    return m
            if member_id < record.next_id:
                raise EnsembleError(
                    f"member id {member_id} of {self.name!r} was handed out before (next id {record.next_id})",
                    hint="ids are never reused",
                )
            c, q, e = portlib.allocate(3, avoid=self._used_ports())
            new = MemberRecord(id=member_id, client_port=c, quorum_port=q, election_port=e)
            record.members.append(new)
            record.next_id = member_id + 1
            self._save(record)
            return new

    @staticmethod
    def settings_of(record: EnsembleRecord) -> ServerSettings:
        return settings_from_dict(record.settings)

    def forget_member(self, member_id: int, *, purge_data: bool) -> None:
        """Drop a stopped member from the record; its data stays unless ``purge_data``."""
        with self._locked():
            record = self.load()
            record.members = [m for m in record.members if m.id != member_id]
            self._save(record)
        if purge_data:
            shutil.rmtree(self.member_dir(member_id), ignore_errors=True)
        else:
            kept = self.dir / "retained" / str(member_id)
            if self.member_dir(member_id).exists():
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(kept, ignore_errors=True)
                self.member_dir(member_id).rename(kept)

    def rewrite_static_config(
        self,
        member_id: int,
        settings: ServerSettings,
        *,
        client: MemberAddress | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        """Re-render zoo.cfg with new settings, keeping the dynamic file ZooKeeper points at.
        ``client``: the plain client address, when the dynamic file does not give it."""
        cfg = self.config_file(member_id)
        dynamic = current_dynamic_file(cfg) or (self.member_dir(member_id) / "zoo.cfg.dynamic")
        cfg.write_text(
            render_static(
                data_dir=self.data_dir(member_id), dynamic_file=dynamic, settings=settings, client=client, tls=tls
            )
        )

    def set_desired_members(self, members: int) -> None:
        with self._locked():
            record = self.load()
            record.desired_members = members
            self._save(record)

    def update_settings(self, settings: ServerSettings, zookeeper_home: str | None) -> None:
        with self._locked():
            record = self.load()
            record.settings = asdict(settings) | {"additional": dict(settings.additional)}
            record.zookeeper_home = zookeeper_home
            self._save(record)

    # ---- processes -------------------------------------------------------------------

    def argv(self, member_id: int) -> list[str]:
        dist = self.distribution()
        settings = self.settings()
        mdir = self.member_dir(member_id)
        conf_dir = dist.home / "conf" if dist.layout == "tarball" else None
        return [
            dist.java,
            *jvm_args(settings),
            f"-Dzookeeper.log.dir={mdir}",
            "-Dzookeeper.admin.enableServer=" + ("true" if settings.admin_port else "false"),
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
            auth.super_digest_property(self.super_password()),
            "-cp",
            dist.classpath_str(conf_dir if conf_dir and conf_dir.is_dir() else None),
            MAIN_CLASS,
            str(self.config_file(member_id)),
        ]

    def start_member(self, member_id: int, config_hash: str | None = None) -> PidRecord:
        """Start a member (no-op when it already runs). Its ports must be free.

        ``started.json`` records when and from which configuration (``config_hash``, by default
        the hash of the ensemble's settings), so a later look can tell a stale member."""
        unit = self.unit(member_id)
        running = unit.running()
        if running is not None:
            return running
        with self._locked():
            record = self.load()
            member = record.member(member_id)
            for port, what in zip(member.ports, ("client", "quorum", "election"), strict=True):
                if not portlib.port_is_free(port):
                    pid = portlib.listener_pid(port)
                    owner = f" by pid {pid}" if pid else ""
                    raise PortInUseError(
                        f"the {what} port {port} of member {member_id} of {self.name!r} is in use{owner}",
                        hint="stop that process, or `zkop down --purge` to start over with new ports",
                    )
            if unit.record() is not None:
                member.restarts += 1
                self._save(record)
        if not self.config_file(member_id).is_file():
            raise EnsembleError(
                f"member {member_id} of {self.name!r} has no configuration at {self.config_file(member_id)}"
            )
        env = dict(os.environ)
        env.pop("CLASSPATH", None)
        env.pop("JAVA_TOOL_OPTIONS", None)
        rec = unit.start(self.argv(member_id), env=env)
        if config_hash is None:
            loaded = self.load()
            config_hash = settings_hash(self.settings_of(loaded), loaded.zookeeper_home)
        (self.member_dir(member_id) / "started.json").write_text(json.dumps({"hash": config_hash, "at": time.time()}))
        return rec

    def started(self, member_id: int) -> tuple[str | None, float | None]:
        """The configuration hash a member was last started from, and when."""
        try:
            data = json.loads((self.member_dir(member_id) / "started.json").read_text())
            return data.get("hash"), data.get("at")
        except (OSError, ValueError, AttributeError):
            return None, None

    def start(self, ids: Iterable[int] | None = None) -> list[PidRecord]:
        return [self.start_member(i) for i in (ids if ids is not None else self.member_ids())]

    def stop_member(self, member_id: int, grace: float = 10.0) -> bool:
        return self.unit(member_id).stop(grace)

    def kill_member(self, member_id: int) -> bool:
        return self.unit(member_id).kill()

    def pause_member(self, member_id: int) -> bool:
        return self.unit(member_id).pause()

    def resume_member(self, member_id: int) -> bool:
        return self.unit(member_id).resume()

    def restart_member(self, member_id: int, grace: float = 10.0) -> PidRecord:
        self.stop_member(member_id, grace)
        return self.start_member(member_id)

    def stop(self, grace: float = 10.0) -> list[int]:
        """Stop every member that runs; return the ids stopped."""
        if not self.exists():
            return []
        return [i for i in self.member_ids() if self.stop_member(i, grace)]

    def running_members(self) -> dict[int, PidRecord]:
        if not self.exists():
            return {}
        out: dict[int, PidRecord] = {}
        for i in self.member_ids():
            rec = self.unit(i).running()
            if rec is not None:
                out[i] = rec
        return out

    def destroy(self) -> None:
        """Remove every file of the ensemble. Members must be stopped first."""
        if self.running_members():
            raise EnsembleError(f"ensemble {self.name!r} still has running members")
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- observation -----------------------------------------------------------------

    async def observe_member(
        self, member: MemberRecord, *, timeout: float = 1.0, tls: ssl.SSLContext | None = None
    ) -> MemberStatus:
        """``tls``: how to reach a client port that speaks TLS."""
        unit = self.unit(member.id)
        rec = unit.running()
        paused = rec is not None and is_stopped(rec)
        if rec is None or paused:
            state = fourlw.ServerState(
                member.address.client_endpoint, reachable=False, error="paused" if paused else "not running"
            )
        else:
            state = await fourlw.server_state(member.host, member.client_port, timeout=timeout, tls=tls)
        return MemberStatus(
            id=member.id,
            address=member.address,
            pid=rec.pid if rec else None,
            running=rec is not None,
            paused=paused,
            restarts=member.restarts,
            state=state,
            started_at=rec.started_at if rec else None,
            data_present=(self.data_dir(member.id) / "myid").is_file(),
        )

    async def observe(
        self, *, timeout: float = 1.0, tls: Callable[[int], ssl.SSLContext | None] | None = None
    ) -> list[MemberStatus]:
        """``tls(member_id)``: how to reach that member's client port when it speaks TLS."""
        record = self.load()
        members = sorted(record.members, key=lambda m: m.id)
        return list(
            await asyncio.gather(
                *(self.observe_member(m, timeout=timeout, tls=tls(m.id) if tls else None) for m in members)
            )
        )

    async def leader(self) -> int | None:
        for status in await self.observe():
            if status.serving and status.state.mode == "leader":
                return status.id
        return None

    async def wait_serving(
        self,
        ids: Iterable[int] | None = None,
        *,
        timeout: float = 60.0,
        on_progress: Any = None,
    ) -> list[MemberStatus]:
        """Wait until the given members (default: all) serve; fail fast when one exits."""
        wanted = set(ids) if ids is not None else set(self.member_ids())
        deadline = time.monotonic() + timeout
        while True:
            statuses = await self.observe(timeout=0.5)
            by_id = {s.id: s for s in statuses}
            for member_id in wanted:
                status = by_id.get(member_id)
                if status is not None and not status.running:
                    unit = self.unit(member_id)
                    raise MemberExitedError(member_id, unit.log_tail(15), unit.log_file)
            if on_progress is not None:
                on_progress(statuses)
            if all(by_id[i].serving for i in wanted if i in by_id):
                return statuses
            if time.monotonic() >= deadline:
                waiting = sorted(i for i in wanted if not by_id[i].serving)
                raise EnsembleError(
                    f"members {waiting} of {self.name!r} did not serve within {timeout:.0f}s",
                    hint=f"see their logs under {self.dir / 'members'}",
                )
            await asyncio.sleep(0.1)

    async def wait_quorum(self, *, timeout: float = 60.0) -> list[MemberStatus]:
        """Wait until a majority of members serve and one of them leads."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = await self.observe(timeout=0.5)
            serving = [s for s in statuses if s.serving]
            if len(serving) >= majority(len(statuses)) and any(s.state.mode == "leader" for s in serving):
                return statuses
            if time.monotonic() >= deadline:
                raise EnsembleError(
                    f"ensemble {self.name!r} has no quorum after {timeout:.0f}s "
                    f"({len(serving)}/{len(statuses)} members serving)"
                )
            await asyncio.sleep(0.1)
