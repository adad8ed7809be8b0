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
#             alice calls bob (INVITE reaches him on his flow, BYE passes the edge); bob calls
#             alice and she hangs up; what bob sees carries one Record-Route, the edge's outside
#             entry with the sealed route set ("th"): no internal address but in Via
#   homes     home servers route to each other: inside alice (home1) and bob (home2), each
#             registered at their home server; alice's MESSAGE and call to bob go from home1
#             straight to home2 over MTLS (home1 counts a request routed to another home;
#             the front-end's counters do not move), BYE passes; then bob calls alice
#   failover  a pool with two front-ends (POOL_FRONTENDS=2): outside bob registers through
#             the edge (fe1 carries it); fe1 is killed with SIGKILL; the edge's probes mark
#             it down within its timers and bob's next REGISTER and MESSAGE pass through fe2;
#             fe1 restarted: the edge takes it back (first in its list)
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
export POOL_BASE=$(pool_base)
[ "$CASE" = failover ] && export POOL_FRONTENDS=2
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
logs_on_fail() {  # the servers' logs and /metrics, kept for the failure report
  local n u
  cp -r "$POOL_DIR/logs" "$TEST_TMP/pool-logs" 2>/dev/null
  for n in FE HOME1 HOME2 EDGE FE2; do
    u=POOL_${n}_ADMIN
    [ -n "${!u:-}" ] && curl -fs --max-time 2 "${!u}/metrics" >"$TEST_TMP/pool-logs/$n.metrics" 2>/dev/null
  done
  return 0
}

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

  # hidden TRACE: every Record-Route an outside party saw is one entry, the edge's outside
  # address with the sealed "th" parameter; every request it received carries only Vias
  # naming the edge's outside address (the edge's own, then the sealed list, "th"); and no
  # line names a server inside (front-end, home servers, the edge's inside listener): not
  # in Via, Route, Contact, nor the inside caller's Proxy-Authorization (the edge removes it)
  hidden() {
    python3 - "$1" "$B" <<'PY'
import re, sys
f, b = sys.argv[1], int(sys.argv[2])
edge = "127.0.0.1:%d" % (b + 40)
inside = [b, b + 1, b + 10, b + 11, b + 20, b + 21, b + 41]
n = nreq = 0
# sipp -trace_msg: blocks after a "----...----- <time>" line, "... message received/sent ..."
for block in re.split(r"(?m)^-{10,}.*$", open(f, errors="replace").read()):
    lines = block.strip("\n").split("\n")
    if len(lines) < 3:
        continue
    received = "received" in lines[0]
    msg = [l.rstrip("\r") for l in lines[1:] if l.strip() or True]
    while msg and not msg[0].strip():
        msg.pop(0)
    if not msg:
        continue
    request = not msg[0].startswith("SIP/2.0")
    vias = []
    for line in msg:
        for p in inside:
            if re.search(r"127\.0\.0\.1:%d\b" % p, line):
                sys.exit("internal address in: " + line.strip())
        if re.match(r"(?i)^record-route:", line):
            uris = re.findall(r"<([^>]*)>", line)
            if len(uris) != 1 or edge not in uris[0] or ";th=" not in uris[0]:
                sys.exit("not hidden: " + line.strip())
            n += 1
        if re.match(r"(?i)^(via|v):", line):
            vias += [v.strip() for v in line.split(":", 1)[1].split(",")]
    if received and request and not msg[0].startswith("ACK "):
        nreq += 1
        if len(vias) != 2 or any(not re.match(r"SIP/2\.0/\w+ %s;" % re.escape(edge), v) for v in vias) \
                or ";th=" not in vias[1]:
            sys.exit("Via not hidden in %s: %s" % (msg[0], vias))
    if received and request and msg[0].startswith("ACK ") and len(vias) != 2:
        sys.exit("ACK Via not hidden: %s" % vias)
if n == 0:
    sys.exit("no Record-Route seen")
print("%d Record-Route lines, %d requests from the pool checked" % (n, nreq))
PY
  }
  sipp_bg uas-alice -sf "$HS_SCEN/uas_call.xml" -i 127.0.0.1 -p "$ALICE_UAS" -m 1
  uas=$LAST_PID
  sipp_run call-bob 25 "127.0.0.1:$BOB_LISTEN" -t t1 -auth_uri "alice@$D" -sf "$SCEN/uac_call_flow.xml" -inf "$(csv cb bob alice)" \
    -key domain "$D" -key password bob-secret -m 1 -i 127.0.0.1 -p "$(free_port)" -trace_msg -message_file "$TEST_TMP/bob-uac.log" ||
    { logs_on_fail; fail "call bob -> alice (see $TEST_TMP/call-bob.out)"; }
  wait "$uas" || fail "alice's side of the call ($TEST_TMP/uas-alice.out)"
  pass "call outside bob (home2) -> inside alice (home1): INVITE, 200, ACK, BYE through the edge"
  hidden "$TEST_TMP/bob-uac.log" || fail "outside bob saw the pool's topology ($TEST_TMP/bob-uac.log)"
  n200=$(grep -c '^CSeq: 2 INVITE' <(awk '/^SIP\/2.0 200/ { on = 1 } on && /^CSeq:/ { print; on = 0 }' "$TEST_TMP/bob-uac.log"))
  [ "$n200" -ge 2 ] || fail "bob got $n200 200 OK to his INVITE: alice's retransmissions did not reach him"
  pass "topology hiding: bob's 180/200 (also $((n200 - 1)) retransmitted 200, forwarded statelessly) carry one Record-Route, the edge's outside entry (th=), his BYE's Route too"

  sipp_bg uas-alice-bye -sf "$SCEN/uas_call_hangup.xml" -i 127.0.0.1 -p "$ALICE_UAS" -m 1 -auth_uri "$POOL_HOME1" \
    -key me alice -key peer bob -key domain "$D" -key password alice-secret
  uas=$LAST_PID
  sipp_run call-bob2 25 "127.0.0.1:$BOB_LISTEN" -t t1 -auth_uri "alice@$D" -sf "$SCEN/uac_call_hangup.xml" -inf "$(csv cb2 bob alice)" \
    -key domain "$D" -key password bob-secret -m 1 -i 127.0.0.1 -p "$(free_port)" -trace_msg -message_file "$TEST_TMP/bob-uac2.log" ||
    { logs_on_fail; fail "call bob -> alice, alice hangs up (see $TEST_TMP/call-bob2.out)"; }
  wait "$uas" || { logs_on_fail; fail "alice's hang-up ($TEST_TMP/uas-alice-bye.out)"; }
  hidden "$TEST_TMP/bob-uac2.log" || fail "outside bob saw the pool's topology ($TEST_TMP/bob-uac2.log)"
  pass "call outside bob -> inside alice, alice hangs up: her BYE (along the full route set) reaches bob through the edge"

  sipp_bg uas-bob -t t1 -sf "$SCEN/uas_call_flow.xml" -i 127.0.0.1 -p "$BOB_UAS" -m 1 -key contact_port "$BOB_FLOW" \
    -trace_msg -message_file "$TEST_TMP/bob-uas.log"
  uas=$LAST_PID
  # the UAS's TCP listener (sipp prints nothing when it is ready; slow under load)
  wait_for 5 bash -c "ss -Hltn 'sport = :$BOB_UAS' | grep -q ." || fail "bob's UAS does not listen"
  # alice uses the front-end as her outbound proxy: it sends her INVITE to bob's home (home2)
  sipp_run call-alice 25 "$POOL_FE_UDP" -sf "$DIR_SCEN/uac_call_auth.xml" -inf "$(csv ca alice bob)" \
    -key domain "$D" -key password alice-secret -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "call alice -> bob (see $TEST_TMP/call-alice.out)"; }
  wait "$uas" || { logs_on_fail; fail "bob's side of the call ($TEST_TMP/uas-bob.out)"; }
  pass "call inside alice (home1) -> outside bob: reached him on his flow, BYE through the edge"
  hidden "$TEST_TMP/bob-uas.log" || fail "outside bob saw the pool's topology ($TEST_TMP/bob-uas.log)"
  pass "topology hiding: the INVITE bob got carries one Record-Route (the edge's, th=); the pool still routed alice's BYE"
  [ "$(metric_of "$POOL_EDGE_ADMIN" parley_edge_flow_failed_total)" = 0 ] || fail "edge: flow failures"
  ;;
