"""zkop apply/get/describe/delete/events/explain against a real ZooKeeper.

Most commands run in-process (typer's CliRunner, fast); the watch and the console entry
point run as subprocesses. Each test has its own root znode and credentials.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.security import make_digest_acl
from typer.testing import CliRunner, Result

from zkop.api import KINDS, Condition, Resource
from zkop.api.meta import dns_label_problem
from zkop.cli.input import Source
from zkop.cli.main import app
from zkop.cli.resources import apply_sources
from zkop.client.connect import Connection
from zkop.errors import ZkopError
from zkop.store import Store
from zkop.testing import Ensemble

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T = TypeVar("T")

ZKC = """\
apiVersion: zkop.io/v1
kind: ZookeeperCluster
metadata:
  name: {name}
  namespace: {ns}
  labels: {{tier: {tier}}}
spec:
  replicas: {replicas}
"""


def zkc_yaml(name: str = "orders", ns: str = "default", replicas: int = 3, tier: str = "gold") -> str:
    return ZKC.format(name=name, ns=ns, replicas=replicas, tier=tier)


class Cli:
    """Runs ``zkop`` in-process against one test's root, and looks at what is stored."""

    def __init__(self, conn: Connection, state_dir: Path) -> None:
        self.conn = conn
        self.state_dir = state_dir
        self.kazoo = KazooClient(conn.hosts, auth_data=conn.auth_data)
        self.kazoo.start(timeout=15)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "ZKOP_ZK": self.conn.hosts,
            "ZKOP_AUTH": f"{self.conn.user}:{self.conn.password}",
            "ZKOP_ROOT": self.conn.root,
            "ZKOP_STATE_DIR": str(self.state_dir),
            **extra,
        }

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(app, list(args), input=input, env=self.env(**(env or {})))

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def stored(self) -> dict[str, bytes]:
        """Every object znode under the root: ``plural/namespace/name`` -> data."""
        base = f"{self.conn.root}/resources"
        out: dict[str, bytes] = {}
        try:
            plurals = self.kazoo.get_children(base)
        except NoNodeError:
            return out
        for plural in plurals:
            for ns in self.kazoo.get_children(f"{base}/{plural}"):
                for name in self.kazoo.get_children(f"{base}/{plural}/{ns}"):
                    out[f"{plural}/{ns}/{name}"] = self.kazoo.get(f"{base}/{plural}/{ns}/{name}")[0]
        return out

    def with_store(self, fn: Callable[[Store], Awaitable[T]]) -> T:
        async def main() -> T:
            client = self.conn.client()
            await client.start()
            try:
                return await fn(Store(client, root=self.conn.root, acl=self.conn.acl()))
            finally:
                await client.stop()

        return asyncio.run(main())

    def close(self) -> None:
        self.kazoo.stop()
        self.kazoo.close()


@pytest.fixture
def cli(connection: Connection, tmp_path: Path) -> Iterator[Cli]:
    c = Cli(connection, tmp_path)
    try:
        yield c
    finally:
        c.close()


def assert_refused(result: Result, *needles: str) -> None:
    """One clear message on stderr, non-zero exit, no traceback."""
    assert result.exit_code != 0, result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert "error:" in result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- apply ---------------------------------------------------------------------------


def test_apply_created_unchanged_configured(cli: Cli, tmp_path: Path) -> None:
    first = cli.ok("apply", "-f", str(EXAMPLES))
    assert first.stdout.splitlines() == [
        "application/counter created",
        "operatorconfig/zkop created",
        "zookeepercluster/orders-zk created",
    ]
    assert set(cli.stored()) == {
        "applications/default/counter",
        "operatorconfigs/default/zkop",
        "zookeeperclusters/default/orders-zk",
    }
    again = cli.ok("apply", "-f", str(EXAMPLES / "zookeepercluster.yaml"), "-f", str(EXAMPLES / "application.yaml"))
    assert again.stdout.splitlines() == ["zookeepercluster/orders-zk unchanged", "application/counter unchanged"]

    # From stdin, several documents; an even member count is allowed, with a warning.
    changed = (EXAMPLES / "zookeepercluster.yaml").read_text().replace("replicas: 3 ", "replicas: 4 ")
    stream = changed + "---\n" + zkc_yaml("extra", ns="other")
    result = cli.ok("apply", "-f", "-", input=stream)
    assert result.stdout.splitlines() == ["zookeepercluster/orders-zk configured", "zookeepercluster/extra created"]
    assert "warning: zookeepercluster/orders-zk: spec.replicas: 4 members" in result.stderr
    stored = json.loads(cli.stored()["zookeeperclusters/default/orders-zk"])
    assert stored["spec"]["replicas"] == 4 and stored["metadata"]["generation"] == 2

    # Label-only change is "configured" too, and does not bump the generation.
    (tmp_path / "a.yml").write_text(zkc_yaml("extra", ns="other", tier="silver"))
    assert cli.ok("apply", "-f", str(tmp_path)).stdout == "zookeepercluster/extra configured\n"
    stored = json.loads(cli.stored()["zookeeperclusters/other/extra"])
    assert stored["metadata"]["labels"] == {"tier": "silver"} and stored["metadata"]["generation"] == 1


