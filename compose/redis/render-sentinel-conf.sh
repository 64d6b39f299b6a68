#!/bin/sh
# Renders sentinel.conf.in into OUTPUT, or when OUTPUT exists (a Sentinel rewrites its own file with what
# it has learnt; starting again must keep that) sets only its passwords anew, so a changed
# REDIS_MONITOR_PASSWORD or REDIS_SENTINEL_PASSWORD takes effect at the next start. Used by
# sentinel-entrypoint.sh and scripts/redis-ha.sh.
#
#   render-sentinel-conf.sh TEMPLATE OUTPUT
#
# Needs REDIS_PRIMARY_HOST, REDIS_PRIMARY_PORT (default 6379), REDIS_MONITOR_PASSWORD and
# REDIS_SENTINEL_PASSWORD; SENTINEL_PORT (default 26379) replaces the port. POSIX sh.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 TEMPLATE OUTPUT" >&2; exit 2; }
template=$1 output=$2
: "${REDIS_MONITOR_PASSWORD:?set REDIS_MONITOR_PASSWORD, the password of the Redis ACL user monitor}"
: "${REDIS_SENTINEL_PASSWORD:?set REDIS_SENTINEL_PASSWORD, the password of the Sentinels}"
for value in "$REDIS_MONITOR_PASSWORD" "$REDIS_SENTINEL_PASSWORD"; do
  case $value in *[!A-Za-z0-9._~+=-]*) echo "render-sentinel-conf: the passwords may hold only letters, digits and ._~+=-" >&2; exit 1 ;; esac
done
umask 077
if [ -f "$output" ]; then
  sed -e "s/^sentinel auth-pass fleet .*/sentinel auth-pass fleet $REDIS_MONITOR_PASSWORD/" \
    -e "s/^requirepass .*/requirepass $REDIS_SENTINEL_PASSWORD/" \
    -e "s/^sentinel sentinel-pass .*/sentinel sentinel-pass $REDIS_SENTINEL_PASSWORD/" "$output" > "$output.tmp"
  mv "$output.tmp" "$output"
  exit 0
fi
: "${REDIS_PRIMARY_HOST:?set REDIS_PRIMARY_HOST, where the primary is when the Sentinels first start}"
sed -e '/^#/d' -e '/^$/d' \
  -e "s/^port 26379\$/port ${SENTINEL_PORT:-26379}/" \
  -e "s/@PRIMARY_HOST@/$REDIS_PRIMARY_HOST/" -e "s/@PRIMARY_PORT@/${REDIS_PRIMARY_PORT:-6379}/" \
  -e "s/@MONITOR_PASSWORD@/$REDIS_MONITOR_PASSWORD/" -e "s/@SENTINEL_PASSWORD@/$REDIS_SENTINEL_PASSWORD/g" \
  "$template" > "$output.tmp"
mv "$output.tmp" "$output"
