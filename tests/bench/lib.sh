# shellcheck shell=bash disable=SC2034  # the port and tool variables are for the scripts that source this
# tests/bench/lib.sh: shared by run.sh and profile.sh (sourced, not run).
#
# Process control (only our own PIDs, TERM then KILL), the servers under test
# (Parley's home server and the peer, Kamailio), sipp helpers and the
# preflight (tools, build, free ports).  Everything is on 127.0.0.1 and on
# ports PORT_BASE..PORT_BASE+49 (PORT_BASE 15060 by default; e.g. PORT_BASE=16500
# to run beside someone else's bench).  The peer benchmark
# (shared/bench/run-peer.sh) uses 15060, 15070, 15072, 15074, 15080, 15081 and
# 15085-15096; other people run it (or their own sipp) on this shared machine,
# so apart from the server this layout keeps clear of those ports.  Offsets
# from PORT_BASE (the default's port in brackets):
#
#   SUT_PORT  +0, or the first free one of +0..+9: the server under test (UDP)
#   +11 sipp UAS (callee) [15071]            -cp +23  -mp +15 (and +17)
#   +22 sipp UAC (the load) [15082]          -cp +24  -mp +31 (and +33)
#   +13 sipp registering callees / the memory test's users [15073]
#                                            -cp +35  -mp +37 (and +39)
#   +19 Contact port of the load's REGISTERs (nothing listens there) [15079]
#   +18 latency probe [15078]      +16 readiness probe [15076]
#   +38 Parley's admin HTTP endpoint (metrics read at the end of each step) [15098]
#   +40, +41 etcd client and peer (TCP; Parley's directory for register_auth)
#   +42 the server's TLS listener (TCP; tests/bench/tls.sh)
#
# Callers set: HERE ROOT RESULTS RAW RUN LOG and the knobs documented in run.sh.

PORT_BASE=${PORT_BASE:-15060}
pb() { echo $(( PORT_BASE + $1 )); }
ADMIN_PORT=$(pb 38)
UAS_PORT=$(pb 11); UAS_CP=$(pb 23); UAS_MP=$(pb 15)
UAC_PORT=$(pb 22); UAC_CP=$(pb 24); UAC_MP=$(pb 31)
REG_PORT=$(pb 13); REG_CP=$(pb 35); REG_MP=$(pb 37)
CONTACT_PORT=$(pb 19); PROBE_PORT=$(pb 18); READY_PORT=$(pb 16)
ETCD_CLIENT_PORT=$(pb 40); ETCD_PEER_PORT=$(pb 41); TLS_PORT=$(pb 42)
BENCH_PORTS_FIXED="$UAS_PORT $REG_PORT $UAS_MP $READY_PORT $(pb 17) $PROBE_PORT $UAC_PORT $UAS_CP $UAC_CP $UAC_MP $(pb 33) $REG_CP $REG_MP $ADMIN_PORT $(pb 39)"
# ports benchtool.py portsbusy also checks for TCP (the admin endpoint, etcd, TLS)
export BENCH_TCP_PORTS="$ADMIN_PORT $ETCD_CLIENT_PORT $ETCD_PEER_PORT $TLS_PORT"
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
  stop_directory
}

# ------------------------------------------------------------ preflight
need_tools() {
  local t missing=""
  for t in sipp taskset cc python3; do command -v "$t" >/dev/null || missing="$missing $t"; done
  if ! command -v kamailio >/dev/null && [ "${NEED_KAMAILIO:-1}" = 1 ]; then missing="$missing kamailio"; fi
  if [ "${NEED_KAMAILIO_TLS:-0}" = 1 ] && ! [ -e "${KAM_MODULES:-/usr/lib/x86_64-linux-gnu/kamailio/modules}/tls.so" ]; then
    missing="$missing kamailio-tls"
  fi
  if [ "${NEED_DIRECTORY:-0}" = 1 ] && ! command -v etcd >/dev/null; then missing="$missing etcd"; fi
  [ -z "$missing" ] && return 0
  # sipp is Debian's sip-tester; the bench is not part of CI, so install here, on demand
  local pkgs=""
  for t in $missing; do
    case $t in sipp) pkgs="$pkgs sip-tester";; kamailio) pkgs="$pkgs kamailio";; cc) pkgs="$pkgs gcc";;
                kamailio-tls) pkgs="$pkgs kamailio-tls-modules";; etcd) pkgs="$pkgs etcd-server";;
                taskset) pkgs="$pkgs util-linux";; python3) pkgs="$pkgs python3";; esac
  done
  [ "$(id -u)" = 0 ] || die "missing:$missing (install:$pkgs)"
  log "installing$pkgs (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs >>"$LOG" 2>&1 || die "apt-get install$pkgs failed"
  for t in $missing; do
    case $t in kamailio-tls) continue;; esac
    command -v "$t" >/dev/null || die "$t still missing after apt-get"
  done
}

