#!/usr/bin/env bash
# Start a real etcd + kube-apiserver on loopback for the Kubernetes-mode tests
# (issue 15, item 5), the way controller-runtime's envtest does
# (pkg/internal/testing/controlplane/{etcd,apiserver,auth}.go): etcd on random
# 127.0.0.1 ports with a throw-away data dir, kube-apiserver on a random secure
# port with RBAC, a generated serving cert in --cert-dir, a generated
# service-account key pair, the ServiceAccount admission plugin off (there is
# no controller-manager to create the `default` ServiceAccount) and client-cert
# auth from a generated CA. Two users:
#   admin  - client certificate, O=system:masters (bypasses RBAC)
#   tester - bearer token from --token-auth-file, group scalar-admin:testers,
#            NO rights beyond what the RBAC bootstrap grants every
#            authenticated user, so tests can see 403 until they bind a Role.
#
#   tests/k8s/start.sh [--dir DIR] [--keep]
#
#   --dir DIR  put certs, etcd data, logs and kubeconfig in DIR (created if
#              needed) instead of a fresh mktemp -d; DIR is then kept.
#   --keep     keep the temp dir on exit (for debugging).
#   --watch-pid PID  shut down when process PID is gone: a test harness
#              passes its own pid so that servers never outlive it, even
#              when it is SIGKILLed and cannot stop us itself.
#
# Stays in the foreground. When the API server answers /readyz it prints,
# on stdout, lines a test harness can parse (and writes the same to DIR/env):
#   K8S_API_URL=https://127.0.0.1:PORT
#   KUBECONFIG=DIR/kubeconfig            (contexts: admin (current), tester)
#   K8S_CA_FILE=DIR/certs/ca.crt
#   K8S_ADMIN_CERT=... K8S_ADMIN_KEY=...
#   K8S_TESTER_TOKEN=...  K8S_TESTER_USER=tester
#   K8S_DIR=DIR
#   READY
# On EXIT/INT/TERM (or if either server dies) it stops kube-apiserver, then
# etcd, and removes the temp dir. Exit status is non-zero if a server died.
#
# The binaries come from tests/k8s/build.sh (run here first; it is a no-op
# when they are already built). Certificates are made with openssl, all in
# gen_certs below; tests that want their own PKI (rcgen) can replace that.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

dir="" keep=0 watch_pid=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="$2"; keep=1; shift 2 ;;
    --keep) keep=1; shift ;;
    --watch-pid) watch_pid="$2"; shift 2 ;;
    *) echo "usage: $0 [--dir DIR] [--keep] [--watch-pid PID]" >&2; exit 2 ;;
  esac
done

# Build (or confirm) the binaries; its chatter goes to stderr so stdout stays
# machine-readable.
"$SCRIPT_DIR/build.sh" >&2
BIN_DIR="$("$SCRIPT_DIR/build.sh" --print-dir)"
command -v openssl >/dev/null || { echo "start.sh: openssl not found" >&2; exit 1; }
command -v curl >/dev/null || { echo "start.sh: curl not found" >&2; exit 1; }

if [[ -z "$dir" ]]; then dir="$(mktemp -d "${TMPDIR:-/tmp}/scalar-k8s.XXXXXX")"; fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
certs="$dir/certs"
mkdir -p "$certs"

etcd_pid="" apiserver_pid="" watcher_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "${watcher_pid:-}" ]]; then kill "$watcher_pid" 2>/dev/null || true; fi
  # One at a time, API server first: it exits in ~1 s on SIGTERM while etcd
  # is up, but stopping etcd at the same time makes its shutdown hang on
  # etcd reconnects for 10 s and more.
  for pid in $apiserver_pid $etcd_pid; do
    kill -TERM "$pid" 2>/dev/null || continue
    # Give it up to ~10 s to exit, then SIGKILL.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $keep -eq 0 ]]; then rm -rf "$dir"; else echo "start.sh: kept $dir" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# A free loopback TCP port. Like envtest's addr.Suggest this is racy (someone
