#!/bin/sh
# Entrypoint of the compose `redis` service: renders the ACL users (users.acl.in + the REDIS_*_PASSWORD
# variables) into a tmpfs, then starts the redis:7 image's own entrypoint (which drops to the redis
# user) with --aclfile. The rendered file holds password hashes only and is made anew at every start,
# so users.acl.in stays the one place the users are defined: changes made with ACL SETUSER are lost
# at the next restart (docs/deployment.md, "Redis users and TLS").
set -eu
here=$(dirname "$0")
acl=/run/redis-acl/users.acl
sh "$here/render-users-acl.sh" "$here/users.acl.in" "$acl"
[ "$(id -u)" != 0 ] || chown redis:redis "$acl"
# The Sentinel layout (docker-compose.cluster.yml sets REDIS_REPLICA_PASSWORD): the node's conf lives in
# the data volume (Sentinel has it rewritten after a fail-over), made from redis-ha.conf on first start, a
# replica's with `replicaof $REDIS_INITIAL_PRIMARY`; the replication password goes in the tmpfs.
extra=""
if [ -n "${REDIS_REPLICA_PASSWORD:-}" ]; then
  case $REDIS_REPLICA_PASSWORD in
    *[!A-Za-z0-9._~+=-]*) echo "entrypoint: REDIS_REPLICA_PASSWORD may hold only letters, digits and ._~+=- (redis-server would print a refused one)" >&2; exit 1 ;;
  esac
  if [ ! -f /data/redis.conf ]; then
    cp "$here/redis-ha.conf" /data/redis.conf
    # The node that starts as primary (FLEET_REDIS_NODE names it in REDIS_INITIAL_PRIMARY) replicates nobody.
    case "${REDIS_INITIAL_PRIMARY:-}" in
      "" | "${FLEET_REDIS_NODE:-none} "*) ;;
      *) echo "replicaof $REDIS_INITIAL_PRIMARY" >> /data/redis.conf ;;
    esac
    [ "$(id -u)" != 0 ] || chown redis:redis /data/redis.conf
  fi
  # CONFIG REWRITE (which Sentinel runs after a fail-over) writes masterauth into the conf; the password is
  # given anew below, so an old one is not kept in the volume.
  sed -i '/^masterauth /d' /data/redis.conf
  (umask 077; echo "masterauth $REDIS_REPLICA_PASSWORD" > /run/redis-acl/replication.conf)
  [ "$(id -u)" != 0 ] || chown redis:redis /run/redis-acl/replication.conf
  extra="--include /run/redis-acl/replication.conf"
fi
# redis-server needs none of the passwords: keep them out of its environment.
for variable in $(env | sed -n 's/^\(REDIS_[A-Z0-9_]*_PASSWORD\)=.*/\1/p'); do unset "$variable"; done
# shellcheck disable=SC2086
exec docker-entrypoint.sh "$@" $extra --aclfile "$acl"
