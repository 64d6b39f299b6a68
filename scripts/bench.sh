#!/usr/bin/env bash
# Prints the foundation's throughput figures (see docs/benchmarks.md):
#   1. AMQP publish-with-confirm + consume-and-ack through the Swift transport;
#   2. the same workload as a raw librabbitmq C loop, so the wrapper's overhead is a ratio;
#   3. HTTP requests/s of the curl-multi client against a local nginx (scripts/bench-http.sh), the probe
#      capacity, and the decision throughput and pipeline overhead (fleet-bench; needs Redis too).
# Starts RabbitMQ if it is not running (and stops it again afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES="${MESSAGES:-20000}"
WINDOW="${WINDOW:-100}"
DIR="${FLEET_SERVICES_DIR:-/tmp/ec2-recovery-fleet-services}"

scripts/services.sh install
stop_broker=""
if ! { [ -f "$DIR/rabbitmq.pid" ] && kill -0 "$(cat "$DIR/rabbitmq.pid")" 2>/dev/null; }; then
  scripts/services.sh start rabbitmq
  stop_broker=1
fi
trap '[ -z "$stop_broker" ] || scripts/services.sh stop rabbitmq' EXIT
set -a; . <(scripts/services.sh env); set +a

swift build -c release --product fleet-bench
mkdir -p Benchmarks/bin
cc -O2 -o Benchmarks/bin/amqp_raw Benchmarks/amqp_raw.c $(pkg-config --cflags --libs librabbitmq) -lpthread

port=$(sed -E 's#.*:([0-9]+)/.*#\1#' <<<"$AMQP_URL")
for run in 1 2 3; do
  echo "== run $run"
  .build/release/fleet-bench amqp --messages "$MESSAGES" --window "$WINDOW"
  Benchmarks/bin/amqp_raw 127.0.0.1 "$port" "$MESSAGES" "$WINDOW"
done
scripts/bench-http.sh   # also the probe-capacity figure (AMQP_URL and REDIS_URL are set above)

# Decision throughput and pipeline overhead (issue 4); needs Redis too.
if [ -z "${REDIS_URL:-}" ] || ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  echo "bench: Redis is not running (scripts/services.sh start redis): skipping decision and pipeline figures"
else
  .build/release/fleet-bench decision --events 200000 --targets 1000 --worker-events 20000
  .build/release/fleet-bench pipeline --targets 300
fi
