#!/usr/bin/env bash
# Fault tests of parley-homeserver (labels integration;faults; valgrind: integration;valgrind).
# usage: run.sh CASE   (HS_BIN = parley-homeserver; CTL_BIN = parleyctl for the etcd cases)
# Cases:
#   kill9        100 calls held up (sipp pause) and a MESSAGE flood, kill -9, restart on the
#                same data dir: every registration is back (API, gauge, sqlite rows), routable,
#                and so are the stored subscriptions and contact lists (kv rows)
#   silent_tcp   the next hop accepts TCP and never answers: MESSAGE -> 408 after Timer F,
#                INVITE -> 408 after Timer B (--timer-t1 50ms: 64*T1 = 3.2 s)
#   idle_conns   a peer opens 5,000 idle TCP connections: other users are still served over
#                UDP and TCP, RSS grows by less than 64 MiB, --idle-timeout reclaims them
#   disk_full    the store cannot write (tmpfs full, or RLIMIT_FSIZE via prlimit): REGISTER
#                -> 500 with a clear log line, registered users still routed; after space
#                returns REGISTER works and PRAGMA integrity_check is ok
#   flood_rate   --flood-register-rate/--flood-request-rate: a burst from one address gets
#                503 + Retry-After beyond the bucket, counted on /metrics; refills
#   flood_ban    (etcd) failed authentications from one address ban it (503 + Retry-After
#                for every request) for --flood-ban-time (10 s), then it is served again
#   etcd_restart (etcd) etcd killed and restarted under authenticated REGISTER + MESSAGE
#                load: every transaction succeeds; a user added after the restart registers
#   valgrind     the server under valgrind memcheck: registrations, calls and messages,
#                SIGTERM -> exit 0, no definite leak, no invalid access
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SCEN=$HERE/scenarios
HSCEN=$HERE/../homeserver/scenarios
OSCEN=$HERE/../ops/scenarios
DSCEN=$HERE/../homeserver_dir/scenarios
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/homeserver.sh"
source "$HERE/../../lib/sipp.sh"
: "${HS_BIN:?HS_BIN must point at parley-homeserver}"
CASE=${1:?case}
CLIENT="python3 $HERE/sipclient.py"
# The proxy's per-client transaction throttle (px_trust, where present) would answer a
# load generator on one address 503: lift it, these tests measure other limits.
export PARLEY_MAX_CLIENT_TRANSACTIONS=${PARLEY_MAX_CLIENT_TRANSACTIONS:-100000}

UAS_PORT=$(free_port)
UAS2_PORT=$(free_port)

