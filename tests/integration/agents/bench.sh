#!/usr/bin/env bash
# Benchmark: MESSAGE/s through a pass-through agent vs the same chain without Dispatch
# (ProxyRequest() in the script), at fixed rates, the server pinned to CPU 0.
#   usage: bench.sh [RATE...] (default 500 1000 2000), DURATION s each (env, default 10)
# Prints per rate and mode: calls, failed, response time p50/p99 (ms, sipp -trace_rtt).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SCEN=$HERE/scenarios
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/homeserver.sh"
source "$HERE/../../lib/sipp.sh"
: "${HS_BIN:?}" "${AGENT_BIN:?}"
RATES=("${@:-500 1000 2000}"); [ $# = 0 ] && RATES=(500 1000 2000)
DUR=${DURATION:-10}
SOCK=$TEST_TMP/agents.sock
for mode in plain agent; do
  if [ $mode = agent ]; then body='if (!Dispatch("bench")) { Respond(503, "Agent Busy"); }'; else body='ProxyRequest();'; fi
  printf 'name: bench\nrequest-filter: MESSAGE\n---\n%s\n' "$body" > "$TEST_TMP/bench.am"
  echo "$TEST_TMP/bench.am" > "$TEST_TMP/chain.conf"
  for rate in "${RATES[@]}"; do
    HS_PORT=; HS_ADMIN_PORT=; UAS_PORT=$(free_port)
    RELAY_PORT=$(free_port)
    extra=(); grep -q -- "--trusted-listener" <<<"$("$HS_BIN" --help 2>&1)" && extra=(--trusted-listener "udp:127.0.0.1:$RELAY_PORT=127.0.0.1")
    sipp_bg uas -sf "$SCEN/uas_msg.xml" -i 127.0.0.1 -p "$UAS_PORT"
    UASPID=$LAST_PID
    hs_start --app-chain "$TEST_TMP/chain.conf" --agent-socket "$SOCK" --log-level warn "${extra[@]}"
    taskset -pc 0 "$HS_PID" >/dev/null
    [ ${#extra[@]} = 0 ] && RELAY_PORT=$HS_PORT
    if [ $mode = agent ]; then
      bg agent taskset -c 1 "$AGENT_BIN" --socket "$SOCK" --app bench --mode pass; APID=$LAST_PID
      sleep 0.5
    fi
    n=$((rate * DUR))
    rm -f "$TEST_TMP"/*_rtt.csv
    sipp_run "uac-$mode-$rate" $((DUR + 30)) "127.0.0.1:$RELAY_PORT" -sf "$SCEN/uac_msg.xml" -key uas_port "$UAS_PORT" \
      -i 127.0.0.1 -p "$(free_port)" -m "$n" -r "$rate" -l 5000 -trace_rtt -rtt_freq 1
    ok=$(grep -E "Successful call" "$TEST_TMP/uac-$mode-$rate.out" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
    bad=$(grep -E "Failed call" "$TEST_TMP/uac-$mode-$rate.out" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
    pct=$(cat "$TEST_TMP"/*_rtt.csv 2>/dev/null | python3 -c '
import sys
v=sorted(float(l.split(";")[1]) for l in sys.stdin if l[0].isdigit() and ";" in l)
print("p50=%.2fms p99=%.2fms" % (v[len(v)//2], v[int(len(v)*0.99)]) if v else "no rtt")')
    echo "mode=$mode rate=$rate/s calls=$n ok=$ok failed=$bad $pct"
    hs_stop; kill "$UASPID" 2>/dev/null; [ $mode = agent ] && kill "$APID" 2>/dev/null
    sleep 0.3
  done
done
