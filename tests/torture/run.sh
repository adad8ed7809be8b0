#!/usr/bin/env bash
# Run the RFC 4475/5118 torture messages against a freshly started Parley server.
#
#   tests/torture/run.sh /path/to/parley-homeserver [torture.py args...]
#   tests/torture/run.sh /path/to/parley-frontend   [torture.py args...]
#   tests/torture/run.sh /path/to/parley-edge       [torture.py args...]
#   tests/torture/run.sh --limits /path/to/parley-homeserver [limits.py args...]
#
# The binary's name picks what is started and which expectations apply
# (torture.py --kind, tests/torture/expect-<kind>.tsv over the RFC manifest):
#   homeserver  the server alone: UDP+TCP listener, domain example.com, no directory
#   frontend    a throwaway etcd (tests/lib/etcd.sh) as its directory, the front-end
#               with a UDP+TCP listener (and MTLS, see edge)
#   edge        etcd, a TLS PKI (deploy/certs.sh), a front-end (FE_BIN, default
#               ../frontend/parley-frontend next to the edge) on MTLS, and the edge with
#               its outside listeners TLS + UDP + TCP; the messages go to the edge's
#               UDP/TCP listener and are forwarded to the front-end over MTLS.
# For each mode (udp, tcp, tcp1, pipeline; TORTURE_MODES narrows) starts fresh servers
# on free loopback ports with temporary data dirs, waits (bounded) until the tested one
# answers OPTIONS, runs torture.py in that mode and stops them by PID (also on failure).
# Fails if a server died, did not exit cleanly on SIGTERM, or logged a sanitizer report
# (the front-end behind the edge included). --limits runs limits.py (resource limits)
# against one home server. Logs are kept in the temp dir on failure (path printed).
set -u
LIMITS=0
if [ "${1:-}" = "--limits" ]; then LIMITS=1; shift; fi
BIN=${1:?usage: run.sh [--limits] PATH-TO-parley-(homeserver|frontend|edge) [torture.py or limits.py args...]}
shift
# Modes to run, one fresh server each (TORTURE_MODES="udp tcp" to narrow).
MODES=${TORTURE_MODES:-udp tcp tcp1 pipeline}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
[ -x "$BIN" ] || { echo "run.sh: $BIN is not executable" >&2; exit 2; }
case $(basename "$BIN") in
  *frontend*) KIND=frontend ;;
  *edge*) KIND=edge ;;
  *) KIND=homeserver ;;
esac
if [ "$KIND" = edge ]; then
  FE_BIN=${FE_BIN:-$(dirname "$BIN")/../frontend/parley-frontend}
  [ -x "$FE_BIN" ] || { echo "run.sh: the edge needs a front-end: FE_BIN=$FE_BIN is not executable" >&2; exit 2; }
fi
[ "$LIMITS" -eq 0 ] || [ "$KIND" = homeserver ] || { echo "run.sh: --limits runs against parley-homeserver" >&2; exit 2; }

