#!/bin/bash
# shellcheck disable=SC2034  # the settings below are read by lib.sh
# tests/bench/instr.sh: instructions per operation, Parley's home server
# against Kamailio, both under valgrind's callgrind with the same sipp load.
# Instruction counts do not depend on how loaded the machine is (CPU time per
# operation does), so this is the figure to compare on a shared machine.
#
#   tests/bench/instr.sh                       # 2000 MESSAGEs, 2000 calls
#   INSTR_N=500 INSTR_RATE=20 SUTS=parley tests/bench/instr.sh
#
# Per server: start it under callgrind (Kamailio: kamailio.cfg as run.sh uses
# it, 1 worker, `-DD -E` in the foreground, --trace-children=yes and one
# output file per process, %p), wait for it to answer OPTIONS, zero the
# counters of every process of the server, then three phases, each ended by a
# dump of every process (callgrind_control --dump, which also zeroes):
#   0. IDLE_SECONDS (10) with no load: the server's idle instructions per second
#   1. N_CALLEES REGISTERs (the callees; sipp register.xml)
#   2. INSTR_N MESSAGEs through the server to the callees (message.xml)
#   3. INSTR_N calls INVITE/100/180/200/ACK/BYE/200 (uac_call.xml)
#   4. with INSTR_AUTH=1, a second start of each server with digest authentication
#      (the register_auth of run.sh: Parley with an etcd directory of INSTR_N users,
#      Kamailio WITH_AUTH): INSTR_N REGISTERs, each 401 then 200 (MD5, qop=auth)
# and divides the summed instructions of each phase's dumps by its operations.
# Start-up and shutdown are excluded.  Timer work during a phase is included
# for both servers alike; the table's "net" columns subtract the idle rate over
# the phase's wall time.  PHASE_SETTLE seconds after each phase let
# retransmissions and transaction timers run out first.  On a busy machine use
# PIN=0 INSTR_NR=1 (see below; docs/benchmarks.md).
#
# Knobs: INSTR_N 2000  INSTR_RATE 50 (per second)  N_CALLEES 200
#   REG_RATE 20  SUTS "parley kamailio"  PORT_BASE 16800 (uses +0..+42)
#   BUILD_DIR <repo>/build-h8-rel (Release; BUILD=0 to use it as is)
#   PARLEY_ARGS (e.g. "--app-chain none")  PARLEY_LOG_LEVEL err
#   PHASE_SETTLE 3  IDLE_SECONDS 10  INSTR_NR 0  PIN 1 SUT_CPUS 0 GEN_CPUS 1
# Writes results/instr-<date>/: table.md, the callgrind outputs, logs.
# Every process is bounded (watchdog, sipp -timeout) and stopped by PID.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

INSTR_N=${INSTR_N:-2000}
INSTR_RATE=${INSTR_RATE:-50}
N_CALLEES=${N_CALLEES:-200}
REG_RATE=${REG_RATE:-20}
SUTS=${SUTS:-parley kamailio}
PORT_BASE=${PORT_BASE:-16800}
PHASE_SETTLE=${PHASE_SETTLE:-3}
IDLE_SECONDS=${IDLE_SECONDS:-10}
PIN=${PIN:-1}; SUT_CPUS=${SUT_CPUS:-0}; GEN_CPUS=${GEN_CPUS:-1}
DOMAIN=${DOMAIN:-example.com}
UDP_BUF=${UDP_BUF:-4194304}
BUILD_DIR=${BUILD_DIR:-$ROOT/build-h8-rel}
PARLEY_BIN=${PARLEY_BIN:-$BUILD_DIR/homeserver/parley-homeserver}
PARLEY_LOG_LEVEL=${PARLEY_LOG_LEVEL:-err}
PARLEY_AUTH_ARGS=""
INSTR_AUTH=${INSTR_AUTH:-0}
AUTH_PASSWORD=${AUTH_PASSWORD:-parley-bench-secret}
PARLEYCTL_BIN=${PARLEYCTL_BIN:-$BUILD_DIR/tools/parleyctl/parleyctl}
KAM_SHM_MB=${KAM_SHM_MB:-256}; KAM_PKG_MB=${KAM_PKG_MB:-16}; KAM_CHILDREN=1
RESULTS=${RESULTS:-$HERE/results/instr-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS/raw" "$RESULTS/run" || exit 2
RAW=$RESULTS/raw; RUN=$RESULTS/run; LOG=$RESULTS/run.log; PROBE_BIN=$RUN/sip-probe
STEP_SECONDS=10
READY_TRIES=240      # valgrind: Parley needs ~15 s to start, more on a busy machine
SUT_STOP_GRACE=60
NEED_KAMAILIO=0
case " $SUTS " in *" kamailio "*) NEED_KAMAILIO=1 ;; esac
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# INSTR_NR=1: the load's and the registrations' sipp send no retransmissions
# (-nr; the callee keeps its 200 retransmissions, sipp's UAS aborts calls
# without them).  A retransmission is parsed and absorbed by the server, so on
# a machine slow enough to draw them the count depends on its load again; but
# with -nr a late answer fails the operation.  Default 0: the table gives the
# retransmissions sipp counted.
UAS_COMMON=$SIPP_COMMON
[ "${INSTR_NR:-0}" = 1 ] && SIPP_COMMON="$SIPP_COMMON -nr"
if [ "$PIN" = 1 ]; then SUT_TS="taskset -c $SUT_CPUS"; GEN_TS="taskset -c $GEN_CPUS"; else SUT_TS=""; GEN_TS=""; fi
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