# ---- get -----------------------------------------------------------------------------


def _set_status(cli: Cli, kind: str, ns: str, name: str, **status: Any) -> None:
    async def go(store: Store) -> None:
        obj = await store.get(kind, ns, name)
        await store.update_status(obj.model_copy(update={"status": obj.status.model_copy(update=status)}))

    cli.with_store(go)


def test_get_tables_for_each_kind(cli: Cli) -> None:
    cli.ok("apply", "-f", str(EXAMPLES))
    _set_status(
        cli,
        "zkc",
        "default",
        "orders-zk",
        phase="Running",
        ready_replicas=3,
        leader=2,
        connection_string="127.0.0.1:2181,127.0.0.1:2182",
        config_version="10000000a",
        observed_generation=1,
    )
    _set_status(cli, "app", "default", "counter", ready_replicas=2, updated_replicas=2, endpoints=["a:1", "b:2"])

    lines = cli.ok("get", "zkc").stdout.splitlines()
    assert lines[0].split() == ["NAME", "REPLICAS", "PHASE", "LEADER", "AGE"]
    assert lines[1].split()[:4] == ["orders-zk", "3/3", "Running", "2"]

    wide = cli.ok("get", "zookeeperclusters", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME",
        "REPLICAS",
        "PHASE",
        "LEADER",
        "AGE",
        "CONNECTION",
        "CONFIG-VERSION",
        "GENERATION/OBSERVED",
    ]
    assert wide[1].split()[5:] == ["127.0.0.1:2181,127.0.0.1:2182", "10000000a", "1/1"]

    app_lines = cli.ok("get", "app").stdout.splitlines()
    assert app_lines[0].split() == ["NAME", "READY", "DESIRED", "UPDATED", "ENDPOINTS", "AGE"]
    assert app_lines[1].split()[:5] == ["counter", "2", "2", "2", "2"]
    app_wide = cli.ok("get", "Application", "-o", "wide").stdout.splitlines()
    assert app_wide[0].split()[-2:] == ["METRIC", "LAST-SCALE"]
    assert app_wide[1].split()[-2:] == ["<unknown>/10", "<none>"]

    op = cli.ok("get", "opconfig").stdout.splitlines()
    assert op[0].split() == ["NAME", "TARGET-NAMESPACE", "LEADER-ELECT", "REPLICAS", "AGE"]
    assert op[1].split()[:4] == ["zkop", "<all>", "true", "2"]

    one = cli.ok("get", "zkc/orders-zk").stdout.splitlines()
    assert len(one) == 2 and one[1].startswith("orders-zk")


