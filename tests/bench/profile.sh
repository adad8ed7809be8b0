#!/bin/bash
# tests/bench/profile.sh: where Parley's home server spends its CPU under the
# benchmark's call load (INVITE ... BYE through the proxy to registered
# callees), for whoever optimizes the core.
#
#   tests/bench/profile.sh                    # profiler chosen automatically
#   PROFILER=callgrind PROFILE_CALLS=1500 PROFILE_RATE=25 tests/bench/profile.sh
#   PROFILER=perf PROFILE_RATE=1000 tests/bench/profile.sh
#   PROFILE_SCENARIO=message tests/bench/profile.sh
#
# PROFILER=auto uses `perf record -g` when hardware counters work here
# (`perf stat -e instructions true`), else valgrind's callgrind (instruction
# counts, exact but ~50x slower: keep the rate low; defaults 2000 calls at
# 50/s).  The server is pinned to SUT_CPUS and sipp to GEN_CPUS as in run.sh;
# N_CALLEES (200) callees are registered (at PROFILE_REG_RATE, 20/s under
# callgrind) before the profile is zeroed, so only the load is counted.
#
# Writes results/profile-<date>/: profile.txt (top functions by self and by
# inclusive cost), the raw profile (callgrind.out / perf.data) and run.log.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

main() {
  PROFILER=${PROFILER:-auto}
  PROFILE_SCENARIO=${PROFILE_SCENARIO:-call}
  PIN=${PIN:-1}; SUT_CPUS=${SUT_CPUS:-0}; GEN_CPUS=${GEN_CPUS:-1}
  DOMAIN=${DOMAIN:-example.com}
  UDP_BUF=${UDP_BUF:-4194304}
  N_CALLEES=${N_CALLEES:-200}
  BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
  PARLEY_BIN=${PARLEY_BIN:-$BUILD_DIR/homeserver/parley-homeserver}
  PARLEY_LOG_LEVEL=${PARLEY_LOG_LEVEL:-err}
  PARLEY_AUTH_ARGS=""
  TOP=${TOP:-15}
  RESULTS=${RESULTS:-$HERE/results/profile-$(date +%Y%m%d-%H%M%S)}
  mkdir -p "$RESULTS/raw" "$RESULTS/run" || exit 2
  RAW=$RESULTS/raw; RUN=$RESULTS/run; LOG=$RESULTS/run.log; PROBE_BIN=$RUN/sip-probe
  STEP_SECONDS=10
  NEED_KAMAILIO=0
  # shellcheck source=lib.sh
  . "$HERE/lib.sh"
  if [ "$PIN" = 1 ]; then SUT_TS="taskset -c $SUT_CPUS"; GEN_TS="taskset -c $GEN_CPUS"; else SUT_TS=""; GEN_TS=""; fi
  trap 'cleanup; exit 130' INT TERM
  trap cleanup EXIT

  if [ "$PROFILER" = auto ]; then
    if perf stat -e instructions true 2>&1 | grep -q '<not supported>\|not counted' || ! command -v perf >/dev/null; then
      PROFILER=callgrind
    else
      PROFILER=perf
    fi
  fi
  case $PROFILER in
    callgrind) command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
               : "${PROFILE_RATE:=50}" "${PROFILE_CALLS:=2000}"; READY_TRIES=120; SUT_STOP_GRACE=60 ;;
    perf)      : "${PROFILE_RATE:=1000}" "${PROFILE_CALLS:=$(( PROFILE_RATE * 10 ))}" ;;
    *) die "PROFILER must be auto, callgrind or perf" ;;
  esac
  need_tools
  build_parley
  cc -O2 -Wall -Wextra -o "$PROBE_BIN" "$HERE/tools/sip-probe.c" || die "cannot build sip-probe"
  pick_ports
  CALLEES_CSV=$RUN/callees.csv
  gen_csv callee "$N_CALLEES" "$CALLEES_CSV"
  log "profiling parley-homeserver with $PROFILER: $PROFILE_CALLS ${PROFILE_SCENARIO}s at $PROFILE_RATE/s on $TARGET"

  local life=$(( PROFILE_CALLS / PROFILE_RATE * 4 + 300 )) wrapper=()
  case $PROFILER in
    callgrind) wrapper=(valgrind --tool=callgrind --callgrind-out-file="$RESULTS/callgrind.out" --dump-instr=no
                        --separate-threads=no) ;;
    perf)      wrapper=(perf record -g -F 999 -o "$RESULTS/perf.data" --) ;;
  esac
  wait_ports $BENCH_PORTS_FIXED "$SUT_PORT" || die "ports busy: $WAIT_BUSY"
  start_sut parley 0 "$life" "${wrapper[@]}" || die "parley did not start under $PROFILER"
  # perf: SUT_PID is perf's; the server is its child (perf stops it on SIGTERM... we stop perf)
  local reg_rate=1000
  [ "$PROFILER" = callgrind ] && reg_rate=${PROFILE_REG_RATE:-20}
  register_users "$CALLEES_CSV" "$N_CALLEES" "$reg_rate" "$UAS_PORT" callees
  [ "$REG_OK" = "$N_CALLEES" ] || die "callee registration failed ($REG_OK/$N_CALLEES)"
  if [ "$PROFILER" = callgrind ]; then
    callgrind_control -z "$SUT_PID" >>"$LOG" 2>&1 || log "callgrind_control -z failed: the registrations are in the profile"
  fi

  local uas_sf=uas_call.xml uac_sf=uac_call.xml
  [ "$PROFILE_SCENARIO" = message ] && { uas_sf=uas_message.xml; uac_sf=message.xml; }
  $GEN_TS sipp -sf "$HERE/sipp/$uas_sf" -p "$UAS_PORT" -cp $UAS_CP -mp $UAS_MP $SIPP_COMMON -stf "$RAW/uas.csv" \
    -trace_err -error_file "$RAW/uas.err" -timeout $(( PROFILE_CALLS / PROFILE_RATE * 3 + 60 )) >"$RAW/uas.out" 2>&1 &
  UAS_PID=$!
  sleep 0.5
  $GEN_TS sipp "$TARGET" -sf "$HERE/sipp/$uac_sf" -inf "$CALLEES_CSV" -key domain "$DOMAIN" \
    -p "$UAC_PORT" -cp $UAC_CP -mp $UAC_MP $SIPP_COMMON -stf "$RAW/uac.csv" -trace_err -error_file "$RAW/uac.err" \
    -m "$PROFILE_CALLS" -r "$PROFILE_RATE" -l $(( PROFILE_RATE * 3 + 100 )) -recv_timeout 10000 \
    -timeout $(( PROFILE_CALLS / PROFILE_RATE * 3 + 60 )) >"$RAW/uac.out" 2>&1 &
  UAC_PID=$!
  wait "$UAC_PID"; UAC_PID=""
  kill -USR1 "$UAS_PID" 2>/dev/null
  local i; for ((i = 0; i < 100; i++)); do kill -0 "$UAS_PID" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$UAS_PID" 2; UAS_PID=""
  local st; st=$(BT sipp "$RAW/uac.csv")
  log "load: $st"
  stop_sut   # SIGTERM: the server exits, callgrind/perf write their output
  sleep 1

  {
    echo "# parley-homeserver profile: $PROFILER, $PROFILE_CALLS ${PROFILE_SCENARIO}s at $PROFILE_RATE/s ($(date -Is))"
    echo "# commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null), Release build; load: $st"
    echo
    case $PROFILER in
      callgrind)
        # callgrind_annotate lists the call-chain roots (below main, main,
        # event_base_dispatch) first even in the self listing: rows above 50 %
        # are those, not self cost, and are left out
        local total; total=$(callgrind_annotate "$RESULTS/callgrind.out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
        echo "total: $total instructions, $(( total / PROFILE_CALLS )) per ${PROFILE_SCENARIO}"
        echo
        echo "## top $TOP functions by self cost (instructions, % of total)"
        callgrind_annotate --threshold=100 --inclusive=no "$RESULTS/callgrind.out" 2>/dev/null |
          grep -E '^ *[0-9,]+ \( *[0-9.]+%\)' | grep -v 'PROGRAM TOTALS' |
          awk '{ p = $2; gsub(/[(%)]/, "", p); if (p + 0 < 50) print }' | head -"$TOP"
        echo
        echo "## top $TOP functions by inclusive cost (instructions, % of total), below the event loop"
        callgrind_annotate --threshold=100 --inclusive=yes "$RESULTS/callgrind.out" 2>/dev/null |
          grep -E '^ *[0-9,]+ \( *[0-9.]+%\)' | grep -v 'PROGRAM TOTALS' |
          awk '{ p = $2; gsub(/[(%)]/, "", p); if (p + 0 < 95) print }' | head -"$TOP"
        ;;
      perf)
        echo "## top $TOP functions by self cost (samples)"
        perf report -i "$RESULTS/perf.data" --no-children --stdio --sort symbol 2>/dev/null | grep -v '^#' |
          grep '%' | head -"$TOP"
        echo
        echo "## top $TOP functions by inclusive cost (samples, with children)"
        perf report -i "$RESULTS/perf.data" --children --stdio --sort symbol -g none 2>/dev/null | grep -v '^#' |
          grep '%' | head -"$TOP"
        ;;
    esac
  } >"$RESULTS/profile.txt"
  rm -f "$PROBE_BIN" "$CALLEES_CSV"
  rm -rf "${PARLEY_DATA:-$RUN/parley-data}"
  log "done: $RESULTS/profile.txt"
  cat "$RESULTS/profile.txt"
}

main "$@"; exit $?
