#!/usr/bin/env bash
# The high-availability suites (docs/testing.md): starts the three-node RabbitMQ cluster on loopback
# (scripts/cluster.sh) and Redis with Sentinel on loopback (scripts/redis-ha.sh) unless they already run,
# runs the tests gated on them, and stops what it started. The end-to-end incidents also need the shared
# services (scripts/services.sh start: Redis and moto).
# Extra arguments replace the default filter, e.g. scripts/test-cluster.sh --filter ClusterFailoverTests.
set -euo pipefail
cd "$(dirname "$0")/.."

export FLEET_CLUSTER_DIR="${FLEET_CLUSTER_DIR:-/tmp/ec2-recovery-fleet-cluster}"
export FLEET_REDIS_HA_DIR="${FLEET_REDIS_HA_DIR:-/tmp/ec2-recovery-fleet-redis-ha}"
started_cluster="" started_redis=""
cleanup() {
  if [ -n "$started_cluster" ]; then started_cluster=""; scripts/cluster.sh stop; fi
  if [ -n "$started_redis" ]; then started_redis=""; scripts/redis-ha.sh stop; fi
}
trap cleanup EXIT INT TERM

began=$(date +%s)
if [ ! -f "$FLEET_CLUSTER_DIR/cluster.env" ]; then started_cluster=1; fi
if [ ! -d "$FLEET_REDIS_HA_DIR/passwords" ]; then started_redis=1; fi
scripts/redis-ha.sh start
scripts/cluster.sh start
echo "test-cluster: cluster and Sentinels ready after $(( $(date +%s) - began )) s"

set -a
# shellcheck disable=SC1090
. <(scripts/services.sh env)
# shellcheck disable=SC1090
. <(scripts/cluster.sh env)
# shellcheck disable=SC1090
. <(scripts/redis-ha.sh env)
set +a

swift build --build-tests
if (($#)); then
  swift test --skip-build "$@"
else
  swift test --skip-build --filter 'ClusterFailoverTests|ClusterIncidentTests|RedisSentinelTests|SentinelIncidentTests'
fi
echo "test-cluster: done after $(( $(date +%s) - began )) s"
