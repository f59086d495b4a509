"""The Helm chart (deploy/helm/zkop) on the real API server.

- ``helm lint``, and the chart's refusals of values that contradict each other;
- ``helm template`` (default values, watchNamespace, an existing ZooKeeper) accepted by a
  server-side dry run;
- ``helm install`` / ``upgrade`` / ``uninstall`` keep the generated ZooKeeper credentials;
- the RBAC proof: only the chart's ServiceAccount and RBAC are installed, and the operator runs as
  a process with that ServiceAccount's token, the chart's OperatorConfig, credentials and command
  line. It reconciles (status, events, finalizers of all three kinds) and can do nothing else; with
  one verb taken out of the rendered rules it does not reconcile and logs the 403.

No kubelet runs Pods here, so the Deployment and the StatefulSet are stored, never run.
"""

from __future__ import annotations

import base64
import copy
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from zkop.testing import Ensemble, running_ensemble
from zkop.testing.kube import ControlPlane

pytestmark = pytest.mark.kubernetes

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "zkop"
EXAMPLES = ROOT / "examples"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding")

Doc = dict[str, Any]


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def cp(kube_control_plane: ControlPlane) -> ControlPlane:
    """The control plane with the chart's CRDs installed (Helm installs crds/ the same way, once)."""
    kube_control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    for path in sorted((CHART / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        kube_control_plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return kube_control_plane


@pytest.fixture(scope="module")
def zk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ensemble]:
    """A real ZooKeeper for the operator's coordination (each test uses its own root)."""
    with running_ensemble(1, state_dir=tmp_path_factory.mktemp("coordination")) as ensemble:
        yield ensemble


def release_name() -> str:
    return f"zkop-{uuid.uuid4().hex[:6]}"


def template(cp: ControlPlane, release: str, namespace: str, values: Doc, tmp_path: Path, *extra: str) -> str:
    """``helm template`` of the chart with ``values`` (a values file, so nothing needs escaping)."""
    values_file = tmp_path / f"values-{uuid.uuid4().hex[:6]}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    args = ["template", release, str(CHART), "--namespace", namespace, "-f", str(values_file), *extra]
    return cp.helm(*args).stdout


def documents(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def only(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, rendered {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[Doc]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def wait(what: str, check: Callable[[], Any], timeout: float, operator: Operator | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        exited = operator is not None and operator.process.poll() is not None
        if time.monotonic() > deadline or exited:
            tail = ""
            if operator is not None:
                state = f"exited with {operator.process.returncode}" if exited else "running"
                tail = f"\n--- operator log ({state}):\n" + "\n".join(operator.text().splitlines()[-30:])
            raise AssertionError(f"timed out waiting for {what}{tail}")
        time.sleep(0.2)


def get(cp: ControlPlane, kind: str, ns: str, name: str) -> Doc | None:
    result = cp.kubectl("get", kind, name, "-n", ns, "-o", "json", "--ignore-not-found")
    return yaml.safe_load(result.stdout) if result.stdout.strip() else None


def events(cp: ControlPlane, ns: str, kind: str, name: str, reason: str) -> list[Doc]:
    items: list[Doc] = cp.kubectl_json("get", "events.v1.events.k8s.io", "-n", ns)["items"]
    return [
        e
        for e in items
        if e.get("reason") == reason
        and e.get("reportingController") == "zkop.io/operator"
        and e.get("regarding", {}).get("kind") == kind
        and e.get("regarding", {}).get("name") == name
    ]


def without(rules: list[Doc], resource: str, verb: str) -> list[Doc]:
    """The rules with ``verb`` on ``resource`` taken out (every other right kept)."""
    out: list[Doc] = []
    for rule in rules:
        if resource in rule.get("resources", []) and verb in rule.get("verbs", []):
            others = [r for r in rule["resources"] if r != resource]
            if others:
                out.append({**rule, "resources": others})
            verbs = [v for v in rule["verbs"] if v != verb]
            if verbs:
                out.append({**rule, "resources": [resource], "verbs": verbs})
        else:
            out.append(rule)
    assert out != rules, f"the chart grants no {verb} on {resource}"
    return out


@dataclass
class Operator:
    """``zkop operator run`` as the chart's Deployment would run it, as a process of this test."""

    process: subprocess.Popen[bytes]
    log: Path
    identity: str
    token: str
    service_account: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")


class Launcher:
    """Installs the chart's ServiceAccount and RBAC and starts the operator with their token.

    Every process it starts is stopped by its pid, and the cluster-scoped RBAC it created is
    deleted, at teardown (also when the test fails); the namespaced objects go with the namespace.
    """

    def __init__(self, cp: ControlPlane, zk: Ensemble, ns: str, tmp_path: Path) -> None:
        self.cp, self.zk, self.ns, self.tmp = cp, zk, ns, tmp_path
        self.started: list[Operator] = []
        self.cluster_objects: list[str] = []

    def start(self, *, watch_namespace: bool, edit_rules: Callable[[list[Doc]], list[Doc]] | None = None) -> Operator:
        cp, ns = self.cp, self.ns
        release = release_name()
        values: Doc = {
            "replicaCount": 1,
            "zookeeper": {"create": False, "hosts": self.zk.connection_string, "root": f"/{release}"},
        }
        if watch_namespace:
            values["watchNamespace"] = ns
        docs = documents(template(cp, release, ns, values, self.tmp))

        # Only the ServiceAccount and the RBAC go into the API server.
        rbac = [copy.deepcopy(d) for d in docs if d["kind"] in RBAC_KINDS]
        expected = ["Role", "RoleBinding"] if watch_namespace else ["ClusterRole", "ClusterRoleBinding"]
        assert kinds(rbac) == sorted(["ServiceAccount", *expected])
        if edit_rules is not None:
            role = next(d for d in rbac if d["kind"] in ("ClusterRole", "Role"))
            role["rules"] = edit_rules(role["rules"])
        self.cluster_objects += [
            f"{d['kind'].lower()}/{d['metadata']['name']}" for d in rbac if d["kind"] in CLUSTER_SCOPED
        ]
        cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(rbac))

        # The ServiceAccount's token, in a kubeconfig of its own (no client certificate, no admin).
        sa = only(rbac, "ServiceAccount")["metadata"]["name"]
        token = cp.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
        kubeconfig = self.tmp / f"{release}.kubeconfig"
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

        # The Deployment's command line, its OperatorConfig and its ZooKeeper credentials.
        deployment = only(docs, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["serviceAccountName"] == sa
        args = list(container["args"])
        assert args[:2] == ["operator", "run"]
        config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
        config_map_name = next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"]
        config = self.tmp / f"{release}-operator.yaml"
        config.write_text(only(docs, "ConfigMap", config_map_name)["data"]["operator.yaml"])
        identity = f"{release}-replica"
        for flag, in_pod, here in (
            ("--kubeconfig", "in-cluster", str(kubeconfig)),
            ("--config", f"{config_mount['mountPath']}/operator.yaml", str(config)),
            ("--identity", "$(POD_NAME)", identity),
            ("--metrics-port", str(yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["port"]), "0"),
            ("--metrics-host", "0.0.0.0", "127.0.0.1"),  # tests listen on loopback only
        ):
            at = args.index(flag) + 1
            assert args[at] == in_pod, f"the Deployment passes {flag} {args[at]}"
            args[at] = here
        assert args[args.index("--zk") + 1] == self.zk.connection_string
        env = {e["name"]: e for e in container["env"]}
        ref = env["ZKOP_AUTH"]["valueFrom"]["secretKeyRef"]
        secret = only(docs, "Secret", ref["name"])
        auth = base64.b64decode(secret["data"][ref["key"]]).decode()
        assert auth.startswith("zkop:") and len(auth) > len("zkop:") + 20

        log = self.tmp / f"{release}.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "ZKOP_"))}
        environment.update(ZKOP_AUTH=auth, ZKOP_STATE_DIR=str(self.tmp / f"{release}-state"))
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "zkop.cli.main", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        operator = Operator(process, log, identity, token, f"system:serviceaccount:{ns}:{sa}")
        self.started.append(operator)
        return operator

    def stop(self) -> None:
        for op in self.started:
            if op.process.poll() is None:
                os.killpg(op.process.pid, signal.SIGTERM)
                try:
                    op.process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(op.process.pid, signal.SIGKILL)
                    op.process.wait(5)
        if self.cluster_objects:
            self.cp.kubectl("delete", "--ignore-not-found", "--wait=false", *self.cluster_objects, check=False)


@pytest.fixture
def launcher(cp: ControlPlane, zk: Ensemble, kube_namespace: str, tmp_path: Path) -> Iterator[Launcher]:
    launch = Launcher(cp, zk, kube_namespace, tmp_path)
    try:
        yield launch
    finally:
        launch.stop()


# --------------------------------------------------------------------------- lint and templates


def test_helm_lint(kube_control_plane: ControlPlane, tmp_path: Path) -> None:
    cp = kube_control_plane
    cp.helm("lint", "--strict", str(CHART))
    for values in ({"watchNamespace": "orders"}, {"zookeeper": {"create": False, "hosts": "zk-0:2181,zk-1:2181"}}):
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        cp.helm("lint", "--strict", str(CHART), "-f", str(values_file))
    # Values that contradict each other are refused with what to do.
    refused = {
        "zookeeper.create=false": "zookeeper.hosts (host:port,...) is required when zookeeper.create is false",
        "zookeeper.hosts=zk:2181": "set zookeeper.create=false with it",
        "operatorConfig.leaderElection.leaderElect=false": "must be true with more than one replica",
    }
    for setting, message in refused.items():
        result = cp.helm("template", "r", str(CHART), "--set", setting, check=False)
        assert result.returncode != 0 and message in result.stderr, (setting, result.stderr)


@pytest.mark.parametrize("case", ["defaults", "watchNamespace", "zookeeper.hosts"])
def test_template_is_accepted_by_a_server_side_dry_run(
    cp: ControlPlane, kube_namespace: str, tmp_path: Path, case: str
) -> None:
    ns = kube_namespace
    cases: dict[str, Doc] = {
        "defaults": {},
        # The operator in this namespace, managing another one (which exists: "default").
        "watchNamespace": {"watchNamespace": "default"},
        "zookeeper.hosts": {"zookeeper": {"create": False, "hosts": "zk-0.zk.example:2181,zk-1.zk.example:2181"}},
    }
    values = cases[case]
    text = template(cp, "zkop", ns, values, tmp_path)
    docs = documents(text)
    operator_kinds = ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "ServiceAccount"]
    zookeeper_kinds = ["PodDisruptionBudget", "Service", "Service", "StatefulSet"]
    if case == "defaults":
        assert kinds(docs) == sorted(operator_kinds + zookeeper_kinds + ["ClusterRole", "ClusterRoleBinding"])
    elif case == "watchNamespace":
        assert kinds(docs) == sorted(operator_kinds + zookeeper_kinds + ["Role", "RoleBinding"])
        role, binding = only(docs, "Role"), only(docs, "RoleBinding")
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "default"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "zkop", "namespace": ns}]
        config = yaml.safe_load(only(docs, "ConfigMap")["data"]["operator.yaml"])
        assert config["spec"]["targetNamespace"] == "default"
    else:
        assert kinds(docs) == sorted([*operator_kinds, "ClusterRole", "ClusterRoleBinding"])
        args = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--zk") + 1] == values["zookeeper"]["hosts"]

    # Every namespaced object names its namespace (no -n: the Role goes to another one).
    result = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=text)
    applied = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(applied) == len(docs) and all(line.endswith("(server dry run)") for line in applied), result.stdout
    # A dry run stores nothing.
    assert cp.kubectl("get", "deployments,statefulsets,secrets", "-n", ns, "-l", "app.kubernetes.io/instance=zkop",
                      "-o", "name").stdout.strip() == ""  # fmt: skip


def test_install_and_upgrade_keep_the_generated_credentials(
    cp: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    ns, release = kube_namespace, release_name()
    secret = f"{release}-zookeeper-auth"

    def auth() -> str | None:
        found = get(cp, "secret", ns, secret)
        return base64.b64decode(found["data"]["ZKOP_AUTH"]).decode() if found else None

    try:
        cp.helm("install", release, str(CHART), "--namespace", ns)
        first = auth()
        assert first is not None and first.startswith("zkop:")
        # The chart's objects are there (stored; no kubelet runs the Pods).
        assert get(cp, "deployment", ns, release) is not None
        assert get(cp, "statefulset", ns, f"{release}-zookeeper") is not None
        cp.helm("upgrade", release, str(CHART), "--namespace", ns, "--set", "logLevel=DEBUG")
        assert auth() == first
        deployment = get(cp, "deployment", ns, release)
        assert deployment is not None and "DEBUG" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        cp.helm("uninstall", release, "--namespace", ns)
        assert get(cp, "deployment", ns, release) is None
        assert auth() == first, "the credentials must outlive the release: the znodes carry an ACL for them"
        cp.helm("install", release, str(CHART), "--namespace", ns)
        assert auth() == first
    finally:
        cp.helm("uninstall", release, "--namespace", ns, "--ignore-not-found", check=False)


# --------------------------------------------------------------------------- the RBAC proof


def can(cp: ControlPlane, op: Operator, *args: str) -> bool:
    result = cp.kubectl("auth", "can-i", *args, token=op.token, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_the_charts_rbac_is_all_the_operator_needs(
    cp: ControlPlane, kube_namespace: str, launcher: Launcher, tmp_path: Path, scope: str
) -> None:
    ns = kube_namespace
    op = launcher.start(watch_namespace=scope == "namespace")

    # OperatorConfig: status (the status subresource), the term's epoch stamped (update), an event.
    cp.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "operatorconfig.yaml"))
    leader = wait(
        "the operator reconciles the OperatorConfig",
        lambda: ((get(cp, "opconfig", ns, "zkop") or {}).get("status") or {}).get("leader"),
        60,
        op,
    )
    obj = get(cp, "opconfig", ns, "zkop")
    assert obj is not None
    assert leader == op.identity and obj["status"]["epoch"] == 1
    assert obj["metadata"]["annotations"]["zkop.io/epoch"] == "1"
    event = wait("a Leading event", lambda: events(cp, ns, "OperatorConfig", "zkop", "Leading"), 30, op)[0]
    assert event["note"] == f"{op.identity} leads in epoch 1" and event["reportingInstance"] == op.identity

    # A ZookeeperCluster (paused: no member is started) and an Application that needs it (not ready:
    # no instance is started): finalizers added (update) and status written.
    cluster = yaml.safe_load((EXAMPLES / "zookeepercluster.yaml").read_text())
    cluster["spec"]["paused"] = True
    cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(cluster))
    cp.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "application.yaml"))
    for kind, name in (("zkc", "orders-zk"), ("app", "counter")):

        def reconciled(kind: str = kind, name: str = name) -> bool:
            found = get(cp, kind, ns, name) or {}
            status = found.get("status") or {}
            finalizers = found.get("metadata", {}).get("finalizers") or []
            return bool(finalizers) and status.get("observedGeneration") == found["metadata"]["generation"]

        wait(f"{kind}/{name} gets a finalizer and a status", reconciled, 60, op)
    app = get(cp, "app", ns, "counter")
    assert app is not None
    conditions = {c["type"]: c for c in app["status"]["conditions"]}
    assert conditions["ClusterReady"]["status"] == "False"

    # Deleting both: the operator's finalizers run (events), then it removes them (update).
    cp.kubectl("delete", "-n", ns, "app/counter", "zkc/orders-zk", "--wait=false")
    cp.kubectl("patch", "-n", ns, "zkc/orders-zk", "--type=merge", "-p", '{"spec": {"paused": false}}')
    for kind, name, full in (("app", "counter", "Application"), ("zkc", "orders-zk", "ZookeeperCluster")):

        def gone(kind: str = kind, name: str = name) -> bool:
            return get(cp, kind, ns, name) is None

        wait(f"{kind}/{name} is deleted", gone, 60, op)
        assert events(cp, ns, full, name, "Deleted"), f"no Deleted event for {kind}/{name}"

    # Nothing here failed on the way (with a ClusterRole it also sees other tests' namespaces,
    # some of them terminating), and the operator runs as the chart's ServiceAccount...
    assert op.process.poll() is None
    failures = [line for line in op.text().splitlines() if "level=warning" in line and f"key={ns}/" in line]
    assert not failures, "\n".join(failures)
    assert can(cp, op, "update", "operatorconfigs.zkop.io", "--subresource=status", "-n", ns)
    # ...which may do nothing else: no creating or deleting zkop objects (users do that), no core
    # events, no CRDs, and with watchNamespace nothing outside it. (With the default platform,
    # kubernetes, it may run Pods and read Secrets: the members' and instances'.)
    for denied in (
        ("create", "zookeeperclusters.zkop.io"),
        ("delete", "applications.zkop.io"),
        ("patch", "operatorconfigs.zkop.io"),
        ("list", "events"),
        ("delete", "events.events.k8s.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ):
        assert not can(cp, op, *denied, "-n", ns), f"the chart grants {' '.join(denied)}"
    elsewhere = can(cp, op, "list", "zookeeperclusters.zkop.io", "-n", "default")
    assert elsewhere is (scope == "cluster")


def test_a_missing_verb_fails_the_operator(cp: ControlPlane, kube_namespace: str, launcher: Launcher) -> None:
    """The proof above is only worth something if a missing right shows: without ``update`` on
    ``operatorconfigs/status`` the operator cannot report, and says why."""
    ns = kube_namespace
    op = launcher.start(
        watch_namespace=False, edit_rules=lambda rules: without(rules, "operatorconfigs/status", "update")
    )
    cp.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "operatorconfig.yaml"))
    wait(
        "the operator logs the 403",
        lambda: "operatorconfigs/status" in op.text() and "forbidden" in op.text(),
        60,
        op,
    )
    failed = [line for line in op.text().splitlines() if "reconcile failed" in line and "forbidden" in line]
    assert failed, op.text()[-3000:]
    assert op.service_account in failed[0] and 'cannot update resource \\"operatorconfigs/status\\"' in failed[0]
    # It keeps failing, says so in a Warning event whose repeats bump its series (patch), and the
    # status never names a leader.
    event = wait(
        "the ReconcileError event repeats",
        lambda: [e for e in events(cp, ns, "OperatorConfig", "zkop", "ReconcileError") if e.get("series")],
        60,
        op,
    )[0]
    assert event["type"] == "Warning" and event["series"]["count"] >= 2
    obj = get(cp, "opconfig", ns, "zkop")
    assert obj is not None and not (obj.get("status") or {}).get("leader")
    assert op.process.poll() is None
