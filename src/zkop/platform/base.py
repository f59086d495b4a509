"""The seam between controllers and where things run.

Controllers decide; a platform runs things and reports what it sees. A controller
asks a platform to make a member exist, to stop it, to remove it, or to tell what
exists, and never starts a process, reads a pid or a path itself. Observations are
neutral (running, ready, restarts, last exit, address, usage), so the same controller
is correct on every platform.

Every action carries the epoch of the leadership term it was decided in; a platform
refuses an action whose epoch is older than the newest it has seen by raising
:class:`Fenced`. ``epoch=None`` is a person (or the local control-plane keeper) acting
outside any term.

A new platform implements :class:`ZookeeperPlatform` (and, for applications,
:class:`InstancePlatform`); ``zkop operator run`` is the one place that picks it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from zkop.api.application import Probe
from zkop.errors import Fenced
from zkop.zk.config import MemberAddress, ServerSettings
from zkop.zk.fourlw import ServerState
from zkop.zk.tls import TlsFiles

__all__ = [
    "AppRef",
    "ClusterObservation",
    "ClusterRef",
    "Fenced",
    "InstanceObservation",
    "InstancePhase",
    "InstancePlatform",
    "InstanceTemplate",
    "LastExit",
    "MemberObservation",
    "MemberTemplate",
    "ObjectRef",
    "PlatformEvents",
    "PortSpec",
    "Resources",
    "SecretStore",
    "TlsFiles",
    "TlsPolicy",
    "ZookeeperPlatform",
]


@dataclass(frozen=True)
class Resources:
    """CPU (cores) and memory (bytes), as requested by an instance or offered by a machine."""

    cpu: float = 0.0
    memory: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.memory + other.memory)


@dataclass(frozen=True)
class LastExit:
    """How the previous run of a process ended. ``reason``: Completed, Error, OOMKilled,
    Killed (a signal), Unknown; ``code``: the exit status when there was one."""

    reason: str
    code: int | None = None
    at: float | None = None


@dataclass(frozen=True)
class ObjectRef:
    """Which object, by namespace and name. Its kinds are kept apart: a reference to an
    ensemble never equals one to an application of the same name."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# ---------------------------------------------------------------- ZooKeeper members


@dataclass(frozen=True)
class ClusterRef(ObjectRef):
    """Which ensemble: the ZookeeperCluster's namespace and name."""


ClientTlsMode = Literal["Tls", "Both"]
QuorumTlsMode = Literal["Tls", "Both", "Accept"]


@dataclass(frozen=True)
class TlsPolicy:
    """TLS of an ensemble. The platform keeps the cluster's certificate authority where no
    member can read its private key, gives every member a certificate (valid ``validity``
    seconds) for every name and address it is reached by, renews it at the member's next start
    when less than ``renew_before`` seconds are left, and reports when each member's ends
    (:attr:`MemberObservation.certificate_expires`), so the controller rolls members in time.

    ``client``: ``Tls`` gives a session only to TLS clients with a certificate signed by the
    cluster's CA (a plain connection is closed at its first request); ``Both`` serves TLS and
    plain sessions on the client port (a migration). ``quorum``:
    ``Tls`` has peers talk TLS only; ``Both`` has them connect with TLS and accept plain peers
    too; ``Accept`` has them connect plain and accept TLS peers (the first step of turning
    quorum TLS on in a running ensemble: Accept, then Both, then Tls, each a rolling restart).
    None: off."""

    client: ClientTlsMode | None = None
    quorum: QuorumTlsMode | None = None
    validity: float = 90 * 24 * 3600.0
    renew_before: float = 30 * 24 * 3600.0

    @property
    def enabled(self) -> bool:
        return self.client is not None or self.quorum is not None


@dataclass(frozen=True)
class MemberTemplate:
    """What every member of an ensemble runs with. ``config_hash`` names this template:
    a member started from another hash is stale and is rolled. ``tls``: None for none."""

    settings: ServerSettings
    config_hash: str
    zookeeper_home: str | None = None
    image: str | None = None
    resources_requests: Resources = field(default_factory=Resources)
    resources_limits: Resources = field(default_factory=Resources)
    tls: TlsPolicy | None = None
    # The backup a restored cluster's first member starts from (a platform that cannot place
    # data itself receives it then: Kubernetes). Not in ``config_hash``: it changes nothing later.
    seed: str | None = None


@dataclass(frozen=True)
class MemberObservation:
    """One member as the platform sees it now.

    ``running``: its process (container) exists. ``ready``: it serves clients as part
    of a quorum. ``unresponsive``: it exists but cannot answer at all (paused, hung).
    ``config_hash``: the template it was started from (None: unknown). ``state``: what
    the server itself reports (mode, zxid, sync state, latency).
    """

    id: int
    address: MemberAddress
    running: bool
    ready: bool
    unresponsive: bool
    restarts: int
    data_present: bool
    state: ServerState
    started_at: float | None = None
    config_hash: str | None = None
    last_exit: LastExit | None = None
    # Where the operator reaches the client port now (a Pod's IP), when not at ``address``
    # (the stable name members and clients use).
    reach: str | None = None
    client_tls: bool = False
    certificate_expires: float | None = None

    @property
    def endpoint(self) -> str:
        """host:port of the client port as the operator reaches it now."""
        return self.reach or self.address.client_endpoint

    @property
    def role(self) -> str:
        """leader | follower | observer when it serves, else down | unresponsive | starting."""
        if not self.running:
            return "down"
        if self.unresponsive:
            return "unresponsive"
        if not self.ready:
            return "starting"
        return self.state.mode