# may take it before we bind), but we draw from 20000-32767, below Linux's
# default ephemeral range (32768-60999), so outgoing connections on this
# machine never collide with it; a port in use answers the /dev/tcp probe.
used_ports=" "
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12768))
    [[ "$used_ports" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "; echo "$p"; return 0
    fi
  done
  echo "start.sh: no free port found" >&2; return 1
}

# ---------------------------------------------------------------- certificates
# All PKI in one place. EC P-256 keys: fast to generate and what rcgen makes
# by default. One CA signs both the serving cert and client certs (envtest
# uses separate ones; one keeps the kubeconfig simple and changes nothing for
# the tests). Valid 7 days like envtest's TinyCA.
gen_certs() {
  local c="$certs"
  ( cd "$c"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 7 -subj "/CN=scalar-admin-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out ca.crt
    # Serving cert: kube-apiserver picks up apiserver.crt/apiserver.key from
    # --cert-dir (that is how envtest hands it one).
    openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key 2>/dev/null
    openssl req -new -key apiserver.key -subj "/CN=localhost" -out apiserver.csr
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1" \
      > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -sha256 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # Admin client cert: CN is the user name, O the groups; system:masters is
    # bound to cluster-admin by the RBAC bootstrap policy.
    openssl ecparam -name prime256v1 -genkey -noout -out admin.key 2>/dev/null
    openssl req -new -key admin.key -subj "/O=system:masters/CN=admin" -out admin.csr
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth" > client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -sha256 \
      -extfile client.ext -out admin.crt 2>/dev/null
    # Service-account token signing key pair (ES256).
    openssl ecparam -name prime256v1 -genkey -noout -out sa.key 2>/dev/null
    openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
    # Static token for the non-admin user: token,user,uid,"group1,group2".
    tester_token="$(openssl rand -hex 24)"
    printf '%s,tester,tester-uid,"scalar-admin:testers"\n' "$tester_token" > tokens.csv
    printf '%s\n' "$tester_token" > tester.token
    rm -f ./*.csr ./*.ext ca.srl
    chmod 600 ./*.key tokens.csv tester.token )
}
if [[ ! -f "$certs/ca.crt" ]]; then gen_certs; fi
tester_token="$(cat "$certs/tester.token")"

# ------------------------------------------------------------------------ etcd
etcd_port="$(free_port)"; etcd_peer_port="$(free_port)"
etcd_url="http://127.0.0.1:$etcd_port"
# --unsafe-no-fsync: as envtest does (etcd >= 3.5); test data is disposable.
# No --initial-* flags: a single member, as in envtest.
"$BIN_DIR/etcd" \
  --name=default \
  --data-dir="$dir/etcd" \
  --listen-client-urls="$etcd_url" \
  --advertise-client-urls="$etcd_url" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="default=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync=true \
  --log-level=warn \
  >"$dir/etcd.log" 2>&1 &
etcd_pid=$!

wait_for() { # name pid timeout_s command...
  local name="$1" pid="$2" t="$3"; shift 3
  local deadline=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "start.sh: $name exited before it was ready; last log lines:" >&2
      tail -n 30 "$dir/$name.log" >&2; return 1
    fi
    if [[ $SECONDS -ge $deadline ]]; then
      echo "start.sh: $name not ready after ${t}s; last log lines:" >&2
      tail -n 30 "$dir/$name.log" >&2; return 1
    fi
    sleep 0.2
  done
}
wait_for etcd "$etcd_pid" 30 curl -sf "$etcd_url/health"

# -------------------------------------------------------------- kube-apiserver
api_port="$(free_port)"
api_url="https://127.0.0.1:$api_port"
# Flags are envtest's defaults (controlplane/apiserver.go defaultArgs) plus
# the client CA (envtest's CertAuthn) and a static token file for the
# non-admin user. --service-cluster-ip-range is needed for Services; a /16 because
# every release the rig makes has a ClusterIP Service (its Envoy), and a test
# process shares one control plane (a /24 would run out after ~250 releases).
# Its first address, 10.0.0.1 (the `kubernetes` Service), is in the serving cert.
# --advertise-address=127.0.0.1 keeps everything on loopback and works on a
# machine without a default route, but the default (lease) endpoint
# reconciler refuses a loopback address ("cannot use public IP 127.0.0.1 with
# endpoint reconciler ... may not be in the loopback range"), so it is turned
# off: nothing here needs the endpoints of the `default/kubernetes` Service.
# (envtest leaves --advertise-address unset, so the server picks the host's
# default-route address instead.)
# The audit log records, at level Metadata (who, verb, resource, response code; no
# bodies), the requests of the users a command under test runs as: the tester and
# service accounts. The admin's requests (the rig making objects, thousands of them for
# the large releases) are not logged, so the log stays small; it is rotated at 64 MB
# all the same. Tests read it to find the requests a Role refused (403).
cat > "$dir/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["tester"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
POLICY
"$BIN_DIR/kube-apiserver" \
  --etcd-servers="$etcd_url" \
  --audit-policy-file="$dir/audit-policy.yaml" \
  --audit-log-path="$dir/audit.log" \
  --audit-log-maxsize=64 \
  --audit-log-maxbackup=1 \
  --cert-dir="$certs" \
  --secure-port="$api_port" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --endpoint-reconciler-type=none \
  --service-cluster-ip-range=10.0.0.0/16 \
  --allow-privileged=true \
  --disable-admission-plugins=ServiceAccount \
  --authorization-mode=RBAC \
  --client-ca-file="$certs/ca.crt" \
  --token-auth-file="$certs/tokens.csv" \
  --service-account-issuer="$api_url/" \
  --service-account-key-file="$certs/sa.pub" \
  --service-account-signing-key-file="$certs/sa.key" \
  >"$dir/kube-apiserver.log" 2>&1 &
apiserver_pid=$!

# /readyz (not /healthz) also waits for the post-start hooks, notably the RBAC
# bootstrap roles, so 403s seen afterwards are real RBAC decisions.
wait_for kube-apiserver "$apiserver_pid" 90 \
  curl -sf --cacert "$certs/ca.crt" --cert "$certs/admin.crt" --key "$certs/admin.key" "$api_url/readyz"

# ------------------------------------------------------------------ kubeconfig
b64() { base64 -w0 < "$1"; }
cat > "$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: scalar-test
  cluster:
    server: $api_url
    certificate-authority-data: $(b64 "$certs/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$certs/admin.crt")
    client-key-data: $(b64 "$certs/admin.key")
- name: tester
  user:
    token: $tester_token
contexts:
- name: admin
  context: {cluster: scalar-test, user: admin, namespace: default}
- name: tester
  context: {cluster: scalar-test, user: tester, namespace: default}
current-context: admin
EOF
chmod 600 "$dir/kubeconfig"

cat > "$dir/env" <<EOF
K8S_API_URL=$api_url
KUBECONFIG=$dir/kubeconfig
K8S_CA_FILE=$certs/ca.crt
K8S_ADMIN_CERT=$certs/admin.crt
K8S_ADMIN_KEY=$certs/admin.key
K8S_TESTER_USER=tester
K8S_TESTER_TOKEN=$tester_token
K8S_DIR=$dir
EOF
cat "$dir/env"
echo READY

if [[ -n "$watch_pid" ]]; then
  # Runs in a subshell; SIGTERM to us runs the cleanup trap above.
  ( while kill -0 "$watch_pid" 2>/dev/null; do sleep 1; done
    kill -TERM $$ 2>/dev/null ) &
  watcher_pid=$!
fi

# Foreground until either server exits or we are signalled (bash runs the
# TERM/INT trap as soon as `wait` is interrupted).
set +e
wait -n "$etcd_pid" "$apiserver_pid"
rc=$?
set -e
echo "start.sh: a server exited (status $rc); see $dir/*.log" >&2
keep=1   # keep the logs of an unexpected death
exit 1
