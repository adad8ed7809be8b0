#!/usr/bin/env bash
# End-to-end tests of the whole pool on loopback (deploy/local/pool): etcd, two home
# servers, a front-end, an edge; sipp as inside and outside users. usage: run.sh CASE
# Needs PARLEY_BUILD (a build dir with the three binaries and parleyctl).
# Cases:
#   redirect  inside alice REGISTERs at the front-end: 401, then 302 whose Contact names
#             home1's TLS address with maddr=127.0.0.1; she re-registers at home1 with
#             digest auth: 200, binding on home1 (none on home2, none on the front-end)
#   outside   outside bob (home2) over TLS through the edge (tls_flow.py keeps his flow):
#             REGISTER 401 (the pool's challenge through the edge) -> 200 with Path; a
#             MESSAGE to inside alice (home1) with a Route the sender injected: delivered,
#             without that Route; bob calls alice (INVITE/200/ACK/BYE through the edge);
#             alice calls bob (INVITE reaches him on his flow, BYE passes the edge)
#   move      carol registered on home1; home3 started during the test; `parleyctl user
#             move carol --home home3`: home1 drops her binding and 301s her next REGISTER
#             to home3 (maddr=), the front-end 302s her there too
# Every process is stopped by PID (pool down, sipp and relays via common.sh), also on failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCEN=$HERE/scenarios
DIR_SCEN=$ROOT/tests/integration/homeserver_dir/scenarios
HS_SCEN=$ROOT/tests/integration/homeserver/scenarios
source "$ROOT/tests/lib/common.sh"
source "$ROOT/tests/lib/sipp.sh"
: "${PARLEY_BUILD:?PARLEY_BUILD must point at a build directory}"
CASE=${1:?case}

# sipp's digest uri is the address it sends to (here tls_flow.py), unless -auth_uri says
# otherwise: runs through a flow pass the Request-URI of their challenged request.
export PARLEY_BUILD ${HS_BIN+HS_BIN} ${FE_BIN+FE_BIN} ${EDGE_BIN+EDGE_BIN} ${CTL_BIN+CTL_BIN} POOL_DIR=$TEST_TMP/pool POOL_QUIET=1
# A base port with the pool's ports free (B..B+51, B+200..B+240).
pick_base() {
  python3 - <<'PY'
import random, socket
def free(p):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            return False
        finally:
            s.close()
    return True
for _ in range(100):
    b = random.randrange(20000, 40000, 10)
    if all(free(b + o) for o in (0, 1, 10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 200, 210, 220, 230, 240)):
        print(b); break
PY
}
export POOL_BASE=$(pick_base)
POOL=$ROOT/deploy/local/pool
trap '"$POOL" down >/dev/null 2>&1; cleanup_all' EXIT
"$POOL" up >"$TEST_TMP/pool-up.log" 2>&1 || { cat "$TEST_TMP/pool-up.log" >&2; fail "pool up"; }
eval "$("$POOL" env)"
D=$POOL_DOMAIN
B=$POOL_BASE