# register_users PREFIX N CONTACT_PORT [TRANSPORT]
register_users() {
  make_users "$TEST_TMP/$1.csv" "$1" "$2"
  sipp_run "reg-$1" 30 "127.0.0.1:$HS_PORT" -sf "$HSCEN/register.xml" -inf "$TEST_TMP/$1.csv" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$3" \
    -key contact_transport "${4:-udp}" -key expires 3600 -m "$2" -r 200 -i 127.0.0.1 -p "$(free_port)" \
    || fail "registering $2 users $1*: $(sipp_summary "reg-$1")"
}
# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds (bounded)
wait_for() {
  local t=$1 i; shift
  for ((i = 0; i < t * 10; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}
conns_below() { local v; v=$(metric parley_transport_connections); [ -n "$v" ] && [ "${v%.*}" -lt "$1" ]; }
healthz_is() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$HS_ADMIN/healthz")" = "$1" ]; }
metric_ge() { local v; v=$(metric "$1"); [ -n "$v" ] && [ "${v%.*}" -ge "$2" ]; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$HS_PID/status"; }
send_messages() {  # send_messages NAME USERS_CSV N RATE
  sipp_run "$1" 30 "127.0.0.1:$HS_PORT" -sf "$HSCEN/message.xml" -inf "$2" \
    -key domain example.com -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -m "$3" -r "$4"
}

case "$CASE" in
kill9)
  hs_start
  register_users callee 100 "$UAS_PORT"
  register_users rcpt 200 "$UAS2_PORT"
  # stored presence state: 10 subscriptions to callee0 and one contact list (kv rows)
  bg presence python3 "$HERE/presence_state.py" "$HS_PORT" callee0 10 60
  wait_for 20 grep -qs '^ready' "$TEST_TMP/presence.log" || fail "presence state: $(tail -3 "$TEST_TMP/presence.log")"
  kv() { sqlite3 -readonly "$HS_DATA/parley.db" "SELECT ns || ':' || count(*) FROM kv WHERE ns IN ('sub', 'lists') GROUP BY ns ORDER BY ns" | tr '\n' ' '; }
  kv_before=$(kv)
  [ "$kv_before" = "lists:1 sub:10 " ] || fail "stored subscriptions/lists before the kill: '$kv_before'"
  before=$(metric parley_registrar_bindings)
  [ "$before" = 310 ] || fail "bindings before the kill: $before, want 310"
  # 100 concurrent calls, each held 30 s after the ACK (longer than the test: they are up at the kill)
  sipp_bg uas -sf "$HSCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 100
  sipp_bg uac -sf "$SCEN/uac_call_hold.xml" -inf "$TEST_TMP/callee.csv" -key domain example.com \
    -i 127.0.0.1 -p "$(free_port)" -m 100 -l 100 -r 200 -d 30000 "127.0.0.1:$HS_PORT"
  wait_for 20 metric_ge parley_proxy_forwarded_total 100 || fail "the 100 calls were not set up"
  # and a MESSAGE flood at the same time
  sipp_bg uasm -sf "$HSCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS2_PORT" -m 100000
  sipp_bg flood -sf "$HSCEN/message.xml" -inf "$TEST_TMP/rcpt.csv" -key domain example.com \
    -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -r 500 -m 100000 "127.0.0.1:$HS_PORT"
  wait_for 20 metric_ge parley_proxy_forwarded_total 1100 || fail "the MESSAGE flood did not get through"
  hs_kill9
  hs_start
  after=$(metric parley_registrar_bindings)
  [ "$after" = 310 ] || fail "after kill -9: $after bindings, want 310"
  [ "$(kv)" = "$kv_before" ] || fail "subscriptions/lists after kill -9: '$(kv)', before '$kv_before'"
  for u in callee0 callee57 callee99 rcpt0 rcpt123 rcpt199; do
    [ "$(binding_count "$u@example.com")" = 1 ] || fail "$u lost: $(registrations "$u@example.com")"
  done
  rows=$(sqlite3 -readonly "$HS_DATA/parley.db" "SELECT count(*) FROM reg_binding" 2>/dev/null || echo ?)
  [ "$rows" = 310 ] || fail "reg_binding holds $rows rows, want 310"
  # the restarted server routes to them
  make_users "$TEST_TMP/five.csv" rcpt 5
  send_messages after "$TEST_TMP/five.csv" 5 50 || fail "routing after restart: $(sipp_summary after)"
  pass "kill -9 during 100 held calls and a MESSAGE flood: 310 registrations, 10 subscriptions and a contact list back, routable"
  ;;
silent_tcp)
  hs_start --timer-t1 50ms
  silent=$(free_port)
  bg silent $CLIENT silent "$silent" 30
  wait_for 5 python3 -c "import socket; socket.create_connection(('127.0.0.1', $silent), 1)" \
    || fail "silent listener not up"
  register_users callee 1 "$silent" tcp
  start=$(date +%s%N)
  sipp_run msg 15 "127.0.0.1:$HS_PORT" -sf "$HSCEN/message_408.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -m 1 \
    || fail "MESSAGE to a silent TCP next hop not answered 408"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  [ "$ms" -ge 3000 ] && [ "$ms" -lt 10000 ] || fail "MESSAGE: 408 after $ms ms, want Timer F = 3.2 s"
  start=$(date +%s%N)
  sipp_run inv 15 "127.0.0.1:$HS_PORT" -sf "$SCEN/invite_408.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -i 127.0.0.1 -p "$(free_port)" -m 1 \
    || fail "INVITE to a silent TCP next hop not answered 408"
  ms2=$(( ($(date +%s%N) - start) / 1000000 ))
  [ "$ms2" -ge 3000 ] && [ "$ms2" -lt 10000 ] || fail "INVITE: 408 after $ms2 ms, want Timer B = 3.2 s"
  [ "$(metric 'parley_proxy_rejections_total{reason="timeout"}')" -ge 2 ] || fail "408s not counted"
  pass "next hop accepts TCP and never answers: MESSAGE 408 in $ms ms, INVITE 408 in $ms2 ms"
  ;;
