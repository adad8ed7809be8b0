#!/usr/bin/env bash
# Benchmark: MESSAGE through a pass-through agent ("agent": the chain's script calls
# Dispatch("bench"), test_agent --mode pass PROXYs every request unchanged) against the
# same chain without Dispatch ("plain": the script calls ProxyRequest()). Both modes run
# in ONE invocation, alternately, so they share the machine's load; the ratio is printed.
#
#   usage: bench.sh            (HS_BIN = parley-homeserver, AGENT_BIN = test_agent; Release build)
#   env:   RATE (offered MESSAGE/s of the fixed-rate phase, default 1000), DURATION (s, default 10),
#          SAT_N (MESSAGEs of the saturation phase, default 20000), SAT_LIMIT (MESSAGEs in flight
#          in that phase, default 50), PIN=1 pins the server to CPU 0 and the agent to CPU 1,
#          INSTR=0 skips the instruction count (INSTR_N MESSAGEs at INSTR_RATE/s, default 1000 at 50/s),
#          PHASES (default "rate max instr") the phases to run.
#
# Phase "rate": sipp offers RATE MESSAGE/s for DURATION s. Per mode: the rate achieved,
#   the CPU time of the server (all its threads, /proc/PID/task/*/schedstat, ns) and of the
#   agent per MESSAGE, the caller's response time p50/p99 (sipp -trace_rtt) and the agent
#   round trip p50/p99 measured in the server (Dispatch() to the agent's PROXY:
#   parley_agent_round_trip_seconds on /metrics).
# Phase "max": sipp sends SAT_N MESSAGEs as fast as it can with SAT_LIMIT in flight (a
#   closed loop); the rate achieved is the throughput of the whole chain on this machine.
# Phase "instr" (with valgrind): the server and the agent run under callgrind, zeroed once
#   started; INSTR_N MESSAGEs at a low rate; the instructions executed per MESSAGE (all
#   threads) do not depend on the machine's load, unlike the CPU times above.
# Every MESSAGE goes UAC -> server -> (agent) -> server -> UAS (sipp) and back.
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
: "${HS_BIN:?HS_BIN must point at parley-homeserver}" "${AGENT_BIN:?AGENT_BIN must point at test_agent}"
RATE=${RATE:-1000}
DUR=${DURATION:-10}
SAT_N=${SAT_N:-20000}
SAT_LIMIT=${SAT_LIMIT:-50}
INSTR=${INSTR:-1}; command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || INSTR=0
INSTR_N=${INSTR_N:-1000}
PHASES=${PHASES:-rate max instr}
INSTR_RATE=${INSTR_RATE:-50}
SOCK=$TEST_TMP/agents.sock
TRUSTED=0; grep -q -- "--trusted-listener" <<<"$("$HS_BIN" --help 2>&1)" && TRUSTED=1

