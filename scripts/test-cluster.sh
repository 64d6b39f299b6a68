#!/usr/bin/env bash
# The cluster suites (docs/testing.md): starts the three-node RabbitMQ cluster on loopback
# (scripts/cluster.sh) unless it already runs, runs the tests gated on it, and stops it if it started it.
# The end-to-end incident also needs the shared services (scripts/services.sh start: Redis and moto).
# Extra arguments replace the default filter, e.g. scripts/test-cluster.sh --filter ClusterFailoverTests.
set -euo pipefail
cd "$(dirname "$0")/.."

export FLEET_CLUSTER_DIR="${FLEET_CLUSTER_DIR:-/tmp/ec2-recovery-fleet-cluster}"
started=""
cleanup() { if [ -n "$started" ]; then started=""; scripts/cluster.sh stop; fi; }
trap cleanup EXIT INT TERM

began=$(date +%s)
if [ ! -f "$FLEET_CLUSTER_DIR/cluster.env" ]; then started=1; fi
scripts/cluster.sh start
echo "test-cluster: cluster ready after $(( $(date +%s) - began )) s"

set -a
# shellcheck disable=SC1090
. <(scripts/services.sh env)
# shellcheck disable=SC1090
. <(scripts/cluster.sh env)
set +a

swift build --build-tests
if (($#)); then
  swift test --skip-build "$@"
else
  swift test --skip-build --filter 'ClusterFailoverTests|ClusterIncidentTests'
fi
echo "test-cluster: done after $(( $(date +%s) - began )) s"
