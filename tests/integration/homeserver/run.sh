#!/usr/bin/env bash
# Integration tests of parley-homeserver with sipp as the peer.
# usage: run.sh CASE   (HS_BIN = path of parley-homeserver)
# Cases: register, register_rules, call, call_tcp, message, cancel, fork, maxfwd, unknown,
#        nexthop_tcp, nexthop_udp, persist
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SCEN=$HERE/scenarios
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/homeserver.sh"
source "$HERE/../../lib/sipp.sh"
: "${HS_BIN:?HS_BIN must point at parley-homeserver}"
CASE=${1:?case}

UAS_PORT=$(free_port)
UAS2_PORT=$(free_port)

# register_users PREFIX N CONTACT_PORT [TRANSPORT]
register_users() {
  make_users "$TEST_TMP/$1.csv" "$1" "$2"
  sipp_run "reg-$1" 20 "127.0.0.1:$HS_PORT" -sf "$SCEN/register.xml" -inf "$TEST_TMP/$1.csv" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$3" \
    -key contact_transport "${4:-udp}" -key expires 3600 -m "$2" -r 200 -i 127.0.0.1 -p "$(free_port)" \
    || fail "registering $2 users $1*: $(sipp_summary "reg-$1")"
}

case "$CASE" in
register)
  hs_start
  register_users alice 20 "$UAS_PORT"
  [ "$(binding_count alice5@example.com)" = 1 ] || fail "alice5 has no binding: $(registrations alice5@example.com)"
  registrations alice5@example.com | grep -q "\"contact\":\"sip:alice5@127.0.0.1:$UAS_PORT;transport=udp\"" \
    || fail "wrong contact: $(registrations alice5@example.com)"
  [ "$(metric parley_registrar_bindings)" = 20 ] || fail "bindings gauge is $(metric parley_registrar_bindings)"
  # expires=0 removes the binding
  sipp_run unreg 10 "127.0.0.1:$HS_PORT" -sf "$SCEN/register.xml" -inf "$TEST_TMP/alice.csv" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" \
    -key contact_transport udp -key expires 0 -m 1 -i 127.0.0.1 -p "$(free_port)" || fail "unregister"
  [ "$(binding_count alice0@example.com)" = 0 ] || fail "alice0 still bound after Expires: 0"
  pass "20 REGISTERs -> 200, bindings stored, Expires: 0 removes"
  ;;
register_rules)
  hs_start
  make_users "$TEST_TMP/bob.csv" bob 1
  sipp_run brief 10 "127.0.0.1:$HS_PORT" -sf "$SCEN/register_expect.xml" -inf "$TEST_TMP/bob.csv" \
    -key domain example.com -key expires 10 -m 1 -i 127.0.0.1 -p "$(free_port)" \
    || fail "Expires: 10 was not refused with 423 + Min-Expires: 60"
  [ "$(binding_count bob0@example.com)" = 0 ] || fail "a refused REGISTER left a binding"
  pass "423 Interval Too Brief with Min-Expires"
  ;;
call|call_tcp)
  hs_start
  t=u1; [ "$CASE" = call_tcp ] && t=t1
  ct=udp; [ "$CASE" = call_tcp ] && ct=tcp
  register_users callee 10 "$UAS_PORT" "$ct"
  sipp_bg uas -sf "$SCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -t "$t" -m 20
  sleep 0.2
  sipp_run uac 30 "127.0.0.1:$HS_PORT" -sf "$SCEN/uac_call.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -i 127.0.0.1 -p "$(free_port)" -t "$t" -m 20 -r 10 \
    || fail "calls through the proxy ($CASE): $(sipp_summary uac)"
  pass "20 calls INVITE/180/200/ACK/BYE through the proxy over ${ct}, Record-Route followed"
  ;;
message)
  hs_start
  register_users callee 10 "$UAS_PORT"
  sipp_bg uas -sf "$SCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 50
  sleep 0.2
  sipp_run msg 20 "127.0.0.1:$HS_PORT" -sf "$SCEN/message.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -m 50 -r 50 \
    || fail "MESSAGE: $(sipp_summary msg)"
  wait "$LAST_PID" || fail "the recipient did not get every MESSAGE body: $(cat "$TEST_TMP/uas.out" | tail -5)"
  pass "50 MESSAGEs delivered with their body, 200 back"
  ;;
cancel)
  hs_start
  register_users callee 1 "$UAS_PORT"
  sipp_bg uas -sf "$SCEN/uas_cancel.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 3
  uas=$LAST_PID
  sleep 0.2
  sipp_run uac 20 "127.0.0.1:$HS_PORT" -sf "$SCEN/uac_cancel.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -i 127.0.0.1 -p "$(free_port)" -m 3 -r 5 \
    || fail "CANCEL of a ringing call: $(sipp_summary uac)"
  wait "$uas" || fail "callee did not see CANCEL/ACK: $(tail -20 "$TEST_TMP/uas.out")"
  pass "CANCEL: 200 for the CANCEL, 487 for the INVITE, the callee got CANCEL and ACK"
  ;;
