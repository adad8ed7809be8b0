#!/usr/bin/env bash
# End-to-end test of the pool with each server in its own network namespace
# (POOL_NETNS=1 deploy/local/pool): real, distinct addresses on a bridge NET.0/24 that
# this test picks (10.77.X, free on this host, claimed against concurrent runs).
#   NET.1 bridge, etcd and inside alice (sipp in the root namespace); home1 NET.11,
#   home2 .12, fe1 .21, edge1 .31; outside bob in his own namespace <prefix>-out at .100.
# Asserts:
#   a) alice REGISTERs at fe1: 401, then 302 whose Contact names home1's address in host
#      and maddr; she registers there with digest: 200, binding on home1 with her address
#   b) bob, over TLS to the edge from his namespace (tls_flow.py there), registers: binding
#      on home2 with Path fe1 then the edge's inside address; his MESSAGE reaches alice
#   c) the edge's established TCP connections have peers only among the front-end, etcd
#      (NET.1 at its client port) and bob: it talks to no other internal address
# Skips (exit 77) when not root or network namespaces/veths/bridges are unavailable.
# Everything it creates (pool, namespaces, veths, bridge, processes) is removed on exit.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCEN=$HERE/scenarios
DIR_SCEN=$ROOT/tests/integration/homeserver_dir/scenarios

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
command -v ip >/dev/null 2>&1 || skip "needs iproute2 (ip)"
# probe, inside a throwaway namespace: namespaces, veth pairs and bridges work
probe=pnprobe$$
ip netns add "$probe" 2>/dev/null || skip "'ip netns add' fails here (no network namespaces)"
probe_ok=0
ip -n "$probe" link add pa type veth peer name pb 2>/dev/null &&
  ip -n "$probe" link add pbr type bridge 2>/dev/null && probe_ok=1
ip netns del "$probe"
[ "$probe_ok" = 1 ] || skip "veth pairs or bridges unavailable"

source "$ROOT/tests/lib/common.sh"
source "$ROOT/tests/lib/sipp.sh"
: "${PARLEY_BUILD:?PARLEY_BUILD must point at a build directory}"

# A free 10.77.X.0/24: no address or route of this host in it, no namespace or link of
# its prefix, and our claim (a directory holding our pid) made atomically with mkdir.
CLAIMS=/tmp/parley-netns-claims
mkdir -p "$CLAIMS"
CLAIM=
for ((try = 0; try < 60; try++)); do
  x=$((RANDOM % 200 + 50))
  NET=10.77.$x; NSP=pn$x
  ip -o -4 addr show | grep -q " inet $NET\." && continue
  ip -4 route show | grep -q "^$NET\." && continue
  compgen -G "/run/netns/$NSP-*" >/dev/null && continue
  ip link show "$NSP-br" >/dev/null 2>&1 && continue
  if ! mkdir "$CLAIMS/$x" 2>/dev/null; then
    # a claim left by a run that was killed: its pid is gone
    p=$(cat "$CLAIMS/$x/pid" 2>/dev/null)
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && continue
    rm -rf "${CLAIMS:?}/$x"
    mkdir "$CLAIMS/$x" 2>/dev/null || continue
  fi
  echo $$ >"$CLAIMS/$x/pid"
  CLAIM=$CLAIMS/$x
  break
done
[ -n "$CLAIM" ] || { echo "no free 10.77.X.0/24 subnet" >&2; exit 1; }
GW=$NET.1; BOB_ADDR=$NET.100; OUT=$NSP-out; OUT_VETH=$NSP-o

export PARLEY_BUILD ${HS_BIN+HS_BIN} ${FE_BIN+FE_BIN} ${EDGE_BIN+EDGE_BIN} ${CTL_BIN+CTL_BIN} \
  POOL_DIR=$TEST_TMP/pool POOL_QUIET=1 POOL_NETNS=1 POOL_NETNS_PREFIX=$NSP POOL_NETNS_NET=$NET
