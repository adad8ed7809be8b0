#!/usr/bin/env bash
# Operations tests of parley-homeserver: configuration precedence and errors, /healthz,
# /metrics under sipp traffic, SIGHUP reload with a call up, SIGTERM with a call in flight.
# usage: run.sh CASE   (HS_BIN = path of parley-homeserver)
# Cases: precedence, bad_config, healthz_store, metrics, reload, sigterm
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SCEN=$HERE/scenarios
HSCEN=$HERE/../homeserver/scenarios
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/homeserver.sh"
source "$HERE/../../lib/sipp.sh"
: "${HS_BIN:?HS_BIN must point at parley-homeserver}"
CASE=${1:?case}

# A pyenv shim costs ~1.5 s per python3 start (free_port, JSON, /metrics parsing): resolve it once.
if command -v pyenv >/dev/null 2>&1; then PYTHON3=$(pyenv which python3 2>/dev/null); fi
PYTHON3=${PYTHON3:-$(command -v python3)}
python3() { "$PYTHON3" "$@"; }

UAS_PORT=$(free_port)

# register_one USER CONTACT_PORT EXPIRES SCENARIO: one REGISTER, expecting what SCENARIO expects
register_one() {
  make_users "$TEST_TMP/$1.csv" "$1" 1
  sipp_run "reg-$1-$3-$(basename "$4" .xml)" 10 "127.0.0.1:$HS_PORT" -sf "$4" -inf "$TEST_TMP/$1.csv" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$2" \
    -key contact_transport udp -key expires "$3" -m 1 -i 127.0.0.1 -p "$(free_port)"
}

# http_code PATH: the status of GET $HS_ADMIN/PATH
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$HS_ADMIN$1"; }

# config_field NAME FIELD: a field ("value", "source", "reloadable") of one row of /config
config_field() {
  curl -fs --max-time 2 "$HS_ADMIN/config" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)[sys.argv[1]][sys.argv[2]]; print(json.dumps(r) if not isinstance(r,str) else r)' "$1" "$2"
}

# hs_restart ARGS...: stop the running server (if any) and start a fresh one on new ports
hs_restart() {
  [ -n "${HS_PID:-}" ] && { hs_stop || fail "homeserver did not stop on SIGTERM"; }
  unset HS_PORT HS_ADMIN_PORT
  hs_start "$@"
}

# wait_for SECONDS CMD...: polls CMD until it succeeds
wait_for() {
  local limit=$1 i; shift
  for ((i = 0; i < limit * 20; i++)); do "$@" && return 0; sleep 0.05; done
  return 1
}

# scrape FILE: saves /metrics
scrape() { curl -fs --max-time 2 "$HS_ADMIN/metrics" >"$1" || fail "GET /metrics"; }

# prom FILE SERIES: the value of SERIES (name or name{labels} as printed) in a saved scrape;
# fails if the text is not valid exposition format 0.0.4 as far as this test reads it.
prom() {
  python3 - "$1" "$2" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
want = sys.argv[2]
line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([-+0-9.eE]+|NaN|[+-]Inf)$')
series = {}
for ln in text.splitlines():
    if ln.startswith('#') or not ln:
        continue
    m = line_re.match(ln)
    if not m:
        sys.exit("bad exposition line: %r" % ln)
    series[m.group(1) + (m.group(2) or '')] = float(m.group(3))
if want not in series:
    sys.exit("no series %s" % want)
v = series[want]
print(int(v) if v == int(v) else v)
PY
}

case "$CASE" in
precedence)
  # default < file < env < flag, observed on the running binary through /config
  conf=$TEST_TMP/hs.conf
  printf '# precedence test\n[homeserver]\nmin-expires = 100\n' >"$conf"
  check() {  # check WANT_VALUE WANT_SOURCE WHAT
    local v s
    v=$(config_field min-expires value) || fail "$3: GET /config"
    s=$(config_field min-expires source)
    [ "$v" = "$1" ] && [ "$s" = "$2" ] || fail "$3: min-expires is $v from $s, want $1 from $2"
    pass "$3: min-expires = $v (source $s)"
  }
  hs_restart;                                       check 60 default "no file, no env, no flag"
  hs_restart --config "$conf";                      check 100 file "file"
  export PARLEY_MIN_EXPIRES=200
  hs_restart --config "$conf";                      check 200 env "file + env"
  hs_restart --config "$conf" --min-expires 300;    check 300 flag "file + env + flag"
  hs_restart --config "$conf" --min-expires=300;    check 300 flag "file + env + --flag=value"
  unset PARLEY_MIN_EXPIRES
  hs_restart --config "$conf" --min-expires 300;    check 300 flag "file + flag"
  # the config file named by the environment instead of --config
  PARLEY_CONFIG=$conf hs_restart;                   check 100 file "PARLEY_CONFIG"
  # and the value is the one the registrar uses: Expires 150 is accepted under min 100
  register_one alice "$UAS_PORT" 150 "$HSCEN/register.xml" || fail "Expires 150 refused with min-expires 100"
  [ "$(config_field data-dir source)" = flag ] || fail "data-dir source is not flag"
  pass "precedence default < file < env < flag holds on the running binary"
  ;;

