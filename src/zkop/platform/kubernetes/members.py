"""What the Kubernetes platform creates for a ZooKeeper ensemble, as pure functions of the
cluster, the member and the template (the manifests; no I/O, tested on their own).

Per member id: a Pod ``<cluster>-<id>`` and a PVC ``data-<cluster>-<id>``, never a StatefulSet
(ordinals would tie ids to Pod names: only the highest could go, and ids would be reused over
old volumes). Per cluster: a headless Service with ``publishNotReadyAddresses`` (members must
resolve each other before they are ready), a client Service for ready members, a
PodDisruptionBudget (at most one member unavailable), a Secret with the super-user password and
its digest (the JVM gets only the digest), and a ConfigMap with the static configuration. The
dynamic configuration lives on the member's volume, where ZooKeeper rewrites it on reconfig.
"""

from __future__ import annotations

from typing import Any

import zkop
from zkop.platform.base import ClusterRef, MemberTemplate
from zkop.platform.kubernetes import files
from zkop.platform.kubernetes.manifests import opaque_secret
from zkop.zk.config import FOUR_LETTER_WORDS, MemberAddress, ServerTls, render_dynamic, tls_lines

DEFAULT_IMAGE = "zookeeper:3.9.3"
DATA = "/data"
CONF = "/conf"
CLIENT_PORT, QUORUM_PORT, ELECTION_PORT = 2181, 2888, 3888
MANAGED_BY = "zkop"
CLUSTER_LABEL = "zkop.io/cluster"
MEMBER_LABEL = "zkop.io/member-id"
REMOVED_LABEL = "zkop.io/removed"
CONFIG_HASH = "zkop.io/config-hash"
EPOCH = "zkop.io/epoch"
FIELD_MANAGER = "zkop"
DOMAIN = "cluster.local"
FILES_IMAGE = f"zkop:{zkop.__version__}"  # the operator's image runs the members' file agent
FILES_TOKEN_KEY = "files-token"

# The init step: refuse a volume that holds another member, keep what a member already has
# (its id, and the dynamic configuration ZooKeeper rewrote on reconfig), and render zoo.cfg
# from the ConfigMap keeping the dynamic file ZooKeeper points at now.
INIT_SCRIPT = r"""set -eu
if [ -f /data/myid ] && [ "$(cat /data/myid)" != "$ZKOP_MEMBER_ID" ]; then
  echo "zkop: the volume holds member $(cat /data/myid), not $ZKOP_MEMBER_ID; refusing to start" >&2
  exit 1
fi
[ -f /data/myid ] || echo "$ZKOP_MEMBER_ID" > /data/myid
if ! ls /data/zoo.cfg.dynamic* >/dev/null 2>&1; then
  printf '%s\n' "$ZKOP_MEMBERSHIP" > /data/zoo.cfg.dynamic
fi
dyn=$(grep '^dynamicConfigFile=' /data/zoo.cfg 2>/dev/null || echo "dynamicConfigFile=/data/zoo.cfg.dynamic")
grep -v '^dynamicConfigFile=' /conf/zoo.cfg > /data/zoo.cfg.new
echo "$dyn" >> /data/zoo.cfg.new
mv /data/zoo.cfg.new /data/zoo.cfg
"""

# Ready when the server reports a mode (it serves as part of a quorum); probes never change
# membership.
READY_SCRIPT = 'exec 3<>"/dev/tcp/${POD_IP}/2181" && echo srvr >&3 && grep -q "^Mode:" <&3'
# With client TLS the probe presents the member's own certificate (it has the client usage).
TLS = "/tls"
READY_SCRIPT_TLS = (
    'echo srvr | openssl s_client -quiet -connect "${POD_IP}:2181" -cert /tls/keystore.pem -key /tls/keystore.pem '
    '-CAfile /tls/truststore.pem 2>/dev/null | grep -q "^Mode:"'
)
CLIENT_TLS = "zkop.io/client-tls"
NOT_AFTER = "zkop.io/not-after"
CA_FINGERPRINT = "zkop.io/ca-fingerprint"


def labels(cluster: ClusterRef, member_id: int | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "zookeeper",
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        CLUSTER_LABEL: cluster.name,
    }
    if member_id is not None:
        out[MEMBER_LABEL] = str(member_id)
    return out