# sut_pids: the server's process and all its descendants (Kamailio forks its
# workers; under --trace-children each one is a callgrind run of its own)
sut_pids() {
  local todo=$SUT_PID p c out=""
  while [ -n "$todo" ]; do
    p=${todo%% *}; [ "$todo" = "$p" ] && todo="" || todo=${todo#* }
    out="$out $p"
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do todo="${todo:+$todo }$c"; done
  done
  echo $out
}

# cg_all ACTION...: callgrind_control ACTION for each process of the server
cg_all() {
  local p
  for p in $(sut_pids); do
    timeout 60 callgrind_control "$@" "$p" >>"$LOG" 2>&1 || log "callgrind_control $* $p failed"
  done
}

# phase_total LABEL [FILE_PREFIX]: the summed instructions of the dumps named LABEL
# (in $RESULTS/<FILE_PREFIX>.cg.*, default the server's kind)
phase_total() {
  local f sum=0 v
  for f in "$RESULTS/${2:-$SUT_KIND}".cg.*; do
    [ -f "$f" ] || continue
    grep -q "^desc: Trigger: dump $1\$" "$f" || continue
    v=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$f" | head -1)
    sum=$(( sum + ${v:-0} ))
  done
  echo "$sum"
}

# run_sipp TAG UAC_SCENARIO UAS_SCENARIO: INSTR_N operations through the server
# to the callees (the UAS listens on their Contact); sets LOAD_OK
run_sipp() {
  local tag=$1 uac=$2 uas=$3 t=$(( INSTR_N / INSTR_RATE * 4 + 60 ))
  $GEN_TS sipp -sf "$HERE/sipp/$uas" -p "$UAS_PORT" -cp $UAS_CP -mp $UAS_MP $UAS_COMMON \
    -stf "$RAW/$SUT_KIND-$tag-uas.csv" -trace_err -error_file "$RAW/$SUT_KIND-$tag-uas.err" -timeout "$t" \
    >"$RAW/$SUT_KIND-$tag-uas.out" 2>&1 &
  UAS_PID=$!
  sleep 0.5
  $GEN_TS sipp "$TARGET" -sf "$HERE/sipp/$uac" -inf "$CALLEES_CSV" -key domain "$DOMAIN" \
    -p "$UAC_PORT" -cp $UAC_CP -mp $UAC_MP $SIPP_COMMON -stf "$RAW/$SUT_KIND-$tag-uac.csv" -trace_err \
    -error_file "$RAW/$SUT_KIND-$tag-uac.err" -m "$INSTR_N" -r "$INSTR_RATE" -l $(( INSTR_RATE * 3 + 100 )) \
    -recv_timeout 10000 -timeout "$t" >"$RAW/$SUT_KIND-$tag-uac.out" 2>&1 &
  UAC_PID=$!
  wait "$UAC_PID"; UAC_PID=""
  kill -USR1 "$UAS_PID" 2>/dev/null
  local i; for ((i = 0; i < 100; i++)); do kill -0 "$UAS_PID" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$UAS_PID" 2; UAS_PID=""
  local st; st=$(BT sipp "$RAW/$SUT_KIND-$tag-uac.csv")
  LOAD_ST=$st
  LOAD_OK=$(echo "$st" | tr ' ' '\n' | sed -n 's/^ok=//p'); LOAD_OK=${LOAD_OK:-0}
  log "$SUT_KIND $tag: $st"
}

declare -A RES
T0=""
phase_time() {  # phase_time OP: seconds since T0 (the phase's start), then T0 = now
  local t; t=$(date +%s.%N)
  RES[$SUT_KIND-$1-s]=$("$PY" -c "print(round($t - $T0, 2))")
  T0=$t
}
measure() {  # measure KIND
  local kind=$1 wrapper life
  SUT_PORT=""; pick_ports
  life=$(( (INSTR_N / INSTR_RATE) * 8 + N_CALLEES / REG_RATE * 4 + 600 ))
  wrapper=(valgrind --tool=callgrind --dump-instr=no --separate-threads=no
           --callgrind-out-file="$RESULTS/$kind.cg.%p")
  [ "$kind" = kamailio ] && wrapper+=(--trace-children=yes)
  log "$kind under callgrind on $TARGET"
  start_sut "$kind" 0 "$life" "${wrapper[@]}" || die "$kind did not start under callgrind"
  sleep 2
  log "$kind: processes $(sut_pids)"
  cg_all --zero
  # what the server burns with no load (timers; Kamailio's timer processes)
  local t0 t1; t0=$(date +%s.%N)
  sleep "$IDLE_SECONDS"; cg_all --dump=idle; t1=$(date +%s.%N)
  RES[$kind-idle-s]=$("$PY" -c "print(round($t1 - $t0, 2))")
  T0=$(date +%s.%N)
  register_users "$CALLEES_CSV" "$N_CALLEES" "$REG_RATE" "$UAS_PORT" "$kind-register"
  [ "$REG_OK" = "$N_CALLEES" ] || die "$kind: callee registration failed ($REG_OK/$N_CALLEES)"
  sleep "$PHASE_SETTLE"; cg_all --dump=register; phase_time register
  T0=$(date +%s.%N)
  run_sipp message message.xml uas_message.xml
  [ "$LOAD_OK" = "$INSTR_N" ] || log "WARNING: $kind: $LOAD_OK/$INSTR_N MESSAGEs succeeded"
  RES[$kind-message-ok]=$LOAD_OK; RES[$kind-message-st]=$LOAD_ST
  sleep "$PHASE_SETTLE"; cg_all --dump=message; phase_time message
  T0=$(date +%s.%N)
  run_sipp call uac_call.xml uas_call.xml
  [ "$LOAD_OK" = "$INSTR_N" ] || log "WARNING: $kind: $LOAD_OK/$INSTR_N calls succeeded"
  RES[$kind-call-ok]=$LOAD_OK; RES[$kind-call-st]=$LOAD_ST
  sleep "$PHASE_SETTLE"; cg_all --dump=call; phase_time call
  stop_sut
  sleep 1
  # per operation: the phase's instructions, and net of the idle rate over the phase
  local idle op n tot
  idle=$(phase_total idle)
  RES[$kind-idle]=$("$PY" -c "print(int($idle / ${RES[$kind-idle-s]}))")
  for op in register message call; do
    n=$INSTR_N; [ "$op" = register ] && n=$N_CALLEES
    tot=$(phase_total $op)
    RES[$kind-$op]=$(( tot / n ))
    RES[$kind-$op-net]=$("$PY" -c "print(int(($tot - ${RES[$kind-idle]} * ${RES[$kind-$op-s]}) / $n))")
  done
  log "$kind: idle ${RES[$kind-idle]}/s; instructions per REGISTER ${RES[$kind-register]} (net ${RES[$kind-register-net]})," \
      "per MESSAGE ${RES[$kind-message]} (net ${RES[$kind-message-net]}), per call ${RES[$kind-call]} (net ${RES[$kind-call-net]})"
}

# measure_auth KIND: a fresh server with digest auth under callgrind; INSTR_N
# authenticated REGISTERs (401, then 200) of users auth0..; the idle rate of the
# first start is taken for "net"
measure_auth() {
  local kind=$1 wrapper life tot
  SUT_PORT=""; pick_ports
  life=$(( (INSTR_N / INSTR_RATE) * 8 + 600 ))
  wrapper=(valgrind --tool=callgrind --dump-instr=no --separate-threads=no
           --callgrind-out-file="$RESULTS/$kind-auth.cg.%p")
  [ "$kind" = kamailio ] && wrapper+=(--trace-children=yes)
  log "$kind with digest auth under callgrind on $TARGET"
  start_sut "$kind" 1 "$life" "${wrapper[@]}" || die "$kind (auth) did not start under callgrind"
  sleep 2
  cg_all --zero
  T0=$(date +%s.%N)
  local t=$(( INSTR_N / INSTR_RATE * 4 + 60 ))
  $GEN_TS sipp "$TARGET" -sf "$HERE/sipp/register_auth.xml" -inf "$AUTH_CSV" -key domain "$DOMAIN" \
    -key contact_host 127.0.0.1 -key contact_port "$CONTACT_PORT" -key expires 3600 -key password "$AUTH_PASSWORD" \
    -p "$UAC_PORT" -cp $UAC_CP -mp $UAC_MP $SIPP_COMMON -stf "$RAW/$kind-register_auth-uac.csv" -trace_err \
    -error_file "$RAW/$kind-register_auth-uac.err" -m "$INSTR_N" -r "$INSTR_RATE" -l $(( INSTR_RATE * 3 + 100 )) \
    -recv_timeout 10000 -timeout "$t" >"$RAW/$kind-register_auth-uac.out" 2>&1 &
  UAC_PID=$!
  wait "$UAC_PID"; UAC_PID=""
  LOAD_ST=$(BT sipp "$RAW/$kind-register_auth-uac.csv")
  LOAD_OK=$(echo "$LOAD_ST" | tr ' ' '\n' | sed -n 's/^ok=//p'); LOAD_OK=${LOAD_OK:-0}
  log "$kind register_auth: $LOAD_ST"
  [ "$LOAD_OK" = "$INSTR_N" ] || log "WARNING: $kind: $LOAD_OK/$INSTR_N authenticated REGISTERs succeeded"
  RES[$kind-register_auth-ok]=$LOAD_OK; RES[$kind-register_auth-st]=$LOAD_ST
  sleep "$PHASE_SETTLE"; cg_all --dump=register_auth; phase_time register_auth
  stop_sut
  sleep 1
  tot=$(phase_total register_auth "$kind-auth")
  RES[$kind-register_auth]=$(( tot / INSTR_N ))
  RES[$kind-register_auth-net]=$("$PY" -c "print(int(($tot - ${RES[$kind-idle]:-0} * ${RES[$kind-register_auth-s]}) / $INSTR_N))")
  log "$kind: instructions per authenticated REGISTER ${RES[$kind-register_auth]} (net ${RES[$kind-register_auth-net]})"
}

main() {
  command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
  need_tools
  if case " $SUTS " in *" parley "*) true ;; *) false ;; esac; then build_parley; fi
  cc -O2 -Wall -Wextra -o "$PROBE_BIN" "$HERE/tools/sip-probe.c" || die "cannot build sip-probe"
  CALLEES_CSV=$RUN/callees.csv
  gen_csv callee "$N_CALLEES" "$CALLEES_CSV"
  local k
  if [ "$INSTR_AUTH" = 1 ]; then
    AUTH_CSV=$RUN/auth-users.csv
    gen_csv auth "$INSTR_N" "$AUTH_CSV"
    pick_ports
    start_directory "$INSTR_N" "$AUTH_PASSWORD" || die "no directory for the auth phase"
    PARLEY_AUTH_ARGS="--etcd $DIR_URL --server-name $PARLEY_SERVER_NAME --auth register --auth-sha256=false"
    PARLEY_AUTH_USERS=$INSTR_N
  fi
  for k in $SUTS; do
    measure "$k"
    [ "$INSTR_AUTH" = 1 ] && measure_auth "$k"
  done
  stop_directory
  {
    echo "# instructions per operation (callgrind), $(date -Is)"
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); $INSTR_N MESSAGEs and $INSTR_N calls at $INSTR_RATE/s," \
         "$N_CALLEES REGISTERs at $REG_RATE/s; PARLEY_ARGS='${PARLEY_ARGS:-}'; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "Instructions per operation, summed over all the server's processes; net = less the server's"
    echo "idle instructions per second (timers) over the phase's wall time."
    echo
    echo "| operation | parley | kamailio | parley/kamailio | parley net | kamailio net | net ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    local ops="register message call"
    [ "$INSTR_AUTH" = 1 ] && ops="$ops register_auth"
    for op in $ops; do
      local p=${RES[parley-$op]:-} q=${RES[kamailio-$op]:-} r="-" pn=${RES[parley-$op-net]:-} qn=${RES[kamailio-$op-net]:-} rn="-"
      [ -n "$p" ] && [ -n "$q" ] && [ "$q" != 0 ] && r=$("$PY" -c "print(f'{$p/$q:.2f}')")
      [ -n "$pn" ] && [ -n "$qn" ] && [ "$qn" -gt 0 ] && rn=$("$PY" -c "print(f'{$pn/$qn:.2f}')")
      echo "| $op | ${p:--} | ${q:--} | $r | ${pn:--} | ${qn:--} | $rn |"
    done
    echo
    echo "idle instructions/s: parley ${RES[parley-idle]:--}, kamailio ${RES[kamailio-idle]:--}"
    for k in $SUTS; do
      echo "$k message: ${RES[$k-message-st]:--}"
      echo "$k call: ${RES[$k-call-st]:--}"
      [ "$INSTR_AUTH" = 1 ] && echo "$k register_auth: ${RES[$k-register_auth-st]:--}"
    done
  } >"$RESULTS/table.md"
  rm -f "$PROBE_BIN" "$CALLEES_CSV"
  rm -rf "${PARLEY_DATA:-$RUN/parley-data}"
  log "done: $RESULTS/table.md"
  cat "$RESULTS/table.md"
}

main "$@"; exit $?
