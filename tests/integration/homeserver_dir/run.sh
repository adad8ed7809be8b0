#!/usr/bin/env bash
# parley-homeserver with the directory (a real etcd) and digest authentication, sipp as
# the clients. usage: run.sh CASE   (HS_BIN = parley-homeserver, CTL_BIN = parleyctl)
# Cases:
#   auth       users added with parleyctl REGISTER with digest (200); SHA-256 and MD5
#              (python client); wrong password -> 401 again, 403 on the third failure and
#              while locked; disabled -> 403; unknown -> 404; homed on another announced
#              server -> 301 Contact ...;maddr=<its host>; home not announced -> 480
#   disable    registered user disabled with parleyctl: bindings dropped when the watch
#              delivers it, its MESSAGE -> 403, its REGISTER -> 403, calls to it -> 404
#   etcd_down  etcd killed: REGISTER with auth and an authenticated call still work; a user
#              cannot be added while etcd is down and is unknown (404), known after etcd is
#              back; a home server restarted while etcd is down authenticates from its disk copy
#   lease      a home server killed with kill -9 vanishes from `parleyctl server list` after
#              its lease TTL (--lease-ttl 2s)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SCEN=$HERE/scenarios
HS_SCEN=$HERE/../homeserver/scenarios
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/homeserver.sh"
source "$HERE/../../lib/sipp.sh"
source "$HERE/../../lib/etcd.sh"
: "${HS_BIN:?HS_BIN must point at parley-homeserver}"
: "${CTL_BIN:?CTL_BIN must point at parleyctl}"
CASE=${1:?case}

ETCD_ST=$TEST_TMP/etcd
trap 'etcd_stop "$ETCD_ST"; cleanup_all' EXIT
ETCD_URL=$(etcd_start "$ETCD_ST") || fail "etcd did not start"
UAS_PORT=$(free_port)

