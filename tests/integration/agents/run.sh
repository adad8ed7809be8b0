#!/usr/bin/env bash
# Integration tests of agents (shared/agent, agents/) and archiving (homeserver/hs_archive.c).
#   usage: run.sh CASE    (HS_BIN = parley-homeserver, AGENT_BIN = test_agent, EX_DIR = examples)
# Cases: respond, trying, timeout, stall, critical, kill, garbage, examples, archive, archive_full
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SCEN=$HERE/scenarios
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/homeserver.sh"
source "$HERE/../../lib/sipp.sh"
# sipp_bg's PID is timeout(1), which passes SIGTERM on to sipp; the SIGKILL of cleanup_all
# alone would leave a sipp without -m running: SIGTERM everything first.
term_all() {
  local p
  for p in "${PARLEY_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.2
}
trap 'term_all; cleanup_all' EXIT
: "${HS_BIN:?HS_BIN must point at parley-homeserver}"
: "${AGENT_BIN:?AGENT_BIN must point at test_agent}"
CASE=${1:?case}
SOCK=$TEST_TMP/agents.sock
EV=$TEST_TMP/events.log
UAC="python3 $HERE/uac.py"

# manifest NAME CRITICAL HANDLER: an application dispatching MESSAGE and INVITE to HANDLER
manifest() {
  cat > "$TEST_TMP/$1.am" <<EOT
name: $1
critical: $2
request-filter: MESSAGE, INVITE
response-filter: none
---
if (!Dispatch("$3")) { Respond(503, "Agent Busy"); }
EOT
  echo "$TEST_TMP/$1.am" > "$TEST_TMP/chain.conf"
}

agent() {  # agent NAME ARGS...: a test agent in the background; waits until it registered
  bg "$1" "$AGENT_BIN" --socket "$SOCK" --events "$EV" "${@:2}"
  AGENT_PID=$LAST_PID
  local i
  for ((i = 0; i < 100; i++)); do grep -q "^registered" "$EV" 2>/dev/null && return 0; sleep 0.05; done
  fail "agent $1 did not register"
}

hs_agents() {  # hs_agents [extra args]: the home server with the test chain and the agent socket
  hs_start --app-chain "$TEST_TMP/chain.conf" --agent-socket "$SOCK" "$@"
}

wait_gone() {  # wait_gone PID SECONDS
  local i
  for ((i = 0; i < $2 * 20; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
  return 1
}

UAS_PORT=$(free_port)
RURI="sip:uas@127.0.0.1:$UAS_PORT"
# Requests passed on to the Request-URI (a sipp UAS on loopback) must come from a trusted
# source when the server has the trust layer (no open relay for clients): an extra
# listener trusted for 127.0.0.1. RELAY_PORT is where such requests are sent.
RELAY_ARGS=()
relay_setup() {
  if grep -q -- "--trusted-listener" <<<"$("$HS_BIN" --help 2>&1)"; then
    RELAY_PORT=$(free_port)
    RELAY_ARGS=(--trusted-listener "udp:127.0.0.1:$RELAY_PORT=127.0.0.1")
  else
    RELAY_PORT=$HS_PORT
  fi
}

case "$CASE" in
respond)
  # a dispatched MESSAGE answered by the agent (RESPOND 200 with its own header)
  manifest disp false testapp
  hs_agents
  agent a1 --app testapp --mode respond
  out=$($UAC one "127.0.0.1:$HS_PORT" MESSAGE "$RURI" 5)
  echo "$out" | grep -q "^final 200" || fail "expected 200 from the agent, got: $out"
  echo "$out" | grep -q "x-agent: test_agent" || fail "the agent's header is missing: $out"
  grep -q "^request MESSAGE" "$EV" || fail "the agent saw no MESSAGE"
  [ "$(metric parley_agent_dispatched_total)" = 1 ] || fail "dispatched_total != 1"
  [ "$(metric parley_agent_round_trips_total)" = 1 ] || fail "round_trips_total != 1"
  rtt=$(metric 'parley_agent_round_trip_seconds{quantile="0.99"}')
  python3 -c "import sys; sys.exit(0 if 0 < float('$rtt') < 5 else 1)" || fail "round trip p99 '$rtt' not in (0, 5) s"
  pass "dispatched MESSAGE answered 200 by the agent (round trip ${rtt}s)"
  ;;
trying)
  # an INVITE held 6 s with TRYING every 2 s outlives a 3 s transaction lifetime
  manifest disp false testapp
  hs_agents --transaction-lifetime 3s
  agent a1 --app testapp --mode hold --hold-ms 6000 --trying-ms 1500
  start=$(date +%s.%N)
  out=$($UAC one "127.0.0.1:$HS_PORT" INVITE "$RURI" 12)
  el=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
  echo "$out" | grep -q "^final 486" || fail "expected the agent's 486 after the hold, got: $out (after ${el}s)"
  python3 -c "import sys; sys.exit(0 if $el >= 5.5 else 1)" || fail "answered too early (${el}s)"
  [ "$(grep -c '^trying' "$EV")" -ge 2 ] || fail "the agent sent fewer than 2 TRYING"
  grep -q "^event timeout" "$EV" && fail "the transaction timed out despite TRYING"
  pass "INVITE held ${el}s with TRYING past a 3 s lifetime; caller got 486"
  ;;