@dataclass(frozen=True)
class ClusterObservation:
    """Everything the platform sees of one ensemble.

    ``next_id``: the lowest member id never handed out (ids are never reused).
    ``stored_membership``/``stored_config_version``: the newest dynamic configuration the
    members keep in their data, for when no member serves and none can be asked.
    ``client_tls``: the operator's own client certificate for the cluster (files on the
    operator's machine), for members whose client port speaks TLS; None without TLS.
    """

    members: tuple[MemberObservation, ...]
    next_id: int
    stored_membership: tuple[MemberAddress, ...] = ()
    stored_config_version: int | None = None
    client_tls: TlsFiles | None = None

    def member(self, member_id: int) -> MemberObservation | None:
        return next((m for m in self.members if m.id == member_id), None)


class ZookeeperPlatform(Protocol):
    """Where ZooKeeper members run: local processes, or Kubernetes Pods."""

    name: str

    async def observe(self, cluster: ClusterRef) -> ClusterObservation | None:
        """Every member the platform has for the cluster, running or not; None when it has none."""
        ...

    async def reserve_address(
        self, cluster: ClusterRef, member_id: int, template: MemberTemplate, *, epoch: int | None
    ) -> MemberAddress:
        """Give a new member id its address (host and ports) before any member is made, so an
        initial configuration can list every member. Idempotent; an id below ``next_id`` that
        the cluster no longer has is refused (ids are never reused)."""
        ...

    async def ensure_member(
        self,
        cluster: ClusterRef,
        member_id: int,
        template: MemberTemplate,
        membership: Sequence[MemberAddress],
        *,
        epoch: int | None,
    ) -> None:
        """Make the member exist and run. A new member (with an id at or above ``next_id``)
        starts with ``membership`` plus itself as its configuration; an existing one keeps
        its data and configuration and is started when it is not running. A running member
        is left alone (restarting is :meth:`stop_member` then this)."""
        ...

    async def stop_member(self, cluster: ClusterRef, member_id: int, *, epoch: int | None) -> None:
        """Stop the member's process gracefully; keep it and its data."""
        ...

    async def remove_member(self, cluster: ClusterRef, member_id: int, *, purge_data: bool, epoch: int | None) -> None:
        """Stop the member and forget it; its data is deleted with ``purge_data``, else kept
        aside where it is never attached to another id."""
        ...

    async def remove_cluster(self, cluster: ClusterRef, *, purge_data: bool, epoch: int | None) -> None:
        """After every member is gone: remove what is left of the cluster (data as above)."""
        ...

    async def super_password(self, cluster: ClusterRef) -> str:
        """The cluster's super-user password, for reconfiguration (created on first use)."""
        ...

    async def client_tls(self, cluster: ClusterRef) -> TlsFiles | None:
        """The operator's client certificate for the cluster (as in :class:`ClusterObservation`),
        for connecting to it as a client; None when it has no TLS."""
        ...

    async def member_files(self, cluster: ClusterRef, member_id: int) -> Sequence[str]:
        """Names of the snapshots and transaction logs in the member's data (ZooKeeper's
        ``version-2``), for a backup taken while it runs."""
        ...

    async def copy_member_file(self, cluster: ClusterRef, member_id: int, name: str, dest: Path) -> None:
        """Copy one of :meth:`member_files` to ``dest`` on the operator's machine, the member
        running on (a log may grow meanwhile: the copy holds what was written when it was read)."""
        ...

    async def seeding(self, cluster: ClusterRef) -> Sequence[int]:
        """Members waiting for a backup's data before ZooKeeper starts in them (a platform that
        cannot place data itself: the seed step of a Kubernetes Pod). Locally, none: ``zkop
        backup restore`` places the data before the member starts."""
        ...

    async def seed(self, cluster: ClusterRef, member_id: int, files: Sequence[tuple[str, Path, str]]) -> None:
        """Hand a waiting member (:meth:`seeding`) its data: ``files`` are (name in
        ``version-2``, a verified copy, its sha256). ZooKeeper starts in it afterwards."""
        ...

    def subscribe(self, callback: Callable[[ClusterRef], None]) -> None:
        """Have ``callback(cluster)`` called (on the event loop) when a member of an observed
        cluster changes on its own (its process ended, its Pod went), so its controller looks
        at once."""
        ...


# ---------------------------------------------------------------- credentials handed over


