"""How zkop reaches a Kubernetes API server: a kubeconfig file (and context), or the in-cluster
ServiceAccount when it runs in a Pod (asked for by name with ``kubeconfig="in-cluster"``)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException

from zkop.errors import ConfigurationError

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
#: The ``kubeconfig`` value that asks for the in-cluster configuration (a file of that name: ``./in-cluster``).
IN_CLUSTER = "in-cluster"


def in_pod() -> bool:
    """Whether this process runs in a Pod with a ServiceAccount token mounted."""
    return IN_CLUSTER_TOKEN.exists() and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _config_file(kubeconfig: str | Path | None) -> Path | None:
    """The kubeconfig to read, or None for the in-cluster configuration."""
    if isinstance(kubeconfig, str) and kubeconfig == IN_CLUSTER:
        if not in_pod():
            raise ConfigurationError(
                "--kubeconfig in-cluster: not running in a Pod "
                f"(no ServiceAccount token at {IN_CLUSTER_TOKEN}, or KUBERNETES_SERVICE_HOST unset)",
                hint="pass the path of a kubeconfig file instead",
            )
        return None
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path is None and in_pod():
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
    in-cluster configuration when ``kubeconfig`` is ``"in-cluster"``, or none is given and zkop
    runs in a Pod."""
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
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        # not a kubeconfig at all (a YAML error, a list where a mapping belongs, ...)
        where = file if file is not None else "the in-cluster configuration"
        raise ConfigurationError(f"cannot read {where} as a kubeconfig: {type(exc).__name__} {exc}".strip()) from None
    return k8s.ApiClient(configuration)


__all__ = ["IN_CLUSTER", "api_client", "in_pod"]