ctl() { "$CTL_BIN" --etcd "$ETCD_URL" "$@"; }
adduser() {  # adduser USER [parleyctl user add options...] (password = secret-USER)
  local u=$1; shift
  ctl user add "$u@example.com" --password "secret-$u" "$@" >/dev/null || fail "parleyctl user add $u"
}
# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds (bounded)
wait_for() {
  local t=$1 i; shift
  for ((i = 0; i < t * 10; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}
metric_is() { [ "$(metric "$1")" = "$2" ]; }
hs_dir_start() {  # the home server home1 with the directory; extra args appended
  hs_start --etcd "$ETCD_URL" --server-name home1 --auth-sha256=false --shutdown-grace 200ms "$@"
}
# scenario from a template with @CODE@ replaced
tmpl() { sed "s/@CODE@/$2/" "$SCEN/$1.xml.in" >"$TEST_TMP/$1-$2.xml"; echo "$TEST_TMP/$1-$2.xml"; }
csv() {  # csv NAME FIELD0 [FIELD1]: a one-line injection file
  printf 'SEQUENTIAL\n%s;%s;\n' "$2" "${3:-}" >"$TEST_TMP/$1.csv"; echo "$TEST_TMP/$1.csv"
}
# reg USER CODE [PASSWORD] [PORT] [sipp args...]: REGISTER with digest -> CODE
reg() {
  local u=$1 code=$2 pw=${3:-secret-$1} port=${4:-$HS_PORT}; shift 4 2>/dev/null || shift $#
  sipp_run "reg-$u-$code" 15 "127.0.0.1:$port" -sf "$(tmpl register_auth "$code")" -inf "$(csv "r$u" "$u")" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" -key expires 3600 \
    -key password "$pw" -m 1 -i 127.0.0.1 -p "$(free_port)" "$@"
}
# msg FROM TO CODE: authenticated MESSAGE -> CODE
msg() {
  sipp_run "msg-$1-$2-$3" 15 "127.0.0.1:$HS_PORT" -sf "$(tmpl message_auth "$3")" -inf "$(csv "m$1$2" "$1" "$2")" \
    -key domain example.com -key password "secret-$1" -m 1 -i 127.0.0.1 -p "$(free_port)"
}
# call FROM TO: a full authenticated call to a sipp UAS registered on UAS_PORT
call() {
  sipp_bg uas -sf "$HS_SCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  local uas=$LAST_PID
  sleep 0.2
  sipp_run "call-$1-$2" 20 "127.0.0.1:$HS_PORT" -sf "$SCEN/uac_call_auth.xml" -inf "$(csv "c$1$2" "$1" "$2")" \
    -key domain example.com -key password "secret-$1" -m 1 -i 127.0.0.1 -p "$(free_port)" || return 1
  wait "$uas"
}
kill9_etcd() { local p; p=$(cat "$ETCD_ST/pid"); kill -9 "$p"; wait "$p" 2>/dev/null; }
has_server() { ctl server list 2>/dev/null | grep -q "^$1 "; }

case "$CASE" in
auth)
  adduser alice --home home1
  adduser bob --home home1
  adduser carol --home home1 --disabled
  adduser dave --home home2
  adduser erin --home home3
  # home2: a second home server, announced, offering SHA-256 first (the default)
  H2_PORT=$(free_port); H2_ADMIN=$(free_port)
  bg home2 "$HS_BIN" --listen "udp:127.0.0.1:$H2_PORT" --domain example.com --data-dir "$TEST_TMP/h2" \
    --admin "127.0.0.1:$H2_ADMIN" --etcd "$ETCD_URL" --server-name home2 --shutdown-grace 200ms
  wait_http "http://127.0.0.1:$H2_ADMIN/healthz" 10 || fail "home2 did not start"
  hs_dir_start
  wait_for 10 metric_is parley_directory_users 5 || fail "directory not loaded: $(metric parley_directory_users) users"
  wait_for 10 has_server home2 || fail "home2 not announced: $(ctl server list)"

  reg alice 200 || fail "alice REGISTER with digest: $(sipp_summary reg-alice-200)"
  [ "$(binding_count alice@example.com)" = 1 ] || fail "alice not bound: $(registrations alice@example.com)"
  pass "REGISTER with MD5 digest (sipp) -> 401 then 200, binding stored"

  code=$(python3 "$HERE/digest_register.py" "$H2_PORT" dave example.com secret-dave SHA-256) || fail "sha-256 client"
  [ "$code" = 200 ] || fail "SHA-256 digest REGISTER -> $code"
  code=$(python3 "$HERE/digest_register.py" "$H2_PORT" dave example.com secret-dave MD5) || fail "md5 client"
  [ "$code" = 200 ] || fail "MD5 (second challenge) REGISTER -> $code"
  code=$(python3 "$HERE/digest_register.py" "$H2_PORT" dave example.com wrong SHA-256) || fail "sha-256 client"
  [ "$code" = 401 ] || fail "SHA-256 with a wrong password -> $code, want 401"
  pass "401 offers SHA-256 then MD5 (RFC 8760); both answered -> 200; wrong password -> 401"

  sipp_run wrong 20 "127.0.0.1:$HS_PORT" -sf "$SCEN/register_wrong.xml" -inf "$(csv wrong bob)" \
    -key domain example.com -key password wrong -m 1 -i 127.0.0.1 -p "$(free_port)" \
    || fail "wrong password: want 401, 401, 401, 403: $(sipp_summary wrong)"
  [ "$(metric 'parley_auth_challenges_total{reason="wrong_password"}')" = 2 ] || fail "wrong_password challenges not counted"
  reg bob 403 || fail "bob with the right password while locked out should get 403: $(sipp_summary reg-bob-403)"
  [ "$(binding_count bob@example.com)" = 0 ] || fail "bob bound despite the lock-out"
  pass "wrong password -> 401 again, 403 on the 3rd failure and while locked (same source, 1 min)"

  reg carol 403 || fail "disabled user: $(sipp_summary reg-carol-403)"
  pass "disabled user -> 403"
  reg zed 404 "x" || fail "unknown user: $(sipp_summary reg-zed-404)"
  pass "unknown user -> 404"

  reg dave 301 "" "" -trace_msg -message_file "$TEST_TMP/dave.msg" || fail "user homed on home2: $(sipp_summary reg-dave-301)"
  grep -qi "^Contact: <sip:example.com:$H2_PORT;transport=udp;maddr=127.0.0.1>" "$TEST_TMP/dave.msg" \
    || fail "301 Contact is not home2's address: $(grep -i '^Contact' "$TEST_TMP/dave.msg")"
  pass "user homed on home2 -> 301 Contact: <sip:example.com:$H2_PORT;transport=udp;maddr=127.0.0.1>"
  reg erin 480 || fail "user homed on a server not announced: $(sipp_summary reg-erin-480)"
  pass "home server not announced -> 480"
  [ "$(metric 'parley_auth_failures_total{reason="unknown_user"}')" = 1 ] || fail "unknown_user not counted"
  ;;

disable)
  adduser alice1 --home home1
  adduser bob1 --home home1
  hs_dir_start
  wait_for 10 metric_is parley_directory_users 2 || fail "directory not loaded"
  reg bob1 200 || fail "bob1 REGISTER: $(sipp_summary reg-bob1-200)"
  reg alice1 200 || fail "alice1 REGISTER: $(sipp_summary reg-alice1-200)"
  sipp_bg uas -sf "$HS_SCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  uas=$LAST_PID
  sleep 0.2
  msg alice1 bob1 200 || fail "alice1 -> bob1 MESSAGE: $(sipp_summary msg-alice1-bob1-200)"
  wait "$uas" || fail "bob1 did not get the MESSAGE"
  pass "authenticated MESSAGE alice1 -> bob1 delivered (407, then 200)"

  ctl user disable bob1@example.com >/dev/null || fail "parleyctl user disable"
  wait_for 10 metric_is parley_directory_users_dropped_total 1 || fail "the watch did not drop bob1's bindings"
  [ "$(binding_count bob1@example.com)" = 0 ] || fail "bob1 still bound after disable"
  pass "user disable -> watch -> bindings dropped (location + store)"
  msg bob1 alice1 403 || fail "disabled bob1's MESSAGE: $(sipp_summary msg-bob1-alice1-403)"
  reg bob1 403 || fail "disabled bob1's REGISTER: $(sipp_summary reg-bob1-403)"
  pass "disabled user's MESSAGE and REGISTER -> 403"
  sipp_run inv 15 "127.0.0.1:$HS_PORT" -sf "$(tmpl invite_auth 404)" -inf "$(csv inv alice1 bob1)" \
    -key domain example.com -key password secret-alice1 -m 1 -i 127.0.0.1 -p "$(free_port)" \
    || fail "call to disabled bob1: $(sipp_summary inv)"
  pass "call to the disabled user -> 404"
  # a restart does not bring the dropped bindings back from the store
  hs_stop
  hs_dir_start
  [ "$(binding_count bob1@example.com)" = 0 ] || fail "bob1's bindings came back from the store"
  pass "dropped bindings are gone from the store too"
  ;;