def selector(cluster: ClusterRef) -> str:
    return f"{CLUSTER_LABEL}={cluster.name},app.kubernetes.io/managed-by={MANAGED_BY}"


def pod_name(cluster: ClusterRef, member_id: int) -> str:
    return f"{cluster.name}-{member_id}"


def pvc_name(cluster: ClusterRef, member_id: int) -> str:
    return f"data-{cluster.name}-{member_id}"


def headless_name(cluster: ClusterRef) -> str:
    return f"{cluster.name}-headless"


def client_name(cluster: ClusterRef) -> str:
    return f"{cluster.name}-client"


def secret_name(cluster: ClusterRef) -> str:
    return f"{cluster.name}-super"


def config_name(cluster: ClusterRef) -> str:
    return f"{cluster.name}-config"


def ca_secret_name(cluster: ClusterRef) -> str:
    """The cluster's CA (certificate and private key): read by the operator, mounted by no Pod."""
    return f"{cluster.name}-ca"


def tls_secret_name(cluster: ClusterRef, member_id: int) -> str:
    """A member's key store and trust store, mounted at /tls in its Pod."""
    return f"{cluster.name}-{member_id}-tls"


def member_names(cluster: ClusterRef, member_id: int, domain: str = DOMAIN) -> list[str]:
    """Every name a member is reached by: its Pod under the headless Service, the client Service
    (clients connect through it), and the loopback names its own probes use."""
    pod_host = f"{pod_name(cluster, member_id)}.{headless_name(cluster)}"
    client = client_name(cluster)
    ns = cluster.namespace
    return [
        f"{pod_host}.{ns}.svc.{domain}",
        f"{pod_host}.{ns}.svc",
        f"{pod_host}.{ns}",
        pod_host,
        f"{client}.{ns}.svc.{domain}",
        f"{client}.{ns}.svc",
        f"{client}.{ns}",
        client,
        "localhost",
        "127.0.0.1",
    ]


def address(cluster: ClusterRef, member_id: int, domain: str = DOMAIN) -> MemberAddress:
    """The stable name of a member: its Pod under the headless Service."""
    host = f"{pod_name(cluster, member_id)}.{headless_name(cluster)}.{cluster.namespace}.svc.{domain}"
    return MemberAddress(member_id, host, QUORUM_PORT, ELECTION_PORT, CLIENT_PORT)


def _meta(name: str, cluster: ClusterRef, member_id: int | None = None, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": cluster.namespace, "labels": labels(cluster, member_id)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def static_config(template: MemberTemplate) -> str:
    """zoo.cfg (the ConfigMap): ZooKeeper's settings with the data dir on the volume."""
    s = template.settings
    lines = [
        "# Written by zkop. Membership lives in the dynamic file on the volume; ZooKeeper updates it.",
        f"tickTime={s.tick_time}",
        f"initLimit={s.init_limit}",
        f"syncLimit={s.sync_limit}",
        f"dataDir={DATA}",
        f"maxClientCnxns={s.max_client_cnxns}",
        "reconfigEnabled=true",
        "standaloneEnabled=false",
        f"4lw.commands.whitelist={','.join(FOUR_LETTER_WORDS)}",
        f"autopurge.snapRetainCount={s.autopurge_snap_retain_count}",
        f"autopurge.purgeInterval={s.autopurge_purge_interval}",
        "admin.enableServer=false",
    ]
    if s.min_session_timeout is not None:
        lines.append(f"minSessionTimeout={s.min_session_timeout}")
    if s.max_session_timeout is not None:
        lines.append(f"maxSessionTimeout={s.max_session_timeout}")
    policy = template.tls
    if policy is not None and policy.enabled:
        lines += tls_lines(
            ServerTls(
                key_store=f"{TLS}/keystore.pem",
                trust_store=f"{TLS}/truststore.pem",
                client_unified=policy.client == "Both",
                client_tls_only=policy.client == "Tls",
                quorum=policy.quorum in ("Tls", "Both"),
                quorum_unified=policy.quorum in ("Both", "Accept"),
            )
        )
    lines += [f"{k}={s.additional[k]}" for k in sorted(s.additional)]
    lines.append(f"dynamicConfigFile={DATA}/zoo.cfg.dynamic")
    return "\n".join(lines) + "\n"


def ca_secret(cluster: ClusterRef, cert_pem: str, key_pem: str, fingerprint: str) -> dict[str, Any]:
    meta = _meta(ca_secret_name(cluster), cluster)
    meta["annotations"] = {CA_FINGERPRINT: fingerprint}
    return opaque_secret(meta, {"ca.crt": cert_pem, "ca.key": key_pem})


def tls_secret(
    cluster: ClusterRef, member_id: int, key_store: str, ca_pem: str, not_after: float, ca_fingerprint: str
) -> dict[str, Any]:
    meta = _meta(tls_secret_name(cluster, member_id), cluster, member_id)
    meta["annotations"] = {NOT_AFTER: str(int(not_after)), CA_FINGERPRINT: ca_fingerprint}
    return opaque_secret(meta, {"keystore.pem": key_store, "truststore.pem": ca_pem})


def config_map(cluster: ClusterRef, template: MemberTemplate) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(config_name(cluster), cluster),
        "data": {"zoo.cfg": static_config(template)},
    }


