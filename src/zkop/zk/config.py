"""Render a member's ``zoo.cfg`` and the ensemble's dynamic configuration file.

zkop owns every key that decides identity, membership, storage and security;
users tune the rest through :class:`ServerSettings`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

FOUR_LETTER_WORDS = ("ruok", "srvr", "mntr", "conf")

# Keys zkop decides; a user's additional configuration may not set them.
OWNED_KEYS = frozenset(
    {
        "dataDir",
        "dataLogDir",
        "clientPort",
        "clientPortAddress",
        "secureClientPort",
        "dynamicConfigFile",
        "reconfigEnabled",
        "standaloneEnabled",
        "skipACL",
        "4lw.commands.whitelist",
        "admin.enableServer",
        "admin.serverAddress",
        "admin.serverPort",
        "DigestAuthenticationProvider.superDigest",
        "zookeeper.DigestAuthenticationProvider.superDigest",
        # TLS (spec.tls): the connection factory, ports, key and trust stores, quorum TLS.
        "secureClientPortAddress",
        "serverCnxnFactory",
        "sslQuorum",
        "portUnification",
        "client.portUnification",
        "authProvider.x509",
        "enforce.auth.enabled",
        "enforce.auth.schemes",
    }
)
_SERVER_KEY = re.compile(r"^(server|group|weight)\.\d+$")
_TLS_KEY = re.compile(r"^(zookeeper\.)?ssl\.")


def is_owned_key(key: str) -> bool:
    return key in OWNED_KEYS or bool(_SERVER_KEY.match(key)) or bool(_TLS_KEY.match(key))


@dataclass(frozen=True)
class MemberAddress:
    """One line of the dynamic configuration."""

    id: int
    host: str
    quorum_port: int
    election_port: int
    client_port: int
    role: str = "participant"  # or "observer"

    @property
    def client_endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    def server_line(self, *, with_client: bool = True) -> str:
        """``server.N=host:quorum:election:role;host:client`` (``with_client=False``: without the
        client address, which zoo.cfg then gives; ZooKeeper refuses such a line in a reconfig)."""
        line = f"server.{self.id}={self.host}:{self.quorum_port}:{self.election_port}:{self.role}"
        return f"{line};{self.host}:{self.client_port}" if with_client else line


_LINE = re.compile(
    r"^server\.(?P<id>\d+)=(?P<host>[^:]+):(?P<q>\d+):(?P<e>\d+)(?::(?P<role>participant|observer))?"
    r"(?:;(?:(?P<chost>[^:;]+):)?(?P<c>\d+))?$"
)


def parse_server_line(line: str) -> MemberAddress | None:
    """Parse ``server.N=host:q:e:role;host:port``; None for any other line."""
    match = _LINE.match(line.strip())
    if not match:
        return None
    client = int(match.group("c")) if match.group("c") else 0
    return MemberAddress(
        id=int(match.group("id")),
        host=match.group("host"),
        quorum_port=int(match.group("q")),
        election_port=int(match.group("e")),
        client_port=client,
        role=match.group("role") or "participant",
    )


def parse_membership(text: str) -> tuple[list[MemberAddress], int | None]:
    """Members and the config version from a dynamic file or the ``conf`` output."""
    members: list[MemberAddress] = []
    version: int | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("server."):
            parsed = parse_server_line(line)
            if parsed:
                members.append(parsed)
        elif line.startswith("version="):
            try:
                version = int(line.split("=", 1)[1], 16)
            except ValueError:
                version = None
    return sorted(members, key=lambda m: m.id), version


@dataclass(frozen=True)
class ServerSettings:
    """The tunable part of a server's configuration."""

    tick_time: int = 2000
    init_limit: int = 10
    sync_limit: int = 5
    max_client_cnxns: int = 60
    min_session_timeout: int | None = None
    max_session_timeout: int | None = None
    autopurge_snap_retain_count: int = 3
    autopurge_purge_interval: int = 1  # hours; on by default
    heap_mb: int = 128
    admin_port: int | None = None  # None: AdminServer off
    additional: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = sorted(k for k in self.additional if is_owned_key(k))
        if bad:
            raise ValueError(f"additional configuration may not set keys zkop owns: {', '.join(bad)}")


NETTY_FACTORY = "org.apache.zookeeper.server.NettyServerCnxnFactory"
X509_PROVIDER = "org.apache.zookeeper.server.auth.X509AuthenticationProvider"


@dataclass(frozen=True)
class ServerTls:
    """TLS of one member as zoo.cfg says it.

    ``key_store``: one PEM file with the member's private key and certificate; ``trust_store``:
    the PEM of the CA its peers and clients must be signed by (a TLS client must present a
    certificate: ``ssl.clientAuth=need``). ``client_unified``: the client port answers TLS as
    well as plain (``client.portUnification``); ``client_tls_only``: besides, every session must
    be authenticated by a client certificate (``enforce.auth.schemes=x509``), which only a TLS
    connection has, so a plain connection gets no session (its first request closes it).
    ``quorum``: peers connect to each other with TLS (``sslQuorum``); ``quorum_unified``: the
    quorum and election ports accept plain peers too (``portUnification``, for a migration).

    Why not ``secureClientPort`` alone: ZooKeeper's dynamic reconfiguration needs every member's
    plain client address (a joiner without one is refused, and a member without a plain
    listener fails when a new configuration gives it one), so the one client port is unified.
    """

    key_store: str
    trust_store: str
    client_unified: bool = False
    client_tls_only: bool = False
    quorum: bool = False
    quorum_unified: bool = False


