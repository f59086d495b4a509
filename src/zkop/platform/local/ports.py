"""Allocate free loopback ports outside the kernel's ephemeral range.

Ports from the ephemeral range can be taken by any outgoing connection's source
port while a member is down; a member must get its kept ports back on restart.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Iterable
from pathlib import Path

LOOPBACK = "127.0.0.1"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def allocate(count: int, *, avoid: Iterable[int] = (), host: str = LOOPBACK) -> list[int]:
    """``count`` distinct free ports, none of them in ``avoid``."""
    low, high = _ephemeral_range()
    # Below the ephemeral range, above the well-known and common service ports.
    start, end = 20000, max(20000 + 2000, low) - 1
    if end <= start:
        start, end = high + 1, 65535
    taken = set(avoid)
    rng = random.SystemRandom()
    chosen: list[int] = []
    for _ in range(20000):
        if len(chosen) == count:
            break
        port = rng.randint(start, end)
        if port in taken:
            continue
        taken.add(port)
        if port_is_free(port, host):
            chosen.append(port)
    if len(chosen) < count:
        raise OSError(f"could not find {count} free loopback ports in {start}-{end}")
    return chosen


def listener_pid(port: int) -> int | None:
    """The pid listening on a loopback TCP port, when it can be seen."""
    import psutil

    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                return conn.pid
    return None
