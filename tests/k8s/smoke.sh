#!/usr/bin/env bash
# End-to-end smoke test of the real kube-apiserver + etcd rig, with curl only:
# starts tests/k8s/start.sh, then as the admin (client cert) creates a
# namespace, a Pod, sets its status through the status subresource, a
# headless Service, an EndpointSlice and a Deployment, lists them back; and
# checks RBAC: the token user "tester" gets 403 on `list pods` until a
# Role/RoleBinding grants it. These are the API calls the Kubernetes mode of
# scalar-admin makes (issue 15), so a failure here means the rig, not the
# Rust client, is broken.
#
#   tests/k8s/smoke.sh      # prints one line per check, then "smoke: N passed, N failed"
#
# JSON is read with python3 (on every machine of this kind) rather than jq.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(mktemp)"; err="$(mktemp)"
# The rig shuts itself down when this shell is gone (--watch-pid), even if we
# are killed; on a normal exit we stop it and wait for it.
"$SCRIPT_DIR/start.sh" --watch-pid $$ >"$out" 2>"$err" &
rig_pid=$!
stop_rig() {
  kill -TERM "$rig_pid" 2>/dev/null || true
  wait "$rig_pid" 2>/dev/null || true
  rm -f "$out" "$err"
}
trap stop_rig EXIT

# start.sh may have to build first (minutes on a fresh machine); after that
# it is ready in a few seconds.
until grep -qx READY "$out"; do
  if ! kill -0 "$rig_pid" 2>/dev/null; then
    echo "smoke: the rig did not start:" >&2; cat "$err" >&2; exit 1
  fi
  sleep 0.2
done
# shellcheck disable=SC1090
source <(grep '^K8S_' "$out")

U="$K8S_API_URL" NS=scalar-smoke J='Content-Type: application/json'
admin=(curl -sS --cacert "$K8S_CA_FILE" --cert "$K8S_ADMIN_CERT" --key "$K8S_ADMIN_KEY")
tester=(curl -sS --cacert "$K8S_CA_FILE" -H "Authorization: Bearer $K8S_TESTER_TOKEN")
body="$(mktemp)"; trap 'stop_rig; rm -f "$body"' EXIT

pass=0 fail=0
# check NAME WANT_HTTP_CODE curl-args... : runs the request, body to $body.
check() {
  local name="$1" want="$2"; shift 2
  local got
  got="$("$@" -o "$body" -w '%{http_code}')" || got="curl-failed"
  if [[ "$got" == "$want" ]]; then pass=$((pass + 1)); echo "ok   $name ($got)"
  else fail=$((fail + 1)); echo "FAIL $name: HTTP $got, want $want: $(head -c 400 "$body")"; fi
}
# expect NAME PYTHON_EXPR WANT : evaluates EXPR on the JSON in $body (as `d`).
expect() {
  local name="$1" expr="$2" want="$3" got
  got="$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(($expr))" "$body" 2>&1)" || true
  if [[ "$got" == "$want" ]]; then pass=$((pass + 1)); echo "ok   $name = $got"
  else fail=$((fail + 1)); echo "FAIL $name: got '$got', want '$want'"; fi
}
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

check "readyz" 200 "${admin[@]}" "$U/readyz"
check "version" 200 "${admin[@]}" "$U/version"
expect "gitVersion" "d['gitVersion']" "v1.37.2"

check "create namespace" 201 "${admin[@]}" -X POST -H "$J" "$U/api/v1/namespaces" \
  -d '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"'"$NS"'"}}'

# Container port names are IANA service names: at most 15 characters, so
# "scalardb-cluster" (16) is rejected there (fine as a Service port name).
check "create pod" 201 "${admin[@]}" -X POST -H "$J" "$U/api/v1/namespaces/$NS/pods" -d '{
  "apiVersion":"v1","kind":"Pod",
  "metadata":{"name":"scalardb-cluster-0","labels":{"app.kubernetes.io/instance":"rel1","app.kubernetes.io/app":"scalardb-cluster"}},
  "spec":{"containers":[{"name":"scalardb-cluster","image":"x","ports":[{"name":"scalardb","containerPort":60053}]}]}}'
