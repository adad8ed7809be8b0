#!/bin/bash
# tests/bench/run.sh: Parley's home server against Kamailio, side by side.
#
# One command: builds parley-homeserver (Release, build-bench), installs
# Kamailio (and sipp) with apt-get if they are missing, then measures both
# servers with the same sipp load and the same pinning (server on SUT_CPUS,
# sipp and the probe on GEN_CPUS), scenario by scenario, alternating the two
# servers, and writes results/<date>/table.md.  See docs/benchmarks.md.
#
#   tests/bench/run.sh                  # the full comparison (about an hour)
#   QUICK=1 tests/bench/run.sh          # smoke: fixed rates, 1 repeat (~2 min)
#   REPEATS=1 BISECT=2 SCENARIOS="register call message" tests/bench/run.sh
#
# Method (as in the peer benchmark, shared/bench): a step offers a fixed rate
# for STEP_SECONDS (sipp -r R -m R*STEP_SECONDS) to a freshly started server
# (1000 callees registered first).  It PASSES when sipp counts >= 99.9 %
# successful, < 0.1 % failed and an achieved rate >= 95 % of the offered one.
# The search doubles the rate from START_RATE until a step fails (a failed step
# is run once more), then bisects BISECT times.  REPEATS searches per server;
# the table gives medians.  Every load is bounded (sipp -m, -timeout,
# -recv_timeout; probe -n; server watchdog), and only processes this script
# started are stopped, by PID.
#
# Knobs (environment):
#   QUICK=1           FIXED_RATES per scenario, REPEATS=1, STEP_SECONDS=6,
#                     MEM_USERS=10000, RETRY_FAILED=0 (a knob given
#                     explicitly still wins)
#   SUTS              "parley kamailio" (order of the first repeat; alternates)
#   SCENARIOS         "register register_auth call message"; also null_call,
#                     null_message (sipp against sipp: the generator's ceiling)
#   STEP_SECONDS 10   REPEATS 3   BISECT 3   RETRY_FAILED 1
#   START_RATE[_<scenario>]   first rate of the ramp (register 2000,
#                     register_auth 2000, call 500, message 1000)
#   FIXED_RATES[_<scenario>]  run only these rates, no search
#   MIN_RATE 50  MAX_RATE 40000  HOLD_MS 0 (call hold, sipp -d)
#   MEM_USERS 100000  MEM_RATE 2000  MEM_SETTLE 8 (s before reading memory)
#   PIN 1  SUT_CPUS 0  GEN_CPUS 1
#   PORT_BASE 15060   the bench uses PORT_BASE..PORT_BASE+49 (see lib.sh)
#   SUT_PORT          default PORT_BASE, or the first free of PORT_BASE+0..9
#   DOMAIN example.com   (same for both servers; see kamailio/kamailio.cfg)
#   UDP_BUF 4194304   PROBE 1  PROBE_RATE 100  N_CALLEES 1000
#   BUILD 1  BUILD_DIR <repo>/build-bench  PARLEY_BIN  PARLEY_LOG_LEVEL err
#   PARLEY_ARGS       more flags for parley-homeserver (e.g. --app-chain none)
#   PARLEY_MAX_CLIENT_TX 100000  Parley's --max-client-transactions (default 10
#                     per client address; sipp sends all users from one)
#   PARLEY_DATA_BASE  where Parley's sqlite store goes (default: the run dir,
#                     on disk; /dev/shm takes the disk out of the picture)
#   register_auth     both servers challenge REGISTER (401, MD5, qop=auth) and
#                     check one password, AUTH_PASSWORD, for users auth0 ..
#                     auth<AUTH_USERS-1> (AUTH_USERS 10000; a step of more
#                     REGISTERs wraps around to refreshes).  For Parley the
#                     runner starts an etcd (PORT_BASE+40/41, data in the run
#                     directory), imports those users with parleyctl, and starts
#                     the server with PARLEY_AUTH_ARGS, by default
#                     "--etcd URL --server-name bench-home --auth register
#                     --auth-sha256=false" (sipp 3.6 knows MD5 only and reads
#                     the first challenge); each step waits until the fresh
#                     server has loaded every user (DIR_LOAD_WAIT 120 s; Parley
#                     syncs the directory in one etcd range bounded by 3 s, which
#                     50000 users miss on a loaded machine).  Kamailio: kamailio.cfg
#                     WITH_AUTH (pv_auth_check, the same password).
#   PARLEY_AUTH_ARGS  given: used as is, and no etcd is started
#   KAM_SHM_MB 1024  KAM_PKG_MB 16  KAM_CHILDREN 1
#   RESULTS           default tests/bench/results/<date>[-quick]
#   KEEP_RAW 0        1 keeps every sipp output
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

