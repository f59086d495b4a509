"""An operator replica for fencing tests: while it leads, it keeps writing.

Each reconcile of the OperatorConfig ``probe`` makes one fenced store write (the status
names this replica and its epoch) and one fenced platform action (a line appended to
``actions.log`` under the platform's fence lock, held ACTION_SECONDS longer). Usage:

    python probe_replica.py HOSTS USER:PASSWORD STATE_DIR IDENTITY SESSION_TIMEOUT [ACTION_SECONDS]
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from zkop.client.connect import Connection
from zkop.platform.local.fence import run_fenced
from zkop.platform.local.platform import LocalPlatform
from zkop.runtime import logs
from zkop.runtime.controller import Context, Controller
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.runtime.result import Request, Result


class Probe:
    def __init__(self, platform: LocalPlatform, actions: Path, action_seconds: float) -> None:
        self.platform = platform
        self.actions = actions
        self.action_seconds = action_seconds

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        obj = await ctx.store.get("OperatorConfig", request.namespace, request.name)
        count = (obj.status.replicas or 0) + 1  # type: ignore[attr-defined]
        status = obj.status.model_copy(update={"leader": ctx.identity, "epoch": ctx.epoch, "replicas": count})
        await ctx.store.update_status(obj.model_copy(update={"status": status}))
        assert ctx.epoch is not None
        line = f"{ctx.epoch} {ctx.identity}\n"

        def act() -> None:
            with self.actions.open("a") as fh:
                fh.write(line)
            if self.action_seconds:
                time.sleep(self.action_seconds)  # a long action: the fence lock stays held

        await run_fenced(self.platform.fence, ctx.epoch, act)
        return Result(requeue_after=0.05)


async def main() -> None:
    hosts, creds, state, identity, timeout = sys.argv[1:6]
    action_seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    user, password = creds.split(":", 1)
    state_dir = Path(state)
    platform = LocalPlatform(state_dir, "probe")
    probe = Probe(platform, state_dir / "actions.log", action_seconds)
    manager = Manager(
        Connection(hosts=hosts, user=user, password=password),
        ManagerOptions(name="probe", session_timeout=float(timeout), identity=identity, metrics_port=None),
        controllers=[Controller("probe", "OperatorConfig", probe, max_concurrent_reconciles=1, relist_period=2.0)],
        platforms=[platform],
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, manager.stop)
    await manager.run()


if __name__ == "__main__":
    logs.setup("INFO")
    asyncio.run(main())
