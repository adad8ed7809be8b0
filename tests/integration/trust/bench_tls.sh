#!/usr/bin/env bash
# TLS benchmark of parley-homeserver: REGISTER and call rates over TLS. The load over TLS comes
# from tls_load.py (Debian's sipp is built without TLS: "-t l1" fails); the callee is a UDP sipp.
#   HS_BIN=<Release parley-homeserver> tests/integration/trust/bench_tls.sh
# Fixed rates (RATES_REGISTER, RATES_CALL), STEP seconds each, the server pinned to CPU 0
# (taskset), sipp on CPU 1. Modes: l1 = one TLS connection for all calls (sipp -t l1),
# ln = one TLS connection (full handshake) per call (-t ln). A step passes when every call
# succeeded. Prints one line per step: mode scenario rate ok failed cpu_us_per_op.
# The server runs with --max-client-transactions 100000: sipp multiplexes all its users
# on one connection, which the per-client limit (default 10) would otherwise throttle.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/sipp.sh"
: "${HS_BIN:?HS_BIN must point at a Release parley-homeserver}"
HS_SCEN=$HERE/../homeserver/scenarios
STEP=${STEP:-5}
RATES_REGISTER=${RATES_REGISTER:-"250 500 1000 2000"}
RATES_CALL=${RATES_CALL:-"100 200 400"}
MODES=${MODES:-"l1 ln"}
CERTS=$TEST_TMP/certs
bash "$HERE/../../lib/certs.sh" "$CERTS" >/dev/null || fail "certs"
TLS_PORT=$(free_port); HS_PORT=$(free_port); ADMIN=$(free_port); UAS_PORT=$(free_port)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
start_hs() {
  rm -rf "$TEST_TMP/data"
  taskset -c 0 "$HS_BIN" --listen "udp:127.0.0.1:$HS_PORT" --listen "tls:127.0.0.1:$TLS_PORT" \
    --domain example.com --data-dir "$TEST_TMP/data" --admin "127.0.0.1:$ADMIN" --log-level err \
    --tls-cert "$CERTS/home1.pem" --tls-key "$CERTS/home1.key.pem" --tls-ca "$CERTS/ca.pem" \
    --max-client-transactions 100000 --shutdown-grace 200ms >"$TEST_TMP/hs.log" 2>&1 &
  HS=$!; PARLEY_PIDS+=("$HS")
  wait_http "http://127.0.0.1:$ADMIN/healthz" 10 || fail "homeserver did not start"
}
stop_hs() { kill -TERM "$HS" 2>/dev/null; wait "$HS" 2>/dev/null; }
make_users "$TEST_TMP/users.csv" u 1000

for mode in $MODES; do
  for r in $RATES_REGISTER; do
    start_hs
    n=$((r * STEP)); t0=$(ticks "$HS")
    res=$(timeout $((STEP * 4 + 40)) python3 "$HERE/tls_load.py" "reg_$mode" "$TLS_PORT" "$CERTS/ca.pem" \
      "$CERTS/client.pem" "$CERTS/client.key.pem" "$r" "$STEP")
    t1=$(ticks "$HS"); ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$res"); fl=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$res")
    echo "$mode register $r ok=$ok failed=$fl $(grep -o "elapsed=[0-9.]*" <<<"$res") cpu_us_per_op=$(( ok > 0 ? (t1 - t0) * 10000 / ok : 0 ))"
    stop_hs
  done
  [ "$mode" = l1 ] || continue   # calls: one TLS connection (the load generator's ln mode is REGISTER only)
  for r in $RATES_CALL; do
    start_hs
    # callees registered over UDP, a UDP sipp UAS answers; the callers come over TLS
    make_users "$TEST_TMP/callees.csv" c 100
    sipp_run "creg-$r" 20 "127.0.0.1:$HS_PORT" -sf "$HS_SCEN/register.xml" -inf "$TEST_TMP/callees.csv" \
      -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" -key contact_transport udp \
      -key expires 3600 -m 100 -r 200 -i 127.0.0.1 -p "$(free_port)" || fail "callees"
    n=$((r * STEP))
    ( cd "$TEST_TMP" && exec taskset -c 1 timeout $((STEP * 4 + 20)) sipp -nostdin -sf "$HS_SCEN/uas_call.xml" \
        -i 127.0.0.1 -p "$UAS_PORT" -m "$n" ) >"$TEST_TMP/uas-$r.out" 2>&1 &
    uas=$!; PARLEY_PIDS+=("$uas")
    sleep 0.3
    t0=$(ticks "$HS")
    res=$(timeout $((STEP * 4 + 40)) python3 "$HERE/tls_load.py" call_l1 "$TLS_PORT" "$CERTS/ca.pem" \
      "$CERTS/client.pem" "$CERTS/client.key.pem" "$r" "$STEP" c 100)
    t1=$(ticks "$HS"); ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$res"); fl=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$res")
    echo "$mode call $r ok=$ok failed=$fl $(grep -o "elapsed=[0-9.]*" <<<"$res") cpu_us_per_op=$(( ok > 0 ? (t1 - t0) * 10000 / ok : 0 ))"
    kill "$uas" 2>/dev/null; wait "$uas" 2>/dev/null
    stop_hs
  done
done