CTL_BIN=${CTL_BIN:-$PARLEY_BUILD/tools/parleyctl/parleyctl}
ctl() { "$CTL_BIN" --etcd "$POOL_ETCD" "$@"; }
csv() { printf 'SEQUENTIAL\n%s;%s;\n' "$2" "${3:-}" >"$TEST_TMP/$1.csv"; echo "$TEST_TMP/$1.csv"; }
# tmpl NAME CODE HOST PORT: a scenario from its template
tmpl() {
  sed -e "s/@CODE@/$2/g" -e "s/@HOST@/$3/g" -e "s/@PORT@/$4/g" "$SCEN/$1.xml.in" >"$TEST_TMP/$1-$2.xml"
  echo "$TEST_TMP/$1-$2.xml"
}
wait_for() { local t=$1 i; shift; for ((i = 0; i < t * 10; i++)); do "$@" && return 0; sleep 0.1; done; return 1; }
bindings() {  # bindings ADMIN AOR: number of bindings
  curl -fs --max-time 2 "$1/api/registrations?aor=$2" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["bindings"]))'
}
has_bindings() { [ "$(bindings "$1" "$2")" = "$3" ]; }
metric_of() { curl -fs --max-time 2 "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; }
logs_on_fail() { cp -r "$POOL_DIR/logs" "$TEST_TMP/pool-logs" 2>/dev/null; }

# flow NAME UPSTREAM [UAS_PORT]: a TLS flow (tls_flow.py); sets FLOW_PORT (its TLS source
# port, the phone's Contact port) and FLOW_LISTEN (where sipp connects over TCP)
flow() {
  local name=$1 up=$2 uas=${3:-0} i
  FLOW_PORT=$(free_port); FLOW_LISTEN=$(free_port)
  bg "$name" python3 "$HERE/tls_flow.py" --upstream "$up" --ca "$POOL_CA" --bind-port "$FLOW_PORT" \
    --listen "$FLOW_LISTEN" --uas "$uas"
  for ((i = 0; i < 50; i++)); do grep -q ready "$TEST_TMP/$name.log" 2>/dev/null && return 0; sleep 0.1; done
  cat "$TEST_TMP/$name.log" >&2
  fail "tls_flow $name did not connect"
}

# reg_inside USER PORT CONTACT_PORT: REGISTER with digest straight at a home server (UDP)
reg_inside() {
  sipp_run "reg-$1" 15 "$2" -sf "$(sed 's/@CODE@/200/' "$DIR_SCEN/register_auth.xml.in" >"$TEST_TMP/reg200.xml"; echo "$TEST_TMP/reg200.xml")" \
    -inf "$(csv "r$1" "$1")" -key domain "$D" -key contact_host 127.0.0.1 -key contact_port "$3" \
    -key expires 300 -key password "$1-secret" -m 1 -i 127.0.0.1 -p "$(free_port)"
}

case "$CASE" in
redirect)
  # sipp (no TLS here, and its digest uri is the address it sends to) follows the 302 by
  # hand: the Contact must name home1's TLS address with maddr=127.0.0.1; alice then
  # registers at that host's home1 (UDP), where her REGISTER is challenged again.
  sipp_run redirect 15 "$POOL_FE_UDP" -sf "$(tmpl register_contact 302 127.0.0.1 "${POOL_HOME1_TLS#*:}")" \
    -inf "$(csv ra alice)" -key domain "$D" -key password alice-secret -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "alice: 401 then 302 to home1 with maddr (see $TEST_TMP/redirect.out)"; }
  reg_inside alice "$POOL_HOME1" "$(free_port)" || fail "alice REGISTER at home1 after the 302"
  pass "inside alice: front-end challenged, 302 to home1 (TLS port, maddr=127.0.0.1); 401 + 200 at home1"
  wait_for 3 has_bindings "$POOL_HOME1_ADMIN" "alice@$D" 1 || fail "alice has no binding on home1"
  [ "$(bindings "$POOL_HOME2_ADMIN" "alice@$D")" = 0 ] || fail "alice has a binding on home2"
  [ "$(metric_of "$POOL_FE_ADMIN" parley_director_redirects_total)" = 1 ] || fail "front-end redirect counter"
  pass "home1 holds alice's binding; the front-end holds none and counted one redirect"
  ;;