homes)
  ALICE_UAS=$(free_port); BOB_UAS=$(free_port)
  reg_inside alice "$POOL_HOME1" "$ALICE_UAS" || fail "alice REGISTER at home1"
  reg_inside bob "$POOL_HOME2" "$BOB_UAS" || fail "bob REGISTER at home2"
  wait_for 3 has_bindings "$POOL_HOME2_ADMIN" "bob@$D" 1 || fail "bob has no binding on home2"
  fe_count() {  # what the front-end directed or forwarded (the edge's OPTIONS probes aside)
    curl -fs --max-time 2 "$POOL_FE_ADMIN/metrics" | awk '/^parley_director_/ || /^parley_proxy_forwarded_total / { print }'
  }
  fe_before=$(fe_count)
  routed() { metric_of "$1" parley_homeserver_routed_home_total; }

  # via_path FILE: the Via hosts:ports of the first request in a sipp message trace, top first
  via_path() { awk '/^Via:/ { sub(/^Via: *SIP\/2\.0\/[A-Z]+ */, ""); sub(/;.*/, ""); printf "%s ", $0 } /^$/ && n++ { exit }' "$1"; }
  # came_direct FILE FROM_TLS TO: the request passed home FROM (its TLS side towards the
  # other home) and nothing of the front-end's
  came_direct() {
    local p; p=$(via_path "$1")
    case " $p" in *" 127.0.0.1:$2 "*) ;; *) echo "Via path '$p' lacks $2" >&2; return 1;; esac
    case " $p" in *":$B "*|*":$((B + 1)) "*) echo "Via path '$p' passes the front-end" >&2; return 1;; esac
  }
  sipp_bg uas-msg-bob -sf "$SCEN/uas_message.xml" -i 127.0.0.1 -p "$BOB_UAS" -m 1 -trace_msg -message_file "$TEST_TMP/bob-msg.log"
  uas=$LAST_PID
  sipp_run msg-alice 15 "$POOL_HOME1" -sf "$(sed 's/@CODE@/200/' "$DIR_SCEN/message_auth.xml.in" >"$TEST_TMP/msg200.xml"; echo "$TEST_TMP/msg200.xml")" \
    -inf "$(csv ma alice bob)" -key domain "$D" -key password alice-secret -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "alice's MESSAGE to bob through home1 (see $TEST_TMP/msg-alice.out)"; }
  wait "$uas" || fail "bob did not receive alice's MESSAGE ($TEST_TMP/uas-msg-bob.out)"
  [ "$(routed "$POOL_HOME1_ADMIN")" = 1 ] || fail "home1 did not route the MESSAGE to home2 itself"
  came_direct "$TEST_TMP/bob-msg.log" $((B + 11)) || fail "bob's MESSAGE did not come home1 (TLS) -> home2"
  pass "MESSAGE alice (home1) -> bob (home2): home1 proxied it straight to home2"

  sipp_bg uas-bob -sf "$HS_SCEN/uas_call.xml" -i 127.0.0.1 -p "$BOB_UAS" -m 1 -trace_msg -message_file "$TEST_TMP/bob-call.log"
  uas=$LAST_PID
  sipp_run call-alice 25 "$POOL_HOME1" -sf "$DIR_SCEN/uac_call_auth.xml" -inf "$(csv ca alice bob)" \
    -key domain "$D" -key password alice-secret -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "call alice -> bob through home1 (see $TEST_TMP/call-alice.out)"; }
  wait "$uas" || { logs_on_fail; fail "bob's side of the call ($TEST_TMP/uas-bob.out)"; }
  [ "$(routed "$POOL_HOME1_ADMIN")" = 2 ] || fail "home1 did not route the INVITE to home2 itself"
  came_direct "$TEST_TMP/bob-call.log" $((B + 11)) || fail "bob's INVITE did not come home1 (TLS) -> home2"
  pass "call alice (home1) -> bob (home2): INVITE home1 -> home2 directly, 200, ACK, BYE"

  sipp_bg uas-alice -sf "$HS_SCEN/uas_call.xml" -i 127.0.0.1 -p "$ALICE_UAS" -m 1 -trace_msg -message_file "$TEST_TMP/alice-call.log"
  uas=$LAST_PID
  sipp_run call-bob 25 "$POOL_HOME2" -sf "$DIR_SCEN/uac_call_auth.xml" -inf "$(csv cb bob alice)" \
    -key domain "$D" -key password bob-secret -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "call bob -> alice through home2 (see $TEST_TMP/call-bob.out)"; }
  wait "$uas" || { logs_on_fail; fail "alice's side of the call ($TEST_TMP/uas-alice.out)"; }
  [ "$(routed "$POOL_HOME2_ADMIN")" = 1 ] || fail "home2 did not route the INVITE to home1 itself"
  came_direct "$TEST_TMP/alice-call.log" $((B + 21)) || fail "alice's INVITE did not come home2 (TLS) -> home1"
  pass "call bob (home2) -> alice (home1): INVITE home2 -> home1 directly, BYE passes"
  [ "$(fe_count)" = "$fe_before" ] || fail "the front-end saw traffic between the home servers: $(fe_count)"
  pass "the front-end's counters did not move (no request went through it)"
  ;;
