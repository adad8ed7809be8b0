#!/usr/bin/env bash
# Run the RFC 4475/5118 torture messages against a freshly started parley-homeserver.
#
#   tests/torture/run.sh /path/to/parley-homeserver [torture.py args...]
#
# Starts the server on free loopback ports with a temporary data dir, waits
# (bounded) until it answers OPTIONS, runs torture.py in all modes, stops the
# server by PID (also on failure) and fails if the server died on the way.
# Logs are kept in the temp dir on failure (path printed).
set -u
BIN=${1:?usage: run.sh PATH-TO-parley-homeserver [torture.py args...]}
shift
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
SIP_PORT=$(free_port)
ADMIN_PORT=$(free_port)
[ -n "$SIP_PORT" ] && [ -n "$ADMIN_PORT" ] || { echo "run.sh: no free port" >&2; exit 1; }

mkdir -p "$WORK/data"
"$BIN" --listen "udp:127.0.0.1:$SIP_PORT" --listen "tcp:127.0.0.1:$SIP_PORT" \
       --domain example.com --data-dir "$WORK/data" --admin "127.0.0.1:$ADMIN_PORT" \
       >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

# Wait until the server answers OPTIONS (at most 20 s), never a blind sleep.
ready=0
for _ in $(seq 40); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  if python3 "$HERE/torture.py" --udp "127.0.0.1:$SIP_PORT" --probe-only --wait 0.5 >/dev/null 2>&1; then
    ready=1; break
  fi
done
if [ "$ready" -ne 1 ]; then
  echo "run.sh: parley-homeserver did not answer OPTIONS on 127.0.0.1:$SIP_PORT" >&2
  tail -n 50 "$WORK/server.log" >&2
  exit 1
fi

python3 "$HERE/torture.py" --udp "127.0.0.1:$SIP_PORT" --tcp "127.0.0.1:$SIP_PORT" --mode all "$@" \
  | tee "$WORK/torture.out"
rc=${PIPESTATUS[0]}

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  wait "$SERVER_PID"; code=$?
  SERVER_PID=
  echo "run.sh: parley-homeserver exited during the run (status $code)" >&2
  tail -n 50 "$WORK/server.log" >&2
  exit 1
fi
if grep -qE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$WORK/server.log"; then
  echo "run.sh: sanitizer report in server log" >&2
  grep -nE -A20 'AddressSanitizer|runtime error:' "$WORK/server.log" | head -60 >&2
  exit 1
fi
STATUS=$rc
exit "$rc"