bad_config)
  data=$TEST_TMP/data
  good=$TEST_TMP/good.conf
  bad=$TEST_TMP/bad.conf
  printf '# a good file\ndomain = example.com\ndata-dir = %s\nmin-expires = 100\n' "$data" >"$good"
  printf '# line 3 is wrong\ndomain = example.com\nmin-expirez = 100\ndata-dir = %s\n' "$data" >"$bad"
  out=$(timeout 10 "$HS_BIN" --config "$bad" 2>"$TEST_TMP/bad.err"); rc=$?
  [ "$rc" = 2 ] || fail "bad config: exit code $rc, want 2"
  grep -q "$bad:3: unknown setting 'min-expirez'" "$TEST_TMP/bad.err" \
    || fail "bad config: stderr is '$(cat "$TEST_TMP/bad.err")', want '$bad:3: unknown setting ...'"
  grep -q "did you mean 'min-expires'" "$TEST_TMP/bad.err" || fail "no suggestion: $(cat "$TEST_TMP/bad.err")"
  pass "unknown key on line 3 -> exit 2, $(head -1 "$TEST_TMP/bad.err")"
  timeout 10 "$HS_BIN" --config "$bad" --check-config >/dev/null 2>&1; rc=$?
  [ "$rc" = 2 ] || fail "--check-config of the bad file: exit $rc, want 2"
  out=$(timeout 10 "$HS_BIN" --config "$good" --check-config 2>&1); rc=$?
  [ "$rc" = 0 ] || fail "--check-config of the good file: exit $rc ($out)"
  echo "$out" | grep -q "configuration ok" || fail "--check-config said '$out'"
  [ ! -e "$data" ] || fail "--check-config created the data dir (it must not start anything)"
  pass "--check-config: good file -> 0 'configuration ok', bad file -> 2"
  # a value out of range in the file, and a bad flag value: exit 2 with where
  printf 'domain = example.com\ndata-dir = %s\nmin-expires = 0\n' "$data" >"$TEST_TMP/range.conf"
  timeout 10 "$HS_BIN" --config "$TEST_TMP/range.conf" 2>"$TEST_TMP/range.err"; rc=$?
  [ "$rc" = 2 ] && grep -q "range.conf:3:.*below the minimum 1" "$TEST_TMP/range.err" \
    || fail "out of range: exit $rc, $(cat "$TEST_TMP/range.err")"
  timeout 10 "$HS_BIN" --config "$good" --timer-t1 fast 2>"$TEST_TMP/flag.err"; rc=$?
  [ "$rc" = 2 ] && grep -q -- "--timer-t1" "$TEST_TMP/flag.err" || fail "bad flag: exit $rc, $(cat "$TEST_TMP/flag.err")"
  # a missing file, and a missing required setting
  timeout 10 "$HS_BIN" --config "$TEST_TMP/nope.conf" 2>"$TEST_TMP/nofile.err"; rc=$?
  [ "$rc" = 2 ] && grep -q "nope.conf" "$TEST_TMP/nofile.err" || fail "missing file: exit $rc, $(cat "$TEST_TMP/nofile.err")"
  timeout 10 "$HS_BIN" --data-dir "$data" 2>"$TEST_TMP/noreq.err"; rc=$?
  [ "$rc" = 2 ] && grep -q "missing required setting 'domain'" "$TEST_TMP/noreq.err" \
    || fail "missing domain: exit $rc, $(cat "$TEST_TMP/noreq.err")"
  pass "out-of-range file value, bad flag value, missing file, missing required setting -> exit 2 with where"
  ;;

