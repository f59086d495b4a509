"""An asyncio client for ZooKeeper's four-letter words (``ruok``, ``srvr``, ``mntr``, ``conf``).

A timeout or a refused connection is a result (``reachable=False``), never an exception:
callers observe members that may be down, paused or starting.

Over TLS: ZooKeeper's Netty connection factory answers the four-letter words on its secure
client port (and on a port-unified one) once the TLS handshake is done, so a member whose
client port speaks TLS only is asked the same way, through ``tls`` (an SSL context with a
client certificate its CA signed: ``ssl.clientAuth=need``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from zkop.zk.config import MemberAddress, parse_membership

NOT_SERVING = "not currently serving requests"


@dataclass(frozen=True)
class Reply:
    word: str
    endpoint: str
    reachable: bool
    text: str = ""
    error: str = ""


async def send(host: str, port: int, word: str, *, timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> Reply:
    endpoint = f"{host}:{port}"
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            if tls is None:
                reader, writer = await asyncio.open_connection(host, port)
            else:
                name = host if tls.check_hostname else None
                reader, writer = await asyncio.open_connection(host, port, ssl=tls, server_hostname=name)
            writer.write(word.encode())
            await writer.drain()
            chunks: list[bytes] = []
            try:
                while chunk := await reader.read(65536):
                    chunks.append(chunk)
            except OSError:
                if not chunks:
                    raise  # a TLS peer may close without close_notify after its answer
        return Reply(word, endpoint, True, b"".join(chunks).decode("utf-8", "replace"))
    except TimeoutError:
        return Reply(word, endpoint, False, error="timed out")
    except OSError as exc:
        return Reply(word, endpoint, False, error=exc.strerror or str(exc))
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass(frozen=True)
class ServerState:
    """What ``srvr`` and ``mntr`` tell about one member."""

    endpoint: str
    reachable: bool
    serving: bool = False
    mode: str = "unknown"  # leader | follower | observer | standalone | unknown
    zxid: int | None = None
    version: str = ""
    node_count: int | None = None
    outstanding_requests: int | None = None
    latency_avg_ms: float | None = None
    latency_max_ms: float | None = None
    alive_connections: int | None = None
    peer_state: str = ""  # e.g. "following - broadcast"
    pending_syncs: int | None = None  # leader only
    synced_followers: int | None = None  # leader only
    followers: int | None = None  # leader only
    error: str = ""
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def syncing(self) -> bool:
        """A member that is up but not yet in the broadcast phase, or a leader with pending syncs."""
        if not self.reachable or not self.serving:
            return False
        if self.pending_syncs:
            return True
        return bool(self.peer_state) and not self.peer_state.endswith("broadcast")

    @property
    def zxid_hex(self) -> str:
        return f"0x{self.zxid:x}" if self.zxid is not None else "-"


def _parse_pairs(text: str, sep: str) -> dict[str, str]:
    """The ``key<sep>value`` lines of ``text``; other lines are passed over."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if sep in line:
            key, value = line.split(sep, 1)
            out[key.strip()] = value.strip()
    return out


def parse_mntr(text: str) -> dict[str, str]:
    return _parse_pairs(text, "\t")


def parse_srvr(text: str) -> dict[str, str]:
    return _parse_pairs(text, ": ")


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value, 0) if value.startswith("0x") else int(float(value))
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _clean_version(raw: str) -> str:
    """``3.8.0-<commit>, built on ...`` -> ``3.8.0`` (some builds leave the commit unexpanded)."""
    return raw.split(",")[0].split("-")[0].strip()


def state_from_replies(srvr: Reply, mntr: Reply | None) -> ServerState:
    if not srvr.reachable:
        return ServerState(endpoint=srvr.endpoint, reachable=False, error=srvr.error)
    if NOT_SERVING in srvr.text:
        return ServerState(endpoint=srvr.endpoint, reachable=True, serving=False, mode="unknown")
    s = parse_srvr(srvr.text)
    m = parse_mntr(mntr.text) if mntr is not None and mntr.reachable else {}
    latency = s.get("Latency min/avg/max", "").split("/")
    return ServerState(
        endpoint=srvr.endpoint,
        reachable=True,
        serving=True,
        mode=s.get("Mode", m.get("zk_server_state", "unknown")),
        zxid=_int(s.get("Zxid")),
        version=_clean_version(s.get("Zookeeper version", m.get("zk_version", ""))),
        node_count=_int(s.get("Node count", m.get("zk_znode_count"))),
        outstanding_requests=_int(s.get("Outstanding", m.get("zk_outstanding_requests"))),
        latency_avg_ms=_float(m.get("zk_avg_latency"))
        if "zk_avg_latency" in m
        else (_float(latency[1]) if len(latency) == 3 else None),
        latency_max_ms=_float(m.get("zk_max_latency"))
        if "zk_max_latency" in m
        else (_float(latency[2]) if len(latency) == 3 else None),
        alive_connections=_int(m.get("zk_num_alive_connections")),
        peer_state=m.get("zk_peer_state", ""),
        pending_syncs=_int(m.get("zk_pending_syncs")),
        synced_followers=_int(m.get("zk_synced_followers")),
        followers=_int(m.get("zk_followers")),
        raw=m,
    )


async def ruok(host: str, port: int, *, timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> bool:
    reply = await send(host, port, "ruok", timeout=timeout, tls=tls)
    return reply.reachable and reply.text.strip() == "imok"


async def server_state(host: str, port: int, *, timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> ServerState:
    srvr = await send(host, port, "srvr", timeout=timeout, tls=tls)
    if not srvr.reachable or NOT_SERVING in srvr.text:
        return state_from_replies(srvr, None)
    mntr = await send(host, port, "mntr", timeout=timeout, tls=tls)
    return state_from_replies(srvr, mntr)


@dataclass(frozen=True)
class ConfState:
    endpoint: str
    reachable: bool
    members: tuple[MemberAddress, ...] = ()
    config_version: int | None = None
    settings: dict[str, str] = field(default_factory=dict)
    error: str = ""


async def conf(host: str, port: int, *, timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> ConfState:
    reply = await send(host, port, "conf", timeout=timeout, tls=tls)
    if not reply.reachable:
        return ConfState(reply.endpoint, False, error=reply.error)
    members, version = parse_membership(reply.text)
    settings = {}
    for line in reply.text.splitlines():
        if "=" in line and not line.startswith("server."):
            k, v = line.split("=", 1)
            settings[k.strip()] = v.strip()
    return ConfState(reply.endpoint, True, tuple(members), version, settings)
