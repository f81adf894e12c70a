#!/usr/bin/env bash
# The local stack for development and the end-to-end tests: a real Kubernetes
# control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager,
# built by scripts/controlplane.sh), ZooKeeper, N legacy agents, vk-titus and
# metrics-server (built by scripts/metrics-server.sh), all on 127.0.0.1 but
# the virtual nodes' address, which is in a network namespace of the stack's
# own (see setup_netns), all state under <repo>/.local.
#
#   scripts/stack.sh up            start what is not running (idempotent), wait
#                                  until usable, write .local/env
#   scripts/stack.sh down          stop exactly what `up` started (pid files)
#   scripts/stack.sh stop NAME     SIGTERM one component (10 s, then SIGKILL);
#                                  for agent-N also its container supervisor
#                                  and containers (swept by working directory)
#   scripts/stack.sh kill NAME     SIGKILL one component and its process group
#                                  at once (a crash). For agent-N only the API
#                                  process dies: its supervisor and containers
#                                  live on (own session), and `start agent-N`
#                                  recovers them (--recover=reconnect)
#   scripts/stack.sh start NAME [-- ARG...]
#                                  restart one component with its recorded
#                                  command line (plus ARGs, for this start
#                                  only), wait until it is healthy
#   scripts/stack.sh status        one line per component
#   scripts/stack.sh sweep [agent-N]
#                                  kill processes left behind by (stopped)
#                                  agents: see sweep_agent_orphans
#
# NAME is one of: etcd kube-apiserver kube-scheduler kube-controller-manager
# zookeeper master-0..master-M agent-0..agent-N vk-titus (or vk-titus-0..R) gateway
# metrics-server. up/down/start/stop/kill take a lock
# (.local/.lock), so parallel callers are serialized.
#
# Environment for `up`:
#   AGENTS=1                 number of legacy agents (0 allowed)
#   MASTERS=1                number of legacy masters (ZooKeeper leader election;
#                            0: vk-titus serves the agents as a static list)
#   AGENT_TIMEOUT=15s        masters declare a silent agent gone after this
#   VK_LOG_LEVEL=info        vk-titus's --log-level (debug logs every queue item)
#   REPLICAS=1               bridge replicas sharing the agents (ownership leases):
#                            1 runs component vk-titus; N > 1 runs vk-titus-0..N-1,
#                            replica i with kubelet API ports from KUBELET_PORT+1000i
#                            and metrics on VK_METRICS_PORT+1000i
#   VK_TITUS=0               do not start vk-titus (nor wait for its node), nor the gateway
#                            (the gateway also needs MASTERS > 0), nor metrics-server
#   NETNS=vkt-<id>           the network namespace of the nodes' address, <id> a hash of
#                            .local's path (so two clones use two); 0: no namespace,
#                            the nodes stay on 127.0.0.1 (nodes/proxy then fails)
#   NETNS_VETH=vkt-<id>      the host side of its veth pair
#   NETNS_SUBNET=            its /30 (A.B.C.D/30, must be free); default: the first free
#                            /30 of 198.18.0.0/15 (RFC 2544's test range) from an offset
#                            taken from <id>
#   SKIP_BUILD=1             do not run `make` (use the bin/ that is there)
#   MESOS_AUTH=1             the agents and masters demand HTTP Basic credentials
#                            (--authenticate_http_readwrite/_readonly, as Mesos);
#                            every caller sends its principal's (see mesos-auth/).
#                            0: everything runs without authentication. Toggling
#                            it on a running stack restarts the agents (their
#                            containers live on), masters, vk-titus and gateway
#   ETCD_FSYNC=1             keep etcd's fsync (default off: a throwaway cluster)
#   ports, each on 127.0.0.1: ETCD_PORT=23790 ETCD_PEER_PORT=23800
#   APISERVER_PORT=26443 SCHEDULER_PORT=26259 CM_PORT=26257 ZK_PORT=22181
#   AGENT_PORT_BASE=25051 (agent-N listens on BASE+N) KUBELET_PORT=10250
#   VK_METRICS_PORT=10255 GATEWAY_PORT=27001 GATEWAY_GRPC_PORT=27104 MASTER_PORT_BASE=25041
#   (master-N listens on BASE+N) METRICS_SERVER_PORT=24443
#
# Layout of .local: pki/ (CA, certs, keys; reused when present: among them
# gateway-serving, the job API's serving certificate, and job-api-client,
# the client certificate tests and tools present to it), *.kubeconfig,
# mesos-auth/ (0700; secrets generated once, kept across ups: <principal>.cred,
# one {"principal", "secret"} each for vk-titus, agent and master, which the
# components send; http_credentials.json, all three, which agents and masters
# accept; vk-titus.curlrc, `curl -K` options sending vk-titus's credential),
# vk-titus.yaml, etcd/ (data), zookeeper/ (conf + data), agents/agent-N/
# (work dirs), logs/<name>.log (appended, one banner per start),
# pids/<name>.pid, cmd/<name> (the shell-quoted command line `start` replays),
# netns (the namespace, veth and addresses `up` made, which `down` removes),
# env (sourceable KEY=value lines; present only while the stack is up).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
L="$root/.local"
PKI="$L/pki"
LOGS="$L/logs"
PIDS="$L/pids"
CMDS="$L/cmd"

ETCD_PORT=${ETCD_PORT:-23790}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-23800}
APISERVER_PORT=${APISERVER_PORT:-26443}
SCHEDULER_PORT=${SCHEDULER_PORT:-26259}
CM_PORT=${CM_PORT:-26257}
ZK_PORT=${ZK_PORT:-22181}
AGENT_PORT_BASE=${AGENT_PORT_BASE:-25051}
MASTER_PORT_BASE=${MASTER_PORT_BASE:-25041}
MASTERS=${MASTERS:-1}
# How long the masters wait for a silent agent before declaring it gone.
AGENT_TIMEOUT=${AGENT_TIMEOUT:-15s}
KUBELET_PORT=${KUBELET_PORT:-10250}
VK_METRICS_PORT=${VK_METRICS_PORT:-10255}
REPLICAS=${REPLICAS:-1}
GATEWAY_PORT=${GATEWAY_PORT:-27001}
GATEWAY_GRPC_PORT=${GATEWAY_GRPC_PORT:-27104}
METRICS_SERVER_PORT=${METRICS_SERVER_PORT:-24443}
AGENTS=${AGENTS:-1}
VK_TITUS=${VK_TITUS:-1}
MESOS_AUTH=${MESOS_AUTH:-1}
AUTH="$L/mesos-auth"
# With masters, vk-titus discovers the agents and names each node after its
# agent id; without, it serves the static agent list from --nodename.
if [ "$MASTERS" -gt 0 ]; then NODE_NAME=agent-0; else NODE_NAME=vk-titus-0; fi
declare -A started_at=() # NAME -> epoch seconds of its launch by this run
# The stack's own id, from .local's path: the default names of its network
# namespace and veth, and where its search for a free /30 begins.
STACK_ID=$(printf '%s' "$L" | cksum | awk '{ printf "%08x", $1 }')
NETNS=${NETNS:-vkt-$STACK_ID}
NETNS_VETH=${NETNS_VETH:-vkt-$STACK_ID}
NETNS_SUBNET=${NETNS_SUBNET:-}
NODE_IP=127.0.0.1 # the nodes' InternalIP; setup_netns sets the namespace's

log() { printf 'stack: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- processes

# rank orders components for `down` (highest first = reverse start order).
rank() {
  case $1 in
    etcd) echo 10 ;;
    kube-apiserver) echo 20 ;;
    kube-scheduler) echo 30 ;;
    kube-controller-manager) echo 40 ;;
    zookeeper) echo 50 ;;
    master-*) echo 60 ;;
    agent-*) echo 70 ;;
    vk-titus*) echo 90 ;;
    gateway) echo 95 ;;
    metrics-server) echo 97 ;;
    *) echo 80 ;;
  esac
}

