#!/usr/bin/env bash
# A three-node RabbitMQ cluster on loopback, for the cluster tests and for trying docs/scaling.md's layout
# on one machine. Each node is a broker started by scripts/services.sh with its own ports, node name and
# data folder, all with one Erlang cookie, and with the deployment's own conf files: compose/rabbitmq.conf
# and compose/rabbitmq-cluster.conf (its node names rabbit@fleet-mq-N replaced by the local ones). Node 1
# boots first and the others join it through that file's peer discovery; then the fleet's topology and
# policies (topology/definitions.json) are imported. Installs nothing (scripts/services.sh install does).
#
#   scripts/cluster.sh start        start the nodes that are not running (a killed node rejoins)
#   scripts/cluster.sh stop         stop every node by its PID and delete the cluster's folder
#   scripts/cluster.sh status       the nodes, their PIDs and the cluster's view of itself
#   scripts/cluster.sh env          AMQP_CLUSTER_URLS (node 1, 2, 3) and where this script and its state are
#   scripts/cluster.sh kill N       SIGKILL node N (1-3) by its PID, as a crash would
#   scripts/cluster.sh freeze N     SIGSTOP node N: it hangs with its sockets open (thaw N: SIGCONT)
#   scripts/cluster.sh leader Q     which node (1-3) leads quorum queue Q on vhost /
#
# Nodes fleet-c1..3@localhost (FLEET_CLUSTER_NODE_PREFIX), AMQP on CLUSTER_PORT (default 5681) and the next
# two ports, management on those + 10000, distribution on those + 20000. State in $FLEET_CLUSTER_DIR
# (default /tmp/ec2-recovery-fleet-cluster). Three nodes take about 430 MB.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${FLEET_CLUSTER_DIR:-/tmp/ec2-recovery-fleet-cluster}"
BASE="${CLUSTER_PORT:-5681}"
PREFIX="${FLEET_CLUSTER_NODE_PREFIX:-fleet-c}"
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
NODES=(1 2 3)

log() { printf '[cluster] %s\n' "$*" >&2; }

node_name() { echo "$PREFIX$1@localhost"; }
node_dir() { echo "$DIR/node$1"; }
amqp_port() { echo $((BASE + $1 - 1)); }
beam_pid() { cat "$(node_dir "$1")/rabbitmq/rabbit.pid" 2>/dev/null || true; }
wrapper_pid() { cat "$(node_dir "$1")/rabbitmq.pid" 2>/dev/null || true; }
running() { local p; p=$(wrapper_pid "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

check_node() { case "${1:-}" in 1|2|3) ;; *) log "node must be 1, 2 or 3, not '${1:-}'"; exit 2 ;; esac; }