idle_conns)
  ulimit -n 8192 || fail "cannot raise the descriptor limit"
  hs_start --idle-timeout 12s
  register_users callee 10 "$UAS_PORT"
  rss0=$(rss_kb)
  bg idle $CLIENT idle "127.0.0.1:$HS_PORT" 5000 60
  idle_pid=$LAST_PID
  wait_for 30 grep -qs '^open' "$TEST_TMP/idle.log" || fail "idle client did not finish connecting"
  grep -q '^open 5000$' "$TEST_TMP/idle.log" || fail "only $(cat "$TEST_TMP/idle.log") connections"
  wait_for 10 metric_ge parley_transport_connections 5000 || fail "server sees $(metric parley_transport_connections) connections"
  # other users are still served, over UDP and over TCP
  sipp_bg uas -sf "$HSCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 40
  uas=$LAST_PID
  sleep 0.2
  send_messages udp "$TEST_TMP/callee.csv" 20 50 || fail "MESSAGE over UDP with 5000 idle connections: $(sipp_summary udp)"
  sipp_run tcp 20 "127.0.0.1:$HS_PORT" -sf "$HSCEN/message.xml" -inf "$TEST_TMP/callee.csv" -t t1 \
    -key domain example.com -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -m 20 -r 50 \
    || fail "MESSAGE over TCP with 5000 idle connections: $(sipp_summary tcp)"
  wait "$uas" || fail "the recipient did not get the 40 MESSAGEs"
  rss1=$(rss_kb)
  growth=$(( (rss1 - rss0) / 1024 ))
  [ "$growth" -lt 64 ] || fail "RSS grew by $growth MiB with 5000 idle connections"
  # --idle-timeout closes them (bounded: 12 s + a sweep; the client holds them 60 s)
  wait_for 30 conns_below 10 \
    || fail "idle connections not closed: $(metric parley_transport_connections) open"
  kill "$idle_pid" 2>/dev/null
  pass "5000 idle TCP connections: UDP and TCP users served, RSS +$growth MiB, closed by idle-timeout"
  ;;
disk_full)
  mnt=$TEST_TMP/mnt
  mkdir -p "$mnt"
  mode=${FAULTS_STORE_FAIL:-tmpfs}
  mounted=0
  if [ "$mode" = tmpfs ] && mount -t tmpfs -o size=2m parley-faults-test "$mnt" 2>/dev/null; then
    mounted=1
  else
    mode=rlimit
  fi
  df_exit() {
    local pid
    for pid in "${PARLEY_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    [ "$mounted" = 1 ] && umount "$mnt" 2>/dev/null
    cleanup_all
  }
  trap df_exit EXIT
  HS_DATA=$mnt/data
  # ignored signals stay ignored across exec: SIGXFSZ must not kill the server (rlimit mode)
  HS_BIN_REAL=$HS_BIN
  HS_BIN=$TEST_TMP/hs-noxfsz.sh
  printf '#!/bin/bash\ntrap "" XFSZ\nexec "%s" "$@"\n' "$HS_BIN_REAL" >"$HS_BIN"
  chmod +x "$HS_BIN"
  hs_start
  register_users user 50 "$UAS_PORT"
  if [ "$mode" = tmpfs ]; then
    dd if=/dev/zero of="$mnt/filler" bs=16k 2>/dev/null   # stops at ENOSPC
  else
    prlimit --pid "$HS_PID" --fsize=1: || fail "prlimit"
  fi
  make_users "$TEST_TMP/late.csv" late 1
  sipp_run full 10 "127.0.0.1:$HS_PORT" -sf "$OSCEN/register_500.xml" -inf "$TEST_TMP/late.csv" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" \
    -key contact_transport udp -key expires 3600 -m 1 -i 127.0.0.1 -p "$(free_port)" \
    || fail "REGISTER with the disk full not answered 500"
  grep -Eiq 'store.*(full|disk|space|write|commit|too large|I/O)' "$TEST_TMP/homeserver.log" \
    || fail "no clear store error in the log: $(tail -5 "$TEST_TMP/homeserver.log")"
  kill -0 "$HS_PID" || fail "the server died with the disk full"
  # registered users are still routed
  sipp_bg uas -sf "$HSCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 10
  uas=$LAST_PID
  sleep 0.2
  send_messages route "$TEST_TMP/user.csv" 10 50 || fail "routing with the disk full: $(sipp_summary route)"
  wait "$uas" || fail "recipient did not get the MESSAGEs"
  # space returns
  if [ "$mode" = tmpfs ]; then rm -f "$mnt/filler"; else prlimit --pid "$HS_PID" --fsize=unlimited: || fail "prlimit back"; fi
  sipp_run late 10 "127.0.0.1:$HS_PORT" -sf "$HSCEN/register.xml" -inf "$TEST_TMP/late.csv" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" \
    -key contact_transport udp -key expires 3600 -m 1 -i 127.0.0.1 -p "$(free_port)" \
    || fail "REGISTER after space returned: $(sipp_summary late)"
  wait_for 10 healthz_is 200 \
    || fail "/healthz not back to 200"
  hs_stop || fail "no clean exit after SIGTERM"
  db=$HS_DATA/parley.db
  [ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] || fail "integrity_check: $(sqlite3 "$db" 'PRAGMA integrity_check' | head -3)"
  rows=$(sqlite3 "$db" "SELECT count(*) FROM reg_binding")
  [ "$rows" = 51 ] || fail "reg_binding holds $rows rows, want 51"
  hs_start
  [ "$(metric parley_registrar_bindings)" = 51 ] || fail "after restart: $(metric parley_registrar_bindings) bindings"
  pass "disk full ($mode): REGISTER 500 + log, routing kept; space back: REGISTER 200, integrity ok, 51 bindings"
  ;;
