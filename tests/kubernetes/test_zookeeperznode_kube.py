"""Tenants (ZookeeperZnode) on Kubernetes: the operator runs as ``zkop operator run --platform
kubernetes`` with the chart's ServiceAccount and RBAC (its token, nothing more), a one-member
ZookeeperCluster runs as a Pod of the node agent (a real ZooKeeper JVM), and the tenants' clients
are real kazoo clients reaching it at the Pod's address.

One namespace, node agent, operator and cluster serve every test of this module (one JVM to
start, not one per test); each test makes ZookeeperZnodes (and an Application) of its own.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import CREATOR_ALL_ACL

from zkop.testing import Ensemble
from zkop.testing.kube import ControlPlane
from zkop.testing.nodeagent import NodeAgent
from zkop.zk import auth
from zkop.zk.quota import Limits, limits_path

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "zkop"
SESSION = 6
CLUSTER = "zk"

Doc = dict[str, Any]


@dataclass
class Bed:
    """The module's namespace, node agent and operator, and what the tests read back."""

    cp: ControlPlane
    ns: str
    agent: NodeAgent
    coordination: Ensemble
    root: str
    operator_auth: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def api(self, path: str) -> Doc | None:
        status, body = self.cp.request(path)
        if status == 404:
            return None
        assert status == 200, f"GET {path}: {status} {body[:300]}"
        data: Doc = json.loads(body)
        return data

    def znode(self, name: str) -> Doc:
        return self.api(f"/apis/zkop.io/v1/namespaces/{self.ns}/zookeeperznodes/{name}") or {}

    def secret(self, name: str) -> dict[str, str] | None:
        found = self.api(f"/api/v1/namespaces/{self.ns}/secrets/{name}")
        if found is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}

    def apply(self, doc: Doc) -> None:
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump(doc))

    def reasons(self, name: str) -> list[str]:
        data = self.api(f"/apis/events.k8s.io/v1/namespaces/{self.ns}/events") or {}
        items = [e for e in data.get("items", []) if (e.get("regarding") or {}).get("name") == name]
        items.sort(key=lambda e: e.get("eventTime") or e["metadata"]["creationTimestamp"])
        return [e["reason"] for e in items]

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 90.0, name: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            exited = self.process is not None and self.process.poll() is not None
            if time.monotonic() > deadline or exited:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
                state = json.dumps(self.znode(name), indent=1)[:4000] if name else ""
                raise AssertionError(
                    f"timed out waiting for {what} (operator {'exited' if exited else 'running'})\n"
                    f"{state}\nevents: {self.reasons(name) if name else ''}\n--- operator log:\n{tail}"
                )
            time.sleep(0.3)

    def ready(self, name: str) -> Doc:
        def check() -> Doc | None:
            found = self.znode(name)
            return found if (found.get("status") or {}).get("phase") == "Ready" else None

        result: Doc = self.wait(f"zookeeperznode {name} Ready", check, name=name)
        return result

    def hosts(self) -> str:
        """The cluster's client address as this test reaches it: the Pod's (no Service routing here)."""
        return f"{self.agent.pod_ip(self.ns, f'{CLUSTER}-1')}:2181"

    def super_client(self) -> KazooClient:
        password = base64.b64decode(
            (self.api(f"/api/v1/namespaces/{self.ns}/secrets/{CLUSTER}-super") or {})["data"]["password"]
        ).decode()
        client = KazooClient(self.hosts(), timeout=10, auth_data=[auth.super_auth(password)])
        client.start(timeout=20)
        return client


def znode_doc(name: str, path: str, **spec: Any) -> Doc:
    return {
        "apiVersion": "zkop.io/v1",
        "kind": "ZookeeperZnode",
        "metadata": {"name": name},
        "spec": {"clusterRef": {"name": CLUSTER}, "path": path, **spec},
    }


def chart_kubeconfig(cp: ControlPlane, ns: str, tmp: Path) -> tuple[Path, list[str]]:
    """The chart's ServiceAccount and RBAC (a ClusterRole, the chart's default) installed, and a
    kubeconfig with that ServiceAccount's token; returns it and the cluster-scoped objects made."""
    release = f"zkop-{uuid.uuid4().hex[:6]}"
    values = tmp / "values.yaml"
    values.write_text(yaml.safe_dump({"replicaCount": 1, "zookeeper": {"create": False, "hosts": "unused:2181"}}))
    rendered = cp.helm("template", release, str(CHART), "--namespace", ns, "-f", str(values)).stdout
    rbac = [
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    ]
    assert sorted(d["kind"] for d in rbac) == ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]
    cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(rbac))
    cluster_scoped = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in rbac if d["kind"] != "ServiceAccount"]
    sa = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    token = cp.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
    kubeconfig = tmp / "operator.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "test", "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)}}
                ],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": sa, "context": {"cluster": "test", "user": sa, "namespace": ns}}],
                "current-context": sa,
            }
        )
    )
    kubeconfig.chmod(0o600)
    return kubeconfig, cluster_scoped


