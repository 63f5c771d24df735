#!/usr/bin/env bash
# Build a REAL kube-apiserver and a REAL etcd from the Go module proxy into
# target/k8s/bin/, for the Kubernetes-mode tests (issue 15, item 5).
#
#   tests/k8s/build.sh            # build if missing or of another version
#   tests/k8s/build.sh --force    # rebuild anyway
#   tests/k8s/build.sh --print-dir  # print the bin dir and exit (no build)
#
# Why wrapper modules: k8s.io/kubernetes' own go.mod `replace`s every staging
# module (k8s.io/api, apimachinery, apiserver, client-go, component-base, kms,
# ...) with ./staging/src/... paths. Replace directives of a *dependency* are
# ignored, and the requirements themselves are `v0.0.0`, which do not exist.
# So we build from a tiny main module of our own that requires
# k8s.io/kubernetes vX.Y.Z and pins each of those staging modules to the
# matching v0.Y.Z (the staging modules are published with the minor version
# shifted to major 0: kubernetes v1.37.2 <-> k8s.io/api v0.37.2). Its main.go
# mirrors cmd/kube-apiserver/apiserver.go. etcd gets the same treatment: a
# main that calls go.etcd.io/etcd/server/v3/etcdmain.Main(os.Args), exactly
# what etcd's own server/main.go does.
#
# Needs: Go >= the `go` line of both modules (1.26.0 for kubernetes v1.37.2 and
# etcd v3.6.16) and the Go module proxy. Nothing else is fetched.
# Cost, measured on this project's 2-core machine with Go 1.26.8 and empty
# caches: kube-apiserver 257 s (~86 MiB of module zips), etcd 24 s (~73 MiB),
# 4m42s in all; binaries 114 MiB and 26 MiB. The downloads land in the normal
# Go module cache (GOMODCACHE, ~0.8 GiB unpacked) and the compiled packages in
# GOCACHE (~2.9 GiB), both outside the repo, so a rebuild after `target/` is
# wiped (a fresh clone, CI) takes ~9 s on the same machine.
#
# Versions are pinned here rather than resolved at build time so every machine
# and CI run builds the same thing; bump them deliberately (the newest v1.37.x
# and v3.6.x on the proxy when this was written were v1.37.2 and v3.6.16):
#   go list -m -versions k8s.io/kubernetes
#   go list -m -versions go.etcd.io/etcd/server/v3
# Either can be overridden from the environment (KUBE_VERSION, ETCD_VERSION).
#
# How to run the two servers: see tests/k8s/start.sh.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"

# Locate the repo root from this file's own path so the script works from any
# cwd (tests/k8s/build.sh -> repo root is two levels up).
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
K8S_DIR="$REPO_ROOT/target/k8s"
BIN_DIR="${K8S_BIN_DIR:-$K8S_DIR/bin}"
SRC_DIR="$K8S_DIR/src"
STAMP="$BIN_DIR/versions.stamp"

force=0
case "${1:-}" in
  --force) force=1 ;;
  --print-dir) echo "$BIN_DIR"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--force|--print-dir]" >&2; exit 2 ;;
esac

