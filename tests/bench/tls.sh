#!/bin/bash
# tests/bench/tls.sh: Parley's home server against Kamailio (tls module) over TLS,
# side by side, with the pinning and the servers of run.sh (lib.sh), and writes
# results/<date>-tls/table.md.  See docs/benchmarks.md, section "TLS".
#
#   tests/bench/tls.sh                      # reg_l1, call_l1, reg_ln at fixed rates, 2 repeats
#   QUICK=1 tests/bench/tls.sh              # smoke: one low rate each, 1 repeat, 5 s steps
#   PORT_BASE=16500 BUILD=0 PARLEY_BIN=... tests/bench/tls.sh
#
# Debian's sipp is built without TLS ("To use a TLS transport you must compile
# SIPp with OpenSSL"), so the load over TLS comes from
# tests/integration/trust/tls_load.py (Python ssl, i.e. OpenSSL), pinned to
# GEN_CPUS like sipp in run.sh.  It offers a fixed rate for STEP_SECONDS:
#   reg_l1   REGISTER -> 200 on one TLS connection (as sipp -t l1)
#   call_l1  INVITE -> 100/180/200 -> ACK -> BYE -> 200 on one TLS connection,
#            proxied (record-routed) to N_CALLEES callees registered over UDP
#            whose Contact is a UDP sipp UAS (sipp/uas_call.xml)
#   reg_ln   one new TLS connection, full handshake (TLS 1.3, ECDSA P-256,
#            client certificate), per REGISTER (as sipp -t ln)
# Both servers listen on UDP (TARGET, for the callees and the readiness probe)
# and on TLS (127.0.0.1:PORT_BASE+42) with the certificates of
# tests/lib/certs.sh, generated at run time: server certificate home1, client
# certificate "client" (clientAuth), CA ca.pem; both request and verify the
# client certificate.  Parley: --max-client-transactions 100000 (the default
# 10 per client connection would throttle a multiplexed load).  Kamailio:
# kamailio.cfg WITH_TLS, CHILDREN TCP workers (1), its tls.cfg written by
# lib.sh (kam_tls_cfg).
#
# A step starts a fresh server, offers rate R for STEP_SECONDS and PASSES when
# >= 99.9 % of the operations succeeded and the generator sent them in
# <= 1.05 x STEP_SECONDS.  Measured per step: the server's CPU time over the
# load (exact scheduler time of its process tree) / successful operations =
# µs/op; the generator's own CPU per operation (its ceiling is 1e6 / that, on
# its one CPU); response time p50/p99 (REGISTER->200, INVITE->200); the load
# average.  Servers alternate (repeat 1 in SUTS order, repeat 2 reversed).
#
# Knobs: SUTS "parley kamailio"  TLS_SCENARIOS "reg_l1 call_l1 reg_ln"
#   RATES_reg_l1 "1000 2000"  RATES_call_l1 "250 500"  RATES_reg_ln "100 200"
#   STEP_SECONDS 10  REPEATS 2  N_CALLEES 1000  PIN 1 SUT_CPUS 0 GEN_CPUS 1
#   PORT_BASE 15060 (ports PORT_BASE..+49, lib.sh)  BUILD 1  BUILD_DIR  PARLEY_BIN
#   KAM_SHM_MB 1024  KAM_PKG_MB 16  KAM_CHILDREN 1  RESULTS  KEEP_RAW 0
# shellcheck disable=SC2034  # LOG, SUT_TS, NEED_*, SUT_TLS ... are read by lib.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

