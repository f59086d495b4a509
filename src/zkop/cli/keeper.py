"""The local control plane's keeper: composed here (a composition root, like ``operator run``).

It runs in the process ``zkop up -d`` starts (``zkop keeper run``) and, as a second line, in
every local operator replica; a file lock makes exactly one of them act. The one acting:

* heals and scales the control-plane ensemble (:mod:`zkop.controllers.controlplane`), with
  no store needed: a dead member is restarted with its id and data, a lost one replaced;
* restarts the local zkop processes that died (operator replicas, the keeper process);
* records events in ``ensembles/control-plane/events.jsonl`` (no quorum needed) and, when the
  control plane answers, as store events about ``controlplane/control-plane`` in ``zkop-system``.

``zkop down`` disables every keeper before it stops anything, ``zkop up`` enables them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import typer

from zkop.controllers.controlplane import CONTROL_PLANE, ControlPlaneKeeper, ControlPlaneSpec
from zkop.errors import ZkopError
from zkop.platform.base import MemberTemplate
from zkop.platform.local import keeper as lk
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.platform.local.process import PidRecord
from zkop.platform.local.zookeeper import LocalZookeeperPlatform, control_plane_naming
from zkop.runtime import logs
from zkop.zk.config import settings_hash

log = logging.getLogger("zkop.keeper")

LOCK_RETRY = 1.0
STORE_EVENT_TIMEOUT = 3.0

app = typer.Typer(help="The local control plane's keeper (started by `zkop up`).", no_args_is_help=True, hidden=True)


def control_plane_spec(state_dir: Path) -> ControlPlaneSpec | None:
    ens = LocalEnsemble(state_dir, statedir.CONTROL_PLANE)
    if not ens.exists():
        return None
    record = ens.load()
    settings = LocalEnsemble.settings_of(record)
    template = MemberTemplate(
        settings=settings,
        config_hash=settings_hash(settings, record.zookeeper_home),
        zookeeper_home=record.zookeeper_home,
    )
    return ControlPlaneSpec(members=record.desired_members or len(record.members), template=template)


class StoreEvents:
    """Copies events into the store when the control plane answers; never blocks the keeper
    (a bounded queue, dropped when full or when the store cannot be reached)."""

    def __init__(self, state_dir: Path, identity: str) -> None:
        self.state_dir = state_dir
        self.identity = identity
        self.queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue(maxsize=100)
        self.task: asyncio.Task[None] | None = None

    def post(self, type_: str, reason: str, message: str) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="keeper-store-events")
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((type_, reason, message))

    async def _run(self) -> None:
        from zkop.cli import connection
        from zkop.store import Store

        while True:
            event = await self.queue.get()
            try:
                conn = connection.resolve(None, self.state_dir)
                client = conn.client(session_timeout=10.0)
                await client.start(timeout=STORE_EVENT_TIMEOUT)
            except ZkopError:
                continue  # no quorum: the local log has it
            try:
                store = Store(client, root=conn.root, acl=conn.acl())
                while True:
                    async with asyncio.timeout(STORE_EVENT_TIMEOUT):
                        await store.record_event_for(
                            "ControlPlane",
                            "controlplane",
                            CONTROL_PLANE.namespace,
                            CONTROL_PLANE.name,
                            *event,
                            source=self.identity,
                        )
                    if self.queue.empty():
                        break
                    event = self.queue.get_nowait()
            except Exception as exc:  # a lost event is acceptable; a stuck keeper is not
                log.debug("store event dropped: %s", exc)
            finally:
                await client.stop()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task


async def keep(state_dir: Path, identity: str, stop: asyncio.Event, *, supervise: bool = True) -> None:
    """Run a keeper until ``stop`` is set: wait for the lock, then heal while holding it."""
    lock = lk.KeeperLock(state_dir, identity)
    event_log = lk.EventLog(state_dir)
    store_events = StoreEvents(state_dir, identity)

    async def sink(type_: str, reason: str, message: str) -> None:
        await asyncio.to_thread(event_log.append, type_, reason, message, source=identity)
        store_events.post(type_, reason, message)

    async def spec() -> ControlPlaneSpec | None:
        return await asyncio.to_thread(control_plane_spec, state_dir)

    platform = LocalZookeeperPlatform(state_dir, None, naming=control_plane_naming)
    exited = asyncio.Event()  # a member's process ended: look at once, not at the next period
    platform.subscribe(lambda _cluster: exited.set())
    keeper = ControlPlaneKeeper(platform, spec, sink)
    processes = lk.ProcessKeeper(state_dir)
    try:
        while not stop.is_set():
            wait = LOCK_RETRY
            if await asyncio.to_thread(lk.disabled, state_dir):
                lock.release()
            elif lock.held or await asyncio.to_thread(lock.try_acquire):
                try:
                    step = await keeper.step()
                    if step is not None:
                        wait = step.next_look
                    if supervise:
                        for name, what in await asyncio.to_thread(processes.restart_dead):
                            await sink("Warning", "ProcessRestarted", f"{name} {what}")
                except Exception:  # the keeper must outlive any one failure
                    log.exception("keeper step failed")
            woken = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(exited.wait())]
            await asyncio.wait(woken, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for w in woken:
                w.cancel()
            exited.clear()
    finally:
        lock.release()
        await store_events.close()


def start_keeper(state_dir: Path) -> PidRecord:
    """Start the keeper process (a no-op when it runs) and enable keeping."""
    lk.set_disabled(state_dir, False)
    argv = [sys.executable, "-m", "zkop.cli.main", "--state-dir", str(state_dir), "keeper", "run"]
    return lk.keeper_unit(state_dir).start(argv)


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    log_level: str = typer.Option("INFO", "--log-level"),
) -> None:
    """Keep the local control plane (and zkop's local processes) running, in the foreground."""
    logs.setup(log_level.upper())
    state_dir: Path = ctx.obj.state_dir

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await keep(state_dir, f"keeper-{os.getpid()}", stop)

    asyncio.run(main())
