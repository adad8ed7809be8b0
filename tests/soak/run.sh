#!/usr/bin/env bash
# Soak test of parley-homeserver (NOT in CI: ~11 minutes). Bounded: SOAK_SECONDS (600).
#
#   tests/soak/run.sh <parley-homeserver>
#   SOAK_SECONDS=120 SOAK_FRACTION=50 tests/soak/run.sh build-rel/homeserver/parley-homeserver
#
# 1. measures the highest MESSAGE rate the server sustains through the proxy (15 s, sipp
#    with a concurrency cap; the rate achieved with no failure is the maximum);
# 2. runs SOAK_SECONDS of mixed load at SOAK_FRACTION % (50) of that rate, in requests per
#    second: 60 % MESSAGE (proxied to a sipp UAS), 30 % REGISTER (1000 users re-registering,
#    each a store commit), 10 % in calls (INVITE/ACK/BYE, held 1 s; a call counts 3);
# 3. samples the server's RSS (VmRSS) every 10 s into rss.tsv.
# Prints the load average, the rates, sipp's successful/failed counts and the RSS growth
# from the first sample after a 60 s warm-up to the end. Exit 1 if any transaction
# failed, RSS grew by more than SOAK_RSS_MAX_GROWTH_MIB (32) after the warm-up, or the
# server died. Results stay in $SOAK_OUT (default a temp dir). Every sipp runs under
# timeout(1) (SOAK_SECONDS + 60 s), so the whole run is bounded (~SOAK_SECONDS + 2 min).
# Run it on a quiet machine (a loaded one turns into client-side timeouts) with a
# release build, and put the summary lines in the README's Robustness section.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
HSCEN=$HERE/../integration/homeserver/scenarios
FSCEN=$HERE/../integration/faults/scenarios
HS_BIN=$(realpath "${1:?usage: run.sh <parley-homeserver>}")
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_FRACTION=${SOAK_FRACTION:-50}
# Fail when RSS grows by more than this many MiB from the first sample after the 60 s
# warm-up to the end (the last 10-minute run: +12.9 MiB).
SOAK_RSS_MAX_GROWTH_MIB=${SOAK_RSS_MAX_GROWTH_MIB:-32}
KEEP_TMP=1
source "$HERE/../lib/common.sh"
source "$HERE/../lib/homeserver.sh"
source "$HERE/../lib/sipp.sh"
OUT=${SOAK_OUT:-$TEST_TMP}
mkdir -p "$OUT"
ulimit -n 8192
# The proxy's per-client transaction throttle (px_trust) would answer a load generator on
# one address 503: each sipp is one client. hs_start passes --max-client-transactions
# $HS_MAX_CLIENT_TX (a flag wins over the PARLEY_ environment variable), so lift it there.
export HS_MAX_CLIENT_TX=${HS_MAX_CLIENT_TX:-100000}
export PARLEY_MAX_CLIENT_TRANSACTIONS=$HS_MAX_CLIENT_TX

log() { echo "soak: $*" | tee -a "$OUT/summary.txt"; }
succ() { grep -E "Successful call" "$TEST_TMP/$1.out" | tail -1 | awk -F'|' '{ gsub(/ /, "", $3); print $3 }'; }
failed() { grep -E "Failed call" "$TEST_TMP/$1.out" | tail -1 | awk -F'|' '{ gsub(/ /, "", $3); print $3 }'; }

UAS_PORT=$(free_port)
UAS2_PORT=$(free_port)
log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
hs_start --log-level warn
make_users "$TEST_TMP/callee.csv" callee 100
make_users "$TEST_TMP/rcpt.csv" rcpt 100
make_users "$TEST_TMP/user.csv" user 1000
for g in callee:$UAS_PORT:100 rcpt:$UAS2_PORT:100 user:$UAS2_PORT:1000; do
  IFS=: read -r p port n <<<"$g"
  sipp_run "reg-$p" 60 "127.0.0.1:$HS_PORT" -sf "$HSCEN/register.xml" -inf "$TEST_TMP/$p.csv" \
    -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$port" -key contact_transport udp \
    -key expires 7200 -m "$n" -r 500 -i 127.0.0.1 -p "$(free_port)" || fail "registering $p: $(sipp_summary "reg-$p")"
done

# 1. maximum MESSAGE rate (sipp asks for 20000/s with at most 200 in flight)
sipp_bg uasmax -sf "$HSCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS2_PORT" -m 10000000
start=$(date +%s%N)
sipp_run max 30 "127.0.0.1:$HS_PORT" -sf "$HSCEN/message.xml" -inf "$TEST_TMP/rcpt.csv" \
  -key domain example.com -key max_forwards 70 -i 127.0.0.1 -p "$(free_port)" -r 20000 -l 200 -m 40000
ms=$(( ($(date +%s%N) - start) / 1000000 ))
max=$(( $(succ max) * 1000 / ms ))
kill "$LAST_PID" 2>/dev/null
wait "$LAST_PID" 2>/dev/null
[ "$max" -gt 0 ] || fail "could not measure the maximum rate"
rate=$(( max * SOAK_FRACTION / 100 ))
msg_rate=$(( rate * 60 / 100 )); reg_rate=$(( rate * 30 / 100 )); call_rate=$(( rate * 10 / 100 / 3 ))
[ "$call_rate" -ge 1 ] || call_rate=1
log "max MESSAGE rate $max/s ($(succ max) in $ms ms, $(failed max) failed); soak at ${SOAK_FRACTION}% = $rate req/s:"
log "  MESSAGE $msg_rate/s, REGISTER $reg_rate/s, calls $call_rate/s, for $SOAK_SECONDS s"