main() {
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  : "${RATES_reg_l1:=500}" "${RATES_call_l1:=100}" "${RATES_reg_ln:=50}" "${REPEATS:=1}" "${STEP_SECONDS:=5}"
fi
SUTS=${SUTS:-"parley kamailio"}
TLS_SCENARIOS=${TLS_SCENARIOS:-"reg_l1 call_l1 reg_ln"}
: "${RATES_reg_l1:=1000 2000}" "${RATES_call_l1:=250 500}" "${RATES_reg_ln:=100 200}"
STEP_SECONDS=${STEP_SECONDS:-10}
REPEATS=${REPEATS:-2}
N_CALLEES=${N_CALLEES:-1000}
CALLEE_RATE=${CALLEE_RATE:-1000}
PIN=${PIN:-1}; SUT_CPUS=${SUT_CPUS:-0}; GEN_CPUS=${GEN_CPUS:-1}
DOMAIN=${DOMAIN:-example.com}
UDP_BUF=${UDP_BUF:-4194304}
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
PARLEY_BIN=${PARLEY_BIN:-$BUILD_DIR/homeserver/parley-homeserver}
PARLEY_LOG_LEVEL=${PARLEY_LOG_LEVEL:-err}
KAM_SHM_MB=${KAM_SHM_MB:-1024}; KAM_PKG_MB=${KAM_PKG_MB:-16}; KAM_CHILDREN=${KAM_CHILDREN:-1}
KEEP_RAW=${KEEP_RAW:-0}
AUTH_PASSWORD=${AUTH_PASSWORD:-parley-bench-secret}
SUFFIX=-tls; [ "$QUICK" = 1 ] && SUFFIX=-tls-quick
RESULTS=${RESULTS:-$HERE/results/$(date +%Y%m%d-%H%M%S)$SUFFIX}
LOAD_PY=$ROOT/tests/integration/trust/tls_load.py

mkdir -p "$RESULTS/raw" "$RESULTS/run" "$RESULTS/errors" || exit 2
RAW=$RESULTS/raw; RUN=$RESULTS/run; LOG=$RESULTS/run.log; STEPS=$RESULTS/steps.tsv
PROBE_BIN=$RUN/sip-probe
CERTS=$RUN/certs
# shellcheck source=lib.sh
. "$HERE/lib.sh"
if [ "$PIN" = 1 ]; then SUT_TS="taskset -c $SUT_CPUS"; GEN_TS="taskset -c $GEN_CPUS"; else SUT_TS=""; GEN_TS=""; fi
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

case " $SUTS " in *" kamailio "*) NEED_KAMAILIO=1; NEED_KAMAILIO_TLS=1;; *) NEED_KAMAILIO=0;; esac
need_tools
command -v openssl >/dev/null || die "openssl is missing"
case " $SUTS " in *" parley "*) build_parley;; esac
cc -O2 -Wall -Wextra -o "$PROBE_BIN" "$HERE/tools/sip-probe.c" || die "cannot build sip-probe"
pick_ports
wait_ports "$TLS_PORT" || die "TLS port $TLS_PORT in use: $WAIT_BUSY"
bash "$ROOT/tests/lib/certs.sh" "$CERTS" >/dev/null || die "certificates (tests/lib/certs.sh) failed"
CALLEES_CSV=$RUN/callees.csv
gen_csv callee "$N_CALLEES" "$CALLEES_CSV"
{
  echo "date=$(date -Is)"
  echo "host=$(uname -n) cpus=$(nproc) kernel=$(uname -r)"
  echo "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "parley_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) parley_bin=$PARLEY_BIN"
  echo "kamailio=$(kamailio -v 2>/dev/null | head -1)"
  echo "openssl=$(openssl version) python=$("$PY" -c 'import ssl, sys; print(sys.version.split()[0], ssl.OPENSSL_VERSION)')"
  echo "suts=$SUTS scenarios=$TLS_SCENARIOS reg_l1=$RATES_reg_l1 call_l1=$RATES_call_l1 reg_ln=$RATES_reg_ln"
  echo "step_s=$STEP_SECONDS repeats=$REPEATS pin=$PIN sut_cpus=$SUT_CPUS gen_cpus=$GEN_CPUS kam_children=$KAM_CHILDREN"
  echo "ports: udp $TARGET tls 127.0.0.1:$TLS_PORT"
} >"$RESULTS/meta.txt"
log "results in $RESULTS; UDP $TARGET, TLS 127.0.0.1:$TLS_PORT"