def test_get_yaml_json_all_namespaces_and_selector(cli: Cli) -> None:
    cli.ok(
        "apply",
        "-f",
        "-",
        input="---\n".join(
            [zkc_yaml("a", tier="gold"), zkc_yaml("b", tier="silver"), zkc_yaml("c", ns="other", tier="gold")]
        ),
    )
    single = yaml.safe_load(cli.ok("get", "zkc", "a", "-o", "yaml").stdout)
    assert single["kind"] == "ZookeeperCluster" and single["metadata"]["name"] == "a"
    assert single["metadata"]["resourceVersion"] and single["spec"]["replicas"] == 3

    listed = json.loads(cli.ok("get", "zkc", "-o", "json").stdout)
    assert listed["apiVersion"] == "v1" and listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    listed_yaml = yaml.safe_load(cli.ok("get", "zkc", "-A", "-o", "yaml").stdout)
    assert listed_yaml["kind"] == "List"
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed_yaml["items"]] == [
        ("default", "a"),
        ("default", "b"),
        ("other", "c"),
    ]
    assert json.loads(cli.ok("get", "zkc", "a", "-o", "json").stdout)["metadata"]["name"] == "a"

    every = cli.ok("get", "zkc", "--all-namespaces").stdout.splitlines()
    assert every[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in every[1:]] == [["default", "a"], ["default", "b"], ["other", "c"]]
    assert [line.split()[0] for line in cli.ok("get", "zkc", "-n", "other").stdout.splitlines()[1:]] == ["c"]

    gold = cli.ok("get", "zkc", "-A", "-l", "tier=gold").stdout.splitlines()
    assert [line.split()[1] for line in gold[1:]] == ["a", "c"]
    not_gold = cli.ok("get", "zkc", "-l", "tier notin (gold)", "-o", "json").stdout
    assert [i["metadata"]["name"] for i in json.loads(not_gold)["items"]] == ["b"]

    empty = cli.ok("get", "zkc", "-n", "nowhere")
    assert empty.stdout == "" and "No zookeeperclusters found in namespace nowhere" in empty.stderr
    assert json.loads(cli.ok("get", "app", "-o", "json").stdout)["items"] == []


# ---- describe, delete, events, explain -----------------------------------------------


def test_describe_shows_spec_status_conditions_events(cli: Cli) -> None:
    cli.ok("apply", "-f", str(EXAMPLES / "zookeepercluster.yaml"))
    ready = Condition(type="Ready", status="True", reason="QuorumServing", message="3 of 3 members serve")
    _set_status(cli, "zkc", "default", "orders-zk", phase="Running", ready_replicas=3, conditions=[ready])

    async def events(store: Store) -> None:
        obj = await store.get("zkc", "default", "orders-zk")
        await store.record_event(obj, "Normal", "Created", "created member 1")
        await asyncio.sleep(0.01)
        await store.record_event(obj, "Warning", "MemberDown", "member 2 does not answer")

    cli.with_store(events)
    out = cli.ok("describe", "zkc", "orders-zk").stdout
    assert "Name:               orders-zk" in out and "Namespace:          default" in out
    assert "Labels:             app.kubernetes.io/part-of=orders" in out
    spec = out[out.index("Spec:\n") : out.index("Status:\n")]
    assert "  replicas: 3" in spec and "    tickTime: 2000" in spec
    assert "  phase: Running" in out[out.index("Status:\n") : out.index("Conditions:\n")]
    conditions = out[out.index("Conditions:\n") : out.index("Events:\n")].splitlines()
    assert conditions[1].split() == ["TYPE", "STATUS", "REASON", "MESSAGE", "LAST-TRANSITION"]
    assert conditions[2].split()[:3] == ["Ready", "True", "QuorumServing"]
    events_part = out[out.index("Events:\n") :].splitlines()
    assert events_part[1].split() == ["LAST", "SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"]
    assert "Created" in events_part[2] and "MemberDown" in events_part[3]  # newest last

    assert_refused(cli("describe", "zkc", "missing"), "not found")


def test_delete_by_name_by_file_and_with_finalizers(cli: Cli, tmp_path: Path) -> None:
    cli.ok("apply", "-f", "-", input=zkc_yaml("a") + "---\n" + zkc_yaml("b") + "---\n" + zkc_yaml("c"))
    assert cli.ok("delete", "zkc", "a").stdout == "zookeepercluster/a deleted\n"
    assert_refused(cli("delete", "zkc", "a"), "zookeepercluster/a not found")
    assert cli.ok("delete", "zkc", "a", "--ignore-not-found").stdout == ""

    path = tmp_path / "b.yaml"
    path.write_text(zkc_yaml("b"))
    assert cli.ok("delete", "-f", str(path)).stdout == "zookeepercluster/b deleted\n"

    async def add_finalizer(store: Store) -> None:
        obj = await store.get("zkc", "default", "c")
        meta = obj.metadata.model_copy(update={"finalizers": ["zkop.io/members"]})
        await store.update(obj.model_copy(update={"metadata": meta}))

    cli.with_store(add_finalizer)
    result = cli.ok("delete", "zookeepercluster", "c")
    assert result.stdout == "zookeepercluster/c terminating (finalizers: zkop.io/members)\n"
    assert "zookeeperclusters/default/c" in cli.stored()
    assert "deletionTimestamp" in json.loads(cli.stored()["zookeeperclusters/default/c"])["metadata"]


