"""Pod addresses on loopback, wildcard binds kept to the Pod's address, and cluster DNS as hosts files.

- :class:`AddressPool` hands out 127.0.0.N addresses machine-wide: an address is held by an
  exclusive ``flock`` on a file in a shared directory for as long as its Pod lives, so agents of
  different test runs on one machine never hand out the same one, and an agent that dies
  releases its addresses with its file descriptors. The free address released longest ago is
  taken first.
- The *bind shim* is a tiny ``LD_PRELOAD`` library, compiled once with the machine's C compiler:
  a ``bind()`` to the wildcard address (0.0.0.0, or :: on a dual-stack socket) binds the Pod's
  address instead (``ZKOP_POD_IP``), so every Pod can listen on the standard ports as on a real
  cluster. (An IPv6-only socket's wildcard bind goes to an ephemeral port of ::1, out of the way.)
- :func:`cluster_hosts` turns Pods and Services into hosts-file records as cluster DNS would
  answer them; :func:`resolve` reads a hosts file (``ZKOP_HOSTS_FILE``) and
  :func:`use_hosts_file` makes this process's own resolver consult it first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zkop.testing.nodeagent.kube import Obj, meta

log = logging.getLogger("zkop.testing.nodeagent")

HOSTS_FILE_ENV = "ZKOP_HOSTS_FILE"
CLUSTER_DOMAIN = "cluster.local"


# --------------------------------------------------------------------------- addresses


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "zkop-nodeagent" / "addresses"


class AddressPool:
    """Loopback addresses for Pods, held machine-wide by file locks."""

    def __init__(self, network: str = "127.0.0.0/24", lock_dir: Path | None = None) -> None:
        net = ipaddress.ip_network(network)
        if not net.is_loopback:
            raise ValueError(f"{network} is not a loopback network")
        first = net.network_address + 1  # 127.0.0.1 is the host's own address
        self.candidates = [str(a) for a in net.hosts() if a != first]
        self.lock_dir = lock_dir or default_lock_dir()
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def _dir(self) -> Path:
        if not self.lock_dir.is_dir():
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                os.chmod(self.lock_dir, 0o1777)
                os.chmod(self.lock_dir.parent, 0o1777)
        return self.lock_dir

    def allocate(self, owner: str) -> str:
        """The free address released longest ago, held until :meth:`release`."""
        directory = self._dir()

        def released_at(address: str) -> float:
            try:
                return (directory / address).stat().st_mtime
            except OSError:
                return 0.0

        with self._lock:
            for address in sorted((a for a in self.candidates if a not in self._held), key=released_at):
                path = directory / address
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
                except OSError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"{owner} pid={os.getpid()}\n".encode())
                self._held[address] = fd
                return address
        raise RuntimeError(f"no free Pod address left in {self.candidates[0]}..{self.candidates[-1]}")

    def release(self, address: str) -> None:
        with self._lock:
            fd = self._held.pop(address, None)
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.utime(self.lock_dir / address)  # "released now": reused last
        os.close(fd)  # drops the lock

    def release_all(self) -> None:
        for address in list(self._held):
            self.release(address)

    @property
    def held(self) -> list[str]:
        return sorted(self._held)


# --------------------------------------------------------------------------- bind shim

BIND_SHIM_SOURCE = r"""
/* zkop node agent: bind() to the wildcard address binds the Pod's own address (ZKOP_POD_IP). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    const char *ip = getenv("ZKOP_POD_IP");
    struct in_addr pod;
    if (ip == NULL || addr == NULL || inet_pton(AF_INET, ip, &pod) != 1) return real_bind(fd, addr, len);
    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr != htonl(INADDR_ANY)) return real_bind(fd, addr, len);
        a.sin_addr = pod;
        return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    }
    if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (!IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) return real_bind(fd, addr, len);
        int v6only = 0;
        socklen_t optlen = sizeof v6only;
        if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen) == 0 && v6only) {
            /* IPv6 only: nobody reaches it (Pod names resolve to IPv4); keep it out of the way. */
            a.sin6_addr = in6addr_loopback;
            a.sin6_port = 0;
        } else {
            memset(&a.sin6_addr, 0, sizeof a.sin6_addr);
            a.sin6_addr.s6_addr[10] = 0xff;
            a.sin6_addr.s6_addr[11] = 0xff;
            memcpy(&a.sin6_addr.s6_addr[12], &pod, 4);
        }
        return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    }
    return real_bind(fd, addr, len);
}
"""


def bind_shim(cache: Path | None = None) -> Path | None:
    """The compiled bind shim (built once per source into ``cache``); None without a C compiler."""
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zkop" / "nodeagent"
    digest = hashlib.sha256(BIND_SHIM_SOURCE.encode()).hexdigest()[:12]
    target = cache / f"bindshim-{digest}.so"
    if target.is_file():
        return target
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        log.warning("no C compiler: Pods binding the wildcard address share ports (install gcc)")
        return None
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        src = Path(tmp) / "bindshim.c"
        src.write_text(BIND_SHIM_SOURCE)
        out = Path(tmp) / "bindshim.so"
        result = subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(src), "-ldl"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            log.warning("the bind shim did not compile: %s", result.stderr.strip())
            return None
        os.replace(out, target)
    return target


# --------------------------------------------------------------------------- cluster DNS


@dataclass(frozen=True)
class HostRecord:
    """Addresses of one name, with the other names it also answers to (``aliases``)."""

    name: str
    addresses: tuple[str, ...]
    namespace: str
    relative: tuple[str, ...]  # names that resolve only inside ``namespace`` (the search path)
    aliases: tuple[str, ...] = ()


def _selects(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pod_ready(pod: Obj) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def pod_ip(pod: Obj) -> str | None:
    ip: str | None = (pod.get("status") or {}).get("podIP")
    return ip or None


def _serving(pod: Obj, publish_not_ready: bool) -> bool:
    """Whether a Pod is an endpoint of a Service that selects it (as the endpoint controller decides)."""
    if not pod_ip(pod):
        return False
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return False
    if publish_not_ready:
        return True
    return meta(pod).get("deletionTimestamp") is None and pod_ready(pod)


def cluster_hosts(pods: Iterable[Obj], services: Iterable[Obj], domain: str = CLUSTER_DOMAIN) -> list[HostRecord]:
    """What cluster DNS would answer, as records for a hosts file.

    - ``<svc>.<ns>.svc.<domain>`` (and ``<svc>.<ns>.svc``, ``<svc>.<ns>``) for a Service with a
      selector: the addresses of the Pods it selects that are ready (all of them with
      ``publishNotReadyAddresses``). For a headless Service that is what DNS answers; for a
      ClusterIP Service it stands in for kube-proxy (the ClusterIP itself is not routed here).
    - ``<hostname>.<svc>.<ns>.svc.<domain>`` for each such Pod that has ``hostname`` and
      ``subdomain: <svc>``, when the Service is headless.
    """
    by_ns: dict[str, list[Obj]] = {}
    for pod in pods:
        by_ns.setdefault(meta(pod).get("namespace") or "", []).append(pod)
    records: list[HostRecord] = []
    for svc in sorted(services, key=lambda s: (meta(s).get("namespace") or "", meta(s).get("name") or "")):
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            continue
        ns, name = meta(svc).get("namespace") or "", meta(svc).get("name") or ""
        publish = bool(spec.get("publishNotReadyAddresses"))
        selected = [
            p
            for p in by_ns.get(ns, [])
            if _selects(spec.get("selector"), meta(p).get("labels")) and _serving(p, publish)
        ]
        selected.sort(key=lambda p: meta(p).get("name") or "")
        fqdn = f"{name}.{ns}.svc.{domain}"
        addresses = tuple(dict.fromkeys(ip for p in selected if (ip := pod_ip(p))))
        if addresses:
            records.append(HostRecord(fqdn, addresses, ns, (name,), (f"{name}.{ns}.svc", f"{name}.{ns}")))
        if spec.get("clusterIP") != "None":
            continue
        for p in selected:
            pspec = p.get("spec") or {}
            hostname, ip = pspec.get("hostname"), pod_ip(p)
            if hostname and pspec.get("subdomain") == name and ip:
                records.append(
                    HostRecord(
                        f"{hostname}.{fqdn}",
                        (ip,),
                        ns,
                        (f"{hostname}.{name}",),
                        (f"{hostname}.{name}.{ns}.svc", f"{hostname}.{name}.{ns}"),
                    )
                )
    return records


def machine_hosts_lines(path: Path = Path("/etc/hosts")) -> list[str]:
    """The machine's hosts entries without its ``localhost`` names (a Pod's localhost is its own)."""
    lines: list[str] = []
    try:
        text = path.read_text()
    except OSError:
        return lines
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        names = [n for n in fields[1:] if n.lower() not in ("localhost", "localhost.localdomain")]
        if names:
            lines.append("\t".join([fields[0], *names]))
    return lines


def render_hosts(
    records: Iterable[HostRecord],
    *,
    header: str,
    machine: Iterable[str],
    own: tuple[str, list[str]] | None = None,
    namespace: str | None = None,
) -> str:
    """A hosts file. ``own`` is a Pod's ``(address, names)``: its localhost and hostname lines;
    ``namespace`` adds the names relative to it (what a Pod's DNS search path would complete)."""
    out = [f"# {header}", "# Written by the zkop node agent (zkop.testing.nodeagent); rewritten as Pods change."]
    if own is not None:
        address, names = own
        out.append(f"{address}\tlocalhost")
        if names:
            out.append("\t".join([address, *names]))
    else:
        out.append("127.0.0.1\tlocalhost")
    out.append("::1\tip6-localhost ip6-loopback")
    out.extend(machine)
    for r in records:
        names = [r.name, *r.aliases]
        if namespace is not None and r.namespace == namespace:
            names.extend(r.relative)
        for address in r.addresses:
            out.append("\t".join([address, *names]))
    return "\n".join(out) + "\n"


def write_in_place(path: Path, text: str) -> bool:
    """Rewrite ``path`` keeping its inode (it may be bind-mounted over a Pod's /etc/hosts)."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return True


def write_atomically(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def read_hosts(path: str | Path) -> dict[str, list[str]]:
    """name (lower case) → addresses, in file order."""
    table: dict[str, list[str]] = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return table
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        for name in fields[1:]:
            addresses = table.setdefault(name.lower().rstrip("."), [])
            if fields[0] not in addresses:
                addresses.append(fields[0])
    return table


def resolve(name: str, hosts_file: str | Path | None = None) -> list[str]:
    """The addresses of ``name`` in a node agent's hosts file (``ZKOP_HOSTS_FILE`` when not given).

    Empty when the name is unknown (or no hosts file is set).
    """
    path = hosts_file or os.environ.get(HOSTS_FILE_ENV)
    if not path:
        return []
    return read_hosts(path).get(name.lower().rstrip("."), [])


_real_getaddrinfo = socket.getaddrinfo
_resolver_lock = threading.Lock()
_resolver_files: list[Path] = []


def _hosts_getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
    if isinstance(host, bytes):
        host = host.decode()
    if isinstance(host, str) and family in (0, socket.AF_INET):
        for path in list(_resolver_files):
            addresses = resolve(host, path)
            if addresses:
                results: list[Any] = []
                for address in addresses:
                    results.extend(_real_getaddrinfo(address, port, socket.AF_INET, type, proto, flags))
                return results
    return _real_getaddrinfo(host, port, family, type, proto, flags)


@contextlib.contextmanager
def use_hosts_file(path: str | Path | None = None) -> Iterator[Path]:
    """While inside, this process resolves names through ``path`` first (``ZKOP_HOSTS_FILE`` when
    not given), then as usual: ``socket.getaddrinfo`` (which kazoo, asyncio and httpx use) is
    wrapped, process-wide."""
    chosen = path or os.environ.get(HOSTS_FILE_ENV)
    if not chosen:
        raise ValueError(f"no hosts file: pass one or set {HOSTS_FILE_ENV}")
    entry = Path(chosen)
    with _resolver_lock:
        _resolver_files.append(entry)
        socket.getaddrinfo = _hosts_getaddrinfo
    try:
        yield entry
    finally:
        with _resolver_lock:
            _resolver_files.remove(entry)
            if not _resolver_files:
                socket.getaddrinfo = _real_getaddrinfo
