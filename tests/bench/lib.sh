# shellcheck shell=bash
# tests/bench/lib.sh: shared by run.sh and profile.sh (sourced, not run).
#
# Process control (only our own PIDs, TERM then KILL), the servers under test
# (Parley's home server and the peer, Kamailio), sipp helpers and the
# preflight (tools, build, free ports).  Everything is on 127.0.0.1 and on
# ports 15060-15099.  The peer benchmark (shared/bench/run-peer.sh) uses
# 15060, 15070, 15072, 15074, 15080, 15081 and 15085-15096; other people run it
# (or their own sipp) on this shared machine, so apart from the server this
# layout keeps clear of those ports:
#
#   SUT_PORT  15060, or the first free one of 15060-15069: the server under test
#   15071 sipp UAS (callee)                 -cp 15083  -mp 15075 (and 15077)
#   15082 sipp UAC (the load)               -cp 15084  -mp 15091 (and 15093)
#   15073 sipp registering callees / the memory test's users
#                                           -cp 15095  -mp 15097 (and 15099)
#   15079 Contact port of the load's REGISTERs (nothing listens there)
#   15078 latency probe      15076 readiness probe
#   15098 Parley's admin HTTP endpoint (metrics read at the end of each step)
#
# Callers set: HERE ROOT RESULTS RAW RUN LOG and the knobs documented in run.sh.

BENCH_PORTS_FIXED="15071 15073 15075 15076 15077 15078 15082 15083 15084 15091 15093 15095 15097 15098 15099"
ADMIN_PORT=15098
UAS_PORT=15071
UAC_PORT=15082
REG_PORT=15073
UAS_ADDR=127.0.0.1:$UAS_PORT

log() { echo "$(date +%T) $*" | tee -a "$LOG" >&2; }
die() { log "ERROR: $*"; exit 2; }

# The helpers run on the generators' CPU, with the interpreter resolved once
# (a pyenv shim costs a few bash processes per call on a busy machine).
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || echo python3)
BT() { ${GEN_TS:-} "$PY" "$HERE/tools/benchtool.py" "$@"; }

# ------------------------------------------------------------ process control
SUT_PID=""; SUT_KIND=""; UAS_PID=""; PROBE_PID=""; UAC_PID=""; WATCHDOG_PID=""
stop_pid() {   # stop_pid PID [grace_seconds]: TERM, wait, KILL -- only our own PIDs
  local p=$1 g=${2:-10} i
  [ -n "$p" ] || return 0
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
  kill -TERM "$p" 2>/dev/null
  for ((i = 0; i < g * 10; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}
cleanup() {
  stop_pid "$UAC_PID" 2; stop_pid "$PROBE_PID" 2; stop_pid "$UAS_PID" 5; stop_sut
  UAC_PID=""; PROBE_PID=""; UAS_PID=""
}

# ------------------------------------------------------------ preflight
need_tools() {
  local t missing=""
  for t in sipp taskset cc python3; do command -v "$t" >/dev/null || missing="$missing $t"; done
  if ! command -v kamailio >/dev/null && [ "${NEED_KAMAILIO:-1}" = 1 ]; then missing="$missing kamailio"; fi
  [ -z "$missing" ] && return 0
  # sipp is Debian's sip-tester; the bench is not part of CI, so install here, on demand
  local pkgs=""
  for t in $missing; do
    case $t in sipp) pkgs="$pkgs sip-tester";; kamailio) pkgs="$pkgs kamailio";; cc) pkgs="$pkgs gcc";;
                taskset) pkgs="$pkgs util-linux";; python3) pkgs="$pkgs python3";; esac
  done
  [ "$(id -u)" = 0 ] || die "missing:$missing (install:$pkgs)"
  log "installing$pkgs (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs >>"$LOG" 2>&1 || die "apt-get install$pkgs failed"
  for t in $missing; do command -v "$t" >/dev/null || die "$t still missing after apt-get"; done
}

build_parley() {
  [ "${BUILD:-1}" = 1 ] || { [ -x "$PARLEY_BIN" ] || die "BUILD=0 but $PARLEY_BIN is missing"; return 0; }
  log "building parley-homeserver (Release) in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DPARLEY_TESTS=OFF >>"$LOG" 2>&1 &&
    cmake --build "$BUILD_DIR" -j2 --target parley-homeserver >>"$LOG" 2>&1 ||
    die "build failed, see $LOG"
  [ -x "$PARLEY_BIN" ] || die "no $PARLEY_BIN after the build"
}

