#!/usr/bin/env bash
# Prints the foundation's throughput figures (see docs/benchmarks.md), ending with a side-by-side table of
# the figures issue 18 sets goals for (three runs each, min–max, beside their reference from the same runs):
#   1. AMQP publish-with-confirm + consume-and-ack through the Swift transport;
#   2. the same workload as a raw librabbitmq C loop, so the wrapper's overhead is a ratio;
#   3. HTTP requests/s of the curl-multi client against a local nginx (scripts/bench-http.sh), the probe
#      capacity, and the decision throughput and pipeline overhead (fleet-bench; needs Redis too);
#   4. the monthly AWS bill of 100 targets at the default settings (fleet-bench bill, simulated week).
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
OUT="$(mktemp /tmp/bench.XXXXXX)"
trap '[ -z "$stop_broker" ] || scripts/services.sh stop rabbitmq; rm -f "$OUT"' EXIT
for run in 1 2 3; do
  echo "== run $run"
  .build/release/fleet-bench amqp --messages "$MESSAGES" --window "$WINDOW" 2>/dev/null | tee -a "$OUT"
  Benchmarks/bin/amqp_raw 127.0.0.1 "$port" "$MESSAGES" "$WINDOW" | tee -a "$OUT"
done
scripts/bench-http.sh | tee -a "$OUT"  # also the probe and blackbox figures (AMQP_URL, REDIS_URL set above)

# Decision throughput and pipeline overhead (issue 4); needs Redis too.
if [ -z "${REDIS_URL:-}" ] || ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  echo "bench: Redis is not running (scripts/services.sh start redis): skipping decision and pipeline figures"
else
  for run in 1 2 3; do
    echo "== run $run"
    .build/release/fleet-bench decision --events 200000 --targets 1000 --worker-events 20000 2>/dev/null | tee -a "$OUT"
    .build/release/fleet-bench pipeline --targets 300 2>/dev/null | tee -a "$OUT"
  done
fi

# The monthly AWS bill of watching 100 targets at the default settings (no servers; deterministic).
echo "== AWS bill"
.build/release/fleet-bench bill | tee -a "$OUT"

# Side by side: each figure of the three runs (min–max) beside its reference from the same runs.
python3 - "$OUT" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def runs(pattern):
    return [float(x) for x in re.findall(pattern, text)]
def span(v, unit=""):
    return f"{min(v):,.0f}–{max(v):,.0f}{unit}" if v else "n/a"
rows = []
swift = runs(r"amqp swift: .*publish\+confirm\+consume\+ack (\d+) msg/s")
raw = runs(r"amqp raw C: .*publish\+confirm\+consume\+ack (\d+) msg/s")
if swift and raw:
    rows.append(("AMQP publish+confirm+consume+ack (msg/s)", span(swift), "raw librabbitmq C " + span(raw),
                 f"{min(swift)/max(raw):.2f}–{max(swift)/min(raw):.2f}", "≥ 0.80"))
fresh = runs(r"core 0, fresh connections: http: .*fresh connection per request: (\d+) req/s")
probe = runs(r"probe: \d+ targets checked .*: (\d+) probes/s")
blackbox = runs(r"blackbox exporter: http: .*keep-alive: (\d+) req/s")
if probe and fresh:
    rows.append(("probe checks on core 0, fresh connection, confirmed publish (checks/s)", span(probe),
                 "HTTP client alone, fresh connections, core 0 " + span(fresh),
                 f"{min(probe)/max(fresh):.2f}–{max(probe)/min(fresh):.2f}", "≥ 0.80"))
if probe and blackbox:
    rows.append(("the same against prometheus-blackbox-exporter on core 0 (checks/s)", span(probe),
                 "blackbox_exporter " + span(blackbox),
                 f"{min(probe)/max(blackbox):.1f}–{max(probe)/min(blackbox):.1f}", "≥ 5"))
fresh_cpu = runs(r"core 0, fresh connections: http: .*fresh connection per request: .* ([\d.]+) µs of CPU per request")
probe_cpu = runs(r"probe: \d+ targets checked .* ([\d.]+) µs of CPU per check")
if probe_cpu and fresh_cpu:
    # The same comparison in CPU: what the probe spends per check beside what the client alone spends per
    # request, each in its own process, whatever the broker and nginx take from the shared cores.
    rows.append(("probe CPU per check beside the HTTP client's per fresh-connection request (µs; ratio client/probe)",
                 f"{min(probe_cpu):.0f}–{max(probe_cpu):.0f}", f"HTTP client alone {min(fresh_cpu):.0f}–{max(fresh_cpu):.0f}",
                 f"{min(fresh_cpu)/max(probe_cpu):.2f}–{max(fresh_cpu)/min(probe_cpu):.2f}", "≥ 0.80"))
decision = runs(r"decision worker through the broker: .* in [\d.]+ s: (\d+) events/s")
if decision and raw:
    rows.append(("decision worker through the broker, one replica (events/s)", span(decision),
                 "raw C consume+ack " + span(raw), f"{min(decision)/max(raw):.2f}–{max(decision)/min(raw):.2f}",
                 "≥ 0.50 (10,000/s)"))
p99 = runs(r"pipeline: .* p99 ([\d.]+) ms")
if p99:
    rows.append(("Nth failure → action request p99, 300 targets paced (ms)", f"{min(p99):.1f}–{max(p99):.1f}", "", "", "≤ 10"))
bill = runs(r"\*\*total\*\* \| \| \| \*\*([\d.]+)\*\*")
if bill:
    rows.append(("AWS bill, 100 targets at the default settings ($ per month; one run, deterministic)", f"{bill[0]:.2f}",
                 "the seed design's estimate $21–95", f"{bill[0]/95:.2f}–{bill[0]/21:.2f}", "< $2"))
print()
print("| figure | three runs | reference, same runs | ratio | goal |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
