"""What an ensemble must keep through a change: every acknowledged write, and one leader
at a time. Shared by the integration tests and the benchmarks."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError

from zkop.zk import fourlw
from zkop.zk.tls import TlsFiles


@dataclass
class Writer:
    """Writes sequential znodes under ``path`` as fast as it can (``run``, in a thread);
    remembers every acknowledged one. ``tls``: connect with TLS, presenting this certificate."""

    hosts: str
    path: str = "/seq"
    limit: int = 500_000
    acked: list[int] = field(default_factory=list)
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    longest_gap: float = 0.0
    tls: TlsFiles | None = None

    def _client(self, hosts: str) -> KazooClient:
        return KazooClient(hosts, timeout=10, **(self.tls.kazoo_options() if self.tls is not None else {}))

    def run(self) -> None:
        client = self._client(self.hosts)
        client.start(timeout=20)
        client.ensure_path(self.path)
        i, last_ok = 0, time.monotonic()
        self.started.set()
        try:
            while not self.stop.is_set() and i < self.limit:
                try:
                    client.create(f"{self.path}/n{i:07d}", b"x")
                    self.acked.append(i)
                except NodeExistsError:
                    self.acked.append(i)  # a retried write that had landed
                except KazooException:
                    self.errors += 1
                    time.sleep(0.05)
                    continue
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last_ok)
                last_ok = now
                i += 1
        finally:
            client.stop()
            client.close()

    def lost(self, hosts: str | None = None) -> list[int]:
        """The acknowledged writes that are not there (read through ``hosts``, default the
        ones written to). Blocking."""
        client = self._client(hosts or self.hosts)
        client.start(timeout=20)
        try:
            present = {int(n[1:]) for n in client.get_children(self.path)}
        finally:
            client.stop()
            client.close()
        return [i for i in self.acked if i not in present]


async def leader_sequence(hosts: list[str], stop: asyncio.Event) -> list[int]:
    """Distinct successive leaders (by client port) seen while ``stop`` is not set."""
    seen: list[int] = []
    while not stop.is_set():
        states = await asyncio.gather(
            *(fourlw.server_state(h.split(":")[0], int(h.split(":")[1]), timeout=0.3) for h in hosts)
        )
        for h, st in zip(hosts, states, strict=True):
            if st.serving and st.mode == "leader":
                port = int(h.split(":")[1])
                if not seen or seen[-1] != port:
                    seen.append(port)
        await asyncio.sleep(0.05)
    return seen


__all__ = ["Writer", "leader_sequence"]