@pytest.fixture(scope="module")
def bed(cp: ControlPlane, zk: Ensemble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    tmp = tmp_path_factory.mktemp("znodes")
    ns = f"znodes-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", ns)
    cluster_scoped: list[str] = []
    agent: NodeAgent | None = None
    b: Bed | None = None
    try:
        cp.wait_for(
            f"the default ServiceAccount in {ns}",
            lambda: True if cp.request(f"/api/v1/namespaces/{ns}/serviceaccounts/default")[0] == 200 else None,
        )
        agent = NodeAgent(
            cp,
            tmp / "node",
            node_name=f"node-{ns}",
            namespaces=[ns],
            backoff_scale=0.1,
            refresh_interval=2.0,
            shutdown_grace=10.0,
            delete_node_on_stop=True,
        )
        agent.start()
        kubeconfig, cluster_scoped = chart_kubeconfig(cp, ns, tmp)
        config = tmp / "operator.yaml"
        config.write_text(
            "apiVersion: zkop.io/v1\nkind: OperatorConfig\nmetadata: {name: zkop}\n"
            f"spec: {{targetNamespace: {ns}, leaderElection: {{sessionTimeoutSeconds: {SESSION}}}}}\n"
        )
        root = f"/k-{uuid.uuid4().hex[:8]}"
        operator_auth = f"zkop:{uuid.uuid4().hex}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "ZKOP_"))}
        env.update(ZKOP_AUTH=operator_auth, ZKOP_STATE_DIR=str(tmp / "state"), ZKOP_HOSTS_FILE=str(agent.hosts_file))
        argv = [
            sys.executable, "-m", "zkop.cli.main", "operator", "run", "--zk", zk.connection_string,
            "--root", root, "--kubeconfig", str(kubeconfig), "--platform", "kubernetes",
            "--config", str(config), "--metrics-port", "0", "--identity", "replica-1",
        ]  # fmt: skip
        log = tmp / "operator.log"
        b = Bed(cp, ns, agent, zk, root, operator_auth, log)
        with log.open("ab") as out:
            b.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        b.apply(
            {
                "apiVersion": "zkop.io/v1",
                "kind": "ZookeeperCluster",
                "metadata": {"name": CLUSTER},
                "spec": {"replicas": 1, "jvm": {"heap": "128Mi"}},
            }
        )

        def serving() -> bool:
            found = b.api(f"/apis/zkop.io/v1/namespaces/{ns}/zookeeperclusters/{CLUSTER}") or {}
            status = found.get("status") or {}
            return status.get("readyReplicas") == 1 and bool(status.get("connectionString"))

        b.wait("the cluster serving", serving, 180)
        yield b
    finally:
        if b is not None and b.process is not None and b.process.poll() is None:
            os.killpg(b.process.pid, signal.SIGTERM)
            try:
                b.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(b.process.pid, signal.SIGKILL)
                b.process.wait(5)
        if agent is not None:
            agent.stop()
        if cluster_scoped:
            cp.kubectl("delete", "--ignore-not-found", "--wait=false", *cluster_scoped, check=False)
        cp.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)


def connect(hosts: str, auth_value: str | None = None) -> KazooClient:
    auth_data = [("digest", auth_value)] if auth_value else []
    client = KazooClient(hosts, timeout=10, auth_data=auth_data, default_acl=CREATOR_ALL_ACL if auth_value else None)
    client.start(timeout=20)
    return client


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except NoAuthError:
        return True
    return False


def credentials(b: Bed, obj: Doc) -> dict[str, str]:
    """The Secret that status.credentials names (``secret/<ns>/<name>``), decoded."""
    kind, ns, name = obj["status"]["credentials"].split("/")
    assert (kind, ns) == ("secret", b.ns)
    found = b.secret(name)
    assert found is not None, f"status.credentials names {obj['status']['credentials']}, which does not exist"
    return found


def coordination_data(b: Bed) -> bytes:
    """Everything the operator keeps in its coordination ZooKeeper, as one blob."""
    client = KazooClient(b.coordination.connection_string, timeout=10, auth_data=[("digest", b.operator_auth)])
    client.start(timeout=20)
    try:
        out: list[bytes] = []

        def walk(path: str) -> None:
            try:
                data, _ = client.get(path)
                out.append(data or b"")
                for child in client.get_children(path):
                    walk(f"{path}/{child}")
            except NoNodeError:
                pass

        walk(b.root)
        return b"\n".join(out)
    finally:
        client.stop()
        client.close()


