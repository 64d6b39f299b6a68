#!/usr/bin/env bash
# Resident memory of the worker executables, idle (connected, no targets), after 20 s of running.
# The 10,000-target figures come from `fleet-bench probe` and `fleet-bench decision`, which run the
# same worker code in-process: moto cannot answer DescribeInstances for 10,000 instances in useful time,
# so tag discovery of that many targets cannot be exercised here (see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . <(scripts/services.sh env); set +a
for p in probe decision; do swift build -c release --product "$p" >&2; done
prefix="rss-$$"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
port=19100
for worker in probe decision; do
  AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench FLEET_PREFIX="$prefix" \
    METRICS_PORT=$port LOG_LEVEL=warning .build/release/$worker 2>/dev/null &
  pids+=($!)
  port=$((port + 1))
done
sleep 20
i=0
for worker in probe decision; do
  rss=$(ps -o rss= -p "${pids[$i]}")
  printf 'rss: %s idle: %.1f MiB\n' "$worker" "$(echo "$rss / 1024" | bc -l)"
  i=$((i + 1))
done
