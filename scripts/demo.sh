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

step "The agent's view (Mesos operator API, GET_CONTAINERS)"
curl -s -X POST -H 'Content-Type: application/json' -d '{"type":"GET_CONTAINERS","get_containers":{"show_standalone":true}}' \
  "$LEGACY_AGENT/api/v1" | head -c 600; echo

sleep 4
step "Logs, through the API server and the virtual node's kubelet API"
k logs demo --tail=3

step "Deletion: SIGTERM, the grace period, then the container is removed"
k delete pod demo --wait=true
k get events --field-selector involvedObject.name=demo --sort-by=.lastTimestamp

step "The state machine every pod container follows (vk-titus statemachine)"
bin/vk-titus statemachine --format mermaid | head -20
echo "  … (docs/statemachine.md has all of it)"
printf '\nThe stack is still up: set -a; . .local/env; set +a; then $KUBECTL … ; make down stops it.\n'
