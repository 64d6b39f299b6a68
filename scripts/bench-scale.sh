#!/usr/bin/env bash
# The scale benchmark (docs/benchmarks.md, "Scale: 10,000 targets"): the real probe and decision
# executables (release builds, as processes) watch TARGETS sites (default 10,000) at the default 30 s probe
# interval, over the real RabbitMQ and Redis, with the deployment's broker users. Then a quarter of the
# sites fail at once. `fleet-bench scale` prints, from outside the workers:
#   - each worker's memory (RSS) with every target loaded, after the failure, and its peak;
#   - the probe's scheduling jitter: how far the intervals between two checks of one site stray from 30 s
#     (from the site's access log);
#   - the time from each failing site's 3rd failed observation to its action request on the actuator's
#     queue (no actuator runs: the pipeline ends at its queue).
#
# The sites are one private nginx (a path per target; four groups, group 0 answers 503 once the fail flag
# exists). Targets are discovered from Benchmarks/scale/fake_ec2.py, which answers DescribeInstances and
# DescribeInstanceStatus for TARGETS instances: moto does not answer a tag-filtered DescribeInstances over
# 10,000 instances in useful time. Every message goes through the real broker and Redis.
# Settings beyond the defaults: grace_period 0 (the figure is the pipeline, not the grace period) and
# BRAKE_MAX_ACTIONS_PER_HOUR high enough for 2,500 steps (the default 5 would hold all but five).
#
#   scripts/bench-scale.sh                 10,000 targets, about 5 minutes
#   TARGETS=1000 STEADY=60 scripts/bench-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS="${TARGETS:-10000}"
STEADY="${STEADY:-90}"
ID="scale-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
DIR="$(mktemp -d /tmp/bench-scale.XXXXXX)"
chmod 755 "$DIR"   # nginx workers (nobody) look for the fail flag here
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"

say() { printf '[bench-scale] %s\n' "$*" >&2; }
started_services=()
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [ -n "${RABBITMQ_MANAGEMENT_URL:-}" ]; then
    ! declare -F forget_run >/dev/null || forget_run "$ID"
  fi
  if ((${#started_services[@]})); then scripts/services.sh stop "${started_services[@]}" || true; fi
  if [ -n "${KEEP:-}" ]; then say "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck source=scripts/fleet-services.sh
. scripts/fleet-services.sh
[ -x "$NGINX" ] || { say "nginx not found (scripts/services.sh install installs nginx-light)"; exit 1; }
for product in probe decision recoveryctl fleet-bench; do swift build -c release --product "$product" >&2; done

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The sites: one nginx, a path per target, a check's time and path in the access log.
SITE_PORT=$(free_port)
cat > "$DIR/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log warn;
events { worker_connections 4096; }
http {
  log_format check '\$msec \$uri \$status';
  access_log $DIR/access.log check buffer=256k flush=1s;
  client_body_temp_path $DIR/body;
  proxy_temp_path $DIR/proxy;
  fastcgi_temp_path $DIR/fastcgi;
  uwsgi_temp_path $DIR/uwsgi;
  scgi_temp_path $DIR/scgi;
  server {
    listen 127.0.0.1:$SITE_PORT backlog=4096;
    default_type text/plain;
    location ~ ^/t/([0-3])/ {
      if (-f $DIR/fail-\$1) { return 503 "down"; }
      return 200 "ok";
    }
  }
}
CONF
"$NGINX" -c "$DIR/nginx.conf" -p "$DIR" &
pids+=($!)

# Discovery: TARGETS instances tagged for this fleet.
EC2_PORT=$(free_port)
"$PY" Benchmarks/scale/fake_ec2.py "$EC2_PORT" "$TARGETS" "$ID" "http://127.0.0.1:$SITE_PORT" 2> "$DIR/fake-ec2.log" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$SITE_PORT/t/1/1" && (exec 3<>"/dev/tcp/127.0.0.1/$EC2_PORT") 2>/dev/null && break
  sleep 0.1
done

# The fleet's topology and one broker user per worker kind, as compose's setup makes them.
make_identities "$ID" .build/release/recoveryctl "$DIR/setup.log" || { cat "$DIR/setup.log" >&2; exit 1; }

echo '{"defaults": {"grace_period": 0}}' > "$DIR/targets.json"
common=(AWS_ENDPOINT_URL="http://127.0.0.1:$EC2_PORT" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIDSCALEBENCH
        AWS_SECRET_ACCESS_KEY=scale-bench-secret "${identities[@]}" FLEET_PREFIX="$ID" FLEET_TAG="$ID"
        TARGETS_FILE="$DIR/targets.json" REDIS_URL="$REDIS_URL" LOG_LEVEL="${WORKER_LOG_LEVEL:-warning}")
declare -A worker_pid
for kind in probe decision; do
  env "${common[@]}" AMQP_URL="$(worker_url "$kind")" WORKER_ID="$kind-1@$ID" \
    METRICS_PORT="$(free_port)" BRAKE_MAX_ACTIONS_PER_HOUR=100000 ".build/release/$kind" 2> "$DIR/$kind.log" &
  worker_pid[$kind]=$!
  pids+=($!)
done
say "$TARGETS targets; probe pid ${worker_pid[probe]}, decision pid ${worker_pid[decision]}; sites on :$SITE_PORT, EC2 on :$EC2_PORT"

status=0
.build/release/fleet-bench scale --prefix "$ID" --targets "$TARGETS" --fail-flag "$DIR/fail-0" \
  --access-log "$DIR/access.log" --steady "$STEADY" --pids "probe=${worker_pid[probe]},decision=${worker_pid[decision]}" || status=$?
for kind in probe decision; do
  kill -0 "${worker_pid[$kind]}" 2>/dev/null || { say "$kind exited during the run:"; tail -5 "$DIR/$kind.log" >&2; status=1; }
  errors=$(grep -c -E ' (error|critical) ' "$DIR/$kind.log" || true)
  say "$kind logged $errors errors"
  [ "$errors" = 0 ] || grep -E ' (error|critical) ' "$DIR/$kind.log" | head -3 >&2
done
exit "$status"
