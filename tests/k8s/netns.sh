#!/usr/bin/env bash
# Run a command in a fresh network namespace where 198.18.0.0/15 is local:
#
#   tests/k8s/netns.sh CMD [ARGS...]     # exit status is CMD's
#
# Why: the Kubernetes-mode tests (issue 15) put the rig's real admin pods in Pod
# status and in EndpointSlices, and kube-apiserver refuses loopback addresses
# (127.0.0.0/8, ::1) in EndpointSlices with a 422 ("may not be in the loopback
# range"), while a test may not take over real addresses of the host. 198.18.0.0/15
# is the benchmarking range (RFC 2544), never routed on the Internet; with
# `ip route add local 198.18.0.0/15 dev lo` every address in it is a local address,
# exactly like 127.0.0.0/8, so a pod can bind 198.18.x.y and clients reach it over
# lo, and the API server accepts it. The route is made in a private namespace
# (`unshare -n`) so the host's routing table is never touched and nothing is left
# behind; the namespace dies with CMD. It has only `lo`: CMD gets no outside
# network (tests run on loopback anyway); a `cargo` CMD is preceded by `cargo fetch`
# outside it, so that it need not download.
#
# As root, `unshare -n`; otherwise `unshare -r -n` (a user namespace that maps us
# to root, where unprivileged user namespaces are allowed). Where unshare or ip is
# missing, or namespaces are not allowed, this says so on stderr and runs CMD as
# is: the Kubernetes tests then skip themselves with one line (the rig probes
# 198.18.0.1 before it starts a control plane), everything else runs as usual.
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

# The commands run inside the namespace, before CMD replaces the shell.
setup='ip link set lo up && ip route add local 198.18.0.0/15 dev lo'

fallback() { # reason CMD...
  local reason="$1"; shift
  echo "netns.sh: $reason; running without a network namespace (Kubernetes tests will skip): $*" >&2
  exec "$@"
}

if ! command -v unshare >/dev/null 2>&1; then
  fallback "unshare not found (util-linux)" "$@"
fi
if ! command -v ip >/dev/null 2>&1; then
  fallback "ip not found (iproute2)" "$@"
fi

if [[ "$(id -u)" -eq 0 ]]; then
  unshare_args=(-n)
else
  unshare_args=(-r -n)
fi
# Probe once with the same setup, so a refusal (EPERM in a locked-down container,
# user namespaces disabled) is told apart from CMD's own failure.
if ! probe_err="$(unshare "${unshare_args[@]}" -- sh -c "$setup" 2>&1)"; then
  fallback "cannot make a network namespace with 198.18.0.0/15 local (unshare ${unshare_args[*]}: ${probe_err//$'\n'/ })" "$@"
fi

# The namespace has no network: a cargo command gets every crate it may need (the tests'
# dev-dependencies included, which a build of the binary alone never fetched) first.
if [[ "$(basename "$1")" == cargo ]]; then
  "$1" fetch --quiet
fi

# No --fork: unshare execs the shell, which execs CMD, so CMD keeps this process's
# pid and its exit status (and signals sent to it) are CMD's own.
exec unshare "${unshare_args[@]}" -- sh -c "$setup && exec \"\$@\"" netns.sh "$@"
