#!/usr/bin/env bash
# certs.sh: the pool's PKI for the local launcher and docker-compose (not for production:
# there, use your own CA). P-256 keys, valid CERT_DAYS (default 365) days.
#
#   deploy/certs.sh <dir> [name ...]        default names: home1 home2 home3 fe1 edge1
#   deploy/certs.sh <dir> --ca-only         the CA only
#
# Writes <dir>/ca.pem + ca.key.pem (created once, reused on later runs) and, for each
# name missing in <dir>, <name>.pem + <name>.key.pem: CN=<name>.<CERT_DOMAIN> (default
# pool.test), EKU serverAuth+clientAuth (pool servers present the same certificate as
# client and server), SAN DNS:<name>.<domain>, DNS:<name>, DNS:localhost, IP:127.0.0.1,
# and every address in CERT_IPS (comma-separated) — docker-compose issues per-container
# certificates with their own address this way.
set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 <output-dir> [name ...]" >&2
  exit 2
fi
out=$1; shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(home1 home2 home3 fe1 edge1)
[ "${names[0]}" = "--ca-only" ] && names=()
DOMAIN=${CERT_DOMAIN:-pool.test}
DAYS=${CERT_DAYS:-365}
OPENSSL=${OPENSSL:-openssl}
mkdir -p "$out"
cd "$out"

if [ ! -f ca.pem ] || [ ! -f ca.key.pem ]; then
  "$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca.key.pem -out ca.pem -days "$DAYS" -subj "/CN=Parley Pool CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
for name in ${names[@]+"${names[@]}"}; do
  case $name in *[!A-Za-z0-9._-]*|'') echo "certs.sh: bad name '$name'" >&2; exit 2 ;; esac
  [ -f "$name.pem" ] && [ -f "$name.key.pem" ] && [ -z "${CERT_FORCE:-}" ] && continue
  san="DNS:$name.$DOMAIN,DNS:$name,DNS:localhost,IP:127.0.0.1"
  if [ -n "${CERT_IPS:-}" ]; then
    IFS=, read -r -a ips <<<"$CERT_IPS"
    for ip in "${ips[@]}"; do [ -n "$ip" ] && san="$san,IP:$ip"; done
  fi
  if [ -n "${CERT_DNS:-}" ]; then
    IFS=, read -r -a dns <<<"$CERT_DNS"
    for d in "${dns[@]}"; do [ -n "$d" ] && san="$san,DNS:$d"; done
  fi
  "$OPENSSL" req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$name.key.pem" -out "$name.csr" -subj "/CN=$name.$DOMAIN" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' \
    "$san" >"$name.ext"
  "$OPENSSL" x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key.pem -CAcreateserial \
    -out "$name.pem" -days "$DAYS" -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  "$OPENSSL" verify -CAfile ca.pem "$name.pem" >/dev/null
done
rm -f ca.srl
chmod 600 ./*.key.pem
