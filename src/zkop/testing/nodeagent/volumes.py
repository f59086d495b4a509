"""A Pod's volumes as directories of the machine, and each container's mounts of them.

- ``configMap``, ``secret``, ``downwardAPI`` and ``projected`` (ConfigMaps, Secrets, the
  downward API and ServiceAccount tokens: what every Pod's ``kube-api-access`` volume holds)
  are written the kubelet's way: the files live in a timestamped directory that ``..data``
  points to, and each top-level name is a symlink through ``..data``, so a refresh swaps them
  all at once. ``items``, ``defaultMode`` (0644 by default) and per-item ``mode`` are honoured;
  they are refreshed while the Pod runs (not through ``subPath``, as in Kubernetes).
- ``emptyDir``: a directory of the Pod (``medium: Memory`` too; it is not a tmpfs).
- ``persistentVolumeClaim`` and generic ``ephemeral`` volumes: the directory of the bound
  PersistentVolume (``hostPath`` or ``local``), once the claim is bound.
- ``hostPath``: the machine's path (the ``...OrCreate`` types create it).

Anything else leaves the Pod in ContainerCreating with a FailedMount event naming the type.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zkop.testing.nodeagent.envvars import ConfigError, Fetch, expand, field_value, resource_value
from zkop.testing.nodeagent.kube import Obj, meta
from zkop.testing.nodeagent.process import Mount

# (service account, audience or None, expiration seconds) -> (token, expiry as a unix time)
TokenFetch = Callable[[str, str | None, int], Awaitable[tuple[str, float]]]
# persistentVolumeClaim name -> the directory of its bound volume, or raises VolumeNotReady
ClaimPath = Callable[[str, str], Awaitable[Path]]


class VolumeNotReady(Exception):
    """A volume cannot be set up yet (or at all); the Pod waits in ContainerCreating."""


@dataclass
class Volume:
    name: str
    kind: str
    path: Path
    read_only: bool = False


Payload = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def _read_payload(directory: Path) -> Payload | None:
    data = directory / "..data"
    if not data.is_dir():
        return None
    found: Payload = {}
    for root, _dirs, files in os.walk(data, followlinks=True):
        for f in files:
            p = Path(root) / f
            found[str(p.relative_to(data))] = (p.read_bytes(), p.stat().st_mode & 0o7777)
    return found


def write_payload(directory: Path, payload: Payload) -> bool:
    """Write ``payload`` into ``directory`` atomically (the kubelet's ``..data`` scheme); True if it changed."""
    directory.mkdir(parents=True, exist_ok=True)
    if _read_payload(directory) == payload:
        return False
    stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}"
    stamp.mkdir(mode=0o755)
    for rel, (content, mode) in payload.items():
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    data = directory / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    tmp = directory / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp.name)
    os.replace(tmp, data)
    tops = {rel.split("/", 1)[0] for rel in payload}
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in directory.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.is_symlink() and entry.name not in tops:
            entry.unlink()
    if old and old != stamp.name:
        shutil.rmtree(directory / old, ignore_errors=True)
    return True


def _mode(item: Mapping[str, Any], default: int) -> int:
    mode = item.get("mode")
    return int(mode) if mode is not None else default


