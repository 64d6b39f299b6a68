#!/bin/sh
# Entrypoint of the compose `redis-sentinel` service (docker-compose.cluster.yml): renders its conf into
# the data volume on first start (render-sentinel-conf.sh), then runs the redis:7 image's entrypoint with
# `redis-server <conf> --sentinel`.
set -eu
here=$(dirname "$0")
sh "$here/render-sentinel-conf.sh" "$here/sentinel.conf.in" /data/sentinel.conf
[ "$(id -u)" != 0 ] || chown redis:redis /data/sentinel.conf
unset REDIS_MONITOR_PASSWORD REDIS_SENTINEL_PASSWORD
exec docker-entrypoint.sh redis-server /data/sentinel.conf --sentinel