# Everything runs inside main(): bash then reads the whole file before it
# starts, so editing this script during a run cannot derail the run.
main() {

# ---------------------------------------------------------------- parameters
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  : "${FIXED_RATES_register:=2000}" "${FIXED_RATES_register_auth:=1000}"
  : "${FIXED_RATES_call:=500}" "${FIXED_RATES_message:=1000}"
  : "${FIXED_RATES_null_call:=500}" "${FIXED_RATES_null_message:=1000}"
  : "${REPEATS:=1}" "${STEP_SECONDS:=6}" "${MEM_USERS:=10000}" "${MEM_SETTLE:=3}" "${RETRY_FAILED:=0}"
fi
SUTS=${SUTS:-"parley kamailio"}
SCENARIOS=${SCENARIOS:-"register register_auth call message"}
STEP_SECONDS=${STEP_SECONDS:-10}
REPEATS=${REPEATS:-3}
BISECT=${BISECT:-3}
RETRY_FAILED=${RETRY_FAILED:-1}
START_RATE=${START_RATE:-500}
: "${START_RATE_register:=2000}" "${START_RATE_register_auth:=2000}"
: "${START_RATE_call:=500}" "${START_RATE_message:=1000}"
: "${START_RATE_null_call:=1000}" "${START_RATE_null_message:=2000}"
FIXED_RATES=${FIXED_RATES:-}
MIN_RATE=${MIN_RATE:-50}
MAX_RATE=${MAX_RATE:-40000}
HOLD_MS=${HOLD_MS:-0}
MEM_USERS=${MEM_USERS:-100000}
MEM_RATE=${MEM_RATE:-2000}
MEM_SETTLE=${MEM_SETTLE:-8}
PIN=${PIN:-1}
SUT_CPUS=${SUT_CPUS:-0}
GEN_CPUS=${GEN_CPUS:-1}
DOMAIN=${DOMAIN:-example.com}
UDP_BUF=${UDP_BUF:-4194304}
PROBE=${PROBE:-1}
PROBE_RATE=${PROBE_RATE:-100}
N_CALLEES=${N_CALLEES:-1000}
CALLEE_RATE=${CALLEE_RATE:-1000}
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
PARLEY_BIN=${PARLEY_BIN:-$BUILD_DIR/homeserver/parley-homeserver}
PARLEY_LOG_LEVEL=${PARLEY_LOG_LEVEL:-err}
PARLEY_AUTH_ARGS=${PARLEY_AUTH_ARGS:-}
AUTH_PASSWORD=${AUTH_PASSWORD:-parley-bench-secret}
AUTH_USERS=${AUTH_USERS:-10000}
PARLEYCTL_BIN=${PARLEYCTL_BIN:-$BUILD_DIR/tools/parleyctl/parleyctl}
KAM_SHM_MB=${KAM_SHM_MB:-1024}
KAM_PKG_MB=${KAM_PKG_MB:-16}
KAM_CHILDREN=${KAM_CHILDREN:-1}
KEEP_RAW=${KEEP_RAW:-0}
SUFFIX=""; [ "$QUICK" = 1 ] && SUFFIX=-quick
RESULTS=${RESULTS:-$HERE/results/$(date +%Y%m%d-%H%M%S)$SUFFIX}

[ "$STEP_SECONDS" -ge 6 ] || { echo "STEP_SECONDS must be >= 6" >&2; exit 2; }
mkdir -p "$RESULTS/raw" "$RESULTS/run" "$RESULTS/errors" || exit 2
RAW=$RESULTS/raw
RUN=$RESULTS/run
LOG=$RESULTS/run.log
STEPS=$RESULTS/steps.tsv
BESTS=$RESULTS/best.tsv
MEM=$RESULTS/memory.tsv
PROBE_BIN=$RUN/sip-probe
# shellcheck source=lib.sh
. "$HERE/lib.sh"

if [ "$PIN" = 1 ]; then SUT_TS="taskset -c $SUT_CPUS"; GEN_TS="taskset -c $GEN_CPUS"; else SUT_TS=""; GEN_TS=""; fi
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

# ---------------------------------------------------------------- preflight
case " $SUTS " in *" kamailio "*) NEED_KAMAILIO=1;; *) NEED_KAMAILIO=0;; esac
need_tools
NEED_DIRECTORY=0
case " $SUTS " in *" parley "*)
  case " $SCENARIOS " in *" register_auth "*) [ -z "$PARLEY_AUTH_ARGS" ] && NEED_DIRECTORY=1;; esac
  build_parley;; esac
