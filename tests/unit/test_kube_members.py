"""The Kubernetes manifests of a ZooKeeper ensemble, as pure functions."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from zkop.platform.base import ClusterRef, MemberTemplate, Resources
from zkop.platform.kubernetes import members as M
from zkop.zk.config import ServerSettings

CLUSTER = ClusterRef("prod", "orders-zk")
TEMPLATE = MemberTemplate(
    settings=ServerSettings(tick_time=2000, heap_mb=256, additional={"jute.maxbuffer": "4194304"}),
    config_hash="h1",
    image="zookeeper:3.9.3",
    resources_requests=Resources(0.5, 512 * 2**20),
    resources_limits=Resources(1.0, 1024 * 2**20),
)


def test_members_are_pods_named_by_id_under_a_headless_service() -> None:
    a = M.address(CLUSTER, 7)
    assert a.host == "orders-zk-7.orders-zk-headless.prod.svc.cluster.local"
    assert (a.quorum_port, a.election_port, a.client_port) == (2888, 3888, 2181)
    pod = M.pod(CLUSTER, 7, TEMPLATE, [M.address(CLUSTER, 1), a], epoch=4)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "orders-zk-7" and meta["labels"][M.MEMBER_LABEL] == "7"
    assert meta["annotations"] == {M.CONFIG_HASH: "h1", M.EPOCH: "4"}
    assert (spec["hostname"], spec["subdomain"]) == ("orders-zk-7", "orders-zk-headless")
    claim = next(v for v in spec["volumes"] if v["name"] == "data")
    assert claim["persistentVolumeClaim"]["claimName"] == "data-orders-zk-7"
    zk = spec["containers"][0]
    assert zk["command"] == ["zkServer.sh", "start-foreground", "/data/zoo.cfg"]
    assert zk["resources"] == {"requests": {"cpu": "500m", "memory": str(512 * 2**20)}, "limits": {
        "cpu": "1000m", "memory": str(2**30)}}  # fmt: skip
    flags = next(e["value"] for e in zk["env"] if e["name"] == "SERVER_JVMFLAGS")
    assert "-Xmx256m" in flags and "superDigest=$(ZKOP_SUPER_DIGEST)" in flags
    # The JVM gets the digest from the Secret, never the password.
    digest = next(e for e in zk["env"] if e["name"] == "ZKOP_SUPER_DIGEST")
    assert digest["valueFrom"]["secretKeyRef"] == {"name": "orders-zk-super", "key": "digest"}
    # Probes read srvr; none of them changes membership.
    assert "srvr" in zk["readinessProbe"]["exec"]["command"][-1]
    assert zk["livenessProbe"]["initialDelaySeconds"] >= 60
    init = spec["initContainers"][0]
    membership = next(e["value"] for e in init["env"] if e["name"] == "ZKOP_MEMBERSHIP")
    assert membership.splitlines() == [M.address(CLUSTER, 1).server_line(), a.server_line()]


def test_the_file_agent_reads_the_data_and_a_restoring_member_is_seeded() -> None:
    pod = M.pod(CLUSTER, 1, TEMPLATE, [M.address(CLUSTER, 1)], epoch=1, files_image="reg/zkop:9")
    files = next(c for c in pod["spec"]["containers"] if c["name"] == "files")
    assert files["image"] == "reg/zkop:9" and files["args"][:2] == ["files", "serve"]
    assert all(m["readOnly"] for m in files["volumeMounts"]), "the agent never writes a serving member's data"
    token = next(e for e in files["env"] if e["name"] == "ZKOP_FILES_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "orders-zk-super", "key": M.FILES_TOKEN_KEY}
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["prepare"]
    restored = replace(TEMPLATE, seed="prod-orders-zk-20261202T000000Z")
    first = M.pod(CLUSTER, 1, restored, [M.address(CLUSTER, 1)], epoch=1)
    assert [c["name"] for c in first["spec"]["initContainers"]] == ["prepare", "seed"]
    seed = first["spec"]["initContainers"][1]
    assert seed["args"][:2] == ["files", "seed"] and not any(m.get("readOnly") for m in seed["volumeMounts"])


def test_cluster_objects() -> None:
    headless = M.headless_service(CLUSTER)
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} == {2181, 2888, 3888}
    assert M.client_service(CLUSTER)["spec"]["ports"] == [{"name": "client", "port": 2181}]
    assert M.disruption_budget(CLUSTER)["spec"]["maxUnavailable"] == 1
    cfg = M.config_map(CLUSTER, TEMPLATE)["data"]["zoo.cfg"]
    assert "tickTime=2000" in cfg and "dataDir=/data" in cfg and "reconfigEnabled=true" in cfg
    assert "jute.maxbuffer=4194304" in cfg and cfg.rstrip().endswith("dynamicConfigFile=/data/zoo.cfg.dynamic")
    assert "skipACL" not in cfg
    assert set(M.secret(CLUSTER, "pw", "super:abc", "tok")["data"]) == {"password", "digest", M.FILES_TOKEN_KEY}


def run_init(tmp_path: Path, member_id: str, membership: str) -> subprocess.CompletedProcess[str]:
    """The init script with /data and /conf mapped to directories of the test."""
    script = M.INIT_SCRIPT.replace("/data", str(tmp_path / "data")).replace("/conf", str(tmp_path / "conf"))
    return subprocess.run(
        ["/bin/sh", "-c", script],
        env={"ZKOP_MEMBER_ID": member_id, "ZKOP_MEMBERSHIP": membership, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_init_step_keeps_what_the_volume_holds_and_refuses_another_member(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "zoo.cfg").write_text("tickTime=2000\ndynamicConfigFile=/data/zoo.cfg.dynamic\n")
    first = run_init(tmp_path, "3", "server.3=a:1:2:participant;a:3")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "data" / "myid").read_text().strip() == "3"
    assert (tmp_path / "data" / "zoo.cfg.dynamic").read_text().strip() == "server.3=a:1:2:participant;a:3"
    # ZooKeeper moved to a new dynamic file on reconfig: the next start keeps pointing at it.
    (tmp_path / "data" / "zoo.cfg").write_text("tickTime=2000\ndynamicConfigFile=/data/zoo.cfg.dynamic.100000002\n")
    (tmp_path / "data" / "zoo.cfg.dynamic.100000002").write_text("server.3=a:1:2:participant;a:3\n")
    (tmp_path / "conf" / "zoo.cfg").write_text("tickTime=3000\ndynamicConfigFile=/data/zoo.cfg.dynamic\n")
    again = run_init(tmp_path, "3", "server.3=other")
    assert again.returncode == 0, again.stderr
    cfg = (tmp_path / "data" / "zoo.cfg").read_text()
    assert "tickTime=3000" in cfg and cfg.strip().endswith("dynamicConfigFile=/data/zoo.cfg.dynamic.100000002")
    assert (tmp_path / "data" / "zoo.cfg.dynamic").read_text().strip() == "server.3=a:1:2:participant;a:3"
    # A volume of another member is refused.
    refused = run_init(tmp_path, "4", "server.4=b:1:2:participant;b:3")
    assert refused.returncode == 1 and "holds member 3, not 4" in refused.stderr