printf "sut\tscenario\trepeat\trate\tverdict\tok\tfailed\tsend_s\toffered\tp50_ms\tp99_ms\tsut_cpu_s\tus_per_op\tgen_cpu_s\tgen_us_per_op\tsut_wait_pct\tload1\tsut_exit\n" >"$STEPS"

kv() { echo " $1 " | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

# tls_step SUT SCENARIO RATE REPEAT -> a line in steps.tsv
tls_step() {
  local sut=$1 sc=$2 rate=$3 rep=$4 n=$(( $3 * STEP_SECONDS )) tag="${1}_${2}_r${4}_${3}" res load1
  local uas="" lcpu="" sut_exit=-
  SUT_TLS=1
  wait_ports $BENCH_PORTS_FIXED "$SUT_PORT" "$TLS_PORT" || { log "ports still busy: $WAIT_BUSY"; return 2; }
  start_sut "$sut" 0 $(( STEP_SECONDS * 4 + 180 )) || { cp "$RAW/sut.log" "$RESULTS/errors/$tag.sut.log" 2>/dev/null; return 2; }
  if [ "$sc" = call_l1 ]; then
    register_users "$CALLEES_CSV" "$N_CALLEES" "$CALLEE_RATE" "$UAS_PORT" callees
    if [ "$REG_OK" != "$N_CALLEES" ]; then
      log "$sut: callee registration failed ($REG_OK/$N_CALLEES)"; stop_sut; return 2
    fi
    $GEN_TS sipp -sf "$HERE/sipp/uas_call.xml" -p "$UAS_PORT" -cp "$UAS_CP" -mp "$UAS_MP" $SIPP_COMMON \
      -stf "$RAW/uas_$tag.csv" -trace_err -error_file "$RAW/uas_$tag.err" \
      -timeout $(( STEP_SECONDS * 4 + 60 )) >"$RAW/uas_$tag.out" 2>&1 &
    UAS_PID=$!; uas=$UAS_PID
    sleep 0.5
  fi
  BT snap "$RAW/s0.json" "sut=$SUT_PID" >/dev/null
  # the generator in the background (so that cleanup can stop it), bounded
  $GEN_TS timeout $(( STEP_SECONDS * 4 + 40 )) "$PY" "$LOAD_PY" "$sc" "$TLS_PORT" "$CERTS/ca.pem" \
    "$CERTS/client.pem" "$CERTS/client.key.pem" "$rate" "$STEP_SECONDS" callee "$N_CALLEES" >"$RAW/gen_$tag.out" 2>&1 &
  UAC_PID=$!
  wait "$UAC_PID"; UAC_PID=""
  BT snap "$RAW/s1.json" "sut=$SUT_PID" >/dev/null
  load1=$(cut -d' ' -f1 /proc/loadavg)
  res=$(tail -1 "$RAW/gen_$tag.out")
  if [ -n "$uas" ]; then
    kill -USR1 "$uas" 2>/dev/null
    local i; for ((i = 0; i < 50; i++)); do kill -0 "$uas" 2>/dev/null || break; sleep 0.1; done
    stop_pid "$uas" 2; UAS_PID=""
  fi
  if kill -0 "$SUT_PID" 2>/dev/null; then stop_sut; sut_exit=$SUT_RC
  else stop_sut; sut_exit="DIED:$SUT_RC"; log "!!! $sut exited during the step"; fi
  lcpu=$(BT cpu "$RAW/s0.json" "$RAW/s1.json")
  local ok failed send_s gen_cpu p50 p99 wall pct sut_s usop gen_usop offered verdict
  ok=$(kv "$res" ok); failed=$(kv "$res" failed); send_s=$(kv "$res" send_s); gen_cpu=$(kv "$res" cpu_s)
  p50=$(kv "$res" p50_ms); p99=$(kv "$res" p99_ms)
  wall=$(kv "$lcpu" interval_s); pct=$(kv "$lcpu" sut_cpu_pct)
  read -r sut_s usop gen_usop offered verdict < <("$PY" -c "
import sys
n, rate, steps = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def f(x):
    try: return float(x)
    except ValueError: return None
ok, failed, send_s, gen, wall, pct = (f(x) for x in sys.argv[4:10])
sut_s = pct / 100 * wall if pct is not None and wall else None
good = ok is not None and ok > 0
usop = round(sut_s * 1e6 / ok) if good and sut_s is not None else '-'
gusop = round(gen * 1e6 / ok) if good and gen is not None else '-'
offered = round(n / send_s) if send_s else '-'
v = 'PASS' if good and ok >= n * 0.999 and send_s is not None and send_s <= steps * 1.05 else 'FAIL'
print(round(sut_s, 3) if sut_s is not None else '-', usop, gusop, offered, v)
" "$n" "$rate" "$STEP_SECONDS" "${ok:--}" "${failed:--}" "${send_s:--}" "${gen_cpu:--}" "${wall:--}" "${pct:--}")
  case $sut_exit in DIED*) verdict=FAIL;; esac
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$sut" "$sc" "$rep" "$rate" \
    "$verdict" "${ok:--}" "${failed:--}" "${send_s:--}" "$offered" "${p50:--}" "${p99:--}" "$sut_s" "$usop" \
    "${gen_cpu:--}" "$gen_usop" "$(kv "$lcpu" sut_wait_pct)" "$load1" "$sut_exit" >>"$STEPS"
  log "$sut $sc rep=$rep rate=$rate -> $verdict ok=${ok:-?}/$n failed=${failed:-?} send_s=$send_s (offered $offered/s) p50/p99=${p50}/${p99} ms sut_cpu=${sut_s}s us/op=$usop gen us/op=$gen_usop sut_wait=$(kv "$lcpu" sut_wait_pct)% load1=$load1 exit=$sut_exit"
  if [ "$verdict" != PASS ]; then
    { echo "== generator"; cat "$RAW/gen_$tag.out"; echo "== server log (first 40)"; head -40 "$RAW/sut.log" | cut -c1-300
      [ -s "$RAW/uas_$tag.err" ] && { echo "== UAS errors"; "$PY" "$HERE/tools/benchtool.py" errsummary "$RAW/uas_$tag.err"; }
    } >"$RESULTS/errors/$tag.txt" 2>&1
  fi
  [ "$KEEP_RAW" = 1 ] || rm -f "$RAW"/uas_"$tag".* "$RAW/gen_$tag.out" "$RAW"/s[01].json "$RAW"/callees.*
  SUT_TLS=0
  return 0
}

sut_order() {
  local s out=""
  if [ $(( $1 % 2 )) -eq 1 ]; then echo "$SUTS"; return; fi
  for s in $SUTS; do out="$s $out"; done
  echo "$out"
}
for sc in $TLS_SCENARIOS; do
  rv="RATES_$sc"
  case $sc in reg_l1|call_l1|reg_ln) ;; *) die "unknown TLS scenario $sc (reg_l1 call_l1 reg_ln)";; esac
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for sut in $(sut_order "$rep"); do
      for rate in ${!rv}; do tls_step "$sut" "$sc" "$rate" "$rep"; done
    done
  done
done

"$PY" "$HERE/tools/tls_report.py" "$RESULTS" >"$RESULTS/table.md" || die "report failed"
[ "$KEEP_RAW" = 1 ] || rm -rf "$RUN/callees.csv" "$RUN/parley-data" "$PROBE_BIN" "$CERTS"
log "done: $RESULTS/table.md"
cat "$RESULTS/table.md"
}

main "$@"; exit $?
