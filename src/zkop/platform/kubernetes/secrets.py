"""Credentials handed over on Kubernetes (the :class:`~zkop.platform.base.SecretStore`
contract): an Opaque Secret per name, labelled as zkop's, which a Pod mounts or reads as
environment (``secretKeyRef``). Fenced like the platform's other actions: refused once a newer
leadership term began."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.rest import ApiException

from zkop.platform.kubernetes.apierrors import api_error, unless_absent
from zkop.platform.kubernetes.manifests import opaque_secret

MANAGED_BY = "zkop"
EPOCH = "zkop.io/epoch"  # the term that wrote it, as on the platforms' Pods


class KubernetesSecretStore:
    def __init__(self, api: k8s.ApiClient, check: Callable[[int | None], Awaitable[None]] | None = None) -> None:
        """``check(epoch)``: raises :class:`zkop.errors.Fenced` for an older term (the platform's)."""
        self.core = k8s.CoreV1Api(api)
        self.check = check

    def reference(self, namespace: str, name: str) -> str:
        return f"secret/{namespace}/{name}"

    async def read(self, namespace: str, name: str) -> Mapping[str, str] | None:
        found = await unless_absent(
            self.core.read_namespaced_secret(name, namespace), f"reading Secret {namespace}/{name}"
        )
        if found is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}

    async def write(self, namespace: str, name: str, data: Mapping[str, str], *, epoch: int | None) -> None:
        if self.check is not None:
            await self.check(epoch)
        meta: dict[str, object] = {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        }
        if epoch is not None:
            meta["annotations"] = {EPOCH: str(epoch)}
        body = opaque_secret(meta, data)
        what = f"writing Secret {namespace}/{name}"
        try:
            await self.core.replace_namespaced_secret(name, namespace, body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 404:
                raise api_error(exc, what) from None
            try:
                await self.core.create_namespaced_secret(namespace, body)  # type: ignore[arg-type]
            except ApiException as again:
                raise api_error(again, what) from None

    async def delete(self, namespace: str, name: str, *, epoch: int | None) -> None:
        if self.check is not None:
            await self.check(epoch)
        await unless_absent(self.core.delete_namespaced_secret(name, namespace), f"deleting Secret {namespace}/{name}")


__all__ = ["KubernetesSecretStore"]
