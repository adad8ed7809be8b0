#!/usr/bin/env bash
# Connection trust (design §2): TLS/MTLS classes, Route stripping, destination
# authorization, throttling, trusted listeners. usage: run.sh CASE
# (HS_BIN = parley-homeserver, CTL_BIN = parleyctl for the cases that need etcd)
# Cases:
#   classes   (etcd) MTLS peer with a serverAuth cert whose subject is a directory server
#             -> class server, its request not challenged; a client cert, a server cert
#             whose subject is not in the directory, and no cert -> class client (407);
#             an expired cert and a cert of another CA -> handshake refused; SIGHUP
#             reloads the certificates (new connections still work)
#   relay     a client's injected Route to 127.0.0.2 is stripped (nothing arrives there);
#             a Request-URI with maddr=127.0.0.2, an IP Request-URI, an unknown host -> 403
#             and nothing sent; tel: with no static route -> 404; counters on /metrics
#   throttle  11 MESSAGEs at once on one client TCP connection, the callee answers after
#             1 s: the 11th gets 503 + Retry-After at once, the ten complete with 200,
#             the connection may send again afterwards
#   gateway   (etcd, auth all) a trusted listener allowing 127.0.0.1: a gateway's MESSAGE
#             reaches a registered user without authentication; from 127.0.0.2 -> 407
#   static    (etcd) static routes: tel/prefix route to a gateway next hop (delivered there),
#             a treat_as_server route trusts its gateway's source address
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/homeserver.sh"
source "$HERE/../../lib/etcd.sh"
: "${HS_BIN:?HS_BIN must point at parley-homeserver}"
CASE=${1:?case}
PY="python3 $HERE/trust_client.py"
CERTS=$TEST_TMP/certs

ETCD_ST=$TEST_TMP/etcd
trap 'etcd_stop "$ETCD_ST"; cleanup_all' EXIT
need_etcd() {
  : "${CTL_BIN:?CTL_BIN must point at parleyctl}"
  ETCD_URL=$(etcd_start "$ETCD_ST") || fail "etcd did not start"
}
ctl() { "$CTL_BIN" --etcd "$ETCD_URL" "$@"; }
b64() { printf '%s' "$1" | base64 -w0; }
etcd_put() {  # etcd_put KEY JSON
  curl -fsS -m 3 "$ETCD_URL/v3/kv/put" -d "{\"key\":\"$(b64 "$1")\",\"value\":\"$(b64 "$2")\"}" >/dev/null \
    || fail "etcd put $1"
}
wait_for() {
  local t=$1 i; shift
  for ((i = 0; i < t * 10; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}
metric_is() { [ "$(metric "$1")" = "$2" ]; }
rej() { metric "parley_proxy_rejections_total{reason=\"$1\"}"; }

case "$CASE" in
classes)
  bash "$HERE/../../lib/certs.sh" "$CERTS" || fail "test PKI"
  need_etcd
  # fe1 is a pool server (its certificate subject is listed); home1's is not
  etcd_put /parley/servers/fe1 '{"role":"frontend","address":"sip:127.0.0.1:15061;transport=tls","cert_subject":"fe1.pool.test"}'
  ctl user add carol@example.com --password x --home home1 >/dev/null || fail "user add"
  TLS_PORT=$(free_port)
  hs_start --listen "tls:127.0.0.1:$TLS_PORT" --etcd "$ETCD_URL" --server-name home1 --auth all \
    --auth-sha256=false --tls-cert "$CERTS/home1.pem" --tls-key "$CERTS/home1.key.pem" \
    --tls-ca "$CERTS/ca.pem" --shutdown-grace 200ms
  wait_for 10 metric_is parley_directory_users 1 || fail "directory not loaded"
  tls() { $PY tls "$TLS_PORT" "$HS_ADMIN" "$CERTS/ca.pem" "$@"; }

  out=$(tls "$CERTS/fe1.pem" "$CERTS/fe1.key.pem")
  [ "$out" = "404 server" ] || fail "fe1 (MTLS, serverAuth, listed): got '$out', want '404 server'"
  pass "MTLS peer with serverAuth and a listed subject -> class server, not challenged"
  out=$(tls "$CERTS/client.pem" "$CERTS/client.key.pem")
  [ "$out" = "407 client" ] || fail "client certificate: got '$out', want '407 client'"
  pass "client certificate (clientAuth only) -> class client, challenged"
  out=$(tls "$CERTS/home1.pem" "$CERTS/home1.key.pem")
  [ "$out" = "407 client" ] || fail "server cert not in the directory: got '$out', want '407 client'"
  pass "server certificate whose subject is not a directory server -> class client"
  out=$(tls - -)
  [ "$out" = "407 client" ] || fail "no certificate: got '$out', want '407 client'"
  pass "TLS without a client certificate -> class client"
  fails0=$(metric parley_tls_handshake_failures_total)
  out=$(tls "$CERTS/expired.pem" "$CERTS/expired.key.pem")
  [ "$out" = refused ] || fail "expired certificate: got '$out', want refused"
  out=$(tls "$CERTS/wrongca.pem" "$CERTS/wrongca.key.pem")
  [ "$out" = refused ] || fail "certificate of another CA: got '$out', want refused"
  wait_for 5 metric_is parley_tls_handshake_failures_total $((fails0 + 2)) \
    || fail "handshake failures not counted: $(metric parley_tls_handshake_failures_total)"
  pass "expired and wrong-CA client certificates -> handshake refused, counted"
  [ "$(metric 'parley_trust_connections_classified_total{class="server"}')" = 1 ] \
    || fail "server connections not counted: $(curl -fs "$HS_ADMIN/metrics" | grep classified)"
  [ "$(metric 'parley_trust_connections_classified_total{class="client"}')" = 3 ] \
    || fail "client connections not counted"
  pass "/metrics counts connections by class"
  # SIGHUP: certificates re-read (replace home1's by fe1's files: same CA, same SANs)
  cp "$CERTS/fe1.pem" "$CERTS/home1.pem"; cp "$CERTS/fe1.key.pem" "$CERTS/home1.key.pem"
  kill -HUP "$HS_PID"
  wait_for 5 grep -q "configuration reloaded" "$TEST_TMP/homeserver.log" || fail "no reload"
  out=$(tls "$CERTS/fe1.pem" "$CERTS/fe1.key.pem")
  [ "$out" = "404 server" ] || fail "after SIGHUP: got '$out'"
  grep -q "TLS certificates not reloaded" "$TEST_TMP/homeserver.log" && fail "reload failed"
  python3 - "$TLS_PORT" "$CERTS/ca.pem" <<'PY' || fail "after SIGHUP the server does not present the new certificate"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.load_verify_locations(sys.argv[2]); ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5), server_hostname="localhost")
cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
sys.exit(0 if cn == "fe1.pool.test" else "server presents " + cn)
PY
  pass "SIGHUP reloads the TLS certificates (new connections get the new one)"
  ;;
relay)
  HS_MAX_CLIENT_TX=10 hs_start
  SINK_PORT=$(free_port)
  $PY udp_sink 127.0.0.2 "$SINK_PORT" 8 "$TEST_TMP/sink.txt" &
  sink=$!; PARLEY_PIDS+=("$sink")
  sleep 0.3
  out=$($PY send udp "$HS_PORT" 127.0.0.1 "Route: <sip:127.0.0.2:$SINK_PORT;lr>|Record-Route: <sip:127.0.0.2:$SINK_PORT;lr>" \
        "sip:bob@example.com")
  [ "$out" = 404 ] || fail "injected Route: got $out, want 404 (Route stripped, bob unknown)"
  out=$($PY send tcp "$HS_PORT" 127.0.0.1 "Route: <sip:127.0.0.2:$SINK_PORT;lr>" "sip:x@127.0.0.2:$SINK_PORT")
  [ "$out" = 403 ] || fail "injected Route + IP Request-URI over TCP: got $out, want 403"
  out=$($PY send udp "$HS_PORT" 127.0.0.1 - "sip:x@elsewhere.test;maddr=127.0.0.2")
  [ "$out" = 403 ] || fail "maddr outside: got $out, want 403"
  out=$($PY send udp "$HS_PORT" 127.0.0.1 - "sip:x@127.0.0.2:$SINK_PORT")
  [ "$out" = 403 ] || fail "IP Request-URI: got $out, want 403"
  out=$($PY send udp "$HS_PORT" 127.0.0.1 - "sip:x@127.0.0.1:$SINK_PORT")
  [ "$out" = 403 ] || fail "our own IP, another port: got $out, want 403"
  out=$($PY send udp "$HS_PORT" 127.0.0.1 - "sip:x@relay.invalid")
  [ "$out" = 403 ] || fail "foreign host: got $out, want 403"
  out=$($PY send udp "$HS_PORT" 127.0.0.1 - "tel:+15551234")
  [ "$out" = 404 ] || fail "tel: without a static route: got $out, want 404"
  out=$($PY send udp "$HS_PORT" 127.0.0.1 - "sip:+15551234@example.com;user=phone")
  [ "$out" = 404 ] || fail "user=phone without a static route: got $out, want 404"
  wait "$sink"
  [ ! -s "$TEST_TMP/sink.txt" ] || fail "something reached 127.0.0.2: $(cat "$TEST_TMP/sink.txt")"
  pass "injected Route/Record-Route stripped; maddr, IP and foreign-host destinations -> 403; nothing reached 127.0.0.2"
  pass "tel: and user=phone without a static route -> 404"
  [ "$(rej route_stripped)" = 2 ] || fail "route_stripped = $(rej route_stripped), want 2"
  [ "$(rej relay_denied)" = 5 ] || fail "relay_denied = $(rej relay_denied), want 5"
  [ "$(rej no_route)" = 2 ] || fail "no_route = $(rej no_route), want 2"
  pass "/metrics: route_stripped 2, relay_denied 5, no_route 2"
  ;;