POOL_BASE=$(pool_base 0.0.0.0)
export POOL_BASE
POOL=$ROOT/deploy/local/pool

OUT_MADE=
teardown() {
  "$POOL" down >/dev/null 2>&1
  ip link show "$OUT_VETH" >/dev/null 2>&1 && ip link del "$OUT_VETH"
  [ -n "$OUT_MADE" ] && [ -e "/run/netns/$OUT" ] && ip netns del "$OUT"
  rm -rf "$CLAIM"
  cleanup_all
}
trap teardown EXIT
# bounded: the whole test well under ctest's TIMEOUT (SIGALRM -> exit -> teardown)
( trap 'kill "$s" 2>/dev/null; exit 0' TERM; sleep 110 & s=$!; wait "$s" && kill -ALRM $$ 2>/dev/null ) &
WATCHDOG=$!
PARLEY_PIDS+=("$WATCHDOG")
trap 'fail "timed out after 110 s"' ALRM

t0=$SECONDS
"$POOL" up >"$TEST_TMP/pool-up.log" 2>&1 || { cat "$TEST_TMP/pool-up.log" >&2; fail "pool up (POOL_NETNS=1)"; }
eval "$("$POOL" env)"
D=$POOL_DOMAIN
B=$POOL_BASE
FE_ADDR=${POOL_FE_UDP%:*}; H1_ADDR=${POOL_HOME1%:*}; H2_ADDR=${POOL_HOME2%:*}; EDGE_ADDR=${POOL_EDGE_TLS%:*}
[ "$FE_ADDR $H1_ADDR $H2_ADDR $EDGE_ADDR" = "$NET.21 $NET.11 $NET.12 $NET.31" ] ||
  fail "pool env names '$FE_ADDR $H1_ADDR $H2_ADDR $EDGE_ADDR', not the namespaces' addresses"
for m in home1 home2 fe1 edge1; do
  ip netns exec "$NSP-$m" ip -o -4 addr show dev eth0 | grep -q " inet $NET\." || fail "namespace $NSP-$m has no address"
done
pass "pool up in namespaces (${NSP}-*): fe1 $FE_ADDR, home1 $H1_ADDR, home2 $H2_ADDR, edge1 $EDGE_ADDR, etcd $POOL_ETCD ($((SECONDS - t0)) s)"

# bob's namespace: his own veth on the pool's bridge
ip netns add "$OUT" || fail "ip netns add $OUT"
OUT_MADE=1
{ ip link add "$OUT_VETH" type veth peer name eth0 netns "$OUT" &&
  ip link set "$OUT_VETH" master "$POOL_NETNS_BRIDGE" && ip link set "$OUT_VETH" up &&
  ip -n "$OUT" link set lo up && ip -n "$OUT" addr add "$BOB_ADDR/24" dev eth0 &&
  ip -n "$OUT" link set eth0 up && ip -n "$OUT" route add default via "$GW"; } || fail "bob's namespace $OUT"

csv() { printf 'SEQUENTIAL\n%s;%s;\n' "$2" "${3:-}" >"$TEST_TMP/$1.csv"; echo "$TEST_TMP/$1.csv"; }
wait_for() { local t=$1 i; shift; for ((i = 0; i < t * 10; i++)); do "$@" && return 0; sleep 0.1; done; return 1; }
bindings() {  # bindings ADMIN AOR: number of bindings
  curl -fs --max-time 2 "$1/api/registrations?aor=$2" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["bindings"]))'
}
has_bindings() { [ "$(bindings "$1" "$2")" = "$3" ]; }
binding_field() {  # binding_field ADMIN AOR FIELD: of the first binding
  curl -fs --max-time 2 "$1/api/registrations?aor=$2" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["bindings"][0][sys.argv[1]])' "$3"
}
logs_on_fail() {
  cp -r "$POOL_DIR/logs" "$TEST_TMP/pool-logs" 2>/dev/null
  return 0
}
# sipp_run_ns NS NAME TIMEOUT ARGS...: sipp_run inside namespace NS
sipp_run_ns() {
  local ns=$1 name=$2 t=$3; shift 3
  ( cd "$TEST_TMP" && timeout "$((t + 5))" ip netns exec "$ns" sipp -nostdin -timeout "${t}s" -timeout_error \
      -trace_err -error_file "$TEST_TMP/${name}_errors.log" -recv_timeout 10000 "$@" ) \
      >"$TEST_TMP/$name.out" 2>&1
}

