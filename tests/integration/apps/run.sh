#!/usr/bin/env bash
# Integration tests of the home server's application chain (shared/apps, homeserver/apps)
# with sipp as the peers.   usage: run.sh CASE   (HS_BIN = path of parley-homeserver)
# Cases: epid, fork, after_hours, content_filter, strict, bad_manifest, reload,
#        pool_order (needs CTL_BIN = parleyctl and etcd: `parleyctl app order/show/reload`)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SCEN=$HERE/scenarios
HS_SCEN=$HERE/../homeserver/scenarios
APPS=$HERE/../../../homeserver/apps
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/homeserver.sh"
source "$HERE/../../lib/sipp.sh"
: "${HS_BIN:?HS_BIN must point at parley-homeserver}"
CASE=${1:?case}

UAS_PORT=$(free_port)
UAS2_PORT=$(free_port)

# register USER PORT: one binding of USER0@example.com with contact port PORT
register() {
  make_users "$TEST_TMP/$1.csv" "$1" 1
  sipp_run "reg-$1-$2" 10 "127.0.0.1:$HS_PORT" -sf "$HS_SCEN/register.xml" -inf "$TEST_TMP/$1.csv" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$2" -key contact_transport udp \
    -key expires 3600 -m 1 -i 127.0.0.1 -p "$(free_port)" || fail "register $1 at port $2"
}

# chain FILE MANIFEST...: a chain file listing the manifests (absolute paths)
chain() {
  local f=$1; shift
  printf '%s\n' "$@" > "$f"
}

# a UDP socket that records whatever reaches PORT into FILE (must stay empty)
silent_listener() {
  python3 -c "
import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',$1)); s.settimeout(0.2)
end=time.time()+30
with open('$2','wb') as f:
    while time.time()<end:
        try: d=s.recv(65535); f.write(d); f.flush()
        except socket.timeout: pass
" &
  PARLEY_PIDS+=($!)
}

msg() {  # msg NAME USER BODY EXPECT [ROUTE-LINE]
  sipp_run "$1" 10 "127.0.0.1:$HS_PORT" -sf "$SCEN/message_body.xml" -inf "$TEST_TMP/$2.csv" \
    -key domain example.com -key body "$3" -key route "${5:-X-No-Route: 1}" -i 127.0.0.1 -p "$(free_port)" -m 1
  local rc=$? got
  [ $rc = 0 ] || { echo "sipp: $(sipp_summary "$1")"; return 1; }
  # message_body.xml ends the call on 403 or 200: tell them apart by the screen counters
  if grep -E "^ *403 +<-+ +[1-9]" -q "$TEST_TMP/$1.out"; then got=403; else got=200; fi
  [ "$got" = "$4" ] || { echo "got $got, expected $4"; return 1; }
}

case "$CASE" in
epid)
  # two contacts of carol0; To;epid=<epid of the second> -> only the second rings
  hs_start
  register carol "$UAS_PORT"
  register carol "$UAS2_PORT"
  [ "$(binding_count carol0@example.com)" = 2 ] || fail "carol0 should have two bindings"
  epid=$(registrations carol0@example.com | python3 -c "
import json,sys
for b in json.load(sys.stdin)['bindings']:
    if ':$UAS2_PORT;' in b['contact'] or b['contact'].endswith(':$UAS2_PORT'): print(b['epid'])")
  [ -n "$epid" ] || fail "no epid for the second contact: $(registrations carol0@example.com)"
  silent_listener "$UAS_PORT" "$TEST_TMP/first.bin"
  sipp_bg second -sf "$HS_SCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS2_PORT" -m 1
  b=$LAST_PID
  sleep 0.2
  sipp_run uac 20 "127.0.0.1:$HS_PORT" -sf "$SCEN/uac_call_epid.xml" -inf "$TEST_TMP/carol.csv" \
    -key domain example.com -key epid "$epid" -i 127.0.0.1 -p "$(free_port)" -m 1 \
    || fail "call to To;epid=$epid: $(sipp_summary uac)"
  wait "$b" || fail "the second endpoint did not get the call: $(tail -20 "$TEST_TMP/second.out")"
  [ ! -s "$TEST_TMP/first.bin" ] || fail "the first endpoint got traffic: $(head -c 300 "$TEST_TMP/first.bin")"
  pass "To;epid=$epid pinned the call to the second of two endpoints"
  ;;
fork)
  # routing.am: two endpoints tie (same availability/activity, both just registered) -> both ring
  hs_start --app-chain "$APPS/chain.conf"
  register dave "$UAS_PORT"
  register dave "$UAS2_PORT"
  sipp_bg answer -sf "$HS_SCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  a=$LAST_PID
  sipp_bg ringer -sf "$HS_SCEN/uas_cancel.xml" -i 127.0.0.1 -p "$UAS2_PORT" -m 1
  b=$LAST_PID
  sleep 0.2
  sipp_run uac 20 "127.0.0.1:$HS_PORT" -sf "$HS_SCEN/uac_call.xml" -inf "$TEST_TMP/dave.csv" \
    -key domain example.com -i 127.0.0.1 -p "$(free_port)" -m 1 || fail "forked call: $(sipp_summary uac)"
  wait "$a" || fail "answering endpoint: $(tail -20 "$TEST_TMP/answer.out")"
  wait "$b" || fail "the other endpoint did not ring and get cancelled: $(tail -20 "$TEST_TMP/ringer.out")"
  pass "routing.am forked a tie to both endpoints"
  ;;