pidof_component() { # prints the recorded pid, or nothing
  local f="$PIDS/$1.pid"
  [ -f "$f" ] && tr -dc '0-9' <"$f"
  return 0
}

# alive PID: the process exists and is not a zombie.
alive() {
  local pid=$1 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ]
}

# running NAME: its recorded pid is alive and still runs the recorded program
# (guards against pid reuse after a reboot or a long-dead component). Right
# after launch the pid may still be setsid or nohup, which exec the program.
running() {
  local name=$1 pid exe argv0
  pid=$(pidof_component "$name")
  alive "$pid" || return 1
  [ -f "$CMDS/$name" ] || return 0
  exe=$(read_cmd "$name" | head -n1)
  [ -z "$exe" ] && return 0
  argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1) || return 1
  # Compare base names: the recorded path may have changed since (a new
  # control-plane version), and such a process still has to be stoppable.
  case ${argv0##*/} in "${exe##*/}" | setsid | nohup) return 0 ;; *) return 1 ;; esac
}

# save_cmd NAME ARGS...: record the command line `start` replays.
save_cmd() {
  local name=$1; shift
  mkdir -p "$CMDS"
  printf '%q\n' "$@" >"$CMDS/$name"
}

# read_cmd NAME: the recorded arguments, one per line, unquoted.
read_cmd() {
  local line
  while IFS= read -r line; do eval "printf '%s\n' $line"; done <"$CMDS/$1"
}

# launch NAME [ARG...]: start the recorded command line (plus ARGs) detached (own session, so it
# survives make and the calling shell), stdin from /dev/null, output appended
# to logs/NAME.log, pid (the program itself: setsid/nohup exec) to pids/NAME.pid.
launch() {
  local name=$1 pid start
  shift
  local -a cmd
  [ -f "$CMDS/$name" ] || die "no recorded command line for $name (run up first)"
  if running "$name"; then
    log "$name already running (pid $(pidof_component "$name"))"
    return 0
  fi
  mapfile -t cmd < <(read_cmd "$name")
  cmd+=("$@") # extra arguments of `start NAME -- ARG...`: not recorded
  mkdir -p "$LOGS" "$PIDS"
  start=$(date -u +%s)
  printf '==== %s starting %s: %s\n' "$(date -Is)" "$name" "${cmd[*]}" >>"$LOGS/$name.log"
  # fd 9 is the stack lock (see lock_stack): the component must not inherit it.
  (cd "$root" && exec 9>&- && exec setsid nohup "${cmd[@]}" >>"$LOGS/$name.log" 2>&1 </dev/null) &
  pid=$!
  started_at[$name]=$start
  echo "$pid" >"$PIDS/$name.pid"
  log "started $name (pid $pid)"
}

# group_members PGID: pids in that process group.
group_members() {
  ps -eo pid=,pgid= | awk -v g="$1" '$2 == g { print $1 }'
}

# stop_component NAME [SIGNAL [nosweep]]: SIGTERM (or SIGNAL) the recorded
# pid, wait up to 10 s, then SIGKILL its process group (setsid made the pid
# the group id); also kills what is left in that group. Removes the pid file.
# For agent-N it then sweeps the agent's supervisor and containers, unless
# nosweep (the injected crash of `kill`, after which the agent recovers them).
stop_component() {
  local name=$1 sig=${2:-TERM} sweep=${3:-sweep} pid i
  pid=$(pidof_component "$name")
  if [ -z "$pid" ]; then
    rm -f "$PIDS/$name.pid"
    # An agent killed earlier (`kill`) left its supervisor and containers.
    case $name in
      agent-*) if [ "$sweep" = sweep ]; then sweep_agent_orphans "$name"; fi ;;
    esac
    return 0
  fi
  if alive "$pid" && running "$name"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name (pid $pid) still running after 10 s: SIGKILL to its process group"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    fi
    log "stopped $name (pid $pid)"
  fi
  # Whatever the component left in its own process group goes too.
  if [ -n "$(group_members "$pid")" ]; then
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name.pid"
  case $name in
    agent-*) if [ "$sweep" = sweep ]; then sweep_agent_orphans "$name"; fi ;;
  esac
}