outside)
  ALICE_UAS=$(free_port)
  reg_inside alice "$POOL_HOME1" "$ALICE_UAS" || fail "inside alice REGISTER at home1"
  BOB_UAS=$(free_port)
  flow bob-flow "$POOL_EDGE_TLS" "$BOB_UAS"
  BOB_FLOW=$FLOW_PORT; BOB_LISTEN=$FLOW_LISTEN
  sipp_run reg-bob 15 "127.0.0.1:$BOB_LISTEN" -t t1 -auth_uri "$D" -sf "$SCEN/register_tls.xml" -inf "$(csv rb bob)" \
    -key domain "$D" -key password bob-secret -key contact_port "$BOB_FLOW" -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "outside bob: REGISTER through the edge (see $TEST_TMP/reg-bob.out)"; }
  wait_for 3 has_bindings "$POOL_HOME2_ADMIN" "bob@$D" 1 || fail "bob has no binding on home2"
  path=$(curl -fs "$POOL_HOME2_ADMIN/api/registrations?aor=bob@$D" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bindings"][0]["path"])')
  case $path in *"127.0.0.1:$((B + 1))"*"@127.0.0.1:$((B + 41))"*";ob"*) ;; *) fail "bob's path '$path' is not front-end then edge (flow token)";; esac
  pass "outside bob registered through the edge: 401 then 200, binding on home2 with Path fe1, edge1 (flow token)"

  sipp_bg uas-msg -sf "$SCEN/uas_message_noroute.xml" -i 127.0.0.1 -p "$ALICE_UAS" -m 1
  uas=$LAST_PID
  sipp_run msg-bob 15 "127.0.0.1:$BOB_LISTEN" -t t1 -auth_uri "alice@$D" -sf "$SCEN/message_route.xml" -inf "$(csv mb bob alice)" \
    -key domain "$D" -key password bob-secret -key contact_port "$BOB_FLOW" -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "bob's MESSAGE to alice (see $TEST_TMP/msg-bob.out)"; }
  wait "$uas" || fail "alice received the MESSAGE with bob's injected Route, or not at all ($TEST_TMP/uas-msg.out)"
  pass "MESSAGE outside bob -> inside alice: 407 from the pool, then delivered without the injected Route"

  sipp_bg uas-alice -sf "$HS_SCEN/uas_call.xml" -i 127.0.0.1 -p "$ALICE_UAS" -m 1
  uas=$LAST_PID
  sipp_run call-bob 25 "127.0.0.1:$BOB_LISTEN" -t t1 -auth_uri "alice@$D" -sf "$SCEN/uac_call_flow.xml" -inf "$(csv cb bob alice)" \
    -key domain "$D" -key password bob-secret -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "call bob -> alice (see $TEST_TMP/call-bob.out)"; }
  wait "$uas" || fail "alice's side of the call ($TEST_TMP/uas-alice.out)"
  pass "call outside bob (home2) -> inside alice (home1): INVITE, 200, ACK, BYE through the edge"

  sipp_bg uas-bob -t t1 -sf "$SCEN/uas_call_flow.xml" -i 127.0.0.1 -p "$BOB_UAS" -m 1 -key contact_port "$BOB_FLOW"
  uas=$LAST_PID
  sleep 0.3   # the UAS's TCP listener (sipp prints nothing when it is ready)
  # alice uses the front-end as her outbound proxy: it sends her INVITE to bob's home (home2)
  sipp_run call-alice 25 "$POOL_FE_UDP" -sf "$DIR_SCEN/uac_call_auth.xml" -inf "$(csv ca alice bob)" \
    -key domain "$D" -key password alice-secret -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "call alice -> bob (see $TEST_TMP/call-alice.out)"; }
  wait "$uas" || { logs_on_fail; fail "bob's side of the call ($TEST_TMP/uas-bob.out)"; }
  pass "call inside alice (home1) -> outside bob: reached him on his flow, BYE through the edge"
  [ "$(metric_of "$POOL_EDGE_ADMIN" parley_edge_flow_failed_total)" = 0 ] || fail "edge: flow failures"
  ;;
move)
  CAROL_UAS=$(free_port)
  reg_inside carol "$POOL_HOME1" "$CAROL_UAS" || fail "carol REGISTER at home1"
  wait_for 3 has_bindings "$POOL_HOME1_ADMIN" "carol@$D" 1 || fail "carol has no binding on home1"
  "$POOL" add-home home3 3 >"$TEST_TMP/add-home.log" 2>&1 || { cat "$TEST_TMP/add-home.log" >&2; fail "home3"; }
  wait_for 5 bash -c "'$CTL_BIN' --etcd '$POOL_ETCD' server list | grep -q '^home3 '" ||
    fail "home3 not announced"
  ctl user move "carol@$D" --home home3 >/dev/null || fail "parleyctl user move"
  wait_for 5 has_bindings "$POOL_HOME1_ADMIN" "carol@$D" 0 || fail "home1 kept carol's binding"
  pass "carol moved to home3 (started during the test): home1 dropped her binding"
  sipp_run moved-home1 15 "$POOL_HOME1" -sf "$(tmpl register_contact 301 127.0.0.1 $((B + 31)))" -inf "$(csv mc carol)" \
    -key domain "$D" -key password carol-secret \
    -m 1 -i 127.0.0.1 -p "$(free_port)" || { logs_on_fail; fail "home1 did not 301 carol to home3 ($TEST_TMP/moved-home1.out)"; }
  pass "carol's next REGISTER at home1: 301 to home3 (maddr=127.0.0.1, its TLS port)"
  sipp_run moved-fe 15 "$POOL_FE_UDP" -sf "$(tmpl register_contact 302 127.0.0.1 $((B + 31)))" -inf "$(csv mf carol)" \
    -key domain "$D" -key password carol-secret \
    -m 1 -i 127.0.0.1 -p "$(free_port)" || { logs_on_fail; fail "front-end did not 302 carol to home3 ($TEST_TMP/moved-fe.out)"; }
  pass "the front-end now 302s carol to home3"
  ;;
*)
  fail "unknown case $CASE"
  ;;
esac
