#!/usr/bin/env bash
# The predictor's backtest (docs/prediction.md): labelled synthetic metric histories from a fixed seed,
# replayed hour by hour through the model; prints precision, recall and median lead time per kind.
# Options pass through: --seed N (default 20260105), --per-shape N (default 40), --threshold X (0.8).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product prediction-backtest >&2
exec .build/release/prediction-backtest "$@"