# a) inside alice (root namespace, source NET.1) at fe1: 401, then 302 to home1. The
# scenario's Contact check is made strict: host and maddr are both home1's address.
H1_RE=${H1_ADDR//./\\.}
sed -e 's/sip:\[^&gt;\]\*:(@PORT@)/sip:@HOSTRE@:(@PORT@)/' -e 's/maddr=(@HOST@)/maddr=(@HOSTRE@)/' \
  -e "s/@HOSTRE@/${H1_RE//\\/\\\\}/g" -e "s/@CODE@/302/g" -e "s/@PORT@/$((B + 11))/g" \
  "$SCEN/register_contact.xml.in" >"$TEST_TMP/redirect.xml"
[ "$(grep -cF "sip:$H1_RE:($((B + 11)));transport=tls;maddr=($H1_RE)" "$TEST_TMP/redirect.xml")" = 1 ] ||
  fail "could not make the strict 302 scenario from register_contact.xml.in"
sipp_run redirect 15 "$POOL_FE_UDP" -sf "$TEST_TMP/redirect.xml" -inf "$(csv ra alice)" \
  -key domain "$D" -key password alice-secret -m 1 -i "$GW" -p "$(free_port)" ||
  { logs_on_fail; fail "alice: 401 then 302 to home1 $H1_ADDR (see $TEST_TMP/redirect.out)"; }
ALICE_UAS=$(free_port)
sed 's/@CODE@/200/' "$DIR_SCEN/register_auth.xml.in" >"$TEST_TMP/reg200.xml"
sipp_run reg-alice 15 "$POOL_HOME1" -sf "$TEST_TMP/reg200.xml" -inf "$(csv r alice)" -key domain "$D" \
  -key contact_host "$GW" -key contact_port "$ALICE_UAS" -key expires 300 -key password alice-secret \
  -m 1 -i "$GW" -p "$(free_port)" || { logs_on_fail; fail "alice's REGISTER at home1 $POOL_HOME1 after the 302 ($TEST_TMP/reg-alice.out)"; }
wait_for 3 has_bindings "$POOL_HOME1_ADMIN" "alice@$D" 1 || fail "alice has no binding on home1"
[ "$(bindings "$POOL_HOME2_ADMIN" "alice@$D")" = 0 ] || fail "alice has a binding on home2"
c=$(binding_field "$POOL_HOME1_ADMIN" "alice@$D" contact)
case $c in *"$GW:$ALICE_UAS"*) ;; *) fail "alice's binding '$c' does not name her address $GW:$ALICE_UAS";; esac
pass "inside alice ($GW): fe1 challenged, 302 Contact <sip:$H1_ADDR:$((B + 11));transport=tls;maddr=$H1_ADDR>; 401 + 200 at home1, binding $c"

# b) outside bob from his namespace, TLS to the edge; his flow leaves from his own address
# (tls_flow.py --bind-host)
BOB_FLOW=$(free_port); BOB_LISTEN=$(free_port)
bg bob-flow ip netns exec "$OUT" python3 "$HERE/tls_flow.py" --bind-host "$BOB_ADDR" --upstream "$POOL_EDGE_TLS" --ca "$POOL_CA" \
  --bind-port "$BOB_FLOW" --listen "$BOB_LISTEN" --uas 0
