"""The node agent's pure parts: image references, $(VAR) expansion, quantities, Pod phase, cluster DNS."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from zkop.testing.nodeagent.envvars import expand, quantity
from zkop.testing.nodeagent.images import ImageRef, ImageRule, ImageTable, NoCommand, container_argv
from zkop.testing.nodeagent.network import cluster_hosts, read_hosts, render_hosts, resolve
from zkop.testing.nodeagent.pods import BackOff, _Delay
from zkop.testing.nodeagent.status import ContainerView, Running, Terminated, Waiting, pod_phase
from zkop.testing.nodeagent.volumes import write_payload


@pytest.mark.parametrize(
    ("image", "registry", "repository", "tag"),
    [
        ("zookeeper", "", "zookeeper", "latest"),
        ("zookeeper:3.9", "", "zookeeper", "3.9"),
        ("docker.io/library/zookeeper:3.9.3", "docker.io", "library/zookeeper", "3.9.3"),
        ("localhost:5000/team/zkop:dev", "localhost:5000", "team/zkop", "dev"),
        ("ghcr.io/acme/zkop@sha256:abc", "ghcr.io", "acme/zkop", ""),
    ],
)
def test_image_references(image: str, registry: str, repository: str, tag: str) -> None:
    ref = ImageRef.parse(image)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)


def test_image_table_matches_by_name_and_caller_rules_win() -> None:
    table = ImageTable([ImageRule("zookeeper", name="zk"), ImageRule("*zkop", name="zkop")])

    def found(image: str) -> str | None:
        rule = table.find(image)
        return rule.name if rule else None

    assert found("docker.io/library/zookeeper:3.9") == "zk"
    assert (found("ghcr.io/acme/zkop:1"), found("my-zkop"), found("nginx")) == ("zkop", "zkop", None)
    table.add(ImageRule(lambda ref: ref.tag == "3.9", name="mine"))
    assert (found("zookeeper:3.9"), found("zookeeper:3.8")) == ("mine", "zk")


def test_command_and_args_replace_entrypoint_and_cmd(tmp_path: Path) -> None:
    (tmp_path / "zkServer.sh").write_text("")
    rule = ImageRule("zookeeper", entrypoint=("entry",), cmd=("zkServer.sh", "start-foreground"), path=(tmp_path,))
    assert container_argv(rule, None, None) == ["entry", "zkServer.sh", "start-foreground"]
    assert container_argv(rule, None, ["x"]) == ["entry", "x"]
    assert container_argv(rule, ["sh", "-c"], None) == ["sh", "-c"]
    absolute = container_argv(rule, ["/apache-zookeeper-3.9.3-bin/bin/zkServer.sh", "status"], None)
    assert absolute == [str(tmp_path / "zkServer.sh"), "status"]
    with pytest.raises(NoCommand):
        container_argv(ImageRule("x"), None, None)


def test_variable_expansion_is_kubernetes_own() -> None:
    values = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", values) == "1-two"
    assert expand("$$(A) $(C) $(A", values) == "$(A) $(C) $(A"
    assert expand("cost: $5", values) == "cost: $5"


def test_quantities() -> None:
    assert quantity("500m") == Decimal("0.5")
    assert quantity("1Gi") == 1024**3
    assert quantity("2k") == 2000
    assert quantity(3) == 3


def test_back_off_first_restart_at_once_then_doubling_to_the_cap() -> None:
    delay = _Delay(BackOff().scaled(0.1))
    assert [delay.next(0) for _ in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]
    assert delay.next(120) == 0  # ran long enough: starts over


def view(name: str, state: Any, last: Terminated | None = None) -> ContainerView:
    return ContainerView(name=name, image="busybox", state=state, last=last)


def test_pod_phase_follows_the_kubelet() -> None:
    ok, bad = Terminated(0, "Completed", 1, 2), Terminated(3, "Error", 1, 2)
    assert pod_phase("Never", [], [view("a", ok), view("b", ok)], True) == "Succeeded"
    assert pod_phase("Never", [], [view("a", ok), view("b", bad)], True) == "Failed"
    assert pod_phase("Always", [], [view("a", Running(1))], True) == "Running"
    assert pod_phase("Always", [], [view("a", Waiting("CrashLoopBackOff"), last=bad)], True) == "Running"
    assert pod_phase("OnFailure", [], [view("a", Waiting("ErrImagePull"))], True) == "Pending"
    assert pod_phase("Never", [view("init", bad)], [view("a", Waiting("PodInitializing"))], False) == "Failed"
    assert pod_phase("Always", [view("init", Running(1))], [view("a", Waiting("PodInitializing"))], False) == "Pending"


def pod_obj(name: str, ip: str, *, ready: bool, hostname: str | None = None, ns: str = "ns") -> dict[str, Any]:
    spec: dict[str, Any] = {"hostname": hostname, "subdomain": "peers"} if hostname else {}
    return {
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "peer"}},
        "spec": spec,
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service(publish: bool, headless: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": "peer"}, "publishNotReadyAddresses": publish}
    if headless:
        spec["clusterIP"] = "None"
    return {"metadata": {"name": "peers", "namespace": "ns"}, "spec": spec}


def test_cluster_dns_records_as_cluster_dns_answers(tmp_path: Path) -> None:
    pods = [pod_obj("a", "127.0.0.2", ready=True, hostname="a"), pod_obj("b", "127.0.0.3", ready=False, hostname="b")]
    records = {r.name: r.addresses for r in cluster_hosts(pods, [service(publish=False)])}
    assert records == {"peers.ns.svc.cluster.local": ("127.0.0.2",), "a.peers.ns.svc.cluster.local": ("127.0.0.2",)}

    published = cluster_hosts(pods, [service(publish=True)])
    assert {r.name: r.addresses for r in published}["b.peers.ns.svc.cluster.local"] == ("127.0.0.3",)

    plain = {r.name for r in cluster_hosts(pods, [service(publish=True, headless=False)])}
    assert plain == {"peers.ns.svc.cluster.local"}  # no per-Pod names without a headless Service

    hosts = tmp_path / "hosts"
    hosts.write_text(render_hosts(published, header="t", machine=[], own=("127.0.0.2", ["a"]), namespace="ns"))
    assert resolve("B.peers", hosts) == ["127.0.0.3"]  # relative to the Pod's namespace, any case
    assert resolve("peers.ns.svc.cluster.local.", hosts) == ["127.0.0.2", "127.0.0.3"]
    assert read_hosts(hosts)["localhost"] == ["127.0.0.2"]
    assert resolve("nope", hosts) == []


def test_payload_is_swapped_atomically(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    assert write_payload(vol, {"a": (b"1", 0o644), "conf/b": (b"2", 0o600)})
    assert (vol / "a").read_text() == "1" and (vol / "conf" / "b").stat().st_mode & 0o777 == 0o600
    assert not write_payload(vol, {"a": (b"1", 0o644), "conf/b": (b"2", 0o600)})  # unchanged
    assert write_payload(vol, {"a": (b"3", 0o644)})
    assert (vol / "a").read_text() == "3" and not (vol / "conf").exists()
    assert len([p for p in vol.iterdir() if p.name.startswith("..") and p.is_dir() and not p.is_symlink()]) == 1