def tls_lines(tls: ServerTls) -> list[str]:
    lines = [
        f"serverCnxnFactory={NETTY_FACTORY}",
        f"authProvider.x509={X509_PROVIDER}",
        f"ssl.keyStore.location={tls.key_store}",
        "ssl.keyStore.type=PEM",
        f"ssl.trustStore.location={tls.trust_store}",
        "ssl.trustStore.type=PEM",
        "ssl.clientAuth=need",
        f"ssl.quorum.keyStore.location={tls.key_store}",
        "ssl.quorum.keyStore.type=PEM",
        f"ssl.quorum.trustStore.location={tls.trust_store}",
        "ssl.quorum.trustStore.type=PEM",
        "ssl.quorum.hostnameVerification=true",
    ]
    if tls.client_unified or tls.client_tls_only:
        lines.append("client.portUnification=true")
    if tls.client_tls_only:
        lines += ["enforce.auth.enabled=true", "enforce.auth.schemes=x509"]
    lines.append(f"sslQuorum={'true' if tls.quorum else 'false'}")
    if tls.quorum_unified:
        lines.append("portUnification=true")
    return lines


def render_static(
    *,
    data_dir: Path,
    dynamic_file: Path,
    settings: ServerSettings,
    client: MemberAddress | None = None,
    tls: ServerTls | None = None,
) -> str:
    """The member's zoo.cfg. ZooKeeper itself rewrites the dynamic file line after a reconfig.

    ``client``: the member's plain client address, given here when its line in the dynamic
    file does not carry it (ZooKeeper then takes it from zoo.cfg)."""
    lines = [
        "# Written by zkop. Membership lives in the dynamic file; ZooKeeper updates it on reconfig.",
        f"tickTime={settings.tick_time}",
        f"initLimit={settings.init_limit}",
        f"syncLimit={settings.sync_limit}",
        f"dataDir={data_dir}",
        f"maxClientCnxns={settings.max_client_cnxns}",
        "reconfigEnabled=true",
        "standaloneEnabled=false",
        f"4lw.commands.whitelist={','.join(FOUR_LETTER_WORDS)}",
        f"autopurge.snapRetainCount={settings.autopurge_snap_retain_count}",
        f"autopurge.purgeInterval={settings.autopurge_purge_interval}",
    ]
    if settings.min_session_timeout is not None:
        lines.append(f"minSessionTimeout={settings.min_session_timeout}")
    if settings.max_session_timeout is not None:
        lines.append(f"maxSessionTimeout={settings.max_session_timeout}")
    if settings.admin_port is None:
        lines.append("admin.enableServer=false")
    else:
        lines += [
            "admin.enableServer=true",
            "admin.serverAddress=127.0.0.1",
            f"admin.serverPort={settings.admin_port}",
        ]
    if client is not None:
        lines += [f"clientPort={client.client_port}", f"clientPortAddress={client.host}"]
    if tls is not None:
        lines += tls_lines(tls)
    for key in sorted(settings.additional):
        lines.append(f"{key}={settings.additional[key]}")
    lines.append(f"dynamicConfigFile={dynamic_file}")
    return "\n".join(lines) + "\n"


def render_dynamic(members: Iterable[MemberAddress], *, with_client: bool = True) -> str:
    return "".join(m.server_line(with_client=with_client) + "\n" for m in sorted(members, key=lambda m: m.id))


def current_dynamic_file(static_cfg: Path) -> Path | None:
    """The dynamic file a member's zoo.cfg points at now (ZooKeeper renames it on reconfig)."""
    try:
        text = static_cfg.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("dynamicConfigFile="):
            return Path(line.split("=", 1)[1].strip())
    return None


def jvm_args(settings: ServerSettings) -> list[str]:
    heap = f"-Xmx{settings.heap_mb}m"
    return [
        heap,
        f"-Xms{min(settings.heap_mb, 64)}m",
        # A small serial-GC heap starts fastest and is plenty for a coordination server.
        "-XX:+UseSerialGC",
        "-Djava.net.preferIPv4Stack=true",
    ]


def settings_hash(
    settings: ServerSettings, zookeeper_home: str | None, image: str | None = None, *, resources: object = None
) -> str:
    """Names what a member runs with (its settings, distribution or image, resources): a change
    rolls members. What is not given leaves the hash as it was without it."""
    data: dict[str, object] = asdict(settings) | {"additional": dict(settings.additional), "home": zookeeper_home}
    if image is not None:
        data["image"] = image
    if resources is not None:
        data["resources"] = repr(resources)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
