"""The Application controller: rollout, registry, autoscaling and status, on any platform.

Each reconcile reads the Application, gives the platform the current instance template,
observes the instances (the platform supervises them as a kubelet does: restarts, back-off,
probes, usage, placement), decides with the pure helpers in :mod:`.plan` and
:mod:`.autoscale`, acts under the leader's fence (platform actions carry the epoch, registry
writes are transactions that check it), and writes the status :mod:`.status` computes. The
platform tells the controller when an instance changes, so a crash or a failed readiness
probe takes the endpoint out at once; a periodic look does the rest (level-triggered).

Decisions worth knowing:

- **Scaling writes status, not spec.** ``spec.replicas`` stays the user's (the starting
  point when autoscaling); the autoscaler's answer is ``status.desiredReplicas`` and that
  many instances run. ``zkop scale`` changes ``spec.replicas``, which autoscaling, when
  on, overrides within its bounds.
- **Autoscaling history lives in memory**: a new leader records the current count as its
  first recommendation, so it waits a full stabilisation window before scaling down.
- **Load metrics**: each instance reports its load itself, as an ephemeral znode under
  ``services/<ns>/<app>/load/<instance>`` in the control-plane ZooKeeper. Instances get the
  address (``ZKOP_REGISTRY_HOSTS``) and their service's own registry identity
  (``ZKOP_REGISTRY_AUTH``, which may write only in that service's ``endpoints`` and
  ``load``), never the operator's credentials. CPU utilisation is the platform's measured
  use relative to ``resources.requests.cpu`` (one core when no request is given).
- ``ZK_HOSTS`` is read from the ZookeeperCluster's status; a later change of that
  connection string (the cluster was scaled) reaches instances when they next start, a
  change of ``clusterRef`` rolls them (it is part of the revision).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from kazoo.exceptions import NoNodeError

from zkop.api import Application, Resource, ZookeeperCluster, ZookeeperZnode
from zkop.controllers.application import plan as P
from zkop.controllers.application.autoscale import MetricSamples, Recommendations, ScaleDecision
from zkop.controllers.application.status import status_for
from zkop.controllers.zookeeperznode import credentials_name
from zkop.coord.coordination import Coordination
from zkop.discovery import registry
from zkop.discovery.instances import Instance
from zkop.errors import ZkopError
from zkop.platform.base import (
    AppRef,
    InstanceObservation,
    InstancePlatform,
    InstanceTemplate,
    PortSpec,
    Resources,
    SecretStore,
)
from zkop.runtime.controller import Context, Controller, Periodic, Watch
from zkop.runtime.result import Request, Result
from zkop.store import Fenced, NotFound
from zkop.store.modify import add_finalizer, remove_finalizer
from zkop.store.store import now as store_now

log = logging.getLogger("zkop.application")

FINALIZER = "zkop.io/application"
DRAIN_SECONDS = 1.0  # between withdrawing an endpoint and stopping its instance
MAX_REQUEUE = 2.0  # look at least this often (loads and the autoscaler)
LEFTOVER_PERIOD = 60.0  # how often the platform is asked for applications that have no object
ZK_AUTH = "ZK_AUTH"  # a ZookeeperZnode's identity, user:password (digest)
# Variables given to instances whose values are credentials (the platform keeps them secret).
CREDENTIAL_ENV = frozenset({registry.AUTH_ENV, ZK_AUTH})


def template_hash(app: Application) -> str:
    """The revision: what an instance is started from (a change rolls the instances)."""
    spec = app.spec
    data = {
        "template": spec.template.model_dump(mode="json"),
        "resources": spec.resources.model_dump(mode="json"),
    }
    if spec.zookeeper is not None:
        data["zookeeper"] = spec.zookeeper.model_dump(mode="json")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def instance_template(app: Application, env: Sequence[tuple[str, str]]) -> InstanceTemplate:
    """What the platform runs for ``app``: its template, probes and resources, with ``env``
    (ZK_HOSTS and the registry's address and identity) after the user's variables; the
    credentials among ``env`` (:data:`CREDENTIAL_ENV`) are marked secret."""
    spec = app.spec
    req, lim = spec.resources.requests, spec.resources.limits
    return InstanceTemplate(
        revision=template_hash(app),
        command=(*spec.template.command, *spec.template.args),
        env=(*((v.name, v.value) for v in spec.template.env), *env),
        working_dir=spec.template.working_dir,
        image=spec.template.image,
        ports=tuple(PortSpec(p.name, p.container_port or None) for p in spec.template.ports),
        requests=Resources(
            float(req.cpu.cores) if req.cpu is not None else 0.0,
            int(req.memory.bytes) if req.memory is not None else 0,
        ),
        memory_limit=int(lim.memory.bytes) if lim.memory is not None else None,
        cpu_limit=float(lim.cpu.cores) if lim.cpu is not None else None,
        readiness=spec.probes.readiness,
        liveness=spec.probes.liveness,
        secret_env=frozenset(k for k, _ in env if k in CREDENTIAL_ENV),
    )


@dataclass
class AppMemory:
    """What a reconcile keeps between runs: the autoscaler's history only."""

    recommendations: Recommendations | None = None


class ApplicationReconciler:
    def __init__(self, platform: InstancePlatform, *, registry_root: str, secrets: SecretStore | None = None) -> None:
        """``secrets``: where ZookeeperZnode credentials are handed over (for spec.zookeeper.znodeRef)."""
        self.platform = platform
        self.root = registry_root
        self.secrets = secrets
        self.memory: dict[str, AppMemory] = {}
        self.refs: dict[tuple[str, str], set[Request]] = {}  # ZookeeperCluster -> applications using it
        self.znode_refs: dict[tuple[str, str], set[Request]] = {}  # ZookeeperZnode -> applications using it
        # Applications whose registry folders and identity were made (or repaired) by this run.
        self._ensured: dict[str, registry.ServiceIdentity] = {}
        self._registry_closed = False  # world write rights taken from every registry folder (upgrades)

    def apps_using(self, obj: Resource) -> list[Request]:
        """Applications to look at again when a ZookeeperCluster changes."""
        return list(self.refs.get((obj.namespace, obj.name), ()))

    def apps_using_znode(self, obj: Resource) -> list[Request]:
        """Applications to look at again when a ZookeeperZnode changes."""
        return list(self.znode_refs.get((obj.namespace, obj.name), ()))

    # ---- the reconcile ----------------------------------------------------------------

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        ref = AppRef(request.namespace, request.name)
        try:
            app = await ctx.store.get("Application", request.namespace, request.name)
        except NotFound:
            # Gone without its finalizer having run (removed by hand): nothing of it may stay.
            if ref in await self.platform.apps() and await self._really_gone(ctx, request):
                log.info("application %s is gone: stopping the instances it left", request.key)
                await self._withdraw(ctx, ref, await self._endpoints(ctx, ref))
                await self.platform.remove_app(ref, epoch=ctx.epoch)
                await self._remove_service(ctx, ref)
            self._forget(request)
            return Result()
        assert isinstance(app, Application)
        if app.metadata.deletion_timestamp is not None:
            await self._finalize(ctx, app)
            self._forget(request)
            return Result()
        if FINALIZER not in app.metadata.finalizers:
            await add_finalizer(ctx.store, app, FINALIZER)
            return Result(requeue_after=0.0)

        mem = self.memory.setdefault(request.key, AppMemory())
        identity = await self._ensure_service(ctx, app)  # before any start: instances get its identity
        zk_hosts, ref_problem = await self._cluster_hosts(ctx, app)
        zk_auth: str | None = None
        if ref_problem is None:
            zk_hosts, zk_auth, ref_problem = await self._znode(ctx, app, zk_hosts)
        template = instance_template(app, self._env(ctx, zk_hosts, identity, zk_auth))
        await self.platform.set_template(ref, template, epoch=ctx.epoch)
        observed = list(await self.platform.observe(ref))
        present = await self._endpoints(ctx, ref)

        # Decide: how many, and which to start and stop.
        desired, decision = await self._desired(ctx, app, observed, mem)
        scaled = decision is not None and desired != self._current(app)
        if scaled and decision is not None:
            await ctx.event(app, "Normal", "Scaled", f"replicas {self._current(app)} -> {desired}: {decision.reason}")
        view = [P.Inst(o.name, o.index, o.revision == template.revision, o.ready) for o in observed]
        rolling = app.spec.strategy.rolling_update
        step = P.rollout(view, desired, rolling.max_surge, rolling.max_unavailable)

        if step.stop:
            await self._stop(ctx, app, [o for o in observed if o.name in step.stop], present)
        if step.start and ref_problem is None:
            created = await self.platform.create_instances(ref, template, step.start, epoch=ctx.epoch)
            await ctx.event(app, "Normal", "Created", ", ".join(created))
        if step.stop or (step.start and ref_problem is None):
            observed = list(await self.platform.observe(ref))

        await self._sync_endpoints(ctx, app, [o for o in observed if o.ready], present)
        status = status_for(
            app,
            observed,
            revision=template.revision,
            desired=desired,
            decision=decision,
            scaled=scaled,
            zk_hosts=zk_hosts,
            ref_problem=ref_problem,
            at=store_now(),
        )
        if status != app.status:
            with contextlib.suppress(NotFound):
                await ctx.store.update_status(app.model_copy(update={"status": status}))
        return Result(requeue_after=MAX_REQUEUE)

    # ---- what instances are given ------------------------------------------------------

    def _env(
        self, ctx: Context, zk_hosts: str, identity: registry.ServiceIdentity, zk_auth: str | None = None
    ) -> list[tuple[str, str]]:
        env = [
            ("ZK_HOSTS", zk_hosts),
            # Where instances report their load, and as whom: the service's identity, which may
            # write only in its own registry folders (never the operator's credentials).
            ("ZKOP_REGISTRY_HOSTS", _coord(ctx).client.hosts),
            ("ZKOP_REGISTRY_ROOT", self.root),
            (registry.AUTH_ENV, identity.credentials),
        ]
        if zk_auth is not None:
            env.append((ZK_AUTH, zk_auth))
        return env

    async def _znode(
        self, ctx: Context, app: Application, zk_hosts: str
    ) -> tuple[str, str | None, tuple[str, str] | None]:
        """With spec.zookeeper.znodeRef: ZK_HOSTS with the znode's path as chroot and its identity
        (``user:password``); else what the cluster gave."""
        for users in self.znode_refs.values():
            users.discard(Request(app.namespace, app.name))
        ref = app.spec.zookeeper.znode_ref if app.spec.zookeeper else None
        if ref is None or app.spec.zookeeper is None:
            return zk_hosts, None, None
        ns = ref.namespace or app.namespace
        self.znode_refs.setdefault((ns, ref.name), set()).add(Request(app.namespace, app.name))
        what = f"zookeeperznode {ns}/{ref.name} (spec.zookeeper.znodeRef)"
        try:
            znode = await ctx.store.get("ZookeeperZnode", ns, ref.name)
        except NotFound:
            return "", None, ("ZnodeNotFound", f"{what} does not exist; no instance is started")
        assert isinstance(znode, ZookeeperZnode)
        cluster = app.spec.zookeeper.cluster_ref
        theirs = znode.spec.cluster_ref
        if (theirs.namespace or ns, theirs.name) != (cluster.namespace or app.namespace, cluster.name):
            return "", None, ("ZnodeClusterMismatch", f"{what} is in another cluster than spec.zookeeper.clusterRef")
        if znode.status.phase != "Ready" or not znode.status.connection_string:
            return "", None, ("ZnodeNotReady", f"{what} is not ready yet; waiting")
        found = await self.secrets.read(ns, credentials_name(ref.name)) if self.secrets is not None else None
        if not found or "auth" not in found:
            return "", None, ("ZnodeNotReady", f"the credentials of {what} are not there yet; waiting")
        return znode.status.connection_string, found["auth"], None

    async def _cluster_hosts(self, ctx: Context, app: Application) -> tuple[str, tuple[str, str] | None]:
        for users in self.refs.values():
            users.discard(Request(app.namespace, app.name))
        ref = app.spec.zookeeper.cluster_ref if app.spec.zookeeper else None
        if ref is None:
            return "", None
        ns = ref.namespace or app.namespace
        self.refs.setdefault((ns, ref.name), set()).add(Request(app.namespace, app.name))
        try:
            zkc = await ctx.store.get("ZookeeperCluster", ns, ref.name)
        except NotFound:
            return "", (
                "ClusterNotFound",
                f"zookeepercluster {ns}/{ref.name} (spec.zookeeper.clusterRef) does not exist; no instance is started",
            )
        assert isinstance(zkc, ZookeeperCluster)
        if not zkc.status.connection_string or not zkc.status.ready_replicas:
            return "", ("ClusterNotReady", f"zookeepercluster {ns}/{ref.name} is not serving yet; waiting")
        return zkc.status.connection_string, None

    # ---- stopping and deleting ---------------------------------------------------------

    async def _stop(
        self, ctx: Context, app: Application, victims: list[InstanceObservation], present: set[str]
    ) -> None:
        ref = AppRef(app.namespace, app.name)
        names = {o.name for o in victims}
        withdrawn = names & present
        await self._withdraw(ctx, ref, withdrawn)
        present -= withdrawn
        if withdrawn:
            # Discovery caches drop the endpoints; calls in flight finish.
            await asyncio.sleep(DRAIN_SECONDS)
        for name in sorted(names):
            await self.platform.stop_instance(ref, name, epoch=ctx.epoch)
        await ctx.event(app, "Normal", "InstancesStopped", ", ".join(sorted(names)))

    async def _finalize(self, ctx: Context, app: Application) -> None:
        """Deleting: withdraw every endpoint, stop every instance, then let the object go."""
        if FINALIZER not in app.metadata.finalizers:
            return
        ref = AppRef(app.namespace, app.name)
        await self._withdraw(ctx, ref, await self._endpoints(ctx, ref))
        await self.platform.remove_app(ref, epoch=ctx.epoch)
        await self._remove_service(ctx, ref)
        await ctx.event(app, "Normal", "Deleted", "instances stopped and endpoints withdrawn")
        await remove_finalizer(ctx.store, app, FINALIZER)

    @staticmethod
    async def _really_gone(ctx: Context, request: Request) -> bool:
        """Asked again with a fresh read: a new session may sit on a follower that has not seen
        the Application created yet, and its instances must not be stopped for that."""
        try:
            await ctx.store.get_fresh("Application", request.namespace, request.name)
        except NotFound:
            return True
        return False

    def _forget(self, request: Request) -> None:
        self.memory.pop(request.key, None)
        self._ensured.pop(request.key, None)
        for users in self.refs.values():
            users.discard(request)

    # ---- scaling ----------------------------------------------------------------------

    @staticmethod
    def _current(app: Application) -> int:
        if app.spec.autoscaling is not None and app.status.desired_replicas is not None:
            return app.status.desired_replicas
        return app.spec.replicas

    async def _desired(
        self, ctx: Context, app: Application, observed: list[InstanceObservation], mem: AppMemory
    ) -> tuple[int, ScaleDecision | None]:
        auto = app.spec.autoscaling
        if auto is None:
            mem.recommendations = None
            return app.spec.replicas, None
        window = float(auto.scale_down_stabilization_seconds)
        if mem.recommendations is None:
            mem.recommendations = Recommendations(window=window)
        mem.recommendations.window = window
        ready = [o for o in observed if o.ready]
        samples: list[MetricSamples] = []
        for metric in auto.metrics:
            if metric.type == "load":
                loads = await registry.read_loads(_coord(ctx).client, self.root, app.namespace, app.name)
                values = {o.name: loads[o.name] for o in ready if o.name in loads}
                samples.append(MetricSamples(float(metric.target_value or 1.0), values, "load"))
            else:
                request = app.spec.resources.requests.cpu
                cores = float(request.cores) if request is not None else 1.0
                used = {o.name: o.cpu_usage / cores * 100.0 for o in ready if o.cpu_usage is not None}
                samples.append(MetricSamples(float(metric.target_utilization or 80), used, "cpu"))
        decision = mem.recommendations.decide_many(
            current_replicas=self._current(app),
            metrics=samples,
            min_replicas=auto.min_replicas,
            max_replicas=auto.max_replicas,
            now=time.monotonic(),
        )
        return decision.desired, decision

    # ---- the registry -----------------------------------------------------------------

    async def _endpoints(self, ctx: Context, ref: AppRef) -> set[str]:
        """The endpoints in the registry now (observed each time, never remembered)."""
        try:
            path = registry.endpoints_path(self.root, ref.namespace, ref.name)
            return set(await _coord(ctx).client.get_children(path))
        except NoNodeError:
            return set()

    async def _sync_endpoints(
        self, ctx: Context, app: Application, ready: list[InstanceObservation], present: set[str]
    ) -> None:
        coord = _coord(ctx)
        await self._ensure_service(ctx, app)
        want = {
            o.name: Instance(o.name, o.host, o.port or 0, {"app": app.name, "namespace": app.namespace})
            for o in ready
            if o.port
        }
        for inst in want.values():
            try:
                await registry.publish_endpoint(
                    coord.client, self.root, app.namespace, app.name, inst, coord.acl, fence=coord.fence
                )
            except ZkopError as exc:
                if isinstance(exc, Fenced):
                    raise
                self._ensured.pop(app.key, None)  # its folders may be gone: make them next time
        # Everything else under the endpoints of an application zkop runs is stale.
        await self._withdraw(ctx, AppRef(app.namespace, app.name), present - set(want))

    async def _ensure_service(self, ctx: Context, app: Application) -> registry.ServiceIdentity:
        """The service's registry folders (ACLs repaired) and identity, once per operator run."""
        identity = self._ensured.get(app.key)
        if identity is None:
            coord = _coord(ctx)
            if not self._registry_closed:
                # Folders older versions left open, also of services zkop does not run.
                for problem in await registry.close_open_folders(coord.client, self.root, coord.acl):
                    log.warning("registry: %s", problem)
                self._registry_closed = True
            identity = await registry.ensure_service(coord.client, self.root, app.namespace, app.name, coord.acl)
            self._ensured[app.key] = identity
        return identity

    async def _withdraw(self, ctx: Context, ref: AppRef, names: set[str]) -> None:
        coord = _coord(ctx)
        for n in sorted(names):
            await registry.withdraw_endpoint(coord.client, self.root, ref.namespace, ref.name, n, fence=coord.fence)

    async def _remove_service(self, ctx: Context, ref: AppRef) -> None:
        """The service's registry folders and identity go with the application (kept while
        anything else is registered there)."""
        coord = _coord(ctx)
        await registry.remove_service(coord.client, self.root, ref.namespace, ref.name, fence=coord.fence)


def _coord(ctx: Context) -> Coordination:
    if ctx.coordination is None:
        raise ZkopError("the Application controller needs the coordination ZooKeeper (the registry)")
    return ctx.coordination


def controller(
    namespace: str | None,
    platform: InstancePlatform,
    registry_root: str = "/zkop",
    *,
    leftover_period: float = LEFTOVER_PERIOD,
    secrets: SecretStore | None = None,
) -> Controller:
    """The Application controller on ``platform`` (``secrets``: where ZookeeperZnode credentials are)."""
    reconciler = ApplicationReconciler(platform, registry_root=registry_root, secrets=secrets)

    async def leftovers() -> list[Request]:
        return [Request(ref.namespace, ref.name) for ref in await platform.apps()]

    ctrl = Controller(
        "application",
        "Application",
        reconciler,
        workers=2,
        namespace=namespace,
        resync_period=30.0,
        watches=[
            Watch("ZookeeperCluster", reconciler.apps_using),
            Watch("ZookeeperZnode", reconciler.apps_using_znode),
        ],
        # An Application removed behind the operator's back (its finalizer never ran) leaves
        # instances on the platform; their key is reconciled, finds no object, and stops them.
        periodic=[Periodic(leftover_period, leftovers)],
    )
    platform.subscribe(lambda ref: ctrl.enqueue(Request(ref.namespace, ref.name)))
    return ctrl


__all__ = ["FINALIZER", "ApplicationReconciler", "controller", "instance_template", "template_hash"]
