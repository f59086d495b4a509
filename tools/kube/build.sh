#!/usr/bin/env bash
# Build the binaries of zkop's Kubernetes test bed at the versions pinned in go.mod:
# etcd, kube-apiserver, kube-controller-manager, kubectl (one multi-call binary, `kube`,
# and links to it by those names) and helm, into
#   ${ZKOP_KUBE_CACHE:-$HOME/.cache/zkop/kube}/<k8s-version>/bin/
# Idempotent: when bin/.stamp names the same versions and sources, nothing is done.
# Prints the bin directory on the last line of stdout; progress goes to stderr.
# Exits non-zero with the Go error when the build fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

log() { printf 'kube-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The pinned versions, read from go.mod (the one place they are written).
modver() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' go.mod; }
k8s=$(modver k8s.io/kubernetes)
etcd=$(modver go.etcd.io/etcd/server/v3)
helm=$(modver helm.sh/helm/v3)
if [ -z "$k8s" ] || [ -z "$etcd" ] || [ -z "$helm" ]; then
  die "cannot read the pinned versions from $here/go.mod"
fi

cache=${ZKOP_KUBE_CACHE:-$HOME/.cache/zkop/kube}
dir=$cache/$k8s
bin=$dir/bin
sources=$(cat go.mod go.sum cmd/kube/main.go build.sh | sha256sum | cut -c1-16)
stamp="kubernetes=$k8s etcd=$etcd helm=$helm sources=$sources"
names=(kube etcd kube-apiserver kube-controller-manager kubectl helm)

built() {
  [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp" ] || return 1
  for n in "${names[@]}"; do [ -x "$bin/$n" ] || return 1; done
}

if built; then
  log "up to date in $bin ($stamp)"
  echo "$bin"
  exit 0
fi

GO=${GO:-}
if [ -z "$GO" ]; then
  GO=$(command -v go || true)
  if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
fi
if [ -z "$GO" ]; then
  die "the Go toolchain (1.24 or newer) is needed: none on PATH nor at /usr/local/go/bin/go"
fi
"$GO" version >/dev/null || die "GO=$GO does not run"

mkdir -p "$dir"
# One build at a time per cache (two test sessions may ask at once).
exec 9>"$dir/.lock"
if ! flock -n 9; then
  log "another build holds $dir/.lock; waiting for it"
  flock 9
fi
if built; then
  log "up to date in $bin (built by another process)"
  echo "$bin"
  exit 0
fi

# No cgo (static binaries, fewer packages to compile); a lazier GC in the compiler (it has
# memory to spare: a 2-core machine builds two packages at a time); no DWARF, which -w
# would strip from the binaries anyway.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=readonly" GOGC=${GOGC:-400}
start=$SECONDS
log "building kubernetes $k8s, etcd $etcd, helm $helm with $("$GO" version | cut -d' ' -f3) into $bin"
log "GOCACHE=$("$GO" env GOCACHE) GOMODCACHE=$("$GO" env GOMODCACHE)"

work=$(mktemp -d "$dir/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/go.log

log "resolving packages (downloads the modules the first time)"
if ! "$GO" list -deps ./cmd/kube helm.sh/helm/v3/cmd/helm >"$work/deps" 2>"$out"; then
  cat "$out" >&2
  die "go list failed (above)"
fi
total=$(wc -l <"$work/deps")
log "$((SECONDS - start))s: $total packages; compiling (cold: about 10 minutes on 2 cores; warm: seconds)"

v="k8s.io/component-base/version"
cv="k8s.io/client-go/pkg/version"
minor=$(echo "$k8s" | cut -d. -f2)
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for p in "$v" "$cv"; do
  ldflags+=" -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
done
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$helm -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"

mkdir -p "$work/bin"
"$GO" build -v -trimpath -gcflags=all=-dwarf=false -ldflags "$ldflags" -o "$work/bin/" ./cmd/kube helm.sh/helm/v3/cmd/helm >"$out" 2>&1 &
gopid=$!
trap 'kill "$gopid" 2>/dev/null; wait "$gopid"; rm -rf "$work"; exit 143' TERM INT
# Progress: how many packages `go build -v` has compiled so far, every 20 seconds.
while kill -0 "$gopid" 2>/dev/null; do
  for _ in $(seq 20); do kill -0 "$gopid" 2>/dev/null || break; sleep 1; done
  kill -0 "$gopid" 2>/dev/null || break
  n=$(grep -c '^[^ #:]*$' "$out" || true)
  log "$((SECONDS - start))s: $n/$total packages compiled"
done
if ! wait "$gopid"; then
  # `go build -v` prints each package path alone on a line; the rest is the error.
  grep -v '^[^ #:]*$' "$out" >&2 || tail -n 50 "$out" >&2
  cp "$out" "$dir/build-failed.log"
  die "go build failed (above); full log in $dir/build-failed.log"
fi

for n in etcd kube-apiserver kube-controller-manager kubectl; do ln -sf kube "$work/bin/$n"; done
echo "$stamp" >"$work/bin/.stamp"
rm -rf "$bin.old"
[ -e "$bin" ] && mv "$bin" "$bin.old"
mv "$work/bin" "$bin"
rm -rf "$bin.old"
log "built in $((SECONDS - start))s: $(cd "$bin" && echo "${names[*]}") ($(du -sh "$bin" | cut -f1))"
echo "$bin"
