#!/usr/bin/env bash
# Resident memory of the worker executables, idle (connected, no targets), after 20 s of running, and
# where it goes: the largest mappings by RSS (/proc/PID/smaps), so a change that claims less memory can
# show which part shrank. Each worker logs in as its kind's own broker user (made by make_identities, as
# the deployment does); the 10,000-target figures come from scripts/bench-scale.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[bench-rss] %s\n' "$*" >&2; }
# Built before any server starts (a failed build leaves none running). The executables as
# compose/Dockerfile builds them: the Swift runtime and Foundation linked in
# statically (--static-swift-stdlib), in a scratch path of their own so that the other benchmarks'
# release builds do not rebuild everything each time the flag changes. BIN_DIR measures other builds
# (for a before/after: BIN_DIR=.build/release after a plain `swift build -c release`).
if [ -z "${BIN_DIR:-}" ]; then
  for p in probe decision recoveryctl; do
    swift build -c release --static-swift-stdlib --scratch-path .build/static --product "$p" >&2
  done
  BIN_DIR=.build/static/release
fi
started_services=()
# shellcheck source=scripts/fleet-services.sh
. scripts/fleet-services.sh
say "measuring $BIN_DIR/probe and $BIN_DIR/decision"
prefix="rss-$$"
TMP=$(mktemp -d /tmp/bench-rss.XXXXXX)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  forget_run "$prefix"
  for svc in "${started_services[@]}"; do scripts/services.sh stop "$svc" >/dev/null 2>&1 || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
make_identities "$prefix" "$BIN_DIR/recoveryctl" "$TMP/setup.log"
port=19100
for worker in probe decision; do
  env "${identities[@]}" AMQP_URL="$(worker_url "$worker")" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench \
    AWS_SECRET_ACCESS_KEY=bench FLEET_PREFIX="$prefix" METRICS_PORT=$port LOG_LEVEL=warning \
    "$BIN_DIR/$worker" 2>"$TMP/$worker.log" &
  pids+=($!)
  port=$((port + 1))
done
sleep 20
i=0
for worker in probe decision; do
  pid=${pids[$i]}
  kill -0 "$pid" 2>/dev/null || { say "$worker exited:"; tail -5 "$TMP/$worker.log" >&2; exit 1; }
  printf 'rss: %s idle: %.1f MiB\n' "$worker" "$(echo "$(ps -o rss= -p "$pid") / 1024" | bc -l)"
  # RSS counts every library page this process touched, shared or not; Private_Dirty is what is its own
  # (heap, stacks, written data), Pss splits shared pages between the processes that map them.
  # Anonymous is the process's own memory (heap, stacks, written data); the rest of RSS is files' pages
  # mapped in (code, read-only data), which the kernel can drop and read again. Private_Dirty also counts
  # an executable's file pages that were just written (built or copied) and not yet flushed to disk.
  awk '/^(Pss|Anonymous|Private_Dirty|Shared_Clean|Private_Clean):/{printf "  %-14s %6.1f MiB\n", $1, $2 / 1024}' "/proc/$pid/smaps_rollup"
  awk '/^[0-9a-f]+-[0-9a-f]+ /{name=($6 == "" ? "[anonymous]" : $6)} /^Rss:/{rss[name]+=$2}
       END{for (n in rss) if (rss[n] >= 512) printf "  %7.1f MiB  %s\n", rss[n] / 1024, n}' "/proc/$pid/smaps" | sort -rn
  i=$((i + 1))
done