def secret(cluster: ClusterRef, password: str, digest: str, files_token: str) -> dict[str, Any]:
    """The super user's password (the operator's), its digest (the JVM's) and the token of the
    members' file agents (:mod:`zkop.platform.kubernetes.files`)."""
    data = {"password": password, "digest": digest, FILES_TOKEN_KEY: files_token}
    return opaque_secret(_meta(secret_name(cluster), cluster), data)


def headless_service(cluster: ClusterRef) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(headless_name(cluster), cluster),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": labels(cluster),
            "ports": [
                {"name": "client", "port": CLIENT_PORT},
                {"name": "quorum", "port": QUORUM_PORT},
                {"name": "election", "port": ELECTION_PORT},
            ],
        },
    }


def client_service(cluster: ClusterRef) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(client_name(cluster), cluster),
        "spec": {"selector": labels(cluster), "ports": [{"name": "client", "port": CLIENT_PORT}]},
    }


def disruption_budget(cluster: ClusterRef) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(cluster.name, cluster),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(cluster)}},
    }


def volume_claim(cluster: ClusterRef, member_id: int, size: str = "1Gi") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(pvc_name(cluster, member_id), cluster, member_id),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def _quantity_cpu(cores: float) -> str:
    return f"{round(cores * 1000)}m"


def _resources(template: MemberTemplate) -> dict[str, Any]:
    out: dict[str, Any] = {}
    req, lim = template.resources_requests, template.resources_limits
    requests = {k: v for k, v in (("cpu", req.cpu), ("memory", req.memory)) if v}
    limits = {k: v for k, v in (("cpu", lim.cpu), ("memory", lim.memory)) if v}
    if requests:
        out["requests"] = {k: (_quantity_cpu(float(v)) if k == "cpu" else str(int(v))) for k, v in requests.items()}
    if limits:
        out["limits"] = {k: (_quantity_cpu(float(v)) if k == "cpu" else str(int(v))) for k, v in limits.items()}
    return out


def jvm_flags(template: MemberTemplate) -> str:
    heap = template.settings.heap_mb
    return f"-Xmx{heap}m -Xms{min(heap, 64)}m -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true"