class SecretStore(Protocol):
    """Where the operator hands credentials to their holder (a tenant's identity): files under
    the state dir (mode 0600) locally, a Secret on Kubernetes. A secret is a small map of
    string keys to string values, named within a namespace."""

    async def read(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The secret's data; None when there is none."""
        ...

    async def write(self, namespace: str, name: str, data: Mapping[str, str], *, epoch: int | None) -> None:
        """Create or replace the secret (fenced as every action)."""
        ...

    async def delete(self, namespace: str, name: str, *, epoch: int | None) -> None:
        """Remove the secret; nothing when it is gone already."""
        ...

    def reference(self, namespace: str, name: str) -> str:
        """Where its holder finds it: a directory with a file per key, ``secret/<ns>/<name>``."""
        ...


# ---------------------------------------------------------------- application instances

#: Where a platform reports what it did on its own (a restart, a failed probe), as a kubelet
#: records events: ``(kind, namespace, name, type, reason, message)`` about the owning object.
PlatformEvents = Callable[[str, str, str, str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class AppRef(ObjectRef):
    """Which application: the Application's namespace and name."""


@dataclass(frozen=True)
class PortSpec:
    """A named port; ``number`` None means the platform picks one (and keeps it per instance)."""

    name: str
    number: int | None = None


@dataclass(frozen=True)
class InstanceTemplate:
    """What an instance runs. ``revision`` names it: instances of another revision are old and
    are rolled. ``env`` may change within a revision (a longer ZK_HOSTS after a cluster scaled):
    the next (re)start gets the new values, nothing is restarted for it.

    The platform adds to the environment ``ZKOP_INSTANCE``, ``ZKOP_NAMESPACE``, ``ZKOP_APP``,
    ``HOST`` (the address to listen on: the machine's loopback locally, ``0.0.0.0`` in a Pod),
    ``PORT`` (the first port) and ``PORT_<NAME>`` for every named port.

    ``secret_env`` names the variables of ``env`` whose values are credentials: a platform keeps
    their values out of what describes an instance to others (on Kubernetes they are in the
    application's Secret, read through ``secretKeyRef``, never values in the Pod's spec).
    """

    revision: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    image: str | None = None
    ports: tuple[PortSpec, ...] = ()
    requests: Resources = field(default_factory=Resources)
    memory_limit: int | None = None  # bytes
    cpu_limit: float | None = None  # cores
    readiness: Probe | None = None
    liveness: Probe | None = None
    secret_env: frozenset[str] = frozenset()


InstancePhase = Literal["Pending", "Starting", "NotReady", "Running", "Restarting", "CrashLoopBackOff", "Failed"]


@dataclass(frozen=True)
class InstanceObservation:
    """One instance as the platform sees it now.

    ``phase``: Pending (not placed: does not fit), Starting, NotReady (runs, readiness fails),
    Running (ready), Restarting (ended once, restarts), CrashLoopBackOff (ends again and again),
    Failed (cannot start; retried). ``reason``/``message`` say why when it is not Running.
    ``cpu_usage``: cores used on average since the platform last sampled it; ``memory``: bytes
    resident; None where unknown. ``limits``: what the platform enforces (and what not, why).
    """

    name: str
    revision: str
    phase: InstancePhase
    ready: bool
    restarts: int
    host: str
    ports: Mapping[str, int]
    index: int = 0  # creation order: higher is newer
    started_at: float | None = None
    last_exit: LastExit | None = None
    reason: str | None = None
    message: str | None = None
    cpu_usage: float | None = None
    memory: int | None = None
    limits_enforced: tuple[str, ...] = ()
    limits_not_enforced: tuple[str, ...] = ()
    process_id: str | None = None  # what a user may look for (a pid, a Pod name); never acted on

    @property
    def port(self) -> int | None:
        """The first port: the instance's endpoint."""
        return next(iter(self.ports.values()), None)


class InstancePlatform(Protocol):
    """Where application instances run; it supervises them as a kubelet does: restarts what
    ended (crash-loop back-off), runs the probes, measures usage, enforces limits and places
    instances only where their requests fit."""

    name: str

    async def observe(self, app: AppRef) -> Sequence[InstanceObservation]:
        """Every instance of the application, in creation order."""
        ...

    async def set_template(self, app: AppRef, template: InstanceTemplate, *, epoch: int | None) -> None:
        """The current template: new instances and (re)starts of its revision use it."""
        ...

    async def create_instances(
        self, app: AppRef, template: InstanceTemplate, count: int, *, epoch: int | None
    ) -> Sequence[str]:
        """Create ``count`` instances of ``template`` (started at once when they fit, else
        Pending until they do); returns their names."""
        ...

    async def stop_instance(self, app: AppRef, name: str, *, epoch: int | None) -> None:
        """Stop the instance gracefully and remove it."""
        ...

    async def remove_app(self, app: AppRef, *, epoch: int | None) -> None:
        """Stop and remove every instance of the application, also unreadable ones."""
        ...

    async def apps(self) -> Sequence[AppRef]:
        """Every application the platform has instances (or leftovers) of."""
        ...

    async def capacity(self) -> Resources:
        """What the platform offers in all (for status and messages)."""
        ...

    def subscribe(self, callback: Callable[[AppRef], None]) -> None:
        """Have ``callback(app)`` called (on the event loop) when an instance of ``app`` changes
        (ended, restarted, readiness flipped), so its controller looks at once."""
        ...
