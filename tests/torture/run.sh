#!/usr/bin/env bash
# Run the RFC 4475/5118 torture messages against a freshly started parley-homeserver.
#
#   tests/torture/run.sh /path/to/parley-homeserver [torture.py args...]
#   tests/torture/run.sh --limits /path/to/parley-homeserver [limits.py args...]
#
# For each mode (udp, tcp, tcp1, pipeline; TORTURE_MODES narrows) starts a fresh
# server on free loopback ports with a temporary data dir, waits (bounded) until it
# answers OPTIONS, runs torture.py in that mode and stops the server by PID (also on
# failure). Fails if the server died, did not exit cleanly on SIGTERM, or logged a
# sanitizer report. --limits runs limits.py (resource limits) against one server.
# Logs are kept in the temp dir on failure (path printed).
set -u
LIMITS=0
if [ "${1:-}" = "--limits" ]; then LIMITS=1; shift; fi
BIN=${1:?usage: run.sh [--limits] PATH-TO-parley-homeserver [torture.py or limits.py args...]}
shift
# Modes to run, one fresh server each (TORTURE_MODES="udp tcp" to narrow).
MODES=${TORTURE_MODES:-udp tcp tcp1 pipeline}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "$BIN" ] || { echo "run.sh: $BIN is not executable" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-torture.XXXXXX")
SERVER_PID=
STATUS=1
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
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
# Starts the server on fresh ports and data dir ($1 = tag), waits (at most 20 s,
# never a blind sleep) until it answers OPTIONS. Sets SERVER_PID, SIP_PORT, LOG.
start_server() {
  SIP_PORT=$(free_port)
  ADMIN_PORT=$(free_port)
  [ -n "$SIP_PORT" ] && [ -n "$ADMIN_PORT" ] || { echo "run.sh: no free port" >&2; return 1; }
  LOG="$WORK/server-$1.log"
  mkdir -p "$WORK/data-$1"
  "$BIN" --listen "udp:127.0.0.1:$SIP_PORT" --listen "tcp:127.0.0.1:$SIP_PORT" \
         --domain example.com --data-dir "$WORK/data-$1" --admin "127.0.0.1:$ADMIN_PORT" \
         >"$LOG" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 40); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    if python3 "$HERE/torture.py" --udp "127.0.0.1:$SIP_PORT" --probe-only --wait 0.5 >/dev/null 2>&1; then
      return 0
    fi
  done
  echo "run.sh: parley-homeserver did not answer OPTIONS on 127.0.0.1:$SIP_PORT" >&2
  tail -n 50 "$LOG" >&2
  return 1
}

# Fails if the server died during the run, then stops it by PID (SIGTERM, bounded)
# and fails on a non-zero exit or a sanitizer report (LeakSanitizer reports at exit).
stop_server() {
  local code
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID"; code=$?
    SERVER_PID=
    echo "run.sh: parley-homeserver exited during the run (status $code)" >&2
    tail -n 50 "$LOG" >&2
    return 1
  fi
  kill -TERM "$SERVER_PID" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID"; code=$?
  SERVER_PID=
  if grep -qE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$LOG"; then
    echo "run.sh: sanitizer report in $LOG" >&2
    grep -nE -A20 'AddressSanitizer|LeakSanitizer|runtime error:' "$LOG" | head -60 >&2
    return 1
  fi
  if [ "$code" -ne 0 ]; then
    echo "run.sh: parley-homeserver exited with status $code after SIGTERM" >&2
    tail -n 20 "$LOG" >&2
    return 1
  fi
  return 0
}

rc=0
if [ "$LIMITS" -eq 1 ]; then
  # 1,000 idle connections need more than the usual 1024 descriptors with headroom.
  ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  start_server limits || exit 1
  python3 "$HERE/limits.py" --udp "127.0.0.1:$SIP_PORT" --tcp "127.0.0.1:$SIP_PORT" --pid "$SERVER_PID" "$@" \
    | tee "$WORK/limits.out"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  stop_server || rc=1
else
  # One fresh server per mode: the modes send the same files, and a transaction the
  # previous mode left open (an INVITE waiting for its ACK, RFC 3261 17.2.1) would
  # absorb the next mode's copy as a retransmission (same branch and sent-by, 17.2.3).
  for mode in $MODES; do
    start_server "$mode" || exit 1
    python3 "$HERE/torture.py" --udp "127.0.0.1:$SIP_PORT" --tcp "127.0.0.1:$SIP_PORT" --mode "$mode" "$@" \
      | tee "$WORK/torture-$mode.out"
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    stop_server || rc=1
  done
  cat "$WORK"/torture-*.out | awk '/ passed, .* failed$/ { p += $1; f += $3 } END { printf "total: %d passed, %d failed\n", p, f }'
fi
STATUS=$rc
exit "$rc"
