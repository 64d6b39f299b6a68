#!/usr/bin/env bash
# Redis with Sentinel on loopback: a primary, two replicas and three Sentinels, for the Sentinel tests and for
# trying docs/scaling.md's layout on one machine. It runs the deployment's own files, as the compose
# services do (compose/docker-compose.cluster.yml): each node's conf is a copy of compose/redis/redis-ha.conf
# (the replica's with `replicaof`), the ACL users are compose/redis/users.acl.in rendered by its script,
# the Sentinels' confs are compose/redis/sentinel.conf.in rendered by its script. Only the addresses differ
# (127.0.0.1 and the ports below). Installs nothing (scripts/services.sh install does).
#
#   scripts/redis-ha.sh start       start what is not running (a killed node comes back as a replica)
#   scripts/redis-ha.sh stop        stop everything by its PID and delete the folder
#   scripts/redis-ha.sh status      the processes and who is primary
#   scripts/redis-ha.sh env         REDIS_HA_* for the tests: Sentinels, master name, passwords, URLs
#   scripts/redis-ha.sh kill N      SIGKILL Redis node N (1-3) as a crash would
#   scripts/redis-ha.sh primary     which node (1-3) the Sentinels name as primary
#
# Redis nodes on REDIS_HA_PORT (default 6391) and the next two ports, Sentinels on 26391-26393 (REDIS_HA_PORT
# + 20000 …). State and passwords in $FLEET_REDIS_HA_DIR (default /tmp/ec2-recovery-fleet-redis-ha).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${FLEET_REDIS_HA_DIR:-/tmp/ec2-recovery-fleet-redis-ha}"
BASE="${REDIS_HA_PORT:-6391}"
KINDS=(admin probe predictor decision actuator notifier operator replica monitor sentinel)

log() { printf '[redis-ha] %s\n' "$*" >&2; }

node_port() { echo $((BASE + $1 - 1)); }
sentinel_port() { echo $((BASE + 20000 + $1 - 1)); }
# A PID from the folder, only while it is still a redis-server (a stale file's PID may be reused).
pid_of() {
  local p; p=$(cat "$DIR/$1.pid" 2>/dev/null || true)
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = redis-server ] && echo "$p"
  return 0
}
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