flood_rate)
  hs_start --flood-register-rate 5 --flood-request-rate 50 --flood-burst 10
  out=$($CLIENT burst "127.0.0.1:$HS_PORT" 40)
  python3 - "$out" <<'PY' || fail "REGISTER burst: $out"
import json, sys
r = json.loads(sys.argv[1])
c = r["codes"]
assert c.get("200", 0) in (10, 11), c          # the bucket (burst 10), maybe one refilled token
assert c.get("503 Rate Limited", 0) >= 1, c     # other 503s may come from the proxy's own throttle
assert sum(c.values()) == 40, c
assert all(1 <= x <= 2 for x in r["retry_after"]), r
PY
  limited=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["codes"]["503 Rate Limited"])' "$out")
  [ "$(metric 'parley_flood_rejections_total{reason="register_rate"}')" = "$limited" ] || fail "register_rate rejections not counted"
  # the request bucket is separate: MESSAGEs (404: nobody is registered) still pass up to its burst
  out=$($CLIENT burst "127.0.0.1:$HS_PORT" 30 --method MESSAGE --user nobody)
  python3 - "$out" <<'PY' || fail "MESSAGE burst: $out"
import json, sys
c = json.loads(sys.argv[1])["codes"]
assert c.get("404", 0) >= 1 and c.get("503 Rate Limited", 0) >= 1 and sum(c.values()) == 30, c
PY
  [ "$(metric 'parley_flood_rejections_total{reason="request_rate"}')" -ge 1 ] || fail "request_rate rejections not counted"
  [ "$(metric parley_flood_addresses)" = 1 ] || fail "addresses gauge is $(metric parley_flood_addresses)"
  # 2 s later the REGISTER bucket has refilled
  sleep 2
  out=$($CLIENT burst "127.0.0.1:$HS_PORT" 5)
  echo "$out" | grep -q '"200": 5' || fail "no refill after 2 s: $out"
  pass "flood: REGISTER/request buckets give 503 + Retry-After past the burst, counted, refilled"
  ;;