wait_for 5 grep -q ready "$TEST_TMP/bob-flow.log" || { cat "$TEST_TMP/bob-flow.log" >&2; fail "bob's TLS flow to the edge $POOL_EDGE_TLS"; }
sipp_run_ns "$OUT" reg-bob 15 "127.0.0.1:$BOB_LISTEN" -t t1 -auth_uri "$D" -sf "$SCEN/register_tls.xml" -inf "$(csv rb bob)" \
  -key domain "$D" -key password bob-secret -key contact_port "$BOB_FLOW" -m 1 -i 127.0.0.1 -p "$(free_port)" ||
  { logs_on_fail; fail "outside bob: REGISTER through the edge (see $TEST_TMP/reg-bob.out)"; }
wait_for 3 has_bindings "$POOL_HOME2_ADMIN" "bob@$D" 1 || fail "bob has no binding on home2"
path=$(binding_field "$POOL_HOME2_ADMIN" "bob@$D" path)
case $path in
  *"$FE_ADDR:$((B + 1))"*"@$EDGE_ADDR:$((B + 41))"*";ob"*) ;;
  *) fail "bob's Path '$path' is not fe1 ($FE_ADDR) then the edge's inside address ($EDGE_ADDR)" ;;
esac
pass "outside bob ($BOB_ADDR, namespace $OUT) registered over TLS through the edge: binding on home2, Path $path"

sipp_bg uas-msg -sf "$SCEN/uas_message_noroute.xml" -i "$GW" -p "$ALICE_UAS" -m 1
uas=$LAST_PID
sipp_run_ns "$OUT" msg-bob 15 "127.0.0.1:$BOB_LISTEN" -t t1 -auth_uri "alice@$D" -sf "$SCEN/message_route.xml" -inf "$(csv mb bob alice)" \
  -key domain "$D" -key password bob-secret -key contact_port "$BOB_FLOW" -m 1 -i 127.0.0.1 -p "$(free_port)" ||
  { logs_on_fail; fail "bob's MESSAGE to alice (see $TEST_TMP/msg-bob.out)"; }
wait "$uas" || fail "alice did not receive bob's MESSAGE (or with his injected Route): $TEST_TMP/uas-msg.out"
pass "MESSAGE outside bob -> inside alice: delivered at $GW:$ALICE_UAS (without the injected Route)"

# c) whom the edge talks to: established TCP peers in its namespace
ip netns exec "$NSP-edge1" ss -Htn state established >"$TEST_TMP/edge-conns.txt" || fail "ss in $NSP-edge1"
python3 - "$TEST_TMP/edge-conns.txt" "$FE_ADDR" "$GW:$((B + 50))" "$BOB_ADDR" <<'PY' || fail "the edge talks to an address it should not (see $TEST_TMP/edge-conns.txt)"
import sys
f, fe, etcd, bob = sys.argv[1:]
seen = {"front-end": 0, "etcd": 0, "bob": 0}
for line in open(f):
    cols = line.split()
    if len(cols) < 4:
        continue
    peer = cols[3]
    host = peer.rsplit(":", 1)[0]
    if host == fe:
        seen["front-end"] += 1
    elif peer == etcd:
        seen["etcd"] += 1
    elif host == bob:
        seen["bob"] += 1
    else:
        sys.exit("edge connection to %s (local %s): not a front-end, etcd or bob" % (peer, cols[2]))
missing = [k for k, n in seen.items() if n == 0]
if missing:
    sys.exit("expected connections missing: %s (%s)" % (missing, seen))
print("edge peers: %s" % seen)
PY
pass "the edge's TCP peers are only the front-end ($FE_ADDR), etcd ($GW:$((B + 50))) and bob ($BOB_ADDR): $(wc -l <"$TEST_TMP/edge-conns.txt") connections"
pass "total $((SECONDS - t0)) s"