after_hours)
  # business hours forced closed (open 0, close 0): INVITE -> 302 Contact: <voicemail>
  sed -e 's/^param.open_hour:.*/param.open_hour: 0/' -e 's/^param.close_hour:.*/param.close_hour: 0/' \
    -e 's/^param.voicemail:.*/param.voicemail: sip:vm-box@example.com/' \
    "$APPS/examples/after_hours.am" > "$TEST_TMP/after_hours.am"
  chain "$TEST_TMP/chain.conf" "$TEST_TMP/after_hours.am" "$APPS/routing.am"
  hs_start --app-chain "$TEST_TMP/chain.conf"
  register erin "$UAS_PORT"
  silent_listener "$UAS_PORT" "$TEST_TMP/erin.bin"
  sipp_run uac 15 "127.0.0.1:$HS_PORT" -sf "$SCEN/uac_302.xml" -inf "$TEST_TMP/erin.csv" \
    -key domain example.com -key voicemail "sip:vm-box@example.com" -i 127.0.0.1 -p "$(free_port)" -m 1 \
    || fail "after hours: no 302 to voicemail: $(sipp_summary uac) $(cat "$TEST_TMP"/uac_errors.log 2>/dev/null | head -5)"
  [ ! -s "$TEST_TMP/erin.bin" ] || fail "the callee rang after hours"
  grep -q "after-hours: after hours: call to erin0@example.com redirected" "$TEST_TMP/homeserver.log" \
    || fail "no log line of the after-hours application"
  pass "after hours: INVITE answered 302 with Contact <sip:vm-box@example.com>"
  ;;
content_filter)
  chain "$TEST_TMP/chain.conf" "$APPS/examples/content_filter.am" "$APPS/routing.am"
  hs_start --app-chain "$TEST_TMP/chain.conf"
  register frank "$UAS_PORT"
  sipp_bg uas -sf "$HS_SCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  u=$LAST_PID
  sleep 0.2
  msg bad frank "Hello frank0, message about the CASINO tonight" 403 || fail "a MESSAGE with a listed word was not refused"
  msg good frank "Hello frank0, message 1 about lunch" 200 || fail "a clean MESSAGE did not go through"
  wait "$u" || fail "the recipient did not get the clean MESSAGE"
  pass "content filter: 403 for a listed word, the other MESSAGE delivered"
  ;;
strict)
  # logger (strict-route: true) sees a request with a Route; routing does not (the Route is followed
  # to the UAS, not to the registered contact, which is dead)
  chain "$TEST_TMP/chain.conf" "$APPS/examples/logger.am" "$APPS/routing.am"
  # a client's Route is stripped (design §2, no open relay): send it as a trusted peer would
  TRUST_PORT=$(free_port)
  hs_start --app-chain "$TEST_TMP/chain.conf" --trusted-listener "udp:127.0.0.1:$TRUST_PORT=127.0.0.1"
  dead=$(free_port)
  register gina "$dead"
  sipp_bg uas -sf "$HS_SCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  u=$LAST_PID
  sleep 0.2
  HS_PORT=$TRUST_PORT msg routed gina "Hello gina0, message 1" 200 "Route: <sip:127.0.0.1:$UAS_PORT;lr>" \
    || fail "the strict-routed MESSAGE did not follow its Route"
  wait "$u" || fail "the UAS behind the Route did not get the MESSAGE"
  grep -q "logger: request MESSAGE sip:gina0@example.com from sip:sender@example.com" "$TEST_TMP/homeserver.log" \
    || fail "the logger did not see the strict-routed request: $(grep logger "$TEST_TMP/homeserver.log")"
  grep -q "logger: response 200" "$TEST_TMP/homeserver.log" || fail "the logger did not see the response"
  # a request without Route goes through routing (logger logs it too)
  pass "strict-routed MESSAGE: logged by logger.am, not routed by routing.am"
  ;;