# --------------------------------------------------------------------------- tests


def test_credentials_are_a_secret_and_only_the_tenant_reaches_its_path(bed: Bed) -> None:
    b = bed
    b.apply(znode_doc("orders", "/apps/orders", quota={"znodes": 5, "bytes": "1Ki"}))
    b.apply(znode_doc("billing", "/apps/billing"))
    orders, billing = b.ready("orders"), b.ready("billing")
    s = orders["status"]
    zkc = b.api(f"/apis/zkop.io/v1/namespaces/{b.ns}/zookeeperclusters/{CLUSTER}") or {}
    assert s["connectionString"] == zkc["status"]["connectionString"] + "/apps/orders"
    assert s["user"] == f"znode/{b.ns}/orders"
    assert s["credentials"] == f"secret/{b.ns}/zkop-znode-orders"
    assert s["quota"] == {"znodes": 5, "bytes": 1024, "hard": False}
    assert {c["type"]: c["status"] for c in s["conditions"]} == {"Ready": "True", "ClusterReady": "True"}

    # The credentials: a Secret with user, password and auth; the object only says where it is.
    creds = credentials(b, orders)
    assert sorted(creds) == ["auth", "password", "user"]
    assert creds["user"] == s["user"] and creds["auth"] == f"{creds['user']}:{creds['password']}"
    secret = b.api(f"/api/v1/namespaces/{b.ns}/secrets/zkop-znode-orders") or {}
    assert secret["type"] == "Opaque"
    assert not secret["metadata"].get("ownerReferences")  # Retain outlives the object
    assert int(secret["metadata"]["annotations"]["zkop.io/epoch"]) >= 1  # the term that wrote it
    other = credentials(b, billing)
    assert other["password"] != creds["password"]
    assert "CredentialsCreated" in b.reasons("orders") and "Created" in b.reasons("orders")

    # A client with those credentials, chrooted at its path (the Pod's address: no Service routing).
    tenant_hosts = b.hosts() + "/apps/orders"
    a, o, anon = connect(tenant_hosts, creds["auth"]), connect(b.hosts(), other["auth"]), connect(b.hosts())
    try:
        a.create("/cart", b"secret")
        a.set("/", b"root data")
        assert a.get("/cart")[0] == b"secret" and a.get("/")[0] == b"root data"
        assert a.get_children("/") == ["cart"]
        # Another tenant: nothing of /apps/orders, neither read nor listed nor changed.
        assert refused(lambda: o.get("/apps/orders"))
        assert refused(lambda: o.get_children("/apps/orders"))
        assert refused(lambda: o.get("/apps/orders/cart"))
        assert refused(lambda: o.create("/apps/orders/intruder", b"x"))
        assert refused(lambda: o.set("/apps/orders", b"x"))
        assert refused(lambda: o.delete("/apps/orders/cart"))
        # Anonymous: not even the list of tenants.
        assert refused(lambda: anon.get("/apps/orders"))
        assert refused(lambda: anon.get_children("/apps"))
        assert refused(lambda: anon.get("/apps/orders/cart"))
        assert refused(lambda: anon.set("/apps/orders", b"x"))
        assert refused(lambda: anon.create("/apps/orders/intruder", b"x"))
        # The other tenant's own path works for it; the root's ACL stays the operator's.
        o.create("/apps/billing/invoice", b"1")
        assert o.get("/apps/billing/invoice")[0] == b"1"
        assert refused(lambda: a.set_acls("/", CREATOR_ALL_ACL))
    finally:
        for c in (a, o, anon):
            c.stop()
            c.close()
    su = b.super_client()
    try:
        assert Limits.decode(su.get(limits_path("/apps/orders"))[0]) == Limits(5, 1024)
    finally:
        su.stop()
        su.close()

    # Nowhere else in plain text: not in any object of the namespace but its Secret, not in the
    # operator's log, not in its coordination ZooKeeper.
    for password in (creds["password"], other["password"]):
        for kind in ("zookeeperznodes", "zookeeperclusters", "pods", "configmaps", "events", "events.events.k8s.io"):
            listed = b.cp.kubectl("get", kind, "-n", b.ns, "-o", "json").stdout
            assert password not in listed, f"the password is in plain text in {kind}"
        secrets = json.loads(b.cp.kubectl("get", "secrets", "-n", b.ns, "-o", "json").stdout)["items"]
        holding = [
            x["metadata"]["name"]
            for x in secrets
            if any(password in base64.b64decode(v).decode(errors="replace") for v in (x.get("data") or {}).values())
        ]
        assert len(holding) == 1 and holding[0].startswith("zkop-znode-"), holding
        assert password not in b.log.read_text(errors="replace")
        assert password.encode() not in coordination_data(b)


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_delete_applies_the_reclaim_policy(bed: Bed, policy: str) -> None:
    b = bed
    name, path = f"reclaim-{policy.lower()}", f"/reclaim/{policy.lower()}"
    b.apply(znode_doc(name, path, reclaimPolicy=policy, quota={"znodes": 10}))
    obj = b.ready(name)
    creds = credentials(b, obj)
    c = connect(b.hosts() + path, creds["auth"])
    try:
        c.create("/kept", b"data")
    finally:
        c.stop()
        c.close()

    b.cp.kubectl("delete", "zookeeperznode", name, "-n", b.ns, "--wait=false")
    b.wait(f"zookeeperznode {name} gone", lambda: not b.znode(name), name=name)
    su = b.super_client()
    try:
        data, quota = su.exists(f"{path}/kept"), su.exists(limits_path(path))
    finally:
        su.stop()
        su.close()
    secret = b.secret(f"zkop-znode-{name}")
    if policy == "Delete":
        assert data is None and quota is None and secret is None
        assert "Deleted" in b.reasons(name)
        return
    assert data is not None and quota is not None and secret == creds
    assert "Retained" in b.reasons(name)
    # A new object of the same name takes the path and its identity over.
    b.apply(znode_doc(name, path, reclaimPolicy="Delete"))
    again = b.ready(name)
    assert credentials(b, again) == creds
    assert again["status"]["connectionString"].endswith(f":2181{path}")
    c = connect(b.hosts() + path, creds["auth"])
    try:
        assert c.get("/kept")[0] == b"data"
    finally:
        c.stop()
        c.close()


