"""A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager.

The binaries are built from their published Go modules by ``tools/kube/build.sh`` (pinned
versions, cached outside the checkout); there is no kubelet, so Pods are stored but never run.
Everything listens on free ports on 127.0.0.1 only::

    with ControlPlane() as cp:
        cp.kubectl("create", "namespace", "demo")
        print(cp.kubectl("get", "namespaces", "-o", "name").stdout)

What is started:

- etcd, data in the control plane's directory (no fsync: a test bed, not a store to keep);
- kube-apiserver with ``--authorization-mode=Node,RBAC``, an admin client certificate
  (``O=system:masters``, in the generated kubeconfig) and an admin static token, a CA of its own,
  ServiceAccount signing keys (so TokenRequest and ServiceAccount tokens work);
- kube-controller-manager with all its default controllers (garbage collector, namespace
  lifecycle, ServiceAccount and its tokens, Deployments, ReplicaSets, Jobs, ...), each with
  its own ServiceAccount credentials.

Every process is stopped by the pid it was started with (SIGTERM, then SIGKILL after a grace
period), also when startup fails half way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from zkop.zk.certs import CertificateAuthority, Issued

__all__ = [
    "KUBERNETES_VERSION",
    "ControlPlane",
    "KubeBinaries",
    "KubeBuildError",
    "KubeError",
    "KubeToolsMissing",
    "build_binaries",
    "cache_dir",
    "ensure_binaries",
    "find_binaries",
    "tools_dir",
]

#: The Kubernetes version pinned in tools/kube/go.mod (a test checks that they agree).
KUBERNETES_VERSION = "v1.34.4"

#: A cluster CIDR inside the loopback range: ClusterIPs are only allocated, never routed.
SERVICE_CLUSTER_IP_RANGE = "127.96.0.0/16"

ADMIN_USER = "zkop-admin"
ADMIN_GROUP = "system:masters"

T = TypeVar("T")


class KubeError(RuntimeError):
    """The test control plane could not be started or used."""


class KubeToolsMissing(KubeError):
    """The control plane's binaries are not built (run ``tools/kube/build.sh``)."""


