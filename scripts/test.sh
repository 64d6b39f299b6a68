#!/usr/bin/env bash
# README's test command: builds the package and runs every test, the integration suites against real
# RabbitMQ, Redis and moto servers on loopback.
#
# Servers that are already running (scripts/services.sh start) are reused; otherwise this script
# installs what is missing, starts them, and stops the ones it started when it ends.
# Extra arguments go to `swift test` (e.g. scripts/test.sh --filter AMQPTransportTests).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${FLEET_SERVICES_DIR:-/tmp/ec2-recovery-fleet-services}"
started=()
cleanup() {
  if ((${#started[@]})); then scripts/services.sh stop "${started[@]}"; fi
}
trap cleanup EXIT INT TERM

scripts/services.sh install
for svc in rabbitmq redis moto moto-auth; do
  pidfile="$DIR/$svc.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then continue; fi
  scripts/services.sh start "$svc"
  started+=("$svc")
done

set -a
# shellcheck disable=SC1090
. <(scripts/services.sh env)
set +a

swift build --build-tests
swift test --skip-build "$@"
