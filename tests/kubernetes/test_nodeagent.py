"""The node agent test double on the real control plane: Pods run as local processes.

Each test gets a Node of its own (the ``node_agent`` fixture) serving its namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from zkop.testing.kube import ControlPlane
from zkop.testing.nodeagent import NodeAgent, resolve, use_hosts_file
from zkop.zk import fourlw

pytestmark = pytest.mark.kubernetes

Obj = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def apply(cp: ControlPlane, ns: str, *objs: Obj) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": list(objs)}
    cp.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(items))


def get(cp: ControlPlane, path: str) -> Obj | None:
    status, body = cp.request(path)
    if status == 404:
        return None
    assert status == 200, body
    result: Obj = json.loads(body)
    return result


def pod(cp: ControlPlane, ns: str, name: str) -> Obj | None:
    return get(cp, f"/api/v1/namespaces/{ns}/pods/{name}")


def wait_pod(cp: ControlPlane, ns: str, name: str, check: Callable[[Obj], bool], what: str, timeout: float = 60) -> Obj:
    """Poll the Pod until ``check`` holds; on timeout fail with its last status."""
    deadline = time.monotonic() + timeout
    last: Obj | None = None
    while time.monotonic() < deadline:
        last = pod(cp, ns, name)
        if last is not None and check(last):
            return last
        time.sleep(0.1)
    status = json.dumps((last or {}).get("status"), indent=1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} of {ns}/{name}; last status:\n{status}")


def phase(p: Obj) -> str:
    return str((p.get("status") or {}).get("phase"))


def condition(p: Obj, kind: str) -> str | None:
    for c in (p.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return None


def container(p: Obj, name: str, init: bool = False) -> Obj:
    key = "initContainerStatuses" if init else "containerStatuses"
    return next((c for c in (p.get("status") or {}).get(key) or [] if c["name"] == name), {})


def ready(p: Obj) -> bool:
    return condition(p, "Ready") == "True"


def pod_manifest(name: str, containers: list[Obj], **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {"app": name})},
        "spec": {"containers": containers, "terminationGracePeriodSeconds": 5, **spec},
    }


def sh(name: str, script: str, **extra: Any) -> Obj:
    return {"name": name, "image": "busybox:1.36", "command": ["sh", "-c", script], **extra}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --------------------------------------------------------------------------- the Node and running Pods


def test_node_is_registered_ready_with_the_machines_capacity(
    kube_control_plane: ControlPlane, node_agent: NodeAgent
) -> None:
    node = get(kube_control_plane, f"/api/v1/nodes/{node_agent.node_name}")
    assert node is not None
    status = node["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert status["capacity"]["cpu"] == str(os.cpu_count())
    assert status["capacity"]["memory"] == f"{psutil.virtual_memory().total // 1024}Ki"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    lease = get(
        kube_control_plane, f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node_agent.node_name}"
    )
    assert lease is not None and lease["spec"]["holderIdentity"] == node_agent.node_name


def test_busybox_pods_run_to_completion_with_their_exit_codes(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    env = [
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "GREETING", "value": "hello $(MY_NAME)"},
    ]
    apply(
        cp,
        ns,
        pod_manifest(
            "ok", [sh("main", 'echo "$GREETING in $MY_NS at $MY_IP pod_ip=$POD_IP"', env=env)], restartPolicy="Never"
        ),
        pod_manifest("bad", [sh("main", "echo failing; exit 3")], restartPolicy="Never"),
    )
    ok = wait_pod(cp, ns, "ok", lambda p: phase(p) == "Succeeded", "Succeeded")
    bad = wait_pod(cp, ns, "bad", lambda p: phase(p) == "Failed", "Failed")

    assert ok["spec"]["nodeName"] == node_agent.node_name
    status = ok["status"]
    ip = status["podIP"]
    assert ip.startswith("127.0.0.") and ip != "127.0.0.1"
    assert status["hostIP"] == "127.0.0.1" and status["startTime"]
    terminated = container(ok, "main")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert condition(ok, "PodScheduled") == "True" and condition(ok, "Initialized") == "True"
    assert condition(ok, "Ready") == "False"
    assert node_agent.logs(ns, "ok", "main").strip() == f"hello ok in {ns} at {ip} pod_ip={ip}"

    terminated = container(bad, "main")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert container(bad, "main")["restartCount"] == 0
    assert bad["status"]["podIP"] != ip  # an address of its own


def test_unknown_image_waits_in_image_pull_back_off(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    apply(cp, ns, pod_manifest("nope", [{"name": "main", "image": "registry.example/nginx:1.27"}]))

    def pulling(p: Obj) -> bool:
        statuses = (p.get("status") or {}).get("containerStatuses") or []
        waiting = statuses[0]["state"].get("waiting") if statuses else None
        return bool(waiting and waiting["reason"] == "ImagePullBackOff")

    p = wait_pod(cp, ns, "nope", pulling, "ImagePullBackOff")
    assert phase(p) == "Pending"
    message = container(p, "main")["state"]["waiting"]["message"]
    assert "registry.example/nginx:1.27" in message and "image table" in message


def test_crashing_container_restarts_with_crash_loop_back_off(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    apply(cp, ns, pod_manifest("crash", [sh("main", "echo run; exit 1")]))
    # Back-off scaled to a tenth: restarts at once, then after 1 s, 2 s, 4 s.
    seen: dict[int, float] = {}
    waiting_reasons: set[str] = set()
    deadline = time.monotonic() + 60
    p: Obj | None = None
    while time.monotonic() < deadline and 4 not in seen:
        p = pod(cp, ns, "crash")
        statuses = (p or {}).get("status", {}).get("containerStatuses") or []
        if statuses:
            seen.setdefault(statuses[0]["restartCount"], time.monotonic())
            waiting = statuses[0]["state"].get("waiting")
            if waiting:
                waiting_reasons.add(waiting["reason"])
                if waiting["reason"] == "CrashLoopBackOff":
                    assert "back-off" in waiting["message"] and "restarting failed container=main" in waiting["message"]
        time.sleep(0.05)
    assert 4 in seen, seen
    assert "CrashLoopBackOff" in waiting_reasons
    gaps = [seen[n + 1] - seen[n] for n in range(1, 4)]
    assert gaps[0] >= 0.8 and gaps[1] >= 1.7 and gaps[2] >= 3.5, gaps  # 1 s, 2 s, 4 s
    assert gaps[2] > gaps[1] > gaps[0]
    assert p is not None and phase(p) == "Running"
    last = container(p, "main")["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (1, "Error")
    assert node_agent.logs(ns, "crash", "main").strip() == "run"
    assert len(node_agent.log_files(ns, "crash", "main")) >= 4


def test_liveness_probe_failure_restarts_the_container(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    liveness = {"exec": {"command": ["test", "-e", "/tmp/zkop-never-there"]}, "periodSeconds": 1, "failureThreshold": 2}
    apply(cp, ns, pod_manifest("sick", [sh("main", "sleep 3600", livenessProbe=liveness)]))
    p = wait_pod(cp, ns, "sick", lambda p: container(p, "main").get("restartCount", 0) >= 1, "a restart", timeout=30)
    last = container(p, "main")["lastState"]["terminated"]
    assert last["exitCode"] in (137, 143)  # killed: SIGTERM (sh in the foreground of sleep), or SIGKILL


# --------------------------------------------------------------------------- probes


TOGGLED_SERVER = """
import os, socket, time
listener = None
while True:
    if os.path.exists("/www/tcp") and listener is None:
        listener = socket.create_server(("", 9090))
    elif not os.path.exists("/www/tcp") and listener is not None:
        listener.close()
        listener = None
    time.sleep(0.1)