def test_events_tables(cli: Cli) -> None:
    cli.ok("apply", "-f", "-", input=zkc_yaml("a") + "---\n" + zkc_yaml("b", ns="other"))

    async def record(store: Store) -> None:
        for ns, name in (("default", "a"), ("other", "b")):
            obj = await store.get("zkc", ns, name)
            await store.record_event(obj, "Normal", "Scaled", f"scaled {name} to 3")
            await store.record_event(obj, "Normal", "Scaled", f"scaled {name} to 3")

    cli.with_store(record)
    lines = cli.ok("events").stdout.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"]
    assert lines[1].split()[1:5] == ["Normal", "Scaled", "zookeepercluster/a", "2"]
    assert len(lines) == 2
    every = cli.ok("events", "-A").stdout.splitlines()
    assert every[0].split()[0] == "NAMESPACE"
    assert sorted(line.split()[0] for line in every[1:]) == ["default", "other"]
    data = json.loads(cli.ok("events", "-n", "other", "-o", "json").stdout)
    assert [e["involvedObject"]["name"] for e in data["items"]] == ["b"]
    assert "No events found in namespace quiet" in cli.ok("events", "-n", "quiet").stderr


def test_explain(cli: Cli) -> None:
    out = cli.ok("explain", "zookeepercluster.spec.config").stdout
    assert out.startswith("KIND:     ZookeeperCluster") and "FIELD:    spec.config" in out and "tickTime" in out
    assert "FIELDS:" in cli.ok("explain", "app").stdout
    assert_refused(cli("explain", "zkc.spec.replicaz"), "replicaz")
    assert_refused(cli("explain", "widget"), "known kinds")


# ---- bad input -----------------------------------------------------------------------


