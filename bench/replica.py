"""A benchmark replica for bench/failover.py.

    replica.py zkop HOSTS USER:PASSWORD IDENTITY SESSION_TIMEOUT
    replica.py kazoo|kazoo-graceful HOSTS USER:PASSWORD IDENTITY SESSION_TIMEOUT

zkop: a Manager with leader election and one trivial controller, the OperatorConfig
reconciler, whose first act as leader is a fenced status write (``status.leader`` and
``status.epoch`` of every OperatorConfig). SIGTERM and SIGINT stop it gracefully (it
resigns and closes its session).

kazoo: ``client.Election(path, identity).run(func)``; ``func`` writes the identity to a
znode (the leader's first, unfenced, write) and blocks. With ``kazoo`` SIGTERM keeps
Python's default action (the process dies, its session is left to expire), which is
what a kazoo program without a signal handler does; ``kazoo-graceful`` handles SIGTERM
by closing the session. SIGINT always closes the session (the benchmark's cleanup).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Any

from kazoo.client import KazooClient

from zkop.client.connect import Connection
from zkop.controllers.operatorconfig import OperatorConfigReconciler
from zkop.runtime.controller import Controller
from zkop.runtime.manager import Manager, ManagerOptions

KAZOO_ELECTION = "/bench-kazoo-election"
KAZOO_LEADER_WRITE = "/bench-kazoo-leader"
MANAGER_NAME = "bench"


async def run_zkop(hosts: str, creds: str, identity: str, timeout: float) -> None:
    user, password = creds.split(":", 1)
    controller = Controller("bench", "OperatorConfig", OperatorConfigReconciler(), max_concurrent_reconciles=1)
    manager = Manager(
        Connection(hosts=hosts, user=user, password=password),
        ManagerOptions(name=MANAGER_NAME, session_timeout=timeout, identity=identity, metrics_port=None),
        controllers=[controller],
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, manager.stop)
    await manager.run()


def run_kazoo(hosts: str, identity: str, timeout: float, graceful: bool) -> None:
    client = KazooClient(hosts=hosts, timeout=timeout)

    def close(_signum: int, _frame: Any) -> None:
        try:
            client.stop()
            client.close()
        finally:
            os._exit(0)

    signal.signal(signal.SIGINT, close)
    if graceful:
        signal.signal(signal.SIGTERM, close)
    client.start(timeout=20)
    forever = threading.Event()

    def lead() -> None:
        client.ensure_path(KAZOO_LEADER_WRITE)
        client.set(KAZOO_LEADER_WRITE, identity.encode())
        forever.wait()

    client.Election(KAZOO_ELECTION, identity).run(lead)


if __name__ == "__main__":
    mode, hosts, creds, identity, timeout = sys.argv[1:6]
    if mode == "zkop":
        asyncio.run(run_zkop(hosts, creds, identity, float(timeout)))
    else:
        run_kazoo(hosts, identity, float(timeout), graceful=mode == "kazoo-graceful")