# The environment services.sh runs node N with.
node_env() {
  local n=$1 port; port=$(amqp_port "$n")
  export FLEET_SERVICES_DIR; FLEET_SERVICES_DIR=$(node_dir "$n")
  export RABBITMQ_PORT=$port RABBITMQ_MGMT_PORT=$((port + 10000)) RABBITMQ_DIST_PORT=$((port + 20000))
  export RABBITMQ_NODENAME; RABBITMQ_NODENAME=$(node_name "$n")
  export RABBITMQ_EXTRA_CONF="$DIR/cluster.conf"
  # Erlang distribution on loopback only.
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

# rabbitmqctl against node N, as that node's user (its HOME holds the cookie).
ctl() {
  local n=$1; shift
  HOME="$(node_dir "$n")/rabbitmq/home" RABBITMQ_DIST_PORT=$(($(amqp_port "$n") + 20000)) \
    ERL_EPMD_ADDRESS=127.0.0.1 "$CTL" -q -n "$(node_name "$n")" "$@"
}

# Any running node, for cluster-wide commands.
live_node() {
  local n
  for n in "${NODES[@]}"; do running "$n" && { echo "$n"; return 0; }; done
  return 1
}

prepare() {
  mkdir -p "$DIR"
  if [ ! -f "$DIR/cookie" ]; then
    (umask 077; head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F' | head -c 32 > "$DIR/cookie")
  fi
  # The deployment's conf, then its cluster conf with this machine's node names.
  {
    cat "$ROOT/compose/rabbitmq.conf"
    sed -E "s/rabbit@fleet-mq-([0-9]+)/$PREFIX\\1@localhost/" "$ROOT/compose/rabbitmq-cluster.conf"
  } > "$DIR/cluster.conf"
  local n home
  for n in "${NODES[@]}"; do
    home="$(node_dir "$n")/rabbitmq/home"
    mkdir -p "$home"
    install -m 400 "$DIR/cookie" "$home/.erlang.cookie"
  done
}

start_node() {
  local n=$1
  running "$n" && return 0
  # A stale pid file would make `rabbitmqctl wait` watch the dead process.
  rm -f "$(node_dir "$n")/rabbitmq/rabbit.pid"
  (node_env "$n"; "$ROOT/scripts/services.sh" start rabbitmq 2>&1 | sed "s/^/[node $n] /" >&2; exit "${PIPESTATUS[0]}")
  # epmd is shared by every broker on this machine; services.sh records one only if it started it.
  if [ -f "$(node_dir "$n")/epmd.pid" ]; then mv "$(node_dir "$n")/epmd.pid" "$DIR/epmd.pid"; fi
}

start() {
  local started; started=$(date +%s)
  prepare
  local fresh=""; [ -d "$(node_dir 1)/rabbitmq/mnesia" ] || fresh=1
  if [ -n "$fresh" ]; then
    # Node 1 forms the cluster; the others find it in the classic_config list and join it.
    start_node 1
  fi
  local pids=() n pid
  for n in "${NODES[@]}"; do
    # A node left frozen (a test that stopped half-way) runs again.
    pid=$(beam_pid "$n"); [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null || true
    running "$n" && continue
    start_node "$n" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { log "a node did not start (logs in $DIR/node*/rabbitmq/log)"; exit 1; }; done
  heal
  local members
  members=$(ctl "$(live_node)" eval 'length(rabbit_nodes:all_running()).' 2>/dev/null || echo 0)
  if [ "$members" != 3 ]; then
    log "the nodes did not form one cluster ($members running members):"; ctl 1 cluster_status >&2 || true; exit 1
  fi
  if [ -n "$fresh" ]; then
    # The fleet's exchanges, quorum queues and policies, as an operator imports them.
    ctl 1 import_definitions "$ROOT/topology/definitions.json" >/dev/null
  fi
  print_env > "$DIR/cluster.env"
  log "3 nodes running as one cluster after $(( $(date +%s) - started )) s: $(urls)"
}

# A node that hung for longer than the Erlang distribution's net_ticktime (60 s) was given up by the
# others; when it comes back, the cluster's metadata store (Mnesia) reports a partition that no partition
# handling mode heals (the hung node never saw itself cut off). RabbitMQ's remedy is to restart the nodes
# on the other side: here, every node some running node names as partitioned away.
heal() {
  local live partitioned n
  live=$(live_node) || return 0
  partitioned=$(ctl "$live" eval \
    'lists:usort(lists:append([P || {ok, P} <- [catch {ok, rpc:call(N, rabbit_node_monitor, partitions, [], 10000)} || N <- rabbit_nodes:all_running()], is_list(P)])).' \
    2>/dev/null | grep -oE "$PREFIX[0-9]+" | sed "s/^$PREFIX//" | sort -u || true)
  for n in $partitioned; do
    log "node $n is partitioned from the others: restarting it"
    signal_node "$n" KILL
    start_node "$n"
  done
}

stop() {
  local n pid pids=()
  for n in "${NODES[@]}"; do
    pid=$(beam_pid "$n")
    [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null || true   # a frozen node cannot stop
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  # SIGTERM is a graceful stop; a node that is still there after 20 s is killed.
  for _ in $(seq 1 200); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for n in "${NODES[@]}"; do
    pid=$(wrapper_pid "$n")
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -f "$DIR/epmd.pid" ]; then kill "$(cat "$DIR/epmd.pid")" 2>/dev/null || true; fi
  rm -rf "$DIR"
  log "cluster stopped"
}

urls() {
  local n list=()
  for n in "${NODES[@]}"; do list+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/%2f"); done
  (IFS=,; echo "${list[*]}")
}

print_env() {
  cat <<ENV
AMQP_CLUSTER_URLS=$(urls)
AMQP_CLUSTER_MANAGEMENT_URL=http://127.0.0.1:$(($(amqp_port 1) + 10000))
FLEET_CLUSTER_SCRIPT=$ROOT/scripts/cluster.sh
FLEET_CLUSTER_DIR=$DIR
ENV
}

status() {
  local n
  for n in "${NODES[@]}"; do
    if running "$n"; then
      echo "node $n $(node_name "$n") amqp 127.0.0.1:$(amqp_port "$n") pid $(beam_pid "$n")"
    else
      echo "node $n $(node_name "$n") amqp 127.0.0.1:$(amqp_port "$n") not running"
    fi
  done
  local live; live=$(live_node) || { echo "no node running"; return 1; }
  ctl "$live" cluster_status
}

signal_node() { # N SIGNAL
  check_node "$1"
  local pid; pid=$(beam_pid "$1")
  running "$1" && [ -n "$pid" ] || { log "node $1 is not running"; exit 1; }
  kill "-$2" "$pid"
  if [ "$2" = KILL ]; then
    # Returns once the node is gone, its sockets closed.
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    local w; w=$(wrapper_pid "$1")
    for _ in $(seq 1 100); do kill -0 "$w" 2>/dev/null || break; sleep 0.05; done
  fi
  log "node $1 (pid $pid): SIG$2"
}

leader() { # QUEUE -> 1..3
  local live; live=$(live_node) || { log "no node running"; exit 1; }
  local name
  name=$(ctl "$live" list_queues -p / --no-table-headers name leader | awk -v q="$1" -F'\t' '$1 == q { print $2 }')
  [ -n "$name" ] || { log "no queue $1 (or it has no leader)"; exit 1; }
  local n
  for n in "${NODES[@]}"; do [ "$name" = "$(node_name "$n")" ] && { echo "$n"; return 0; }; done
  log "queue $1 is led by $name, not one of this cluster's nodes"; exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  kill) signal_node "${2:-}" KILL ;;
  freeze) signal_node "${2:-}" STOP ;;
  thaw) signal_node "${2:-}" CONT ;;
  leader) [ -n "${2:-}" ] || { log "usage: cluster.sh leader QUEUE"; exit 2; }; leader "$2" ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
