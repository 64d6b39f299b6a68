#!/usr/bin/env bash
# The predictor's backtests (docs/prediction.md).
#   scripts/backtest.sh [--seed N] [--per-shape N] [--threshold X] [--false-alarms]   (or --cost: the CPU cost only)
#     labelled synthetic metric histories from a fixed seed, replayed hour by hour through the model;
#     prints precision, recall and median lead time per kind (defaults: 20260105, 40, 0.8).
#   scripts/backtest.sh nab [--data DIR] [--threshold X] [--per-file] [--alarms] [--trace X] [--only NAME] [--set name=value] [--check]
#     NAB's labelled series (Benchmarks/nab, or DIR laid out the same way) replayed hourly through the
#     model and the decision's alarm rules, scored with NAB's standard profile beside the published detectors.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = nab ]; then
  shift
  swift build -c release --product prediction-nab >&2
  exec .build/release/prediction-nab "$@"
fi
swift build -c release --product prediction-backtest >&2
exec .build/release/prediction-backtest "$@"
