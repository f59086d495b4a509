"""Images to local commands: a table of rules, and the shims the default rules put on PATH.

A rule matches an image reference and says what the "image" would provide: ENTRYPOINT and CMD
(the Pod's ``command`` replaces the entrypoint, its ``args`` the CMD, as with any container
runtime), ENV defaults, directories put first on PATH, and the directories the image has of its
own (each container run gets fresh empty ones there unless a volume is mounted on them). A
program named by an absolute path the machine does not have (``/apache-zookeeper-3.9.3-bin/
bin/zkServer.sh``) is looked up by its base name on the rule's PATH directories.

The default rules:

- ``zookeeper`` (any registry and tag): the local ZooKeeper distribution behind the official
  image's ``docker-entrypoint.sh`` (writes ``zoo.cfg`` from ``ZOO_*`` variables when there is
  none, and ``myid`` from ``ZOO_MY_ID``), ``zkServer.sh`` (``start-foreground [cfg]``,
  ``status``, ``version``, ``print-cmd``) and ``zkCli.sh``; the JVM gets ``SERVER_JVMFLAGS``,
  ``JVMFLAGS`` and ``ZK_SERVER_HEAP`` as upstream's script gives them, plus
  ``-Djdk.net.hosts.file=$ZKOP_HOSTS_FILE`` so that it resolves cluster names;
- a repository ending with ``zkop``: the installed ``zkop`` (this Python environment's) as the
  entrypoint, so the Pod's ``args`` are zkop's arguments;
- ``busybox``, ``alpine``, ``debian``, ``ubuntu``, ``bash``: the machine's own ``/bin/sh`` and
  tools (``sh`` when the Pod gives no command).
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageRef:
    """``[registry/]repository[:tag][@digest]``; ``name`` is the repository's last component."""

    raw: str
    registry: str
    repository: str
    tag: str
    digest: str

    @property
    def name(self) -> str:
        return self.repository.rsplit("/", 1)[-1]

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        rest, _, digest = image.partition("@")
        registry = ""
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, rest = first, remainder
        repository, tag = rest, ""
        if ":" in rest.rsplit("/", 1)[-1]:
            repository, _, tag = rest.rpartition(":")
        return cls(image, registry, repository, tag or ("" if digest else "latest"), digest)


Matcher = Callable[[ImageRef], bool]


@dataclass(frozen=True)
class ImageRule:
    """What an image runs as on this machine.

    ``match`` is a predicate, or a glob matched against the repository's name (``zookeeper``),
    its path (``library/zookeeper``) and the whole reference without tag (``docker.io/x/zkop``).
    """

    match: str | Matcher
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    path: Sequence[str | Path] = ()
    dirs: Sequence[str] = ()
    name: str = ""

    def matches(self, ref: ImageRef) -> bool:
        if callable(self.match):
            return bool(self.match(ref))
        whole = f"{ref.registry}/{ref.repository}" if ref.registry else ref.repository
        return any(fnmatch.fnmatchcase(candidate, self.match) for candidate in (ref.name, ref.repository, whole))

    @property
    def label(self) -> str:
        return self.name or (self.match if isinstance(self.match, str) else getattr(self.match, "__name__", "rule"))


class ImageTable:
    """Rules tried in order; :meth:`add` puts a rule before the others (the caller's rules win)."""

    def __init__(self, rules: Iterable[ImageRule] = ()) -> None:
        self.rules: list[ImageRule] = list(rules)

    def add(self, rule: ImageRule) -> None:
        self.rules.insert(0, rule)

    def find(self, image: str) -> ImageRule | None:
        ref = ImageRef.parse(image)
        for rule in list(self.rules):
            if rule.matches(ref):
                return rule
        return None


class NoCommand(ValueError):
    """Neither the Pod nor the image says what to run."""


def container_argv(rule: ImageRule, command: Sequence[str] | None, args: Sequence[str] | None) -> list[str]:
    """Docker's rule: ``command`` replaces the ENTRYPOINT, ``args`` the CMD (a command alone drops CMD)."""
    argv = [*command, *(args or [])] if command else [*rule.entrypoint, *(args or rule.cmd)]
    if not argv:
        raise NoCommand("no command specified")
    program = argv[0]
    if "/" in program and not os.path.exists(program):
        for directory in rule.path:
            candidate = Path(directory) / os.path.basename(program)
            if candidate.is_file():
                argv[0] = str(candidate)
                break
    return argv


