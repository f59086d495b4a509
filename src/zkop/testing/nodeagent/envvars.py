"""A container's environment as the kubelet builds it: ``envFrom``, ``env`` with ``$(VAR)``
expansion, the downward API (``fieldRef``, ``resourceFieldRef``) and ConfigMap/Secret keys."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from zkop.testing.nodeagent.kube import Obj, meta

# (kind "ConfigMap"|"Secret", namespace, name) -> the object, or None when it does not exist
Fetch = Callable[[str, str, str], Awaitable[Obj | None]]

_SUFFIXES = {
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity (``500m``, ``1Gi``, ``2``) as a number."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError): a missing key or object."""


def expand(text: str, values: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$$`` is a literal ``$``; unknown references stay as written."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    if name in values:
                        out.append(values[name])
                    else:
                        out.append(text[i : end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def field_value(pod: Obj, path: str, *, pod_ip: str | None, host_ip: str) -> str:
    """A downward-API ``fieldRef.fieldPath`` of ``pod``."""
    m = meta(pod)
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": m.get("name", ""),
        "metadata.namespace": m.get("namespace", ""),
        "metadata.uid": m.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip or "",
        "status.podIPs": pod_ip or "",
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((m.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = m.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldPath {path!r}")


def resource_value(
    pod: Obj, container_name: str, resource: str, divisor: str | None, node_allocatable: Mapping[str, str]
) -> str:
    """A downward-API ``resourceFieldRef``: limits default to the node's allocatable, as in the kubelet."""
    container: Obj = next(
        (c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == container_name), {}
    )
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        raw = node_allocatable.get(name, "0") if kind == "limits" else "0"
    value = quantity(raw) / quantity(divisor or "1")
    return str(math.ceil(value))


async def build_env(
    pod: Obj,
    container: Obj,
    fetch: Fetch,
    *,
    base: Mapping[str, str],
    pod_ip: str | None,
    host_ip: str,
    node_allocatable: Mapping[str, str],
) -> dict[str, str]:
    """``base`` (image defaults and the agent's own variables), then ``envFrom``, then ``env``."""
    namespace = meta(pod).get("namespace", "")
    env: dict[str, str] = dict(base)
    cache: dict[tuple[str, str], Obj | None] = {}

    async def get(kind: str, name: str) -> Obj | None:
        if (kind, name) not in cache:
            cache[(kind, name)] = await fetch(kind, namespace, name)
        return cache[(kind, name)]

    def data_of(kind: str, obj: Obj) -> dict[str, str]:
        if kind == "Secret":
            return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    for env_from in container.get("envFrom") or []:
        prefix = env_from.get("prefix") or ""
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            ref = env_from.get(field)
            if not ref:
                continue
            obj = await get(kind, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
            for k, v in data_of(kind, obj).items():
                env[prefix + k] = v
    for var in container.get("env") or []:
        name = var.get("name", "")
        if "value" in var or "valueFrom" not in var:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        source: Any = var.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"].get("fieldPath", ""), pod_ip=pod_ip, host_ip=host_ip)
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            env[name] = resource_value(
                pod,
                ref.get("containerName") or container.get("name", ""),
                ref.get("resource", ""),
                ref.get("divisor"),
                node_allocatable,
            )
        else:
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                ref = source.get(field)
                if not ref:
                    continue
                obj = await get(kind, ref.get("name", ""))
                data = data_of(kind, obj) if obj is not None else None
                key = ref.get("key", "")
                if data is None or key not in data:
                    if ref.get("optional"):
                        break
                    if data is None:
                        raise ConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
                    raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name')}")
                env[name] = data[key]
                break
    return env
