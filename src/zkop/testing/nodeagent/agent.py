"""The node agent: a Node, a scheduler for its Pods, a kubelet that runs them as local processes,
a storage provisioner and cluster DNS as hosts files. See the package's docstring."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import os
import platform
import shutil
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import psutil

from zkop.testing.nodeagent import network
from zkop.testing.nodeagent.images import ImageRule, ImageTable, default_rules
from zkop.testing.nodeagent.kube import ApiError, Informer, Kube, Obj, api_path, meta
from zkop.testing.nodeagent.network import AddressPool, HostRecord
from zkop.testing.nodeagent.pods import BackOff, PodWorker
from zkop.testing.nodeagent.process import Proc, detect_isolation
from zkop.testing.nodeagent.provisioner import Provisioner
from zkop.testing.nodeagent.status import now_micro, rfc3339
from zkop.testing.nodeagent.volumes import VolumeNotReady

log = logging.getLogger("zkop.testing.nodeagent")

T = TypeVar("T")

AGENT_VERSION = "v1.34.4-zkop-nodeagent"
LEASE_SECONDS = 40
LEASE_RENEW = 10.0
STATUS_HEARTBEAT = 60.0


class KubeconfigHolder(Protocol):
    """Anything with a kubeconfig, such as :class:`zkop.testing.kube.ControlPlane`."""

    @property
    def kubeconfig(self) -> Path: ...


class NodeAgentError(RuntimeError):
    """The node agent could not start, or was used wrongly."""


def _machine_capacity(root: Path) -> dict[str, str]:
    memory_ki = psutil.virtual_memory().total // 1024
    disk_ki = shutil.disk_usage(root).total // 1024
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{memory_ki}Ki",
        "pods": "110",
        "ephemeral-storage": f"{disk_ki}Ki",
    }


class NodeAgent:
    """A node of a real control plane whose Pods run as local processes. Use it as a context manager::

        with NodeAgent(control_plane, tmp_path / "node", namespaces=["demo"]) as agent:
            ...  # Pods created in "demo" are scheduled onto the node and run

    ``with`` runs it in a thread of its own; ``async with`` runs it as tasks of the current
    event loop. Leaving either stops every process it started (graceful, as a node shutdown).
    """

    def __init__(
        self,
        cluster: KubeconfigHolder | str | os.PathLike[str],
        root_dir: str | os.PathLike[str],
        *,
        node_name: str = "zkop-node",
        namespaces: Iterable[str] | None = None,
        images: Iterable[ImageRule] = (),
        isolation: str = "auto",
        backoff: BackOff | None = None,
        backoff_scale: float = 1.0,
        storage_class: str = "zkop-node-agent",
        default_storage_class: bool = True,
        addresses: str = "127.0.0.0/24",
        address_lock_dir: str | os.PathLike[str] | None = None,
        capacity: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        shutdown_grace: float = 30.0,
        delete_node_on_stop: bool = False,
        refresh_interval: float = 10.0,
        scheduler_name: str = "default-scheduler",
        context: str | None = None,
    ) -> None:
        if isinstance(cluster, (str, os.PathLike)):
            self.kubeconfig = Path(cluster)
        else:
            self.kubeconfig = Path(cluster.kubeconfig)
        self.context = context
        self.root = Path(root_dir).resolve()
        self.node_name = node_name
        self.namespaces: frozenset[str] | None = frozenset(namespaces) if namespaces is not None else None
        self.images = ImageTable()
        self._extra_rules = list(images)
        self.requested_isolation = isolation
        self.isolation = ""
        self.backoff = (backoff or BackOff()).scaled(backoff_scale)
        self.storage_class = storage_class
        self.default_storage_class = default_storage_class
        self.pool = AddressPool(addresses, Path(address_lock_dir) if address_lock_dir else None)
        self._capacity_override = dict(capacity or {})
        self.node_allocatable: dict[str, str] = {}
        self.node_labels: dict[str, str] = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
            "node.zkop.io/agent": "true",
            **(labels or {}),
        }
        self.shutdown_grace = shutdown_grace
        self.delete_node_on_stop = delete_node_on_stop
        self.refresh_interval = refresh_interval
        self.scheduler_name = scheduler_name
        self.host_ip = "127.0.0.1"
        self.api_host = "127.0.0.1"
        self.api_port = 443
        self.bind_shim: Path | None = None
        self.hosts_file = self.root / "hosts"
        self.kube: Kube = None  # type: ignore[assignment]  # set when started

        self.workers: dict[str, PodWorker] = {}
        self._sandboxes: dict[str, PodWorker] = {}
        self._records: list[HostRecord] = []
        self._machine_hosts: list[str] = []
        self._procs: set[Proc] = set()
        self._procs_lock = threading.Lock()
        self._binding: set[str] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._informers: dict[str, Informer] = {}
        self._events: asyncio.Queue[tuple[Obj, str, str, str, str | None, str, str]] | None = None
        self._event_names: dict[tuple[str, ...], tuple[str, int]] = {}
        self._dns_dirty: asyncio.Event | None = None
        self._node_uid = ""
        self._transitions: dict[tuple[str, str], str] = {}
        self._informer_tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested: asyncio.Event | None = None
        self._crash = False
        self.provisioner: Provisioner | None = None

    # ------------------------------------------------------------------ lifecycle (thread)

    def __enter__(self) -> NodeAgent:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        """Start in a thread of its own; returns once the Node is registered and the caches are filled."""
        if self._started:
            raise NodeAgentError("node agent already started")
        self._started = True
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def main() -> None:
            async def serve() -> None:
                self._stop_requested = asyncio.Event()
                try:
                    await self._start()
                except BaseException as e:
                    ready.set_exception(e)
                    await self._stop(graceful=False)
                    return
                ready.set_result(None)
                await self._stop_requested.wait()
                await self._stop(graceful=not self._crash)

            asyncio.run(serve())

        self._thread = threading.Thread(target=main, name=f"nodeagent-{self.node_name}", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout)
        except concurrent.futures.TimeoutError:
            self.stop()
            raise NodeAgentError(f"the node agent did not start within {timeout:.0f}s") from None

    def stop(self) -> None:
        """Stop: containers get SIGTERM and their grace period (at most ``shutdown_grace``), their
        Pods end Failed as after a graceful node shutdown, the Node turns NotReady."""
        self._request_stop()

    def crash(self) -> None:
        """Stop as a node that loses power: every process SIGKILLed, nothing written to the API
        (the Node's lease just runs out). A new agent with the same node name and root runs the
        Pods again, as after a reboot."""
        self._crash = True
        for proc in self._tracked():
            proc.signal_group(9)
        self._request_stop()

    def _request_stop(self) -> None:
        thread, loop, event = self._thread, self._loop, self._stop_requested
        if thread is None:
            return
        if loop is not None and event is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        thread.join(self.shutdown_grace + 60)
        if thread.is_alive():
            frame = sys._current_frames().get(thread.ident or 0)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "?"
            log.error("node agent %s did not stop in time; its thread is at:\n%s", self.node_name, stack)
        self._thread = None
        for proc in self._tracked():  # the last resort: nothing it started outlives it
            proc.kill_now()
        self.pool.release_all()

    # ------------------------------------------------------------------ lifecycle (asyncio)

    async def __aenter__(self) -> NodeAgent:
        if self._started:
            raise NodeAgentError("node agent already started")
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self._stop(graceful=False)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop(graceful=not self._crash)

    # ------------------------------------------------------------------ start and stop

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._events = asyncio.Queue(maxsize=2000)
        self._dns_dirty = asyncio.Event()
        for sub in ("pods", "logs", "volumes", "images"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.isolation = await asyncio.to_thread(detect_isolation, self.requested_isolation)
        self.bind_shim = await asyncio.to_thread(network.bind_shim)
        rules = await asyncio.to_thread(default_rules, self.root / "images")
        self.images.rules = [*self._extra_rules, *rules]
        self._machine_hosts = network.machine_hosts_lines()
        network.write_atomically(
            self.hosts_file, network.render_hosts([], header="cluster hosts", machine=self._machine_hosts)
        )
        self.node_allocatable = _machine_capacity(self.root) | self._capacity_override

        self.kube = await Kube.from_kubeconfig(self.kubeconfig, self.context)
        server = urllib.parse.urlsplit(self.kube._api.configuration.host)
        self.api_host, self.api_port = server.hostname or "127.0.0.1", server.port or 443

        await self._register_node()
        self.provisioner = Provisioner(
            self.kube,
            self.root,
            self.node_name,
            self.namespaces,
            self.storage_class,
            lambda obj, reason, message, kind: self.event(obj, reason, message, kind, involved="PersistentVolumeClaim"),
            make_default=self.default_storage_class,
        )
        await self.provisioner.ensure_class()

        provisioner = self.provisioner
        self._informers = {
            "pods": Informer(self.kube, api_path("v1", "pods"), self._on_pod),
            "services": Informer(self.kube, api_path("v1", "services"), self._on_service),
            "pvcs": Informer(self.kube, api_path("v1", "persistentvolumeclaims"), provisioner.on_claim),
            "pvs": Informer(self.kube, api_path("v1", "persistentvolumes"), provisioner.on_volume),
        }
        self._informer_tasks = [
            asyncio.create_task(informer.run(), name=f"informer-{name}") for name, informer in self._informers.items()
        ]
        self._tasks += [
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._dns_loop(), name="dns"),
            asyncio.create_task(self._event_loop(), name="events"),
        ]
        try:
            async with asyncio.timeout(60):
                for informer in self._informers.values():
                    await informer.synced.wait()
        except TimeoutError:
            raise NodeAgentError("the node agent's caches did not fill within 60s (is the API server up?)") from None
        log.info("node agent %s: isolation %s, root %s", self.node_name, self.isolation, self.root)

    async def _stop(self, graceful: bool) -> None:
        self._stopping = True
        for informer_task in self._informer_tasks:
            informer_task.cancel()
        workers = list(self.workers.values())
        if graceful:
            for w in workers:
                w.shutting_down = self.shutdown_grace
            await asyncio.gather(*(w.shutdown(self.shutdown_grace) for w in workers), return_exceptions=True)
        else:  # a crash: nothing written, the Pods' directories kept for the next agent
            for proc in self._tracked():
                proc.kill_now()
        for w in workers:
            if w.task is not None:
                w.task.cancel()
        await asyncio.gather(*(w.task for w in workers if w.task is not None), return_exceptions=True)
        if graceful and self.kube is not None:
            with contextlib.suppress(ApiError, asyncio.TimeoutError, OSError):
                await asyncio.wait_for(self._node_stopped(), 10)
            await self._drain_events(5.0)
        for t in [*self._informer_tasks, *self._tasks, *self._side_tasks]:
            t.cancel()
        await asyncio.gather(*self._informer_tasks, *self._tasks, *self._side_tasks, return_exceptions=True)
        self._tasks.clear()
        if self.provisioner is not None:
            await self.provisioner.close()
        if self.kube is not None:
            await self.kube.close()
        for proc in self._tracked():
            proc.kill_now()
        self.pool.release_all()

    async def _drain_events(self, timeout: float) -> None:
        queue = self._events
        if queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.join(), timeout)

    # ------------------------------------------------------------------ the Node

    def _node_status(self, ready: bool, reason: str, message: str) -> Obj:
        now = rfc3339(time.time())

        def condition(kind: str, status: bool, why: str, text: str) -> Obj:
            return {
                "type": kind,
                "status": "True" if status else "False",
                "reason": why,
                "message": text,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._transition(kind, "True" if status else "False", now),
            }

        uname = platform.uname()
        return {
            "capacity": self.node_allocatable,
            "allocatable": self.node_allocatable,
            "conditions": [
                condition("MemoryPressure", False, "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
                condition("DiskPressure", False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", ready, reason, message),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, self.node_name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.node_name)),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": uname.release,
                "osImage": f"{uname.system} (zkop node agent)",
                "containerRuntimeVersion": f"zkop-nodeagent://{self.isolation or 'none'}",
                "kubeletVersion": AGENT_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.node_labels["kubernetes.io/arch"],
            },
        }

    def _transition(self, kind: str, status: str, now: str) -> str:
        key = (kind, status)
        if key not in self._transitions:
            self._transitions = {k: v for k, v in self._transitions.items() if k[0] != kind}
            self._transitions[key] = now
        return self._transitions[key]

    async def _register_node(self) -> None:
        path = api_path("v1", "nodes")
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": self.node_labels}}
        try:
            node = await self.kube.create(path, body)
        except ApiError as e:
            if e.status != 409:
                raise NodeAgentError(f"registering Node {self.node_name}: {e}") from e
            node = await self.kube.patch(f"{path}/{self.node_name}", {"metadata": {"labels": self.node_labels}})
        self._node_uid = meta(node).get("uid", "")
        await self._patch_node_status(True)
        await self._renew_lease()

    async def _patch_node_status(self, ready: bool) -> None:
        reason, message = (
            ("KubeletReady", "kubelet is posting ready status (zkop node agent)")
            if ready
            else ("KubeletNotReady", "the zkop node agent stopped")
        )
        await self.kube.patch(
            api_path("v1", "nodes", name=self.node_name) + "/status",
            {"status": self._node_status(ready, reason, message)},
        )

    async def _renew_lease(self) -> None:
        path = api_path("coordination.k8s.io/v1", "leases", "kube-node-lease")
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()}
        try:
            await self.kube.patch(f"{path}/{self.node_name}", {"spec": spec})
        except ApiError as e:
            if e.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": self._node_uid}
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease", "ownerReferences": [owner]},
                "spec": spec,
            }
            with contextlib.suppress(ApiError):
                await self.kube.create(path, body)

    async def _heartbeat(self) -> None:
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(LEASE_RENEW)
            try:
                await self._renew_lease()
                if time.monotonic() - last_status >= STATUS_HEARTBEAT:
                    await self._patch_node_status(True)
                    last_status = time.monotonic()
            except (TimeoutError, ApiError, OSError) as e:
                log.debug("heartbeat: %s", e)

    async def _node_stopped(self) -> None:
        if self.delete_node_on_stop:
            await self.kube.delete(api_path("v1", "nodes", name=self.node_name))
        else:
            await self._patch_node_status(False)

    # ------------------------------------------------------------------ Pods: scheduling and running

    def serves(self, namespace: str) -> bool:
        """Whether Pods of ``namespace`` are scheduled here (and its claims provisioned)."""
        return self.namespaces is None or namespace in self.namespaces

    def _on_pod(self, kind: str, pod: Obj) -> None:
        if self._dns_dirty is not None:
            self._dns_dirty.set()
        m = meta(pod)
        uid = m.get("uid", "")
        spec = pod.get("spec") or {}
        if kind == "DELETED":
            worker = self.workers.get(uid)
            if worker is not None:
                worker.removed()
            return
        node = spec.get("nodeName")
        if not node:
            self._maybe_schedule(pod)
            return
        if node != self.node_name:
            return
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
        elif not self._stopping:
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            worker.task = asyncio.create_task(worker.run(), name=f"pod-{m.get('namespace')}-{m.get('name')}")

    def _maybe_schedule(self, pod: Obj) -> None:
        m, spec = meta(pod), pod.get("spec") or {}
        uid = m.get("uid", "")
        if self._stopping or m.get("deletionTimestamp") or uid in self._binding:
            return
        if not self.serves(m.get("namespace", "")) or (spec.get("schedulerName") or "default-scheduler") != (
            self.scheduler_name
        ):
            return
        if spec.get("schedulingGates") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        if any(self.node_labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return
        self._binding.add(uid)
        self._side_task(self._bind(pod), lambda: self._binding.discard(uid))

    def _side_task(self, coro: Coroutine[Any, Any, None], done: Any = None) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            self._side_tasks.discard(t)
            if done is not None:
                done()
            if not t.cancelled() and t.exception() is not None:
                log.warning("node agent: %s", t.exception())

        task.add_done_callback(finished)

    async def _bind(self, pod: Obj) -> None:
        m = meta(pod)
        ns, name = m.get("namespace", ""), m.get("name", "")
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": m.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            await self.kube.create(api_path("v1", "pods", ns, name) + "/binding", body)
        except ApiError as e:
            if e.status in (404, 409):
                return  # gone, or bound by someone else
            raise
        self.event(
            pod, "Scheduled", f"Successfully assigned {ns}/{name} to {self.node_name}", component="default-scheduler"
        )

    def worker_done(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]

    # ------------------------------------------------------------------ what Pod workers use

    def allocate_ip(self, owner: str) -> str:
        return self.pool.allocate(owner)

    def release_ip(self, address: str) -> None:
        self.pool.release(address)

    def track(self, proc: Proc) -> None:
        with self._procs_lock:
            self._procs.add(proc)

    def untrack(self, proc: Proc) -> None:
        with self._procs_lock:
            self._procs.discard(proc)

    def _tracked(self) -> list[Proc]:
        with self._procs_lock:
            return list(self._procs)

    async def fetch(self, kind: str, namespace: str, name: str) -> Obj | None:
        plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        return await self.kube.get(api_path("v1", plural, namespace, name))

    async def token(self, pod: Obj, account: str, audience: str | None, seconds: int) -> tuple[str, float]:
        m = meta(pod)
        ns = m.get("namespace", "")
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": max(seconds, 600),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": m.get("name"), "uid": m.get("uid")},
            },
        }
        try:
            result = await self.kube.create(api_path("v1", "serviceaccounts", ns, account) + "/token", body)
        except ApiError as e:
            raise VolumeNotReady(f"token for serviceaccount {ns}/{account}: {e}") from e
        status = result.get("status") or {}
        expiry = dt.datetime.fromisoformat(str(status.get("expirationTimestamp")).replace("Z", "+00:00")).timestamp()
        return str(status.get("token", "")), expiry

    async def claim_path(self, namespace: str, claim: str) -> Path:
        pvc = await self.kube.get(api_path("v1", "persistentvolumeclaims", namespace, claim))
        if pvc is None:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" not found')
        if meta(pvc).get("deletionTimestamp"):
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is being deleted')
        volume = (pvc.get("spec") or {}).get("volumeName")
        if (pvc.get("status") or {}).get("phase") != "Bound" or not volume:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = await self.kube.get(api_path("v1", "persistentvolumes", name=volume))
        if pv is None:
            raise VolumeNotReady(f'persistentvolume "{volume}" not found')
        spec = pv.get("spec") or {}
        source = spec.get("hostPath") or spec.get("local")
        if not source or not source.get("path"):
            raise VolumeNotReady(f"persistentvolume {volume}: only hostPath and local volumes can be mounted here")
        path = Path(source["path"])
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        return path

    def event(
        self,
        obj: Obj,
        reason: str,
        message: str,
        kind: str = "Normal",
        field_path: str | None = None,
        *,
        component: str = "kubelet",
        involved: str = "Pod",
    ) -> None:
        """Record a core/v1 Event about ``obj`` (best effort, in the background)."""
        if self._events is None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait((obj, reason, message, kind, field_path, component, involved))

    async def _event_loop(self) -> None:
        assert self._events is not None
        while True:
            obj, reason, message, kind, field_path, component, involved = await self._events.get()
            try:
                await self._post_event(obj, reason, message[:1024], kind, field_path, component, involved)
            except (TimeoutError, ApiError, OSError) as e:
                log.debug("event %s: %s", reason, e)
            finally:
                self._events.task_done()

    async def _post_event(
        self, obj: Obj, reason: str, message: str, kind: str, field_path: str | None, component: str, involved: str
    ) -> None:
        m = meta(obj)
        ns, name, uid = m.get("namespace", ""), m.get("name", ""), m.get("uid", "")
        now = rfc3339(time.time())
        key = (ns, uid, reason, message, field_path or "", component)
        known = self._event_names.get(key)
        path = api_path("v1", "events", ns)
        if known is not None:
            event_name, count = known
            with contextlib.suppress(ApiError):
                await self.kube.patch(f"{path}/{event_name}", {"count": count + 1, "lastTimestamp": now})
                self._event_names[key] = (event_name, count + 1)
                return
        event_name = f"{name}.{uuid.uuid4().hex[:16]}"
        involved_ref: Obj = {"apiVersion": "v1", "kind": involved, "namespace": ns, "name": name, "uid": uid}
        if field_path:
            involved_ref["fieldPath"] = field_path
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": involved_ref,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": component, "host": self.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": self.node_name,
        }
        await self.kube.create(path, body)
        if len(self._event_names) > 5000:
            self._event_names.clear()
        self._event_names[key] = (event_name, 1)

    # ------------------------------------------------------------------ cluster DNS

    def _on_service(self, kind: str, svc: Obj) -> None:
        if self._dns_dirty is not None:
            self._dns_dirty.set()

    def sandbox_ready(self, worker: PodWorker) -> None:
        self._sandboxes[worker.uid] = worker
        self._write_pod_hosts(worker)
        if self._dns_dirty is not None:
            self._dns_dirty.set()

    def sandbox_gone(self, worker: PodWorker) -> None:
        self._sandboxes.pop(worker.uid, None)

    def _write_pod_hosts(self, worker: PodWorker) -> None:
        if worker.ip is None:
            return
        names = [worker.hostname]
        if worker.subdomain:
            names.insert(0, f"{worker.hostname}.{worker.subdomain}.{worker.namespace}.svc.{network.CLUSTER_DOMAIN}")
        text = network.render_hosts(
            self._records,
            header=f"hosts file of Pod {worker.namespace}/{worker.name} (localhost is the Pod's own address)",
            machine=self._machine_hosts,
            own=(worker.ip, names),
            namespace=worker.namespace,
        )
        worker.hosts_path.parent.mkdir(parents=True, exist_ok=True)
        network.write_in_place(worker.hosts_path, text)

    def _write_hosts(self) -> None:
        pods = self._informers["pods"].cache.values() if "pods" in self._informers else []
        services = self._informers["services"].cache.values() if "services" in self._informers else []
        self._records = network.cluster_hosts(list(pods), list(services))
        network.write_atomically(
            self.hosts_file,
            network.render_hosts(self._records, header="cluster hosts", machine=self._machine_hosts),
        )
        for worker in list(self._sandboxes.values()):
            try:
                self._write_pod_hosts(worker)
            except OSError as e:
                log.debug("hosts of %s: %s", worker.name, e)

    async def _dns_loop(self) -> None:
        assert self._dns_dirty is not None
        while True:
            await self._dns_dirty.wait()
            self._dns_dirty.clear()
            await asyncio.sleep(0.02)
            self._dns_dirty.clear()
            try:
                self._write_hosts()
            except OSError as e:
                log.warning("writing hosts files: %s", e)

    # ------------------------------------------------------------------ for tests and tools

    def resolve(self, name: str) -> list[str]:
        """Addresses of a cluster name (``<svc>.<ns>.svc.cluster.local``, ``<host>.<svc>.<ns>``, ...)."""
        return network.resolve(name, self.hosts_file)

    def _worker(self, namespace: str, name: str) -> PodWorker | None:
        found = [w for w in list(self.workers.values()) if w.namespace == namespace and w.name == name]
        return found[-1] if found else None

    def pod_ip(self, namespace: str, name: str) -> str | None:
        worker = self._worker(namespace, name)
        return worker.ip if worker else None

    def pod_dir(self, namespace: str, name: str) -> Path | None:
        worker = self._worker(namespace, name)
        return worker.dir if worker else None

    def volume_path(self, namespace: str, name: str, volume: str) -> Path | None:
        """Where a volume of a running Pod is on the machine."""
        worker = self._worker(namespace, name)
        found = worker.volumes.volumes.get(volume) if worker else None
        return found.path if found else None

    def pids(self) -> dict[str, int]:
        """``namespace/pod/container`` → pid of every container process running now."""
        out: dict[str, int] = {}
        for w in list(self.workers.values()):
            for r in w.all_runners():
                proc = r.proc
                if proc is not None and proc.running():
                    out[f"{w.namespace}/{w.name}/{r.name}"] = proc.pid
        return out

    def log_files(self, namespace: str, name: str, container: str) -> list[Path]:
        """A container's log files, one per run, oldest first (they outlive the Pod)."""
        dirs = sorted(self.root.glob(f"logs/{namespace}_{name}_*/{container}"), key=lambda p: p.stat().st_mtime)
        if not dirs:
            return []
        return sorted(dirs[-1].glob("*.log"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)

    def logs(self, namespace: str, name: str, container: str, previous: bool = False) -> str:
        """What a container printed (``kubectl logs``; ``previous`` for the run before the last)."""
        files = self.log_files(namespace, name, container)
        index = -2 if previous else -1
        if len(files) < (2 if previous else 1):
            return ""
        return files[index].read_text(errors="replace")

    async def aexec(
        self, namespace: str, name: str, container: str, command: list[str], timeout: float = 30.0
    ) -> tuple[int | None, str]:
        """Run ``command`` in a running container (``kubectl exec``); ``(exit code or None on timeout, output)``."""
        worker = self._worker(namespace, name)
        runner = worker.runner(container) if worker else None
        if runner is None:
            raise NodeAgentError(f"no container {container!r} in Pod {namespace}/{name} on {self.node_name}")
        return await runner.exec(command, timeout)

    def exec(
        self, namespace: str, name: str, container: str, command: list[str], timeout: float = 30.0
    ) -> tuple[int | None, str]:
        """:meth:`aexec` from another thread (the agent runs in its own, started with ``with``)."""
        return self._call(self.aexec(namespace, name, container, command, timeout), timeout + 10)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        loop = self._loop
        if loop is None or self._thread is None:
            coro.close()
            raise NodeAgentError("the node agent is not running in a thread (use the async methods)")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
