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
# redis-server needs none of the passwords: keep them out of its environment.
for variable in $(env | sed -n 's/^\(REDIS_[A-Z0-9_]*_PASSWORD\)=.*/\1/p'); do unset "$variable"; done
exec docker-entrypoint.sh "$@" --aclfile "$acl"
