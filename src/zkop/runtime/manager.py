"""The Manager: owns the ZooKeeper session, the election, the controllers, metrics and health.

While it leads, controllers run with a store fenced by the term's epoch, and each
platform has been told that epoch first (so a deposed leader's platform actions are
refused from the moment the new term opens). On SUSPENDED the controllers are cancelled
at once; on reconnect the term is confirmed with ZooKeeper before they run again. On
SIGTERM the leader stops its workers and resigns so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from zkop.api import resolve_kind
from zkop.client.bridge import ZkClient
from zkop.client.connect import Connection
from zkop.coord.coordination import Coordination
from zkop.coord.election import LeaderElection, default_identity
from zkop.errors import Fenced
from zkop.platform.base import PlatformEvents
from zkop.runtime.controller import Context, Controller
from zkop.runtime.http import Fallback, HealthServer
from zkop.runtime.metrics import ManagerMetrics
from zkop.store import Fence, Store
from zkop.store.base import ResourceStore

log = logging.getLogger("zkop.manager")

FENCED_PAUSE = 0.5  # seconds before campaigning again after a term was refused at its start
CLAIM_REPORT = 2.0  # seconds between reports while a platform's fence keeps a new term waiting


class FencedPlatform(Protocol):
    name: str

    def claim(self, epoch: int) -> None:
        """Record ``epoch`` as the newest; older epochs are refused from now on (``Fenced``,
        also for ``epoch`` itself when a newer one was seen)."""


# Builds the store of desired state on the coordination session (the Kubernetes store: the API).
StoreFactory = Callable[[ZkClient], Awaitable[ResourceStore]]


class Runnable(Protocol):
    """Work a platform does while this replica leads (the local platform's supervisor)."""

    async def run(self, epoch: int, events: PlatformEvents) -> None: ...


@dataclass
class ManagerOptions:
    name: str = "zkop-operator"
    leader_elect: bool = True
    session_timeout: float = 10.0
    namespace: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 0  # None: no endpoint
    identity: str | None = None
    http_fallback: Fallback | None = None  # serves other paths of the metrics port (the dashboard)


class Manager:
    def __init__(
        self,
        connection: Connection,
        options: ManagerOptions | None = None,
        *,
        controllers: Sequence[Controller] = (),
        platforms: Sequence[FencedPlatform] = (),
        runnables: Sequence[Runnable] = (),
        store: StoreFactory | None = None,
    ) -> None:
        self.connection = connection
        self.store_factory = store
        self.options = options or ManagerOptions()
        self.identity = self.options.identity or default_identity()
        self.controllers = list(controllers)
        self.platforms = list(platforms)
        self.runnables = list(runnables)
        self.metrics = ManagerMetrics()
        self.client: ZkClient | None = None
        self.election: LeaderElection | None = None
        self.health: HealthServer | None = None
        self.stopping = asyncio.Event()
        self.leading_since: float | None = None
        self.epoch: int | None = None
        self._controllers_task: asyncio.Task[Any] | None = None
        self._retired: list[asyncio.Task[Any]] = []
        self._fenced = asyncio.Event()
        self.started = asyncio.Event()

    # ---- health ------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self.client is not None and self.client.connected

    @property
    def leading(self) -> bool:
        if not self.options.leader_elect:
            return self._controllers_task is not None
        return self.election is not None and self.election.leading

    # ---- run ---------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        m = self.metrics
        name = self.options.name
        self.client = self.connection.client(session_timeout=self.options.session_timeout)

        def on_state(state: str) -> None:
            for s in ("CONNECTED", "SUSPENDED", "LOST"):
                m.session_state.labels(s).set(1 if s == state else 0)
            if self.election is not None:
                self.election.on_state(state)
            if state in ("SUSPENDED", "LOST"):
                self._stop_controllers()  # stop acting at once

        self.client.add_state_listener(on_state)
        await self.client.start(timeout=30)
        on_state("CONNECTED")
        if self.options.metrics_port is not None:
            self.health = HealthServer(
                m.registry,
                ready=self.is_ready,
                host=self.options.metrics_host,
                port=self.options.metrics_port,
                fallback=self.options.http_fallback,
            )
            await self.health.start()
        coordination = Coordination(self.client, self.connection.root, tuple(self.connection.acl()))
        store: ResourceStore
        if self.store_factory is not None:
            store = await self.store_factory(self.client)
        else:
            store = Store(self.client, root=self.connection.root, acl=self.connection.acl())
        self.started.set()
        try:
            if not self.options.leader_elect:
                log.info("running without leader election", extra={"manager": name})
                self._start_controllers(Context(store, None, self.identity, coordination=coordination))
                await self.stopping.wait()
                return
            self.election = LeaderElection(
                self.client,
                root=self.connection.root,
                name=name,
                identity=self.identity,
                acl=self.connection.acl(),
                session_timeout=self.options.session_timeout,
            )
            while not self.stopping.is_set():
                campaign = asyncio.create_task(self.election.campaign())
                stop_wait = asyncio.create_task(self.stopping.wait())
                await asyncio.wait({campaign, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                if self.stopping.is_set():
                    campaign.cancel()
                    with contextlib.suppress(BaseException):
                        await campaign
                    break
                term = campaign.result()
                await self._lead(store, coordination, term.epoch)
        finally:
            await self._shutdown()

    async def _claim(self, epoch: int) -> bool:
        """Tell every platform the new epoch; False when the term was lost meanwhile.

        A claim may wait: the local platform's fence lock is held for one action at a time, and
        a replica paused inside an action holds it until it resumes or dies. The claim runs in a
        thread so the loop (and the lease) stays live, and is reported while it waits."""
        assert self.election is not None
        for platform in self.platforms:
            claim = asyncio.ensure_future(asyncio.to_thread(platform.claim, epoch))
            started = time.monotonic()
            while True:
                done, _ = await asyncio.wait({claim}, timeout=CLAIM_REPORT)
                if done:
                    claim.result()  # Fenced propagates
                    break
                waited = time.monotonic() - started
                log.warning(
                    "waiting %.0fs for platform %s to admit epoch %d (an action of another replica holds its fence)",
                    waited,
                    platform.name,
                    epoch,
                    extra={"manager": self.options.name, "epoch": epoch},
                )
                if self.stopping.is_set() or not await self.election.confirm():
                    # The thread finishes on its own; a late claim of an old epoch changes nothing.
                    claim.add_done_callback(lambda f: f.exception())
                    return False
        return True

    async def _lead(self, store: ResourceStore, coordination: Coordination, epoch: int) -> None:
        assert self.election is not None
        m, name = self.metrics, self.options.name
        try:
            if not await self._claim(epoch):
                log.info("term lost before the platforms admitted it", extra={"manager": name, "epoch": epoch})
                await self.election.resign()
                return
        except Fenced as exc:
            # Deposed between winning and leading (paused in between): a newer term has acted.
            m.fencing_rejections.labels(self.identity).inc()
            log.warning("fenced before leading: %s; stepping down", exc, extra={"manager": name, "epoch": epoch})
            await self.election.resign()
            log.info("stopped leading", extra={"manager": name, "epoch": epoch})
            # A moment before campaigning again, so a refused replica does not spin.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), FENCED_PAUSE)
            return
        self.epoch, self.leading_since = epoch, time.time()
        m.leader.labels(name).set(1)
        m.epoch.labels(name).set(epoch)
        m.leader_transitions.labels(name).inc()
        log.info("became leader", extra={"manager": name, "epoch": epoch, "identity": self.identity})
        fence = self.election.fence()
        ctx = Context(
            store.fenced(Fence(fence, epoch)),
            epoch,
            self.identity,
            on_fenced=self._fenced.set,
            coordination=coordination.fenced(fence),
        )
        self._fenced.clear()
        hold = asyncio.create_task(self.election.hold())
        try:
            while not self.stopping.is_set() and not hold.done() and not self._fenced.is_set():
                task = self._controllers_task
                if task is not None and task.done() and not task.cancelled():
                    # A controller (or a platform's runnable) ended with an error: report it and
                    # start the set again, a moment later, rather than lead with nothing running.
                    log.error(
                        "controllers stopped: %s; starting them again",
                        task.exception(),
                        extra={"manager": name, "epoch": epoch},
                    )
                    self._controllers_task = None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), FENCED_PAUSE)
                if self.election.leading and self._controllers_task is None:
                    await self._drain_retired()
                    self._start_controllers(ctx)
                elif not self.election.leading and self._controllers_task is not None:
                    self._stop_controllers()
                waiters = {
                    hold,
                    asyncio.ensure_future(self.stopping.wait()),
                    asyncio.ensure_future(self._fenced.wait()),
                }
                await asyncio.wait(waiters, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters - {hold}:
                    w.cancel()
        finally:
            hold.cancel()
            with contextlib.suppress(BaseException):
                await hold
            self._stop_controllers()
            await self._drain_retired()
            if self._fenced.is_set():
                log.warning("fenced: a newer term exists; stepping down", extra={"manager": name, "epoch": epoch})
            # Giving the term up at once lets a standby lead without waiting for a timeout.
            await self.election.resign()
            self.epoch, self.leading_since = None, None
            m.leader.labels(name).set(0)
            m.epoch.labels(name).set(0)
            m.leader_transitions.labels(name).inc()
            log.info("stopped leading", extra={"manager": name, "epoch": epoch})

    def _start_controllers(self, ctx: Context) -> None:
        async def events(kind: str, namespace: str, name: str, type_: str, reason: str, message: str) -> None:
            with contextlib.suppress(Exception):
                plural = resolve_kind(kind).plural
                await ctx.store.record_event_for(kind, plural, namespace, name, type_, reason, message, ctx.identity)

        async def runnable(r: Runnable) -> None:
            assert ctx.epoch is not None
            try:
                await r.run(ctx.epoch, events)
            except Fenced:
                ctx.on_fenced()

        async def run_all() -> None:
            await asyncio.gather(
                *(c.run(ctx, self.metrics) for c in self.controllers), *(runnable(r) for r in self.runnables)
            )
            await asyncio.Event().wait()  # no controllers: still "running"

        self._controllers_task = asyncio.create_task(run_all(), name="controllers")

    def _stop_controllers(self) -> None:
        """Cancel the controllers at once; the cancelled task is awaited before any restart."""
        task = self._controllers_task
        if task is not None:
            task.cancel()
            self._retired.append(task)
            self._controllers_task = None

    async def _drain_retired(self) -> None:
        """Wait until cancelled controllers have stopped, so two sets never run at once."""
        while self._retired:
            task = self._retired.pop()
            with contextlib.suppress(BaseException):
                await task

    async def _shutdown(self) -> None:
        self._stop_controllers()
        await self._drain_retired()
        if self.election is not None:
            await self.election.resign()
        if self.health is not None:
            await self.health.stop()
        if self.client is not None:
            await self.client.stop()