# The stamp says what the binaries in BIN_DIR were built from. If it matches
# and both binaries are there, there is nothing to do (this is the common
# case: tests call this script before every run).
want_stamp="kube-apiserver $KUBE_VERSION
etcd $ETCD_VERSION"
if [[ $force -eq 0 && -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/etcd" \
      && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]]; then
  echo "k8s test binaries up to date in $BIN_DIR ($KUBE_VERSION, etcd $ETCD_VERSION)"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: 'go' not found in PATH (need Go >= 1.26)" >&2; exit 1; }
mkdir -p "$BIN_DIR" "$SRC_DIR"

# Two test binaries starting at once must not build twice into the same
# place: take a lock for the rest of the script (flock is in util-linux; skip
# the lock where it is missing rather than fail).
if command -v flock >/dev/null; then
  exec 9>"$K8S_DIR/.build.lock"
  flock 9
  # Someone else may have finished the build while we waited.
  if [[ $force -eq 0 && -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/etcd" \
        && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]]; then
    echo "k8s test binaries up to date in $BIN_DIR (built by another process)"
    exit 0
  fi
fi

# Build environment, exported so every `go` below sees it:
# - GOFLAGS=-mod=mod: let `go` write the wrapper's go.mod/go.sum itself
#   (adding the transitive requirements); -buildvcs=false because the wrapper
#   lives inside this repo's git tree and its VCS state is irrelevant.
# - CGO_ENABLED=0: static, no C toolchain needed, and how upstream ships them.
# - GOTOOLCHAIN=local: never download a different Go toolchain behind our
#   back; if a future version needs a newer Go, fail loudly instead.
# - GOWORK=off: a go.work somewhere above must not leak into the wrapper.
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN=local
export GOWORK=off
# Builds are CPU heavy; be polite to whatever else runs (cargo, tests).
NICE=(nice -n "${K8S_BUILD_NICE:-10}")

GOMODCACHE_DIR="$(go env GOMODCACHE)"
dl_kib() { du -sk "$GOMODCACHE_DIR/cache/download" 2>/dev/null | cut -f1 || echo 0; }
ldflags_common="-s -w"   # strip symbols/DWARF: ~30% smaller, faster link

echo "go: $(go version)"
echo "building into $BIN_DIR: kube-apiserver $KUBE_VERSION, etcd $ETCD_VERSION"
rm -f "$STAMP"   # a half-finished build must not look finished

# ---------------------------------------------------------------- kube-apiserver
kube_src="$SRC_DIR/kube-apiserver"
mkdir -p "$kube_src"
t0=$(date +%s); d0=$(dl_kib)

# Read kubernetes' go.mod (only the .mod file is fetched here) to get the list
# of staging modules: every `replace k8s.io/X => ./staging/...` line.
kube_mod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[[ -f "$kube_mod" ]] || { echo "build.sh: could not download k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }
staging_version="v0.${KUBE_VERSION#v1.}"   # v1.37.2 -> v0.37.2
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$kube_mod" | sort -u)
[[ ${#staging[@]} -gt 0 ]] || { echo "build.sh: no staging replaces found in $kube_mod" >&2; exit 1; }
# The wrapper's `go` line must be at least kubernetes' own.
kube_go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kube_mod")"

{
  echo "// Generated by tests/k8s/build.sh; do not edit. Builds kube-apiserver $KUBE_VERSION."
  echo "module scalar-admin-rs.test/kube-apiserver"
  echo
  echo "go $kube_go"
  echo
  # Same GODEBUG defaults kubernetes builds with (godebug lines of a
  # dependency do not apply; only the main module's do).
  sed -n 's/^godebug /godebug /p' "$kube_mod"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  echo "// Every staging module kubernetes replaces with a local path, pinned to"
  echo "// the published version of the same release."
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
  echo ")"
} > "$kube_src/go.mod"
rm -f "$kube_src/go.sum"   # regenerated by -mod=mod; stale sums would only confuse

# Mirrors k8s.io/kubernetes/cmd/kube-apiserver/apiserver.go.
cat > "$kube_src/main.go" <<'EOF'
// Generated by tests/k8s/build.sh; do not edit.
// Mirrors k8s.io/kubernetes/cmd/kube-apiserver/apiserver.go.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
EOF

# Version stamping as kubernetes' hack/lib/version.sh does, so /version and
# --version say v1.37.2 instead of v0.0.0-master.
kv="${KUBE_VERSION#v}"; kmajor="${kv%%.*}"; kminor="${kv#*.}"; kminor="${kminor%%.*}"
# buildDate = the release's publication time from the proxy's .info (not
# "now"), so two builds of the same version are byte-identical.
kube_info="${kube_mod%.mod}.info"
vdate="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$kube_info" 2>/dev/null)"
vdate="${vdate:-1970-01-01T00:00:00Z}"
kube_ldflags="$ldflags_common"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$kmajor -X $pkg.gitMinor=$kminor"
  # gitCommit: the module zip carries no commit id; blank beats "$Format:%H$".
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$vdate -X $pkg.gitCommit="
done

(cd "$kube_src" && "${NICE[@]}" go build -trimpath -ldflags="$kube_ldflags" \
   -o "$BIN_DIR/kube-apiserver.tmp" .)
mv -f "$BIN_DIR/kube-apiserver.tmp" "$BIN_DIR/kube-apiserver"
t1=$(date +%s); d1=$(dl_kib)
echo "kube-apiserver $KUBE_VERSION: built in $((t1 - t0))s, downloaded ~$(((d1 - d0) / 1024)) MiB," \
     "binary $(($(stat -c %s "$BIN_DIR/kube-apiserver") / 1024 / 1024)) MiB"

# ------------------------------------------------------------------------- etcd
etcd_src="$SRC_DIR/etcd"
mkdir -p "$etcd_src"
t0=$(date +%s); d0=$(dl_kib)
etcd_mod="$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[[ -f "$etcd_mod" ]] || { echo "build.sh: could not download go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2; exit 1; }
etcd_go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$etcd_mod")"
# server/v3 requires its sibling modules (api, client/pkg, client/v3, pkg) at
# the same version, and those are published, so unlike kubernetes no replace
# is needed; pin them anyway so MVS cannot drift them.
cat > "$etcd_src/go.mod" <<EOF
// Generated by tests/k8s/build.sh; do not edit. Builds etcd $ETCD_VERSION.
module scalar-admin-rs.test/etcd

go $etcd_go

require (
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
EOF
rm -f "$etcd_src/go.sum"
# Exactly etcd's own server/main.go.
cat > "$etcd_src/main.go" <<'EOF'
// Generated by tests/k8s/build.sh; do not edit.
// Same as go.etcd.io/etcd/server/v3/main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
(cd "$etcd_src" && "${NICE[@]}" go build -trimpath -ldflags="$ldflags_common" \
   -o "$BIN_DIR/etcd.tmp" .)
mv -f "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
t1=$(date +%s); d1=$(dl_kib)
echo "etcd $ETCD_VERSION: built in $((t1 - t0))s, downloaded ~$(((d1 - d0) / 1024)) MiB," \
     "binary $(($(stat -c %s "$BIN_DIR/etcd") / 1024 / 1024)) MiB"

# Smoke: both must at least run and report the versions we asked for.
"$BIN_DIR/kube-apiserver" --version
# (sed, not head: head would leave etcd writing to a closed pipe, SIGPIPE under pipefail)
"$BIN_DIR/etcd" --version | sed -n 1p

printf '%s\n' "$want_stamp" > "$STAMP"
echo "done: $BIN_DIR"