def pod(
    cluster: ClusterRef,
    member_id: int,
    template: MemberTemplate,
    membership: list[MemberAddress],
    *,
    epoch: int | None,
    domain: str = DOMAIN,
    files_image: str = FILES_IMAGE,
) -> dict[str, Any]:
    """The member's Pod: an init step that prepares the volume (and, while a restored cluster
    waits for its data, one that receives the backup), ZooKeeper in the foreground, and the
    file agent beside it (backups copy the data through it: no ``pods/exec`` is needed)."""
    image = template.image or DEFAULT_IMAGE
    annotations = {CONFIG_HASH: template.config_hash}
    if epoch is not None:
        annotations[EPOCH] = str(epoch)
    tls = template.tls is not None and template.tls.enabled
    client_tls = template.tls is not None and template.tls.client is not None
    if client_tls:
        annotations[CLIENT_TLS] = "true"
    env: list[dict[str, Any]] = [
        {"name": "ZKOP_MEMBER_ID", "value": str(member_id)},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": pvc_name(cluster, member_id)}},
        {"name": "conf", "configMap": {"name": config_name(cluster)}},
    ]
    mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": DATA}, {"name": "conf", "mountPath": CONF}]
    if tls:
        volumes.append(
            {"name": "tls", "secret": {"secretName": tls_secret_name(cluster, member_id), "defaultMode": 0o440}}
        )
        mounts.append({"name": "tls", "mountPath": TLS, "readOnly": True})
    digest = {
        "name": "ZKOP_SUPER_DIGEST",
        "valueFrom": {"secretKeyRef": {"name": secret_name(cluster), "key": "digest"}},
    }
    files_token = {
        "name": files.TOKEN_ENV,
        "valueFrom": {"secretKeyRef": {"name": secret_name(cluster), "key": FILES_TOKEN_KEY}},
    }
    files_env = [files_token, {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    files_args = ["--data", DATA, "--host", "$(POD_IP)", "--port", str(files.PORT)]
    if tls:
        files_args += ["--tls-pem", f"{TLS}/keystore.pem", "--truststore", f"{TLS}/truststore.pem"]
    files_ports = [{"name": "files", "containerPort": files.PORT}]
    seed: list[dict[str, Any]] = []
    if template.seed is not None:
        seed.append(
            {
                "name": "seed",
                "image": files_image,
                "args": ["files", "seed", *files_args],
                "env": files_env,
                "ports": files_ports,
                "volumeMounts": mounts,
            }
        )
    read_only = [dict(m, readOnly=True) for m in mounts]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(pod_name(cluster, member_id), cluster, member_id, **annotations),
        "spec": {
            "hostname": pod_name(cluster, member_id),
            "subdomain": headless_name(cluster),
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "initContainers": [
                {
                    "name": "prepare",
                    "image": image,
                    "command": ["/bin/sh", "-c", INIT_SCRIPT],
                    "env": [
                        *env,
                        {
                            "name": "ZKOP_MEMBERSHIP",
                            "value": render_dynamic(membership).strip(),
                        },
                    ],
                    "volumeMounts": mounts,
                },
                *seed,
            ],
            "containers": [
                {
                    "name": "zookeeper",
                    "image": image,
                    "command": ["zkServer.sh", "start-foreground", f"{DATA}/zoo.cfg"],
                    "env": [
                        *env,
                        digest,
                        {
                            "name": "SERVER_JVMFLAGS",
                            "value": f"{jvm_flags(template)} "
                            "-Dzookeeper.DigestAuthenticationProvider.superDigest=$(ZKOP_SUPER_DIGEST)",
                        },
                        {"name": "ZOO_LOG4J_PROP", "value": "INFO,CONSOLE"},
                    ],
                    "ports": [
                        {"name": "client", "containerPort": CLIENT_PORT},
                        {"name": "quorum", "containerPort": QUORUM_PORT},
                        {"name": "election", "containerPort": ELECTION_PORT},
                    ],
                    "readinessProbe": {
                        "exec": {"command": ["bash", "-c", READY_SCRIPT_TLS if client_tls else READY_SCRIPT]},
                        "periodSeconds": 2,
                        "timeoutSeconds": 2,
                        "failureThreshold": 1,
                    },
                    "livenessProbe": {
                        "tcpSocket": {"port": CLIENT_PORT},
                        "initialDelaySeconds": 60,
                        "periodSeconds": 20,
                        "timeoutSeconds": 5,
                        "failureThreshold": 6,
                    },
                    "resources": _resources(template),
                    "volumeMounts": mounts,
                },
                {
                    "name": "files",
                    "image": files_image,
                    "args": ["files", "serve", *files_args],
                    "env": files_env,
                    "ports": files_ports,
                    "resources": {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
                    "volumeMounts": read_only,
                },
            ],
            "volumes": volumes,
        },
    }


__all__ = [
    "CLUSTER_LABEL",
    "CONFIG_HASH",
    "DEFAULT_IMAGE",
    "EPOCH",
    "MEMBER_LABEL",
    "REMOVED_LABEL",
    "address",
    "ca_secret",
    "ca_secret_name",
    "client_service",
    "config_map",
    "disruption_budget",
    "headless_service",
    "labels",
    "member_names",
    "pod",
    "pod_name",
    "pvc_name",
    "secret",
    "selector",
    "static_config",
    "tls_secret",
    "tls_secret_name",
    "volume_claim",
]
