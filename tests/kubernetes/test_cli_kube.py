"""The ``zkop`` CLI on the Kubernetes store (``--kubeconfig``/``--context``) against a real API
server, side by side with the built kubectl on the same objects. zkop runs as a subprocess
(``python -m zkop.cli.main``), as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zkop.api.crd import crds
from zkop.client.kube import api_client
from zkop.store.kube import KubeStore
from zkop.testing.kube import ControlPlane

pytestmark = pytest.mark.kubernetes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ZKC_EXAMPLE = EXAMPLES / "zookeepercluster.yaml"


def install_crds(cp: ControlPlane) -> None:
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "deploy" / "crds"))
    for definition in crds():
        cp.kubectl("wait", "--for=condition=Established", f"crd/{definition['metadata']['name']}", "--timeout=60s")


@pytest.fixture(scope="module")
def cp(kube_control_plane: ControlPlane) -> Iterator[ControlPlane]:
    install_crds(kube_control_plane)
    yield kube_control_plane


class Zkop:
    """``zkop`` in a subprocess with a clean environment: no ZooKeeper named, an empty state
    dir, and KUBECONFIG set to the admin's (so a test shows zkop does not read it)."""

    def __init__(self, cp: ControlPlane, state_dir: Path) -> None:
        self.cp = cp
        self.kubeconfig = str(cp.kubeconfig)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("ZKOP_", "KUBE"))}
        self.env.update(ZKOP_STATE_DIR=str(state_dir), KUBECONFIG=self.kubeconfig, COLUMNS="200")

    def __call__(
        self, *args: str, kubeconfig: str | None = "admin", input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "zkop.cli.main", *args]
        if kubeconfig is not None:
            argv += ["--kubeconfig", self.kubeconfig if kubeconfig == "admin" else kubeconfig]
        return subprocess.run(
            argv, input=input, capture_output=True, text=True, env={**self.env, **(env or {})}, timeout=120
        )

    def ok(self, *args: str, **kw: Any) -> str:
        result = self(*args, **kw)
        assert result.returncode == 0, f"zkop {' '.join(args)}: {result.stderr}"
        assert "Traceback" not in result.stderr
        return result.stdout

    def refused(self, *args: str, **kw: Any) -> str:
        """The command fails with exit status 1 and one ``error:`` line, never a traceback."""
        result = self(*args, **kw)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0]

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "zkop.cli.main", *args, "--kubeconfig", self.kubeconfig],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )


@pytest.fixture
def zkop(cp: ControlPlane, tmp_path: Path) -> Zkop:
    return Zkop(cp, tmp_path / "state")


def kget(cp: ControlPlane, *args: str) -> Any:
    return cp.kubectl_json("get", *args)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def kubeconfig_with_token(cp: ControlPlane, path: Path, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": "limited", "user": {"token": token}}],
        "contexts": [{"name": "limited", "context": {"cluster": "test", "user": "limited"}}],
        "current-context": "limited",
    }
    path.write_text(json.dumps(config))
    return path


