#!/usr/bin/env bash
# Make this machine ready to run zkop: Apache ZooKeeper (and Java), chromium (for the
# dashboard's browser test), a virtual environment in .venv, and zkop installed into it with
# its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

have_zookeeper() {
  if [ -n "${ZOOKEEPER_HOME:-}" ]; then
    compgen -G "$ZOOKEEPER_HOME/lib/zookeeper-*.jar" >/dev/null && return 0
    echo "bootstrap: ZOOKEEPER_HOME=$ZOOKEEPER_HOME has no lib/zookeeper-*.jar" >&2
    exit 1
  fi
  [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null
}

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need to install $*, but not running as root." >&2
    echo "  run: sudo apt-get update && sudo apt-get install -y $*" >&2
    echo "  (or set ZOOKEEPER_HOME to an unpacked ZooKeeper release)" >&2
    exit 1
  fi
  if [ -z "${ZKOP_APT_UPDATED:-}" ]; then
    apt-get update -qq
    export ZKOP_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! have_zookeeper; then
  echo "bootstrap: installing Apache ZooKeeper from Debian's zookeeper package"
  apt_install zookeeper default-jre-headless
fi

# The dashboard's browser test drives Debian's chromium headless; without it that test skips
# (and fails under CI=true).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "bootstrap: installing chromium (for the dashboard's browser test)"
    apt_install chromium || echo "bootstrap: could not install chromium; the browser test will skip" >&2
  else
    echo "bootstrap: chromium is missing, so the dashboard's browser test skips (sudo apt-get install -y chromium)" >&2
  fi
fi

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null; then
  echo "bootstrap: installing Python 3"
  apt_install python3 python3-venv
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "bootstrap: zkop needs Python 3.11 or newer; $("$PY" --version) found" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3-venv
    "$PY" -m venv .venv
  fi
fi

stamp=.venv/.zkop-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing zkop into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