cc -O2 -Wall -Wextra -o "$PROBE_BIN" "$HERE/tools/sip-probe.c" || die "cannot build sip-probe"
pick_ports

USERS_CSV=$RUN/users.csv
NUSERS=$(( MAX_RATE * STEP_SECONDS )); [ "$NUSERS" -lt "$MEM_USERS" ] && NUSERS=$MEM_USERS
gen_csv user "$NUSERS" "$USERS_CSV"
CALLEES_CSV=$RUN/callees.csv
gen_csv callee "$N_CALLEES" "$CALLEES_CSV"
AUTH_CSV=$RUN/auth-users.csv
case " $SCENARIOS " in *" register_auth "*) gen_csv auth "$AUTH_USERS" "$AUTH_CSV";; esac
if [ "$NEED_DIRECTORY" = 1 ]; then
  start_directory "$AUTH_USERS" "$AUTH_PASSWORD" || die "no directory for register_auth"
  PARLEY_AUTH_ARGS="--etcd $DIR_URL --server-name $PARLEY_SERVER_NAME --auth register --auth-sha256=false"
  PARLEY_AUTH_USERS=$AUTH_USERS
fi

{
  echo "date=$(date -Is)"
  echo "host=$(uname -n)"
  echo "cpus=$(nproc)"
  echo "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "kernel=$(uname -r)"
  echo "mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)"
  echo "parley_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet -- shared homeserver 2>/dev/null || echo -dirty)"
  echo "kamailio=$(kamailio -v 2>/dev/null | sed -n 's/^version: kamailio \([^ ]*\).*/\1/p')"
  echo "sipp=$(sipp -v 2>&1 | grep -o 'SIPp v[^ -]*' | head -1)"
  echo "suts=$SUTS"
  echo "scenarios=$SCENARIOS"
  echo "quick=$QUICK step_seconds=$STEP_SECONDS repeats=$REPEATS bisect=$BISECT retry_failed=$RETRY_FAILED"
  echo "pin=$PIN sut_cpus=$SUT_CPUS gen_cpus=$GEN_CPUS target=$TARGET domain=$DOMAIN hold_ms=$HOLD_MS"
  echo "mem_users=$MEM_USERS mem_rate=$MEM_RATE kam_children=$KAM_CHILDREN kam_shm_mb=$KAM_SHM_MB udp_buf=$UDP_BUF"
  echo "parley_auth_args=$PARLEY_AUTH_ARGS auth_users=$AUTH_USERS"
  echo "parley_args=${PARLEY_ARGS:-}"
  echo "parley_data_base=${PARLEY_DATA_BASE:-$RUN}"
  echo "command=$(for v in QUICK SUTS SCENARIOS STEP_SECONDS REPEATS BISECT FIXED_RATES MEM_USERS PARLEY_DATA_BASE PARLEY_ARGS; do
      [ -n "${!v:-}" ] && printf '%s="%s" ' "$v" "${!v}"; done)tests/bench/run.sh"
} >"$RESULTS/meta.txt"
log "results in $RESULTS; server address $TARGET, domain $DOMAIN"

