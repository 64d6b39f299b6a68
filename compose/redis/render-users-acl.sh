#!/bin/sh
# Writes the aclfile redis-server loads (--aclfile) from users.acl.in and the passwords in the
# environment. Redis cannot read variables in an aclfile, so the file is made at each start
# (compose/redis/entrypoint.sh); the tests run this same script (Tests/RedisStoreTests).
#
#   render-users-acl.sh TEMPLATE OUTPUT
#
# - A line holding @PASSWORD@ needs REDIS_<USER>_PASSWORD (user name upper-cased, '-' as '_'), e.g.
#   REDIS_PROBE_PASSWORD for `user probe`; the file gets only its SHA-256 (#<hex>), never the password.
#   @PASSWORD?@ is the same for an optional user: unset, the line becomes `user <name> reset` (off).
# - Key patterns name the prefix `recovery:`; it becomes "$FLEET_PREFIX:" (default `recovery`), the
#   prefix the workers put before every key.
# - Comment and blank lines are dropped: an aclfile allows neither.
# POSIX sh: it runs in the redis:7 image as well as on the test machine.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 TEMPLATE OUTPUT" >&2; exit 2; }
template=$1 output=$2
prefix=${FLEET_PREFIX:-recovery}
case $prefix in
  *[!A-Za-z0-9._-]*) echo "render-users-acl: FLEET_PREFIX '$prefix' may hold only letters, digits, '.', '_' and '-' (a glob character would widen every key pattern)" >&2; exit 1 ;;
esac

umask 077
tmp="$output.tmp.$$"
trap 'rm -f "$tmp"' EXIT
: > "$tmp"
set -f   # the rules hold globs (~*, &*): never expand them
while IFS= read -r line || [ -n "$line" ]; do
  case $line in '' | '#'*) continue ;; esac
  set -- $line
  if [ "$1" != user ] || [ $# -lt 2 ]; then
    echo "render-users-acl: $template: every rule line starts with 'user <name>': $line" >&2; exit 1
  fi
  user=$2
  case $user in
    *[!a-z0-9_-]*) echo "render-users-acl: $template: user name '$user' may hold only a-z, 0-9, '_' and '-'" >&2; exit 1 ;;
  esac
  case $line in
    *@PASSWORD\?@*)
      variable="REDIS_$(printf '%s' "$user" | tr 'a-z-' 'A-Z_')_PASSWORD"
      password=$(printenv "$variable" || true)
      if [ -z "$password" ]; then
        line="user $user reset"
      else
        hash=$(printf '%s' "$password" | sha256sum | cut -d' ' -f1)
        line=$(printf '%s\n' "$line" | sed "s/@PASSWORD?@/#$hash/")
      fi
      ;;
    *@PASSWORD@*)
      variable="REDIS_$(printf '%s' "$user" | tr 'a-z-' 'A-Z_')_PASSWORD"
      password=$(printenv "$variable" || true)
      if [ -z "$password" ]; then
        echo "render-users-acl: $variable is not set: it is the password of the Redis user '$user'" >&2; exit 1
      fi
      hash=$(printf '%s' "$password" | sha256sum | cut -d' ' -f1)
      line=$(printf '%s\n' "$line" | sed "s/@PASSWORD@/#$hash/")
      ;;
  esac
  printf '%s\n' "$line" | sed "s/~recovery:/~$prefix:/g" >> "$tmp"
done < "$template"
mv "$tmp" "$output"
trap - EXIT
