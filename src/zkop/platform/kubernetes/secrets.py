"""Credentials handed over on Kubernetes (the :class:`~zkop.platform.base.SecretStore`
contract): an Opaque Secret per name, labelled as zkop's, which a Pod mounts or reads as
environment (``secretKeyRef``). Fenced like the platform's other actions: refused once a newer
leadership term began."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.rest import ApiException

from zkop.errors import ZkopError
from zkop.platform.kubernetes.manifests import opaque_secret

MANAGED_BY = "zkop"


class KubernetesSecretStore:
    def __init__(self, api: k8s.ApiClient, check: Callable[[int | None], Awaitable[None]] | None = None) -> None:
        """``check(epoch)``: raises :class:`zkop.errors.Fenced` for an older term (the platform's)."""
        self.core = k8s.CoreV1Api(api)
        self.check = check

    def reference(self, namespace: str, name: str) -> str:
        return f"secret/{namespace}/{name}"

    async def read(self, namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            found = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ZkopError(f"reading Secret {namespace}/{name}: the API server answered {exc.status}") from None
        return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}

    async def write(self, namespace: str, name: str, data: Mapping[str, str], *, epoch: int | None) -> None:
        if self.check is not None:
            await self.check(epoch)
        meta = {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}
        body = opaque_secret(meta, data)
        try:
            await self.core.replace_namespaced_secret(name, namespace, body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 404:
                raise ZkopError(f"writing Secret {namespace}/{name}: the API server answered {exc.status}") from None
            await self.core.create_namespaced_secret(namespace, body)  # type: ignore[arg-type]

    async def delete(self, namespace: str, name: str, *, epoch: int | None) -> None:
        if self.check is not None:
            await self.check(epoch)
        try:
            await self.core.delete_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise ZkopError(f"deleting Secret {namespace}/{name}: the API server answered {exc.status}") from None


__all__ = ["KubernetesSecretStore"]