wait_port() {
  local port=$1 i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

password() { cat "$DIR/passwords/$1"; }

prepare() {
  mkdir -p "$DIR/passwords"
  local kind
  for kind in "${KINDS[@]}"; do
    [ -f "$DIR/passwords/$kind" ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/passwords/$kind")
  done
  # The ACL users as the compose `redis` service renders them.
  local environment=(PATH="$PATH")
  for kind in "${KINDS[@]}"; do
    environment+=("REDIS_$(echo "$kind" | tr 'a-z-' 'A-Z_')_PASSWORD=$(password "$kind")")
  done
  env -i "${environment[@]}" sh "$ROOT/compose/redis/render-users-acl.sh" \
    "$ROOT/compose/redis/users.acl.in" "$DIR/users.acl"
  (umask 077; echo "masterauth $(password replica)" > "$DIR/replication.conf")
}

start_node() {
  local n=$1 port dir
  running "node$n" && return 0
  port=$(node_port "$n"); dir="$DIR/node$n"
  mkdir -p "$dir"
  # The conf lives with the node's data, as in the compose volume: Sentinel has it rewritten.
  if [ ! -f "$dir/redis.conf" ]; then
    cp "$ROOT/compose/redis/redis-ha.conf" "$dir/redis.conf"
    [ "$n" = 1 ] || echo "replicaof 127.0.0.1 $(node_port 1)" >> "$dir/redis.conf"
  fi
  sed -i '/^masterauth /d' "$dir/redis.conf"   # as compose/redis/entrypoint.sh: given anew by the include
  redis-server "$dir/redis.conf" --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize no \
    --loglevel notice --logfile "$dir/redis.log" --include "$DIR/replication.conf" --aclfile "$DIR/users.acl" &
  echo $! > "$DIR/node$n.pid"
  wait_port "$port" || { log "Redis node $n did not start"; tail -20 "$dir/redis.log" >&2; exit 1; }
}

start_sentinel() {
  local n=$1 port dir
  running "sentinel$n" && return 0
  port=$(sentinel_port "$n"); dir="$DIR/sentinel$n"
  mkdir -p "$dir"
  env -i PATH="$PATH" REDIS_PRIMARY_HOST=127.0.0.1 REDIS_PRIMARY_PORT="$(node_port 1)" SENTINEL_PORT="$port" \
    REDIS_MONITOR_PASSWORD="$(password monitor)" REDIS_SENTINEL_PASSWORD="$(password sentinel)" \
    sh "$ROOT/compose/redis/render-sentinel-conf.sh" "$ROOT/compose/redis/sentinel.conf.in" "$dir/sentinel.conf"
  redis-server "$dir/sentinel.conf" --sentinel --bind 127.0.0.1 --dir "$dir" --daemonize no \
    --logfile "$dir/sentinel.log" &
  echo $! > "$DIR/sentinel$n.pid"
  wait_port "$port" || { log "Sentinel $n did not start"; tail -20 "$dir/sentinel.log" >&2; exit 1; }
}

sentinel_cli() {
  local n=$1; shift
  REDISCLI_AUTH="$(password sentinel)" redis-cli -h 127.0.0.1 -p "$(sentinel_port "$n")" "$@"
}

# The primary's port according to the first Sentinel that answers.
primary_port() {
  local n answer
  for n in 1 2 3; do
    running "sentinel$n" || continue
    answer=$(sentinel_cli "$n" --raw SENTINEL get-master-addr-by-name fleet 2>/dev/null | sed -n 2p) || continue
    [ -n "$answer" ] && { echo "$answer"; return 0; }
  done
  return 1
}

start() {
  prepare
  local n
  for n in 1 2 3; do start_node "$n"; done
  for n in 1 2 3; do start_sentinel "$n"; done
  # Ready when both replicas is in sync and every Sentinel knows the other two and the replica.
  local i port
  for i in $(seq 1 150); do
    port=$(primary_port || true)
    if [ -n "$port" ] && ready "$port"; then log "ready: primary on $port"; return 0; fi
    sleep 0.2
  done
  log "not ready after 30 s"; status >&2; exit 1
}

ready() {
  local port=$1 n info
  info=$(REDISCLI_AUTH="$(password admin)" redis-cli --user admin -p "$port" INFO replication 2>/dev/null) || return 1
  [ "$(grep -c 'state=online' <<<"$info")" = 2 ] || return 1
  for n in 1 2 3; do
    info=$(sentinel_cli "$n" SENTINEL master fleet 2>/dev/null | tr -d '\r') || return 1
    grep -A1 -x 'num-other-sentinels' <<<"$info" | tail -1 | grep -qx 2 || return 1
    grep -A1 -x 'num-slaves' <<<"$info" | tail -1 | grep -qx 2 || return 1
  done
}

stop() {
  local p name
  for name in sentinel1 sentinel2 sentinel3 node1 node2 node3; do
    p=$(pid_of "$name")
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
  done
  for name in sentinel1 sentinel2 sentinel3 node1 node2 node3; do
    p=$(pid_of "$name")
    while [ -n "$p" ] && kill -0 "$p" 2>/dev/null; do sleep 0.05; done
  done
  rm -rf "$DIR"
  log "stopped"
}

status() {
  local name
  for name in node1 node2 node3 sentinel1 sentinel2 sentinel3; do
    if running "$name"; then echo "$name running (pid $(pid_of "$name"))"; else echo "$name stopped"; fi
  done
  echo "primary port: $(primary_port || echo unknown)"
}

env_out() {
  [ -d "$DIR/passwords" ] || { log "not started (scripts/redis-ha.sh start)"; exit 1; }
  echo "REDIS_HA_DIR=$DIR"
  echo "REDIS_HA_SCRIPT=$ROOT/scripts/redis-ha.sh"
  echo "REDIS_HA_SENTINELS=127.0.0.1:$(sentinel_port 1),127.0.0.1:$(sentinel_port 2),127.0.0.1:$(sentinel_port 3)"
  echo "REDIS_HA_MASTER=fleet"
  echo "REDIS_HA_NODE_PORTS=$(node_port 1),$(node_port 2),$(node_port 3)"
  echo "REDIS_HA_SENTINEL_PASSWORD=$(password sentinel)"
  local kind
  for kind in admin decision actuator operator; do
    # The host is not used with Sentinels: the client asks them for the primary.
    echo "REDIS_HA_$(echo "$kind" | tr 'a-z' 'A-Z')_URL=redis://$kind:$(password "$kind")@sentinel-managed/0"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) env_out ;;
  kill)
    case "${2:-}" in 1|2|3) ;; *) log "node must be 1, 2 or 3"; exit 2 ;; esac
    p=$(pid_of "node$2"); [ -n "$p" ] && kill -9 "$p" && while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
    log "killed node $2" ;;
  primary)
    port=$(primary_port) || { log "no Sentinel answers"; exit 1; }
    echo $((port - BASE + 1)) ;;
  *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
