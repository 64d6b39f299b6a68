# Sourced by scripts/demo.sh and scripts/chaos.sh (not run): installs what is missing, loads the
# services' environment (scripts/services.sh env) and starts the servers that do not answer yet.
# Needs `say` from the caller; sets PY (the Python with moto) and appends each server it started to the
# caller's `started_services` array, which the caller stops when it ends.
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)
if ! { [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && command -v redis-server >/dev/null && command -v redis-cli >/dev/null &&
       pkg-config --exists librabbitmq hiredis libcurl openssl 2>/dev/null &&
       [ -n "$PY" ] && "$PY" -c 'import moto.server, flask_cors, boto3' 2>/dev/null; }; then
  say "installing what is missing (scripts/services.sh install)"
  scripts/services.sh install
  PY=$(python3 -c 'import sys; print(sys.executable)')
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
set -a
# shellcheck disable=SC1090
. <(scripts/services.sh env)
set +a
for svc in rabbitmq redis moto; do
  case $svc in
    rabbitmq) port=${AMQP_URL##*:}; port=${port%%/*} ;;
    redis) port=${REDIS_URL##*:}; port=${port%%/*} ;;
    moto) port=${AWS_ENDPOINT_URL##*:} ;;
  esac
  if port_open "$port"; then say "$svc already running on 127.0.0.1:$port: reusing it"; continue; fi
  scripts/services.sh start "$svc"
  started_services+=("$svc")
done

# Removes a run's exchanges, queues and broker users (names starting with PREFIX) and its Redis keys
# (PREFIX:*), best effort: used by scripts that make their own prefix (demo.sh, bench-scale.sh).
forget_run() {
  "$PY" - "$1" "$RABBITMQ_MANAGEMENT_URL" <<'PY' 2>/dev/null || true
import base64, json, sys, urllib.parse, urllib.request
prefix, api = sys.argv[1], sys.argv[2] + "/api/"
auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
def call(method, path):
    return urllib.request.urlopen(urllib.request.Request(api + path, method=method, headers=auth), timeout=10).read()
for kind in ("queues", "exchanges"):
    for item in json.loads(call("GET", f"{kind}/%2f?columns=name")):
        if item["name"] == prefix or item["name"].startswith(prefix + "."):
            call("DELETE", f"{kind}/%2f/" + urllib.parse.quote(item["name"], safe=""))
for item in json.loads(call("GET", "users")):   # the run's broker users, one per worker kind
    if item["name"].startswith(prefix + "-"):
        call("DELETE", "users/" + urllib.parse.quote(item["name"], safe=""))
PY
  redis-cli -u "$REDIS_URL" --scan --pattern "$1:*" 2>/dev/null | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
}

# The trust boundary as the deployment builds it (docs/security.md): the run's topology and one broker user
# per worker kind with least-privilege permissions, made by RECOVERYCTL as compose's setup service makes
# them. Sets `identities` (the *_USERS, OPERATORS settings every worker needs) and `password[kind]`;
# `worker_url KIND` is then that kind's AMQP_URL. The setup's output goes to LOG.
#   make_identities PREFIX RECOVERYCTL LOG
make_identities() {
  local prefix=$1 ctl=$2 log=$3 kind passwords=()
  identities=(PROBE_USERS="$prefix-probe" PREDICTOR_USERS="$prefix-predictor" DECISION_USERS="$prefix-decision"
              ACTUATOR_USERS="$prefix-actuator" NOTIFIER_USERS="$prefix-notifier" RECORDER_USERS="$prefix-recorder"
              CONSOLE_USERS="$prefix-console" OPERATORS="$prefix-operator" RABBITMQ_OPERATOR_USER="$prefix-operator")
  declare -gA password
  for kind in probe predictor decision actuator notifier recorder operator console; do
    password[$kind]=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    passwords+=("RABBITMQ_${kind^^}_PASSWORD=${password[$kind]}")
  done
  identities_prefix=$prefix
  env "${identities[@]}" "${passwords[@]}" FLEET_PREFIX="$prefix" AMQP_URL="$AMQP_URL" \
    RABBITMQ_MANAGEMENT_URL="$RABBITMQ_MANAGEMENT_URL" "$ctl" topology apply --identities > "$log" 2>&1
}
worker_url() {
  local port=${AMQP_URL##*:}; port=${port%%/*}
  echo "amqp://$identities_prefix-$1:${password[$1]}@127.0.0.1:$port/%2f"
}

# Builds the workers (debug, as the tests do) into LOG, and checks every executable is there.
#   build_fleet LOG
build_fleet() {
  local w
  if ! swift build > "$1" 2>&1; then
    grep -E "error" "$1" | head -20; say "swift build failed (log: $1)"; return 1
  fi
  for w in probe decision actuator notifier recorder recoveryctl console; do
    [ -x ".build/debug/$w" ] || { say "the build did not produce .build/debug/$w"; return 1; }
  done
}