# sweep_agent_orphans [agent-N]: the legacy agent runs its containers under a
# supervisor process in a session of its own (so that they survive a crash of
# the agent, as Mesos agent recovery wants), each container in a process group
# of its own, so stopping the agent's group does not reach them, and they are
# not children we could track from bash. The supervisor runs with its working
# directory in the agent's work dir and every container in its sandbox
# (.local/agents/agent-N/...), so kill exactly the processes whose cwd is under
# that directory (all agents' directories when no name is given). Nothing is
# ever matched by name.
sweep_agent_orphans() {
  local dir="$L/agents" pid
  local -a victims=()
  [ $# -gt 0 ] && dir="$L/agents/$1"
  # One find over /proc (not a readlink per process: cheap on a busy machine).
  mapfile -t victims < <(find /proc/[0-9]*/cwd -maxdepth 0 \( -lname "$dir" -o -lname "$dir/*" \) 2>/dev/null |
    sed -E 's|^/proc/([0-9]+)/cwd$|\1|' | grep -vx "$$")
  [ ${#victims[@]} -eq 0 ] && return 0
  log "killing ${#victims[@]} process(es) left in ${dir#"$root/"}: ${victims[*]}"
  kill -TERM "${victims[@]}" 2>/dev/null || true
  sleep 1
  for pid in "${victims[@]}"; do
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

# ---------------------------------------------------------------- waits

tail_log() {
  local name=$1 n=${2:-40}
  if [ -f "$LOGS/$name.log" ]; then
    printf -- '---- last %s lines of .local/logs/%s.log ----\n' "$n" "$name" >&2
    tail -n "$n" "$LOGS/$name.log" >&2
    printf -- '---- end of %s.log ----\n' "$name" >&2
  fi
}

# wait_for NAME SECONDS DESCRIPTION CHECK...: poll CHECK every 0.25 s; on
# timeout (or when the component died) print its log tail and fail.
wait_for() {
  local name=$1 secs=$2 what=$3; shift 3
  local deadline=$((SECONDS + secs))
  while true; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ -f "$PIDS/$name.pid" ] && ! alive "$(pidof_component "$name")"; then
      tail_log "$name" 60
      die "$name exited while waiting for $what"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail_log "$name" 60
      die "timed out after ${secs}s waiting for $what"
    fi
    sleep 0.25
  done
}

kc() { "$CP_BIN/kubectl" --kubeconfig "$L/admin.kubeconfig" "$@"; }

check_etcd() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
check_apiserver() {
  curl -fsS --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" | grep -qx ok
}
check_https_healthz() { curl -fsSk --max-time 2 "https://127.0.0.1:$1/healthz" | grep -qx ok; }
check_default_sa() { kc -n default get serviceaccount default -o name; }
check_zookeeper() {
  local reply
  # shellcheck disable=SC2016 # $0 is expanded by the inner bash
  reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf ruok >&3 && cat <&3' "$ZK_PORT") || return 1
  [ "$reply" = imok ]
}
check_agent() {
  curl -fsS --max-time 2 -X POST -H 'Content-Type: application/json' \
    -d '{"type":"GET_HEALTH"}' "http://127.0.0.1:$1/api/v1" | grep -q '"healthy" *: *true'
}
# shellcheck disable=SC2016 # $0 is expanded by the inner bash
check_tcp() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1"; }
# check_https_ok URL: URL answers ok over TLS with a certificate of the stack's CA.
check_https_ok() { curl -fsS --max-time 2 --cacert "$PKI/ca.crt" "$1" | grep -qx ok; }
check_node_exists() { kc get node "$NODE_NAME" -o name; }

# vk_names: the bridge replicas' component names.
vk_names() {
  local i
  if [ "$REPLICAS" -eq 1 ]; then echo vk-titus; return; fi
  for ((i = 0; i < REPLICAS; i++)); do echo "vk-titus-$i"; done
}
# vk_index NAME: the replica's index (vk-titus alone is 0).
vk_index() { if [ "$1" = vk-titus ]; then echo 0; else echo "${1#vk-titus-}"; fi; }
vk_metrics_port() { echo $((VK_METRICS_PORT + 1000 * $(vk_index "$1"))); }
any_vk_running() {
  local n
  for n in $(vk_names); do running "$n" && return 0; done
  return 1
}

# check_node_ready: Ready=True, with a heartbeat from after vk-titus's latest
# start (etcd keeps the node from an earlier run, Ready=True included, so
# `kubectl wait --for=condition=Ready` alone would pass on a stale status).
check_node_ready() {
  local out st hb since=${started_at[$1]:-0}
  out=$(kc get node "$NODE_NAME" -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}') || return 1
  read -r st hb <<<"$out"
  [ "$st" = True ] || return 1
  [ "$since" -eq 0 ] && return 0
  [ -n "$hb" ] && [ "$(date -u -d "$hb" +%s)" -ge "$since" ]
}

# wait_node_ready NAME: the node registered and Ready since replica NAME started.
wait_node_ready() {
  wait_for "$1" 60 "node $NODE_NAME to register" check_node_exists
  wait_for "$1" 120 "node $NODE_NAME to be Ready" check_node_ready "$1"
  log "node $NODE_NAME Ready"
}

# wait_component NAME: the health check for one component (used by start).
wait_component() {
  case $1 in
    etcd) wait_for etcd 30 "etcd /health" check_etcd ;;
    kube-apiserver) wait_for kube-apiserver 90 "kube-apiserver /readyz" check_apiserver ;;
    kube-scheduler) wait_for kube-scheduler 60 "kube-scheduler /healthz" check_https_healthz "$SCHEDULER_PORT" ;;
    kube-controller-manager) wait_for kube-controller-manager 60 "kube-controller-manager /healthz" check_https_healthz "$CM_PORT" ;;
    zookeeper) wait_for zookeeper 60 "zookeeper ruok" check_zookeeper ;;
    agent-*) wait_for "$1" 30 "$1 GET_HEALTH" check_agent "$((AGENT_PORT_BASE + ${1#agent-}))" ;;
    master-*) wait_for "$1" 30 "$1 GET_HEALTH" check_agent "$((MASTER_PORT_BASE + ${1#master-}))" ;;
    vk-titus)
      wait_for vk-titus 60 "vk-titus metrics port $VK_METRICS_PORT" check_tcp "$VK_METRICS_PORT"
      wait_node_ready vk-titus
      ;;
    # A replica among several may own no node yet (nor ever, with fewer
    # agents than replicas): its metrics port says it runs; `up` then waits
    # for the first node once.
    vk-titus-*) wait_for "$1" 60 "$1 metrics port $(vk_metrics_port "$1")" check_tcp "$(vk_metrics_port "$1")" ;;
    gateway) wait_for gateway 60 "gateway /healthz" check_https_ok "https://127.0.0.1:$GATEWAY_PORT/healthz" ;;
    metrics-server) wait_for metrics-server 60 "metrics-server /livez" check_https_ok "https://127.0.0.1:$METRICS_SERVER_PORT/livez" ;;
    *) sleep 1; running "$1" || { tail_log "$1"; die "$1 exited"; } ;;
  esac
}

# ---------------------------------------------------------------- install/build