timeout)
  # an agent that never answers: the caller gets 408, the agent an EVENT timeout
  manifest disp false testapp
  hs_agents --transaction-lifetime 2s
  agent a1 --app testapp --mode never
  out=$($UAC one "127.0.0.1:$HS_PORT" INVITE "$RURI" 8)
  echo "$out" | grep -q "^final 408" || fail "expected 408, got: $out"
  for ((i = 0; i < 40; i++)); do grep -q "^event timeout" "$EV" && break; sleep 0.05; done
  grep -q "^event timeout" "$EV" || fail "the agent got no timeout event"
  pass "unanswered INVITE: caller 408, agent EVENT timeout"
  ;;
stall|critical)
  # a stalled agent: its queue (3) fills, Dispatch() fails -> the script answers 503;
  # after the stall timeout it is disconnected; a critical one stops the server (exit 0)
  crit=false; [ "$CASE" = critical ] && crit=true
  manifest disp $crit testapp
  hs_agents --agent-queue 3 --agent-stall-timeout 2s --transaction-lifetime 20s
  agent a1 --app testapp --mode stall
  res=$($UAC many "127.0.0.1:$HS_PORT" MESSAGE "$RURI" 8 1.5)
  echo "$res" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d.get("503",0)>=5 else 1)' \
    || fail "expected >= 5 answers 503 with a full queue: $res"
  if [ "$CASE" = stall ]; then
    for ((i = 0; i < 100; i++)); do [ "$(metric parley_agent_stalled_total)" = 1 ] && break; sleep 0.05; done
    [ "$(metric parley_agent_stalled_total)" = 1 ] || fail "the stalled agent was not disconnected"
    grep -q "left its queue full" "$TEST_TMP/homeserver.log" || fail "no log line for the stall"
    kill -0 "$HS_PID" || fail "the server died"
    pass "full queue -> 503; stalled agent disconnected after 2 s; server keeps running"
  else
    wait_gone "$HS_PID" 10 || fail "the server did not stop after its critical agent stalled"
    wait "$HS_PID"; rc=$?
    [ $rc = 0 ] || fail "exit status $rc, expected 0 (clean shutdown)"
    grep -q "critical: shutting the server down" "$TEST_TMP/homeserver.log" || fail "no log line"
    pass "critical agent stalled -> clean shutdown (exit 0)"
  fi
  ;;
