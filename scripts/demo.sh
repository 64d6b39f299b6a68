#!/usr/bin/env bash
# README's first command: the whole fleet on this machine, walking one simulated website through the
# whole escalation ladder (restart, re-provision with the Elastic IP, DR fail-over with Route 53, notify
# only) while every notice it sends is printed. docs/testing.md explains the simulated world.
#
#   scripts/demo.sh         run the ladder, print where to look, keep running until Ctrl-C
#   scripts/demo.sh --ci    the same, non-interactive: exit as soon as the ladder is proven (CI)
#
# Exit 0 only when every rung was observed; otherwise non-zero, naming the step that did not happen.
# It reuses RabbitMQ, Redis and moto when they run, starts the missing ones (scripts/services.sh), and
# stops on exit only what it started: the workers, the world and those services.
# Settings: DEMO_TIMEOUT (whole ladder, default 360 s), PHASE_TIMEOUT (one step, default 120 s).
set -euo pipefail
cd "$(dirname "$0")/.."

CI_MODE=""
for arg in "$@"; do
  case $arg in
    --ci) CI_MODE=1 ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
[ -n "${DEMO_CI:-}" ] && CI_MODE=1

ID="demo-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"   # names everything: queues, keys, tags, moto resources
DIR="${TMPDIR:-/tmp}/ec2-recovery-fleet-$ID"
SERVICES_DIR="${FLEET_SERVICES_DIR:-/tmp/ec2-recovery-fleet-services}"
DEMO_TIMEOUT="${DEMO_TIMEOUT:-360}"
GRACE=5
mkdir -p "$DIR/logs"
started_at=$(date +%s)

