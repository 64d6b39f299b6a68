#!/usr/bin/env bash
# A throwaway CA and certificates for the Redis TLS tunnel (compose/stunnel/*.conf), with openssl.
# For development and tests: production certificates come from your own CA (docs/deployment.md,
# "Redis users and TLS").
#
#   compose/stunnel/make-dev-certs.sh [DIR] [CLIENT...]
#
# In DIR (default compose/stunnel/certs, which git ignores):
#   ca.pem, ca.key            the CA, made unless DIR already holds one (then it issues with that one:
#                             renewal, another host). Keep ca.key off the fleet's hosts.
#   server.pem, server.key    the Redis host's tunnel: serverAuth, subjectAltName DNS:$REDIS_TLS_NAME
#                             (default redis.fleet.internal, the name redis-client.conf checks)
#   <CLIENT>.pem, .key        one per worker host's tunnel (default one, `client`): clientAuth
# Leaf certificates already in DIR are replaced. DAYS (default 365) sets their validity.
set -euo pipefail
dir=${1:-$(dirname "$0")/certs}
shift || true
clients=("$@")
((${#clients[@]})) || clients=(client)
name=${REDIS_TLS_NAME:-redis.fleet.internal}
days=${DAYS:-365}
for c in "${clients[@]}"; do
  [[ $c =~ ^[A-Za-z0-9._-]+$ && $c != ca && $c != server ]] || { echo "make-dev-certs: bad client name '$c'" >&2; exit 2; }
done

mkdir -p "$dir"
cd "$dir"
umask 077
# openssl's chatter only when it fails.
quiet() { local out; out=$("$@" 2>&1) || { printf 'make-dev-certs: %s failed:\n%s\n' "$*" "$out" >&2; return 1; }; }
key() { quiet openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

if [[ -f ca.pem && -f ca.key ]]; then
  echo "make-dev-certs: issuing with the CA in $dir" >&2
else
  key ca.key
  quiet openssl req -x509 -new -key ca.key -out ca.pem -days "$((days * 2))" \
    -subj "/CN=ec2-recovery-fleet dev CA $(date +%Y%m%d%H%M%S)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

issue() { # file-name common-name extensions
  key "$1.key"
  quiet openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n%s\n' "$3" > "$1.ext"
  quiet openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" -out "$1.pem" -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"
}
issue server "$name" "extendedKeyUsage=serverAuth
subjectAltName=DNS:$name"
for c in "${clients[@]}"; do issue "$c" "$c" "extendedKeyUsage=clientAuth"; done
chmod 644 ./*.pem
echo "make-dev-certs: $dir: ca.pem, server.pem + server.key ($name), client certificates: ${clients[*]}" >&2