kill)
  # the agent dies with requests in flight: non-critical -> passed on to the Request-URI
  manifest disp false testapp
  sipp_bg uas -sf "$SCEN/uas_msg.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 5
  HS_PORT=$(free_port); relay_setup
  hs_agents --transaction-lifetime 20s "${RELAY_ARGS[@]}"
  agent a1 --app testapp --mode never
  ( $UAC many "127.0.0.1:$RELAY_PORT" MESSAGE "$RURI" 5 6 > "$TEST_TMP/kill.json" ) &
  UPID=$!; PARLEY_PIDS+=("$UPID")
  for ((i = 0; i < 100; i++)); do [ "$(grep -c '^request' "$EV")" -ge 5 ] && break; sleep 0.05; done
  kill -9 "$AGENT_PID"
  wait "$UPID"
  res=$(cat "$TEST_TMP/kill.json")
  echo "$res" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d.get("200",0)==5 else 1)' \
    || fail "expected the 5 MESSAGEs passed on (200): $res"
  [ "$(metric parley_agent_passed_on_total)" = 5 ] || fail "passed_on_total != 5"
  # critical: answered 503
  hs_stop; : > "$EV"
  manifest disp true testapp
  HS_PORT=; HS_ADMIN_PORT=; hs_agents --transaction-lifetime 20s
  agent a2 --app testapp --mode never
  ( $UAC many "127.0.0.1:$HS_PORT" MESSAGE "$RURI" 3 6 > "$TEST_TMP/kill2.json" ) &
  UPID=$!; PARLEY_PIDS+=("$UPID")
  for ((i = 0; i < 100; i++)); do [ "$(grep -c '^request' "$EV")" -ge 3 ] && break; sleep 0.05; done
  kill -9 "$AGENT_PID"
  wait "$UPID"
  res=$(cat "$TEST_TMP/kill2.json")
  echo "$res" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d.get("503",0)==3 else 1)' \
    || fail "expected 503 for the critical application's requests: $res"
  pass "agent killed mid-transaction: passed on (5x 200) / critical: 503 (3x), none lost"
  ;;
garbage)
  # garbage, a wrong secret and an oversize frame header are refused; the server survives
  manifest disp false testapp
  hs_agents --agent-secret s3cret
  python3 - "$SOCK" <<'PY' || fail "garbage client"
import socket, sys, struct
for payload in [b"GET / HTTP/1.1\r\n\r\n", b"PA\x01\x0a" + struct.pack(">I", 0x7fffffff),
                b"PA\x01\x01" + struct.pack(">I", 0)]:
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(payload); s.settimeout(2)
    try:
        while s.recv(4096): pass
    except socket.timeout:
        sys.exit("server kept a garbage connection open")
    s.close()
PY
  bg bad "$AGENT_BIN" --socket "$SOCK" --app testapp --mode respond --secret wrong
  sleep 0.5
  grep -q "bad secret" "$TEST_TMP/homeserver.log" || fail "a wrong secret was not refused"
  kill "$LAST_PID"
  bg a1 "$AGENT_BIN" --socket "$SOCK" --events "$EV" --app testapp --mode respond --secret s3cret
  for ((i = 0; i < 100; i++)); do grep -q "^registered" "$EV" 2>/dev/null && break; sleep 0.05; done
  out=$($UAC one "127.0.0.1:$HS_PORT" MESSAGE "$RURI" 5)
  echo "$out" | grep -q "^final 200" || fail "after garbage the server does not serve agents: $out"
  [ "$(metric parley_agent_protocol_errors_total)" -ge 2 ] || fail "protocol errors not counted"
  pass "garbage, oversize and bad secret refused; the server still serves agents"
  ;;
