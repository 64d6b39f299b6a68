#!/usr/bin/env bash
# HTTP client benchmark: a private nginx on a free loopback port answers `200 ok`, and
# `fleet-bench http` hammers it through one HTTPClient, first with keep-alive, then with a fresh
# connection per request (what the website probes do).
#
#   scripts/bench-http.sh                       20000 requests, concurrency 200
#   REQUESTS=50000 CONCURRENCY=100 scripts/bench-http.sh
#   NGINX_WORKERS=2 scripts/bench-http.sh       (default 1: the machine has 2 cores and the client needs one)
#
# nginx runs in the foreground of a background job (no daemon), with its config, pid file and logs in a
# temporary folder; it is stopped by its PID when the script exits, whatever happens.
set -euo pipefail

cd "$(dirname "$0")/.."
REQUESTS="${REQUESTS:-20000}"
CONCURRENCY="${CONCURRENCY:-200}"
NGINX_WORKERS="${NGINX_WORKERS:-1}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"

log() { printf '[bench-http] %s\n' "$*" >&2; }

[ -x "$NGINX" ] || { log "nginx not found (apt-get install nginx-light)"; exit 1; }

TMP="$(mktemp -d /tmp/bench-http.XXXXXX)"
NGINX_PID=""
cleanup() {
  if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:${PORT}/"

cat >"$TMP/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes ${NGINX_WORKERS};
pid ${TMP}/nginx.pid;
error_log ${TMP}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${TMP}/body;
  proxy_temp_path ${TMP}/proxy;
  fastcgi_temp_path ${TMP}/fastcgi;
  uwsgi_temp_path ${TMP}/uwsgi;
  scgi_temp_path ${TMP}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:${PORT} backlog=4096;
    default_type text/plain;
    location / { return 200 "ok"; }
  }
}
CONF

log "building fleet-bench (release)"
swift build -c release --product fleet-bench >&2

# nginx on core 1, so that the probe benchmark below measures one core of the client (core 0).
PIN_SERVER=""; PIN_CLIENT=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then PIN_SERVER="taskset -c 1"; PIN_CLIENT="taskset -c 0"; fi
$PIN_SERVER "$NGINX" -p "$TMP" -e "$TMP/error.log" -c "$TMP/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "$URL" 2>/dev/null; then break; fi
  kill -0 "$NGINX_PID" 2>/dev/null || { log "nginx exited:"; cat "$TMP/error.log" >&2; exit 1; }
  sleep 0.05
done
curl -fsS -o /dev/null "$URL" || { log "nginx did not answer on $URL"; exit 1; }
log "nginx (pid $NGINX_PID, $NGINX_WORKERS worker(s)) on $URL"

swift run -c release --skip-build fleet-bench http --url "$URL" --requests "$REQUESTS" --concurrency "$CONCURRENCY"

# Blackbox exporter (Debian's prometheus-blackbox-exporter), the prober people would otherwise deploy:
# it runs on core 0 alone, as the probe does below, and is driven over keep-alive from core 1 (with nginx):
# each /probe request makes it check the site on a fresh connection.
BBE="${BLACKBOX_EXPORTER:-$(command -v prometheus-blackbox-exporter || true)}"
if [ -z "$BBE" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing prometheus-blackbox-exporter (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-blackbox-exporter >&2 && BBE=$(command -v prometheus-blackbox-exporter)
fi
BBE_PID=""
if [ -n "$BBE" ]; then
  BBE_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  printf 'modules:\n  http_2xx:\n    prober: http\n    timeout: 10s\n' > "$TMP/blackbox.yml"
  $PIN_CLIENT "$BBE" --config.file="$TMP/blackbox.yml" --web.listen-address="127.0.0.1:$BBE_PORT" --log.level=error 2>"$TMP/bbe.log" &
  BBE_PID=$!
  trap 'kill "$BBE_PID" 2>/dev/null || true; cleanup' EXIT INT TERM
  PROBE_URL="http://127.0.0.1:$BBE_PORT/probe?module=http_2xx&target=$URL"
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$PROBE_URL" 2>/dev/null && break; sleep 0.05; done
  curl -fsS "$PROBE_URL" | grep -q '^probe_success 1' || { log "blackbox exporter does not probe $URL"; cat "$TMP/bbe.log" >&2; exit 1; }
else
  log "prometheus-blackbox-exporter not installed (apt-get install prometheus-blackbox-exporter): skipping it"
fi

# Three runs, each on core 0: the HTTP client alone with a fresh connection per request (the limit), the
# probe worker's own check path for 10,000 targets (fresh connection, health evaluation, envelope,
# confirmed publish to RabbitMQ; needs AMQP_URL and REDIS_URL), and the blackbox exporter.
for run in 1 2 3; do
  printf 'core 0, fresh connections: ' ; $PIN_CLIENT .build/release/fleet-bench http --url "$URL" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --fresh 1
  if [ -n "${AMQP_URL:-}" ] && [ -n "${REDIS_URL:-}" ]; then
    $PIN_CLIENT .build/release/fleet-bench probe --url "$URL" --targets "${PROBE_TARGETS:-10000}" --concurrency "${PROBE_CONCURRENCY:-200}"
  else
    log "AMQP_URL/REDIS_URL not set: skipping the probe-capacity figure"
  fi
  if [ -n "$BBE_PID" ]; then
    printf 'blackbox exporter: ' ; $PIN_SERVER .build/release/fleet-bench http --url "$PROBE_URL" --requests "$REQUESTS" --concurrency "$CONCURRENCY"
  fi
done