# 2. the soak
S=$SOAK_SECONDS
( cd "$TEST_TMP" && exec timeout $((S + 60)) sipp -nostdin -trace_err -error_file "$TEST_TMP/uasm_errors.log" \
    -sf "$HSCEN/uas_message.xml" -i 127.0.0.1 -p "$UAS2_PORT" -m 100000000 ) >"$TEST_TMP/uasm.out" 2>&1 &
uasm=$!
PARLEY_PIDS+=("$uasm")
( cd "$TEST_TMP" && exec timeout $((S + 60)) sipp -nostdin -trace_err -error_file "$TEST_TMP/uasc_errors.log" \
    -sf "$HSCEN/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -m 100000000 ) >"$TEST_TMP/uasc.out" 2>&1 &
uasc=$!
PARLEY_PIDS+=("$uasc")
sleep 0.3
soak_sipp() {  # NAME RATE N SCENARIO ARGS...
  local name=$1 r=$2 n=$3 sf=$4; shift 4
  ( cd "$TEST_TMP" && exec timeout $((S + 60)) sipp -nostdin -trace_err -error_file "$TEST_TMP/${name}_errors.log" \
      -sf "$sf" -i 127.0.0.1 -p "$(free_port)" -r "$r" -m "$n" -recv_timeout 10000 "$@" "127.0.0.1:$HS_PORT" ) \
    >"$TEST_TMP/$name.out" 2>&1 &
  LAST_PID=$!
  PARLEY_PIDS+=("$LAST_PID")
}
soak_sipp msg "$msg_rate" $((msg_rate * S)) "$HSCEN/message.xml" -inf "$TEST_TMP/rcpt.csv" \
  -key domain example.com -key max_forwards 70
p_msg=$LAST_PID
soak_sipp reg "$reg_rate" $((reg_rate * S)) "$HSCEN/register.xml" -inf "$TEST_TMP/user.csv" \
  -key domain example.com -key contact_host 127.0.0.1 -key contact_port "$UAS2_PORT" -key contact_transport udp \
  -key expires 7200
p_reg=$LAST_PID
soak_sipp call "$call_rate" $((call_rate * S)) "$FSCEN/uac_call_hold.xml" -inf "$TEST_TMP/callee.csv" \
  -key domain example.com -d 1000
p_call=$LAST_PID

# 3. RSS every 10 s until the three generators are done (bounded by their timeout)
printf 'seconds\trss_kib\tload1\n' >"$OUT/rss.tsv"
t0=$(date +%s)
while kill -0 "$p_msg" 2>/dev/null || kill -0 "$p_reg" 2>/dev/null || kill -0 "$p_call" 2>/dev/null; do
  kill -0 "$HS_PID" 2>/dev/null || fail "the server died during the soak"
  printf '%s\t%s\t%s\n' $(( $(date +%s) - t0 )) "$(awk '/^VmRSS/ { print $2 }' "/proc/$HS_PID/status")" \
    "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/rss.tsv"
  sleep 10
done
printf '%s\t%s\t%s\n' $(( $(date +%s) - t0 )) "$(awk '/^VmRSS/ { print $2 }' "/proc/$HS_PID/status")" \
  "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/rss.tsv"
status=0
for n in msg reg call; do
  wait "$(eval echo "\$p_$n")" || status=1
  log "$n: $(succ "$n") successful, $(failed "$n") failed"
done
kill -0 "$HS_PID" 2>/dev/null || fail "the server died"
python3 - "$OUT/rss.tsv" "$SOAK_RSS_MAX_GROWTH_MIB" <<'PY' | tee -a "$OUT/summary.txt"
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n")[1:] if l]
rows = [(int(s), int(r), float(l)) for s, r, l in rows]
warm = next((r for r in rows if r[0] >= 60), rows[0])
end = rows[-1]
peak = max(r[1] for r in rows)
load = sum(r[2] for r in rows) / len(rows)
print("soak: RSS %.1f MiB at %d s (after warm-up), %.1f MiB at the end (%d s), peak %.1f MiB, growth %+.1f MiB (%+.1f%%); mean load average %.1f"
      % (warm[1] / 1024, warm[0], end[1] / 1024, end[0], peak / 1024, (end[1] - warm[1]) / 1024,
         100.0 * (end[1] - warm[1]) / warm[1], load))
bound = float(sys.argv[2])
if (end[1] - warm[1]) / 1024 > bound:
    print("soak: FAIL RSS grew by more than %.0f MiB after the warm-up" % bound)
    sys.exit(1)
print("soak: RSS growth within the %.0f MiB bound" % bound)
PY
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
log "bindings $(metric parley_registrar_bindings), transactions $(metric 'parley_transactions{kind="server"}')/$(metric 'parley_transactions{kind="client"}') live at the end"
hs_stop || status=1
kill "$uasm" "$uasc" 2>/dev/null
log "results in $OUT"
[ "$status" = 0 ] || { TEST_FAILED=1; echo "soak: some transactions failed" >&2; exit 1; }