class KubeBuildError(KubeError):
    """``tools/kube/build.sh`` failed; ``output`` holds what it printed, the Go error included."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}\n{output}")
        self.output = output


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class KubeBinaries:
    """Paths of the test bed's executables (one directory, as build.sh lays it out)."""

    bin_dir: Path

    NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")

    def path(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def etcd(self) -> Path:
        return self.path("etcd")

    @property
    def kube_apiserver(self) -> Path:
        return self.path("kube-apiserver")

    @property
    def kube_controller_manager(self) -> Path:
        return self.path("kube-controller-manager")

    @property
    def kubectl(self) -> Path:
        return self.path("kubectl")

    @property
    def helm(self) -> Path:
        return self.path("helm")

    def missing(self) -> list[str]:
        return [n for n in self.NAMES if not os.access(self.path(n), os.X_OK)]


def tools_dir() -> Path | None:
    """``tools/kube`` of the zkop checkout this module runs from, or None (an installed zkop)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "tools" / "kube"
        if (candidate / "build.sh").is_file() and (candidate / "go.mod").is_file():
            return candidate
    return None


def pinned_kubernetes_version(tools: Path | None = None) -> str:
    """The k8s.io/kubernetes version in tools/kube/go.mod, else :data:`KUBERNETES_VERSION`."""
    tools = tools or tools_dir()
    if tools is not None:
        match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", (tools / "go.mod").read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    return KUBERNETES_VERSION


def cache_dir() -> Path:
    """Where build.sh puts its builds: ``$ZKOP_KUBE_CACHE`` or ``~/.cache/zkop/kube``."""
    env = os.environ.get("ZKOP_KUBE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "zkop" / "kube"


def find_binaries() -> KubeBinaries:
    """The built binaries: ``$ZKOP_KUBE_BIN`` if set, else the cache for the pinned version.

    Raises :class:`KubeToolsMissing` when any of them is not there.
    """
    env = os.environ.get("ZKOP_KUBE_BIN")
    bins = KubeBinaries(Path(env) if env else cache_dir() / pinned_kubernetes_version() / "bin")
    missing = bins.missing()
    if missing:
        how = "" if env else " (make kube-tools, or tools/kube/build.sh)"
        raise KubeToolsMissing(f"{', '.join(missing)} not found in {bins.bin_dir}{how}")
    return bins


def build_binaries(output: IO[str] | None = None, timeout: float = 3600.0) -> KubeBinaries:
    """Run ``tools/kube/build.sh`` (a no-op when the pinned build is there already).

    Its progress is copied line by line to ``output`` as it comes. Raises
    :class:`KubeBuildError` with everything it printed when it fails.
    """
    tools = tools_dir()
    if tools is None:
        raise KubeToolsMissing("tools/kube/build.sh not found: zkop does not run from its checkout")
    proc = subprocess.Popen(
        ["bash", str(tools / "build.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    # On SIGTERM build.sh stops its `go build` (by pid) and removes its work directory.
    timer = threading.Timer(timeout, proc.terminate)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if output is not None:
                output.write(line)
                output.flush()
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # interrupted (e.g. Ctrl-C)
            _Process("build.sh", proc, Path(os.devnull)).stop(10.0)
    text = "".join(lines)
    if code != 0:
        why = f"timed out after {timeout:.0f}s" if time.monotonic() >= deadline else f"exited with {code}"
        raise KubeBuildError(f"tools/kube/build.sh {why}", text)
    bin_dir = Path(lines[-1].strip()) if lines else None
    if bin_dir is None or not bin_dir.is_dir():
        raise KubeBuildError("tools/kube/build.sh did not name its bin directory", text)
    return KubeBinaries(bin_dir)


def ensure_binaries(output: IO[str] | None = None) -> KubeBinaries:
    """The binaries, built first when needed.

    With ``$ZKOP_KUBE_BIN`` set they are taken from there as they are. Otherwise, in a
    checkout, build.sh runs every time (it returns at once when the stamp of the pinned
    versions and sources matches), so a changed pin is never served a stale build.
    """
    if os.environ.get("ZKOP_KUBE_BIN") or tools_dir() is None:
        return find_binaries()
    return build_binaries(output)


# --------------------------------------------------------------------------- certificates


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_PKI_VALIDITY = 7 * 24 * 3600  # seconds: a test bed lives minutes, a kept one a few days


def _write_pem(pki: Path, stem: str, issued: Issued | CertificateAuthority) -> None:
    """``stem.crt`` and ``stem.key`` (readable by the owner only), as kubeadm lays them out."""
    (pki / f"{stem}.crt").write_text(issued.cert_pem)
    key = pki / f"{stem}.key"
    key.write_text(issued.key_pem)
    key.chmod(0o600)


# --------------------------------------------------------------------------- processes


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when the thread that started it
    ends (Linux ``prctl(PR_SET_PDEATHSIG)``): a test run killed with SIGKILL leaves no control
    plane behind. None where that is not available. libc is loaded here, in the parent; the
    child only makes the call."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None  # the signal follows the starting thread, not the process: main thread only
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)

    return preexec


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen[Any]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float) -> None:
        """SIGTERM this pid, SIGKILL it if still there after ``grace`` seconds, and reap it."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()


def _poll(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    processes: tuple[_Process, ...] = (),
    interval: float = 0.1,
) -> T:
    """Call ``check`` until it returns something other than None; fail early if a process exits."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        for p in processes:
            if not p.running():
                raise KubeError(f"{p.name} exited with {p.proc.returncode} while {what}:\n{p.log_tail()}")
        try:
            result = check()
        except Exception as e:
            result = None
            last_error = f" (last: {e})"
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            tails = "".join(f"\n--- {p.name} ---\n{p.log_tail()}" for p in processes)
            raise KubeError(f"timed out after {timeout:.0f}s {what}{last_error}{tails}")
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)


# --------------------------------------------------------------------------- control plane


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager on free ports of 127.0.0.1.

    ``root`` (a new temporary directory when not given) holds the certificates, the
    kubeconfig, etcd's data and one log file per process. A root this class created is
    removed on :meth:`stop` unless ``ZKOP_KUBE_KEEP=1``.
    """

    def __init__(
        self,
        root: Path | None = None,
        binaries: KubeBinaries | None = None,
        *,
        start_timeout: float = 120.0,
        stop_grace: float = 10.0,
    ) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="zkop-kube-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        self._binaries = binaries
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.admin_token = secrets.token_urlsafe(32)
        self.etcd_port = 0
        self.apiserver_port = 0
        self.controller_manager_port = 0
        self._processes: list[_Process] = []
        self._started = False

    # ---- paths and addresses

    @property
    def binaries(self) -> KubeBinaries:
        if self._binaries is None:
            self._binaries = find_binaries()
        return self._binaries

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig for the admin (client certificate, ``O=system:masters``)."""
        return self.root / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def server(self) -> str:
        """The API server's URL, ``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def pids(self) -> dict[str, int]:
        """The pid of every process this control plane started and that still runs."""
        return {p.name: p.pid for p in self._processes if p.running()}

    # ---- lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the three processes and wait until the API server is ready and the
        controller manager serves. On any failure everything started so far is stopped."""
        if self._started:
            raise KubeError("control plane already started")
        self._started = True
        try:
            binaries = self.binaries  # fails before anything runs when they are missing
            self.log_dir.mkdir(exist_ok=True)
            self._write_pki()
            attempts = 3
            for attempt in range(1, attempts + 1):
                try:
                    self._start_etcd(binaries)
                    self._start_apiserver(binaries)
                    self._start_controller_manager(binaries)
                    return
                except KubeError as e:
                    # A free port is picked before the process binds it: another may take it first.
                    if attempt == attempts or "address already in use" not in str(e):
                        raise
                    self._stop_processes()
                    shutil.rmtree(self.root / "etcd", ignore_errors=True)
        except BaseException:
            self.stop()
            raise

    def _stop_processes(self) -> None:
        for p in reversed(self._processes):
            p.stop(self.stop_grace)
        self._processes.clear()

    def stop(self) -> None:
        """Stop every process this control plane started, newest first, by pid."""
        self._stop_processes()
        if self._own_root and os.environ.get("ZKOP_KUBE_KEEP") != "1":
            shutil.rmtree(self.root, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self._env(),
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
            )
        p = _Process(name, proc, log)
        self._processes.append(p)
        return p

    def _write_pki(self) -> None:
        pki = self.pki_dir
        pki.mkdir(exist_ok=True)
        ca = CertificateAuthority.create("zkop-test-ca", validity=_PKI_VALIDITY)
        _write_pem(pki, "ca", ca)
        service_ip = str(next(ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE).hosts()))
        apiserver = ca.issue(
            "kube-apiserver",
            validity=_PKI_VALIDITY,
            server=True,
            client=False,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", service_ip),
        )
        _write_pem(pki, "apiserver", apiserver)
        for stem, user, group in (
            ("admin", ADMIN_USER, ADMIN_GROUP),
            ("controller-manager", "system:kube-controller-manager", None),
        ):
            _write_pem(pki, stem, ca.issue(user, validity=_PKI_VALIDITY, server=False, organization=group))
        # The aggregation layer's front proxy: its own CA, as kubeadm lays it out. With it the
        # apiserver publishes the requestheader settings that delegated authentication reads.
        proxy_ca = CertificateAuthority.create("zkop-test-front-proxy-ca", validity=_PKI_VALIDITY)
        (pki / "front-proxy-ca.crt").write_text(proxy_ca.cert_pem)
        _write_pem(
            pki, "front-proxy-client", proxy_ca.issue("front-proxy-client", validity=_PKI_VALIDITY, server=False)
        )
        # The service accounts' signing key: a key pair, no certificate.
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (pki / "sa.key").write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (pki / "sa.key").chmod(0o600)
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        tokens = pki / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER}-token,{ADMIN_USER}-token,"{ADMIN_GROUP}"\n')
        tokens.chmod(0o600)

    def _write_kubeconfig(self, path: Path, user: str, cert: Path | None = None, key: Path | None = None) -> None:
        auth: dict[str, Any] = {}
        if cert is not None and key is not None:
            auth = {"client-certificate": str(cert), "client-key": str(key)}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "zkop-test", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": user, "user": auth}],
            "contexts": [{"name": "zkop-test", "context": {"cluster": "zkop-test", "user": user}}],
            "current-context": "zkop-test",
        }
        path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        path.chmod(0o600)

    def _start_etcd(self, binaries: KubeBinaries) -> None:
        self.etcd_port, peer_port = _free_port(), _free_port()
        peer = f"http://127.0.0.1:{peer_port}"
        p = self._spawn(
            "etcd",
            [
                str(binaries.etcd),
                "--name=zkop-test",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=zkop-test={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool | None:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:
                return True if json.loads(r.read()).get("health") == "true" else None

        _poll("waiting for etcd's /health", healthy, self.start_timeout, (p,))

    def _start_apiserver(self, binaries: KubeBinaries) -> None:
        self.apiserver_port = _free_port()
        pki = self.pki_dir
        p = self._spawn(
            "kube-apiserver",
            [
                str(binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                "--allow-privileged=true",
                "--profiling=false",
                # The "kubernetes" Service gets no Endpoints: an Endpoints address may not be loopback.
                "--endpoint-reconciler-type=none",
            ],
        )
        _poll("waiting for kube-apiserver's /readyz", lambda: self._ready("/readyz"), self.start_timeout, (p,))
        self._write_kubeconfig(self.kubeconfig, ADMIN_USER, pki / "admin.crt", pki / "admin.key")
        self._write_kubeconfig(
            self.root / "controller-manager.kubeconfig",
            "system:kube-controller-manager",
            pki / "controller-manager.crt",
            pki / "controller-manager.key",
        )
        self._write_kubeconfig(self.root / "anonymous.kubeconfig", "anonymous")

    def _start_controller_manager(self, binaries: KubeBinaries) -> None:
        self.controller_manager_port = _free_port()
        pki = self.pki_dir
        kubeconfig = self.root / "controller-manager.kubeconfig"
        cert_dir = self.root / "controller-manager-certs"
        cert_dir.mkdir(exist_ok=True)
        p = self._spawn(
            "kube-controller-manager",
            [
                str(binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--cert-dir={cert_dir}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--profiling=false",
            ],
        )
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # its serving certificate is self-signed

        def healthy() -> bool | None:
            url = f"https://127.0.0.1:{self.controller_manager_port}/healthz"
            with urllib.request.urlopen(url, timeout=2, context=context) as r:
                return True if r.status == 200 else None

        _poll("waiting for kube-controller-manager's /healthz", healthy, self.start_timeout, (p,))
        # The ServiceAccount controller creates "default" in every namespace: once it is there
        # in "default", the controllers are running, not only serving health checks.
        _poll(
            "waiting for the default ServiceAccount",
            lambda: True if self.request("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200 else None,
            self.start_timeout,
            tuple(self._processes),
        )

    # ---- using it

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, str]:
        """One HTTPS request to the API server with a bearer token (the admin's by default).

        Returns the status code and the body; an HTTP error status is returned, not raised.
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def _ready(self, path: str) -> bool | None:
        status, _ = self.request(path, timeout=5)
        return True if status == 200 else None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "HELM_"))}
        home = self.root / "home"
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            KUBECACHEDIR=str(home / "kube-cache"),
            KUBERC="off",
            HELM_CACHE_HOME=str(home / "helm-cache"),
            HELM_CONFIG_HOME=str(home / "helm-config"),
            HELM_DATA_HOME=str(home / "helm-data"),
        )
        return env

    def _run(
        self,
        argv: list[str],
        input: str | None,
        check: bool,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubeError(
                f"{' '.join(argv)} exited with {result.returncode}:\n{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        token: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane, as the admin, or with ``token`` only.

        Raises :class:`KubeError` with its stderr when it fails, unless ``check=False``.
        """
        if token is None:
            auth = [f"--kubeconfig={self.kubeconfig}"]
        else:
            auth = [f"--kubeconfig={self.root / 'anonymous.kubeconfig'}", f"--token={token}"]
        return self._run([str(self.binaries.kubectl), *auth, *args], input, check, timeout)

    def kubectl_json(self, *args: str, token: str | None = None) -> Any:
        """``kubectl ... -o json``, decoded."""
        return json.loads(self.kubectl(*args, "-o", "json", token=token).stdout)

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this control plane as the admin (its caches under the root)."""
        return self._run([str(self.binaries.helm), f"--kubeconfig={self.kubeconfig}", *args], input, check, timeout)

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
        """Poll ``check`` until it returns something other than None (bounded; fails with ``what``)."""
        return _poll(what, check, timeout, tuple(self._processes))


@contextlib.contextmanager
def running_control_plane(root: Path | None = None, *, build: bool = True) -> Iterator[ControlPlane]:
    """A started :class:`ControlPlane` (binaries built first when ``build``), stopped on exit."""
    binaries = ensure_binaries(sys.stderr) if build else find_binaries()
    with ControlPlane(root, binaries) as cp:
        yield cp