say() { printf '%s  %-7s %s\n' "$(date +%H:%M:%S)" demo "$*"; }
fail() { say "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- stop what this run started
started_services=()
pids=()        # "name pid" of every worker
world_pid=""
result=1
cleanup() {
  local status=$?
  trap - INT TERM EXIT
  [ "$result" = 0 ] && status=0
  say "stopping the demo"
  for entry in "${pids[@]}"; do kill "${entry#* }" 2>/dev/null || true; done
  for entry in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "${entry#* }" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${entry#* }" 2>/dev/null || true
  done
  if [ -n "$world_pid" ]; then   # the world removes what the demo created in moto
    kill "$world_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$world_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$world_pid" 2>/dev/null || true
  fi
  if [ -n "${AMQP_URL:-}" ]; then   # this run's exchanges, queues and Redis keys
    ! declare -F forget_run >/dev/null || forget_run "$ID"
  fi
  if ((${#started_services[@]})); then scripts/services.sh stop "${started_services[@]}" || true; fi
  # Logs stay for a person to read; a passing CI run leaves nothing behind.
  if [ "$status" = 0 ] && [ -n "$CI_MODE" ]; then rm -rf "$DIR"; else say "worker logs kept in $DIR/logs"; fi
  say "done after $(( $(date +%s) - started_at )) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. install what is missing, 2. services
# shellcheck source=scripts/fleet-services.sh
. scripts/fleet-services.sh
MOTO_URL=$AWS_ENDPOINT_URL

# ---------------------------------------------------------------- 3. build (the debug build the tests use)
say "building the fleet (swift build)"
build_fleet "$DIR/logs/build.log" || fail "the build failed"
say "$(tail -1 "$DIR/logs/build.log")"

# ---------------------------------------------------------------- 4./5. the simulated world
say "creating the simulated AWS world in moto (fleet tag $ID)"
DEMO_PREFIX=$ID MOTO_URL=$MOTO_URL PHASE_TIMEOUT="${PHASE_TIMEOUT:-120}" DEMO_GRACE=$GRACE \
  "$PY" -u scripts/demo_world.py "$DIR" 2> "$DIR/logs/world.log" &
world_pid=$!
for _ in $(seq 1 300); do
  [ -f "$DIR/world.ready" ] && break
  kill -0 "$world_pid" 2>/dev/null || fail "the world did not start: $(tail -3 "$DIR/logs/world.log")"
  sleep 0.2
done
[ -f "$DIR/world.ready" ] || fail "the world was not ready within 60 s"
set -a
# shellcheck disable=SC1091
. "$DIR/world.ready"
set +a

cat > "$DIR/targets.json" <<JSON
{"defaults": {"dr_region": "us-west-2", "probe_interval": 1, "probe_timeout": 2, "failure_threshold": 3,
              "recovery_threshold": 2, "grace_period": $GRACE, "restart_verification": 40,
              "reprovision_verification": 90, "failover_verification": 90},
 "targets": {"$DEMO_TARGET": {"elastic_ip_allocation_id": "$DEMO_ALLOCATION",
                              "dr": {"hosted_zone_id": "$DEMO_ZONE_ID", "record_name": "$DEMO_RECORD", "record_ttl": 60,
                                     "instance_type": "t3.small", "subnet_id": "$DEMO_DR_SUBNET",
                                     "security_group_ids": ["$DEMO_DR_GROUP"]}}}}
JSON

# ---------------------------------------------------------------- 6. the workers, as real processes
free_ports() { "$PY" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"; }
REPLICAS=(probe-1 probe-2 decision-1 decision-2 actuator-1 actuator-2 notifier-1 recorder-1 console-1)
read -r -a PORTS <<< "$(free_ports ${#REPLICAS[@]})"

# The trust boundary as the deployment builds it (docs/security.md): the fleet's topology and one broker
# user per worker kind with least-privilege permissions, made by the same command compose's setup
# service runs. Every worker logs in as its kind's own user; the demo's operator is $ID-operator.
say "creating the topology and one broker user per worker kind (recoveryctl topology apply --identities)"
make_identities "$ID" .build/debug/recoveryctl "$DIR/logs/setup.log" || fail "topology apply failed: $(tail -3 "$DIR/logs/setup.log")"

# The web console (docs/console.md): one operator login with a fresh password, made as an operator would.
CONSOLE_PERSON="$ID-operator"
CONSOLE_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$CONSOLE_PASSWORD" | .build/debug/console hash-password "$CONSOLE_PERSON" > "$DIR/console-accounts" \
  || fail "console hash-password failed"

# Shortened timings (docs/configuration.md): the whole ladder takes a few minutes instead of hours.
common=(AWS_ENDPOINT_URL="$WORLD_AWS_URL" AWS_REGION=us-east-1 DR_REGION=us-west-2
        AWS_ACCESS_KEY_ID=AKIDDEMOFLEET AWS_SECRET_ACCESS_KEY=demo-fleet-secret "${identities[@]}"
        FLEET_PREFIX="$ID" FLEET_TAG="$ID" TARGETS_FILE="$DIR/targets.json" DISCOVERY_INTERVAL=2 LOG_LEVEL=info)
settings_for() {
  case $1 in
    probe) echo STATUS_INTERVAL=5 ;;
    actuator) echo ACTUATOR_CONCURRENCY=2 LOCK_TTL=30 LOCK_RETRY_INTERVAL=1 REBOOT_SETTLE=1 RESTART_HEALTH_TIMEOUT=15 \
                   HEALTH_POLL_INTERVAL=1 HEALTH_CHECK_TIMEOUT=2 WAIT_INTERVAL=1 INSTANCE_WAIT_TIMEOUT=60 \
                   IMAGE_WAIT_TIMEOUT=60 DNS_WAIT_TIMEOUT=60 RETRY_DELAY=1 ;;
    notifier) echo NOTIFY_EMAIL_FROM="$DEMO_EMAIL_FROM" NOTIFY_EMAIL_TO="$DEMO_EMAIL_TO" SLACK_USERNAME=recovery-demo ;;
    recorder) echo RECOVERY_EVENTS_TABLE="$ID-recovery-events" PREDICTION_EVENTS_TABLE="$ID-prediction-events" ;;
    console) echo CONSOLE_ACCOUNTS_FILE="$DIR/console-accounts" CONSOLE_SESSION_SECRET="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" \
                  CONSOLE_COOKIE_SECURE=false CONSOLE_HOST=127.0.0.1 RECOVERY_EVENTS_TABLE="$ID-recovery-events" ;;
  esac
}
for i in "${!REPLICAS[@]}"; do
  name=${REPLICAS[$i]} kind=${REPLICAS[$i]%-*}
  # shellcheck disable=SC2046 # the settings are single words
  env "${common[@]}" $(settings_for "$kind") SLACK_WEBHOOK_URL="$( [ "$kind" = notifier ] && echo "$SLACK_WEBHOOK_URL")" \
    AMQP_URL="$(worker_url "$kind")" WORKER_ID="$name@$ID" METRICS_PORT="${PORTS[$i]}" CONSOLE_PORT="${PORTS[$i]}" \
    ".build/debug/$kind" 2> "$DIR/logs/$name.log" &
  pids+=("$name $!")
done
say "started ${#REPLICAS[@]} workers: ${REPLICAS[*]}"
for i in "${!REPLICAS[@]}"; do
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null "http://127.0.0.1:${PORTS[$i]}/healthz" && continue 2
    kill -0 "${pids[$i]#* }" 2>/dev/null || fail "${REPLICAS[$i]} exited at start: $(tail -2 "$DIR/logs/${REPLICAS[$i]}.log")"
    sleep 0.2
  done
  fail "${REPLICAS[$i]} not healthy within 60 s (see $DIR/logs/${REPLICAS[$i]}.log)"
done
say "all workers healthy; the world starts breaking $DEMO_TARGET ($SITE_URL)"
touch "$DIR/go"

# ---------------------------------------------------------------- 7. the ladder, live (printed by the world)
deadline=$(( $(date +%s) + DEMO_TIMEOUT ))
while [ ! -f "$DIR/result" ]; do
  kill -0 "$world_pid" 2>/dev/null || fail "the world stopped: $(tail -3 "$DIR/logs/world.log")"
  for entry in "${pids[@]}"; do
    kill -0 "${entry#* }" 2>/dev/null || fail "worker ${entry% *} exited: $(tail -2 "$DIR/logs/${entry% *}.log")"
  done
  [ "$(date +%s)" -lt "$deadline" ] || fail "the ladder did not finish within $DEMO_TIMEOUT s (DEMO_TIMEOUT)"
  sleep 1
done
if [ "$(head -1 "$DIR/result")" != ok ]; then fail "$(tail -n +2 "$DIR/result")"; fi

# ---------------------------------------------------------------- 8. where to look
echo
say "the whole ladder was observed:"
tail -n +2 "$DIR/result" | sed 's/^/           /'
echo
# The console shows the target, read where the workers keep it (a login and the fleet page, by curl).
console_port=${PORTS[$(( ${#PORTS[@]} - 1 ))]}
jar="$DIR/console-cookies"
curl -fs -o /dev/null -c "$jar" --data-urlencode "name=$CONSOLE_PERSON" --data-urlencode "password=$CONSOLE_PASSWORD" \
  "http://127.0.0.1:$console_port/login" || fail "the console refused the demo's login"
curl -fs -b "$jar" "http://127.0.0.1:$console_port/" | grep -q "data-target=\"$DEMO_TARGET\"" \
  || fail "the console's fleet page does not list $DEMO_TARGET"
say "the console lists $DEMO_TARGET"
echo "Where to look (while the demo runs):"
echo "  the console             http://127.0.0.1:$console_port/  (log in as $CONSOLE_PERSON, password $CONSOLE_PASSWORD)"
echo "  RabbitMQ management UI  $RABBITMQ_MANAGEMENT_URL  (guest/guest; exchange and queues $ID.*)"
for i in "${!REPLICAS[@]}"; do
  [ "${REPLICAS[$i]}" = console-1 ] && continue
  printf '  %-22s  http://127.0.0.1:%s/metrics\n' "${REPLICAS[$i]}" "${PORTS[$i]}"
done
echo "  e-mails sent via SES    moto's $MOTO_URL/moto-api/ (data.json, ses: from $DEMO_EMAIL_FROM)"
echo "  worker logs             $DIR/logs/"
history_cmd=(recoveryctl history "$DEMO_TARGET")
if [ -x .build/debug/recoveryctl ]; then
  echo "  history                 ${history_cmd[*]}:"
  env "${common[@]}" RECOVERY_EVENTS_TABLE="$ID-recovery-events" PREDICTION_EVENTS_TABLE="$ID-prediction-events" \
    AMQP_URL="$AMQP_URL" REDIS_URL="$REDIS_URL" .build/debug/recoveryctl history "$DEMO_TARGET" 2>&1 | sed 's/^/    /' || true
else
  echo "  history                 ${history_cmd[*]}  (with FLEET_PREFIX=$ID RECOVERY_EVENTS_TABLE=$ID-recovery-events AWS_ENDPOINT_URL=$MOTO_URL)"
fi
result=0
if [ -z "$CI_MODE" ]; then
  echo
  say "the fleet keeps running; press Ctrl-C to stop the demo"
  while kill -0 "$world_pid" 2>/dev/null; do sleep 1; done
fi