healthz_store)
  # Make the store's commits fail for real: the data dir lives on a 1 MiB tmpfs that the
  # test fills with a file. Needs mount(2) (root or CAP_SYS_ADMIN). Without it, the test
  # lowers RLIMIT_FSIZE of the running server to 1 byte with prlimit(1) (SIGXFSZ ignored,
  # so writes fail with EFBIG) and restores it afterwards: the same sqlite failure path.
  mnt=$TEST_TMP/mnt
  mkdir -p "$mnt"
  mode=${OPS_STORE_FAIL:-tmpfs}   # OPS_STORE_FAIL=rlimit forces the fallback
  mounted=0
  if [ "$mode" = tmpfs ] && mount -t tmpfs -o size=1m parley-ops-test "$mnt" 2>/dev/null; then
    mounted=1
  else
    mode=rlimit
    command -v prlimit >/dev/null || fail "neither mount nor prlimit available"
  fi
  ops_exit() {
    local pid
    for pid in "${PARLEY_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    [ "$mounted" = 1 ] && umount "$mnt" 2>/dev/null
    cleanup_all
  }
  trap ops_exit EXIT
  HS_DATA=$mnt/data
  if [ "$mode" = tmpfs ]; then
    hs_start
  else
    # ignored signals stay ignored across exec: SIGXFSZ must not kill the server
    HS_BIN_REAL=$HS_BIN
    HS_BIN=$TEST_TMP/hs-noxfsz.sh
    printf '#!/bin/bash\ntrap "" XFSZ\nexec "%s" "$@"\n' "$HS_BIN_REAL" >"$HS_BIN"
    chmod +x "$HS_BIN"
    hs_start
  fi
  register_one alice "$UAS_PORT" 3600 "$HSCEN/register.xml" || fail "first REGISTER not 200"
  [ "$(http_code /healthz)" = 200 ] || fail "/healthz not 200 before the disk fills"
  if [ "$mode" = tmpfs ]; then
    dd if=/dev/zero of="$mnt/filler" bs=64k 2>/dev/null   # stops at ENOSPC
    [ "$(df --output=avail -B1 "$mnt" | tail -1 | tr -d ' ')" = 0 ] || fail "tmpfs not full"
  else
    prlimit --pid "$HS_PID" --fsize=1: || fail "prlimit"   # soft limit only: raising it back needs no privilege
  fi
  register_one bob "$UAS_PORT" 3600 "$SCEN/register_500.xml" || fail "REGISTER with the store full not answered 500"
  [ "$(http_code /healthz)" = 503 ] || fail "/healthz is $(http_code /healthz) with failing commits, want 503"
  curl -s --max-time 2 "$HS_ADMIN/healthz" | grep -q "store" || fail "/healthz does not name the store"
  [ "$(metric parley_store_commit_failures_total)" -ge 1 ] || fail "commit failure not counted"
  pass "store unwritable ($mode): REGISTER -> 500, /healthz -> 503 ($(curl -s --max-time 2 "$HS_ADMIN/healthz" | tr -d '\n'))"
  if [ "$mode" = tmpfs ]; then
    rm -f "$mnt/filler"
  else
    prlimit --pid "$HS_PID" --fsize=unlimited: || fail "prlimit restore"
  fi
  register_one carol "$UAS_PORT" 3600 "$HSCEN/register.xml" || fail "REGISTER after space came back not 200"
  [ "$(http_code /healthz)" = 200 ] || fail "/healthz did not come back to 200"
  [ "$(binding_count carol0@example.com)" = 1 ] || fail "carol not bound"
  hs_stop || fail "homeserver did not stop"
  pass "space back: REGISTER -> 200, /healthz -> 200"
  ;;