need_root() { # run a command as root (sudo when not root)
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

install_deps() {
  local -a pkgs=()
  [ -d /usr/share/zookeeper ] && [ -f /usr/share/java/zookeeper.jar ] || pkgs+=(zookeeper)
  command -v java >/dev/null || pkgs+=(default-jre-headless)
  command -v openssl >/dev/null || pkgs+=(openssl)
  command -v curl >/dev/null || pkgs+=(curl)
  # nft sets up the nodes' network namespace (setup_netns).
  if [ "$NETNS" != 0 ] && ! command -v nft >/dev/null && [ ! -x /usr/sbin/nft ]; then pkgs+=(nftables); fi
  [ ${#pkgs[@]} -eq 0 ] && return 0
  log "installing ${pkgs[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  need_root apt-get update -qq >/dev/null
  need_root apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

build_all() {
  CP_BIN=$("$root/scripts/controlplane.sh")
  [ -x "$CP_BIN/kubectl" ] || die "control plane build did not produce $CP_BIN/kubectl"
  # metrics-server scrapes the virtual nodes: without vk-titus there are none.
  if [ "$VK_TITUS" != 0 ]; then
    MS_BIN=$("$root/scripts/metrics-server.sh")
    [ -x "$MS_BIN/metrics-server" ] || die "scripts/metrics-server.sh did not produce $MS_BIN/metrics-server"
  fi
  [ "${SKIP_BUILD:-0}" = 1 ] && return 0
  local -a targets=()
  [ "$AGENTS" -gt 0 ] && targets+=(bin/legacy-agent)
  [ "$MASTERS" -gt 0 ] && targets+=(bin/legacy-master)
  [ "$VK_TITUS" != 0 ] && targets+=(bin/vk-titus)
  [ ${#targets[@]} -eq 0 ] && return 0
  log "building ${targets[*]}"
  make -s -C "$root" "${targets[@]}"
}

# ---------------------------------------------------------------- network namespace

# The API server refuses to proxy to a loopback node address ("address not
# allowed"), so nodes/proxy (`kubectl get --raw /api/v1/nodes/N/proxy/...`
# and what is built on it) cannot reach a kubelet API on 127.0.0.1. `up`
# therefore makes a network namespace of its own, joined to the host by a
# veth pair on a free /30: the host side gets NETNS_HOST_IP, the namespace
# side NODE_IP, which every bridge replica announces as its nodes' InternalIP
# (--node-ip). Nothing runs in the namespace: its own nftables rules send each
# TCP connection to NODE_IP back to NETNS_HOST_IP, same port (DNAT; and SNAT
# to NODE_IP, since the host drops a packet from its own address that arrives
# on the veth), where the bridge's kubelet API listens (it binds every
# address). So whichever ports the replicas' nodes take, the API server and
# metrics-server reach them at NODE_IP, and no packet goes anywhere but
# loopback and that namespace. (The bridge cannot run in the namespace
# itself: it talks to everything else on the host's loopback; and a
# forwarding process in there would need a listener per kubelet port.)

# ip2int A.B.C.D: the address as a number; int2ip the reverse.
ip2int() {
  local IFS=. a b c d
  read -r a b c d <<<"$1"
  echo $(((a << 24) | (b << 16) | (c << 8) | d))
}
int2ip() { echo "$(($1 >> 24 & 255)).$(($1 >> 16 & 255)).$(($1 >> 8 & 255)).$(($1 & 255))"; }

# used_ranges: "FIRST LAST" (numbers) of every IPv4 prefix the host has an
# address on or a route to, in any routing table (default routes aside).
used_ranges() {
  local p net len n
  {
    ip -4 -o addr show | awk '{ print $4 }'
    ip -4 route show table all |
      awk '$1 ~ /^(local|broadcast|unicast|anycast|multicast|blackhole|unreachable|prohibit|throw|nat)$/ { print $2; next } { print $1 }'
  } | while read -r p; do
    [ "$p" = default ] && continue
    net=${p%/*} len=32
    [ "$p" != "$net" ] && len=${p#*/}
    n=$(($(ip2int "$net") & ~((1 << (32 - len)) - 1) & 0xffffffff))
    echo "$n $((n + (1 << (32 - len)) - 1))"
  done
}

# subnet_free NET: the /30 starting at NET (a number) overlaps nothing of
# used_ranges (given as the remaining arguments).
subnet_free() {
  local net=$1 r first last
  shift
  for r in "$@"; do
    read -r first last <<<"$r"
    if [ "$net" -le "$last" ] && [ $((net + 3)) -ge "$first" ]; then return 1; fi
  done
}

# pick_subnet: NETNS_SUBNET's network (a number) when it is free, else the
# first free /30 of 198.18.0.0/15 (RFC 2544's range for tests) from an offset
# taken from STACK_ID, so that two stacks rarely race for the same one.
pick_subnet() {
  local base i net
  local -a used=()
  mapfile -t used < <(used_ranges)
  if [ -n "$NETNS_SUBNET" ]; then
    [[ "$NETNS_SUBNET" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/30$ ]] || die "NETNS_SUBNET must be a /30 (A.B.C.D/30), got '$NETNS_SUBNET'"
    net=$(($(ip2int "${NETNS_SUBNET%/*}") & ~3))
    subnet_free "$net" "${used[@]}" || die "NETNS_SUBNET $NETNS_SUBNET overlaps an address or route of this host (ip -4 addr, ip route)"
    echo "$net"
    return 0
  fi
  base=$(ip2int 198.18.0.0)
  for ((i = 0; i < 32768; i++)); do
    net=$((base + 4 * ((16#$STACK_ID + i) % 32768)))
    if subnet_free "$net" "${used[@]}"; then echo "$net"; return 0; fi
  done
  die "no free /30 in 198.18.0.0/15: set NETNS_SUBNET"
}

netns_exists() { [ -e "/run/netns/$1" ]; }
# netns_rec KEY: KEY's value in .local/netns.
netns_rec() { sed -n "s/^$1=//p" "$L/netns" 2>/dev/null; }

# setup_netns: NODE_IP becomes the namespace side of the stack's veth pair,
# the namespace made, or the one .local/netns records kept while it is
# intact. When the machine does not allow it (not root, no nftables), one log
# line says so and NODE_IP stays 127.0.0.1.
setup_netns() {
  local err="$L/netns.err" net host node
  if [ "$NETNS" = 0 ]; then
    teardown_netns
    log "NETNS=0: the nodes' address is 127.0.0.1, which the API server's nodes/proxy refuses"
    return 0
  fi
  if [ -f "$L/netns" ]; then
    host=$(netns_rec NETNS_HOST_IP)
    if [ "$(netns_rec NETNS)" = "$NETNS" ] && [ "$(netns_rec NETNS_VETH)" = "$NETNS_VETH" ] && netns_exists "$NETNS" &&
      ip -4 -o addr show dev "$NETNS_VETH" 2>/dev/null | grep -qF " $host/30 "; then
      NODE_IP=$(netns_rec NODE_IP)
      return 0
    fi
    teardown_netns
  fi
  if netns_exists "$NETNS"; then
    log "network namespace $NETNS exists but .local/netns does not record it (another stack's?): the nodes stay on 127.0.0.1 (nodes/proxy fails); remove it (ip netns del $NETNS) or set NETNS"
    return 0
  fi
  net=$(pick_subnet)
  host=$(int2ip $((net + 1))) node=$(int2ip $((net + 2)))
  # Recorded before anything is made, so that teardown_netns also removes
  # what a failed attempt left.
  printf 'NETNS=%s\nNETNS_VETH=%s\nNETNS_HOST_IP=%s\nNODE_IP=%s\n' "$NETNS" "$NETNS_VETH" "$host" "$node" >"$L/netns"
  if need_root ip netns add "$NETNS" 2>"$err" &&
    need_root ip link add "$NETNS_VETH" type veth peer name vkt0 netns "$NETNS" 2>"$err" &&
    need_root ip addr add "$host/30" dev "$NETNS_VETH" 2>"$err" &&
    need_root ip link set "$NETNS_VETH" up 2>"$err" &&
    need_root ip -n "$NETNS" addr add "$node/30" dev vkt0 2>"$err" &&
    need_root ip -n "$NETNS" link set vkt0 up 2>"$err" &&
    need_root ip netns exec "$NETNS" sysctl -qw net.ipv4.ip_forward=1 2>"$err" &&
    printf '%s\n' \
      'table ip vk-titus {' \
      '  chain prerouting {' \
      '    type nat hook prerouting priority dstnat; policy accept;' \
      "    ip daddr $node meta l4proto tcp dnat to $host" \
      '  }' \
      '  chain postrouting {' \
      '    type nat hook postrouting priority srcnat; policy accept;' \
      "    ip daddr $host snat to $node" \
      '  }' \
      '}' | need_root ip netns exec "$NETNS" nft -f - 2>"$err"; then
    rm -f "$err"
    NODE_IP=$node
    log "network namespace $NETNS: the nodes' address is $node (host side: $NETNS_VETH, $host)"
    return 0
  fi
  log "no network namespace ($(tail -n1 "$err")): the nodes stay on 127.0.0.1, which the API server's nodes/proxy refuses"
  rm -f "$err"
  teardown_netns
}

# teardown_netns: remove the namespace and veth that .local/netns records
# (deleting the namespace takes its end of the pair along, and so the pair).
teardown_netns() {
  [ -f "$L/netns" ] || return 0
  local ns veth
  ns=$(netns_rec NETNS) veth=$(netns_rec NETNS_VETH)
  if [ -n "$ns" ] && netns_exists "$ns"; then
    if need_root ip netns del "$ns"; then log "removed network namespace $ns"; else log "warning: could not delete network namespace $ns"; fi
  fi
  if [ -n "$veth" ] && ip link show dev "$veth" >/dev/null 2>&1; then
    need_root ip link del "$veth" || log "warning: could not delete link $veth"
  fi
  rm -f "$L/netns"
}

# ---------------------------------------------------------------- PKI

# cert NAME SUBJECT EXTKEYUSAGE [SANS]: a CA-signed key pair pki/NAME.{crt,key},
# kept when it already exists.
cert() {
  local name=$1 subj=$2 eku=$3 sans=${4:-}
  [ -s "$PKI/$name.crt" ] && [ -s "$PKI/$name.key" ] && return 0
  local ext="$PKI/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    if [ -n "$sans" ]; then echo "subjectAltName=$sans"; fi
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -subj "$subj" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
  chmod 600 "$PKI/$name.key"
}

make_pki() {
  mkdir -p "$PKI"
  if [ ! -s "$PKI/ca.crt" ] || [ ! -s "$PKI/ca.key" ]; then
    log "creating PKI in ${PKI#"$root/"}"
    rm -f "$PKI"/*.crt "$PKI"/*.key "$PKI"/*.srl
    openssl req -x509 -new -newkey rsa:2048 -nodes -days 3650 -sha256 \
      -subj "/CN=vk-titus-local-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
    chmod 600 "$PKI/ca.key"
  fi
  cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=admin" clientAuth
  cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
  cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert apiserver-kubelet-client "/O=system:masters/CN=system:kube-apiserver-kubelet-client" clientAuth
  # The aggregation layer: the API server proxies metrics.k8s.io to
  # metrics-server as front-proxy-client, naming the caller in request
  # headers that metrics-server believes only from a certificate of this CA
  # with that name (--requestheader-allowed-names). metrics-server's own
  # client certificate is its identity towards the API server and the
  # kubelet API (RBAC in apply_rbac); the APIService reaches it as
  # metrics-server.kube-system.svc (see register_metrics_api).
  cert front-proxy-client "/CN=front-proxy-client" clientAuth
  cert metrics-server "/CN=metrics-server" clientAuth
  cert metrics-server-serving "/CN=metrics-server" serverAuth \
    "IP:127.0.0.1,DNS:localhost,DNS:metrics-server.kube-system.svc"
  # vk-titus runs with the least-privilege RBAC of manifests/base (see
  # apply_rbac), not as a cluster admin, so the stack proves the ClusterRole.
  cert vk-titus "/CN=vk-titus" clientAuth
  cert gateway "/CN=vk-titus-gateway" clientAuth
  # The job API (the gateway's REST and gRPC ports) serves over TLS, and its
  # callers authenticate: tests, vk-chaos and the demo present job-api-client,
  # whose group system:masters every SubjectAccessReview allows.
  cert gateway-serving "/CN=vk-titus-gateway" serverAuth "IP:127.0.0.1,DNS:localhost"
  cert job-api-client "/O=system:masters/CN=vk-titus-e2e" clientAuth
  # The kubelet API's certificate names the nodes' address (the API server
  # and metrics-server verify it), which changes with the namespace's /30.
  if [ -s "$PKI/kubelet.crt" ] && ! openssl x509 -in "$PKI/kubelet.crt" -noout -ext subjectAltName 2>/dev/null |
    grep -qE "IP Address:$NODE_IP(,|\$)"; then
    rm -f "$PKI/kubelet.crt" "$PKI/kubelet.key"
  fi
  cert kubelet "/CN=$NODE_NAME" serverAuth "IP:127.0.0.1,IP:$NODE_IP,DNS:localhost,DNS:$NODE_NAME"
  if [ ! -s "$PKI/sa.key" ] || [ ! -s "$PKI/sa.pub" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    chmod 600 "$PKI/sa.key"
  fi
}

# ---------------------------------------------------------------- Mesos credentials

# The stack's principals: vk-titus (the bridge, the gateway and the tests'
# direct calls), agent (its registration with the masters) and master (its
# calls to the agents).
MESOS_PRINCIPALS=(vk-titus agent master)

# mesos_secret PRINCIPAL: the secret of mesos-auth/PRINCIPAL.cred, in the
# shape make_mesos_auth writes it.
mesos_secret() {
  sed -n 's/^{"principal": "[^"]*", "secret": "\([0-9a-f]\{1,\}\)"}$/\1/p' "$AUTH/$1.cred"
}

# make_mesos_auth: one credential file per principal, its secret generated
# only when the file is missing (a running component keeps the secret it
# started with: a new one would lock it out), then http_credentials.json with
# all of them and vk-titus's curl options. Files are 0600 in a 0700
# directory, each written to a temporary file and renamed.
make_mesos_auth() {
  local p f secret json="" sep=""
  mkdir -p "$AUTH"
  chmod 700 "$AUTH"
  for p in "${MESOS_PRINCIPALS[@]}"; do
    f="$AUTH/$p.cred"
    if [ ! -s "$f" ]; then
      secret=$(openssl rand -hex 24) || die "openssl rand failed"
      (umask 077 && printf '{"principal": "%s", "secret": "%s"}\n' "$p" "$secret" >"$f.tmp")
      mv "$f.tmp" "$f"
      log "generated the Mesos credential of $p: ${f#"$root/"}"
    fi
    secret=$(mesos_secret "$p")
    [ -n "$secret" ] || die "${f#"$root/"} is not a credential stack.sh wrote: remove ${AUTH#"$root/"}/ and restart the stack (down, up) for new ones"
    json+="$sep{\"principal\": \"$p\", \"secret\": \"$secret\"}"
    sep=", "
    if [ "$p" = vk-titus ]; then
      (umask 077 && printf 'user = "%s:%s"\n' "$p" "$secret" >"$AUTH/$p.curlrc.tmp")
      mv "$AUTH/$p.curlrc.tmp" "$AUTH/$p.curlrc"
    fi
  done
  (umask 077 && printf '{"credentials": [%s]}\n' "$json" >"$AUTH/http_credentials.json.tmp")
  mv "$AUTH/http_credentials.json.tmp" "$AUTH/http_credentials.json"
  chmod 600 "$AUTH"/*
}

# gateway_takes_mesos_credentials: bin/vk-titus gateway has the
# --mesos-credentials flag (for the masters' job API). Asked of its --help,
# whatever its exit status, so the stack runs binaries from before the flag
# too.
gateway_takes_mesos_credentials() {
  local help
  help=$(timeout 20 "$root/bin/vk-titus" gateway --help 2>&1) || true
  grep -qE -- '(^|[[:space:],])--mesos-credentials([[:space:]=]|$)' <<<"$help"
}

# kubeconfig FILE USER CERTNAME: a kubeconfig for the local apiserver that
# authenticates with pki/CERTNAME.{crt,key} (absolute paths, rewritten each up).
kubeconfig() {
  local file=$1 user=$2 certname=$3
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vk-titus-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$certname.crt
    client-key: $PKI/$certname.key
contexts:
- name: $user@vk-titus-local
  context:
    cluster: vk-titus-local
    user: $user
    namespace: default
current-context: $user@vk-titus-local
EOF
  mv "$file.tmp" "$file"
}

# ---------------------------------------------------------------- configs

agent_port() { echo $((AGENT_PORT_BASE + $1)); }

# agent_resources N: agent-0 has 8 cpus/16 GiB; the others vary.
agent_resources() {
  local cpus=(8 4 16 2) mem=(16384 8192 32768 4096)
  local i=$(($1 % 4))
  echo "cpus:${cpus[$i]};mem:${mem[$i]};disk:20480"
}

write_configs() {
  mkdir -p "$L" "$LOGS" "$PIDS" "$CMDS" "$L/etcd" "$L/zookeeper/conf" "$L/zookeeper/data" \
    "$L/kubelet-plugins/volume/exec" "$L/agents"
  chmod 700 "$L/etcd"
  kubeconfig "$L/admin.kubeconfig" admin admin
  kubeconfig "$L/vk-titus.kubeconfig" vk-titus vk-titus
  kubeconfig "$L/gateway.kubeconfig" vk-titus-gateway gateway
  kubeconfig "$L/metrics-server.kubeconfig" metrics-server metrics-server
  kubeconfig "$L/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler
  kubeconfig "$L/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager

  cat >"$L/zookeeper/conf/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$L/zookeeper/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,cons
EOF
  cat >"$L/zookeeper/conf/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
EOF

  local i new="$L/vk-titus.yaml.new"
  if [ "$MASTERS" -gt 0 ]; then
    cat >"$new" <<EOF
master: zk://127.0.0.1:$ZK_PORT/mesos
agentPollInterval: 2s
timeouts:
  healthInterval: 2s
  agentGone: 60s
EOF
  else
    {
      echo "agents:"
      for ((i = 0; i < AGENTS; i++)); do
        echo "  - endpoint: http://127.0.0.1:$(agent_port "$i")"
      done
    } >"$new"
  fi
  # A running vk-titus is restarted when the agent list it was started with changed.
  local n
  if [ -f "$L/vk-titus.yaml" ] && ! cmp -s "$new" "$L/vk-titus.yaml"; then
    for n in $(vk_names); do
      if running "$n"; then
        log "agent list changed: restarting $n"
        stop_component "$n"
      fi
    done
  fi
  mv "$new" "$L/vk-titus.yaml"
}

record_cmds() {
  local pki=$PKI
  local -a fsync=(--unsafe-no-fsync)
  [ "${ETCD_FSYNC:-0}" = 1 ] && fsync=()
  save_cmd etcd "$CP_BIN/etcd" \
    --name=vk-titus-local \
    --data-dir="$L/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="vk-titus-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    "${fsync[@]}"

  save_cmd kube-apiserver "$CP_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=Node,RBAC \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$pki/ca.crt" \
    --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname \
    --requestheader-client-ca-file="$pki/ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key" \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --profiling=false

  save_cmd kube-scheduler "$CP_BIN/kube-scheduler" \
    --kubeconfig="$L/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false

  save_cmd kube-controller-manager "$CP_BIN/kube-controller-manager" \
    --kubeconfig="$L/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$CM_PORT" \
    --leader-elect=false \
    --controllers='*' \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --flex-volume-plugin-dir="$L/kubelet-plugins/volume/exec"

  local java cp
  java=$(readlink -f "$(command -v java)")
  cp="$L/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
  save_cmd zookeeper "$java" -Xmx256m \
    -Dzookeeper.jmx.log4j.disable=true \
    -Dzookeeper.log.dir="$LOGS" \
    -cp "$cp" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$L/zookeeper/conf/zoo.cfg"

  # With MESOS_AUTH, agents and masters demand credentials on every call but
  # GET_HEALTH and /health (what the waits poll), and each caller sends its
  # principal's: agents to the masters, masters to the agents, vk-titus and
  # the gateway to both.
  local -a http_auth=() master_auth=() agent_auth=() vk_auth=() gateway_auth=()
  if [ "$MESOS_AUTH" != 0 ]; then
    http_auth=(--authenticate_http_readwrite --authenticate_http_readonly --http_credentials "$AUTH/http_credentials.json")
    master_auth=("${http_auth[@]}" --agent-credential "$AUTH/master.cred")
    agent_auth=("${http_auth[@]}" --credential "$AUTH/agent.cred")
    vk_auth=(--mesos-credentials "$AUTH/vk-titus.cred")
    if gateway_enabled; then
      if gateway_takes_mesos_credentials; then
        gateway_auth=(--mesos-credentials "$AUTH/vk-titus.cred")
      else
        log "warning: bin/vk-titus gateway has no --mesos-credentials: it calls the masters without credentials (refused: 401)"
      fi
    fi
  fi

  local i master_flags=()
  for ((i = 0; i < MASTERS; i++)); do
    save_cmd "master-$i" "$root/bin/legacy-master" \
      --listen "127.0.0.1:$((MASTER_PORT_BASE + i))" \
      --zk "zk://127.0.0.1:$ZK_PORT/mesos" \
      --id "master-$i" \
      --hostname 127.0.0.1 \
      --agent-timeout "$AGENT_TIMEOUT" "${master_auth[@]}"
  done
  [ "$MASTERS" -gt 0 ] && master_flags=(--master "zk://127.0.0.1:$ZK_PORT/mesos" --heartbeat-interval 2s)
  for ((i = 0; i < AGENTS; i++)); do
    mkdir -p "$L/agents/agent-$i"
    save_cmd "agent-$i" "$root/bin/legacy-agent" \
      --listen "127.0.0.1:$(agent_port "$i")" \
      --work-dir "$L/agents/agent-$i" \
      --agent-id "agent-$i" \
      --resources "$(agent_resources "$i")" \
      --attributes "zone:zone-$i;instance_type:m5.large" \
      --hostname 127.0.0.1 --recover reconnect "${master_flags[@]}" "${agent_auth[@]}"
  done

  local n
  for n in $(vk_names); do
    save_cmd "$n" "$root/bin/vk-titus" run \
      --kubeconfig "$L/vk-titus.kubeconfig" \
      --identity "$n" --namespace vk-titus-system \
      --nodename "$NODE_NAME" \
      --provider-config "$L/vk-titus.yaml" \
      --listen-port "$((KUBELET_PORT + 1000 * $(vk_index "$n")))" \
      --node-ip "$NODE_IP" \
      --tls-cert-file "$PKI/kubelet.crt" \
      --tls-private-key-file "$PKI/kubelet.key" \
      --client-verify-ca "$PKI/ca.crt" \
      --metrics-addr "127.0.0.1:$(vk_metrics_port "$n")" \
      --enable-profiling \
      --log-level "${VK_LOG_LEVEL:-info}" "${vk_auth[@]}"
  done

  save_cmd gateway "$root/bin/vk-titus" gateway \
    --kubeconfig "$L/gateway.kubeconfig" \
    --listen "127.0.0.1:$GATEWAY_PORT" \
    --legacy-master "zk://127.0.0.1:$ZK_PORT/mesos" \
    --migration-zk "zk://127.0.0.1:$ZK_PORT/vk-titus/migration" \
    --namespace vk-titus-jobs \
    --grpc-listen "127.0.0.1:$GATEWAY_GRPC_PORT" \
    --tls-cert-file "$PKI/gateway-serving.crt" \
    --tls-private-key-file "$PKI/gateway-serving.key" \
    --client-ca-file "$PKI/ca.crt" \
    --job-min-cpu 0.01 --job-min-memory-mb 16 --job-min-disk-mb 0 --job-min-network-mbps 0 \
    --log-level "${VK_LOG_LEVEL:-info}" "${gateway_auth[@]}"

  # metrics-server scrapes each node's /metrics/resource at its InternalIP
  # and the port its Node names (one per node), verifying the kubelet API's
  # certificate with the stack's CA, every 10 s (its minimum: `kubectl top`
  # has figures sooner than with the default 60 s; a scrape must time out
  # within 90% of that).
  if [ "$VK_TITUS" != 0 ]; then
    save_cmd metrics-server "$MS_BIN/metrics-server" \
      --kubeconfig="$L/metrics-server.kubeconfig" \
      --authentication-kubeconfig="$L/metrics-server.kubeconfig" \
      --authorization-kubeconfig="$L/metrics-server.kubeconfig" \
      --bind-address=127.0.0.1 \
      --secure-port="$METRICS_SERVER_PORT" \
      --tls-cert-file="$PKI/metrics-server-serving.crt" \
      --tls-private-key-file="$PKI/metrics-server-serving.key" \
      --kubelet-certificate-authority="$PKI/ca.crt" \
      --kubelet-preferred-address-types=InternalIP \
      --kubelet-use-node-status-port \
      --kubelet-request-timeout=5s \
      --metric-resolution=10s
  fi
}

# gateway_enabled: the gateway fronts both worlds, so it needs both.
gateway_enabled() { [ "$VK_TITUS" != 0 ] && [ "$MASTERS" -gt 0 ]; }

write_env() {
  local i f="$L/env.tmp"
  {
    echo "# written by scripts/stack.sh up at $(date -Is); removed by down"
    echo "STACK_ROOT=$L"
    echo "REPO_ROOT=$root"
    echo "PKI=$PKI"
    echo "LOG_DIR=$LOGS"
    echo "KUBECONFIG=$L/admin.kubeconfig"
    echo "VK_TITUS_KUBECONFIG=$L/vk-titus.kubeconfig"
    echo "CONTROLPLANE_BIN=$CP_BIN"
    echo "KUBECTL=$CP_BIN/kubectl"
    echo "APISERVER=https://127.0.0.1:$APISERVER_PORT"
    echo "ETCD=http://127.0.0.1:$ETCD_PORT"
    echo "ZOOKEEPER=127.0.0.1:$ZK_PORT"
    echo "AGENTS=$AGENTS"
    if [ "$AGENTS" -gt 0 ]; then
      echo "LEGACY_AGENT=http://127.0.0.1:$(agent_port 0)"
    else
      echo "LEGACY_AGENT="
    fi
    for ((i = 0; i < AGENTS; i++)); do
      echo "LEGACY_AGENT_$i=http://127.0.0.1:$(agent_port "$i")"
    done
    echo "NODE_NAME=$NODE_NAME"
    echo "MASTERS=$MASTERS"
    if [ "$MASTERS" -gt 0 ]; then
      echo "LEGACY_MASTER=http://127.0.0.1:$MASTER_PORT_BASE"
      echo "LEGACY_MASTER_ZK=zk://127.0.0.1:$ZK_PORT/mesos"
    fi
    for ((i = 0; i < MASTERS; i++)); do
      echo "LEGACY_MASTER_$i=http://127.0.0.1:$((MASTER_PORT_BASE + i))"
    done
    echo "VK_TITUS=$VK_TITUS"
    echo "MESOS_AUTH=$MESOS_AUTH"
    if [ "$MESOS_AUTH" != 0 ]; then
      echo "MESOS_CREDENTIALS=$AUTH/vk-titus.cred"
      echo "MESOS_CURLRC=$AUTH/vk-titus.curlrc"
    fi
    echo "KUBELET_PORT=$KUBELET_PORT"
    # The nodes' InternalIP: the namespace side of the stack's veth pair
    # (see setup_netns), 127.0.0.1 without one.
    echo "NODE_IP=$NODE_IP"
    echo "VK_METRICS=http://127.0.0.1:$VK_METRICS_PORT"
    echo "REPLICAS=$REPLICAS"
    if [ "$VK_TITUS" != 0 ]; then echo "METRICS_SERVER=https://127.0.0.1:$METRICS_SERVER_PORT"; fi
    for n in $(vk_names); do
      echo "VK_METRICS_$(vk_index "$n")=http://127.0.0.1:$(vk_metrics_port "$n")"
    done
    if gateway_enabled; then
      echo "LEGACY_API=https://127.0.0.1:$GATEWAY_PORT"
      echo "LEGACY_API_GRPC=127.0.0.1:$GATEWAY_GRPC_PORT"
      # The job API's CA and the client certificate tests and tools present
      # (curl --cacert "$JOB_API_CA" --cert "$JOB_API_CERT" --key "$JOB_API_KEY").
      echo "JOB_API_CA=$PKI/ca.crt"
      echo "JOB_API_CERT=$PKI/job-api-client.crt"
      echo "JOB_API_KEY=$PKI/job-api-client.key"
      echo "MIGRATION_ZK=zk://127.0.0.1:$ZK_PORT/vk-titus/migration"
    fi
  } >"$f"
  mv "$f" "$L/env"
}

# apply_rbac: the ClusterRole and lease Role of manifests/base, bound to the
# stack's vk-titus user (its client certificate's CN) as the manifests bind
# them to the in-cluster ServiceAccount; the gateway's Role and its right to
# ask the API server about its callers (TokenReview, SubjectAccessReview),
# bound to the stack's vk-titus-gateway user; the job API's example
# ClusterRoles, which the tests bind to ServiceAccounts; and metrics-server's
# rights as upstream's components.yaml grants them to its ServiceAccount,
# bound to the stack's metrics-server user: reading nodes and pods, the
# nodes' metrics subresource (the bridge's kubelet API asks the API server
# whether its caller may get nodes/metrics), asking about its own callers
# (system:auth-delegator) and reading the requestheader CA
# (extension-apiserver-authentication-reader).
apply_rbac() {
  cat >"$L/rbac-local.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: vk-titus-local-user
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: vk-titus}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: vk-titus}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: vk-titus-local-user
  namespace: kube-node-lease
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: vk-titus-node-lease}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: vk-titus}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: vk-titus-ownership-local-user
  namespace: vk-titus-system
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: vk-titus-ownership}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: vk-titus}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: vk-titus-gateway-local-user
  namespace: vk-titus-jobs
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: vk-titus-gateway}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: vk-titus-gateway}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: vk-titus-gateway-auth-delegator-local-user
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: vk-titus-gateway-auth-delegator}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: vk-titus-gateway}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:metrics-server
rules:
- {apiGroups: [""], resources: [nodes/metrics], verbs: [get]}
- {apiGroups: [""], resources: [pods, nodes], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:metrics-server-local-user
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:metrics-server}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: metrics-server}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: metrics-server:system:auth-delegator-local-user
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: metrics-server}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: metrics-server-auth-reader-local-user
  namespace: kube-system
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: metrics-server}]
EOF
  kc apply -f "$root/manifests/base/namespace.yaml" >/dev/null || die "creating the namespaces failed"
  kc apply -f "$root/manifests/base/rbac.yaml" -f "$root/manifests/base/gateway-rbac.yaml" \
    -f "$root/manifests/base/job-api-roles.yaml" -f "$L/rbac-local.yaml" >/dev/null || die "applying the RBAC failed"
}

# register_metrics_api: metrics-server behind the API server as
# metrics.k8s.io/v1beta1 (what `kubectl top` asks). The APIService names an
# ExternalName Service: the aggregator dials an ExternalName service's name
# at the APIService's port, with no kube-proxy and no endpoints (which may
# not be loopback addresses), and verifies the serving certificate for
# metrics-server.kube-system.svc with caBundle, the stack's CA.
register_metrics_api() {
  cat >"$L/metrics-api.yaml" <<EOF
apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
spec:
  type: ExternalName
  externalName: 127.0.0.1
  ports: [{name: https, port: $METRICS_SERVER_PORT, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {name: metrics-server, namespace: kube-system, port: $METRICS_SERVER_PORT}
  caBundle: $(base64 -w0 "$PKI/ca.crt")
EOF
  kc apply -f "$L/metrics-api.yaml" >/dev/null || die "registering metrics.k8s.io failed"
  wait_for metrics-server 60 "the metrics.k8s.io APIService to be Available" check_metrics_api
}

check_metrics_api() {
  [ "$(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')" = True ]
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local i name f
  [[ "$AGENTS" =~ ^[0-9]+$ ]] || die "AGENTS must be a number, got '$AGENTS'"
  [[ "$REPLICAS" =~ ^[1-9][0-9]*$ ]] || die "REPLICAS must be a positive number, got '$REPLICAS'"
  install_deps
  build_all
  if [ "$AGENTS" -gt 0 ] && [ ! -x "$root/bin/legacy-agent" ]; then die "bin/legacy-agent missing"; fi
  if [ "$VK_TITUS" != 0 ] && [ ! -x "$root/bin/vk-titus" ]; then die "bin/vk-titus missing"; fi
  case $MESOS_AUTH in 0 | 1) ;; *) die "MESOS_AUTH must be 0 or 1, got '$MESOS_AUTH'" ;; esac
  mkdir -p "$L"
  setup_netns
  make_pki
  [ "$MESOS_AUTH" = 0 ] || make_mesos_auth
  write_configs
  local -A recorded=()
  for f in "$CMDS"/*; do
    if [ -f "$f" ]; then recorded[$(basename "$f")]=$(<"$f"); fi
  done
  record_cmds
  restart_changed recorded

  [[ "$MASTERS" =~ ^[0-9]+$ ]] || die "MASTERS must be a number, got '$MASTERS'"
  # Agents, masters and replicas beyond AGENTS/MASTERS/REPLICAS from an
  # earlier `up` are stopped and forgotten.
  local -A replica=()
  for name in $(vk_names); do replica[$name]=1; done
  for f in "$CMDS"/agent-* "$PIDS"/agent-*.pid "$CMDS"/master-* "$PIDS"/master-*.pid "$CMDS"/vk-titus* "$PIDS"/vk-titus*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    case $name in
      agent-*) [ "${name#agent-}" -ge "$AGENTS" ] || continue ;;
      master-*) [ "${name#master-}" -ge "$MASTERS" ] || continue ;;
      vk-titus*) [ -z "${replica[$name]:-}" ] || continue ;;
    esac
    stop_component "$name"
    rm -f "$CMDS/$name"
  done

  # Independent components first, so their start-up overlaps the control plane's.
  launch etcd
  launch zookeeper
  if [ "$MASTERS" -gt 0 ]; then
    wait_component zookeeper
    for ((i = 0; i < MASTERS; i++)); do launch "master-$i"; done
    for ((i = 0; i < MASTERS; i++)); do wait_component "master-$i"; done
  fi
  for ((i = 0; i < AGENTS; i++)); do launch "agent-$i"; done
  wait_component etcd
  launch kube-apiserver
  wait_component kube-apiserver
  launch kube-scheduler
  launch kube-controller-manager
  wait_component zookeeper
  for ((i = 0; i < AGENTS; i++)); do wait_component "agent-$i"; done
  wait_component kube-scheduler
  wait_component kube-controller-manager
  wait_for kube-controller-manager 90 "the default ServiceAccount (controller-manager)" check_default_sa
  if [ "$VK_TITUS" != 0 ]; then
    apply_rbac
    # Virtual nodes left in etcd by an earlier stack (another AGENTS or
    # MASTERS) would look Ready to the scheduler until their leases lapse; a
    # vk-titus that starts now registers the nodes it serves.
    any_vk_running || kc delete nodes -l type=virtual-kubelet --ignore-not-found >/dev/null
    for name in $(vk_names); do launch "$name"; done
    for name in $(vk_names); do wait_component "$name"; done
    [ "$REPLICAS" -eq 1 ] || wait_node_ready "$(vk_names | head -n1)"
    if gateway_enabled; then
      launch gateway
      wait_component gateway
    fi
    launch metrics-server
    wait_component metrics-server
    register_metrics_api
  else
    log "VK_TITUS=0: not starting vk-titus"
    # An APIService whose server is not running blocks every namespace's
    # deletion (the namespace controller cannot list its resources).
    stop_component metrics-server
    kc delete apiservice v1beta1.metrics.k8s.io --ignore-not-found >/dev/null
  fi
  write_env
  log "stack up in ${SECONDS}s; environment: .local/env"
  cat "$L/env"
}

# restart_changed ARRAY: a running agent, master, vk-titus, gateway or
# metrics-server whose command line record_cmds just changed (MESOS_AUTH
# toggled, say) is stopped, so `up` starts it again as recorded. ARRAY names
# an associative array of the command lines before (NAME -> .local/cmd/NAME's
# content). A stopped agent leaves its containers running (nosweep); the new
# one recovers them.
restart_changed() {
  local -n before=$1
  local name
  for name in "${!before[@]}"; do
    case $name in agent-* | master-* | vk-titus* | gateway | metrics-server) ;; *) continue ;; esac
    [ -f "$CMDS/$name" ] && running "$name" || continue
    [ "$(<"$CMDS/$name")" != "${before[$name]}" ] || continue
    log "$name: command line changed: restarting it"
    case $name in
      agent-*) stop_component "$name" TERM nosweep ;;
      *) stop_component "$name" ;;
    esac
  done
}

# components NAMEs with pid files, highest rank (latest started) first.
components_desc() {
  local f name
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    printf '%s %s\n' "$(rank "$name")" "$name"
  done | sort -k1,1nr -k2,2Vr | awk '{ print $2 }'
}

cmd_down() {
  local name
  rm -f "$L/env"
  if [ -d "$PIDS" ]; then
    while read -r name; do
      [ -n "$name" ] && stop_component "$name"
    done < <(components_desc)
  else
    log "nothing to stop"
  fi
  [ -d "$L/agents" ] && sweep_agent_orphans
  teardown_netns
  log "stack down"
}

cmd_status() {
  local name pid state
  if [ ! -d "$CMDS" ]; then echo "no stack in ${L#"$root/"}"; return 0; fi
  for f in "$CMDS"/*; do
    name=$(basename "$f")
    printf '%s %s\n' "$(rank "$name")" "$name"
  done | sort -k1,1n -k2,2V | while read -r _ name; do
    pid=$(pidof_component "$name")
    if running "$name"; then state=running; elif [ -n "$pid" ]; then state=dead; else state=stopped; fi
    printf '%-26s %-8s %s\n' "$name" "$state" "${pid:--}"
  done
  if [ -f "$L/env" ]; then echo "env: ${L#"$root/"}/env"; else echo "env: absent (stack not up)"; fi
  if [ -f "$L/netns" ]; then echo "network namespace: $(netns_rec NETNS), nodes at $(netns_rec NODE_IP)"; fi
}

# Port settings for `start`/`status` come from the environment, like `up`'s;
# the recorded command lines already hold the ports they were started with.
load_cp_bin() {
  CP_BIN=""
  if [ -f "$L/env" ]; then CP_BIN=$(sed -n 's/^CONTROLPLANE_BIN=//p' "$L/env"); fi
  if [ -z "$CP_BIN" ] && [ -f "$CMDS/etcd" ]; then CP_BIN=$(dirname "$(read_cmd etcd | head -n1)"); fi
  if [ -f "$L/env" ]; then
    KUBELET_PORT=$(sed -n 's/^KUBELET_PORT=//p' "$L/env")
    VK_METRICS_PORT=$(sed -n 's|^VK_METRICS=http://127.0.0.1:||p' "$L/env")
    ZK_PORT=$(sed -n 's/^ZOOKEEPER=127.0.0.1://p' "$L/env")
    APISERVER_PORT=$(sed -n 's|^APISERVER=https://127.0.0.1:||p' "$L/env")
    ETCD_PORT=$(sed -n 's|^ETCD=http://127.0.0.1:||p' "$L/env")
    local a0 m0 gw ms
    a0=$(sed -n 's|^LEGACY_AGENT_0=http://127.0.0.1:||p' "$L/env")
    [ -n "$a0" ] && AGENT_PORT_BASE=$a0
    m0=$(sed -n 's|^LEGACY_MASTER_0=http://127.0.0.1:||p' "$L/env")
    [ -n "$m0" ] && MASTER_PORT_BASE=$m0
    gw=$(sed -En 's|^LEGACY_API=https?://127.0.0.1:||p' "$L/env")
    [ -n "$gw" ] && GATEWAY_PORT=$gw
    ms=$(sed -n 's|^METRICS_SERVER=https://127.0.0.1:||p' "$L/env")
    [ -n "$ms" ] && METRICS_SERVER_PORT=$ms
  fi
  return 0
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# lock_stack: one up/down/start/stop/kill at a time per .local (tests may call
# start/stop from parallel test binaries). Launched components close fd 9.
lock_stack() {
  command -v flock >/dev/null || return 0
  mkdir -p "$L"
  exec 9>"$L/.lock"
  if ! flock -w 600 9; then die "could not lock $L/.lock within 600 s"; fi
}

main() {
  [ $# -ge 1 ] || usage
  local sub=$1; shift
  case $sub in up | down | start | stop | kill) lock_stack ;; esac
  case $sub in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    start)
      [ $# -eq 1 ] || { [ $# -ge 2 ] && [ "$2" = -- ]; } || usage
      local name=$1
      shift $(($# > 1 ? 2 : 1))
      load_cp_bin
      launch "$name" "$@"
      wait_component "$name"
      ;;
    stop)
      [ $# -eq 1 ] || usage
      stop_component "$1"
      ;;
    kill)
      [ $# -eq 1 ] || usage
      stop_component "$1" KILL nosweep
      ;;
    sweep) sweep_agent_orphans "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