# SUT_PORT: as given, else the first free port of 15060-15069 (the machine is
# shared; someone may have a server of their own on 15060).
pick_ports() {
  local p
  wait_ports $BENCH_PORTS_FIXED || die "ports in use by other processes: $WAIT_BUSY (see ss -uanp); the bench needs them"
  if [ -n "${SUT_PORT:-}" ]; then
    [ -z "$(BT portsbusy "$SUT_PORT")" ] || die "SUT_PORT $SUT_PORT is in use (ss -uanp)"
  else
    for p in 15060 15061 15062 15063 15064 15065 15066 15067 15068 15069; do
      [ -z "$(BT portsbusy "$p")" ] && { SUT_PORT=$p; break; }
    done
    [ -n "${SUT_PORT:-}" ] || die "no free port for the server in 15060-15069"
    [ "$SUT_PORT" = 15060 ] || log "note: 15060 is in use by someone else; the servers listen on $SUT_PORT"
  fi
  case "$SUT_PORT" in 150[6-9][0-9]) ;; *) die "SUT_PORT must be in 15060-15099";; esac
  TARGET=127.0.0.1:$SUT_PORT
}

# wait_ports PORT...: until every port can be bound (someone else's test may
# hold one for a while), at most PORT_WAIT seconds; WAIT_BUSY: those still busy
WAIT_BUSY=""
wait_ports() {
  local i
  for ((i = 0; i <= ${PORT_WAIT:-120}; i += 2)); do
    WAIT_BUSY=$(BT portsbusy "$@")
    [ -z "$WAIT_BUSY" ] && return 0
    [ "$i" = 0 ] && log "waiting for ports in use by someone else: $WAIT_BUSY"
    sleep 2
  done
  return 1
}

# ------------------------------------------------------------ servers under test
# sut_cmd KIND AUTH -> SUT_CMD array (KIND parley|kamailio, AUTH 0|1)
sut_cmd() {
  local kind=$1 auth=$2
  case $kind in
    parley)
      PARLEY_DATA=${PARLEY_DATA_BASE:-$RUN}/parley-data
      rm -rf "$PARLEY_DATA"
      SUT_CMD=("$PARLEY_BIN" --listen "udp:$TARGET" --domain "$DOMAIN" --data-dir "$PARLEY_DATA"
               --admin "127.0.0.1:$ADMIN_PORT" --log-level "$PARLEY_LOG_LEVEL" --shutdown-grace 200ms)
      # shellcheck disable=SC2206
      [ "$auth" = 1 ] && SUT_CMD+=($PARLEY_AUTH_ARGS)
      # shellcheck disable=SC2206
      SUT_CMD+=(${PARLEY_ARGS:-})
      ;;
    kamailio)
      mkdir -p "$RUN/kamailio"
      SUT_CMD=(kamailio -f "$HERE/kamailio/kamailio.cfg" -DD -E -m "$KAM_SHM_MB" -M "$KAM_PKG_MB" -Y "$RUN/kamailio"
               -A "LISTEN_ADDR=udp:$TARGET" -A "CHILDREN=$KAM_CHILDREN" -A "UDP_BUF=$UDP_BUF"
               -A "CTL_SOCK=\"unix:$RUN/kamailio/ctl\"")
      [ "$auth" = 1 ] && SUT_CMD+=(-A WITH_AUTH -A "AUTH_PASSWORD=\"$AUTH_PASSWORD\"")
      ;;
    *) die "unknown server $kind" ;;
  esac
}

