"""How zkop reaches a Kubernetes API server: a kubeconfig file (and context), or the in-cluster
ServiceAccount when it runs in a Pod."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException

from zkop.errors import ConfigurationError

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _config_file(kubeconfig: str | Path | None) -> Path | None:
    """The kubeconfig to read, or None for the in-cluster configuration."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path is None and IN_CLUSTER_TOKEN.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    file = Path(path).expanduser() if path else Path.home() / ".kube" / "config"
    if not file.is_file():
        raise ConfigurationError(
            f"no kubeconfig at {file}",
            hint="pass --kubeconfig PATH (or set KUBECONFIG), or run inside the cluster",
        )
    return file


async def api_client(kubeconfig: str | Path | None = None, context: str | None = None) -> k8s.ApiClient:
    """An API client from ``kubeconfig`` (else ``KUBECONFIG``, else ``~/.kube/config``), or the
    in-cluster configuration when none is given and zkop runs in a Pod."""
    configuration = k8s.Configuration()
    file = _config_file(kubeconfig)
    try:
        if file is None:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await k8s_config.load_kube_config(
                config_file=str(file), context=context, client_configuration=configuration
            )
    except ConfigException as exc:
        raise ConfigurationError(f"cannot use the Kubernetes configuration: {exc}") from None
    return k8s.ApiClient(configuration)


__all__ = ["api_client"]