throttle)
  HS_MAX_CLIENT_TX=10 hs_start
  out=$($PY throttle "$HS_PORT" example.com 11) || fail "throttle client: $out"
  first=$(echo "$out" | head -1)
  [ "$first" = "503 retry-after=5" ] || fail "first final answer should be the 503 with Retry-After: $out"
  [ "$(echo "$out" | grep -c '^200$')" = 10 ] || fail "the first ten should complete with 200: $out"
  echo "$out" | grep -q '^again 200$' || fail "the connection could not send after the ten: $out"
  [ "$(rej throttled)" = 1 ] || fail "throttled = $(rej throttled)"
  pass "11th concurrent transaction on one TCP connection -> 503 Retry-After: 5; the ten complete; slots given back"
  ;;
gateway)
  need_etcd
  ctl user add alice@example.com --password secret-alice --home home1 >/dev/null || fail "user add"
  GW_PORT=$(free_port)
  hs_start --etcd "$ETCD_URL" --server-name home1 --auth all --auth-sha256=false --shutdown-grace 200ms \
    --trusted-listener "udp:127.0.0.1:$GW_PORT=127.0.0.1"
  wait_for 10 metric_is parley_directory_users 1 || fail "directory not loaded"
  out=$($PY gateway "$HS_PORT" "$GW_PORT" example.com alice secret-alice) || fail "gateway client: $out"
  echo "$out" | grep -q '^allowed 200 delivered=1$' || fail "gateway from its allowed address: $out"
  echo "$out" | grep -q '^other 407 delivered=0$' || fail "gateway from another address: $out"
  pass "trusted listener: the gateway reaches a registered user without auth from 127.0.0.1; from 127.0.0.2 -> 407"
  ;;
static)
  need_etcd
  ctl user add alice@example.com --password secret-alice --home home1 >/dev/null || fail "user add"
  GWSINK=$(free_port)
  ctl route add pstn --match prefix:1555 --next-hop "sip:127.0.0.1:$GWSINK" --treat-as-server \
    --allow-from 127.0.0.2 >/dev/null || fail "route add"
  hs_start --etcd "$ETCD_URL" --server-name home1 --auth all --auth-sha256=false --shutdown-grace 200ms
  wait_for 10 metric_is parley_directory_users 1 || fail "directory not loaded"
  # the gateway (a UAS answering 200) behind the static route
  python3 - "$GWSINK" >"$TEST_TMP/gw.txt" 2>&1 <<'PY' &
import socket, sys, re
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1]))); s.settimeout(8)
try:
    data, src = s.recvfrom(65535)
except socket.timeout:
    sys.exit(1)
m = data.decode()
print(m.split("\r\n", 1)[0])
vias = re.findall(r"^Via:.*$", m, re.M | re.I)
hdr = lambda n: re.search(r"^%s:\s*(.*)$" % n, m, re.M | re.I).group(1).strip()
resp = "\r\n".join(["SIP/2.0 200 OK"] + [v.strip() for v in vias] + ["From: " + hdr("From"), "To: " + hdr("To") + ";tag=gw",
       "Call-ID: " + hdr("Call-ID"), "CSeq: " + hdr("CSeq"), "Content-Length: 0"]) + "\r\n\r\n"
s.sendto(resp.encode(), src)
PY
  gw=$!; PARLEY_PIDS+=("$gw")
  sleep 0.3
  # a trusted source (treat_as_server, allow_from 127.0.0.2) needs no authentication
  out=$($PY send udp "$HS_PORT" 127.0.0.2 - "tel:+1-555-0100")
  [ "$out" = 200 ] || fail "tel: along the static route from the trusted gateway address: got $out"
  wait "$gw" || fail "the gateway got nothing"
  grep -q "^MESSAGE tel:+1-555-0100 SIP/2.0" "$TEST_TMP/gw.txt" || fail "gateway got: $(cat "$TEST_TMP/gw.txt")"
  pass "prefix:1555 static route: tel: number delivered to its next hop; treat_as_server source not challenged"
  out=$($PY send udp "$HS_PORT" 127.0.0.1 - "tel:+1-555-0100")
  [ "$out" = 407 ] || fail "same request from an address not in allow_from: got $out, want 407"
  out=$($PY send udp "$HS_PORT" 127.0.0.2 - "tel:+4930123")
  [ "$out" = 404 ] || fail "number matching no route: got $out, want 404"
  pass "not in allow_from -> challenged; a number with no route -> 404"
  ;;
*)
  fail "unknown case $CASE"
  ;;
esac