@dataclass
class PodVolumes:
    """The volumes of one Pod under ``pod_dir/volumes``."""

    pod: Obj
    pod_dir: Path
    fetch: Fetch
    token: TokenFetch
    claim_path: ClaimPath
    node_allocatable: Mapping[str, str]
    host_ip: str
    pod_ip: str | None = None
    volumes: dict[str, Volume] = field(default_factory=dict)
    _tokens: dict[tuple[str, str | None, int], tuple[str, float, float]] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return str(meta(self.pod).get("namespace", ""))

    def _dir(self, plugin: str, name: str) -> Path:
        return self.pod_dir / "volumes" / f"kubernetes.io~{plugin}" / name

    async def _object(self, kind: str, name: str, optional: bool) -> Obj | None:
        obj = await self.fetch(kind, self.namespace, name)
        if obj is None and not optional:
            raise VolumeNotReady(f'{kind.lower()} "{name}" not found')
        return obj

    @staticmethod
    def _data(kind: str, obj: Obj) -> dict[str, bytes]:
        if kind == "Secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return out

    async def _keys_payload(self, kind: str, source: Obj, default_mode: int) -> Payload:
        name = source.get("name") or source.get("secretName") or ""
        optional = bool(source.get("optional"))
        obj = await self._object(kind, name, optional)
        payload: Payload = {}
        if obj is None:
            return payload
        data = self._data(kind, obj)
        items = source.get("items")
        if items:
            for item in items:
                key = item.get("key", "")
                if key not in data:
                    if optional:
                        continue
                    raise VolumeNotReady(f"{kind.lower()} references non-existent config key: {key}")
                payload[item.get("path") or key] = (data[key], _mode(item, default_mode))
        else:
            for key, content in data.items():
                payload[key] = (content, default_mode)
        return payload

    def _downward_payload(self, items: list[Obj], default_mode: int) -> Payload:
        payload: Payload = {}
        for item in items:
            try:
                if "fieldRef" in item:
                    value = field_value(
                        self.pod, item["fieldRef"].get("fieldPath", ""), pod_ip=self.pod_ip, host_ip=self.host_ip
                    )
                else:
                    ref = item.get("resourceFieldRef") or {}
                    value = resource_value(
                        self.pod,
                        ref.get("containerName", ""),
                        ref.get("resource", ""),
                        ref.get("divisor"),
                        self.node_allocatable,
                    )
            except ConfigError as e:
                raise VolumeNotReady(str(e)) from e
            payload[item.get("path", "")] = (value.encode(), _mode(item, default_mode))
        return payload

    async def _token(self, source: Obj) -> bytes:
        sa = (self.pod.get("spec") or {}).get("serviceAccountName") or "default"
        key = (sa, source.get("audience"), int(source.get("expirationSeconds") or 3600))
        now = time.time()
        cached = self._tokens.get(key)
        if cached is None or now >= cached[1] + 0.8 * (cached[2] - cached[1]):
            token, expiry = await self.token(*key)
            cached = (token, now, expiry)
            self._tokens[key] = cached
        return cached[0].encode()

    async def _projected_payload(self, spec: Obj) -> Payload:
        default_mode = int(spec.get("defaultMode") or 0o644)
        payload: Payload = {}
        for source in spec.get("sources") or []:
            if "configMap" in source:
                payload.update(await self._keys_payload("ConfigMap", source["configMap"], default_mode))
            elif "secret" in source:
                payload.update(await self._keys_payload("Secret", source["secret"], default_mode))
            elif "downwardAPI" in source:
                payload.update(self._downward_payload(source["downwardAPI"].get("items") or [], default_mode))
            elif "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                payload[sat.get("path", "token")] = (await self._token(sat), _mode(sat, default_mode))
            else:
                raise VolumeNotReady(f"projected source {sorted(source)} is not supported by the node agent")
        return payload

    async def _written(self, spec: Obj) -> tuple[str, Payload] | None:
        if "configMap" in spec:
            src = spec["configMap"]
            return "configmap", await self._keys_payload("ConfigMap", src, int(src.get("defaultMode") or 0o644))
        if "secret" in spec:
            src = spec["secret"]
            return "secret", await self._keys_payload("Secret", src, int(src.get("defaultMode") or 0o644))
        if "downwardAPI" in spec:
            src = spec["downwardAPI"]
            return "downward-api", self._downward_payload(src.get("items") or [], int(src.get("defaultMode") or 0o644))
        if "projected" in spec:
            return "projected", await self._projected_payload(spec["projected"])
        return None

    async def setup(self) -> dict[str, Volume]:
        """Every volume of the Pod, ready to mount; raises :class:`VolumeNotReady` to be retried."""
        pod_name = meta(self.pod).get("name", "")
        for spec in (self.pod.get("spec") or {}).get("volumes") or []:
            name = spec.get("name", "")
            if name in self.volumes:
                continue
            written = await self._written(spec)
            if written is not None:
                plugin, payload = written
                path = self._dir(plugin, name)
                await asyncio.to_thread(write_payload, path, payload)
                self.volumes[name] = Volume(name, plugin, path, read_only=True)
            elif "emptyDir" in spec:
                path = self._dir("empty-dir", name)
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)
                self.volumes[name] = Volume(name, "empty-dir", path)
            elif "persistentVolumeClaim" in spec or "ephemeral" in spec:
                pvc = spec.get("persistentVolumeClaim")
                claim = pvc["claimName"] if pvc else f"{pod_name}-{name}"
                path = await self.claim_path(self.namespace, claim)
                self.volumes[name] = Volume(name, "pvc", path, read_only=bool(pvc and pvc.get("readOnly")))
            elif "hostPath" in spec:
                self.volumes[name] = Volume(name, "host-path", _host_path(spec["hostPath"]))
            else:
                kinds = sorted(k for k in spec if k != "name")
                raise VolumeNotReady(f"volume {name!r}: {', '.join(kinds)} is not supported by the node agent")
        return self.volumes

    async def refresh(self) -> None:
        """Rewrite ConfigMap, Secret, downward-API and projected volumes whose content changed."""
        for spec in (self.pod.get("spec") or {}).get("volumes") or []:
            volume = self.volumes.get(spec.get("name", ""))
            if volume is None:
                continue
            try:
                written = await self._written(spec)
            except VolumeNotReady:
                continue  # keep the last content, as the kubelet does
            if written is not None:
                await asyncio.to_thread(write_payload, volume.path, written[1])

    def mounts(self, container: Obj, env: Mapping[str, str]) -> list[Mount]:
        out: list[Mount] = []
        for vm in container.get("volumeMounts") or []:
            volume = self.volumes.get(vm.get("name", ""))
            if volume is None:
                raise VolumeNotReady(f"volumeMount {vm.get('name')!r} names no volume of the Pod")
            source = volume.path
            sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
            if sub:
                if os.path.isabs(sub) or ".." in Path(sub).parts:
                    raise VolumeNotReady(f"subPath {sub!r} must be a relative path inside the volume")
                source = volume.path / sub
                if not source.exists():
                    source.mkdir(parents=True, exist_ok=True)
                source = source.resolve()
            out.append(Mount(source, vm.get("mountPath", ""), bool(vm.get("readOnly")) or volume.read_only))
        return out


def _host_path(spec: Obj) -> Path:
    path = Path(spec.get("path", ""))
    kind = spec.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind == "Directory" and not path.is_dir():
        raise VolumeNotReady(f"hostPath type check failed: {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise VolumeNotReady(f"hostPath type check failed: {path} is not a file")
    elif kind == "Socket" and not path.is_socket():
        raise VolumeNotReady(f"hostPath type check failed: {path} is not a socket")
    return path