examples)
  : "${EX_DIR:?EX_DIR}"
  # msglog
  manifest disp false msglog
  sipp_bg uas -sf "$SCEN/uas_msg.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 1
  HS_PORT=$(free_port); relay_setup
  hs_agents "${RELAY_ARGS[@]}"
  bg msglog "$EX_DIR/parley-agent-msglog" --socket "$SOCK" --file "$TEST_TMP/im.log"
  for ((i = 0; i < 100; i++)); do [ "$(metric parley_agents_connected)" = 1 ] && break; sleep 0.05; done
  out=$($UAC one "127.0.0.1:$RELAY_PORT" MESSAGE "$RURI" 5)
  echo "$out" | grep -q "^final 200" || fail "msglog: MESSAGE not passed on: $out"
  grep -q "hello 0" "$TEST_TMP/im.log" || fail "msglog: nothing logged"
  kill "$LAST_PID"; hs_stop
  # ftscan (488 for a blocked file name) and voicemail (302 after hours)
  printf 'name:evil.exe\nsha-1:AA:BB\n' > "$TEST_TMP/block.txt"
  cat > "$TEST_TMP/both.am" <<EOT
name: both
request-filter: INVITE
---
if (GetHeader("Subject") == "ft") { Dispatch("ftscan"); } else { Dispatch("voicemail"); }
EOT
  echo "$TEST_TMP/both.am" > "$TEST_TMP/chain.conf"
  HS_PORT=; HS_ADMIN_PORT=; hs_agents
  bg ftscan "$EX_DIR/parley-agent-ftscan" --socket "$SOCK" --blocklist "$TEST_TMP/block.txt"
  sqlite3 "$TEST_TMP/hours.db" "CREATE TABLE hours (dow INTEGER, open_min INTEGER, close_min INTEGER);"
  bg vm "$EX_DIR/parley-agent-voicemail" --socket "$SOCK" --db "$TEST_TMP/hours.db" --voicemail sip:vm@example.com
  for ((i = 0; i < 100; i++)); do [ "$(metric parley_agents_connected)" = 2 ] && break; sleep 0.05; done
  out=$(python3 "$HERE/ft_invite.py" "127.0.0.1:$HS_PORT" "$RURI" evil.exe)
  echo "$out" | grep -q "^final 488" || fail "ftscan: blocked file not refused: $out"
  out=$($UAC one "127.0.0.1:$HS_PORT" INVITE "$RURI" 5)
  echo "$out" | grep -q "^final 302" || fail "voicemail: expected 302 after hours: $out"
  echo "$out" | grep -q "sip:vm@example.com" || fail "voicemail: no Contact: $out"
  pass "examples: msglog logs and passes, ftscan 488 on a blocked file, voicemail 302 after hours"
  ;;