# --limits: the server's --max-connections (5,000 idle + probes fit; over-max fills it).
LIMITS_MAX_CONNS=${LIMITS_MAX_CONNS:-5200}
EXTRA_ARGS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-torture.XXXXXX")
SERVER_PID=
FE_PID=
ETCD_ST=
STATUS=1
# stop_pid PID: SIGTERM, SIGKILL after 5 s; reaps it. Returns its exit status.
stop_pid() {
  local code
  kill -TERM "$1" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null; code=$?
  return "$code"
}
cleanup() {
  [ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
  [ -n "$FE_PID" ] && stop_pid "$FE_PID"
  [ -n "$ETCD_ST" ] && "$ROOT/tests/lib/etcd.sh" stop "$ETCD_ST" >/dev/null 2>&1
  if [ "$STATUS" -eq 0 ]; then rm -rf "$WORK"; else echo "run.sh: logs kept in $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free port: bind port 0 and read what the kernel chose (UDP and TCP on the
# same number, so one port serves both listeners).
free_port() {
  python3 - <<'PY'
import socket
for _ in range(50):
    t = socket.socket(); t.bind(('127.0.0.1', 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(('127.0.0.1', p))
    except OSError:
        t.close(); continue
    u.close(); t.close(); print(p); break
PY
}

# The directory and PKI of the front-end and the edge, once per run.
setup_pool() {
  [ "$KIND" = homeserver ] && return 0
  ETCD_ST=$WORK/etcd
  ETCD_URL=$("$ROOT/tests/lib/etcd.sh" start "$ETCD_ST") || { echo "run.sh: etcd did not start" >&2; return 1; }
  CERTS=$WORK/certs
  "$ROOT/deploy/certs.sh" "$CERTS" fe1 edge1 >"$WORK/certs.log" 2>&1 \
    || { cat "$WORK/certs.log" >&2; echo "run.sh: certificates" >&2; return 1; }
}
tls_args() { echo --tls-cert "$CERTS/$1.pem" --tls-key "$CERTS/$1.key.pem" --tls-ca "$CERTS/ca.pem"; }

# wait_ready PID LOG NAME [PORT]: until 127.0.0.1:PORT (default $SIP_PORT) answers
# OPTIONS over UDP (at most 20 s, never a blind sleep: each probe waits 0.5 s).
wait_ready() {
  local port=${4:-$SIP_PORT}
  for _ in $(seq 40); do
    kill -0 "$1" 2>/dev/null || break
    if python3 "$HERE/torture.py" --udp "127.0.0.1:$port" --probe-only --wait 0.5 >/dev/null 2>&1; then
      return 0
    fi
  done
  echo "run.sh: $3 did not answer OPTIONS on 127.0.0.1:$port" >&2
  tail -n 50 "$2" >&2
  return 1
}

# start_frontend TAG LISTEN...: a front-end on a fresh data dir. Sets FE_PID, FE_LOG.
start_frontend() {
  local tag=$1; shift
  FE_LOG="$WORK/frontend-$tag.log"
  mkdir -p "$WORK/fe-$tag"
  # shellcheck disable=SC2046
  "$FE_BIN" "$@" --domain example.com --data-dir "$WORK/fe-$tag" --admin "127.0.0.1:$(free_port)" \
    --etcd "$ETCD_URL" --server-name "fe-$tag" --cert-subject fe1.pool.test $(tls_args fe1) \
    --auth-sha256=false --lease-ttl 3s --shutdown-grace 300ms >"$FE_LOG" 2>&1 &
  FE_PID=$!
}

# Starts the servers of $KIND on fresh ports and data dirs ($1 = tag) and waits until
# the tested one answers OPTIONS. Sets SERVER_PID, SIP_PORT, LOG (and FE_PID, FE_LOG).
start_server() {
  local tag=$1 fe_tls fe_udp
  SIP_PORT=$(free_port)
  [ -n "$SIP_PORT" ] || { echo "run.sh: no free port" >&2; return 1; }
  LOG="$WORK/$KIND-$tag.log"
  mkdir -p "$WORK/data-$tag"
  case $KIND in
  homeserver)
    # SERVER_NOFILE: start it with that descriptor limit (soft and hard)
    ${SERVER_NOFILE:+prlimit --nofile="$SERVER_NOFILE" --} "$BIN" --listen "udp:127.0.0.1:$SIP_PORT" --listen "tcp:127.0.0.1:$SIP_PORT" \
           --domain example.com --data-dir "$WORK/data-$tag" --admin "127.0.0.1:$(free_port)" \
           "${EXTRA_ARGS[@]}" >"$LOG" 2>&1 &
    SERVER_PID=$!
    ;;
  frontend)
    FE_BIN=$BIN
    start_frontend "$tag" --listen "udp:127.0.0.1:$SIP_PORT" --listen "tcp:127.0.0.1:$SIP_PORT" \
      --listen "tls:127.0.0.1:$(free_port)"
    SERVER_PID=$FE_PID; FE_PID=; LOG=$FE_LOG
    ;;
  edge)
    fe_tls=$(free_port); fe_udp=$(free_port)
    start_frontend "$tag" --listen "udp:127.0.0.1:$fe_udp" --listen "tls:127.0.0.1:$fe_tls"
    # the front-end first: the edge's first requests and probes must find it up
    wait_ready "$FE_PID" "$FE_LOG" parley-frontend "$fe_udp" || return 1
    # shellcheck disable=SC2046
    "$BIN" --listen "tls:127.0.0.1:$(free_port)" --listen "udp:127.0.0.1:$SIP_PORT" \
      --listen "tcp:127.0.0.1:$SIP_PORT" --inside-listen "tls:127.0.0.1:$(free_port)" \
      --frontend "sip:127.0.0.1:$fe_tls;transport=tls" --data-dir "$WORK/data-$tag" \
      --admin "127.0.0.1:$(free_port)" --etcd "$ETCD_URL" --server-name "edge-$tag" \
      --cert-subject edge1.pool.test $(tls_args edge1) --lease-ttl 3s --shutdown-grace 300ms \
      --probe-interval 1s --down-hold 2s >"$LOG" 2>&1 &
    SERVER_PID=$!
    ;;
  esac
  wait_ready "$SERVER_PID" "$LOG" "parley-$KIND" || return 1
  return 0
}

# check_stopped NAME PID LOG: stops PID (bounded) and fails if it had died already,
# exited non-zero after SIGTERM, or logged a sanitizer report (LeakSanitizer: at exit).
check_stopped() {
  local name=$1 pid=$2 log=$3 code
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"; code=$?
    echo "run.sh: $name exited during the run (status $code)" >&2
    tail -n 50 "$log" >&2
    return 1
  fi
  stop_pid "$pid"; code=$?
  if grep -qE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$log"; then
    echo "run.sh: sanitizer report in $log" >&2
    grep -nE -A20 'AddressSanitizer|LeakSanitizer|runtime error:' "$log" | head -60 >&2
    return 1
  fi
  if [ "$code" -ne 0 ]; then
    echo "run.sh: $name exited with status $code after SIGTERM" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
  return 0
}

# Stops the servers of this mode; fails as check_stopped does for any of them.
stop_server() {
  local r=0
  check_stopped "parley-$KIND" "$SERVER_PID" "$LOG" || r=1
  SERVER_PID=
  if [ -n "$FE_PID" ]; then
    check_stopped "parley-frontend (behind the edge)" "$FE_PID" "$FE_LOG" || r=1
    FE_PID=
  fi
  return "$r"
}

rc=0
if [ "$LIMITS" -eq 1 ]; then
  # 5,000 idle connections plus the over-max check need ~5,400 descriptors on our side;
  # the server raises its own soft limit to the hard one (tp_raise_fd_limit).
  ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 5600 ] \
    || { echo "run.sh: descriptor limit $(ulimit -n) < 5600 (raise ulimit -Hn)" >&2; exit 1; }
  EXTRA_ARGS=(--max-connections "$LIMITS_MAX_CONNS")
  start_server limits || exit 1
  grep -q 'descriptor limit' "$LOG" || { echo "run.sh: the server did not log its descriptor limit" >&2; rc=1; }
  python3 "$HERE/limits.py" --udp "127.0.0.1:$SIP_PORT" --tcp "127.0.0.1:$SIP_PORT" --pid "$SERVER_PID" \
    --max-conns "$LIMITS_MAX_CONNS" "$@" \
    | tee "$WORK/limits.out"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  stop_server || rc=1
  # Out of descriptors: a second server whose hard limit (300) is far below its
  # max-connections (default 10,000) must warn at start and survive the exhaustion.
  if [ $# -eq 0 ]; then
    EXTRA_ARGS=()
    SERVER_NOFILE=300 start_server fds || exit 1
    grep -q 'max-connections .* needs about' "$LOG" \
      || { echo "run.sh: no warning about max-connections above the descriptor limit" >&2; rc=1; }
    python3 "$HERE/limits.py" --udp "127.0.0.1:$SIP_PORT" --tcp "127.0.0.1:$SIP_PORT" --pid "$SERVER_PID" \
      --fd-limit 300 --only fd-exhaust | tee -a "$WORK/limits.out"
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    stop_server || rc=1
  fi
else
  setup_pool || exit 1
  # One fresh server per mode: the modes send the same files, and a transaction the
  # previous mode left open (an INVITE waiting for its ACK, RFC 3261 17.2.1) would
  # absorb the next mode's copy as a retransmission (same branch and sent-by, 17.2.3).
  for mode in $MODES; do
    start_server "$mode" || exit 1
    python3 "$HERE/torture.py" --kind "$KIND" --udp "127.0.0.1:$SIP_PORT" --tcp "127.0.0.1:$SIP_PORT" \
      --mode "$mode" "$@" | tee "$WORK/torture-$mode.out"
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    stop_server || rc=1
  done
  cat "$WORK"/torture-*.out | awk -v k="$KIND" '/ passed, .* failed$/ { p += $1; f += $3 } END { printf "total (%s): %d passed, %d failed\n", k, p, f }'
fi
STATUS=$rc
exit "$rc"