build_parley() {
  [ "${BUILD:-1}" = 1 ] || { [ -x "$PARLEY_BIN" ] || die "BUILD=0 but $PARLEY_BIN is missing"; return 0; }
  local targets=parley-homeserver
  [ "${NEED_DIRECTORY:-0}" = 1 ] && targets="$targets parleyctl"
  log "building $targets (Release) in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DPARLEY_TESTS=OFF >>"$LOG" 2>&1 &&
    cmake --build "$BUILD_DIR" -j2 --target $targets >>"$LOG" 2>&1 ||
    die "build failed, see $LOG"
  [ -x "$PARLEY_BIN" ] || die "no $PARLEY_BIN after the build"
}

# SUT_PORT: as given, else the first free port of PORT_BASE+0..+9 (the machine
# is shared; someone may have a server of their own on PORT_BASE).
pick_ports() {
  local p i
  wait_ports $BENCH_PORTS_FIXED || die "ports in use by other processes: $WAIT_BUSY (see ss -uanp); the bench needs them"
  if [ -n "${SUT_PORT:-}" ]; then
    [ -z "$(BT portsbusy "$SUT_PORT")" ] || die "SUT_PORT $SUT_PORT is in use (ss -uanp)"
  else
    for ((i = 0; i < 10; i++)); do
      p=$(pb $i)
      [ -z "$(BT portsbusy "$p")" ] && { SUT_PORT=$p; break; }
    done
    [ -n "${SUT_PORT:-}" ] || die "no free port for the server in $PORT_BASE-$(pb 9)"
    [ "$SUT_PORT" = "$PORT_BASE" ] || log "note: $PORT_BASE is in use by someone else; the servers listen on $SUT_PORT"
  fi
  [ "$SUT_PORT" -ge "$PORT_BASE" ] && [ "$SUT_PORT" -le "$(pb 9)" ] ||
    die "SUT_PORT must be in $PORT_BASE-$(pb 9) (PORT_BASE+0..9)"
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
# Parley runs with --max-client-transactions PARLEY_MAX_CLIENT_TX (100000): its
# connection trust (px_trust) allows 10 outstanding server transactions per
# client connection, for UDP per source address, and sipp sends every user's
# requests from one address, so a pause of 100 ms at 100/s already draws 503s
# (seen in the first register_auth runs).  Kamailio has no such limit.
sut_cmd() {
  local kind=$1 auth=$2
  case $kind in
    parley)
      PARLEY_DATA=${PARLEY_DATA_BASE:-$RUN}/parley-data
      rm -rf "$PARLEY_DATA"
      mkdir -p "$(dirname "$PARLEY_DATA")"
      SUT_CMD=("$PARLEY_BIN" --listen "udp:$TARGET" --domain "$DOMAIN" --data-dir "$PARLEY_DATA"
               --admin "127.0.0.1:$ADMIN_PORT" --log-level "$PARLEY_LOG_LEVEL" --shutdown-grace 200ms
               --max-client-transactions "${PARLEY_MAX_CLIENT_TX:-100000}")
      # shellcheck disable=SC2206
      [ "$auth" = 1 ] && SUT_CMD+=($PARLEY_AUTH_ARGS)
      # shellcheck disable=SC2206
      SUT_CMD+=(${PARLEY_ARGS:-})
      # SUT_TLS=1 (tls.sh): also a TLS listener
      [ "${SUT_TLS:-0}" = 1 ] && SUT_CMD+=(--listen "tls:127.0.0.1:$TLS_PORT" --tls-cert "$CERTS/home1.pem"
        --tls-key "$CERTS/home1.key.pem" --tls-ca "$CERTS/ca.pem")
      ;;
    kamailio)
      mkdir -p "$RUN/kamailio"
      SUT_CMD=(kamailio -f "$HERE/kamailio/kamailio.cfg" -DD -E -m "$KAM_SHM_MB" -M "$KAM_PKG_MB" -Y "$RUN/kamailio"
               -A "LISTEN_ADDR=udp:$TARGET" -A "CHILDREN=$KAM_CHILDREN" -A "UDP_BUF=$UDP_BUF"
               -A "CTL_SOCK=\"unix:$RUN/kamailio/ctl\"")
      [ "$auth" = 1 ] && SUT_CMD+=(-A WITH_AUTH -A "AUTH_PASSWORD=\"$AUTH_PASSWORD\"")
      if [ "${SUT_TLS:-0}" = 1 ]; then
        kam_tls_cfg "$RUN/kamailio/tls.cfg"
        SUT_CMD+=(-A WITH_TLS -A "TLS_LISTEN=tls:127.0.0.1:$TLS_PORT" -A "TLS_CFG=\"$RUN/kamailio/tls.cfg\"")
      fi
      ;;
    *) die "unknown server $kind" ;;
  esac
}

