"""ZooKeeper ensembles as Pods (the :class:`~zkop.platform.base.ZookeeperPlatform` contract on
Kubernetes). The manifests are in :mod:`.members`; this module creates, deletes and observes
them through the API, and reaches members by their Pod IPs for the four-letter words.

- **Ids only grow.** The next member id is a counter in the coordination ZooKeeper
  (``<root>/clusters/<namespace>/<name>/next-id``), not derived from what exists, so a member
  removed with its volume never gives its id to another.
- **Volumes.** A member whose PVC is gone (or lost) has no data: the planner replaces it with
  a new id. ``remove_member`` deletes the PVC (``purge_data``) or keeps it labelled
  ``zkop.io/removed=true``; a removed PVC is never attached to a new id (new ids get new
  claims).
- **Fencing.** Every action first checks that no newer leadership term has begun (the epoch
  znode of the election in the coordination ZooKeeper) and stamps the term's epoch on what it
  creates; a deposed leader's action is refused with :class:`Fenced`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.rest import ApiException

from zkop.platform.base import (
    ClusterObservation,
    ClusterRef,
    LastExit,
    MemberObservation,
    MemberTemplate,
    TlsFiles,
    TlsPolicy,
)
from zkop.platform.kubernetes import members as M
from zkop.platform.kubernetes.apierrors import KubernetesError, api_error, unless_absent
from zkop.platform.kubernetes.coordination import CoordinationSession, Session
from zkop.platform.kubernetes.files import FilesClient
from zkop.platform.notify import Subscribers
from zkop.zk import auth, fourlw
from zkop.zk import tls as tlslib
from zkop.zk.certs import CertificateAuthority, certificate_info, split_names
from zkop.zk.config import MemberAddress, parse_server_line
from zkop.zk.tls import write_private

SEED_LISTEN = 30.0  # seconds for a running seed step to answer
STOP_TIMEOUT = 60.0  # seconds to wait for a Pod to be gone after its deletion


class KubernetesZookeeperPlatform:
    name = "kubernetes"

    def __init__(
        self,
        api: k8s.ApiClient,
        coordination: Session,
        *,
        root: str = "/zkop",
        epoch_path: str | None = None,
        acl: Sequence[Any] = (),
        domain: str = M.DOMAIN,
        files_image: str = M.FILES_IMAGE,
    ) -> None:
        """``files_image``: the image of the members' file agent (the operator's own)."""
        self.core = k8s.CoreV1Api(api)
        self.files_image = files_image
        self.policy = k8s.PolicyV1Api(api)
        self._coord = CoordinationSession(coordination, epoch_path, acl)
        self._subscribers: Subscribers[ClusterRef] = Subscribers()
        self._pod_watches: dict[str, asyncio.Task[None]] = {}
        self.root = root.rstrip("/")
        self.domain = domain
        self._tls_dir: Path | None = None  # the operator's client certificates, private to this process

    # ---- changes as they happen ------------------------------------------------------

    def subscribe(self, callback: Callable[[ClusterRef], None]) -> None:
        """``callback(cluster)`` runs when a member Pod of an observed cluster changes (it
        ended, restarted, became ready or went), so the controller looks at once."""
        self._subscribers.add(callback)

    def _watch_pods(self, namespace: str) -> None:
        if self._subscribers and namespace not in self._pod_watches:
            self._pod_watches[namespace] = asyncio.create_task(self._pods(namespace), name=f"pods-{namespace}")

    async def _pods(self, namespace: str) -> None:
        selector = f"{M.CLUSTER_LABEL},app.kubernetes.io/managed-by={M.MANAGED_BY}"
        version: str | None = None
        while True:
            try:
                stream = watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    namespace,
                    label_selector=selector,
                    timeout_seconds=300,
                    **({"resource_version": version} if version else {}),
                )
                async with stream:
                    async for event in stream:
                        pod = event["object"]
                        version = pod.metadata.resource_version
                        name = (pod.metadata.labels or {}).get(M.CLUSTER_LABEL)
                        if name:
                            self._subscribers.notify(ClusterRef(namespace, name))
            except asyncio.CancelledError:
                raise
            except Exception:  # a lost watch only delays: the controller's periodic look goes on
                version = None
                await asyncio.sleep(1.0)

    # ---- fencing ------------------------------------------------------------------------

    def claim(self, epoch: int) -> None:
        """Nothing to record: the newest epoch is the election's own znode."""

    async def check(self, epoch: int | None) -> None:
        """Refuse (:class:`Fenced`) an action of a term older than the newest begun."""
        await self._coord.check(epoch)

    # ---- ids ----------------------------------------------------------------------------

    def _counter(self, cluster: ClusterRef) -> str:
        return f"{self.root}/clusters/{cluster.namespace}/{cluster.name}/next-id"

    async def _next_id(self, cluster: ClusterRef) -> tuple[int, int]:
        """The next id never handed out, and the counter znode's version (-1: none yet)."""
        return await self._coord.read_counter(self._counter(cluster))

    async def _advance(self, cluster: ClusterRef, member_id: int) -> None:
        """Make ``next-id`` exceed ``member_id`` (compare-and-set; ids only grow)."""
        path = self._counter(cluster)
        for _ in range(10):
            current, version = await self._next_id(cluster)
            if current > member_id:
                return
            try:
                await self._coord.write(path, str(member_id + 1).encode(), version)
                return
            except (NodeExistsError, BadVersionError):
                continue
        raise KubernetesError(f"the member-id counter of {cluster.key} keeps changing")

    # ---- observation ------------------------------------------------------------------

    async def observe(self, cluster: ClusterRef) -> ClusterObservation | None:
        ns = cluster.namespace
        self._watch_pods(ns)
        try:
            pods, claims, secrets = await asyncio.gather(
                self.core.list_namespaced_pod(ns, label_selector=M.selector(cluster)),
                self.core.list_namespaced_persistent_volume_claim(ns, label_selector=M.selector(cluster)),
                self.core.list_namespaced_secret(ns, label_selector=M.selector(cluster)),
            )
        except ApiException as exc:
            raise api_error(exc, f"observing {cluster.key}") from None
        expires = _certificate_ends(secrets.items)
        files = await self.client_tls(cluster)
        tls = tlslib.client_context(files) if files is not None else None
        next_id, _ = await self._next_id(cluster)
        by_pod = {_member_id(p.metadata.labels): p for p in pods.items}
        by_claim = {
            _member_id(c.metadata.labels): c
            for c in claims.items
            if (c.metadata.labels or {}).get(M.REMOVED_LABEL) != "true"
        }
        ids = sorted(i for i in {*by_pod, *by_claim} if i is not None)
        if not ids and next_id == 1 and not await self._has_config(cluster):
            return None
        observed = list(
            await asyncio.gather(
                *(self._member(cluster, i, by_pod.get(i), by_claim.get(i), tls, expires.get(i)) for i in ids)
            )
        )
        stored, version = await self._stored_config(cluster, observed, list(by_pod.values()))
        # A participant whose Pod and volume are both gone is still a member (without data) until
        # it is reconfigured out.
        for gone in sorted({a.id for a in stored} - set(ids)):
            observed.append(await self._member(cluster, gone, None, None))
        ids = sorted({*ids, *(a.id for a in stored)})
        return ClusterObservation(
            tuple(observed), max([next_id, *(i + 1 for i in ids)]), stored, version, client_tls=files
        )

    async def _has_config(self, cluster: ClusterRef) -> bool:
        return await (await self._coord.zk()).exists(self._config_path(cluster)) is not None

    def _config_path(self, cluster: ClusterRef) -> str:
        return f"{self.root}/clusters/{cluster.namespace}/{cluster.name}/config"

    async def _stored_config(
        self, cluster: ClusterRef, observed: Sequence[MemberObservation], pods: Sequence[Any]
    ) -> tuple[tuple[MemberAddress, ...], int | None]:
        """The newest configuration known, for when no member serves: what a serving member last
        reported (kept in the coordination ZooKeeper, as a member keeps it on its volume), else
        the configuration the members were started with (their Pods say it)."""
        zk = await self._coord.zk()
        path = self._config_path(cluster)
        try:
            raw, stat = await zk.get(path)
            kept: dict[str, Any] = json.loads(raw.decode() or "{}")
        except (NoNodeError, ValueError):
            kept, stat = {}, None
        files = await self.client_tls(cluster)
        for m in sorted(observed, key=lambda m: m.state.mode != "leader"):
            if not m.ready:
                continue
            host, _, port = m.endpoint.rpartition(":")
            tls = tlslib.client_context(files) if files is not None and m.client_tls else None
            conf = await fourlw.conf(host, int(port), timeout=1.0, tls=tls)
            if conf.reachable and conf.members and (conf.config_version or 0) > int(kept.get("version") or 0):
                kept = {"version": conf.config_version, "servers": [a.server_line() for a in conf.members]}
                with contextlib.suppress(NodeExistsError, BadVersionError):
                    await self._coord.write(path, json.dumps(kept).encode(), -1 if stat is None else stat.version)
            break
        if kept.get("servers"):
            found = [a for a in (parse_server_line(line) for line in kept["servers"]) if a is not None]
            return tuple(found), kept.get("version")
        best: list[MemberAddress] = []
        for pod in pods:
            for init in pod.spec.init_containers or []:
                for var in init.env or []:
                    if var.name == "ZKOP_MEMBERSHIP" and var.value:
                        listed = [a for a in map(parse_server_line, var.value.splitlines()) if a is not None]
                        if len(listed) > len(best):
                            best = listed
        return tuple(best), None

    async def _member(
        self,
        cluster: ClusterRef,
        member_id: int,
        pod: Any,
        claim: Any,
        tls: ssl.SSLContext | None = None,
        certificate_expires: float | None = None,
    ) -> MemberObservation:
        address = M.address(cluster, member_id, self.domain)
        client_tls = pod is not None and (pod.metadata.annotations or {}).get(M.CLIENT_TLS) == "true"
        status = pod.status if pod is not None else None
        container = _container(status, "zookeeper")
        terminating = pod is not None and pod.metadata.deletion_timestamp is not None
        # A Pod being started (scheduled, its init step, its container created) counts as running:
        # the member is coming up, as a process that was just started does locally.
        phase = status.phase if status is not None else None
        running = pod is not None and not terminating and phase in (None, "Pending", "Running")
        up = bool(container is not None and container.state and container.state.running and running)
        pod_ip = status.pod_ip if status is not None else None
        state = fourlw.ServerState(address.client_endpoint, reachable=False, error="not running")
        if up and pod_ip:
            state = await fourlw.server_state(pod_ip, M.CLIENT_PORT, timeout=1.0, tls=tls if client_tls else None)
        unresponsive = up and not state.reachable and "timed out" in (state.error or "").lower()
        last = container.last_state.terminated if container is not None and container.last_state else None
        data_present = claim is not None and claim.metadata.deletion_timestamp is None and claim.status.phase != "Lost"
        started = container.state.running.started_at if up else (pod.metadata.creation_timestamp if running else None)
        return MemberObservation(
            id=member_id,
            address=address,
            running=running,
            ready=up and state.serving,
            unresponsive=unresponsive,
            restarts=container.restart_count if container is not None else 0,
            data_present=data_present,
            state=state,
            started_at=started.timestamp() if started is not None else None,
            config_hash=(pod.metadata.annotations or {}).get(M.CONFIG_HASH) if pod is not None else None,
            last_exit=LastExit(last.reason or "Error", last.exit_code) if last is not None else None,
            reach=f"{pod_ip}:{M.CLIENT_PORT}" if pod_ip else None,
            client_tls=client_tls,
            certificate_expires=certificate_expires if pod is not None else None,
        )

    # ---- effects --------------------------------------------------------------------------

    async def reserve_address(
        self, cluster: ClusterRef, member_id: int, template: MemberTemplate, *, epoch: int | None
    ) -> MemberAddress:
        await self._coord.check(epoch)
        next_id, _ = await self._next_id(cluster)
        if member_id < next_id and not await self._has_member(cluster, member_id):
            raise KubernetesError(
                f"member id {member_id} of {cluster.key} was handed out before (next id {next_id})",
                hint="ids are never reused",
            )
        await self._advance(cluster, member_id)
        return M.address(cluster, member_id, self.domain)

    async def _has_member(self, cluster: ClusterRef, member_id: int) -> bool:
        """Whether the member still has a Pod or a (not removed) claim."""
        selector = f"{M.selector(cluster)},{M.MEMBER_LABEL}={member_id}"
        try:
            pods = await self.core.list_namespaced_pod(cluster.namespace, label_selector=selector)
            claims = await self.core.list_namespaced_persistent_volume_claim(cluster.namespace, label_selector=selector)
        except ApiException as exc:
            raise api_error(exc, f"reading member {member_id} of {cluster.key}") from None
        kept = [c for c in claims.items if (c.metadata.labels or {}).get(M.REMOVED_LABEL) != "true"]
        return bool(pods.items or kept)

    async def _create(self, kind: str, body: dict[str, Any], namespace: str) -> None:
        creators: dict[str, Callable[..., Awaitable[Any]]] = {
            "Pod": self.core.create_namespaced_pod,
            "PersistentVolumeClaim": self.core.create_namespaced_persistent_volume_claim,
            "Service": self.core.create_namespaced_service,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Secret": self.core.create_namespaced_secret,
            "PodDisruptionBudget": self.policy.create_namespaced_pod_disruption_budget,
        }
        try:
            await creators[kind](namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise api_error(exc, f"creating {kind} {body['metadata']['name']}") from None

    async def _ensure_cluster(self, cluster: ClusterRef, template: MemberTemplate) -> None:
        """The cluster's Services, budget, Secret and static configuration (the ConfigMap follows
        the template: it is what the next start of a member reads)."""
        ns = cluster.namespace
        await self.super_password(cluster)
        await self._files_token(cluster)
        for body in (M.headless_service(cluster), M.client_service(cluster)):
            await self._create("Service", body, ns)
        await self._create("PodDisruptionBudget", M.disruption_budget(cluster), ns)
        config = M.config_map(cluster, template)
        try:
            await self.core.replace_namespaced_config_map(M.config_name(cluster), ns, config)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 404:
                raise api_error(exc, f"writing the configuration of {cluster.key}") from None
            await self._create("ConfigMap", config, ns)

    async def ensure_member(
        self,
        cluster: ClusterRef,
        member_id: int,
        template: MemberTemplate,
        membership: Sequence[MemberAddress],
        *,
        epoch: int | None,
    ) -> None:
        await self._coord.check(epoch)
        ns = cluster.namespace
        await self._ensure_cluster(cluster, template)
        await self._create("PersistentVolumeClaim", M.volume_claim(cluster, member_id), ns)
        name = M.pod_name(cluster, member_id)
        current = await unless_absent(self.core.read_namespaced_pod(name, ns), f"reading Pod {name}")
        if current is not None:
            if current.metadata.deletion_timestamp is None and current.status.phase not in ("Failed", "Succeeded"):
                return  # it exists and runs (or starts): a restart is stop_member first
            await self._delete_pod(cluster, member_id)
        me = M.address(cluster, member_id, self.domain)
        members = [a for a in membership if a.id != member_id] + [me]
        if template.tls is not None and template.tls.enabled:
            await self._ensure_member_certificate(cluster, member_id, template.tls)
        await self._create(
            "Pod",
            M.pod(cluster, member_id, template, members, epoch=epoch, domain=self.domain, files_image=self.files_image),
            ns,
        )

    async def _delete_pod(self, cluster: ClusterRef, member_id: int) -> None:
        name, ns = M.pod_name(cluster, member_id), cluster.namespace
        if await unless_absent(self.core.delete_namespaced_pod(name, ns), f"deleting Pod {name}") is None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if await unless_absent(self.core.read_namespaced_pod(name, ns), f"reading Pod {name}") is None:
                return
            await asyncio.sleep(0.25)
        raise KubernetesError(f"Pod {name} was not gone {STOP_TIMEOUT:.0f}s after its deletion")

    async def stop_member(self, cluster: ClusterRef, member_id: int, *, epoch: int | None) -> None:
        await self._coord.check(epoch)
        await self._delete_pod(cluster, member_id)

    async def remove_member(self, cluster: ClusterRef, member_id: int, *, purge_data: bool, epoch: int | None) -> None:
        await self._coord.check(epoch)
        await self._delete_pod(cluster, member_id)
        await self._delete_secret(cluster, M.tls_secret_name(cluster, member_id))
        await self._release_claim(cluster, M.pvc_name(cluster, member_id), purge_data)

    async def _release_claim(self, cluster: ClusterRef, name: str, purge_data: bool) -> None:
        """Delete a member's claim, or keep it labelled as a removed member's (never reattached)."""
        try:
            if purge_data:
                await self.core.delete_namespaced_persistent_volume_claim(name, cluster.namespace)
            else:
                patch = {
                    "metadata": {"labels": {M.REMOVED_LABEL: "true"}, "annotations": {"zkop.io/removed-at": _now()}}
                }
                await self.core.patch_namespaced_persistent_volume_claim(name, cluster.namespace, patch)
        except ApiException as exc:
            if exc.status != 404:
                raise api_error(exc, f"releasing PVC {name}") from None

    async def remove_cluster(self, cluster: ClusterRef, *, purge_data: bool, epoch: int | None) -> None:
        await self._coord.check(epoch)
        ns = cluster.namespace
        deletes = [
            (self.core.delete_namespaced_service, M.headless_name(cluster)),
            (self.core.delete_namespaced_service, M.client_name(cluster)),
            (self.policy.delete_namespaced_pod_disruption_budget, cluster.name),
            (self.core.delete_namespaced_config_map, M.config_name(cluster)),
            (self.core.delete_namespaced_secret, M.secret_name(cluster)),
        ]
        for delete, name in deletes:
            await unless_absent(delete(name, ns), f"deleting {name}")
        claims = await self.core.list_namespaced_persistent_volume_claim(ns, label_selector=M.selector(cluster))
        for claim in claims.items:
            await self._release_claim(cluster, claim.metadata.name, purge_data)
        secrets = await self.core.list_namespaced_secret(ns, label_selector=M.selector(cluster))
        for found in secrets.items:
            if found.metadata.name != M.secret_name(cluster):  # the super-user Secret went above
                await self._delete_secret(cluster, found.metadata.name)
        zk = await self._coord.zk()
        with contextlib.suppress(NoNodeError):
            await zk.delete(self._config_path(cluster))  # the members are gone: so is their configuration
        if purge_data:
            with contextlib.suppress(NoNodeError):
                await zk.delete(self._counter(cluster))

    async def super_password(self, cluster: ClusterRef) -> str:
        """The cluster's super-user password, kept in its Secret (made on first use)."""
        found = await self._read_secret(cluster, M.secret_name(cluster))
        if found is not None:
            return base64.b64decode(found.data["password"]).decode()
        password = auth.new_password()
        body = M.secret(cluster, password, auth.digest(auth.SUPER_USER, password), auth.new_password())
        await self._create("Secret", body, cluster.namespace)
        return await self.super_password(cluster)

    async def _files_token(self, cluster: ClusterRef) -> str:
        """The token of the members' file agents (added to a Secret made before there was one)."""
        name = M.secret_name(cluster)
        found = await self._read_secret(cluster, name)
        if found is None:
            raise KubernetesError(f"the Secret {name} of {cluster.key} is gone", hint="the operator makes it again")
        if M.FILES_TOKEN_KEY in (found.data or {}):
            return base64.b64decode(found.data[M.FILES_TOKEN_KEY]).decode()
        found.data = dict(
            found.data or {}, **{M.FILES_TOKEN_KEY: base64.b64encode(auth.new_password().encode()).decode()}
        )
        try:  # an update holding the read's resourceVersion: a concurrent writer makes it fail, then read again
            await self.core.replace_namespaced_secret(name, cluster.namespace, found)
        except ApiException as exc:
            if exc.status != 409:
                raise api_error(exc, f"adding the file agents' token to Secret {name}") from None
        return await self._files_token(cluster)

    # ---- TLS ------------------------------------------------------------------------------

    async def _delete_secret(self, cluster: ClusterRef, name: str) -> None:
        await unless_absent(self.core.delete_namespaced_secret(name, cluster.namespace), f"deleting Secret {name}")

    async def _read_secret(self, cluster: ClusterRef, name: str) -> Any:
        return await unless_absent(self.core.read_namespaced_secret(name, cluster.namespace), f"reading Secret {name}")

    async def _ca(self, cluster: ClusterRef, *, create: bool) -> CertificateAuthority | None:
        """The cluster's CA, kept in a Secret that no Pod mounts (made on first use)."""
        found = await self._read_secret(cluster, M.ca_secret_name(cluster))
        if found is not None:
            data = found.data or {}
            return CertificateAuthority(_unb64(data["ca.crt"]), _unb64(data["ca.key"]))
        if not create:
            return None
        ca = CertificateAuthority.create(f"zkop {cluster.namespace}/{cluster.name} CA")
        await self._create("Secret", M.ca_secret(cluster, ca.cert_pem, ca.key_pem, ca.fingerprint), cluster.namespace)
        return await self._ca(cluster, create=False)  # the one stored (another replica may have won)

    async def _ensure_member_certificate(self, cluster: ClusterRef, member_id: int, policy: TlsPolicy) -> None:
        """Issue the member's key store (a Secret mounted at /tls) when it has none, its CA is not
        the cluster's, or it ends within ``renew_before`` (a member restarted for it gets a new one)."""
        ca = await self._ca(cluster, create=True)
        assert ca is not None
        name = M.tls_secret_name(cluster, member_id)
        found = await self._read_secret(cluster, name)
        if found is not None:
            notes = found.metadata.annotations or {}
            try:
                ends = float(notes.get(M.NOT_AFTER, "0"))
            except ValueError:
                ends = 0.0
            if notes.get(M.CA_FINGERPRINT) == ca.fingerprint and ends - time.time() > policy.renew_before:
                return
        dns, ips = split_names(M.member_names(cluster, member_id, self.domain))
        issued = ca.issue(f"{cluster.name}-{member_id}", validity=policy.validity, dns_names=dns, ip_addresses=ips)
        body = M.tls_secret(cluster, member_id, issued.key_store, ca.cert_pem, issued.not_after, ca.fingerprint)
        if found is None:
            await self._create("Secret", body, cluster.namespace)
            return
        try:
            await self.core.replace_namespaced_secret(name, cluster.namespace, body)  # type: ignore[arg-type]
        except ApiException as exc:
            raise api_error(exc, f"writing Secret {name}") from None

    async def client_tls(self, cluster: ClusterRef) -> TlsFiles | None:
        """The operator's client certificate for the cluster, in a directory private to this process
        (renewed when half used); Pods are reached by IP, so names are not checked, the CA is."""
        ca = await self._ca(cluster, create=False)
        if ca is None:
            return None
        if self._tls_dir is None:
            self._tls_dir = Path(tempfile.mkdtemp(prefix="zkop-tls-"))
        where = self._tls_dir / cluster.namespace / cluster.name
        files = TlsFiles(where / "ca.crt", where / "operator.pem", check_hostname=False)
        try:
            info = certificate_info(files.cert.read_text())
            if (
                files.ca.read_text() == ca.cert_pem
                and info.not_after - time.time() > (info.not_after - info.not_before) / 2
            ):
                return files
        except (OSError, ValueError):
            pass
        issued = ca.issue("zkop-operator", validity=30 * 24 * 3600, server=False)
        write_private(files.ca, ca.cert_pem)
        write_private(files.cert, issued.key_store)
        return files

    # ---- the members' data, through their file agents ------------------------------------

    async def _files(self, cluster: ClusterRef, member_id: int, container: str = "files") -> FilesClient:
        """A client of the member's file agent (``container``: ``files``, or the ``seed`` step)."""
        name = M.pod_name(cluster, member_id)
        pod = await unless_absent(self.core.read_namespaced_pod(name, cluster.namespace), f"reading Pod {name}")
        if pod is None:
            raise KubernetesError(f"member {member_id} of {cluster.key} has no Pod")
        spec = [*(pod.spec.init_containers or []), *(pod.spec.containers or [])]
        if not any(c.name == container for c in spec):
            raise KubernetesError(
                f"Pod {name} has no {container!r} container (it was made by an older zkop)",
                hint=f"roll the cluster's members to add it: zkop restart zkc {cluster.name} -n {cluster.namespace}",
            )
        if not pod.status.pod_ip:
            raise KubernetesError(f"Pod {name} has no address yet")
        token = await self._files_token(cluster)
        tls = None
        if any(v.name == "tls" for v in pod.spec.volumes or []):
            files = await self.client_tls(cluster)
            tls = tlslib.client_context(files) if files is not None else None
        return FilesClient(pod.status.pod_ip, token, tls=tls)

    async def member_files(self, cluster: ClusterRef, member_id: int) -> Sequence[str]:
        client = await self._files(cluster, member_id)
        return [name for name, _ in await client.files()]

    async def copy_member_file(self, cluster: ClusterRef, member_id: int, name: str, dest: Path) -> None:
        await (await self._files(cluster, member_id)).fetch(name, dest)

    async def seeding(self, cluster: ClusterRef) -> Sequence[int]:
        """Members whose Pod runs its seed step (it listens for the backup's files)."""
        try:
            pods = await self.core.list_namespaced_pod(cluster.namespace, label_selector=M.selector(cluster))
        except ApiException as exc:
            raise api_error(exc, f"observing {cluster.key}") from None
        waiting = []
        for pod in pods.items:
            step = next((c for c in pod.status.init_container_statuses or [] if c.name == "seed"), None)
            member = _member_id(pod.metadata.labels)
            if step is not None and step.state and step.state.running and member is not None:
                waiting.append(member)
        return sorted(waiting)

    async def seed(self, cluster: ClusterRef, member_id: int, files: Sequence[tuple[str, Path, str]]) -> None:
        client = await self._files(cluster, member_id, "seed")
        async with asyncio.timeout(SEED_LISTEN):
            while not await client.ready():  # noqa: ASYNC110 (a server in a Pod: polled, no event)
                await asyncio.sleep(0.25)
        for name, path, digest in files:
            await client.put(name, path, digest)
        await client.done()


def _unb64(value: str) -> str:
    return base64.b64decode(value).decode()


def _certificate_ends(secrets: Sequence[Any]) -> dict[int, float]:
    """When each member's certificate ends, from its TLS Secret's annotation."""
    out: dict[int, float] = {}
    for found in secrets:
        member = _member_id(found.metadata.labels)
        notes = found.metadata.annotations or {}
        if member is None or M.NOT_AFTER not in notes:
            continue
        try:
            out[member] = float(notes[M.NOT_AFTER])
        except ValueError:
            out[member] = 0.0
    return out


def _member_id(labels: dict[str, str] | None) -> int | None:
    try:
        return int((labels or {}).get(M.MEMBER_LABEL, ""))
    except ValueError:
        return None


def _container(status: Any, name: str) -> Any:
    for c in (status.container_statuses or []) if status is not None else []:
        if c.name == name:
            return c
    return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = ["KubernetesZookeeperPlatform"]