flood_ban|etcd_restart)
  : "${CTL_BIN:?CTL_BIN must point at parleyctl}"
  source "$HERE/../../lib/etcd.sh"
  ETCD_ST=$TEST_TMP/etcd
  trap 'etcd_stop "$ETCD_ST"; cleanup_all' EXIT
  ETCD_URL=$(etcd_start "$ETCD_ST") || fail "etcd did not start"
  ctl() { "$CTL_BIN" --etcd "$ETCD_URL" "$@"; }
  tmpl() { sed "s/@CODE@/$2/" "$DSCEN/$1.xml.in" >"$TEST_TMP/$1-$2.xml"; echo "$TEST_TMP/$1-$2.xml"; }
  if [ "$CASE" = flood_ban ]; then
    ctl user add alice@example.com --password secret-alice --home home1 >/dev/null || fail "user add"
    hs_start --etcd "$ETCD_URL" --server-name home1 --auth-sha256=false --flood-ban-failures 5 --flood-ban-time 10s
    out=$($CLIENT burst "127.0.0.1:$HS_PORT" 5 --auth-unknown)
    echo "$out" | grep -q '"404": 5' || fail "unknown users not answered 404: $out"
    [ "$(metric parley_flood_bans_total)" = 1 ] || fail "no ban after 5 failures: $(metric parley_flood_bans_total)"
    out=$($CLIENT burst "127.0.0.1:$HS_PORT" 3 --method OPTIONS --user alice)
    python3 - "$out" <<'PY' || fail "banned address: $out"