expect "new pod phase" "d['status']['phase']" "Pending"
pod_uid="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['metadata']['uid'])" "$body")"

# There is no kubelet: the test sets what it would. A merge patch replaces
# lists whole, so containerStatuses is always sent complete.
status_patch() { # restartCount
  echo '{"status":{"phase":"Running","podIP":"127.0.0.2","podIPs":[{"ip":"127.0.0.2"}],"hostIP":"127.0.0.1","startTime":"'"$now"'",
  "conditions":[{"type":"Ready","status":"True","lastTransitionTime":"'"$now"'"},{"type":"ContainersReady","status":"True","lastTransitionTime":"'"$now"'"}],
  "containerStatuses":[{"name":"scalardb-cluster","image":"x","imageID":"","ready":true,"started":true,"restartCount":'"$1"',"state":{"running":{"startedAt":"'"$now"'"}}}]}}'
}
check "patch pod status" 200 "${admin[@]}" -X PATCH -H 'Content-Type: application/merge-patch+json' \
  "$U/api/v1/namespaces/$NS/pods/scalardb-cluster-0/status" -d "$(status_patch 0)"
expect "pod phase/ip/ready/restarts" \
  "d['status']['phase'], d['status']['podIP'], [c['status'] for c in d['status']['conditions'] if c['type']=='Ready'][0], d['status']['containerStatuses'][0]['restartCount']" \
  "('Running', '127.0.0.2', 'True', 0)"
rv0="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['metadata']['resourceVersion'])" "$body")"
check "bump restartCount" 200 "${admin[@]}" -X PATCH -H 'Content-Type: application/merge-patch+json' \
  "$U/api/v1/namespaces/$NS/pods/scalardb-cluster-0/status" -d "$(status_patch 1)"
expect "restartCount after bump" "d['status']['containerStatuses'][0]['restartCount']" "1"
expect "resourceVersion changed" "d['metadata']['resourceVersion'] != '$rv0'" "True"

check "create headless service" 201 "${admin[@]}" -X POST -H "$J" "$U/api/v1/namespaces/$NS/services" -d '{
  "apiVersion":"v1","kind":"Service","metadata":{"name":"rel1-headless","labels":{"app.kubernetes.io/instance":"rel1"}},
  "spec":{"clusterIP":"None","selector":{"app.kubernetes.io/instance":"rel1","app.kubernetes.io/app":"scalardb-cluster"},
          "ports":[{"name":"scalardb-cluster","port":60053,"targetPort":"scalardb","protocol":"TCP"}]}}'
expect "service clusterIP" "d['spec']['clusterIP']" "None"

# EndpointSlice validation refuses loopback addresses ("may not be in the
# loopback range (127.0.0.0/8, ::1/128)") although Pod status takes them.
slice() { # address
  echo '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
  "metadata":{"name":"rel1-headless-abcde","labels":{"kubernetes.io/service-name":"rel1-headless","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},
  "addressType":"IPv4","ports":[{"name":"scalardb-cluster","port":60053,"protocol":"TCP"}],
  "endpoints":[{"addresses":["'"$1"'"],"conditions":{"ready":true,"serving":true,"terminating":false},
                "targetRef":{"kind":"Pod","namespace":"'"$NS"'","name":"scalardb-cluster-0","uid":"'"$pod_uid"'"}}]}'
}
check "endpointslice with 127.0.0.2 refused" 422 "${admin[@]}" -X POST -H "$J" \
  "$U/apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices" -d "$(slice 127.0.0.2)"
check "create endpointslice (198.18.0.2)" 201 "${admin[@]}" -X POST -H "$J" \
  "$U/apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices" -d "$(slice 198.18.0.2)"

check "create deployment" 201 "${admin[@]}" -X POST -H "$J" "$U/apis/apps/v1/namespaces/$NS/deployments" -d '{
  "apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"rel1-scalardb-cluster"},
  "spec":{"replicas":1,"selector":{"matchLabels":{"app.kubernetes.io/instance":"rel1"}},
          "template":{"metadata":{"labels":{"app.kubernetes.io/instance":"rel1","app.kubernetes.io/app":"scalardb-cluster"}},
                      "spec":{"containers":[{"name":"scalardb-cluster","image":"x"}]}}}}'