archive)
  # every MESSAGE of a 10,000-MESSAGE sipp run is one archive row with from/to/time/body,
  # every call has a setup (INVITE 2xx) and a teardown (BYE) row, and /metrics shows
  # nothing lost. ARCHIVE_N / ARCHIVE_CALLS / ARCHIVE_RATE override the defaults.
  N=${ARCHIVE_N:-10000}; C=${ARCHIVE_CALLS:-200}; RATE=${ARCHIVE_RATE:-500}
  echo "" > "$TEST_TMP/chain.conf"
  CALL_PORT=$(free_port)
  sipp_bg uas -sf "$SCEN/uas_msg.xml" -i 127.0.0.1 -p "$UAS_PORT" -m "$N"
  sipp_bg uas_call -sf "$SCEN/uas_call.xml" -i 127.0.0.1 -p "$CALL_PORT" -m "$C"
  HS_PORT=$(free_port); relay_setup
  hs_start --app-chain none --archive --log-level warn "${RELAY_ARGS[@]}"
  t0=$(date +%s%3N)
  sipp_run uac $((N / RATE + 40)) "127.0.0.1:$RELAY_PORT" -sf "$SCEN/uac_msg.xml" -key uas_port "$UAS_PORT" \
    -i 127.0.0.1 -p "$(free_port)" -m "$N" -r "$RATE" -l 2000 || fail "sipp MESSAGE: $(sipp_summary uac)"
  sipp_run uac_call 30 "127.0.0.1:$RELAY_PORT" -sf "$SCEN/uac_call.xml" -key uas_port "$CALL_PORT" \
    -i 127.0.0.1 -p "$(free_port)" -m "$C" -r 100 -l 200 || fail "sipp calls: $(sipp_summary uac_call)"
  t1=$(date +%s%3N)
  total=$((N + 2 * C))
  for ((i = 0; i < 200; i++)); do [ "$(metric parley_archive_written_total)" = "$total" ] && break; sleep 0.05; done
  for m in queued_total:$total written_total:$total lost_total:0 queue_full_total:0 refused_total:0 behind:0 \
           queue_depth:0; do
    v=$(metric "parley_archive_${m%%:*}")
    [ "$v" = "${m#*:}" ] || fail "parley_archive_${m%%:*} = '$v', expected ${m#*:}"
  done
  hs_stop || fail "the server did not stop on SIGTERM"
  DB=$HS_DATA/archive.db
  q() { sqlite3 "$DB" "$1"; }
  rows=$(q "SELECT count(*), count(DISTINCT call_id), count(DISTINCT CAST(body AS TEXT)) FROM messages")
  [ "$rows" = "$N|$N|$N" ] || fail "messages (rows|call-ids|bodies) = $rows, expected $N|$N|$N"
  bad=$(q "SELECT count(*) FROM messages WHERE from_uri IS NOT 'sip:sender@example.com'
             OR to_uri IS NOT 'sip:uas@127.0.0.1:$UAS_PORT' OR ts_ms < $t0 OR ts_ms > $t1
             OR CAST(body AS TEXT) NOT GLOB 'message number [0-9]*'")
  [ "$bad" = 0 ] || fail "$bad message rows lack from/to/time/body: $(q "SELECT * FROM messages LIMIT 3")"
  calls=$(q "SELECT event, count(*), count(DISTINCT call_id) FROM calls WHERE status IS NOT NULL
               AND from_uri = 'sip:caller@example.com' AND to_uri = 'sip:callee@127.0.0.1:$CALL_PORT'
               AND ts_ms BETWEEN $t0 AND $t1 GROUP BY event ORDER BY event" | tr '\n' ' ')
  [ "$calls" = "setup|$C|$C teardown|$C|$C " ] || fail "call rows = '$calls', expected setup and teardown x $C"
  paired=$(q "SELECT count(*) FROM calls s JOIN calls t ON s.call_id = t.call_id
                WHERE s.event = 'setup' AND s.status = 200 AND t.event = 'teardown' AND t.ts_ms >= s.ts_ms")
  [ "$paired" = "$C" ] || fail "$paired calls have a 200 setup followed by a teardown, expected $C"
  pass "archive: $N MESSAGEs at $RATE/s = $N rows (from/to/time/body), $C calls = $C setup + $C teardown rows, 0 lost"
  ;;
archive_full)
  # the archive cannot keep up (another process holds its database): /metrics and the log
  # say so; not critical: MESSAGEs are still delivered and the records lost are counted;
  # critical: new MESSAGEs are answered 503, every delivered one is archived, none lost
  echo "" > "$TEST_TMP/chain.conf"
  sipp_bg uas -sf "$SCEN/uas_msg.xml" -i 127.0.0.1 -p "$UAS_PORT"
  for crit in no yes; do
    # HS_ADMIN_PORT is read by hs_start (tests/lib/homeserver.sh)
    # shellcheck disable=SC2034
    HS_ADMIN_PORT=
    HS_PORT=$(free_port); HS_DATA=$TEST_TMP/data-$crit; relay_setup
    args=(--archive --archive-queue 4); [ $crit = yes ] && args+=(--archive-critical)
    hs_start --app-chain none "${args[@]}" "${RELAY_ARGS[@]}"
    rm -f "$TEST_TMP/locked" "$TEST_TMP/unlock"
    cat > "$TEST_TMP/locker.py" <<'PY'
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close()
end = time.time() + 30
while not os.path.exists(sys.argv[3]) and time.time() < end:
    time.sleep(0.02)
db.execute("COMMIT")
PY
    bg "locker-$crit" python3 "$TEST_TMP/locker.py" "$HS_DATA/archive.db" "$TEST_TMP/locked" "$TEST_TMP/unlock"
    LPID=$LAST_PID
    for ((i = 0; i < 100; i++)); do [ -e "$TEST_TMP/locked" ] && break; sleep 0.05; done
    [ -e "$TEST_TMP/locked" ] || fail "could not lock the archive"
    # one MESSAGE first: the writer takes its record and blocks on the lock; then 20 at
    # once: 4 fill the queue, 16 find it full
    out=$($UAC one "127.0.0.1:$RELAY_PORT" MESSAGE "$RURI" 5)
    echo "$out" | grep -q "^final 200" || fail "[$crit] first MESSAGE: $out"
    for ((i = 0; i < 100; i++)); do
      [ "$(metric parley_archive_queued_total)/$(metric parley_archive_queue_depth)" = 1/0 ] && break; sleep 0.05
    done
    [ "$(metric parley_archive_queued_total)/$(metric parley_archive_queue_depth)" = 1/0 ] \
      || fail "[$crit] the writer did not take the first record"
    res=$($UAC many "127.0.0.1:$RELAY_PORT" MESSAGE "$RURI" 20 10)
    read -r n200 n503 < <(echo "$res" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("200",0), d.get("503",0))')
    [ "$(metric parley_archive_behind)" = 1 ] || fail "[$crit] parley_archive_behind is not 1 with a full queue"
    [ "$(metric parley_archive_queue_depth)" = 4 ] || fail "[$crit] queue depth $(metric parley_archive_queue_depth), expected 4"
    [ "$(metric parley_archive_queue_limit)" = 4 ] || fail "[$crit] queue limit not shown"
    full=$(metric parley_archive_queue_full_total)
    [ "$full" = 16 ] || fail "[$crit] queue_full_total = '$full', expected 16"
    grep -q "cannot keep up: the archive queue is full" "$TEST_TMP/homeserver.log" || fail "[$crit] no log line"
    for ((i = 0; i < 100; i++)); do grep -q "locked by another process; retrying" "$TEST_TMP/homeserver.log" && break; sleep 0.05; done
    grep -q "locked by another process; retrying" "$TEST_TMP/homeserver.log" || fail "[$crit] the writer did not retry"
    if [ $crit = yes ]; then
      [ "$n200/$n503" = 4/16 ] || fail "[critical] expected 4x 200 (queued) and 16x 503: $res"
      [ "$(metric parley_archive_refused_total)" = 16 ] || fail "[critical] refused_total != 16"
      [ "$(metric parley_archive_lost_total)" = 0 ] || fail "[critical] lost_total != 0"
    else
      [ "$n200" = 20 ] || fail "[not critical] every MESSAGE is still delivered: $res"
      [ "$(metric parley_archive_lost_total)" = 16 ] || fail "[not critical] lost_total != 16"
    fi
    touch "$TEST_TMP/unlock"
    wait_gone "$LPID" 10 || fail "the locker did not finish"
    queued=$(metric parley_archive_queued_total)
    for ((i = 0; i < 200; i++)); do [ "$(metric parley_archive_written_total)" = "$queued" ] && break; sleep 0.05; done
    [ "$(metric parley_archive_written_total)" = "$queued" ] || fail "[$crit] the queue did not drain after the lock"
    [ "$(metric parley_archive_behind)" = 0 ] || fail "[$crit] still behind after draining"
    hs_stop || fail "[$crit] the server did not stop"
    rows=$(sqlite3 "$HS_DATA/archive.db" "SELECT count(*) FROM messages")
    [ "$rows/$queued" = 5/5 ] || fail "[$crit] $rows rows, $queued records queued, expected 5"
    if [ $crit = yes ]; then
      pass "archive critical, database locked: 16 MESSAGEs answered 503, 5 delivered = 5 rows, 0 lost"
    else
      pass "archive not critical, database locked: 21 delivered, 5 archived, 16 lost (counted)"
    fi
  done
  ;;
*)
  fail "unknown case $CASE"
  ;;
esac
exit 0