metrics)
  # T1 = 50 ms: UDP server transactions linger 64*T1 (Timer J) = 3.2 s after the answer.
  # Calls over TCP: no Timer K/J wait on a reliable transport.
  hs_start --timer-t1 50ms
  scrape "$TEST_TMP/m0.txt"
  req0=$(prom "$TEST_TMP/m0.txt" parley_sip_requests_received_total) || fail "parse scrape 0"
  make_users "$TEST_TMP/callee.csv" callee 20
  sipp_run reg 20 "127.0.0.1:$HS_PORT" -sf "$HSCEN/register.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" \
    -key contact_transport tcp -key expires 3600 -m 20 -r 100 -i 127.0.0.1 -p "$(free_port)" -t t1 \
    || fail "20 REGISTERs: $(sipp_summary reg)"
  sipp_bg uas -sf "$HSCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -t t1 -m 10
  uas=$LAST_PID
  sleep 0.2
  sipp_run uac 30 "127.0.0.1:$HS_PORT" -sf "$HSCEN/uac_call.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -i 127.0.0.1 -p "$(free_port)" -t t1 -m 10 -r 10 \
    || fail "10 calls: $(sipp_summary uac)"
  wait "$uas" || fail "callee side: $(tail -5 "$TEST_TMP/uas.out")"
  tx_zero() {
    scrape "$TEST_TMP/m2.txt"
    [ "$(prom "$TEST_TMP/m2.txt" 'parley_transactions{kind="server"}')" = 0 ] &&
      [ "$(prom "$TEST_TMP/m2.txt" 'parley_transactions{kind="client"}')" = 0 ]
  }
  scrape "$TEST_TMP/m1.txt"
  req1=$(prom "$TEST_TMP/m1.txt" parley_sip_requests_received_total) || fail "parse scrape 1"
  # Over TCP there is no retransmission. Requests that open a server transaction:
  # 20 REGISTER + 10 x (INVITE, BYE) = 40. The ACK of a 2xx has no transaction: the proxy
  # forwards it statelessly (RFC 3261 §16.11) and counts it there, not as received (10).
  [ $((req1 - req0)) = 40 ] || fail "requests received grew by $((req1 - req0)), want 40"
  st0=$(prom "$TEST_TMP/m0.txt" parley_proxy_stateless_forwarded_total)
  st1=$(prom "$TEST_TMP/m1.txt" parley_proxy_stateless_forwarded_total)
  [ $((st1 - st0)) = 10 ] || fail "stateless forwards grew by $((st1 - st0)), want 10 (the ACKs)"
  # every SIP message the transport read: 20 REGISTER + 10 x (INVITE, 180, 200, ACK, BYE, 200)
  rx0=$(prom "$TEST_TMP/m0.txt" parley_transport_messages_received_total)
  rx1=$(prom "$TEST_TMP/m1.txt" parley_transport_messages_received_total)
  [ $((rx1 - rx0)) = 80 ] || fail "transport messages received grew by $((rx1 - rx0)), want 80"
  resp=$(prom "$TEST_TMP/m1.txt" parley_sip_responses_received_total)
  [ "$resp" -ge 30 ] || fail "responses received $resp, want >= 30 (180, 200 per INVITE, 200 per BYE)"
  fwd=$(prom "$TEST_TMP/m1.txt" parley_proxy_forwarded_total)
  [ "$fwd" -ge 20 ] || fail "forwarded $fwd, want >= 20 (INVITE and BYE of 10 calls)"
  [ "$(prom "$TEST_TMP/m1.txt" parley_registrar_bindings)" = 20 ] || fail "bindings gauge is not 20"
  [ "$(prom "$TEST_TMP/m1.txt" parley_registrar_aors)" = 20 ] || fail "aors gauge is not 20"
  [ "$(prom "$TEST_TMP/m1.txt" parley_store_commits_total)" -ge 1 ] || fail "no store commit counted"
  [ "$(prom "$TEST_TMP/m1.txt" parley_sip_parse_errors_total)" = 0 ] || fail "parse errors counted"
  grep -q '^# TYPE parley_sip_requests_received_total counter$' "$TEST_TMP/m1.txt" || fail "TYPE line missing"
  grep -q '^# TYPE parley_transactions gauge$' "$TEST_TMP/m1.txt" || fail "TYPE line missing"
  prom "$TEST_TMP/m1.txt" process_resident_memory_bytes >/dev/null || fail "process metrics missing"
  wait_for 10 tx_zero || fail "transactions gauge did not return to 0: $(grep '^parley_transactions' "$TEST_TMP/m2.txt")"
  pass "requests +40 (+10 ACKs stateless), transport +80, responses $resp, forwarded $fwd, bindings 20, transactions back to 0"
  ;;

