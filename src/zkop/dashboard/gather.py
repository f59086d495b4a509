"""Reading what the dashboard shows, and pushing it to the feed when it changes.

The dashboard holds its own read-only session with the control plane. Watches on the
ZookeeperClusters and Applications say *when* to look (a status write, a spec change); a
periodic refresh catches what no watch reports (events, the leader, the local members, and
the application samples the plots need). Each look reads fresh: ``Store.list`` for both
kinds, ``list_events`` for every namespace, and the leader record, then the page gets the
whole snapshot when anything in it changed.

Losing the control plane does not stop the dashboard: it keeps what it read last, says so,
and reconnects; the local control plane's members (read from this machine, not from
ZooKeeper) are shown all along, which is when they matter most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import KazooException

from zkop.api import Application, ZookeeperCluster
from zkop.client.bridge import TransactionFailed, ZkClient
from zkop.client.connect import Connection
from zkop.coord.election import read_leader
from zkop.dashboard import views
from zkop.dashboard.feed import Feed
from zkop.errors import ZkopError
from zkop.store import EventRecord, Store

log = logging.getLogger("zkop.dashboard")

WATCHED = ("ZookeeperCluster", "Application")
#: A burst of watch events (a scale writes status many times) is one look, at most this often.
MIN_LOOK_GAP = 0.2
#: Reads that take longer than this count as failed (the control plane is in trouble).
READ_TIMEOUT = 5.0
CONNECT_TIMEOUT = 10.0

_READ_ERRORS = (KazooException, ZkopError, TransactionFailed, TimeoutError, OSError)


@dataclass(frozen=True)
class LocalSources:
    """What only this machine knows, when the control plane is the local one ``zkop up`` started:
    its members and keeper events (:func:`zkop.cli.local.status_dict`), and the revision each
    instance of an application runs (the local platform's records)."""

    control_plane: Callable[[], Awaitable[Mapping[str, Any]]] | None = None
    instance_revisions: Callable[[str, str], Mapping[str, str]] | None = None


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Dashboard:
    """Gathers snapshots and publishes them to :attr:`feed`."""

    def __init__(
        self,
        connection: Connection,
        *,
        manager: str,
        local: LocalSources | None = None,
        refresh: float = 2.0,
        revision_of: Callable[[Application], str] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self.manager = manager
        self.local = local or LocalSources()
        self.refresh = refresh
        self.revision_of = revision_of
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.feed = Feed()
        self.history = views.History()
        self.client: ZkClient | None = None
        self.store: Store | None = None
        self.state = "CONNECTING"
        self.connect_error: str | None = None
        self._dirty = asyncio.Event()
        # What was read last, kept while the control plane does not answer.
        self._clusters: list[ZookeeperCluster] = []
        self._apps: list[Application] = []
        self._events: list[EventRecord] = []
        self._operator: dict[str, Any] | None = None

    def poke(self) -> None:
        """Look again soon (a watch fired, the session changed state)."""
        self._dirty.set()

    # ---- the loop ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Look, publish, wait for a watch or the refresh period; until ``stop`` is set."""
        tasks = [asyncio.create_task(self._connect(stop), name="dashboard-connect")]
        try:
            while not stop.is_set():
                started = time.monotonic()
                await self.look()
                waiter = asyncio.create_task(self._dirty.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, stopper}, timeout=self.refresh, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                self._dirty.clear()
                pause = MIN_LOOK_GAP - (time.monotonic() - started)
                if pause > 0 and not stop.is_set():
                    await asyncio.sleep(pause)
        finally:
            self.feed.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            if self.client is not None:
                await self.client.stop()

    async def _connect(self, stop: asyncio.Event) -> None:
        """A session (retried until one is had), then a watch per kind for as long as it runs."""
        while self.client is None and not stop.is_set():
            client = self.connection.client()
            try:
                await client.start(timeout=self.connect_timeout)
            except (ZkopError, KazooException, OSError) as exc:
                self.connect_error = str(exc) if isinstance(exc, ZkopError) else _why(exc)
                self.poke()
                await asyncio.sleep(2.0)
                continue
            client.add_state_listener(self._on_state)
            self.client = client
            self.store = Store(client, root=self.connection.root, acl=self.connection.acl())
            self.state = "CONNECTED"
            self.connect_error = None
            self.poke()
        if self.store is None:
            return
        await asyncio.gather(*(self._watch(self.store, kind) for kind in WATCHED))

    def _on_state(self, state: str) -> None:
        self.state = state
        self.poke()

    async def _watch(self, store: Store, kind: str) -> None:
        while True:
            try:
                async for _ in store.watch(kind):
                    self.poke()
            except _READ_ERRORS as exc:
                log.debug("watch of %s ended: %s", kind, _why(exc))
            await asyncio.sleep(1.0)

    # ---- one look ----------------------------------------------------------------

    async def look(self) -> bool:
        """Read everything once and publish it; True when the page got something new."""
        errors: list[str] = []
        now = self.clock()
        fresh = False
        if self.store is not None and self.client is not None:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    await self._read(self.store, self.client, errors)
                fresh = True
            except _READ_ERRORS as exc:
                errors.append(f"cannot read the control plane at {self.connection.hosts}: {_why(exc)}")
        elif self.connect_error:
            errors.append(self.connect_error)
        if fresh:  # samples of what was just read, never of what was read before an outage
            for app in self._apps:
                self.history.record(app.key, views.sample_of(app, now))
            self.history.keep_only(a.key for a in self._apps)
        local = await self._local(errors)
        revisions: dict[str, str] = {}
        instance_revisions: dict[str, Mapping[str, str]] = {}
        for app in self._apps:
            if self.revision_of is not None:
                revisions[app.key] = self.revision_of(app)
            if self.local.instance_revisions is not None:
                with contextlib.suppress(OSError, ValueError, ZkopError):
                    instance_revisions[app.key] = self.local.instance_revisions(app.namespace, app.name)
        data = views.snapshot(
            clusters=self._clusters,
            apps=self._apps,
            events=self._events,
            history=self.history,
            operator=self._operator,
            local=local,
            connection={"hosts": self.connection.hosts, "root": self.connection.root, "state": self.state},
            revisions=revisions,
            instance_revisions=instance_revisions,
            errors=errors,
        )
        return self.feed.publish(data)

    async def _read(self, store: Store, client: ZkClient, errors: list[str]) -> None:
        clusters, apps, events, leader = await asyncio.gather(
            store.list("ZookeeperCluster"),
            store.list("Application"),
            store.list_events(),
            read_leader(client, f"{self.connection.root}/leader/{self.manager}"),
        )
        errors += [str(c) for c in (*clusters.corrupt, *apps.corrupt)]
        self._clusters = [c for c in clusters.items if isinstance(c, ZookeeperCluster)]
        self._apps = [a for a in apps.items if isinstance(a, Application)]
        self._events = events
        self._operator = views.operator_view(
            self.manager, leader.identity, leader.epoch, leader.since, leader.candidates
        )

    async def _local(self, errors: list[str]) -> dict[str, Any] | None:
        if self.local.control_plane is None:
            return None
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                return views.local_view(await self.local.control_plane())
        except (OSError, ValueError, ZkopError, TimeoutError) as exc:
            errors.append(f"cannot read the local control plane: {_why(exc)}")
            return None


__all__ = ["Dashboard", "LocalSources"]