def search_path(rule: ImageRule, env_path: str | None) -> str:
    dirs = [str(p) for p in rule.path]
    return ":".join([*dirs, env_path or DEFAULT_PATH])


# --------------------------------------------------------------------------- shims

_WRAPPER = '#!/bin/sh\nexec {target} "$@"\n'

ZOOKEEPER_SHIM = r'''#!{python} -I
"""zkServer.sh, zkCli.sh and docker-entrypoint.sh of the zookeeper image, run on the local
ZooKeeper distribution. Written by the zkop node agent (zkop.testing.nodeagent)."""

import os
import shlex
import socket
import sys

JAVA = {java!r}
CLASSPATH = {classpath!r}
VERSION = {version!r}
SERVER_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
CLIENT_MAIN = "org.apache.zookeeper.ZooKeeperMain"


def pod_path(path):
    """A path as the Pod sees it: under ZKOP_POD_ROOT when the agent runs without mount namespaces."""
    root = os.environ.get("ZKOP_POD_ROOT")
    if not root or not os.path.isabs(path):
        return path
    inside = os.path.join(root, path.lstrip("/"))
    if os.path.exists(inside):
        return inside
    if os.path.exists(path):
        return path
    # Neither exists yet: the one whose nearest existing parent is deeper.
    def depth(p):
        while not os.path.exists(p):
            p = os.path.dirname(p)
        return len(p)
    return inside if depth(inside) - len(root) >= depth(path) else path


def die(message, code=1):
    sys.stderr.write(message + "\n")
    sys.exit(code)


def read_cfg(path):
    entries = []
    with open(path) as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                entries.append((key.strip(), value.strip()))
    return entries


def translated_cfg(cfg):
    """Without mount namespaces: a copy of cfg whose paths point under the Pod's root."""
    if not os.environ.get("ZKOP_POD_ROOT"):
        return cfg
    lines, changed = [], False
    with open(cfg) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep and key.strip() in ("dataDir", "dataLogDir", "dynamicConfigFile"):
                mapped = pod_path(value.strip())
                if mapped != value.strip():
                    line, changed = key + "=" + mapped + "\n", True
            lines.append(line if line.endswith("\n") else line + "\n")
    if not changed:
        return cfg
    copy = cfg + ".zkop"
    with open(copy, "w") as f:
        f.writelines(lines)
    return copy


def jvm_flags(kind):
    flags = []
    if kind == "server":
        flags.append("-Xmx%sm" % os.environ.get("ZK_SERVER_HEAP", "1000"))
        flags += shlex.split(os.environ.get("SERVER_JVMFLAGS", ""))
    else:
        flags.append("-Xmx%sm" % os.environ.get("ZK_CLIENT_HEAP", "256"))
        flags += shlex.split(os.environ.get("CLIENT_JVMFLAGS", ""))
    flags += shlex.split(os.environ.get("JVMFLAGS", ""))
    hosts = os.environ.get("ZKOP_HOSTS_FILE")
    if hosts:
        flags.append("-Djdk.net.hosts.file=" + hosts)
    return flags


def config_path(conf_dir, name):
    if name is None:
        return os.path.join(conf_dir, "zoo.cfg")
    if "/" in name:
        return name
    return os.path.join(conf_dir, name)


def client_address(cfg):
    entries = dict(read_cfg(cfg))
    port = entries.get("clientPort")
    host = entries.get("clientPortAddress")
    if port is None:
        dynamic = entries.get("dynamicConfigFile")
        sources = [pod_path(dynamic)] if dynamic else []
        sources.append(cfg)
        myid_file = os.path.join(pod_path(entries.get("dataDir", "/data")), "myid")
        try:
            myid = open(myid_file).read().strip()
        except OSError:
            myid = None
        for source in sources:
            try:
                for key, value in read_cfg(source):
                    if myid and key == "server." + myid and ";" in value:
                        client = value.split(";", 1)[1]
                        h, _, p = client.rpartition(":")
                        port, host = p, (h or host)
            except OSError:
                pass
    if host in (None, "", "0.0.0.0"):
        host = os.environ.get("POD_IP") or "localhost"
    return host, int(port or 2181)


def server(argv):
    conf_dir = os.environ.get("ZOOCFGDIR") or "/conf"
    if argv[:1] == ["--config"]:
        if len(argv) < 2:
            die("--config needs a directory")
        conf_dir, argv = argv[1], argv[2:]
    if not argv:
        die("Usage: zkServer.sh [--config <conf-dir>] {{start-foreground|status|version|print-cmd}} [cfg]")
    command, name = argv[0], (argv[1] if len(argv) > 1 else None)
    cfg = pod_path(config_path(pod_path(conf_dir), name))
    if command == "version":
        print("Apache ZooKeeper, version %s" % VERSION)
        return 0
    if command in ("start-foreground", "print-cmd"):
        if not os.path.isfile(cfg):
            die("ZooKeeper config %s not found" % cfg, 2)
        log_dir = pod_path(os.environ.get("ZOO_LOG_DIR", "/logs"))
        java = [
            JAVA,
            "-Dzookeeper.log.dir=" + log_dir,
            "-Dzookeeper.log.file=zookeeper-server.log",
            "-XX:+HeapDumpOnOutOfMemoryError",
            "-XX:OnOutOfMemoryError=kill -9 %p",
            "-cp",
            CLASSPATH,
            *jvm_flags("server"),
            SERVER_MAIN,
            translated_cfg(cfg),
        ]
        if command == "print-cmd":
            print(" ".join(shlex.quote(a) for a in java))
            return 0
        sys.stderr.write("ZooKeeper JMX disabled by the zkop node agent\nUsing config: %s\n" % cfg)
        sys.stderr.flush()
        os.execv(JAVA, java)
    if command == "status":
        if not os.path.isfile(cfg):
            die("ZooKeeper config %s not found" % cfg, 2)
        host, port = client_address(cfg)
        print("Client port found: %d. Client address: %s. Client SSL: false." % (port, host))
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(b"srvr")
                reply = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
        except OSError:
            die("Error contacting service. It is probably not running.")
        for line in reply.decode(errors="replace").splitlines():
            if line.startswith("Mode:"):
                print(line)
                return 0
        die("Error contacting service. It is probably not running.")
    die("zkServer.sh %s is not supported by the zkop node agent's image shim" % command)


def client(argv):
    java = [JAVA, "-cp", CLASSPATH, *jvm_flags("client"), CLIENT_MAIN, *argv]
    os.execv(JAVA, java)


IMAGE_DEFAULTS = {{
    "ZOO_TICK_TIME": "2000",
    "ZOO_INIT_LIMIT": "5",
    "ZOO_SYNC_LIMIT": "2",
    "ZOO_AUTOPURGE_SNAPRETAINCOUNT": "3",
    "ZOO_AUTOPURGE_PURGEINTERVAL": "0",
    "ZOO_MAX_CLIENT_CNXNS": "60",
    "ZOO_STANDALONE_ENABLED": "true",
    "ZOO_ADMINSERVER_ENABLED": "true",
}}


def entrypoint(argv):
    env = {{**IMAGE_DEFAULTS, **os.environ}}
    conf_dir = pod_path(env.get("ZOO_CONF_DIR", "/conf"))
    data_dir = pod_path(env.get("ZOO_DATA_DIR", "/data"))
    config = os.path.join(conf_dir, "zoo.cfg")
    if not os.path.isfile(config):
        lines = [
            "dataDir=" + env.get("ZOO_DATA_DIR", "/data"),
            "dataLogDir=" + env.get("ZOO_DATA_LOG_DIR", "/datalog"),
            "tickTime=" + env["ZOO_TICK_TIME"],
            "initLimit=" + env["ZOO_INIT_LIMIT"],
            "syncLimit=" + env["ZOO_SYNC_LIMIT"],
            "autopurge.snapRetainCount=" + env["ZOO_AUTOPURGE_SNAPRETAINCOUNT"],
            "autopurge.purgeInterval=" + env["ZOO_AUTOPURGE_PURGEINTERVAL"],
            "maxClientCnxns=" + env["ZOO_MAX_CLIENT_CNXNS"],
            "standaloneEnabled=" + env["ZOO_STANDALONE_ENABLED"],
            "admin.enableServer=" + env["ZOO_ADMINSERVER_ENABLED"],
        ]
        lines += (env.get("ZOO_SERVERS") or "server.1=localhost:2888:3888;2181").split()
        if env.get("ZOO_4LW_COMMANDS_WHITELIST"):
            lines.append("4lw.commands.whitelist=" + env["ZOO_4LW_COMMANDS_WHITELIST"])
        lines += (env.get("ZOO_CFG_EXTRA") or "").split()
        os.makedirs(conf_dir, exist_ok=True)
        with open(config, "a") as f:
            f.write("\n".join(lines) + "\n")
    myid = os.path.join(data_dir, "myid")
    if not os.path.isfile(myid):
        os.makedirs(data_dir, exist_ok=True)
        with open(myid, "w") as f:
            f.write(env.get("ZOO_MY_ID", "1") + "\n")
    if not argv:
        die("docker-entrypoint.sh: nothing to run")
    os.execvp(argv[0], argv)


def main():
    me = os.path.basename(sys.argv[0])
    if me.startswith("zkCli"):
        client(sys.argv[1:])
    elif me.startswith("docker-entrypoint"):
        entrypoint(sys.argv[1:])
    else:
        sys.exit(server(sys.argv[1:]))


main()
'''