failover)
  ALICE_UAS=$(free_port)
  reg_inside alice "$POOL_HOME1" "$ALICE_UAS" || fail "inside alice REGISTER at home1"
  flow bob-flow "$POOL_EDGE_TLS" 0
  BOB_FLOW=$FLOW_PORT; BOB_LISTEN=$FLOW_LISTEN
  reg_bob() {
    sipp_run "$1" 15 "127.0.0.1:$BOB_LISTEN" -t t1 -auth_uri "$D" -sf "$SCEN/register_tls.xml" -inf "$(csv rb bob)" \
      -key domain "$D" -key password bob-secret -key contact_port "$BOB_FLOW" -m 1 -i 127.0.0.1 -p "$(free_port)"
  }
  from_edge() { metric_of "$1" parley_director_from_edge_total; }
  edge_up() { [ "$(metric_of "$POOL_EDGE_ADMIN" parley_edge_frontends_up)" = "$1" ]; }
  bob_path() {
    curl -fs "$POOL_HOME2_ADMIN/api/registrations?aor=bob@$D" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bindings"][0]["path"])'
  }
  wait_for 5 edge_up 2 || fail "the edge does not see both front-ends up"
  reg_bob reg-1 || { logs_on_fail; fail "bob's REGISTER through the edge (see $TEST_TMP/reg-1.out)"; }
  if [ "$(from_edge "$POOL_FE_ADMIN")" -lt 1 ] || [ "$(from_edge "$POOL_FE2_ADMIN")" != 0 ]; then
    fail "fe1 should carry the edge's requests while it is up"
  fi
  case $(bob_path) in *"127.0.0.1:$((B + 1))"*) ;; *) fail "bob's path '$(bob_path)' does not name fe1";; esac
  pass "two front-ends: bob registered through the edge and fe1 (first in the edge's list)"

  t0=$(date +%s.%N)
  kill -KILL "$(cat "$POOL_DIR/run/fe1.pid")" || fail "kill fe1"
  wait_for 10 edge_up 1 || { logs_on_fail; fail "the edge did not mark fe1 down"; }
  dt=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$(date +%s.%N)")
  pass "fe1 killed (SIGKILL): the edge marked it down after ${dt}s (probe interval 1s)"
  reg_bob reg-2 || { logs_on_fail; fail "bob's REGISTER after fe1 died (see $TEST_TMP/reg-2.out)"; }
  [ "$(from_edge "$POOL_FE2_ADMIN")" -ge 1 ] || fail "fe2 did not carry bob's REGISTER"
  case $(bob_path) in *"127.0.0.1:$((B + 3))"*) ;; *) fail "bob's path '$(bob_path)' does not name fe2";; esac
  sipp_bg uas-msg -sf "$SCEN/uas_message_noroute.xml" -i 127.0.0.1 -p "$ALICE_UAS" -m 1
  uas=$LAST_PID
  sipp_run msg-bob 15 "127.0.0.1:$BOB_LISTEN" -t t1 -auth_uri "alice@$D" -sf "$SCEN/message_route.xml" -inf "$(csv mb bob alice)" \
    -key domain "$D" -key password bob-secret -key contact_port "$BOB_FLOW" -m 1 -i 127.0.0.1 -p "$(free_port)" ||
    { logs_on_fail; fail "bob's MESSAGE to alice after fe1 died (see $TEST_TMP/msg-bob.out)"; }
  wait "$uas" || fail "alice did not receive bob's MESSAGE ($TEST_TMP/uas-msg.out)"
  pass "after the fail-over: bob's REGISTER (path now fe2) and MESSAGE to alice pass through fe2"

  "$POOL" start fe1 >"$TEST_TMP/start-fe1.log" 2>&1 || { cat "$TEST_TMP/start-fe1.log" >&2; fail "restart fe1"; }
  wait_for 10 edge_up 2 || { logs_on_fail; fail "the edge did not take fe1 back"; }
  reg_bob reg-3 || { logs_on_fail; fail "bob's REGISTER after fe1 came back (see $TEST_TMP/reg-3.out)"; }
  [ "$(from_edge "$POOL_FE_ADMIN")" -ge 1 ] || fail "the restarted fe1 did not carry bob's REGISTER"
  pass "fe1 restarted: the edge probes it up again and sends through it first"
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
