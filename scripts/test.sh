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
  started=()
}
trap cleanup EXIT
# Ctrl-C or SIGTERM ends the run here: without the exit, bash would go on to the next phase.
trap 'cleanup; exit 130' INT TERM

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

# At most this many tests at a time in one process (Swift Testing reads it; docs/testing.md "Phases").
export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH="${SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH:-8}"

if (($#)); then
  swift test --skip-build "$@"  # not exec: the EXIT trap stops the servers this script started
  exit 0
fi

# Three phases, one after the other, so that no phase's load starves another's time-bound waits on this
# 2-core machine: the CPU-bound pure tests (random ladders, backtests) hold both threads of the
# cooperative pool for tens of seconds, and booting private RabbitMQ nodes takes an Erlang VM's worth of
# CPU each; run beside the integration suites, both made the shared broker time out logins.
private_brokers='BrokerRestartTests|ComposeBrokerTests'
failed=()
LOGS="$(mktemp -d /tmp/fleet-test.XXXXXX)"
# One phase: `swift test` with the given arguments. A phase in which no test passed fails too: a renamed
# suite would otherwise drop out of the run without a word. Counted from the tests that passed, not from
# "Test run with N tests", which also counts skipped ones (a suite skipped for a missing server lists
# none of its tests, so the skipped cannot be subtracted).
phase() {
  local name=$1 log; shift
  log="$LOGS/phase-${#failed[@]}-$RANDOM.log"
  if ! swift test --skip-build "$@" 2>&1 | tee "$log"; then failed+=("$name"); return; fi
  local ran
  ran=$(grep -E '^[^ ]+ Test .* passed after [0-9.]+ seconds' "$log" | grep -cv '^[^ ]* Test run with' || true)
  if [ "$ran" -eq 0 ]; then
    echo "[test] phase '$name' ran no test" >&2
    failed+=("$name (no test ran)")
  fi
}
echo "[test] phase 1 of 3: pure logic (RecoveryCoreTests)"
phase "pure logic" --filter 'RecoveryCoreTests'
echo "[test] phase 2 of 3: integration against the shared servers"
phase "integration" --skip "RecoveryCoreTests|$private_brokers"
echo "[test] phase 3 of 3: tests that boot private RabbitMQ nodes"
phase "private brokers" --filter "$private_brokers"
rm -rf "$LOGS"
if ((${#failed[@]})); then
  echo "[test] FAILED: $(IFS=,; echo "${failed[*]}")" >&2
  exit 1
fi
echo "[test] all three phases passed"
