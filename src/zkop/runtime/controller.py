"""A controller: informers feed keys to a stingy workqueue; N workers call the reconciler."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from zkop.api import Condition, Resource
from zkop.coord.coordination import Coordination
from zkop.runtime.cache import CachedReads
from zkop.runtime.informer import Informer
from zkop.runtime.metrics import ManagerMetrics, QueueMetrics
from zkop.runtime.ratelimit import default_controller_rate_limiter
from zkop.runtime.result import Request, Result
from zkop.runtime.workqueue import ShutDown, WorkQueue
from zkop.store import Fenced, NotFound
from zkop.store.base import ResourceStore
from zkop.store.store import now

log = logging.getLogger("zkop.controller")


@dataclass
class Context:
    """What a reconcile may use. ``store`` (the desired state) and ``coordination`` (the
    ZooKeeper of the election and the registry; the store's own one on the local platform) are
    fenced with the current term's epoch."""

    store: ResourceStore
    epoch: int | None
    identity: str
    on_fenced: Callable[[], None] = lambda: None
    coordination: Coordination | None = None

    async def event(self, obj: Resource, type_: str, reason: str, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.store.record_event(obj, type_, reason, message, source=self.identity)


class Reconciler(Protocol):
    async def reconcile(self, request: Request, ctx: Context) -> Result: ...


Mapper = Callable[[Resource], Iterable[Request]]


@dataclass
class Watch:
    """A secondary source: objects of ``kind`` map to the keys of owners to reconcile."""

    kind: str
    mapper: Mapper


@dataclass(frozen=True)
class Periodic:
    """A secondary source for what lives outside the store: once the primary cache is synced,
    and then every ``every`` seconds, the keys ``await keys()`` names that have no object in
    the cache are queued, e.g. leftovers on a platform of an object deleted behind the
    operator's back. Keys outside the controller's namespace are ignored."""

    every: float
    keys: Callable[[], Awaitable[Iterable[Request]]]


class Controller:
    def __init__(
        self,
        name: str,
        kind: str,
        reconciler: Reconciler,
        *,
        max_concurrent_reconciles: int = 2,
        workers: int | None = None,
        cached_reads: bool = True,
        resync_period: float = 30.0,
        relist_period: float | None = 60.0,
        namespace: str | None = None,
        watches: Iterable[Watch] = (),
        periodic: Iterable[Periodic] = (),
        predicate: Callable[[str, Resource | None, Resource | None], bool] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.reconciler = reconciler
        # Reconciles in flight at once (controller-runtime's MaxConcurrentReconciles); the
        # queue still never hands one key to two of them.
        self.workers = workers if workers is not None else max_concurrent_reconciles
        # Reads of the watched kinds from the informers' caches (see runtime.cache).
        self.cached_reads = cached_reads
        self.resync_period = resync_period
        self.relist_period = relist_period
        self.namespace = namespace
        self.watches = list(watches)
        self.periodic = list(periodic)
        self.predicate = predicate
        self.queue: WorkQueue[Request] | None = None
        self.informers: list[Informer] = []
        self.enqueue_times: dict[Request, float] = {}
        self.on_reconcile_start: Callable[[Request], None] | None = None

    def enqueue(self, request: Request) -> None:
        """Look at ``request`` soon (from the event loop; e.g. a platform saw an instance change).
        Ignored while the controller does not run."""
        self._enqueue(request)

    def _enqueue(self, request: Request) -> None:
        if self.queue is not None and not self.queue.shutting_down:
            self.enqueue_times.setdefault(request, time.monotonic())
            self.queue.add(request)

    async def _periodic(self, source: Periodic, primary: Informer) -> None:
        await primary.synced.wait()
        while True:
            try:
                keys = list(await source.keys())
            except Exception:  # a broken source must not stop the controller
                log.exception("periodic source of %s failed", self.name)
                keys = []
            for req in keys:
                if self.namespace is not None and req.namespace != self.namespace:
                    continue
                if req.key not in primary.cache:
                    self._enqueue(req)
            await asyncio.sleep(source.every)

    def _informer(self, ctx: Context, kind: str) -> Informer:
        """An informer of ``kind`` in this controller's namespace, at its periods."""
        return Informer(
            ctx.store,
            kind,
            namespace=self.namespace,
            resync_period=self.resync_period,
            relist_period=self.relist_period,
        )

    async def run(self, ctx: Context, metrics: ManagerMetrics) -> None:
        """Run until cancelled. Cancelling stops the workers at once (in-flight reconciles too)."""
        queue: WorkQueue[Request] = WorkQueue(
            rate_limiter=default_controller_rate_limiter(), name=self.name, metrics=QueueMetrics(metrics)
        )
        self.queue = queue
        metrics.queue_longest.labels(self.name).set_function(queue.longest_running_processor_seconds)
        primary = self._informer(ctx, self.kind)

        def on_primary(event: str, old: Resource | None, new: Resource | None) -> None:
            obj = new or old
            if obj is None:
                return
            if self.predicate is not None and event != "RESYNC" and not self.predicate(event, old, new):
                return
            self._enqueue(Request(obj.namespace, obj.name))

        primary.add_handler(on_primary)
        self.informers = [primary]
        for watch in self.watches:
            inf = self._informer(ctx, watch.kind)

            def on_secondary(event: str, old: Resource | None, new: Resource | None, w: Watch = watch) -> None:
                obj = new or old
                if obj is not None and event != "RESYNC":
                    for req in w.mapper(obj):
                        self._enqueue(req)

            inf.add_handler(on_secondary)
            self.informers.append(inf)
        tasks = [asyncio.create_task(i.run(), name=f"{self.name}-informer-{i.kind}") for i in self.informers]
        tasks += [
            asyncio.create_task(self._periodic(p, primary), name=f"{self.name}-periodic-{n}")
            for n, p in enumerate(self.periodic)
        ]
        if self.cached_reads:
            ctx = dataclasses.replace(ctx, store=CachedReads(ctx.store, {i.kind: i for i in self.informers}))
        tasks += [
            asyncio.create_task(self._worker(ctx, metrics), name=f"{self.name}-worker-{n}") for n in range(self.workers)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await queue.shutdown(drain=False)
            self.queue = None

    async def _worker(self, ctx: Context, metrics: ManagerMetrics) -> None:
        assert self.queue is not None
        queue = self.queue
        while True:
            try:
                request = await queue.get()
            except ShutDown:
                return
            self.enqueue_times.pop(request, None)
            started = time.monotonic()
            if self.on_reconcile_start is not None:
                self.on_reconcile_start(request)
            try:
                result = await self.reconciler.reconcile(request, ctx)
            except asyncio.CancelledError:
                queue.done(request)
                raise
            except Fenced as exc:
                log.warning(
                    "fenced: an action of this term was refused",
                    extra={"controller": self.name, "key": request.key, "epoch": ctx.epoch, "error": str(exc)},
                )
                metrics.fencing_rejections.labels(ctx.identity).inc()
                metrics.reconcile_total.labels(self.name, "fenced").inc()
                queue.done(request)
                ctx.on_fenced()
                continue
            except Exception as exc:
                metrics.reconcile_errors.labels(self.name).inc()
                metrics.reconcile_total.labels(self.name, "error").inc()
                log.warning(
                    "reconcile failed",
                    extra={
                        "controller": self.name,
                        "key": request.key,
                        "epoch": ctx.epoch,
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
                log.debug("".join(traceback.format_exception(exc)))
                await self._report_failure(ctx, request, exc)
                queue.add_rate_limited(request)
                queue.done(request)
                continue
            finally:
                metrics.reconcile_duration.labels(self.name).observe(time.monotonic() - started)
            metrics.reconcile_total.labels(self.name, "requeue" if not result.is_done else "success").inc()
            if result.requeue_after is not None:
                queue.forget(request)
                queue.add_after(request, result.requeue_after)
            elif result.requeue:
                queue.add_rate_limited(request)
            else:
                queue.forget(request)
            queue.done(request)

    async def _report_failure(self, ctx: Context, request: Request, exc: Exception) -> None:
        """An event and a condition on the object, so users see why it does not converge."""
        try:
            obj = await ctx.store.get(self.kind, request.namespace, request.name)
        except (NotFound, Exception):
            return
        message = f"{type(exc).__name__}: {exc}"[:1000]
        await ctx.event(obj, "Warning", "ReconcileError", message)
        conditions = list(getattr(obj.status, "conditions", []) or [])
        current = next((c for c in conditions if c.type == "ReconcileError"), None)
        if current is not None and current.status == "True" and current.message == message:
            return
        cond = Condition(
            type="ReconcileError",
            status="True",
            reason=type(exc).__name__,
            message=message,
            last_transition_time=now(),
        )
        conditions = [c for c in conditions if c.type != "ReconcileError"] + [cond]
        with contextlib.suppress(Exception):
            await ctx.store.update_status(
                obj.model_copy(update={"status": obj.status.model_copy(update={"conditions": conditions})})
            )
