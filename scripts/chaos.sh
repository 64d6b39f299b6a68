#!/usr/bin/env bash
# The chaos suite (issue 14; docs/reliability.md): the real workers, as processes against RabbitMQ, Redis and
# moto, in a simulated world (scripts/fleet_world.py), while things go wrong. One RESULT line per scenario
# with its figures, then a summary; exit 1 when a scenario misses a target (dead letters, duplicate
# destructive calls, a lost incident, ...), 2 on a usage error.
#
#   scripts/chaos.sh                  every scenario (12-15 min here; restarts only private servers)
#   scripts/chaos.sh --ci             the CI subset: kills, aws-faults, partition (4-5 min here)
#   scripts/chaos.sh kills brake      the named scenarios (full settings); with --ci, their CI settings
#   scripts/chaos.sh --list           the scenarios
#
# Scenarios: kills, aws-faults, partition, brake, broker-restart, redis-restart, lock-expiry. Each has a hard
# timeout. CHAOS_SEED=N replays the random choices (kill times, faults); CHAOS_VERBOSE=1 prints the world's
# events (AWS calls, notices, site changes). Logs stay in /tmp/ec2-recovery-fleet-chaos-*/ unless every
# scenario passed (CHAOS_KEEP=1 keeps them anyway). It reuses RabbitMQ, Redis and moto when they answer,
# starts the missing ones and stops those at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

CI_MODE=""
scenarios=()
for arg in "$@"; do
  case $arg in
    --ci) CI_MODE=1 ;;
    --list) printf '%s\n' kills aws-faults partition brake broker-restart redis-restart lock-expiry; exit 0 ;;
    -*) sed -n '2,17p' "$0"; exit 2 ;;
    *) scenarios+=("$arg") ;;
  esac
done

DIR="${TMPDIR:-/tmp}/ec2-recovery-fleet-chaos-$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$DIR"
started_at=$(date +%s)
say() { printf '%s  %-7s %s\n' "$(date +%H:%M:%S)" chaos "$*"; }

started_services=()
suite_pid=""
cleanup() {
  local status=$?
  trap - INT TERM EXIT
  if [ -n "$suite_pid" ] && kill -0 "$suite_pid" 2>/dev/null; then
    kill "$suite_pid" 2>/dev/null || true   # it tears its scenario down (workers, queues, keys, moto resources)
    for _ in $(seq 1 300); do kill -0 "$suite_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$suite_pid" 2>/dev/null || true
  fi
  if [ -f "$DIR/pids" ]; then   # anything the suite started that is still running (a suite killed hard)
    while read -r pid; do
      if grep -qs -e "$PWD/.build" -e redis-server "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    done < "$DIR/pids"
  fi
  if ((${#started_services[@]})); then scripts/services.sh stop "${started_services[@]}" || true; fi
  if [ "$status" = 0 ] && [ -z "${CHAOS_KEEP:-}" ]; then rm -rf "$DIR"; else say "logs kept in $DIR"; fi
  say "done after $(( $(date +%s) - started_at )) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The packages and servers, as scripts/demo.sh finds them.
# shellcheck source=scripts/fleet-services.sh
. scripts/fleet-services.sh

say "building the fleet (swift build)"
build_fleet "$DIR/build.log" || exit 1

args=("$DIR")
[ -n "$CI_MODE" ] && args+=(--ci)
[ -n "${CHAOS_SEED:-}" ] && args+=(--seed "$CHAOS_SEED")
# Each scenario has its own hard timeout inside; this one bounds the whole run if the suite itself hangs.
limit=$(( ${#scenarios[@]} ? 600 * ${#scenarios[@]} : (CI_MODE ? 900 : 2700) ))
set +e
timeout --signal=TERM --kill-after=60 "$limit" "$PY" -u scripts/chaos_world.py "${args[@]}" ${scenarios[@]+"${scenarios[@]}"} &
suite_pid=$!
wait "$suite_pid"
status=$?
set -e
suite_pid=""
exit "$status"