# ---------------------------------------------------------------- one step
printf "sut\tscenario\trepeat\trate\tverdict\tachieved\tok\tfailed\tretrans\ttimeouts\tunexpected\tuas_failed\tsipp_p50_ms\tsipp_p99_ms\tprobe_p50_us\tprobe_p99_us\tprobe_lost\tsut_cpu_pct\tsut_top_proc_pct\tgen_cpu_pct\tsut_wait_pct\tgen_wait_pct\tcpu0_used_pct\tcpu1_used_pct\tsut_rss_kib\tsut_pss_kib\tsut_udp_drops\tgen_udp_drops\tload_s\tsut_cpu_load_pct\tus_per_op\tsut_exit\tsut_stats\n" >"$STEPS"
printf "sut\tscenario\trepeat\tbest\n" >"$BESTS"

kv() { echo " $1 " | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

# keep_errors TAG: for a failed step, errors/<tag>.txt: the sipp error logs
# summed up by kind (with the first events) and the start of the server's log
keep_errors() {
  local tag=$1 f out=$RESULTS/errors/$1.txt
  : >"$out"
  for f in "$RAW/uac_$tag.err" "$RAW/uas_$tag.err"; do
    [ -s "$f" ] || continue
    { echo "==== $(basename "$f")"; "$PY" "$HERE/tools/benchtool.py" errsummary "$f"; } >>"$out"
  done
  if [ -s "$RAW/sut.log" ]; then
    { echo "==== server log ($(wc -l <"$RAW/sut.log") lines, first 40)"; head -40 "$RAW/sut.log" | cut -c1-300; } >>"$out"
  fi
  [ -s "$out" ] || rm -f "$out"
}

# run_step SUT SCENARIO RATE REPEAT -> a line in steps.tsv; 0 PASS, 1 FAIL, 2 error
run_step() {
  local sut=$1 sc=$2 rate=$3 rep=$4
  local m=$(( rate * STEP_SECONDS )) uac_sf uas_sf="" dest=$TARGET csv pmode="" auth=0 extra=()
  case $sc in
    register)      uac_sf=register.xml; csv=$USERS_CSV; pmode=register
                   extra=(-key contact_host 127.0.0.1 -key contact_port $CONTACT_PORT -key expires 3600) ;;
    register_auth) uac_sf=register_auth.xml; csv=$AUTH_CSV; auth=1
                   extra=(-key contact_host 127.0.0.1 -key contact_port $CONTACT_PORT -key expires 3600 -key password "$AUTH_PASSWORD") ;;
    call)          uac_sf=uac_call.xml; uas_sf=uas_call.xml; csv=$CALLEES_CSV; pmode=message ;;
    message)       uac_sf=message.xml; uas_sf=uas_message.xml; csv=$CALLEES_CSV; pmode=message ;;
    null_call)     uac_sf=uac_call.xml; uas_sf=uas_call.xml; dest=$UAS_ADDR; csv=$CALLEES_CSV ;;
    null_message)  uac_sf=message.xml; uas_sf=uas_message.xml; dest=$UAS_ADDR; csv=$CALLEES_CSV ;;
    *) log "unknown scenario $sc"; return 2 ;;
  esac
  [ "$PROBE" = 1 ] || pmode=""
  local tag="${sut}_${sc}_r${rep}_${rate}"
  rm -f "$RAW"/*_rtt.csv "$RAW"/[abs]*.json "$RAW/sut.log" "$RAW"/*.err

  wait_ports $BENCH_PORTS_FIXED "$SUT_PORT" || { log "ports still busy: $WAIT_BUSY"; return 2; }
  if [ "$sut" != sipp ]; then
    start_sut "$sut" "$auth" || { keep_errors "$tag"; return 2; }
    if [ -n "$uas_sf" ]; then
      register_users "$CALLEES_CSV" "$N_CALLEES" "$CALLEE_RATE" "$UAS_PORT" "callees"
      if [ "$REG_OK" != "$N_CALLEES" ]; then
        log "$sut: callee registration failed ($REG_OK/$N_CALLEES)"
        cp "$RAW/callees.err" "$RAW/uac_$tag.err" 2>/dev/null; keep_errors "$tag"; stop_sut; return 2
      fi
    fi
  fi

  if [ -n "$uas_sf" ]; then
    $GEN_TS sipp -sf "$HERE/sipp/$uas_sf" -p $UAS_PORT -cp $UAS_CP -mp $UAS_MP $SIPP_COMMON \
      -stf "$RAW/uas_$tag.csv" -trace_err -error_file "$RAW/uas_$tag.err" \
      -timeout $(( STEP_SECONDS * 3 + 60 )) >"$RAW/uas_$tag.out" 2>&1 &
    UAS_PID=$!
    sleep 0.5
  fi
  if [ -n "$pmode" ] && [ "$sut" != sipp ]; then
    ( sleep 1; exec $GEN_TS "$PROBE_BIN" -t "$TARGET" -b 127.0.0.1:$PROBE_PORT -d "$DOMAIN" -M "$pmode" \
        -r "$PROBE_RATE" -n $(( PROBE_RATE * (STEP_SECONDS - 2) )) -w 3000 -u "probe$rep" ) >"$RAW/probe_$tag.out" 2>&1 &
    PROBE_PID=$!
  fi
  # the server's CPU over the whole load (snap before sipp starts, after it
  # ends): us/op = that CPU time / successful calls.  The mid-step snaps below
  # give the steady-state % of a core, the generators' share and the other
  # tenants' load, but on a loaded machine python's start-up can push the
  # second one past the end of the load.
  [ -n "$SUT_PID" ] && BT snap "$RAW/s0.json" "sut=$SUT_PID" >/dev/null
  (cd "$RAW" && exec $GEN_TS sipp "$dest" -sf "$HERE/sipp/$uac_sf" -inf "$csv" -key domain "$DOMAIN" "${extra[@]}" \
      -p $UAC_PORT -cp $UAC_CP -mp $UAC_MP $SIPP_COMMON -stf "$RAW/uac_$tag.csv" -trace_rtt -rtt_freq 1000 \
      -trace_err -error_file "$RAW/uac_$tag.err" \
      -m "$m" -r "$rate" -l $(( rate * 3 + 100 )) -d "$HOLD_MS" -recv_timeout 5000 \
      -timeout $(( STEP_SECONDS * 3 + 30 )) ) >"$RAW/uac_$tag.out" 2>&1 &
  UAC_PID=$!
  local uac=$UAC_PID
  # CPU in the steady state: 1 s after the start to 3 s before the planned end
  sleep 1
  BT snap "$RAW/a.json" "sut=${SUT_PID:-0}" "gen=$uac,${UAS_PID:-0},${PROBE_PID:-0}" >/dev/null
  sleep $(( STEP_SECONDS - 4 ))
  BT snap "$RAW/b.json" "sut=${SUT_PID:-0}" "gen=$uac,${UAS_PID:-0},${PROBE_PID:-0}" >/dev/null
  local drops; drops=$(BT udpdrops "$SUT_PORT" $UAS_PORT $UAC_PORT)
  local mem="procs=0 rss_kib=- pss_kib=-"
  [ -n "$SUT_PID" ] && mem=$(BT mem "$SUT_PID")
  wait "$uac"
  UAC_PID=""
  [ -n "$SUT_PID" ] && BT snap "$RAW/s1.json" "sut=$SUT_PID" >/dev/null
  [ -n "$PROBE_PID" ] && { wait "$PROBE_PID" 2>/dev/null; PROBE_PID=""; }
  if [ -n "$UAS_PID" ]; then
    kill -USR1 "$UAS_PID" 2>/dev/null      # graceful: finish open calls, then exit
    local i; for ((i = 0; i < 100; i++)); do kill -0 "$UAS_PID" 2>/dev/null || break; sleep 0.1; done
    stop_pid "$UAS_PID" 2; UAS_PID=""
  fi
  local stats="" sut_exit=-
  if [ -n "$SUT_PID" ]; then
    if kill -0 "$SUT_PID" 2>/dev/null; then
      stats=$(sut_stats | tr '\t' ' ')
      stop_sut; sut_exit=$SUT_RC
    else
      stop_sut; sut_exit="DIED:$SUT_RC"
      log "!!! $sut exited during the step (status $SUT_RC)"
    fi
  fi

  # --- evaluate
  local rttf; rttf=$(ls "$RAW"/*_rtt.csv 2>/dev/null | head -1)
  local st; st=$(BT sipp "$RAW/uac_$tag.csv" "$rttf")
  local ust=""; [ -n "$uas_sf" ] && ust=$(BT sipp "$RAW/uas_$tag.csv")
  local cpu; cpu=$(BT cpu "$RAW/a.json" "$RAW/b.json")
  local lcpu="" load_s=- lpct=- usop=-
  [ -f "$RAW/s1.json" ] && lcpu=$(BT cpu "$RAW/s0.json" "$RAW/s1.json")
  local pr="p50_us=- p99_us=- lost=-"
  [ -f "$RAW/probe_$tag.out" ] && pr=$(tail -1 "$RAW/probe_$tag.out")
  [ "$KEEP_RAW" = 1 ] && [ -n "$rttf" ] && mv "$rttf" "$RAW/rtt_$tag.csv"
  rm -f "$RAW"/*_rtt.csv
  local ok failed achieved retr p50 p99 verdict
  ok=$(kv "$st" ok); failed=$(kv "$st" failed); achieved=$(kv "$st" rate); retr=$(kv "$st" retrans)
  p50=$(kv "$st" rt_p50_ms); p99=$(kv "$st" rt_p99_ms)
  verdict=$("$PY" -c "
import sys
m,ok,f,ach,r=int(sys.argv[1]),sys.argv[2],sys.argv[3],sys.argv[4],float(sys.argv[5])
try: ok=int(ok); f=int(f); ach=float(ach)
except ValueError: print('ERROR'); sys.exit()
print('PASS' if ok>=m*0.999 and f<m*0.001 and ach>=r*0.95 else 'FAIL')" "$m" "$ok" "$failed" "$achieved" "$rate")
  case $sut_exit in DIED*) verdict=FAIL;; esac
  if [ -n "$lcpu" ]; then
    load_s=$(kv "$lcpu" interval_s); lpct=$(kv "$lcpu" sut_cpu_pct)
    usop=$("$PY" -c "
import sys
try: print(round(float(sys.argv[1]) / 100 * float(sys.argv[2]) * 1e6 / int(sys.argv[3])))
except (ValueError, ZeroDivisionError): print('-')" "$lpct" "$load_s" "$ok")
  fi
  # someone else bound one of our ports between the check and sipp's start:
  # not the server's fault, the step is run again (try_step)
  if [ "$verdict" != PASS ] && grep -qs "Unable to bind" "$RAW/uac_$tag.err" "$RAW/uas_$tag.err"; then
    verdict=PORTCLASH
  fi
  local gdrops=$(( $(kv "$drops" drops_$UAS_PORT) + $(kv "$drops" drops_$UAC_PORT) ))
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" \
    "$sut" "$sc" "$rep" "$rate" "$verdict" "$achieved" "$ok" "$failed" "$retr" \
    "$(kv "$st" timeouts)" "$(kv "$st" unexpected)" "$(kv "$ust" failed)" "$p50" "$p99" \
    "$(kv "$pr" p50_us)" "$(kv "$pr" p99_us)" "$(kv "$pr" lost)" \
    "$(kv "$cpu" sut_cpu_pct)" "$(kv "$cpu" sut_top_proc_pct)" "$(kv "$cpu" gen_cpu_pct)" \
    "$(kv "$cpu" sut_wait_pct)" "$(kv "$cpu" gen_wait_pct)" "$(kv "$cpu" cpu0_used_pct)" "$(kv "$cpu" cpu1_used_pct)" \
    "$(kv "$mem" rss_kib)" "$(kv "$mem" pss_kib)" \
    "$(kv "$drops" "drops_$SUT_PORT")" "$gdrops" "$load_s" "$lpct" "$usop" "$sut_exit" "$stats" >>"$STEPS"
  log "$sut $sc rep=$rep rate=$rate -> $verdict achieved=$achieved ok=$ok/$m failed=$failed retrans=$retr sipp_p50/p99=${p50}/${p99}ms probe=[$pr] cpu=[sut=$(kv "$cpu" sut_cpu_pct)% load=${lpct}%/${load_s}s us/op=$usop gen=$(kv "$cpu" gen_cpu_pct)% cpu0=$(kv "$cpu" cpu0_used_pct)% cpu1=$(kv "$cpu" cpu1_used_pct)%] sut=[$mem] udp=[$drops] exit=$sut_exit stats=[$stats]"
  [ "$verdict" = PASS ] || keep_errors "$tag"
  [ "$KEEP_RAW" = 1 ] || rm -f "$RAW"/uac_"$tag".* "$RAW"/uas_"$tag".* "$RAW/probe_$tag.out"
  case $verdict in PASS) return 0;; PORTCLASH) return 3;; *) return 1;; esac
}

# A failed step is run once more (RETRY_FAILED=1): on a shared machine a burst
# of someone else's load can sink one step.  Both attempts are in steps.tsv.
try_step() {  # try_step SUT SCENARIO RATE REPEAT -> 0 pass, 1 fail, 2 error
  local rc i clashes=0
  for ((i = 0; i <= RETRY_FAILED; i++)); do
    run_step "$@"; rc=$?
    if [ $rc -eq 3 ]; then   # a port clash does not count as an attempt (at most 3)
      clashes=$(( clashes + 1 )); [ $clashes -gt 3 ] && return 2
      i=$(( i - 1 )); sleep 5; continue
    fi
    [ $rc -ne 1 ] && return $rc
  done
  return 1
}

# ---------------------------------------------------------------- rate search
SEARCH_BEST=0
search() {  # search SUT SCENARIO REPEAT -> SEARCH_BEST: the highest passing rate (0 if none)
  local sut=$1 sc=$2 rep=$3 lo=0 hi=0 rc
  local sr="START_RATE_$sc" fr="FIXED_RATES_$sc"
  local rate=${!sr:-$START_RATE} fixed=${!fr:-$FIXED_RATES}
  SEARCH_BEST=0
  if [ -n "$fixed" ]; then
    for rate in $fixed; do
      try_step "$sut" "$sc" "$rate" "$rep" && [ "$rate" -gt "$SEARCH_BEST" ] && SEARCH_BEST=$rate
    done
    return
  fi
  while :; do
    try_step "$sut" "$sc" "$rate" "$rep"; rc=$?
    [ $rc -eq 2 ] && return
    if [ $rc -eq 0 ]; then
      lo=$rate
      [ $(( rate * 2 )) -gt "$MAX_RATE" ] && break
      rate=$(( rate * 2 ))
    else
      hi=$rate
      [ "$lo" -gt 0 ] && break
      rate=$(( rate / 2 ))
      [ "$rate" -lt "$MIN_RATE" ] && break
    fi
  done
  if [ "$lo" -gt 0 ] && [ "$hi" -gt 0 ]; then
    local i mid
    for ((i = 0; i < BISECT; i++)); do
      mid=$(( (lo + hi) / 2 / 10 * 10 ))
      [ "$mid" -le "$lo" ] && break
      if try_step "$sut" "$sc" "$mid" "$rep"; then lo=$mid; else hi=$mid; fi
    done
  fi
  SEARCH_BEST=$lo
}

# ---------------------------------------------------------------- memory test
printf "sut\tusers\tok\tpss_before_kib\tpss_after_kib\tpss_settled_kib\trss_before_kib\trss_settled_kib\tsettle_s\tdata_dir_kib\tserver_count\tsut_stats\n" >"$MEM"
# live_tx: transactions the running server still holds (from sut_stats)
live_tx() {
  local st a b; st=$(sut_stats)
  case $SUT_KIND in
    parley) a=$(kv "$st" tx_srv_live); b=$(kv "$st" tx_cli_live); [ -n "$a" ] && echo $(( a + ${b:-0} )) ;;
    kamailio) kv "$st" tx_live ;;
  esac
}
memory_test() {  # memory_test SUT: MEM_USERS distinct REGISTERs at MEM_RATE, PSS before/after
  local sut=$1 m0 m1 m2 ok stats count ddir=- t=0 n
  log "$sut memory test: $MEM_USERS distinct registrations at $MEM_RATE/s"
  rm -f "$RAW/sut.log" "$RAW"/*.err
  wait_ports $BENCH_PORTS_FIXED "$SUT_PORT" || { log "ports still busy: $WAIT_BUSY"; return 1; }
  start_sut "$sut" 0 $(( MEM_USERS / MEM_RATE + 300 )) || { keep_errors "${sut}_memory"; return 1; }
  sleep 1
  m0=$(BT mem "$SUT_PID")
  register_users "$USERS_CSV" "$MEM_USERS" "$MEM_RATE" "$CONTACT_PORT" mem_register; ok=$REG_OK
  sleep "$MEM_SETTLE"   # Kamailio's tm keeps finished transactions ~5 s
  m1=$(BT mem "$SUT_PID")
  # then until the finished transactions are gone (Parley keeps a UDP
  # non-INVITE server transaction 64*T1 = 32 s, RFC 3261 17.2.2 Timer J),
  # at most MEM_SETTLE_MAX seconds: the growth left is the registrations'
  t=$MEM_SETTLE
  while [ "$t" -lt "${MEM_SETTLE_MAX:-60}" ]; do
    n=$(live_tx); [ -z "$n" ] || [ "$n" -le 0 ] 2>/dev/null && break
    sleep 2; t=$(( t + 2 ))
  done
  # and one more housekeeping period for both servers (Parley gives freed heap
  # pages back on its 5 s tick, util/mem.h)
  sleep 6; t=$(( t + 6 ))
  m2=$(BT mem "$SUT_PID")
  stats=$(sut_stats | tr '\t' ' ')
  count=$(kv "$stats" aors)
  stop_sut
  [ "$sut" = parley ] && ddir=$(du -sk "$PARLEY_DATA" 2>/dev/null | cut -f1)
  [ "$ok" = "$MEM_USERS" ] || { cp "$RAW/mem_register.err" "$RAW/uac_${sut}_memory.err" 2>/dev/null; keep_errors "${sut}_memory"; }
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$sut" "$MEM_USERS" "$ok" \
    "$(kv "$m0" pss_kib)" "$(kv "$m1" pss_kib)" "$(kv "$m2" pss_kib)" "$(kv "$m0" rss_kib)" "$(kv "$m2" rss_kib)" \
    "$t" "${ddir:--}" "${count:--}" "$stats" >>"$MEM"
  log "$sut memory: ok=$ok/$MEM_USERS before=[$m0] after=[$m1] settled(${t}s)=[$m2] data_dir_kib=$ddir server_count=$count stats=[$stats]"
}

# ---------------------------------------------------------------- main
# Alternate the servers: repeat 1 in SUTS order, repeat 2 reversed, ...
sut_order() {  # sut_order REPEAT
  local s out=""
  if [ $(( $1 % 2 )) -eq 1 ]; then echo "$SUTS"; return; fi
  for s in $SUTS; do out="$s $out"; done
  echo "$out"
}
for sc in $SCENARIOS; do
  for ((rep = 1; rep <= REPEATS; rep++)); do
    case $sc in
      null_*)
        search sipp "$sc" "$rep"
        printf "sipp\t%s\t%s\t%s\n" "$sc" "$rep" "$SEARCH_BEST" >>"$BESTS"
        log "=== sipp $sc repeat $rep: max sustained rate $SEARCH_BEST/s"
        continue ;;
    esac
    for sut in $(sut_order "$rep"); do
      if [ "$sc" = register_auth ] && [ "$sut" = parley ] && [ -z "$PARLEY_AUTH_ARGS" ]; then
        printf "parley\tregister_auth\t%s\tn/a\n" "$rep" >>"$BESTS"
        continue
      fi
      search "$sut" "$sc" "$rep"
      printf "%s\t%s\t%s\t%s\n" "$sut" "$sc" "$rep" "$SEARCH_BEST" >>"$BESTS"
      log "=== $sut $sc repeat $rep: max sustained rate $SEARCH_BEST/s"
    done
  done
done
if [ "$MEM_USERS" -gt 0 ]; then
  for sut in $SUTS; do memory_test "$sut"; done
fi

"$PY" "$HERE/tools/report.py" "$RESULTS" >"$RESULTS/table.md" || die "report failed"
stop_directory
[ "$KEEP_RAW" = 1 ] || rm -rf "$RUN/users.csv" "$RUN/callees.csv" "$AUTH_CSV" "$RUN/etcd" "${PARLEY_DATA:-$RUN/parley-data}" "$RAW"/[abs]*.json \
  "$RAW"/callees.* "$RAW"/mem_register.* "$PROBE_BIN"
[ "$(dirname "$RESULTS")" = "$HERE/results" ] && ln -sfn "$(basename "$RESULTS")" "$HERE/results/latest"
log "done: $RESULTS/table.md"
cat "$RESULTS/table.md"
}

main "$@"; exit $?