APP = textwrap.dedent(
    """
    import os, time
    from kazoo.client import KazooClient
    from kazoo.security import CREATOR_ALL_ACL
    client = KazooClient(os.environ["ZK_HOSTS"], auth_data=[("digest", os.environ["ZK_AUTH"])],
                         default_acl=CREATOR_ALL_ACL)
    client.start(timeout=30)
    client.ensure_path("/instances")
    client.create("/instances/" + os.environ["ZKOP_INSTANCE"], os.environ["ZK_HOSTS"].encode())
    client.stop()
    while True:
        time.sleep(60)
    """
)


def test_an_application_naming_the_znode_gets_its_chroot_and_identity(bed: Bed) -> None:
    b = bed
    b.apply(znode_doc("web-data", "/apps/web"))
    web = b.ready("web-data")
    creds = credentials(b, web)
    b.apply(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "Application",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "template": {"command": ["python3", "-c", APP]},
                "zookeeper": {"clusterRef": {"name": CLUSTER}, "znodeRef": {"name": "web-data"}},
            },
        }
    )

    def instances() -> dict[str, bytes]:
        c = connect(b.hosts() + "/apps/web", creds["auth"])
        try:
            return {n: c.get(f"/instances/{n}")[0] for n in c.get_children("/instances")}
        except NoNodeError:
            return {}
        finally:
            c.stop()
            c.close()

    found = b.wait("the instance wrote under its chroot", instances, 120, name="web-data")
    assert set(found.values()) == {web["status"]["connectionString"].encode()}
    pods = (b.api(f"/api/v1/namespaces/{b.ns}/pods?labelSelector=zkop.io/application=web") or {})["items"]
    assert len(pods) == 1
    env = {e["name"]: e for e in pods[0]["spec"]["containers"][0]["env"]}
    assert env["ZK_HOSTS"]["value"] == web["status"]["connectionString"]
    # The identity reaches the container through a Secret, never as a value in the Pod's spec.
    assert "value" not in env["ZK_AUTH"] and env["ZK_AUTH"]["valueFrom"]["secretKeyRef"]
    assert creds["password"] not in json.dumps(pods)
    # Anonymous clients see nothing of what the instance wrote.
    anon = connect(b.hosts())
    try:
        assert refused(lambda: anon.get_children("/apps/web"))
        assert refused(lambda: anon.get_children("/apps/web/instances"))
    finally:
        anon.stop()
        anon.close()
    b.cp.kubectl("delete", "application", "web", "-n", b.ns, "--wait=false")
    b.wait("the application gone", lambda: b.api(f"/apis/zkop.io/v1/namespaces/{b.ns}/applications/web") is None)