fork)
  hs_start
  # one user, two contacts (two devices): one answers, the other rings and is cancelled
  make_users "$TEST_TMP/carol.csv" carol 1
  for p in "$UAS_PORT" "$UAS2_PORT"; do
    sipp_run "reg$p" 10 "127.0.0.1:$HS_PORT" -sf "$SCEN/register.xml" -inf "$TEST_TMP/carol.csv" \
      -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$p" -key contact_transport udp \
      -key expires 3600 -m 1 -i 127.0.0.1 -p "$(free_port)" || fail "register contact $p"
  done
  [ "$(binding_count carol0@example.com)" = 2 ] || fail "carol should have two bindings"
  sipp_bg answer -sf "$SCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  a=$LAST_PID
  sipp_bg ringer -sf "$SCEN/uas_cancel.xml" -i 127.0.0.1 -p "$UAS2_PORT" -m 1
  b=$LAST_PID
  sleep 0.2
  sipp_run uac 20 "127.0.0.1:$HS_PORT" -sf "$SCEN/uac_call.xml" -inf "$TEST_TMP/carol.csv" \
    -key domain example.com -i 127.0.0.1 -p "$(free_port)" -m 1 \
    || fail "forked call: $(sipp_summary uac)"
  wait "$a" || fail "answering device: $(tail -20 "$TEST_TMP/answer.out")"
  wait "$b" || fail "ringing device was not cancelled: $(tail -20 "$TEST_TMP/ringer.out")"
  pass "forked INVITE rang both devices; the 200 of one cancelled the other"
  ;;
maxfwd)
  hs_start
  register_users callee 1 "$UAS_PORT"
  sipp_run mf0 10 "127.0.0.1:$HS_PORT" -sf "$SCEN/message_483.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -key max_forwards 0 -i 127.0.0.1 -p "$(free_port)" -m 1 || fail "Max-Forwards: 0 not answered 483"
  [ "$(metric 'parley_proxy_rejections_total{reason="too_many_hops"}')" = 1 ] || fail "483 not counted"
  pass "Max-Forwards: 0 -> 483 Too Many Hops"
  ;;
unknown)
  hs_start
  make_users "$TEST_TMP/nobody.csv" nobody 1
  sipp_run unk 10 "127.0.0.1:$HS_PORT" -sf "$SCEN/message_404.xml" -inf "$TEST_TMP/nobody.csv" \
    -key domain example.com -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -m 1 || fail "unknown user not answered 404"
  pass "request to an unregistered user -> 404"
  ;;
nexthop_tcp)
  hs_start
  dead=$(free_port)   # nothing listens there: the TCP connect is refused
  register_users callee 1 "$dead" tcp
  start=$(date +%s%N)
  sipp_run dead 10 "127.0.0.1:$HS_PORT" -sf "$SCEN/message_504.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -m 1 || fail "next hop down not answered 504"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  [ "$ms" -lt 15000 ] || fail "504 took $ms ms (Timer F would be 32 s)"
  pass "next hop refusing TCP -> 504 in $ms ms"
  ;;
nexthop_udp)
  # T1 = 50 ms: Timer F = 64*T1 = 3.2 s
  hs_start --timer-t1 50ms
  silent=$(free_port)
  python3 -c "import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',$silent)); time.sleep(30)" &
  PARLEY_PIDS+=($!)
  register_users callee 1 "$silent"
  start=$(date +%s%N)
  sipp_run silent 15 "127.0.0.1:$HS_PORT" -sf "$SCEN/message_408.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -m 1 || fail "silent next hop not answered 408"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  [ "$ms" -ge 3000 ] && [ "$ms" -lt 30000 ] || fail "408 after $ms ms, expected Timer F = 64*T1 = 3.2 s (well under the default 32 s)"
  pass "silent next hop -> 408 after $ms ms (Timer F = 64*T1)"
  ;;
persist)
  hs_start
  register_users user 200 "$UAS_PORT"
  hs_kill9
  hs_start
  [ "$(metric parley_registrar_bindings)" = 200 ] || fail "after kill -9: $(metric parley_registrar_bindings) bindings, want 200"
  registrations user123@example.com | grep -q "sip:user123@127.0.0.1:$UAS_PORT" || fail "user123 lost"
  # and they are routable
  sipp_bg uas -sf "$SCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 5
  sleep 0.2
  make_users "$TEST_TMP/rcpt.csv" user 5
  sipp_run msg 10 "127.0.0.1:$HS_PORT" -sf "$SCEN/message.xml" -inf "$TEST_TMP/rcpt.csv" \
    -key domain example.com -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -m 5 || fail "routing after restart: $(sipp_summary msg)"
  pass "200 registrations survive kill -9 and route after restart"
  ;;
*)
  fail "unknown case $CASE"
  ;;
esac
