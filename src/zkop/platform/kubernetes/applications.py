"""Applications as Pods (the :class:`~zkop.platform.base.InstancePlatform` contract on
Kubernetes). The manifests and the reading of Pod status are in :mod:`.instances`; this module
creates, deletes, lists and watches them through the API.

The kubelet supervises (restarts with its crash-loop back-off, probes, limits) and the scheduler
places; the platform reports what they say:

- **Readiness** is the Pod's Ready condition; restarts, crash loops (the container waiting in
  ``CrashLoopBackOff``) and last exits come from the container status; the endpoint is the Pod IP
  with the container's named ports.
- **Usage** comes from the metrics API (``metrics.k8s.io``, e.g. metrics-server) when the cluster
  has one; without it CPU and memory are None (the Application controller says so in a condition
  when it autoscales on CPU), and the API is asked again a minute later.
- **Names** are ``<app>-<n>`` with ``n`` from a counter in the coordination ZooKeeper
  (``<root>/applications/<namespace>/<app>/next-index``) that only grows, and never below an
  index a Pod has, so a name is never given to two instances.
- **Changes**: while this replica leads, :meth:`KubernetesInstancePlatform.run` watches the Pods
  of every application and calls the subscribers when one's readiness, restarts, phase or
  address changes, so the controller updates the registry at once; it records an event on the
  Application when an instance restarted, and replaces a Pod that ended for good (Failed or
  Succeeded: evicted, its node shut down), keeping its name, as the kubelet would restart it.
- **Fencing**: every action first checks that no newer leadership term has begun (the epoch
  znode of the election) and stamps the term's epoch on what it creates; a deposed leader's
  action is refused with :class:`~zkop.errors.Fenced`. What this cannot fence (a create sent just
  before the check's answer went stale) is the same as for the ZooKeeper members.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.rest import ApiException

import zkop
from zkop.api.meta import GROUP, VERSION
from zkop.errors import Fenced
from zkop.platform.base import AppRef, InstanceObservation, InstanceTemplate, PlatformEvents, Resources
from zkop.platform.kubernetes import instances as I
from zkop.platform.kubernetes.apierrors import KubernetesError, api_error, unless_absent
from zkop.platform.kubernetes.coordination import CoordinationSession, Session
from zkop.platform.notify import Subscribers, app_event

log = logging.getLogger("zkop.platform.kubernetes")

#: The image of instances whose template names none: the operator's own (Python and zkop).
DEFAULT_IMAGE = f"zkop:{zkop.__version__}"
STOP_TIMEOUT = 60.0  # seconds to wait for an application's Pods to be gone before forcing them
METRICS_RETRY = 60.0  # seconds before asking again for a metrics API that was not there
WATCH_TIMEOUT = 240  # seconds of one watch request (under the client's own 5 minutes)
RECONNECT_MIN, RECONNECT_MAX = 0.5, 10.0

Obj = dict[str, Any]


async def _json(response: Awaitable[Any]) -> Obj:
    """The body of a ``_preload_content=False`` call as JSON (dicts as the API writes them, no
    model classes), with an error status raised as :class:`ApiException`."""
    resp = await response
    try:
        body = await resp.read()
        if not 200 <= resp.status <= 299:
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body = body
            raise exc
        data: Obj = json.loads(body)
        return data
    finally:
        resp.release()


class KubernetesInstancePlatform:
    name = "kubernetes"

    def __init__(
        self,
        api: k8s.ApiClient,
        coordination: Session,
        *,
        root: str = "/zkop",
        epoch_path: str | None = None,
        acl: Sequence[Any] = (),
        namespace: str | None = None,
        default_image: str = DEFAULT_IMAGE,
        metrics_retry: float = METRICS_RETRY,
    ) -> None:
        self.api = api
        self.core = k8s.CoreV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        # Bodies are the manifests as dicts (the API client sends them as they are).
        self._create_pod: Callable[..., Awaitable[Any]] = self.core.create_namespaced_pod
        self._create_secret: Callable[..., Awaitable[Any]] = self.core.create_namespaced_secret
        self._replace_secret: Callable[..., Awaitable[Any]] = self.core.replace_namespaced_secret
        self._coord = CoordinationSession(coordination, epoch_path, acl)
        self.root = root.rstrip("/")
        self.namespace = namespace
        self.default_image = default_image
        self.metrics_retry = metrics_retry
        self._metrics_absent_until = 0.0
        self._subscribers: Subscribers[AppRef] = Subscribers()
        self._events: PlatformEvents | None = None

    # ---- plumbing ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[AppRef], None]) -> None:
        """``callback(app)`` runs (on the event loop) when a Pod of ``app`` changed."""
        self._subscribers.add(callback)

    async def _event(self, ref: AppRef, type_: str, reason: str, message: str) -> None:
        await app_event(self._events, ref, type_, reason, message)

    # ---- fencing ------------------------------------------------------------------------

    def claim(self, epoch: int) -> None:
        """Nothing to record: the newest epoch is the election's own znode."""

    # ---- names --------------------------------------------------------------------------

    def _app_path(self, app: AppRef) -> str:
        return f"{self.root}/applications/{app.namespace}/{app.name}"

    def _counter(self, app: AppRef) -> str:
        return f"{self._app_path(app)}/next-index"

    async def _allocate(self, app: AppRef, count: int, floor: int) -> int:
        """The first of ``count`` indexes never handed out (and at least ``floor``); the counter
        moves past them (compare-and-set: indexes only grow)."""
        path = self._counter(app)
        for _ in range(20):
            current, version = await self._coord.read_counter(path)
            first = max(current, floor, 1)
            try:
                await self._coord.write(path, str(first + count).encode(), version)
                return first
            except (NodeExistsError, BadVersionError):
                continue
        raise KubernetesError(f"the instance counter of {app.key} keeps changing")

    # ---- reading ------------------------------------------------------------------------

    async def _pods(self, app: AppRef) -> list[Obj]:
        try:
            data = await _json(
                self.core.list_namespaced_pod(app.namespace, label_selector=I.selector(app), _preload_content=False)
            )
        except ApiException as exc:
            raise api_error(exc, f"listing the Pods of {app.key}") from None
        return list(data.get("items") or [])

    async def _metrics(self, app: AppRef) -> dict[str, Obj] | None:
        """PodMetrics by Pod name, or None when the cluster has no metrics API (asked again later)."""
        if time.monotonic() < self._metrics_absent_until:
            return None
        try:
            data: Any = await self.custom.list_namespaced_custom_object(
                "metrics.k8s.io", "v1beta1", app.namespace, "pods", label_selector=I.selector(app)
            )
        except ApiException as exc:
            if exc.status in (403, 404, 503):
                if self._metrics_absent_until == 0.0:
                    why = "forbidden (RBAC)" if exc.status == 403 else f"answered {exc.status}"
                    log.info("no metrics API (metrics.k8s.io %s): instances report no CPU or memory use", why)
                self._metrics_absent_until = time.monotonic() + self.metrics_retry
                return None
            raise api_error(exc, f"reading the metrics of {app.key}") from None
        except (OSError, TimeoutError):
            return None
        return {str((m.get("metadata") or {}).get("name")): m for m in (data or {}).get("items") or []}

    async def _owner_uid(self, app: AppRef) -> str:
        """The Application's uid, read fresh (a cached one could name a deleted incarnation, whose
        dependents the garbage collector would remove)."""
        try:
            obj: Any = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, app.namespace, "applications", app.name
            )
        except ApiException as exc:
            if exc.status == 404:
                raise KubernetesError(f"application {app.key} does not exist (any more)") from None
            raise api_error(exc, f"reading application {app.key}") from None
        return str(obj["metadata"]["uid"])

    # ---- the contract -----------------------------------------------------------------

    async def observe(self, app: AppRef) -> list[InstanceObservation]:
        pods = [p for p in await self._pods(app) if not I.terminating(p)]
        metrics = await self._metrics(app) if pods else None
        observed = [I.observation(p, (metrics or {}).get(str(p["metadata"]["name"]))) for p in pods]
        return sorted(observed, key=lambda o: (o.index, o.name))

    async def set_template(self, app: AppRef, template: InstanceTemplate, *, epoch: int | None) -> None:
        """The application's Secret holds the template's credentials (the registry identity, a
        ZookeeperZnode's; a restarted container reads them anew); the rest is in each Pod."""
        await self._ensure_secret(app, template, epoch=epoch, create=False)

    async def _ensure_secret(self, app: AppRef, template: InstanceTemplate, *, epoch: int | None, create: bool) -> None:
        data = I.secret_data(template)
        name = I.secret_name(app)
        reading = _json(self.core.read_namespaced_secret(name, app.namespace, _preload_content=False))
        current = await unless_absent(reading, f"reading Secret {name}")
        if current is not None:
            have = {k: base64.b64decode(v).decode() for k, v in (current.get("data") or {}).items()}
            if have == data:
                return
        elif not create or not data:
            return  # made with the first instance
        await self._coord.check(epoch)
        body = I.secret(app, data, await self._owner_uid(app), epoch=epoch)
        try:
            if current is None:
                await self._create_secret(app.namespace, body)
            else:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await self._replace_secret(name, app.namespace, body)
        except ApiException as exc:
            if exc.status != 409:  # made or changed meanwhile: the next look compares again
                raise api_error(exc, f"writing Secret {name}") from None

    async def create_instances(
        self, app: AppRef, template: InstanceTemplate, count: int, *, epoch: int | None
    ) -> list[str]:
        if count <= 0:
            return []
        await self._coord.check(epoch)
        uid = await self._owner_uid(app)
        await self._ensure_secret(app, template, epoch=epoch, create=True)
        existing = [i for i in (I.index_of(p) for p in await self._pods(app)) if i is not None]
        first = await self._allocate(app, count, max(existing, default=0) + 1)
        names: list[str] = []
        for index in range(first, first + count):
            for _ in range(10):
                body = I.pod(app, index, template, image=self.default_image, owner_uid=uid, epoch=epoch)
                try:
                    await self._create_pod(app.namespace, body)
                except ApiException as exc:
                    if exc.status != 409:
                        raise api_error(exc, f"creating Pod {I.pod_name(app, index)}") from None
                    # The name is taken (a counter lost or behind): a new index, never that name again.
                    index = await self._allocate(app, 1, index + 1)
                    continue
                names.append(I.pod_name(app, index))
                break
            else:
                raise KubernetesError(f"no free instance name for {app.key} after 10 tries")
        return names

    async def stop_instance(self, app: AppRef, name: str, *, epoch: int | None) -> None:
        """Delete the Pod: the kubelet stops it gracefully (SIGTERM, its grace period); it is no
        longer observed from now on."""
        await self._coord.check(epoch)
        await unless_absent(self.core.delete_namespaced_pod(name, app.namespace), f"deleting Pod {name}")

    async def remove_app(self, app: AppRef, *, epoch: int | None) -> None:
        """Delete every Pod and the Secret, wait until the Pods are gone (forcing those still
        there after a minute: their node is gone), then forget the name counter."""
        await self._coord.check(epoch)
        pods = await self._pods(app)
        for pod in pods:
            name = str(pod["metadata"]["name"])
            with contextlib.suppress(ApiException):
                await self.core.delete_namespaced_pod(name, app.namespace)
        secret = I.secret_name(app)
        await unless_absent(self.core.delete_namespaced_secret(secret, app.namespace), f"deleting Secret {secret}")
        deadline = time.monotonic() + STOP_TIMEOUT
        while pods:
            await asyncio.sleep(0.25)
            pods = await self._pods(app)
            if pods and time.monotonic() > deadline:
                for pod in pods:
                    with contextlib.suppress(ApiException):
                        await self.core.delete_namespaced_pod(
                            str(pod["metadata"]["name"]), app.namespace, grace_period_seconds=0
                        )
                deadline = time.monotonic() + STOP_TIMEOUT
        zk = await self._coord.zk()
        for path in (self._counter(app), self._app_path(app)):
            with contextlib.suppress(NoNodeError, NotEmptyError):
                await zk.delete(path)

    async def apps(self) -> list[AppRef]:
        try:
            if self.namespace is None:
                call = self.core.list_pod_for_all_namespaces(label_selector=I.ALL_APPS_SELECTOR, _preload_content=False)
            else:
                call = self.core.list_namespaced_pod(
                    self.namespace, label_selector=I.ALL_APPS_SELECTOR, _preload_content=False
                )
            data = await _json(call)
        except ApiException as exc:
            raise api_error(exc, "listing the Pods of applications") from None
        refs = {I.app_of(p) for p in data.get("items") or []}
        return sorted((r for r in refs if r is not None), key=lambda r: r.key)

    async def capacity(self) -> Resources:
        try:
            data = await _json(self.core.list_node(_preload_content=False))
        except ApiException as exc:
            raise api_error(exc, "listing the Nodes") from None
        return I.capacity(list(data.get("items") or []))

    # ---- while leading: the Pods as they change -----------------------------------------

    async def run(self, epoch: int, events: PlatformEvents) -> None:
        """Watch the Pods of every application until cancelled (while this replica leads)."""
        self._events = events
        seen: dict[tuple[str, str], tuple[AppRef, tuple[Any, ...]]] = {}
        listed: set[tuple[str, str]] = set()
        try:
            async for kind, pod in self._watch():
                if kind == "SYNCED":
                    # Pods gone while no watch ran: their applications look again too.
                    for key in sorted(set(seen) - listed):
                        self._subscribers.notify(seen.pop(key)[0])
                    listed = set()
                    continue
                if kind == "SYNC":
                    listed.add((str(pod["metadata"].get("namespace")), str(pod["metadata"].get("name"))))
                try:
                    await self._changed(kind, pod, seen, epoch)
                except Fenced:
                    raise
                except Exception:
                    log.exception("handling a change of Pod %s failed", (pod.get("metadata") or {}).get("name"))
        finally:
            self._events = None

    async def _changed(
        self, kind: str, pod: Obj, seen: dict[tuple[str, str], tuple[AppRef, tuple[Any, ...]]], epoch: int
    ) -> None:
        ref = I.app_of(pod)
        if ref is None:
            return
        key = (ref.namespace, str(pod["metadata"]["name"]))
        before = seen.get(key)
        if kind == "DELETED":
            seen.pop(key, None)
            self._subscribers.notify(ref)
            return
        now = I.signature(pod)
        seen[key] = (ref, now)
        if before is not None and now == before[1]:
            return
        self._subscribers.notify(ref)
        if kind != "SYNC" and before is not None and I.restarts_of(pod) > before[1][1]:
            last = I.observation(pod).last_exit
            why = f" (exit code {last.code}, {last.reason})" if last is not None and last.code is not None else ""
            await self._event(ref, "Warning", "Restarting", f"{key[1]} restarted{why}; {I.restarts_of(pod)} restarts")
        if I.terminal(pod) and not I.terminating(pod):
            await self._replace(ref, pod, epoch)

    async def _replace(self, ref: AppRef, pod: Obj, epoch: int) -> None:
        """A Pod that ended for good gets a successor of the same name (the instance restarts)."""
        name = str(pod["metadata"]["name"])
        await self._coord.check(epoch)
        status = pod.get("status") or {}
        await unless_absent(
            self.core.delete_namespaced_pod(name, ref.namespace, grace_period_seconds=0), f"deleting Pod {name}"
        )
        for _ in range(40):
            try:
                await self._create_pod(ref.namespace, I.replacement(pod, epoch=epoch))
                break
            except ApiException as exc:
                if exc.status != 409:
                    raise api_error(exc, f"creating Pod {name}") from None
                await asyncio.sleep(0.25)  # the old one is still being removed
        await self._event(
            ref,
            "Warning",
            "Replaced",
            f"{name} ended ({status.get('phase')}: {status.get('reason') or status.get('message') or 'no reason'}); "
            "started again",
        )

    async def _watch(self) -> AsyncIterator[tuple[str, Obj]]:
        """("SYNC", pod) for every Pod listed, then watch events, relisting after 410 Gone."""
        backoff = RECONNECT_MIN
        version = ""
        listed = False
        while True:
            try:
                if not listed:
                    data = await _json(self._list_all(watch=False))
                    version = str((data.get("metadata") or {}).get("resourceVersion") or "")
                    for pod in data.get("items") or []:
                        yield "SYNC", pod
                    yield "SYNCED", {}
                    listed = True
                resp = await self._list_all(watch=True, resource_version=version)
                try:
                    if resp.status == 410:
                        listed = False
                        continue
                    if resp.status != 200:
                        raise ApiException(status=resp.status, reason=resp.reason)
                    while True:
                        line = await resp.content.readline()
                        if not line:
                            break
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                        kind = event.get("type")
                        if kind == "ERROR":  # 410 Gone among them: list again
                            listed = False
                            break
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            yield kind, obj
                    backoff = RECONNECT_MIN
                finally:
                    resp.release()
            except asyncio.CancelledError:
                raise
            except Fenced:
                raise
            except Exception as exc:  # a lost watch only delays: the controller's periodic look goes on
                log.debug("watch of application Pods ended (%s); listing again", exc)
                listed = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX)

    def _list_all(self, *, watch: bool, resource_version: str = "") -> Awaitable[Any]:
        params: dict[str, Any] = {"label_selector": I.ALL_APPS_SELECTOR, "_preload_content": False}
        if watch:
            params |= {"watch": True, "allow_watch_bookmarks": True, "timeout_seconds": WATCH_TIMEOUT}
            if resource_version:
                params["resource_version"] = resource_version
        if self.namespace is None:
            return self.core.list_pod_for_all_namespaces(**params)
        return self.core.list_namespaced_pod(self.namespace, **params)


__all__ = ["DEFAULT_IMAGE", "KubernetesError", "KubernetesInstancePlatform"]