expect "deployment generation" "d['metadata']['generation']" "1"

check "list pods by release" 200 "${admin[@]}" "$U/api/v1/namespaces/$NS/pods?labelSelector=app.kubernetes.io%2Finstance%3Drel1"
expect "listed pods" "[(p['metadata']['name'], p['status']['podIP']) for p in d['items']]" "[('scalardb-cluster-0', '127.0.0.2')]"
check "list services" 200 "${admin[@]}" "$U/api/v1/namespaces/$NS/services"
expect "listed services" "[s['metadata']['name'] for s in d['items']]" "['rel1-headless']"
check "list endpointslices of service" 200 "${admin[@]}" \
  "$U/apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Drel1-headless"
expect "listed endpoints" "[(e['addresses'][0], e['targetRef']['name']) for s in d['items'] for e in s['endpoints']]" \
  "[('198.18.0.2', 'scalardb-cluster-0')]"

# RBAC: the token user has no rights in the namespace until bound.
check "tester list pods denied" 403 "${tester[@]}" "$U/api/v1/namespaces/$NS/pods"
expect "denial message" "d['message']" \
  "pods is forbidden: User \"tester\" cannot list resource \"pods\" in API group \"\" in the namespace \"$NS\""
check "create role" 201 "${admin[@]}" -X POST -H "$J" "$U/apis/rbac.authorization.k8s.io/v1/namespaces/$NS/roles" -d '{
  "apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"scalar-admin"},
  "rules":[{"apiGroups":[""],"resources":["pods","services"],"verbs":["get","list"]},
           {"apiGroups":["discovery.k8s.io"],"resources":["endpointslices"],"verbs":["get","list"]},
           {"apiGroups":["apps"],"resources":["deployments","statefulsets"],"verbs":["get","list"]}]}'
check "create rolebinding" 201 "${admin[@]}" -X POST -H "$J" "$U/apis/rbac.authorization.k8s.io/v1/namespaces/$NS/rolebindings" -d '{
  "apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"scalar-admin"},
  "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"scalar-admin"},
  "subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"tester"}]}'
# RBAC reads through an informer; a new binding takes effect within moments.
for _ in $(seq 50); do
  [[ "$("${tester[@]}" -o /dev/null -w '%{http_code}' "$U/api/v1/namespaces/$NS/pods")" == 200 ]] && break
  sleep 0.1
done
check "tester list pods allowed" 200 "${tester[@]}" "$U/api/v1/namespaces/$NS/pods"
check "tester list endpointslices allowed" 200 "${tester[@]}" "$U/apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices"
check "tester other namespace denied" 403 "${tester[@]}" "$U/api/v1/namespaces/default/pods"
check "tester delete pod denied" 403 "${tester[@]}" -X DELETE "$U/api/v1/namespaces/$NS/pods/scalardb-cluster-0"

# Service-account tokens work too (the generated signing key pair), which is
# how the tool authenticates in a cluster.
check "create serviceaccount" 201 "${admin[@]}" -X POST -H "$J" "$U/api/v1/namespaces/$NS/serviceaccounts" \
  -d '{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"scalar-admin"}}'
check "token request" 201 "${admin[@]}" -X POST -H "$J" "$U/api/v1/namespaces/$NS/serviceaccounts/scalar-admin/token" \
  -d '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}}'
sa_token="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['status']['token'])" "$body")"
check "serviceaccount list pods denied" 403 curl -sS --cacert "$K8S_CA_FILE" -H "Authorization: Bearer $sa_token" \
  "$U/api/v1/namespaces/$NS/pods"
expect "serviceaccount user" "d['message'].split('\"')[1]" "system:serviceaccount:$NS:scalar-admin"

echo "smoke: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