"""


def test_readiness_probes_tcp_http_and_exec_flip_ready(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    mount = [{"name": "www", "mountPath": "/www"}]
    fast = {"periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 1}
    apply(
        cp,
        ns,
        pod_manifest(
            "probed",
            [
                sh(
                    "http",
                    "exec python3 -m http.server 8080 --directory /www",
                    volumeMounts=mount,
                    readinessProbe={"httpGet": {"path": "/ready", "port": "web"}, **fast},
                    ports=[{"name": "web", "containerPort": 8080}],
                ),
                sh(
                    "tcp",
                    f"exec python3 -c '{TOGGLED_SERVER}'",
                    volumeMounts=mount,
                    readinessProbe={"tcpSocket": {"port": 9090}, **fast},
                ),
                sh(
                    "exec",
                    "exec sleep 3600",
                    volumeMounts=mount,
                    readinessProbe={"exec": {"command": ["test", "-e", "/www/exec"]}, **fast},
                ),
            ],
            volumes=[{"name": "www", "emptyDir": {}}],
        ),
    )
    p = wait_pod(cp, ns, "probed", lambda p: phase(p) == "Running", "Running")
    time.sleep(1.5)
    p = pod(cp, ns, "probed") or {}
    assert not ready(p) and not any(container(p, c)["ready"] for c in ("http", "tcp", "exec"))
    www = node_agent.volume_path(ns, "probed", "www")
    assert www is not None

    def ready_containers(p: Obj) -> set[str]:
        return {c["name"] for c in p["status"]["containerStatuses"] if c["ready"]}

    def has_ready(name: str) -> Callable[[Obj], bool]:
        return lambda p: name in ready_containers(p)

    for name, path in (("http", "ready"), ("tcp", "tcp"), ("exec", "exec")):
        (www / path).write_text("ok")
        wait_pod(cp, ns, "probed", has_ready(name), f"{name} ready", timeout=20)
    p = wait_pod(cp, ns, "probed", ready, "Ready", timeout=20)
    assert condition(p, "ContainersReady") == "True"

    # Each probe takes Ready away again, and gives it back.
    for name, path in (("http", "ready"), ("exec", "exec"), ("tcp", "tcp")):
        (www / path).unlink()
        p = wait_pod(cp, ns, "probed", lambda p: not ready(p), f"unready after {name}", timeout=20)
        assert ready_containers(p) == {"http", "tcp", "exec"} - {name}
        (www / path).write_text("ok")
        wait_pod(cp, ns, "probed", ready, f"Ready again after {name}", timeout=20)

    # exec runs in the container: its mounts, its environment
    code, out = node_agent.exec(ns, "probed", "exec", ["sh", "-c", 'cat /www/exec; echo " $POD_IP"'])
    assert (code, out.strip()) == (0, f"ok {p['status']['podIP']}")


# --------------------------------------------------------------------------- termination


def test_deleted_pod_is_terminated_gracefully(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent, tmp_path: Path
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    marks = tmp_path / "marks"
    marks.mkdir()
    hooks = [{"name": "marks", "mountPath": "/marks"}]
    volumes = [{"name": "marks", "hostPath": {"path": str(marks), "type": "Directory"}}]
    apply(
        cp,
        ns,
        pod_manifest(
            "polite",
            [
                sh(
                    "main",
                    "trap 'echo got TERM; echo term > /marks/term; exit 0' TERM; while true; do sleep 0.1; done",
                    volumeMounts=hooks,
                    lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo stop > /marks/prestop"]}}},
                )
            ],
            volumes=volumes,
            terminationGracePeriodSeconds=30,
        ),
        pod_manifest(
            "stubborn", [sh("main", "trap '' TERM; while true; do sleep 0.1; done")], terminationGracePeriodSeconds=2
        ),
    )
    for name in ("polite", "stubborn"):
        wait_pod(cp, ns, name, lambda p: phase(p) == "Running", "Running")
    pids = node_agent.pids()
    polite, stubborn = pids[f"{ns}/polite/main"], pids[f"{ns}/stubborn/main"]

    started = time.monotonic()
    cp.kubectl("delete", "pod", "polite", "stubborn", "-n", ns, "--wait=false")
    cp.wait_for("polite to be gone", lambda: True if pod(cp, ns, "polite") is None else None, timeout=20)
    polite_took = time.monotonic() - started
    cp.wait_for("stubborn to be gone", lambda: True if pod(cp, ns, "stubborn") is None else None, timeout=20)
    stubborn_took = time.monotonic() - started

    assert polite_took < 10  # it left on SIGTERM, well within its 30 s
    assert (marks / "prestop").read_text().strip() == "stop"
    assert (marks / "term").read_text().strip() == "term"
    assert "got TERM" in node_agent.logs(ns, "polite", "main")
    assert 2 <= stubborn_took < 10  # SIGKILL after its 2 s grace period
    assert gone(polite) and gone(stubborn)
    assert f"{ns}/polite/main" not in node_agent.pids()


def test_stopping_the_agent_is_a_graceful_node_shutdown(
    kube_control_plane: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    agent = NodeAgent(cp, tmp_path / "node", node_name=f"shutdown-{ns}"[:63], namespaces=[ns], shutdown_grace=5)
    with agent:
        apply(cp, ns, pod_manifest("worker", [sh("main", "exec sleep 3600")]))
        wait_pod(cp, ns, "worker", lambda p: phase(p) == "Running", "Running")
        pid = agent.pids()[f"{ns}/worker/main"]
    assert gone(pid)
    p = pod(cp, ns, "worker")
    assert p is not None and phase(p) == "Failed" and p["status"]["reason"] == "Terminated"
    assert container(p, "main")["state"]["terminated"]["exitCode"] == 143
    node = get(cp, f"/api/v1/nodes/{agent.node_name}")
    assert node is not None
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "False"
    cp.kubectl("delete", "node", agent.node_name, "--wait=false")


def test_a_crashed_agent_leaves_its_pods_and_a_new_one_runs_them_again(
    kube_control_plane: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    options: dict[str, Any] = {"node_name": f"reboot-{ns}"[:63], "namespaces": [ns], "shutdown_grace": 5}
    first = NodeAgent(cp, tmp_path / "node", **options)
    with first:
        apply(cp, ns, pod_manifest("survivor", [sh("main", "echo started; exec sleep 3600")]))
        wait_pod(cp, ns, "survivor", ready, "Ready")
        pid = first.pids()[f"{ns}/survivor/main"]
        first.crash()  # a power cut: SIGKILL, nothing written to the API
        assert gone(pid)
    p = pod(cp, ns, "survivor")
    assert p is not None and phase(p) == "Running" and ready(p)  # the API does not know yet

    with NodeAgent(cp, tmp_path / "node", **options) as second:  # the node comes back
        p = wait_pod(cp, ns, "survivor", lambda p: container(p, "main").get("restartCount") == 1, "a restart")
        p = wait_pod(cp, ns, "survivor", ready, "Ready again")
        assert second.pids()[f"{ns}/survivor/main"] != pid
        assert [f.read_text() for f in second.log_files(ns, "survivor", "main")] == ["started\n", "started\n"]
    cp.kubectl("delete", "node", options["node_name"], "--wait=false")


# --------------------------------------------------------------------------- volumes


def test_configmap_and_secret_volumes_are_files(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    cp.kubectl("create", "configmap", "settings", "--from-literal=a=alpha", "--from-literal=b=beta", "-n", ns)
    cp.kubectl("create", "secret", "generic", "creds", "--from-literal=password=s3cret", "-n", ns)
    script = (
        "cat /cfg/sub/a.txt; echo; stat -Lc %a /cfg/sub/a.txt; ls /cfg; "
        "cat /sec/password; echo; stat -Lc %a /sec/password; echo env=$FROM_CM/$FROM_SECRET; "
        "touch /cfg/x 2>/dev/null && echo writable || echo read-only; exec sleep 3600"
    )
    apply(
        cp,
        ns,
        pod_manifest(
            "files",
            [
                sh(
                    "main",
                    script,
                    volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}, {"name": "sec", "mountPath": "/sec"}],
                    env=[
                        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "b"}}},
                        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    ],
                )
            ],
            volumes=[
                {
                    "name": "cfg",
                    "configMap": {"name": "settings", "items": [{"key": "a", "path": "sub/a.txt", "mode": 0o600}]},
                },
                {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            ],
        ),
    )
    wait_pod(cp, ns, "files", lambda p: phase(p) == "Running", "Running")
    cp.wait_for("the script's output", lambda: True if "env=" in node_agent.logs(ns, "files", "main") else None, 20)
    lines = node_agent.logs(ns, "files", "main").split()
    assert lines == ["alpha", "600", "sub", "s3cret", "400", "env=beta/s3cret", "read-only"]

    # A changed ConfigMap reaches the running Pod's files (items only: key b is not projected).
    patch = json.dumps({"data": {"a": "gamma"}})
    cp.kubectl("patch", "configmap", "settings", "-n", ns, "--type=merge", "-p", patch)

    def updated() -> bool | None:
        code, out = node_agent.exec(ns, "files", "main", ["cat", "/cfg/sub/a.txt"])
        return True if (code, out) == (0, "gamma") else None

    cp.wait_for("the new ConfigMap content in the Pod", updated, timeout=20)


def test_pvc_gets_a_volume_whose_directory_outlives_the_pod(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent
) -> None:
    cp, ns = kube_control_plane, kube_namespace

    def claim(name: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}},
        }

    def writer(name: str, claim_name: str, script: str) -> Obj:
        return pod_manifest(
            name,
            [sh("main", script, volumeMounts=[{"name": "data", "mountPath": "/data"}])],
            restartPolicy="Never",
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        )

    apply(cp, ns, claim("data"), claim("kept"), writer("first", "data", "echo kept-data > /data/hello"))

    def bound(name: str) -> Obj:
        return cp.wait_for(
            f"claim {name} bound",
            lambda: (
                c
                if (c := get(cp, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"))
                and c["status"].get("phase") == "Bound"
                else None
            ),
            timeout=30,
        )

    pvc = bound("data")
    assert pvc["spec"]["storageClassName"] == node_agent.storage_class  # the default class
    pv = get(cp, f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    assert pv is not None and pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
    directory = Path(pv["spec"]["hostPath"]["path"])
    assert directory.is_relative_to(node_agent.root)

    wait_pod(cp, ns, "first", lambda p: phase(p) == "Succeeded", "Succeeded")
    cp.kubectl("delete", "pod", "first", "-n", ns)
    assert (directory / "hello").read_text() == "kept-data\n"  # outlives the Pod

    apply(cp, ns, writer("second", "data", "cat /data/hello"))
    wait_pod(cp, ns, "second", lambda p: phase(p) == "Succeeded", "Succeeded")
    assert node_agent.logs(ns, "second", "main") == "kept-data\n"
    cp.kubectl("delete", "pod", "second", "-n", ns)

    cp.kubectl("delete", "pvc", "data", "-n", ns, "--wait=false")
    cp.wait_for(
        "the volume and its directory to go",
        lambda: True if get(cp, f"/api/v1/persistentvolumes/{pv['metadata']['name']}") is None else None,
        timeout=30,
    )
    assert not directory.exists()

    # reclaimPolicy Retain: the volume (Released) and its directory stay after the claim goes.
    kept = bound("kept")
    kept_pv = kept["spec"]["volumeName"]
    cp.kubectl("patch", "pv", kept_pv, "-p", '{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}')
    kept_dir = Path((get(cp, f"/api/v1/persistentvolumes/{kept_pv}") or {})["spec"]["hostPath"]["path"])
    (kept_dir / "keep").write_text("me")
    cp.kubectl("delete", "pvc", "kept", "-n", ns)
    cp.wait_for(
        "the retained volume to be Released",
        lambda: (
            True
            if ((get(cp, f"/api/v1/persistentvolumes/{kept_pv}") or {}).get("status") or {}).get("phase") == "Released"
            else None
        ),
        timeout=30,
    )
    time.sleep(1)
    assert (kept_dir / "keep").read_text() == "me"
    cp.kubectl("delete", "pv", kept_pv)


# --------------------------------------------------------------------------- cluster DNS


def test_pods_under_a_headless_service_resolve_each_other(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "peers"},
        "spec": {"clusterIP": "None", "selector": {"app": "peer"}, "ports": [{"name": "http", "port": 8000}]},
    }
    server = sh(
        "main",
        "exec python3 -m http.server 8000 --directory /etc",
        readinessProbe={"tcpSocket": {"port": 8000}, "periodSeconds": 1},
    )
    peers = [
        pod_manifest(name, [server], hostname=name, subdomain="peers", labels={"app": "peer"}) for name in ("a", "b")
    ]
    apply(cp, ns, service, *peers)
    ips = {name: wait_pod(cp, ns, name, ready, "Ready")["status"]["podIP"] for name in ("a", "b")}
    fqdn = {name: f"{name}.peers.{ns}.svc.cluster.local" for name in ips}

    def resolved() -> bool | None:
        return True if all(node_agent.resolve(fqdn[n]) == [ips[n]] for n in ips) else None

    cp.wait_for("both names in the hosts file", resolved, timeout=20)
    assert sorted(node_agent.resolve(f"peers.{ns}.svc.cluster.local")) == sorted(ips.values())
    assert resolve(f"b.peers.{ns}", node_agent.hosts_file) == [ips["b"]]
    with use_hosts_file(node_agent.hosts_file):
        assert socket.getaddrinfo(fqdn["b"], 8000, socket.AF_INET, socket.SOCK_STREAM)[0][4] == (ips["b"], 8000)

    # Inside a Pod: its /etc/hosts (short names too, as the DNS search path would), its hostname,
    # and a connection to the other Pod by name.
    code, out = node_agent.exec(ns, "a", "main", ["getent", "hosts", "b.peers"])
    assert code == 0 and out.split()[0] == ips["b"], out
    code, out = node_agent.exec(ns, "a", "main", ["hostname"])
    assert (code, out.strip()) == (0, "a")
    fetch = f"import urllib.request; print(urllib.request.urlopen('http://{fqdn['b']}:8000/hostname').status)"
    code, out = node_agent.exec(ns, "a", "main", ["python3", "-c", fetch])
    assert (code, out.strip()) == (0, "200"), out

    # b goes: its names go with it
    cp.kubectl("delete", "pod", "b", "-n", ns)
    cp.wait_for("b's name to go", lambda: True if node_agent.resolve(fqdn["b"]) == [] else None, timeout=20)
    assert node_agent.resolve(f"peers.{ns}.svc.cluster.local") == [ips["a"]]


# --------------------------------------------------------------------------- ZooKeeper


def zk_objects(ns: str, members: int) -> list[Obj]:
    servers = "\n".join(f"server.{i}=zk-{i}.zk-hs.{ns}.svc.cluster.local:2888:3888" for i in range(1, members + 1))
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "zk-config"},
        "data": {
            "zoo.cfg": (
                "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/data\nclientPort=2181\n"
                f"4lw.commands.whitelist=srvr,ruok,mntr\n{servers}\n"
            )
        },
    }
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "zk-hs"},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"app": "zk"},
            "ports": [{"name": "quorum", "port": 2888}, {"name": "election", "port": 3888}],
        },
    }
    objs: list[Obj] = [config, headless]
    for i in range(1, members + 1):
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"data-zk-{i}"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}},
            }
        )
        zookeeper = {
            "name": "zookeeper",
            "image": "zookeeper:3.9",
            "command": ["zkServer.sh", "start-foreground", "/conf/zoo.cfg"],
            "env": [
                {"name": "ZK_SERVER_HEAP", "value": "128"},
                {"name": "SERVER_JVMFLAGS", "value": "-XX:+UseSerialGC -Xshare:auto"},
            ],
            "ports": [{"name": "client", "containerPort": 2181}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "conf", "mountPath": "/conf"}],
            "readinessProbe": {"exec": {"command": ["zkServer.sh", "status"]}, "periodSeconds": 2, "timeoutSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": "client"}, "initialDelaySeconds": 30, "periodSeconds": 5},
        }
        myid = {
            "name": "myid",
            "image": "busybox:1.36",
            "command": ["sh", "-c", f"echo {i} > /data/myid"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }
        objs.append(
            pod_manifest(
                f"zk-{i}",
                [zookeeper],
                labels={"app": "zk"},
                hostname=f"zk-{i}",
                subdomain="zk-hs",
                initContainers=[myid],
                volumes=[
                    {"name": "data", "persistentVolumeClaim": {"claimName": f"data-zk-{i}"}},
                    {"name": "conf", "configMap": {"name": "zk-config"}},
                ],
            )
        )
    return objs


@pytest.mark.timeout(240)
def test_zookeeper_ensemble_of_three_pods_reaches_quorum(
    kube_control_plane: ControlPlane, kube_namespace: str, node_agent: NodeAgent
) -> None:
    cp, ns = kube_control_plane, kube_namespace
    apply(cp, ns, *zk_objects(ns, 3))
    pods = {i: wait_pod(cp, ns, f"zk-{i}", ready, "Ready", timeout=180) for i in (1, 2, 3)}

    for p in pods.values():
        init = container(p, "myid", init=True)["state"]["terminated"]
        assert (init["exitCode"], init["reason"]) == (0, "Completed")
    ips = {i: p["status"]["podIP"] for i, p in pods.items()}
    assert len(set(ips.values())) == 3

    async def modes() -> dict[int, str]:
        replies = {i: await fourlw.send(ip, 2181, "srvr") for i, ip in ips.items()}
        return {i: fourlw.parse_srvr(r.text).get("Mode", "") for i, r in replies.items()}

    found = asyncio.run(modes())
    assert sorted(found.values()) == ["follower", "follower", "leader"], found
    for i in (1, 2, 3):
        directory = node_agent.volume_path(ns, f"zk-{i}", "data")
        assert directory is not None and (directory / "myid").read_text().strip() == str(i)
        assert (directory / "version-2").is_dir()  # the member's data is on its volume