sut_ready() {  # OPTIONS sip:TARGET until a 2xx, at most READY_TRIES x 0.5 s
  local i
  for ((i = 0; i < ${READY_TRIES:-30}; i++)); do
    kill -0 "$SUT_PID" 2>/dev/null || return 1
    "$PROBE_BIN" -t "$TARGET" -b 127.0.0.1:15076 -d "$TARGET" -M options -n 1 -w 500 >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

# start_sut KIND AUTH [MAX_LIFETIME_S] [WRAPPER...]: the server in the
# background, pinned to SUT_CPUS, with a watchdog that stops it after its
# lifetime even if this script dies.  WRAPPER (e.g. valgrind ...) goes first.
start_sut() {
  local kind=$1 auth=$2 life=${3:-$(( STEP_SECONDS * 3 + 180 ))}
  shift 3 2>/dev/null || shift $#
  sut_cmd "$kind" "$auth"
  $SUT_TS "$@" "${SUT_CMD[@]}" >"$RAW/sut.log" 2>&1 &
  SUT_PID=$!; SUT_KIND=$kind
  ( sp=""; trap '[ -n "$sp" ] && kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$life" & sp=$!; wait "$sp"
    kill -TERM "$SUT_PID" 2>/dev/null; sleep 10; kill -KILL "$SUT_PID" 2>/dev/null ) >/dev/null 2>&1 &
  WATCHDOG_PID=$!
  if ! sut_ready; then
    log "$kind did not answer OPTIONS on $TARGET: ${SUT_CMD[*]}"
    tail -5 "$RAW/sut.log" >&2
    stop_sut
    return 1
  fi
  return 0
}
# stop_sut: SIGTERM (grace 10 s) then KILL; sets SUT_RC to the server's exit status
SUT_RC=""
stop_sut() {
  SUT_RC=""
  if [ -n "$SUT_PID" ]; then
    if kill -0 "$SUT_PID" 2>/dev/null; then
      kill -TERM "$SUT_PID" 2>/dev/null
      local i; for ((i = 0; i < ${SUT_STOP_GRACE:-10} * 10; i++)); do kill -0 "$SUT_PID" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$SUT_PID" 2>/dev/null && kill -KILL "$SUT_PID" 2>/dev/null
    fi
    wait "$SUT_PID" 2>/dev/null; SUT_RC=$?
  fi
  SUT_PID=""
  [ -n "$WATCHDOG_PID" ] && { kill -TERM "$WATCHDOG_PID" 2>/dev/null; wait "$WATCHDOG_PID" 2>/dev/null; }
  WATCHDOG_PID=""
}

# sut_stats: one line of key=value from the running server (failures under load)
sut_stats() {
  case $SUT_KIND in
    parley) BT parleymetrics "127.0.0.1:$ADMIN_PORT" ;;
    kamailio)
      command -v kamcmd >/dev/null || return 0
      timeout 5 kamcmd -s "unix:$RUN/kamailio/ctl" stats.get_statistics all 2>/dev/null |
        BT kamstats ;;
  esac
}

# ------------------------------------------------------------ sipp
SIPP_COMMON="-i 127.0.0.1 -ci 127.0.0.1 -nostdin -trace_stat -fd 1 -buff_size $UDP_BUF -max_log_size 1000000"

REG_OK=0
register_users() {  # register_users CSV COUNT RATE CONTACT_PORT TAG -> sets REG_OK
  local csv=$1 n=$2 r=$3 cport=$4 tag=$5 secs
  secs=$(( n / r + 60 ))
  rm -f "$RAW/$tag.csv"
  $GEN_TS sipp "$TARGET" -sf "$HERE/sipp/register.xml" -inf "$csv" \
    -key domain "$DOMAIN" -key contact_host 127.0.0.1 -key contact_port "$cport" -key expires 3600 \
    -p $REG_PORT -cp 15095 -mp 15097 $SIPP_COMMON -stf "$RAW/$tag.csv" -trace_err -error_file "$RAW/$tag.err" \
    -m "$n" -r "$r" -l $(( r * 3 + 100 )) -recv_timeout 5000 -timeout "$secs" >"$RAW/$tag.out" 2>&1 &
  UAC_PID=$!
  wait "$UAC_PID"; UAC_PID=""
  REG_OK=$(BT sipp "$RAW/$tag.csv" | tr ' ' '\n' | sed -n 's/^ok=//p')
  REG_OK=${REG_OK:-0}
}

gen_csv() {  # gen_csv PREFIX N FILE: SEQUENTIAL list PREFIX0..PREFIX(N-1)
  "$PY" -c "
import sys
p, n = sys.argv[1], int(sys.argv[2])
with open(sys.argv[3], 'w') as f:
    f.write('SEQUENTIAL\n')
    f.writelines(f'{p}{i};\n' for i in range(n))
" "$1" "$2" "$3"
}
