#!/usr/bin/env bash
# certs.sh: generate a throwaway test PKI (P-256, valid 30 days) into a directory.
#
#   tests/lib/certs.sh <dir>
#
# Writes, each as <name>.pem (certificate) + <name>.key.pem (private key):
#   ca              the pool CA ("Parley Test CA"); also other-ca for a second, unrelated CA
#   home1           CN=home1.pool.test, EKU serverAuth+clientAuth,
#                   SAN DNS:home1.pool.test, DNS:localhost, IP:127.0.0.1
#   fe1             CN=fe1.pool.test, same profile as home1
#   client          CN=alice-device, EKU clientAuth only, SAN URI:sip:alice@pool.test
#   expired         CN=expired.pool.test, server profile, notAfter one day before notBefore
#   wrongca         CN=home1.pool.test, server profile, signed by other-ca
#   serveronly      CN=serveronly.pool.test, EKU serverAuth only (no clientAuth)
#   noeku           CN=noeku.pool.test, no extendedKeyUsage extension at all
# Exit status 0 when every certificate was made and the good ones verify against ca.pem.
# Needs only the openssl command line tool (OpenSSL 3, as on Debian 12).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 <output-dir>" >&2
  exit 2
fi
out=$1
mkdir -p "$out"
cd "$out"

OPENSSL=${OPENSSL:-openssl}
DAYS=30

# new_ca <name> <CN>
new_ca() {
  "$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key.pem" -out "$1.pem" -days "$DAYS" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# new_leaf <name> <CN> <ca> <days> <extensions, one per line>
new_leaf() {
  local name=$1 cn=$2 ca=$3 days=$4 ext=$5
  "$OPENSSL" req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$name.key.pem" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
  printf '%s\n' "$ext" > "$name.ext"
  "$OPENSSL" x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key.pem" -CAcreateserial \
    -out "$name.pem" -days "$days" -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

server_ext() {  # <dns name>
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1' "$1"
}

new_ca ca "Parley Test CA"
new_ca other-ca "Parley Other CA"
new_leaf home1 home1.pool.test ca "$DAYS" "$(server_ext home1.pool.test)"
new_leaf fe1 fe1.pool.test ca "$DAYS" "$(server_ext fe1.pool.test)"
new_leaf client alice-device ca "$DAYS" \
  "$(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:sip:alice@pool.test')"
# -days -1: notAfter lies one day before notBefore, so the certificate is expired from birth
new_leaf expired expired.pool.test ca -1 "$(server_ext expired.pool.test)"
new_leaf wrongca home1.pool.test other-ca "$DAYS" "$(server_ext home1.pool.test)"
new_leaf serveronly serveronly.pool.test ca "$DAYS" \
  "$(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:serveronly.pool.test,DNS:localhost,IP:127.0.0.1')"
new_leaf noeku noeku.pool.test ca "$DAYS" \
  "$(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=DNS:noeku.pool.test,DNS:localhost,IP:127.0.0.1')"
rm -f ca.srl other-ca.srl

# sanity: the good ones chain to ca.pem, the bad ones do not
"$OPENSSL" verify -CAfile ca.pem home1.pem fe1.pem client.pem serveronly.pem noeku.pem >/dev/null
if "$OPENSSL" verify -CAfile ca.pem expired.pem >/dev/null 2>&1; then
  echo "certs.sh: expired.pem unexpectedly verifies" >&2
  exit 1
fi
if "$OPENSSL" verify -CAfile ca.pem wrongca.pem >/dev/null 2>&1; then
  echo "certs.sh: wrongca.pem unexpectedly verifies" >&2
  exit 1
fi
chmod 600 ./*.key.pem