reload)
  conf=$TEST_TMP/hs.conf
  printf 'log-level = info\nmin-expires = 60\nmax-headers = 256\n' >"$conf"
  hs_start --config "$conf"
  make_users "$TEST_TMP/callee.csv" callee 1
  register_one callee "$UAS_PORT" 3600 "$HSCEN/register.xml" || fail "register callee"
  sipp_bg uas -sf "$HSCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  uas=$LAST_PID
  sleep 0.2
  sipp_bg uac "127.0.0.1:$HS_PORT" -sf "$SCEN/uac_call_pause.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -i 127.0.0.1 -p "$(free_port)" -m 1 -timeout 20s -timeout_error
  uac=$LAST_PID
  # the call is up once the ACK went through (an ACK for a 2xx is forwarded statelessly)
  up() { [ "$(metric parley_proxy_stateless_forwarded_total)" -ge 1 ] 2>/dev/null; }
  wait_for 5 up || fail "call not established"
  printf 'log-level = debug\nmin-expires = 120\nmax-headers = 300\n' >"$conf"
  kill -HUP "$HS_PID"
  reloaded() { [ "$(config_field min-expires value)" = 120 ]; }
  wait_for 5 reloaded || fail "min-expires is $(config_field min-expires value) after SIGHUP, want 120"
  kill -0 "$uac" 2>/dev/null || fail "the call ended before the reload was checked (pause too short?)"
  [ "$(config_field log-level value)" = debug ] || fail "log-level not reloaded"
  [ "$(config_field max-headers value)" = 256 ] || fail "max-headers (not reloadable) changed on reload"
  grep -q "configuration reloaded, 2 setting(s) changed" "$TEST_TMP/homeserver.log" \
    || fail "no reload line in the log: $(tail -5 "$TEST_TMP/homeserver.log")"
  grep -q "max-headers" "$TEST_TMP/homeserver.log" || fail "ignored non-reloadable change not logged"
  wait "$uac" || fail "the call did not complete across the reload: $(tail -20 "$TEST_TMP/uac.out")"
  wait "$uas" || fail "callee side: $(tail -20 "$TEST_TMP/uas.out")"
  pass "SIGHUP with a call up: min-expires 60 -> 120, log-level -> debug, max-headers kept; the call completed"
  register_one late "$UAS_PORT" 100 "$SCEN/register_423_120.xml" \
    || fail "Expires 100 after the reload not refused with 423 Min-Expires: 120"
  register_one ok "$UAS_PORT" 150 "$HSCEN/register.xml" || fail "Expires 150 refused after the reload"
  # a broken file on reload: refused, nothing changes, the server keeps running
  printf 'min-expires = 30\nbogus-key = 1\n' >"$conf"
  kill -HUP "$HS_PID"
  refused() { grep -q "reload failed: .*hs.conf:2: unknown setting 'bogus-key'" "$TEST_TMP/homeserver.log"; }
  wait_for 5 refused || fail "bad file on reload not reported: $(tail -3 "$TEST_TMP/homeserver.log")"
  [ "$(config_field min-expires value)" = 120 ] || fail "a refused reload changed min-expires"
  # and POST /api/reload does the same as SIGHUP
  printf 'min-expires = 90\n' >"$conf"
  curl -fs --max-time 2 -X POST "$HS_ADMIN/api/reload" >/dev/null || fail "POST /api/reload"
  [ "$(config_field min-expires value)" = 90 ] || fail "POST /api/reload did not apply min-expires"
  hs_stop || fail "homeserver did not stop"
  pass "after the reload: Expires 100 -> 423 Min-Expires: 120, 150 -> 200; bad file refused; /api/reload"
  ;;

sigterm)
  hs_start --shutdown-grace 3s
  make_users "$TEST_TMP/callee.csv" callee 1
  register_one callee "$UAS_PORT" 3600 "$HSCEN/register.xml" || fail "register callee"
  # the callee answers 1.5 s after the INVITE: SIGTERM lands while the INVITE transaction is open
  sipp_bg uas -sf "$SCEN/uas_slow_answer.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  uas=$LAST_PID
  sleep 0.2
  sipp_bg uac "127.0.0.1:$HS_PORT" -sf "$SCEN/uac_invite.xml" -inf "$TEST_TMP/callee.csv" \
    -key domain example.com -i 127.0.0.1 -p "$(free_port)" -m 1 -timeout 15s -timeout_error
  uac=$LAST_PID
  ringing() { [ "$(metric parley_proxy_forwarded_total)" -ge 1 ] 2>/dev/null; }
  wait_for 5 ringing || fail "INVITE not forwarded"
  t0=$(date +%s%N)
  kill -TERM "$HS_PID"
  # stops accepting: new TCP connections refused, new requests over UDP answered 503
  refused() { ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$HS_PORT" 2>/dev/null; }
  wait_for 2 refused || fail "TCP listener still accepting after SIGTERM"
  register_one newcomer "$UAS_PORT" 3600 "$SCEN/register_503.xml" || fail "new REGISTER during shutdown not 503"
  wait "$uac" || fail "the INVITE in flight was not answered 200 during the grace: $(tail -20 "$TEST_TMP/uac.out")"
  wait "$HS_PID"; rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$rc" = 0 ] || fail "exit code $rc after SIGTERM, want 0"
  [ "$ms" -le 4500 ] || fail "stopped $ms ms after SIGTERM, grace is 3000 ms"
  wait "$uas" || fail "callee side: $(tail -20 "$TEST_TMP/uas.out")"
  grep -q "shutting down" "$TEST_TMP/homeserver.log" && grep -q "stopped" "$TEST_TMP/homeserver.log" \
    || fail "shutdown not logged"
  pass "SIGTERM: listener closed, new REGISTER 503, INVITE in flight got its 200, exit 0 after $ms ms"
  ;;

*)
  fail "unknown case $CASE"
  ;;
esac
