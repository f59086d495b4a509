"""A storage provisioner double: PersistentVolumes that are directories under the agent's root.

It registers a StorageClass (``zkop-node-agent`` by default; made the cluster's default class
when there is none), and for every pending claim of that class (or of no class, when it is the
default) in the namespaces it serves it creates a ``hostPath`` PersistentVolume pre-bound to the
claim; kube-controller-manager's PV controller completes the binding, as with any external
provisioner. Once a claim is deleted its volume is Released: with ``reclaimPolicy: Delete`` the
provisioner deletes the directory and the PersistentVolume; with ``Retain`` both stay.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from typing import Any

from zkop.testing.nodeagent.kube import ApiError, Kube, Obj, api_path, meta

log = logging.getLogger("zkop.testing.nodeagent")

PROVISIONER = "zkop.io/node-agent"
NODE_ANNOTATION = "nodeagent.zkop.io/node"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"

EventSink = Callable[[Obj, str, str, str], None]


class Provisioner:
    def __init__(
        self,
        kube: Kube,
        root: Path,
        node_name: str,
        namespaces: Collection[str] | None,
        class_name: str,
        event: EventSink,
        make_default: bool = True,
    ) -> None:
        self.kube = kube
        self.root = root
        self.node_name = node_name
        self.namespaces = namespaces
        self.class_name = class_name
        self.event = event
        self.make_default = make_default
        self.is_default = False
        self.reclaim_policy = "Delete"
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def volume_dir(self, pvc_uid: str) -> Path:
        return self.root / "volumes" / f"pvc-{pvc_uid}"

    async def ensure_class(self) -> None:
        path = api_path("storage.k8s.io/v1", "storageclasses")
        listed = await self.kube.request("GET", path)
        classes = {meta(c).get("name"): c for c in listed.get("items") or []}
        has_default = any(
            (meta(c).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true" for c in classes.values()
        )
        mine = classes.get(self.class_name)
        if mine is None:
            annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if self.make_default and not has_default else {}
            body = {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": self.class_name, "annotations": annotations},
                "provisioner": PROVISIONER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
            }
            try:
                mine = await self.kube.create(path, body)
            except ApiError as e:
                if e.status != 409:
                    raise
                mine = await self.kube.request("GET", f"{path}/{self.class_name}")
        self.is_default = (meta(mine).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
        self.reclaim_policy = mine.get("reclaimPolicy") or "Delete"

    def _serves(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def on_claim(self, kind: str, pvc: Obj) -> None:
        if kind == "DELETED":
            return
        m = meta(pvc)
        spec = pvc.get("spec") or {}
        wanted = spec.get("storageClassName")
        mine = wanted == self.class_name or (wanted is None and self.is_default)
        if not mine or not self._serves(m.get("namespace", "")) or m.get("deletionTimestamp"):
            return
        if spec.get("volumeName") or (pvc.get("status") or {}).get("phase") not in (None, "Pending"):
            return
        self._run(m.get("uid", ""), self._provision(pvc))

    def on_volume(self, kind: str, pv: Obj) -> None:
        m = meta(pv)
        annotations = m.get("annotations") or {}
        if annotations.get(NODE_ANNOTATION) != self.node_name or kind == "DELETED":
            return
        released = (pv.get("status") or {}).get("phase") in ("Released", "Failed")
        if released and (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
            self._run(m.get("uid", ""), self._delete(pv))

    def _run(self, key: str, coro: Coroutine[Any, Any, None]) -> None:
        if key in self._busy:
            coro.close()
            return
        self._busy.add(key)
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._busy.discard(key)
            if not t.cancelled() and t.exception() is not None:
                log.warning("provisioner: %s", t.exception())

        task.add_done_callback(done)

    async def _provision(self, pvc: Obj) -> None:
        m = meta(pvc)
        spec = pvc.get("spec") or {}
        uid = m.get("uid", "")
        directory = self.volume_dir(uid)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage") or "1Gi"
        name = f"pvc-{uid}"
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER, NODE_ANNOTATION: self.node_name},
            },
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "persistentVolumeReclaimPolicy": self.reclaim_policy,
                "storageClassName": spec.get("storageClassName") or self.class_name,
                "hostPath": {"path": str(directory), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": m.get("namespace"),
                    "name": m.get("name"),
                    "uid": uid,
                },
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [self.node_name]}
                                ]
                            }
                        ]
                    }
                },
            },
        }
        try:
            await self.kube.create(api_path("v1", "persistentvolumes"), body)
        except ApiError as e:
            if e.status == 409:
                return  # provisioned already (by us before, or by another agent)
            raise
        self.event(pvc, "ProvisioningSucceeded", f"Successfully provisioned volume {name}", "Normal")

    async def _delete(self, pv: Obj) -> None:
        spec = pv.get("spec") or {}
        path = (spec.get("hostPath") or {}).get("path")
        if path:
            await asyncio.to_thread(self._remove, Path(path))
        await self.kube.delete(api_path("v1", "persistentvolumes", name=meta(pv).get("name")))

    def _remove(self, path: Path) -> None:
        """Delete a volume's directory, only ever one under this agent's root."""
        if path.resolve().is_relative_to((self.root / "volumes").resolve()):
            shutil.rmtree(path, ignore_errors=True)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
