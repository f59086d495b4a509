"""How the Kubernetes platforms report what the API server refused, and take "not there" (404)
as an answer where an object may rightly be gone."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from kubernetes_asyncio.client.rest import ApiException

from zkop.errors import ZkopError

T = TypeVar("T")


class KubernetesError(ZkopError):
    pass


def api_error(exc: ApiException, what: str) -> KubernetesError:
    hint = "check the operator's RBAC (the Helm chart's ClusterRole)" if exc.status == 403 else None
    return KubernetesError(f"{what}: the API server answered {exc.status} {exc.reason}", hint=hint)


async def unless_absent(call: Awaitable[T], what: str) -> T | None:
    """The answer to a call about one object; None when the object is not there (404)."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise api_error(exc, what) from None


__all__ = ["KubernetesError", "api_error", "unless_absent"]
