#!/usr/bin/env bash
# Authenticated REGISTER/s of parley-homeserver (not a ctest): sipp register_auth
# (REGISTER -> 401 -> REGISTER with MD5 digest -> 200) at fixed rates, server pinned to
# CPU 0 and sipp to CPU 1, against users in a real etcd.
#   bench_register_auth.sh HS_BIN CTL_BIN [RATES] [SECONDS] [USERS]
# Prints per rate: calls ok/failed and server CPU microseconds per call (utime+stime
# delta from /proc/<pid>/stat over the run / successful calls; one call = 2 REGISTERs).
# sipp sends every user's requests from one address: --max-client-transactions 100000, or
# the per-client limit (10 outstanding, px_trust) answers 503 as soon as the server lags.
# The side-by-side comparison with Kamailio is tests/bench/run.sh SCENARIOS=register_auth.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/etcd.sh"
HS_BIN=${1:?HS_BIN}; CTL_BIN=${2:?CTL_BIN}
RATES=${3:-"2000 4000 6000 8000 10000 12000 14000 16000"}
SECS=${4:-10}; NUSERS=${5:-10000}
ETCD_ST=$TEST_TMP/etcd
trap 'etcd_stop "$ETCD_ST"; cleanup_all' EXIT
URL=$(etcd_start "$ETCD_ST") || fail "etcd"
{ for ((i = 0; i < NUSERS; i++)); do echo "u$i@example.com,secret,home1"; done; } >"$TEST_TMP/users.csv"
"$CTL_BIN" --etcd "$URL" user import "$TEST_TMP/users.csv" >/dev/null || fail "import"
{ echo SEQUENTIAL; for ((i = 0; i < NUSERS; i++)); do echo "u$i;"; done; } >"$TEST_TMP/sipp.csv"
SCEN=$TEST_TMP/register_auth.xml
sed 's/@CODE@/200/' "$HERE/scenarios/register_auth.xml.in" >"$SCEN"
PORT=$(free_port); ADMIN=$(free_port)
bg hs taskset -c 0 "$HS_BIN" --listen "udp:127.0.0.1:$PORT" --domain example.com --data-dir "$TEST_TMP/hs" \
  --admin "127.0.0.1:$ADMIN" --etcd "$URL" --server-name home1 --auth-sha256=false --log-level warn \
  --max-client-transactions 100000
HS=$LAST_PID
wait_http "http://127.0.0.1:$ADMIN/healthz" 20 || fail "homeserver"
for ((i = 0; i < 200; i++)); do
  n=$(curl -fs "http://127.0.0.1:$ADMIN/metrics" | awk '$1 == "parley_directory_users" {print $2}')
  [ "$n" = "$NUSERS" ] && break; sleep 0.1
done
cpu() { awk '{print $14 + $15}' "/proc/$HS/stat"; }
tck=$(getconf CLK_TCK)
printf '%8s %10s %8s %12s %12s\n' rate ok failed cpu_us/call cpu_us/req
for r in $RATES; do
  c0=$(cpu)
  ( cd "$TEST_TMP" && timeout $((SECS + 40)) taskset -c 1 sipp -nostdin -sf "$SCEN" -inf "$TEST_TMP/sipp.csv" \
      -key domain example.com -key contact_host 127.0.0.1 -key contact_port 5999 -key expires 3600 \
      -key password secret -r "$r" -m $((r * SECS)) -l $((r * 2)) -i 127.0.0.1 -p "$(free_port)" \
      -timeout $((SECS + 30))s -recv_timeout 5000 "127.0.0.1:$PORT" ) >"$TEST_TMP/sipp-$r.out" 2>&1
  c1=$(cpu)
  ok=$(awk -F'|' '/Successful call/ {gsub(/ /,"",$3); print $3}' "$TEST_TMP/sipp-$r.out" | tail -1)
  bad=$(awk -F'|' '/Failed call/ {gsub(/ /,"",$3); print $3}' "$TEST_TMP/sipp-$r.out" | tail -1)
  per=$(python3 -c "print(round(($c1-$c0)*1e6/$tck/max(${ok:-0},1),1))")
  per2=$(python3 -c "print(round(($c1-$c0)*1e6/$tck/max(2*${ok:-0},1),1))")
  printf '%8s %10s %8s %12s %12s\n' "$r" "${ok:-?}" "${bad:-?}" "$per" "$per2"
done