import json, sys
r = json.loads(sys.argv[1])
assert r["codes"] == {"503 Banned": 3}, r
assert len(r["retry_after"]) == 3 and all(1 <= x <= 10 for x in r["retry_after"]), r
PY
    printf 'SEQUENTIAL\nalice;\n' >"$TEST_TMP/alice.csv"
    wait_for 25 sipp_run after 10 "127.0.0.1:$HS_PORT" -sf "$(tmpl register_auth 200)" -inf "$TEST_TMP/alice.csv" \
      -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" -key expires 3600 \
      -key password secret-alice -m 1 -i 127.0.0.1 -p "$(free_port)" || fail "alice not served after the ban"
    [ "$(metric 'parley_flood_rejections_total{reason="banned"}')" -ge 3 ] || fail "banned rejections not counted"
    pass "flood: 5 failed authentications ban the address (503 + Retry-After) for 10 s, then served"
  else
    n=20
    { echo SEQUENTIAL; for ((i = 0; i < n; i++)); do echo "u$i;u$(( (i + 1) % n ));"; done; } >"$TEST_TMP/users.csv"
    for ((i = 0; i < n; i++)); do
      ctl user add "u$i@example.com" --password "secret" --home home1 >/dev/null || fail "user add u$i"
    done
    hs_start --etcd "$ETCD_URL" --server-name home1 --auth-sha256=false --shutdown-grace 200ms
    cp "$(tmpl register_auth 200)" "$TEST_TMP/reg.xml"
    # load: authenticated REGISTERs (20/s) and MESSAGEs between registered users (20/s), ~14 s
    sipp_bg uasm -sf "$HSCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 100000
    sipp_run first 20 "127.0.0.1:$HS_PORT" -sf "$TEST_TMP/reg.xml" -inf "$TEST_TMP/users.csv" \
      -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" -key expires 3600 \
      -key password secret -m "$n" -r 50 -i 127.0.0.1 -p "$(free_port)" || fail "first registrations: $(sipp_summary first)"
    ( sipp_run regload 40 "127.0.0.1:$HS_PORT" -sf "$TEST_TMP/reg.xml" -inf "$TEST_TMP/users.csv" \
        -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" -key expires 3600 \
        -key password secret -m 280 -r 20 -i 127.0.0.1 -p "$(free_port)"; echo $? >"$TEST_TMP/regload.rc" ) &
    PARLEY_PIDS+=($!)
    ( sipp_run msgload 40 "127.0.0.1:$HS_PORT" -sf "$(tmpl message_auth 200)" -inf "$TEST_TMP/users.csv" \
        -key domain example.com -key password secret -m 280 -r 20 -i 127.0.0.1 -p "$(free_port)"; \
      echo $? >"$TEST_TMP/msgload.rc" ) &
    PARLEY_PIDS+=($!)
    sleep 3
    p=$(cat "$ETCD_ST/pid"); kill -9 "$p"; wait "$p" 2>/dev/null
    sleep 4
    etcd_start "$ETCD_ST" >/dev/null || fail "etcd did not restart"
    wait_for 30 test -s "$TEST_TMP/regload.rc" || fail "REGISTER load did not finish"
    wait_for 30 test -s "$TEST_TMP/msgload.rc" || fail "MESSAGE load did not finish"
    [ "$(cat "$TEST_TMP/regload.rc")" = 0 ] || fail "REGISTERs failed across the etcd restart: $(sipp_summary regload)"
    [ "$(cat "$TEST_TMP/msgload.rc")" = 0 ] || fail "MESSAGEs failed across the etcd restart: $(sipp_summary msgload)"
    # the watch is back: a user added after the restart can register
    ctl user add late@example.com --password secret --home home1 >/dev/null || fail "user add after restart"
    printf 'SEQUENTIAL\nlate;\n' >"$TEST_TMP/late.csv"
    wait_for 10 sipp_run late 10 "127.0.0.1:$HS_PORT" -sf "$TEST_TMP/reg.xml" -inf "$TEST_TMP/late.csv" \
      -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" -key expires 3600 \
      -key password secret -m 1 -i 127.0.0.1 -p "$(free_port)" || fail "user added after the etcd restart cannot register"
    pass "etcd kill -9 + restart under load: 280 REGISTERs and 280 MESSAGEs all 200; new user registers"
  fi
  ;;
valgrind)
  command -v valgrind >/dev/null || fail "valgrind not installed"
  HS_BIN_REAL=$HS_BIN
  HS_BIN=$TEST_TMP/hs-valgrind.sh
  printf '#!/bin/bash\nexec valgrind --leak-check=full --error-exitcode=99 --errors-for-leak-kinds=definite --log-file=%s/valgrind.log "%s" "$@"\n' \
    "$TEST_TMP" "$HS_BIN_REAL" >"$HS_BIN"
  chmod +x "$HS_BIN"
  HS_PORT=$(free_port); HS_ADMIN_PORT=$(free_port); HS_DATA=$TEST_TMP/hs-data
  HS_ADMIN=http://127.0.0.1:$HS_ADMIN_PORT
  bg homeserver "$HS_BIN" --listen "udp:127.0.0.1:$HS_PORT" --listen "tcp:127.0.0.1:$HS_PORT" \
    --domain example.com --data-dir "$HS_DATA" --admin "127.0.0.1:$HS_ADMIN_PORT" --shutdown-grace 500ms
  HS_PID=$LAST_PID
  wait_http "$HS_ADMIN/healthz" 30 || fail "homeserver under valgrind did not become healthy"
  register_users callee 10 "$UAS_PORT"
  register_users rcpt 10 "$UAS2_PORT" tcp
  sipp_bg uas -sf "$HSCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 10
  uas=$LAST_PID
  sipp_bg uasm -sf "$HSCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS2_PORT" -t t1 -m 20
  uasm=$LAST_PID
  sleep 0.3
  sipp_run calls 40 "127.0.0.1:$HS_PORT" -sf "$HSCEN/uac_call.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -i 127.0.0.1 -p "$(free_port)" -m 10 -r 5 || fail "calls under valgrind: $(sipp_summary calls)"
  send_messages msgs "$TEST_TMP/rcpt.csv" 20 10 || fail "MESSAGEs under valgrind: $(sipp_summary msgs)"
  wait "$uas" || fail "callee side"
  wait "$uasm" || fail "MESSAGE recipient"
  kill -TERM "$HS_PID"
  rc=
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$HS_PID" 2>/dev/null; then wait "$HS_PID"; rc=$?; break; fi
    sleep 0.1
  done
  [ -n "$rc" ] || fail "no exit 30 s after SIGTERM under valgrind"
  grep -q "ERROR SUMMARY" "$TEST_TMP/valgrind.log" || fail "no valgrind summary"
  [ "$rc" = 0 ] || fail "exit code $rc under valgrind: $(grep -A12 -m3 -E 'Invalid|definitely lost|uninitialised' "$TEST_TMP/valgrind.log" | head -40)"
  grep -Eq "definitely lost: [1-9]" "$TEST_TMP/valgrind.log" && fail "definite leaks: $(grep -B2 -A20 'definitely lost in' "$TEST_TMP/valgrind.log" | head -60)"
  grep -Eq "Invalid (read|write|free)" "$TEST_TMP/valgrind.log" && fail "invalid access: $(grep -A15 -m1 Invalid "$TEST_TMP/valgrind.log")"
  pass "valgrind memcheck: 20 registrations, 10 calls, 20 MESSAGEs, SIGTERM -> exit 0, no definite leak"
  ;;
*)
  fail "unknown case $CASE"
  ;;
esac