def unreachable_kubeconfig(cp: ControlPlane, path: Path) -> Path:
    """The admin's kubeconfig with the server moved to a port where nothing listens."""
    config = json.loads(cp.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    path.write_text(json.dumps(config))
    return path


# ---- kubectl writes, zkop reads; zkop writes, kubectl reads -------------------------------


def test_kubectl_apply_then_zkop_get_and_describe(cp: ControlPlane, kube_namespace: str, zkop: Zkop) -> None:
    ns = kube_namespace
    cp.kubectl("apply", "-n", ns, "-f", str(ZKC_EXAMPLE))

    table = zkop.ok("get", "zkc", "-n", ns).splitlines()
    assert table[0].split()[:4] == ["NAME", "REPLICAS", "PHASE", "LEADER"]
    assert table[1].split()[:2] == ["orders-zk", "0/3"]

    obj = json.loads(zkop.ok("get", "zkc", "orders-zk", "-n", ns, "-o", "json"))
    kubectl_obj = kget(cp, "zkc", "orders-zk", "-n", ns)
    assert obj["metadata"]["uid"] == kubectl_obj["metadata"]["uid"]
    assert obj["metadata"]["resourceVersion"] == kubectl_obj["metadata"]["resourceVersion"]
    assert obj["spec"]["replicas"] == 3 and obj["spec"]["config"]["tickTime"] == 2000
    assert "name: orders-zk" in zkop.ok("get", "zookeepercluster/orders-zk", "-n", ns, "-o", "yaml")

    # Every namespace, wide; label selectors.
    wide = [line.split() for line in zkop.ok("get", "zkc", "-A", "-o", "wide").splitlines()]
    assert wide[0][:2] == ["NAMESPACE", "NAME"] and "GENERATION/OBSERVED" in wide[0]
    assert [ns, "orders-zk"] in [row[:2] for row in wide[1:]]
    assert "orders-zk" in zkop.ok("get", "zkc", "-n", ns, "-l", "app.kubernetes.io/part-of=orders")
    nothing = zkop("get", "zkc", "-n", ns, "-l", "app.kubernetes.io/part-of=billing")
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert f"No zookeeperclusters found in namespace {ns}" in nothing.stderr

    # describe: the object and the events the kube store recorded about it.
    asyncio.run(record_events(cp, ns, "zkc", "orders-zk", [("Normal", "Created", "ensemble requested")]))
    text = zkop.ok("describe", "zkc", "orders-zk", "-n", ns)
    assert "Name:               orders-zk" in text and f"Namespace:          {ns}" in text
    assert f"UID:                {kubectl_obj['metadata']['uid']}" in text
    events = text[text.index("Events:") :]
    assert "Created" in events and "ensemble requested" in events


def test_zkop_apply_then_kubectl_get_with_printer_columns(cp: ControlPlane, kube_namespace: str, zkop: Zkop) -> None:
    ns = kube_namespace
    out = zkop.ok("apply", "-f", str(EXAMPLES), "-n", ns)
    assert sorted(out.split("\n")[:-1]) == [
        "application/counter created",
        "operatorconfig/zkop created",
        "zookeepercluster/orders-zk created",
    ]
    listed = kget(cp, "zkc,app,opconfig", "-n", ns)
    assert sorted((i["kind"], i["metadata"]["name"]) for i in listed["items"]) == [
        ("Application", "counter"),
        ("OperatorConfig", "zkop"),
        ("ZookeeperCluster", "orders-zk"),
    ]
    # Applied again (ZKOP_KUBECONFIG instead of the flag): nothing changes.
    again = zkop("apply", "-f", str(EXAMPLES), "-n", ns, kubeconfig=None, env={"ZKOP_KUBECONFIG": zkop.kubeconfig})
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("unchanged") == 3

    # kubectl shows the CRDs' printer columns.
    table = cp.kubectl("get", "zkc", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "DESIRED", "PHASE", "LEADER", "AGE"]
    assert table[1].split()[:3] == ["orders-zk", "0", "3"]
    apps = cp.kubectl("get", "app", "-n", ns).stdout.splitlines()
    assert apps[0].split()[:3] == ["NAME", "READY", "DESIRED"] and apps[1].split()[:3] == ["counter", "0", "2"]

    # An object that names another namespace than -n is refused, before anything is sent.
    other = ZKC_EXAMPLE.read_text().replace("name: orders-zk", "name: elsewhere\n  namespace: other")
    line = zkop.refused("apply", "-f", "-", "-n", ns, input=other)
    assert "names namespace other, not" in line


def test_kubeconfig_alone_does_not_switch_to_kubernetes(zkop: Zkop) -> None:
    """KUBECONFIG is set in zkop's environment: without --kubeconfig it still looks for the
    local ZooKeeper control plane (there is none in its empty state dir)."""
    line = zkop.refused("get", "zkc", kubeconfig=None)
    assert "no control plane" in line
    assert "--context needs --kubeconfig" in zkop.refused("get", "zkc", "--context", "zkop-test", kubeconfig=None)


# ---- scale -------------------------------------------------------------------------------


def test_kubectl_scale_and_zkop_scale_change_spec_replicas(cp: ControlPlane, kube_namespace: str, zkop: Zkop) -> None:
    ns = kube_namespace
    zkop.ok("apply", "-f", str(EXAMPLES), "-n", ns)

    cp.kubectl("scale", "zkc", "orders-zk", "-n", ns, "--replicas", "5")
    assert json.loads(zkop.ok("get", "zkc", "orders-zk", "-n", ns, "-o", "json"))["spec"]["replicas"] == 5

    assert zkop.ok("scale", "zkc", "orders-zk", "--replicas", "7", "-n", ns) == (
        "zookeepercluster/orders-zk scaled from 5 to 7\n"
    )
    scale = kget(cp, "zkc", "orders-zk", "-n", ns, "--subresource=scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 7
    obj = kget(cp, "zkc", "orders-zk", "-n", ns)
    assert obj["spec"]["replicas"] == 7 and obj["metadata"]["generation"] == 3

    # Applications too (KIND/NAME form); the note about autoscaling comes along.
    out = zkop.ok("scale", "app/counter", "--replicas", "4", "-n", ns)
    assert out.startswith("application/counter scaled from 2 to 4") and "autoscaling is on" in out
    assert kget(cp, "app", "counter", "-n", ns, "--subresource=scale")["spec"]["replicas"] == 4

    # Out of the kind's bounds: refused by zkop, nothing written.
    line = zkop.refused("scale", "zkc", "orders-zk", "--replicas", "12", "-n", ns)
    assert line.startswith("error: invalid --replicas 12: zookeepercluster spec.replicas allows 1 to 9")
    assert kget(cp, "zkc", "orders-zk", "-n", ns)["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert "zookeepercluster" in zkop.refused("scale", "zkc", "missing", "--replicas", "3", "-n", ns)


# ---- watch, delete with a finalizer, events -------------------------------------------------


def test_get_watch_prints_changes_from_either_client(cp: ControlPlane, kube_namespace: str, zkop: Zkop) -> None:
    ns = kube_namespace
    cp.kubectl("apply", "-n", ns, "-f", str(ZKC_EXAMPLE))
    proc = zkop.popen("get", "zkc", "-w", "-n", ns, "--max-events", "3", "--watch-seconds", "60")
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_until("the watch's first rows", lambda: len(lines) >= 2)
        assert lines[0].split()[:3] == ["EVENT", "NAME", "REPLICAS"]
        assert lines[1].split()[:3] == ["ADDED", "orders-zk", "0/3"]
        zkop.ok("scale", "zkc", "orders-zk", "--replicas", "5", "-n", ns)
        wait_until("MODIFIED", lambda: len(lines) >= 3)
        assert lines[2].split()[:3] == ["MODIFIED", "orders-zk", "0/5"]
        cp.kubectl("delete", "zkc", "orders-zk", "-n", ns)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    assert proc.returncode == 0, err
    assert lines[3].split()[:2] == ["DELETED", "orders-zk"]
    assert "Traceback" not in err


def test_delete_with_a_finalizer_is_terminating(cp: ControlPlane, kube_namespace: str, zkop: Zkop) -> None:
    ns = kube_namespace
    doc = ZKC_EXAMPLE.read_text().replace("  name: orders-zk\n", "  name: orders-zk\n  finalizers: [zkop.io/test]\n")
    cp.kubectl("apply", "-n", ns, "-f", "-", input=doc)

    assert zkop.ok("delete", "zkc", "orders-zk", "-n", ns) == (
        "zookeepercluster/orders-zk terminating (finalizers: zkop.io/test)\n"
    )
    assert kget(cp, "zkc", "orders-zk", "-n", ns)["metadata"]["deletionTimestamp"]
    assert "(terminating)" in zkop.ok("describe", "zkc", "orders-zk", "-n", ns)

    cp.kubectl("patch", "zkc", "orders-zk", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_until("the object to go", lambda: zkop("get", "zkc", "orders-zk", "-n", ns).returncode == 1)
    assert f"zookeepercluster {ns}/orders-zk not found" in zkop.refused("get", "zkc", "orders-zk", "-n", ns)
    assert "not found" in zkop.refused("delete", "zkc", "orders-zk", "-n", ns)
    zkop.ok("delete", "zkc", "orders-zk", "-n", ns, "--ignore-not-found")

    # delete -f: the objects a file names, in -n.
    zkop.ok("apply", "-f", str(ZKC_EXAMPLE), "-n", ns)
    assert zkop.ok("delete", "-f", str(ZKC_EXAMPLE), "-n", ns) == "zookeepercluster/orders-zk deleted\n"
    assert kget(cp, "zkc", "-n", ns)["items"] == []


async def record_events(cp: ControlPlane, ns: str, kind: str, name: str, events: list[tuple[str, str, str]]) -> None:
    api = await api_client(cp.kubeconfig)
    try:
        store = KubeStore(api, source="test")
        obj = await store.get(kind, ns, name)
        for type_, reason, message in events:
            await store.record_event(obj, type_, reason, message)
    finally:
        await api.close()


def test_events_lists_what_the_kube_store_recorded(cp: ControlPlane, kube_namespace: str, zkop: Zkop) -> None:
    ns = kube_namespace
    zkop.ok("apply", "-f", str(EXAMPLES), "-n", ns)
    asyncio.run(
        record_events(
            cp,
            ns,
            "app",
            "counter",
            [
                ("Normal", "Scaled", "scaled to 3"),
                ("Normal", "Scaled", "scaled to 3"),  # a repeat: its series count
                ("Warning", "Crashed", "instance counter-0 exited 1"),
            ],
        )
    )
    asyncio.run(record_events(cp, ns, "zkc", "orders-zk", [("Normal", "MemberAdded", "member 1 joined")]))

    # They are events.k8s.io/v1 Events, which kubectl shows too.
    kinds = {e["regarding"]["kind"] for e in kget(cp, "events.v1.events.k8s.io", "-n", ns)["items"]}
    assert kinds == {"Application", "ZookeeperCluster"}

    rows = [line.split() for line in zkop.ok("events", "-n", ns).splitlines()]
    assert rows[0] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"]
    by_reason = {row[2]: row for row in rows[1:]}
    assert by_reason["Scaled"][1:5] == ["Normal", "Scaled", "application/counter", "2"]
    assert by_reason["Crashed"][1:4] == ["Warning", "Crashed", "application/counter"]
    assert by_reason["MemberAdded"][3] == "zookeepercluster/orders-zk"

    only = json.loads(zkop.ok("events", "-n", ns, "--for", "app/counter", "-o", "json"))
    assert sorted(e["reason"] for e in only["items"]) == ["Crashed", "Scaled"]
    assert all(e["involvedObject"]["name"] == "counter" for e in only["items"])
    everywhere = json.loads(zkop.ok("events", "-A", "-o", "json"))
    assert {e["involvedObject"]["namespace"] for e in everywhere["items"]} >= {ns}


# ---- refusals: one line, before anything is sent -------------------------------------------


def test_invalid_input_is_refused_before_the_api_server(
    cp: ControlPlane, kube_namespace: str, zkop: Zkop, tmp_path: Path
) -> None:
    ns = kube_namespace
    bad = ZKC_EXAMPLE.read_text().replace("replicas: 3 ", "replicas: 12")
    dead = str(unreachable_kubeconfig(cp, tmp_path / "dead.kubeconfig"))
    for kubeconfig in ("admin", dead):  # the same refusal whether or not the API server answers
        result = zkop("apply", "-f", "-", "-n", ns, input=bad, kubeconfig=kubeconfig)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "spec.replicas: 12 is out of range; allowed: 1 to 9" in result.stderr
        assert result.stderr.strip().endswith("nothing was applied")
        for args in (
            ("get", "zkc", "Not_A_Name", "-n", ns),
            ("get", "zkc", "-n", ns, "-l", "tier in gold"),
            ("get", "nosuchkind"),
            ("describe", "zkc", "-n", ns),
            ("delete", "zkc", "a", "-n", "Bad Namespace"),
            ("scale", "zkc", "a", "--replicas", "0", "-n", ns),
            ("scale", "opconfig", "a", "--replicas", "1", "-n", ns),
            ("events", "-n", ns, "--for", "zkc"),
        ):
            zkop.refused(*args, kubeconfig=kubeconfig)
    assert kget(cp, "zkc", "-n", ns)["items"] == []


def test_connection_problems_are_one_line(cp: ControlPlane, zkop: Zkop, tmp_path: Path) -> None:
    dead = str(unreachable_kubeconfig(cp, tmp_path / "dead.kubeconfig"))
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:1" in zkop.refused(
        "get", "zkc", kubeconfig=dead
    )
    missing = str(tmp_path / "missing.kubeconfig")
    assert f"no kubeconfig at {missing}" in zkop.refused("get", "zkc", kubeconfig=missing)
    garbage = tmp_path / "garbage.kubeconfig"
    garbage.write_text("- not\n- a kubeconfig\n")
    assert "kubeconfig" in zkop.refused("get", "zkc", kubeconfig=str(garbage))
    assert "nope" in zkop.refused("get", "zkc", "--context", "nope")
    assert "not running in a Pod" in zkop.refused("get", "zkc", kubeconfig="in-cluster")
    assert "give --zk or --kubeconfig, not both" in zkop.refused("get", "zkc", "--zk", "127.0.0.1:2181")
    # A token the API server does not know.
    stranger = kubeconfig_with_token(cp, tmp_path / "stranger.kubeconfig", "not-a-token")
    assert "unauthorized" in zkop.refused("get", "zkc", kubeconfig=str(stranger))


def test_rbac_limited_token_reads_but_cannot_write(
    cp: ControlPlane, kube_namespace: str, zkop: Zkop, tmp_path: Path
) -> None:
    ns = kube_namespace
    zkop.ok("apply", "-f", str(ZKC_EXAMPLE), "-n", ns)
    cp.kubectl("create", "serviceaccount", "reader", "-n", ns)
    cp.kubectl("create", "role", "zkc-reader", "-n", ns, "--verb=get,list", "--resource=zookeeperclusters.zkop.io")
    cp.kubectl("create", "rolebinding", "zkc-reader", "-n", ns, "--role=zkc-reader", f"--serviceaccount={ns}:reader")
    token = cp.kubectl("create", "token", "reader", "-n", ns).stdout.strip()
    limited = str(kubeconfig_with_token(cp, tmp_path / "reader.kubeconfig", token))

    assert zkop.ok("get", "zkc", "-n", ns, kubeconfig=limited).splitlines()[1].split()[0] == "orders-zk"
    # describe shows the object; the events it may not list are left out with a warning.
    described = zkop("describe", "zkc", "orders-zk", "-n", ns, kubeconfig=limited)
    assert described.returncode == 0 and "Name:               orders-zk" in described.stdout
    assert "warning: events not shown: forbidden" in described.stderr

    user = f'User "system:serviceaccount:{ns}:reader"'
    changed = ZKC_EXAMPLE.read_text().replace("replicas: 3 ", "replicas: 5 ")
    line = zkop.refused("apply", "-f", "-", "-n", ns, input=changed, kubeconfig=limited)
    assert line == (
        f'error: forbidden: {user} cannot update resource "zookeeperclusters" in API group "zkop.io" '
        f'in the namespace "{ns}" (check the ServiceAccount\'s RBAC)'
    )
    created = ZKC_EXAMPLE.read_text().replace("name: orders-zk", "name: another")
    assert "cannot create resource" in zkop.refused("apply", "-f", "-", "-n", ns, input=created, kubeconfig=limited)
    assert "cannot list resource" in zkop.refused("get", "app", "-n", ns, kubeconfig=limited)
    assert "forbidden" in zkop.refused("scale", "zkc", "orders-zk", "--replicas", "5", "-n", ns, kubeconfig=limited)
    assert "forbidden" in zkop.refused("delete", "zkc", "orders-zk", "-n", ns, kubeconfig=limited)
    assert kget(cp, "zkc", "orders-zk", "-n", ns)["spec"]["replicas"] == 3
    assert [i["metadata"]["name"] for i in kget(cp, "zkc", "-n", ns)["items"]] == ["orders-zk"]


def test_missing_crds_give_the_install_hint(cp: ControlPlane, zkop: Zkop) -> None:
    """Last in this module: it takes one CRD away and puts it back."""
    cp.kubectl("delete", "crd", "operatorconfigs.zkop.io", "--timeout=60s")
    try:
        wait_until("discovery without operatorconfigs", lambda: zkop("get", "zkc", "-A").returncode == 1)
        line = zkop.refused("get", "zkc", "-A")
        assert "zkop's CustomResourceDefinitions are not all installed" in line
        assert "(missing: operatorconfigs)" in line and "(zkop kube crds | kubectl apply -f -)" in line
    finally:
        install_crds(cp)
    wait_until("the CRDs to be served again", lambda: zkop("get", "opconfig", "-A").returncode == 0)
