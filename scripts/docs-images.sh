#!/usr/bin/env bash
# Takes the pictures in docs/ again, from real runs, with headless Chromium (scripts/services.sh install
# installs it and Selenium):
#   docs/images/console-*.png        the console in front of the real workers (ConsoleBrowserTests)
#   docs/images/rabbitmq-queues.png  the management UI's queue list of a fleet (topology applied here)
#   docs/images/architecture.png     docs/images/architecture.svg rendered
# Needs the local services (scripts/services.sh start) and a debug build (swift build --build-tests).
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . <(scripts/services.sh env); set +a
out=$PWD/docs/images
mkdir -p "$out"

chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,760 \
  --screenshot="$out/architecture.png" "file://$out/architecture.svg" 2>/dev/null
echo "saved $out/architecture.png"

CONSOLE_SCREENSHOTS="$out" swift test --skip-build --filter ConsoleBrowserTests 2>&1 | grep -E "Test run|FAIL"

# The deployment's topology under its default prefix, as compose's setup makes it.
FLEET_PREFIX=recovery .build/debug/recoveryctl topology apply > /dev/null
(cd Tests/browser && python3 management_ui.py --url "$RABBITMQ_MANAGEMENT_URL" --user guest:guest \
  --filter recovery. --out "$out/rabbitmq-queues.png")