BAD_DOCUMENTS = {
    "invalid-yaml": ("apiVersion: zkop.io/v1\nkind: ZookeeperCluster\nmetadata: {name: a\n", ["invalid YAML", "line"]),
    "unknown-kind": (
        "apiVersion: zkop.io/v1\nkind: Zookeeper\nmetadata: {name: a}\n",
        ["kind", "not a known kind", "ZookeeperCluster, Application, OperatorConfig"],
    ),
    "unknown-field": (
        zkc_yaml("a") + "  replicaz: 3\n",
        ["spec.replicaz: unknown field", "allowed fields"],
    ),
    "mistyped-field": (zkc_yaml("a").replace("replicas: 3", 'replicas: "3"'), ["spec.replicas", "expected an integer"]),
    "out-of-range": (zkc_yaml("a", replicas=12), ["spec.replicas: 12 is out of range; allowed: 1 to 9"]),
    "invalid-name": (zkc_yaml("Orders_ZK"), ["metadata.name", "DNS-1123"]),
    "bad-api-version": (zkc_yaml("a").replace("zkop.io/v1", "zkop.io/v2"), ["apiVersion", "zkop.io/v1"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_apply_refuses_bad_documents_and_writes_nothing(cli: Cli, tmp_path: Path, case: str) -> None:
    text, needles = BAD_DOCUMENTS[case]
    good = tmp_path / "a-good.yaml"
    good.write_text(zkc_yaml("good"))
    bad = tmp_path / "b-bad.yaml"
    bad.write_text(zkc_yaml("also-good") + "---\n" + text)
    result = cli("apply", "-f", str(tmp_path))
    assert_refused(result, str(bad), "nothing was applied", *needles)
    if case != "invalid-yaml":
        assert "document 2" in result.stderr
    assert result.stdout == ""
    assert cli.stored() == {}


def test_apply_reports_every_problem_of_every_file(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(zkc_yaml("a", replicas=0) + "---\n" + zkc_yaml("B"))
    (tmp_path / "two.yaml").write_text("kind: [\n")
    result = cli("apply", "-f", str(tmp_path / "one.yaml"), "-f", str(tmp_path / "two.yaml"))
    assert_refused(result, "document 1", "document 2", "spec.replicas", "metadata.name", "two.yaml, line 2")
    assert cli.stored() == {}


def test_apply_refuses_immutable_change_stale_version_and_too_large(cli: Cli) -> None:
    cli.ok("apply", "-f", "-", input=zkc_yaml("a"))
    before = cli.stored()
    current = yaml.safe_load(cli.ok("get", "zkc", "a", "-o", "yaml").stdout)

    # metadata.uid is immutable; the new object in the same stream is not created either.
    moved = dict(current, metadata={**current["metadata"], "uid": "another-uid"})
    moved.pop("status")
    result = cli("apply", "-f", "-", input=yaml.safe_dump(moved) + "---\n" + zkc_yaml("new"))
    assert_refused(result, "metadata.uid", "immutable", "nothing was applied")
    assert cli.stored() == before

    # An apply that names the resourceVersion it read is a compare-and-set on it.
    based = dict(current)
    based.pop("status")
    based["spec"] = {"replicas": 5}
    cli.ok("apply", "-f", "-", input=yaml.safe_dump(based))
    changed = cli.stored()
    stale = dict(based, spec={"replicas": 7})
    result = cli("apply", "-f", "-", input=zkc_yaml("new") + "---\n" + yaml.safe_dump(stale))
    assert_refused(result, "stale", "nothing was applied")
    assert cli.stored() == changed
    assert json.loads(changed["zookeeperclusters/default/a"])["spec"]["replicas"] == 5

    huge = zkc_yaml("big").replace("labels:", f"annotations: {{note: {'x' * 300_000}}}\n  labels:")
    assert_refused(cli("apply", "-f", "-", input=zkc_yaml("new") + "---\n" + huge), "bytes", "at most")
    assert cli.stored() == changed


def test_usage_errors_are_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    assert_refused(cli("get", "widgets"), "unknown kind 'widgets'", "ZookeeperCluster (zookeeperclusters, zkc)")
    assert_refused(cli("get", "zkc", "Not_A_Name"), "invalid name 'Not_A_Name'")
    assert_refused(cli("get", "zkc", "-n", "Bad NS"), "invalid namespace")
    assert_refused(cli("get", "zkc", "-l", "tier in (gold"), "invalid label selector")
    assert_refused(cli("get", "zkc", "a", "-A"), "across all namespaces")
    assert_refused(cli("apply", "-f", str(tmp_path / "missing.yaml")), "no such file")
    assert_refused(cli("apply", "-f", str(tmp_path)), "no *.yaml or *.yml files")
    assert_refused(cli("apply"), "no input")
    assert_refused(cli("apply", "-f", "-", input="# only a comment\n"), "no objects")
    assert_refused(cli("delete", "zkc"), "give its name")
    assert_refused(cli("get", "zkc", env={"ZKOP_AUTH": "nocolon"}), "ZKOP_AUTH must look like user:password")
    assert_refused(cli("get", "zkc", env={"ZKOP_ZK": "localhost:notaport"}), "invalid ZooKeeper hosts")
    assert cli.stored() == {}


def test_wrong_credentials_are_refused_clearly(cli: Cli) -> None:
    cli.ok("apply", "-f", "-", input=zkc_yaml("a"))
    before = cli.stored()
    wrong = {"ZKOP_AUTH": "zkop:wrong-password"}
    assert_refused(cli("get", "zkc", "a", env=wrong), "not allowed", "ZKOP_AUTH")
    assert_refused(cli("get", "zkc", env=wrong), "not allowed")
    assert_refused(cli("apply", "-f", "-", input=zkc_yaml("a", replicas=5), env=wrong), "not allowed")
    assert cli.stored() == before


def test_unreachable_control_plane_fails_within_the_timeout(cli: Cli) -> None:
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = cli("apply", "-f", "-", "--timeout", "1.5", input=zkc_yaml("a"), env={"ZKOP_ZK": dead})
    assert time.monotonic() - started < 8
    assert_refused(result, f"cannot reach ZooKeeper at {dead}")
    assert_refused(cli("get", "zkc", "--timeout", "1", "--zk", dead), "cannot reach ZooKeeper")
    assert cli.stored() == {}


def test_no_control_plane_configured(cli: Cli, tmp_path: Path) -> None:
    env = {k: v for k, v in cli.env().items() if k != "ZKOP_ZK"}
    result = CliRunner().invoke(app, ["get", "zkc"], env={**env, "ZKOP_ZK": ""})
    assert_refused(result, "no control plane")


# ---- corrupt znodes ------------------------------------------------------------------


def test_corrupt_znodes_are_reported_and_skipped(cli: Cli) -> None:
    cli.ok("apply", "-f", "-", input=zkc_yaml("good"))
    acl = [make_digest_acl(cli.conn.user, cli.conn.password, all=True)]
    base = f"{cli.conn.root}/resources/zookeeperclusters/default"
    cli.kazoo.create(f"{base}/broken", b"{not json", acl=acl)
    cli.kazoo.create(f"{base}/wrongkind", json.dumps({"kind": "Application"}).encode(), acl=acl)

    one = cli("get", "zkc", "broken")
    assert_refused(one, "corrupt object", "broken", "not valid JSON")
    listed = cli.ok("get", "zkc")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["good"]
    warnings = [line for line in listed.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "broken" in warnings[0] + warnings[1] and "wrongkind" in warnings[0] + warnings[1]
    assert [i["metadata"]["name"] for i in json.loads(cli.ok("get", "zkc", "-o", "json").stdout)["items"]] == ["good"]
    assert_refused(cli("describe", "zkc", "broken"), "corrupt object")

    # Applying over it is refused (nothing written); delete needs --force.
    assert_refused(cli("apply", "-f", "-", input=zkc_yaml("broken") + "---\n" + zkc_yaml("new")), "corrupt")
    assert "zookeeperclusters/default/new" not in cli.stored()
    assert_refused(cli("delete", "zkc", "broken"), "--force")
    forced = cli.ok("delete", "zkc", "broken", "--force")
    assert forced.stdout == "zookeepercluster/broken deleted (corrupt znodes removed)\n"
    assert set(cli.stored()) == {"zookeeperclusters/default/good", "zookeeperclusters/default/wrongkind"}


# ---- subprocesses: watch and the console entry point ----------------------------------


def _subprocess(cli: Cli, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zkop.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **cli.env()),
        **kwargs,
    )


def test_get_watch_prints_rows_as_events_arrive(cli: Cli) -> None:
    cli.ok("apply", "-f", "-", input=zkc_yaml("a") + "---\n" + zkc_yaml("other", tier="silver"))
    proc = _subprocess(cli, "get", "zkc", "-w", "-l", "tier=gold", "--max-events", "4", "--watch-seconds", "60")
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.split()[:3] == ["EVENT", "NAME", "REPLICAS"]
        assert proc.stdout.readline().split()[:3] == ["ADDED", "a", "0/3"]
        cli.ok("apply", "-f", "-", input=zkc_yaml("a", replicas=5))
        assert proc.stdout.readline().split()[:3] == ["MODIFIED", "a", "0/5"]
        cli.ok("apply", "-f", "-", input=zkc_yaml("b"))
        cli.ok("delete", "zkc", "other")  # not selected: not shown
        cli.ok("delete", "zkc", "a")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    rest = [line.split()[:2] for line in out.splitlines()]
    assert sorted(rest) == [["ADDED", "b"], ["DELETED", "a"]]
    assert "Traceback" not in err


def test_watch_is_bounded_and_json(cli: Cli) -> None:
    cli.ok("apply", "-f", "-", input=zkc_yaml("a"))
    proc = _subprocess(cli, "get", "zkc", "a", "-w", "-o", "json", "--watch-seconds", "2")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["metadata"]["name"] == "a"


def test_watch_gives_up_when_the_control_plane_goes_away(zk_single: Ensemble, tmp_path: Path) -> None:
    conn = Connection(hosts=zk_single.connection_string, user="zkop", password="pw", root="/gone")
    cli = Cli(conn, tmp_path)
    cli.ok("apply", "-f", "-", input=zkc_yaml("a"))
    proc = _subprocess(cli, "get", "zkc", "-w", "--timeout", "2", "--watch-seconds", "120")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("EVENT")
        assert proc.stdout.readline().split()[:2] == ["ADDED", "a"]
        zk_single.members[0].kill()
        started = time.monotonic()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cli.close()
    assert time.monotonic() - started < 20
    assert proc.returncode == 1
    assert "error: lost the connection to ZooKeeper" in err and "Traceback" not in out + err


def test_console_entry_point_never_shows_a_traceback(cli: Cli) -> None:
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = _subprocess(cli, "get", "zkc", "--zk", dead, "--timeout", "1")
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 15
    assert proc.returncode == 1
    assert err.strip().startswith("error: cannot reach ZooKeeper") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err
    bad = _subprocess(cli, "apply", "-f", "-", stdin=subprocess.PIPE)
    out, err = bad.communicate(zkc_yaml("a", replicas=100), timeout=60)
    assert bad.returncode == 1 and "out of range" in err and "Traceback" not in err


# ---- property: invalid input never reaches the store ---------------------------------

VALID_DOC: dict[str, Any] = {
    "apiVersion": "zkop.io/v1",
    "kind": "ZookeeperCluster",
    "metadata": {"name": "ok"},
    "spec": {"replicas": 3, "config": {"tickTime": 2000}},
}
ALLOWED_TOP = {"apiVersion", "kind", "metadata", "spec", "status"}
ALLOWED_SPEC = {"replicas", "zookeeperHome", "image", "config", "jvm", "resources", "storage", "paused"}

not_an_int = st.one_of(
    st.text(max_size=4), st.booleans(), st.floats(allow_nan=False), st.none(), st.lists(st.integers())
)
bad_names = st.one_of(st.text(max_size=70).filter(lambda s: dns_label_problem(s) is not None), st.integers())


def _mutated(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(VALID_DOC))
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return doc


def _without(key: str) -> dict[str, Any]:
    doc = json.loads(json.dumps(VALID_DOC))
    doc.pop(key)
    return doc


invalid_documents = st.one_of(
    st.builds(
        _mutated, st.just(("spec", "replicas")), st.one_of(st.integers(max_value=0), st.integers(10), not_an_int)
    ),
    st.builds(_mutated, st.just(("spec", "config", "tickTime")), st.one_of(st.integers(max_value=99), not_an_int)),
    st.builds(_mutated, st.just(("metadata", "name")), bad_names),
    st.builds(_mutated, st.just(("metadata", "namespace")), bad_names),
    st.builds(_mutated, st.just(("kind",)), st.text(max_size=20).filter(lambda k: k not in KINDS)),
    st.builds(_mutated, st.just(("apiVersion",)), st.text(max_size=20).filter(lambda v: v != "zkop.io/v1")),
    st.builds(
        _mutated,
        st.tuples(st.just("spec"), st.from_regex(r"\A[a-z][a-zA-Z]{0,12}\Z").filter(lambda k: k not in ALLOWED_SPEC)),
        st.integers(),
    ),
    st.builds(
        _mutated,
        st.from_regex(r"\A[a-z][a-zA-Z]{0,12}\Z").filter(lambda k: k not in ALLOWED_TOP).map(lambda k: (k,)),
        st.text(max_size=5),
    ),
    st.builds(_without, st.sampled_from(["metadata", "kind", "apiVersion"])),
    st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(min_size=1, max_size=10)),
)


@st.composite
def invalid_streams(draw: st.DrawFn) -> str:
    """A YAML stream with valid documents around one invalid document (or broken text)."""
    before = draw(st.lists(st.sampled_from(["x", "y"]), max_size=2))
    after = draw(st.lists(st.sampled_from(["u", "v"]), max_size=2))
    valid = [_mutated(("metadata", "name"), n) for n in before]
    tail = [_mutated(("metadata", "name"), n) for n in after]
    if draw(st.integers(0, 9)) == 0:
        broken = draw(st.sampled_from(["kind: [\n", "a: b\n c: d\n", "key: 'open\n", "- a\nb: c\n", "\t: x\n"]))
        return yaml.safe_dump_all(valid) + ("---\n" if valid else "") + broken
    return yaml.safe_dump_all([*valid, draw(invalid_documents), *tail])


def test_random_invalid_documents_are_refused_and_nothing_is_written(shared_zk: Ensemble) -> None:
    import uuid

    conn = Connection(hosts=shared_zk.connection_string, user="zkop", password="p", root=f"/h-{uuid.uuid4().hex[:12]}")
    loop = asyncio.new_event_loop()
    client = conn.client()
    loop.run_until_complete(client.start())
    store = Store(client, root=conn.root, acl=conn.acl())

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(text=invalid_streams())
    def check(text: str) -> None:
        written: list[Resource] = []
        with pytest.raises(ZkopError):
            loop.run_until_complete(
                apply_sources(store, [Source("gen.yaml", text)], lambda obj, _: written.append(obj))
            )
        assert written == []
        assert loop.run_until_complete(client.exists(conn.root)) is None

    try:
        check()
    finally:
        loop.run_until_complete(client.stop())
        loop.close()
