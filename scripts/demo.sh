#!/usr/bin/env bash
# make demo: bring the local stack up, then walk one pod through its life on
# the legacy agent, step by step, with the same kubectl a user would type.
# The stack stays up afterwards (make down stops it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
make --no-print-directory up
set -a; . .local/env; set +a
k() { printf '\n\033[1m$ kubectl %s\033[0m\n' "$*"; "$KUBECTL" "$@"; }
step() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }

step "The virtual node: one legacy agent ($LEGACY_AGENT) seen as a Kubernetes node"
k get nodes -o wide
k get node "$NODE_NAME" -o jsonpath='{.metadata.labels}{"\n"}{.spec.taints}{"\n"}{.status.capacity}{"\n"}'

step "A pod that tolerates the virtual node, placed there by kube-scheduler"
"$KUBECTL" delete pod demo --ignore-not-found --wait=true >/dev/null
sed "s/NODE/$NODE_NAME/" <<'YAML' | tee /dev/stderr | "$KUBECTL" apply -f -
apiVersion: v1
kind: Pod
metadata:
  name: demo
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  nodeSelector: {type: virtual-kubelet, kubernetes.io/hostname: NODE}
  tolerations: [{key: virtual-kubelet.io/provider, operator: Exists}]
  containers:
    - name: main
      image: busybox
      command: [sh, -c]
      args:
        - |
          trap 'echo "got SIGTERM, bye"; exit 0' TERM
          echo "hello from $(hostname) as pid $$ in $MESOS_SANDBOX"
          while true; do echo "tick $(date +%T)"; sleep 2; done
YAML
"$KUBECTL" wait --for=condition=Ready pod/demo --timeout=60s >/dev/null
k get pod demo -o wide

step "The process runs on the agent's host, in its sandbox"
pgrep -af "got SIGTERM, bye" | grep -v pgrep || true

step "The legacy spec rides in the pod as base64 protobuf (mesos.ContainerInfo)"
k get pod demo -o jsonpath='{.metadata.annotations.vk-titus\.io/container-info}{"\n"}'

step "The agent's view (Mesos operator API, GET_CONTAINERS; the stack's agents demand credentials)"
curl -s ${MESOS_CURLRC:+-K "$MESOS_CURLRC"} -X POST -H 'Content-Type: application/json' -d '{"type":"GET_CONTAINERS","get_containers":{"show_standalone":true}}' \
  "$LEGACY_AGENT/api/v1" | head -c 600; echo

sleep 4
step "Logs, through the API server and the virtual node's kubelet API"
k logs demo --tail=3

step "exec: a session in the container's sandbox and environment (Mesos nested container session)"
k exec demo -- sh -c 'echo "inside: $(pwd)"; exit 7' || echo "(exit code $? came back through kubectl)"

step "Prometheus metrics of the bridge: containers by state-machine state, transitions, agent calls"
curl -s "$VK_METRICS/metrics" | grep -E '^vktitus_(containers|state_transitions_total|agent_calls_total)\{' | head -12

step "Deletion: SIGTERM, the grace period, then the container is removed"
k delete pod demo --wait=true
step "The story kubectl describe tells: kubelet-style events for each transition"
k get events --field-selector involvedObject.name=demo --sort-by=.lastTimestamp

if [ -n "${LEGACY_API:-}" ]; then
  app="demo-app-$$"
  # The job API authenticates every caller: the demo presents the stack's
  # test client certificate (JOB_API_*; absent on a plain-HTTP gateway).
  tls=()
  [ -z "${JOB_API_CA:-}" ] || tls=(--cacert "$JOB_API_CA" --cert "$JOB_API_CERT" --key "$JOB_API_KEY")
  api() { curl -s "${tls[@]}" -X "$1" -H 'Content-Type: application/json' "$LEGACY_API$2" ${3:+-d "$3"}; }
  job='{"owner":{"teamEmail":"team@example.com"},"applicationName":"'$app'",
    "container":{"resources":{"cpu":0.1,"memoryMB":32},"image":{"name":"busybox","tag":"latest"},
    "entryPoint":["sh","-c"],"command":["echo working; sleep 2"]},"batch":{"size":1}}'

  # What Spinnaker follows: the gRPC event stream of the app's jobs, over both worlds
  # (the jobs CLI reads LEGACY_API_GRPC and the JOB_API_* certificate from .local/env).
  observed=$(mktemp)
  timeout 45 bin/vk-titus jobs observe -f "applicationName=$app" >"$observed" 2>&1 &
  observer=$!

  step "The legacy job API (Titus v3) at $LEGACY_API: an old tool keeps submitting and listing jobs of $app"
  (for i in $(seq 1 12); do
     id=$(api POST /api/v3/jobs "$job" | sed -E 's/.*"id":"([^"]*)".*/\1/')
     printf '   [old tool] submitted %s\n' "$id"; sleep 2
   done) &
  tool=$!
  sleep 5
  step "Move $app to Kubernetes: one command, live, no restart"
  bin/vk-titus migration set "$app" kube --by demo --zookeeper "$MIGRATION_ZK"
  sleep 8
  k -n vk-titus-jobs get jobs.batch -l "vk-titus.io/application=$app"
  step "Roll $app back to the legacy path (running Kubernetes jobs stay where they are)"
  bin/vk-titus migration set "$app" legacy --by demo --zookeeper "$MIGRATION_ZK"
  wait "$tool"
  step "The old tool lists the app's jobs: one list, both worlds (legacy-… and kube-… ids)"
  api GET "/api/v3/jobs?applicationName=$app&pageSize=20" |
    python3 -c 'import json,sys; [print("  ", j["id"], j["status"]["state"]) for j in json.load(sys.stdin)["items"]]'
  step "ObserveJobs (gRPC, as Spinnaker follows Titus) saw the app's jobs in both worlds as they changed"
  sleep 3
  kill "$observer" 2>/dev/null || true
  wait "$observer" 2>/dev/null || true
  grep -E ' job  (legacy|kube)-' "$observed" | head -12 | sed 's/^/   /'
  echo "   … $(grep -c ' task ' "$observed" || true) task updates"
  rm -f "$observed"
  step "Every stage change is recorded"
  bin/vk-titus migration history "$app" --zookeeper "$MIGRATION_ZK"
fi

step "The state machine every pod container follows (vk-titus statemachine)"
bin/vk-titus statemachine --format mermaid | head -20
echo "  … (docs/statemachine.md has all of it)"
printf '\nThe stack is still up: set -a; . .local/env; set +a; then $KUBECTL … ; make down stops it.\n'