def _write_exec(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def write_zookeeper_shims(bin_dir: Path) -> None:
    """The zookeeper image's scripts, backed by :func:`zkop.zk.distribution.locate`."""
    from zkop.zk.distribution import locate

    dist = locate()
    bin_dir.mkdir(parents=True, exist_ok=True)
    text = ZOOKEEPER_SHIM.format(
        python=sys.executable, java=dist.java, classpath=dist.classpath_str(), version=dist.version
    )
    _write_exec(bin_dir / "zkServer.sh", text)
    for alias in ("zkCli.sh", "docker-entrypoint.sh"):
        link = bin_dir / alias
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to("zkServer.sh")


def write_zkop_shims(bin_dir: Path) -> None:
    """``zkop``, ``python`` and ``python3`` of this Python environment (wrappers, not symlinks:
    a symlinked venv python would not find its environment)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    here = Path(sys.executable).parent
    zkop = here / "zkop"
    target = str(zkop) if zkop.is_file() else (shutil.which("zkop") or "zkop")
    _write_exec(bin_dir / "zkop", _WRAPPER.format(target=shlex.quote(target)))
    for name in ("python", "python3"):
        _write_exec(bin_dir / name, _WRAPPER.format(target=shlex.quote(sys.executable)))


ZOOKEEPER_ENV = {
    "ZOO_CONF_DIR": "/conf",
    "ZOO_DATA_DIR": "/data",
    "ZOO_DATA_LOG_DIR": "/datalog",
    "ZOO_LOG_DIR": "/logs",
    "ZOOCFGDIR": "/conf",
    "ZOO_TICK_TIME": "2000",
    "ZOO_INIT_LIMIT": "5",
    "ZOO_SYNC_LIMIT": "2",
    "ZOO_AUTOPURGE_PURGEINTERVAL": "0",
    "ZOO_AUTOPURGE_SNAPRETAINCOUNT": "3",
    "ZOO_MAX_CLIENT_CNXNS": "60",
    "ZOO_STANDALONE_ENABLED": "true",
    "ZOO_ADMINSERVER_ENABLED": "true",
}

SHELL_IMAGES = ("busybox", "alpine", "debian", "ubuntu", "bash")


def default_rules(shim_root: Path) -> list[ImageRule]:
    """The default table; writes the shims under ``shim_root`` (``zookeeper/``, ``zkop/``)."""
    rules: list[ImageRule] = []
    zk_bin = shim_root / "zookeeper" / "bin"
    try:
        write_zookeeper_shims(zk_bin)
    except Exception as e:  # no ZooKeeper or Java here: the image stays unknown, with the reason
        import logging

        logging.getLogger("zkop.testing.nodeagent").warning("no zookeeper image: %s", e)
    else:
        rules.append(
            ImageRule(
                "zookeeper",
                entrypoint=("docker-entrypoint.sh",),
                cmd=("zkServer.sh", "start-foreground"),
                env=ZOOKEEPER_ENV,
                path=(zk_bin,),
                dirs=("/conf", "/data", "/datalog", "/logs"),
                name="zookeeper",
            )
        )
    zkop_bin = shim_root / "zkop" / "bin"
    write_zkop_shims(zkop_bin)
    rules.append(ImageRule("*zkop", entrypoint=("zkop",), path=(zkop_bin,), name="zkop"))
    for shell in SHELL_IMAGES:
        rules.append(ImageRule(shell, cmd=("sh",), name=shell))
    return rules