cpu_ns() {  # cpu_ns PID: CPU time of every thread of PID, ns (0 when gone)
  local f s=0 v
  for f in /proc/"$1"/task/*/schedstat; do
    read -r v _ < "$f" 2>/dev/null && s=$((s + v))
  done
  echo "$s"
}

sipp_col() {  # sipp_col NAME "Successful call": the cumulative column of that line of the screen
  grep -E "$2" "$TEST_TMP/$1.out" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); sub(/cps/, "", $3); print $3 + 0}'
}

# start MODE: UAS, server (and agent); sets UAS_PORT, RELAY_PORT, UASPID, APID
start() {
  local mode=$1 body
  if [ "$mode" = agent ]; then body='if (!Dispatch("bench")) { Respond(503, "Agent Busy"); }'; else body='ProxyRequest();'; fi
  printf 'name: bench\nrequest-filter: MESSAGE\n---\n%s\n' "$body" > "$TEST_TMP/bench.am"
  echo "$TEST_TMP/bench.am" > "$TEST_TMP/chain.conf"
  HS_PORT=; HS_ADMIN_PORT=; UAS_PORT=$(free_port); RELAY_PORT=$(free_port)
  local extra=()
  [ $TRUSTED = 1 ] && extra=(--trusted-listener "udp:127.0.0.1:$RELAY_PORT=127.0.0.1")
  sipp_bg "uas-$mode" -sf "$SCEN/uas_msg.xml" -i 127.0.0.1 -p "$UAS_PORT"
  UASPID=$LAST_PID
  hs_start --app-chain "$TEST_TMP/chain.conf" --agent-socket "$SOCK" --agent-queue 10000 --log-level warn \
    "${extra[@]}"
  [ $TRUSTED = 1 ] || RELAY_PORT=$HS_PORT
  [ "${PIN:-0}" = 1 ] && taskset -apc 0 "$HS_PID" >/dev/null
  APID=
  if [ "$mode" = agent ]; then
    if [ "${PIN:-0}" = 1 ]; then
      bg agent taskset -c 1 "$AGENT_BIN" --socket "$SOCK" --app bench --mode pass
    else
      bg agent "$AGENT_BIN" --socket "$SOCK" --app bench --mode pass
    fi
    APID=$LAST_PID
    local i
    for ((i = 0; i < 100; i++)); do [ "$(metric parley_agents_connected)" = 1 ] && break; sleep 0.05; done
    [ "$(metric parley_agents_connected)" = 1 ] || fail "the agent did not register"
  fi
}

cg_total() {  # cg_total FILE-PREFIX: the instruction total of callgrind's first dump (0 if none)
  local f
  for f in "$1".1 "$1"; do
    [ -s "$f" ] && { awk '/^totals:/ { print $2; exit }' "$f"; return; }
  done
  echo 0
}

# run_instr MODE: the "instr" phase (server and agent under callgrind)
run_instr() {
  local mode=$1 real=$HS_BIN name="uac-$1-instr" ok bad retr si=0 ai=0 i
  cat > "$TEST_TMP/hs-vg.sh" <<EOT
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$TEST_TMP/cg-hs-$mode.out --dump-instr=no $real "\$@"
EOT
  chmod +x "$TEST_TMP/hs-vg.sh"
  HS_BIN=$TEST_TMP/hs-vg.sh
  # hs_start's 10 s health wait is short for valgrind on a loaded machine: started here
  HS_PORT=$(free_port); HS_ADMIN_PORT=$(free_port); HS_ADMIN=http://127.0.0.1:$HS_ADMIN_PORT
  HS_DATA=$TEST_TMP/hs-data-instr-$mode
  local body='ProxyRequest();'
  [ "$mode" = agent ] && body='if (!Dispatch("bench")) { Respond(503, "Agent Busy"); }'
  printf 'name: bench\nrequest-filter: MESSAGE\n---\n%s\n' "$body" > "$TEST_TMP/bench.am"
  echo "$TEST_TMP/bench.am" > "$TEST_TMP/chain.conf"
  UAS_PORT=$(free_port); RELAY_PORT=$(free_port)
  local extra=()
  [ $TRUSTED = 1 ] && extra=(--trusted-listener "udp:127.0.0.1:$RELAY_PORT=127.0.0.1")
  sipp_bg "uas-$mode-instr" -sf "$SCEN/uas_msg.xml" -i 127.0.0.1 -p "$UAS_PORT"
  UASPID=$LAST_PID
  bg homeserver-instr "$HS_BIN" --listen "udp:127.0.0.1:$HS_PORT" --domain example.com --data-dir "$HS_DATA" \
    --admin "127.0.0.1:$HS_ADMIN_PORT" --max-client-transactions 10000 --app-chain "$TEST_TMP/chain.conf" \
    --agent-socket "$SOCK" --agent-queue 10000 --log-level warn "${extra[@]}"
  HS_PID=$LAST_PID
  HS_BIN=$real
  wait_http "$HS_ADMIN/healthz" 120 || fail "the server did not start under valgrind"
  [ $TRUSTED = 1 ] || RELAY_PORT=$HS_PORT
  APID=
  if [ "$mode" = agent ]; then
    bg agent-instr valgrind --tool=callgrind --callgrind-out-file="$TEST_TMP/cg-agent.out" --dump-instr=no \
      "$AGENT_BIN" --socket "$SOCK" --app bench --mode pass
    APID=$LAST_PID
    for ((i = 0; i < 600; i++)); do [ "$(metric parley_agents_connected)" = 1 ] && break; sleep 0.1; done
    [ "$(metric parley_agents_connected)" = 1 ] || fail "the agent did not register (valgrind)"
  fi
  callgrind_control -z "$HS_PID" >/dev/null 2>&1 || fail "callgrind_control -z"
  [ -n "$APID" ] && { callgrind_control -z "$APID" >/dev/null 2>&1 || fail "callgrind_control -z (agent)"; }
  sipp_run "$name" $((INSTR_N / INSTR_RATE + 60)) "127.0.0.1:$RELAY_PORT" -sf "$SCEN/uac_msg.xml" \
    -key uas_port "$UAS_PORT" -i 127.0.0.1 -p "$(free_port)" -m "$INSTR_N" -r "$INSTR_RATE" -l 1000
  callgrind_control -d "$HS_PID" >/dev/null 2>&1
  [ -n "$APID" ] && callgrind_control -d "$APID" >/dev/null 2>&1
  ok=$(sipp_col "$name" "Successful call"); bad=$(sipp_col "$name" "Failed call")
  retr=$(awk '/MESSAGE -+>/ { r = $4 } END { print r + 0 }' "$TEST_TMP/$name.out")
  si=$(cg_total "$TEST_TMP/cg-hs-$mode.out")
  [ -n "$APID" ] && ai=$(cg_total "$TEST_TMP/cg-agent.out")
  kill -TERM "$HS_PID" 2>/dev/null
  [ -n "$APID" ] && kill -TERM "$APID" 2>/dev/null
  for ((i = 0; i < 200; i++)); do kill -0 "$HS_PID" 2>/dev/null || break; sleep 0.05; done
  kill -TERM "$UASPID" 2>/dev/null
  kill -9 "$HS_PID" "$APID" 2>/dev/null
  wait "$HS_PID" "$UASPID" 2>/dev/null
  [ -n "$APID" ] && wait "$APID" 2>/dev/null
  rm -f "$TEST_TMP"/cg-*.out*
  echo "$mode instr ${ok:-0} ${bad:-0} ${retr:-0} $si $ai" >> "$TEST_TMP/instr"
}

stop() {
  hs_stop
  kill "$UASPID" 2>/dev/null
  [ -n "$APID" ] && kill "$APID" 2>/dev/null
  wait "$UASPID" 2>/dev/null
  [ -n "$APID" ] && wait "$APID" 2>/dev/null
  sleep 0.3
}

# run_phase MODE PHASE: one measurement; appends a line to $TEST_TMP/results
run_phase() {
  local mode=$1 phase=$2 name="uac-$1-$2" s0 s1 a0=0 a1=0 ok bad rate pct rtt50 rtt99 n args
  start "$mode"
  if [ "$phase" = rate ]; then
    n=$((RATE * DUR)); args=(-r "$RATE" -l 5000)
  else
    n=$SAT_N; args=(-r 100000 -l "$SAT_LIMIT")
  fi
  rm -f "$TEST_TMP"/*_rtt.csv
  s0=$(cpu_ns "$HS_PID"); [ -n "$APID" ] && a0=$(cpu_ns "$APID")
  sipp_run "$name" $((DUR + 60)) "127.0.0.1:$RELAY_PORT" -sf "$SCEN/uac_msg.xml" -key uas_port "$UAS_PORT" \
    -i 127.0.0.1 -p "$(free_port)" -m "$n" "${args[@]}" -trace_rtt -rtt_freq 1
  s1=$(cpu_ns "$HS_PID"); [ -n "$APID" ] && a1=$(cpu_ns "$APID")
  ok=$(sipp_col "$name" "Successful call"); bad=$(sipp_col "$name" "Failed call")
  rate=$(sipp_col "$name" "Call Rate")
  pct=$(cat "$TEST_TMP"/*_rtt.csv 2>/dev/null | python3 -c '
import sys
v = sorted(float(l.split(";")[1]) for l in sys.stdin if l[0].isdigit() and ";" in l)
print("%d %d" % (v[len(v) // 2], v[min(len(v) - 1, int(len(v) * 0.99))]) if v else "- -")')
  if [ "$mode" = agent ]; then
    rtt50=$(metric 'parley_agent_round_trip_seconds{quantile="0.5"}')
    rtt99=$(metric 'parley_agent_round_trip_seconds{quantile="0.99"}')
  else
    rtt50=-; rtt99=-
  fi
  stop
  echo "$mode $phase $n ${ok:-0} ${bad:-0} ${rate:-0} $((s1 - s0)) $((a1 - a0)) $pct $rtt50 $rtt99" >> "$TEST_TMP/results"
}

: > "$TEST_TMP/results"; : > "$TEST_TMP/instr"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for phase in rate max; do
  [[ " $PHASES " == *" $phase "* ]] || continue
  for mode in plain agent; do
    run_phase "$mode" "$phase"
  done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$INSTR" = 1 ] && [[ " $PHASES " == *" instr "* ]]; then
  for mode in plain agent; do
    run_instr "$mode"
  done
fi

python3 - "$TEST_TMP/results" "$LOAD0" "$LOAD1" "$RATE" "$DUR" "$SAT_N" "$SAT_LIMIT" "$TEST_TMP/instr" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    mode, phase, n, ok, bad, rate, s_ns, a_ns, p50, p99, r50, r99 = f
    rows[(mode, phase)] = dict(n=int(n), ok=int(ok), bad=int(bad), rate=float(rate),
                               s_us=int(s_ns) / 1e3 / max(1, int(ok)), a_us=int(a_ns) / 1e3 / max(1, int(ok)),
                               p50=p50, p99=p99,
                               r50=("%.0f" % (float(r50) * 1e6)) if r50 not in ("-", "") else "-",
                               r99=("%.0f" % (float(r99) * 1e6)) if r99 not in ("-", "") else "-")
print("load average %s (start) / %s (end); %s MESSAGE/s offered for %s s; max: %s MESSAGEs, %s in flight"
      % (sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]))
hdr = ("phase", "chain", "MESSAGEs", "failed", "MESSAGE/s", "server us/MSG", "agent us/MSG",
       "caller p50/p99 ms", "agent RT p50/p99 us")
# caller: sipp's response time (its clock ticks: 1-4 ms resolution); agent RT: in the server, us
fmt = "%-6s %-6s %9s %7s %10s %14s %13s %18s %20s"
print(fmt % hdr)
for phase in ("rate", "max"):
    for mode in ("plain", "agent"):
        r = rows.get((mode, phase))
        if r is None:
            continue
        print(fmt % (phase, mode, r["ok"], r["bad"], "%.0f" % r["rate"], "%.1f" % r["s_us"],
                     "%.1f" % r["a_us"] if mode == "agent" else "-", "%s/%s" % (r["p50"], r["p99"]),
                     "%s/%s" % (r["r50"], r["r99"]) if mode == "agent" else "-"))
p, a = rows.get(("plain", "rate")), rows.get(("agent", "rate"))
if p and a and p["s_us"] and a["s_us"]:
    print("ratio agent/plain, server CPU per MESSAGE (rate phase): %.2f (server + agent: %.2f)"
          % (a["s_us"] / p["s_us"], (a["s_us"] + a["a_us"]) / p["s_us"]))
    print("  -> server capacity %.0f (plain) vs %.0f (agent) MESSAGE/s per server CPU-second: x%.2f"
          % (1e6 / p["s_us"], 1e6 / a["s_us"], p["s_us"] / a["s_us"]))
p, a = rows.get(("plain", "max")), rows.get(("agent", "max"))
if p and a and p["rate"]:
    print("ratio agent/plain, MESSAGE/s (max phase): %.0f / %.0f = %.2f; server CPU per MESSAGE: %.2f"
          % (a["rate"], p["rate"], a["rate"] / p["rate"], a["s_us"] / p["s_us"] if p["s_us"] else 0))
ins = {}
for line in open(sys.argv[8]):
    mode, _, ok, bad, retr, si, ai = line.split()
    ins[mode] = dict(ok=int(ok), bad=int(bad), retr=int(retr), si=int(si) / max(1, int(ok)), ai=int(ai) / max(1, int(ok)))
if "plain" in ins and "agent" in ins:
    p, a = ins["plain"], ins["agent"]
    print("instructions per MESSAGE (callgrind, %d + %d MESSAGEs, %d/%d failed, %d/%d retransmissions): "
          "server %.0f (plain) vs %.0f (agent) = x%.2f; agent process %.0f; server + agent x%.2f"
          % (p["ok"], a["ok"], p["bad"], a["bad"], p["retr"], a["retr"], p["si"], a["si"],
             a["si"] / p["si"] if p["si"] else 0, a["ai"], (a["si"] + a["ai"]) / p["si"] if p["si"] else 0))
PY