etcd_down)
  adduser alice --home home1
  adduser bob --home home1
  hs_dir_start
  wait_for 10 metric_is parley_directory_users 2 || fail "directory not loaded"
  reg bob 200 || fail "bob REGISTER: $(sipp_summary reg-bob-200)"
  kill9_etcd
  wait_for 10 metric_is parley_directory_etcd_up 0 || fail "etcd loss not noticed"
  curl -fs -o /dev/null "$HS_ADMIN/healthz" || fail "/healthz fails while etcd is down: $(curl -s "$HS_ADMIN/healthz")"
  pass "etcd killed: noticed (etcd_up 0), /healthz still 200"
  reg alice 200 || fail "REGISTER while etcd is down: $(sipp_summary reg-alice-200)"
  call alice bob || fail "call while etcd is down: $(sipp_summary call-alice-bob)"
  pass "REGISTER with digest and an authenticated call work from the cache"

  if ctl user add frank@example.com --password secret-frank --home home1 >/dev/null 2>&1; then
    fail "parleyctl added a user with etcd down"
  fi
  reg frank 404 || fail "frank should be unknown: $(sipp_summary reg-frank-404)"
  etcd_start "$ETCD_ST" >/dev/null || fail "etcd restart"
  adduser frank --home home1
  wait_for 15 metric_is parley_directory_users 3 || fail "frank not synced after etcd came back"
  reg frank 200 || fail "frank after etcd is back: $(sipp_summary reg-frank-200)"
  pass "user added when etcd is back: unknown (404) before, known (200) after the re-sync"

  kill9_etcd
  hs_stop || true
  hs_dir_start
  [ "$(metric parley_directory_ready)" = 1 ] || fail "directory not ready from disk"
  reg frank 200 || fail "REGISTER after a restart with etcd down: $(sipp_summary reg-frank-200)"
  reg zed 404 || fail "unknown user after restart: $(sipp_summary reg-zed-404)"
  pass "home server restarted while etcd is down authenticates from its disk copy"
  ;;

lease)
  hs_dir_start --lease-ttl 2s
  wait_for 10 has_server home1 || fail "home1 not announced: $(ctl server list)"
  ctl server list | grep "^home1 " | grep -q "sip:127.0.0.1:$HS_PORT;transport=udp" \
    || fail "announced address: $(ctl server list)"
  ctl --json server list | grep -q "\"admin\": *\"$HS_ADMIN\"" || fail "admin URL not announced: $(ctl --json server list)"
  # the admin endpoint shows the same directory view (what this server trusts)
  wait_for 10 bash -c "curl -fs '$HS_ADMIN/api/servers' | grep -q '\"name\":\"home1\"'" \
    || fail "/api/servers: $(curl -s "$HS_ADMIN/api/servers")"
  curl -fs "$HS_ADMIN/api/routes" | python3 -c 'import json,sys; assert "routes" in json.load(sys.stdin)' \
    || fail "/api/routes is not JSON"
  sleep 3   # longer than the TTL: the keep-alive holds it
  has_server home1 || fail "home1 vanished while alive"
  hs_kill9
  start=$(date +%s%N)
  wait_for 10 bash -c "! \"$CTL_BIN\" --etcd \"$ETCD_URL\" server list 2>/dev/null | grep -q '^home1 '" \
    || fail "home1 still listed 10 s after kill -9: $(ctl server list)"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  pass "announced with its address and admin URL, kept alive past the TTL, gone ${ms} ms after kill -9 (TTL 2 s)"
  ;;
*)
  fail "unknown case $CASE"
  ;;
esac