bad_manifest)
  printf 'name: broken\nrequest-filter: INVITE\n---\nx = 1;\nif (x) { Respond(486); }\n' > "$TEST_TMP/broken.am"
  chain "$TEST_TMP/chain.conf" "$TEST_TMP/broken.am"
  HS_PORT=$(free_port)
  timeout 10 "$HS_BIN" --listen "udp:127.0.0.1:$HS_PORT" --domain example.com --data-dir "$TEST_TMP/d" \
    --admin "" --app-chain "$TEST_TMP/chain.conf" > "$TEST_TMP/hs.log" 2>&1
  rc=$?
  [ $rc = 2 ] || fail "exit status $rc, expected 2: $(tail -3 "$TEST_TMP/hs.log")"
  grep -q "broken.am:5:10: Respond() takes 2 to 3 arguments" "$TEST_TMP/hs.log" \
    || fail "no file:line:col in: $(tail -3 "$TEST_TMP/hs.log")"
  pass "a script error refuses the start: exit 2, broken.am:5:10"
  ;;
reload)
  cp "$APPS/examples/content_filter.am" "$TEST_TMP/cf.am"
  chain "$TEST_TMP/chain.conf" "$TEST_TMP/cf.am" "$APPS/routing.am"
  hs_start --app-chain "$TEST_TMP/chain.conf"
  register hank "$UAS_PORT"
  printf 'name: content-filter\nrequest-filter: MESSAGE\n---\nRespond(;\n' > "$TEST_TMP/cf.am"
  kill -HUP "$HS_PID"
  for ((i = 0; i < 100; i++)); do grep -q "not reloaded" "$TEST_TMP/homeserver.log" && break; sleep 0.05; done
  grep -q "application chain not reloaded, the old one stays: .*cf.am:4:9" "$TEST_TMP/homeserver.log" \
    || fail "bad reload not reported: $(tail -3 "$TEST_TMP/homeserver.log")"
  msg still hank "Hello hank0, message about the lottery" 403 || fail "the old chain is gone after a bad reload"
  cp "$APPS/examples/logger.am" "$TEST_TMP/cf.am"   # a good chain now: the filter is gone
  kill -HUP "$HS_PID"
  for ((i = 0; i < 100; i++)); do grep -q "chain.conf: logger, routing" "$TEST_TMP/homeserver.log" && break; sleep 0.05; done
  grep -q "chain.conf: logger, routing" "$TEST_TMP/homeserver.log" || fail "good reload not applied"
  sipp_bg uas -sf "$HS_SCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  u=$LAST_PID
  sleep 0.2
  msg after hank "Hello hank0, message about the lottery" 200 || fail "the new chain did not replace the old one"
  wait "$u" || fail "the recipient did not get the MESSAGE"
  pass "SIGHUP: a broken chain keeps the old one; a good one replaces it"
  ;;
