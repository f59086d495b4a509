"""A benchmark replica: ``replica.py zkop|kazoo HOSTS USER:PASSWORD IDENTITY SESSION_TIMEOUT``.

zkop: a Manager with leader election (no controllers). kazoo: the kazoo Election recipe
holding leadership until killed. Both print nothing; the benchmark observes ZooKeeper.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading

from kazoo.client import KazooClient

from zkop.client.connect import Connection
from zkop.runtime.manager import Manager, ManagerOptions


async def run_zkop(hosts: str, creds: str, identity: str, timeout: float) -> None:
    user, password = creds.split(":", 1)
    manager = Manager(
        Connection(hosts=hosts, user=user, password=password),
        ManagerOptions(name="bench", session_timeout=timeout, identity=identity, metrics_port=None),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, manager.stop)
    await manager.run()


def run_kazoo(hosts: str, identity: str, timeout: float) -> None:
    client = KazooClient(hosts=hosts, timeout=timeout)
    client.start(timeout=20)
    forever = threading.Event()
    client.Election("/bench-kazoo-election", identity).run(forever.wait)


if __name__ == "__main__":
    mode, hosts, creds, identity, timeout = sys.argv[1:6]
    if mode == "zkop":
        asyncio.run(run_zkop(hosts, creds, identity, float(timeout)))
    else:
        run_kazoo(hosts, identity, float(timeout))