# kam_tls_cfg FILE: the tls module's settings, with the certificates Parley
# gets (CERTS, made by tests/lib/certs.sh): TLS 1.2+, the server certificate
# home1, client certificates requested and verified against the CA, not required
kam_tls_cfg() {
  cat >"$1" <<EOF
[server:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = no
private_key = $CERTS/home1.key.pem
certificate = $CERTS/home1.pem
ca_list = $CERTS/ca.pem

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
EOF
}

sut_ready() {  # OPTIONS sip:TARGET until a 2xx, at most READY_TRIES x 0.5 s
  local i
  for ((i = 0; i < ${READY_TRIES:-30}; i++)); do
    kill -0 "$SUT_PID" 2>/dev/null || return 1
    "$PROBE_BIN" -t "$TARGET" -b 127.0.0.1:$READY_PORT -d "$TARGET" -M options -n 1 -w 500 >/dev/null 2>&1 && return 0
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
  if [ "$kind" = parley ] && [ "$auth" = 1 ] && [ -n "${PARLEY_AUTH_USERS:-}" ] && ! directory_loaded; then
    log "parley did not load the $PARLEY_AUTH_USERS users of the directory (has ${DIR_LOADED:-?})"
    stop_sut
    return 1
  fi
  return 0
}

# ------------------------------------------------------------ the directory (etcd)
# For register_auth, Parley checks users in its directory: a throwaway etcd
# (tests/lib/etcd.sh) on ETCD_CLIENT_PORT/ETCD_PEER_PORT, data in $RUN/etcd,
# with users auth0..auth<N-1>@DOMAIN, all with one password, homed on
# PARLEY_SERVER_NAME.  Sets DIR_URL.
PARLEY_SERVER_NAME=${PARLEY_SERVER_NAME:-bench-home}
DIR_URL=""; DIR_ST=""
start_directory() {  # start_directory N PASSWORD
  local n=$1 pw=$2 t0 out
  # shellcheck source=../lib/etcd.sh
  . "$ROOT/tests/lib/etcd.sh"
  DIR_ST=$RUN/etcd
  rm -rf "$DIR_ST"
  # etcd.sh reads ETCD_CLIENT_PORT / ETCD_PEER_PORT
  DIR_URL=$(ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT ETCD_PEER_PORT=$ETCD_PEER_PORT etcd_start "$DIR_ST") || {
    log "etcd did not start: $(tail -3 "$DIR_ST/etcd.log" 2>/dev/null)"; DIR_ST=""; return 1; }
  log "etcd at $DIR_URL (PID $(cat "$DIR_ST/pid")); importing $n users"
  "$PY" -c "
import sys
n, pw, dom, home = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(sys.argv[5], 'w') as f:
    f.writelines(f'auth{i}@{dom},{pw},{home}\n' for i in range(n))
" "$n" "$pw" "$DOMAIN" "$PARLEY_SERVER_NAME" "$RUN/auth-import.csv"
  t0=$(date +%s.%N)
  out=$("$PARLEYCTL_BIN" --etcd "$DIR_URL" user import "$RUN/auth-import.csv" 2>&1 </dev/null) || {
    log "parleyctl user import failed: $out"; return 1; }
  rm -f "$RUN/auth-import.csv"
  log "directory: $out (wall $("$PY" -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$t0" "$(date +%s.%N)") s)"
  return 0
}
stop_directory() {
  [ -n "$DIR_ST" ] || return 0
  etcd_stop "$DIR_ST"
  DIR_ST=""
}
# directory_loaded: until the running Parley's /metrics count PARLEY_AUTH_USERS
# users in its directory cache (at most DIR_LOAD_WAIT s); DIR_LOADED: the count
DIR_LOADED=""
directory_loaded() {
  local i
  for ((i = 0; i < ${DIR_LOAD_WAIT:-120} * 5; i++)); do
    kill -0 "$SUT_PID" 2>/dev/null || return 1
    DIR_LOADED=$(curl -fs -m 2 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
      awk '$1 == "parley_directory_users" {print $2}')
    [ "${DIR_LOADED%.*}" = "$PARLEY_AUTH_USERS" ] && return 0
    sleep 0.2
  done
  return 1
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
    -p $REG_PORT -cp $REG_CP -mp $REG_MP $SIPP_COMMON -stf "$RAW/$tag.csv" -trace_err -error_file "$RAW/$tag.err" \
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
