#!/usr/bin/env bash
# Entry point of the Parley image (deploy/docker-compose.yml). usage: entrypoint.sh ROLE
#   certs       creates the pool CA in /certs (once; the volume keeps it)
#   seed        waits for etcd and a home server, then adds the demo users (idempotent)
#   etcd        a single-node etcd on :2379 (data in /var/lib/etcd)
#   homeserver  parley-homeserver; name home-<container hostname> (unique with --scale)
#   frontend    parley-frontend (name fe1)
#   edge        parley-edge (name edge1): TLS :5061 for outside users, MTLS :5062 inside
# Each server issues its own certificate at start (CN <name>.<domain>, SAN its hostname,
# its container address and the service name) from the CA in /certs, and announces
# <advertised address> + cert subject in the directory. Settings: PARLEY_* variables
# (docs/configuration.md) override the flags given here.
set -euo pipefail
ROLE=${1:-homeserver}; shift || true
DOMAIN=${POOL_DOMAIN:-pool.test}
ETCD=${PARLEY_ETCD:-http://etcd:2379}
IP=$(hostname -i | awk '{print $1}')
CERTS=/certs

issue() {  # issue NAME [extra DNS]: our certificate, signed by the pool CA
  for _ in $(seq 1 100); do [ -f "$CERTS/ca.key.pem" ] && break; sleep 0.2; done
  CERT_FORCE=1 CERT_DOMAIN=$DOMAIN CERT_IPS=$IP CERT_DNS="$(hostname)${2:+,$2}" \
    /usr/share/parley/certs.sh "$CERTS" "$1" >/dev/null
}
tls() { echo --tls-cert "$CERTS/$1.pem" --tls-key "$CERTS/$1.key.pem" --tls-ca "$CERTS/ca.pem"; }

case $ROLE in
certs)
  # only the CA: each server issues its own leaf for its own address at start
  CERT_DOMAIN=$DOMAIN /usr/share/parley/certs.sh "$CERTS" --ca-only
  ls -l "$CERTS"/ca.pem
  ;;
etcd)
  exec etcd --name etcd --data-dir /var/lib/etcd/data --listen-client-urls http://0.0.0.0:2379 \
    --advertise-client-urls "http://$IP:2379" --listen-peer-urls http://0.0.0.0:2380 \
    --initial-advertise-peer-urls "http://$IP:2380" --initial-cluster "etcd=http://$IP:2380"
  ;;
seed)
  for _ in $(seq 1 300); do curl -fs "$ETCD/health" >/dev/null && break; sleep 0.5; done
  homes=()
  for _ in $(seq 1 300); do
    mapfile -t homes < <(parleyctl --etcd "$ETCD" --json server list |
      python3 -c 'import json,sys; print("\n".join(sorted(s["name"] for s in json.load(sys.stdin) if s.get("role")=="homeserver")))')
    [ ${#homes[@]} -gt 0 ] && break
    sleep 0.5
  done
  [ ${#homes[@]} -gt 0 ] || { echo "seed: no home server announced" >&2; exit 1; }
  i=0
  for u in alice bob carol; do
    home=${homes[$((i % ${#homes[@]}))]}; i=$((i + 1))
    if ! parleyctl --etcd "$ETCD" user show "$u@$DOMAIN" >/dev/null 2>&1; then
      parleyctl --etcd "$ETCD" user add "$u@$DOMAIN" --password "$u-secret" --home "$home" --display "${u^}"
    fi
    echo "seed: $u@$DOMAIN (password $u-secret) homed on $(parleyctl --etcd "$ETCD" --json user show "$u@$DOMAIN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["home"])')"
  done
  ;;
homeserver)
  NAME=${PARLEY_SERVER_NAME:-home-$(hostname)}
  issue "$NAME"
  # shellcheck disable=SC2046
  exec parley-homeserver --listen tls:0.0.0.0:5061 --listen udp:0.0.0.0:5060 --listen tcp:0.0.0.0:5060 \
    --advertise "$IP" --domain "$DOMAIN" --data-dir /var/lib/parley --admin 0.0.0.0:8080 \
    --etcd "$ETCD" --server-name "$NAME" --cert-subject "$NAME.$DOMAIN" $(tls "$NAME") "$@"
  ;;
frontend)
  NAME=${PARLEY_SERVER_NAME:-fe1}
  issue "$NAME" frontend
  # shellcheck disable=SC2046
  exec parley-frontend --listen tls:0.0.0.0:5061 --listen udp:0.0.0.0:5060 --listen tcp:0.0.0.0:5060 \
    --advertise "$IP" --announce "sip:$IP:5061;transport=tls" --domain "$DOMAIN" --data-dir /var/lib/parley \
    --admin 0.0.0.0:8080 --etcd "$ETCD" --server-name "$NAME" --cert-subject "$NAME.$DOMAIN" $(tls "$NAME") "$@"
  ;;
edge)
  NAME=${PARLEY_SERVER_NAME:-edge1}
  issue "$NAME" edge
  # shellcheck disable=SC2046
  exec parley-edge --listen tls:0.0.0.0:5061 --inside-listen tls:0.0.0.0:5062 \
    --advertise "${EDGE_PUBLIC_HOST:-127.0.0.1}" --inside-advertise "$IP" \
    --frontend "${EDGE_FRONTEND:-sip:frontend:5061;transport=tls}" --data-dir /var/lib/parley \
    --admin 0.0.0.0:8080 --etcd "$ETCD" --server-name "$NAME" --cert-subject "$NAME.$DOMAIN" $(tls "$NAME") "$@"
  ;;
*)
  exec "$ROLE" "$@"
  ;;
esac
