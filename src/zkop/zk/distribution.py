"""Locate an Apache ZooKeeper distribution and a Java runtime.

Two layouts are understood:
- a release tarball (``ZOOKEEPER_HOME`` with ``lib/*.jar`` and ``conf/``),
- Debian's packages (``/usr/share/java/zookeeper.jar``, whose manifest lists its
  own dependencies, so the class path stays minimal and the JVM starts fast).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from zkop.errors import ConfigurationError

DEBIAN_JAR = Path("/usr/share/java/zookeeper.jar")
# Debian ships slf4j bindings separately; slf4j-simple sends server logs to stderr,
# which the supervisor captures in the member's log file.
DEBIAN_LOG_BINDING = Path("/usr/share/java/slf4j-simple.jar")
# Netty's TLS handler needs its codec (and resolver), which the manifest of Debian's
# zookeeper.jar does not list: without them the secure client port drops every connection.
DEBIAN_NETTY_EXTRA = tuple(
    Path("/usr/share/java") / name
    for name in ("netty-codec.jar", "netty-resolver.jar", "netty-transport-native-unix-common.jar")
)

INSTALL_HINT = (
    "install Apache ZooKeeper: `apt-get install zookeeper` on Debian, or set ZOOKEEPER_HOME to an unpacked release"
)


@dataclass(frozen=True)
class Distribution:
    """A ZooKeeper install and the Java that runs it."""

    home: Path
    classpath: tuple[str, ...]
    version: str
    java: str
    layout: str  # "tarball" | "debian"
    jvm_flags: tuple[str, ...] = field(default=())

    def classpath_str(self, conf_dir: Path | None = None) -> str:
        parts = list(self.classpath)
        if conf_dir is not None:
            parts.insert(0, str(conf_dir))
        return os.pathsep.join(parts)


def find_java() -> str:
    """The java executable: $JAVA_HOME/bin/java, else java on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise ConfigurationError(
            "Java was not found (no JAVA_HOME and no `java` on PATH)",
            hint="install a JRE: `apt-get install default-jre-headless`",
        )
    return found


_VERSION_IN_NAME = re.compile(r"zookeeper-(\d+\.\d+\.\d+[\w.-]*?)\.jar$")


def _jar_version(jar: Path) -> str:
    match = _VERSION_IN_NAME.search(jar.name)
    if match:
        return match.group(1)
    try:
        with zipfile.ZipFile(jar) as zf:
            for name in zf.namelist():
                if name.endswith("pom.properties") and "org.apache.zookeeper/zookeeper/" in name:
                    for line in zf.read(name).decode("utf-8", "replace").splitlines():
                        if line.startswith("version="):
                            return line.split("=", 1)[1].strip()
            manifest = zf.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
            for line in manifest.splitlines():
                if line.startswith(("Implementation-Version:", "Bundle-Version:")):
                    value = line.split(":", 1)[1].strip()
                    if value:
                        return value
    except (OSError, KeyError, zipfile.BadZipFile):
        pass
    # Debian keeps a versioned symlink beside the jar.
    for sibling in sorted(jar.parent.glob("zookeeper-[0-9]*.jar")):
        match = _VERSION_IN_NAME.search(sibling.name)
        if match and sibling.resolve() == jar.resolve():
            return match.group(1)
    return "unknown"


def _from_home(home: Path, java: str) -> Distribution:
    lib = home / "lib"
    jars = sorted(lib.glob("*.jar")) if lib.is_dir() else []
    main = [j for j in jars if _VERSION_IN_NAME.search(j.name)]
    if not main:
        # Some builds keep the server jar at the top level.
        main = sorted(home.glob("zookeeper-*.jar"))
        jars = main + jars
    if not main:
        raise ConfigurationError(
            f"ZOOKEEPER_HOME={home} does not look like a ZooKeeper release (no lib/zookeeper-*.jar)",
            hint=INSTALL_HINT,
        )
    # Tests and docs jars are not needed to run a server.
    classpath = tuple(str(j) for j in jars if not j.name.endswith(("-tests.jar", "-sources.jar")))
    return Distribution(home=home, classpath=classpath, version=_jar_version(main[0]), java=java, layout="tarball")


def _from_debian(java: str) -> Distribution:
    classpath = [str(DEBIAN_JAR)]
    if DEBIAN_LOG_BINDING.is_file():
        classpath.append(str(DEBIAN_LOG_BINDING))
    classpath += [str(jar) for jar in DEBIAN_NETTY_EXTRA if jar.is_file()]
    return Distribution(
        home=Path("/usr/share/zookeeper"),
        classpath=tuple(classpath),
        version=_jar_version(DEBIAN_JAR),
        java=java,
        layout="debian",
    )


@lru_cache(maxsize=8)
def _locate_cached(home: str | None) -> Distribution:
    java = find_java()
    if home:
        path = Path(home).expanduser()
        if not path.is_dir():
            raise ConfigurationError(f"ZOOKEEPER_HOME={home} is not a directory", hint=INSTALL_HINT)
        return _from_home(path, java)
    if DEBIAN_JAR.is_file():
        return _from_debian(java)
    raise ConfigurationError("Apache ZooKeeper was not found", hint=INSTALL_HINT)


def locate(home: str | Path | None = None) -> Distribution:
    """Find ZooKeeper: an explicit home, then ``ZOOKEEPER_HOME``, then Debian's layout."""
    chosen = str(home) if home else os.environ.get("ZOOKEEPER_HOME") or None
    return _locate_cached(chosen)


def java_version(java: str) -> str:
    """The first line `java -version` prints, for reports."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (out.stderr or out.stdout).strip().splitlines()
    return lines[0] if lines else "unknown"
