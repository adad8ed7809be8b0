#!/usr/bin/env bash
# REGISTER -> 302 throughput of parley-frontend with 1 and 2 workers (docs/benchmarks.md,
# "Workers"). usage: ORDER="1 2 2 1" bench.sh [RATE] [CALLS] [RUNS]
#   FE_BIN   parley-frontend (a Release build), default build-h9-rel
# A real etcd holds 1000 users on home1; the front-end runs with --auth off; sipp sends
# REGISTERs from one socket per call (-t un), so the kernel's SO_REUSEPORT hash spreads
# them over the workers. Prints, per run: workers, achieved rate, failed calls, and the
# server's CPU (parent + workers, utime+stime from /proc) per REGISTER.
# The front-end runs in this script's session, sipp in its own (setsid).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
source "$ROOT/tests/lib/common.sh"
source "$ROOT/tests/lib/etcd.sh"
FE_BIN=${FE_BIN:-$ROOT/build-h9-rel/frontend/parley-frontend}
RATE=${1:-4000}; CALLS=${2:-40000}; RUNS=${3:-1}
SIP_PORT=${BENCH_PORT:-16950}; ADMIN_PORT=$((SIP_PORT + 10))
ETCD_ST=$TEST_TMP/etcd
trap 'etcd_stop "$ETCD_ST"; cleanup_all' EXIT
ETCD_URL=$(etcd_start "$ETCD_ST") || fail "etcd did not start"
b64() { printf '%s' "$1" | base64 -w0; }
put() { printf '{"key":"%s","value":"%s"}' "$(b64 "$1")" "$(b64 "$2")"; }
curl -fsS -m 3 "$ETCD_URL/v3/kv/put" -d "$(put /parley/servers/home1 \
  '{"role":"homeserver","address":"sip:127.0.0.1:16990;transport=tcp","cert_subject":"h","admin":""}')" >/dev/null
# 1000 users, 100 per transaction
python3 - "$ETCD_URL" <<'PY'
import base64, json, sys, urllib.request
url = sys.argv[1]
b = lambda s: base64.b64encode(s.encode()).decode()
for chunk in range(10):
    ops = [{"requestPut": {"key": b("/parley/users/u%d@example.com" % i), "value": b(json.dumps(
        {"home": "home1", "ha1_md5": "0" * 32, "realm": "example.com", "enabled": True}))}}
        for i in range(chunk * 100, chunk * 100 + 100)]
    urllib.request.urlopen(urllib.request.Request(url + "/v3/kv/txn", json.dumps({"success": ops}).encode()), timeout=10)
PY
{ echo SEQUENTIAL; for i in $(seq 0 999); do echo "u$i;example.com;"; done; } >"$TEST_TMP/users.csv"
cpu_ticks() {  # parent + its children
  local t=0 p
  for p in "$@" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat)))
  done
  echo $t
}
HZ=$(getconf CLK_TCK)
# ORDER: the worker counts in run order (alternating, so a change in the machine's load
# hits both configurations); each entry runs RUNS times
run=0
for w in ${ORDER:-1 2 2 1}; do
  for r in $(seq 1 "$RUNS"); do
    run=$((run + 1))
    bg fe-$w-$run "$FE_BIN" --listen "udp:127.0.0.1:$SIP_PORT" --domain example.com --data-dir "$TEST_TMP/fe$w" \
      --etcd "$ETCD_URL" --server-name fe1 --auth off --admin "127.0.0.1:$ADMIN_PORT" --workers $w \
      --log-level warn --shutdown-grace 100ms
    FE=$LAST_PID
    for a in $(seq 0 $((w - 1))); do
      for i in $(seq 1 200); do
        [ "$(curl -fs -m 1 "http://127.0.0.1:$((ADMIN_PORT + a))/metrics" | awk '$1=="parley_directory_users"{print $2}')" = 1000 ] && break
        sleep 0.1
      done
    done
    c0=$(cpu_ticks "$FE"); t0=$(date +%s.%N)
    # sipp in a session of its own: with autogroup scheduling (kernel.sched_autogroup_enabled)
    # it would otherwise share one CPU share with the server it loads
    setsid timeout 300 sipp -sf "$HERE/register_302.xml" -inf "$TEST_TMP/users.csv" -t un -max_socket 1000 \
      -i 127.0.0.1 -r "$RATE" -l 2000 -m "$CALLS" -timeout 280 -nostdin -trace_screen \
      -screen_file "$TEST_TMP/sipp-$w-$run.out" 127.0.0.1:$SIP_PORT >/dev/null 2>&1 </dev/null
    t1=$(date +%s.%N); c1=$(cpu_ticks "$FE")
    ok=$(grep -a "Successful call" "$TEST_TMP/sipp-$w-$run.out" | tail -1 | awk '{print $NF}')
    failed=$(grep -a "Failed call" "$TEST_TMP/sipp-$w-$run.out" | tail -1 | awk '{print $NF}')
    awk -v w=$w -v ok="${ok:-0}" -v f="${failed:-?}" -v c=$((c1 - c0)) -v hz=$HZ -v t0=$t0 -v t1=$t1 \
      -v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
        printf "workers=%d ok=%d failed=%s wall=%.1fs rate=%.0f/s server_cpu=%.1f us/op load=%s\n",
               w, ok, f, t1 - t0, ok / (t1 - t0), ok ? c * 1e6 / hz / ok : 0, load }'
    kill -TERM "$FE"; wait "$FE" 2>/dev/null
  done
done