pool_order)
  # the chain file says content-filter, logger, routing; `parleyctl app order` puts the logger
  # first for the pool: the home server follows the etcd key and the logger now sees the
  # MESSAGE the filter refuses; --clear goes back to the file's order
  : "${CTL_BIN:?CTL_BIN must point at parleyctl}"
  source "$HERE/../../lib/etcd.sh"
  ETCD_ST=$TEST_TMP/etcd
  trap 'etcd_stop "$ETCD_ST"; cleanup_all' EXIT
  ETCD_URL=$(etcd_start "$ETCD_ST") || fail "etcd did not start"
  ctl() { "$CTL_BIN" --etcd "$ETCD_URL" "$@"; }
  order() { curl -fs --max-time 2 "$HS_ADMIN/api/apps" | python3 -c 'import json,sys; print(",".join(json.load(sys.stdin)["order"]))'; }
  order_is() { [ "$(order)" = "$1" ]; }
  wait_order() { local i; for ((i = 0; i < 100; i++)); do order_is "$1" && return 0; sleep 0.1; done; return 1; }
  logged() { grep -c "logger: request MESSAGE sip:frank0@example.com" "$TEST_TMP/homeserver.log"; }
  chain "$TEST_TMP/chain.conf" "$APPS/examples/content_filter.am" "$APPS/examples/logger.am" "$APPS/routing.am"
  hs_start --app-chain "$TEST_TMP/chain.conf" --etcd "$ETCD_URL" --server-name home1 --auth off
  make_users "$TEST_TMP/frank.csv" frank 1
  order_is "content-filter,logger,routing" || fail "file order expected, admin shows: $(curl -s "$HS_ADMIN/api/apps")"
  msg before frank "a MESSAGE about the casino" 403 || fail "the filter did not refuse"
  [ "$(logged)" = 0 ] || fail "the logger saw a MESSAGE the filter (before it) refused"

  # bad input: exit 2, one line, nothing written
  for bad in "bad name!" "logger,logger" "" "logger,,routing"; do
    ctl app order "$bad" > "$TEST_TMP/bad.out" 2> "$TEST_TMP/bad.err"
    rc=$?
    [ $rc = 2 ] || fail "app order '$bad': exit $rc, expected 2"
    [ "$(wc -l < "$TEST_TMP/bad.err")" = 1 ] || fail "app order '$bad': not one line: $(cat "$TEST_TMP/bad.err")"
  done
  ctl app order 2> "$TEST_TMP/bad.err"; [ $? = 2 ] || fail "app order without names: not exit 2"
  ctl app order logger --clear 2> /dev/null; [ $? = 2 ] || fail "names and --clear: not exit 2"
  ctl app frob 2> /dev/null; [ $? = 2 ] || fail "unknown app command: not exit 2"
  curl -fs "$ETCD_URL/v3/kv/range" -X POST -d "{\"key\":\"$(printf /parley/apps/order | base64)\"}" \
    | grep -q '"kvs"' && fail "bad input wrote the key"

  ctl app order logger,content-filter,voicemail > "$TEST_TMP/order.out" || fail "app order: exit $?"
  grep -q 'pool order set: \["logger","content-filter","voicemail"\]' "$TEST_TMP/order.out" \
    || fail "app order output: $(cat "$TEST_TMP/order.out")"
  wait_order "logger,content-filter,routing" || fail "the home server did not follow the pool order: $(curl -s "$HS_ADMIN/api/apps")"
  curl -fs "$HS_ADMIN/api/apps" | grep -q '"missing":"voicemail"' || fail "the unknown name is not reported as missing"
  grep -q "pool order names application 'voicemail', which the chain .* does not have: skipped" \
    "$TEST_TMP/homeserver.log" || fail "the unknown name was not logged"
  ctl app show > "$TEST_TMP/show.out" || fail "app show: exit $?: $(cat "$TEST_TMP/show.out")"
  grep -q "^pool order: logger, content-filter, voicemail$" "$TEST_TMP/show.out" || fail "app show: $(cat "$TEST_TMP/show.out")"
  grep -q "^home1: order logger, content-filter, routing (.*chain.conf, pool order; not here: voicemail)$" \
    "$TEST_TMP/show.out" || fail "app show: $(cat "$TEST_TMP/show.out")"
  msg after frank "a MESSAGE about the casino" 403 || fail "the filter did not refuse after the reorder"
  [ "$(logged)" = 1 ] || fail "the logger (now first) did not see the refused MESSAGE"

  ctl app reload > "$TEST_TMP/reload.out" || fail "app reload: exit $?: $(cat "$TEST_TMP/reload.out")"
  grep -q "^home1: reloaded, order logger, content-filter, routing" "$TEST_TMP/reload.out" \
    || fail "app reload: $(cat "$TEST_TMP/reload.out")"
  ctl --json app show | python3 -c '
import json,sys
j=json.load(sys.stdin)
assert j["pool_order"]==["logger","content-filter","voicemail"], j
assert j["servers"][0]["server"]=="home1" and j["servers"][0]["order"][0]=="logger", j' || fail "app show --json"

  ctl app order --clear > /dev/null || fail "app order --clear"
  wait_order "content-filter,logger,routing" || fail "--clear did not bring back the file order"
  msg cleared frank "a MESSAGE about the casino" 403 || fail "the filter did not refuse after --clear"
  [ "$(logged)" = 1 ] || fail "the logger saw the refused MESSAGE after --clear"
  pass "parleyctl app order: the home server follows /parley/apps/order (logger first sees what the filter refuses), --clear, show, reload; bad input exit 2"
  ;;
*)
  fail "unknown case $CASE"
  ;;
esac
