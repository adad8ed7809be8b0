# Shared shell helpers for Parley's integration tests (sourced, bash).
# Every process started through these helpers is recorded and stopped by PID on exit.
# Traffic stays on 127.0.0.1.

PARLEY_PIDS=()
TEST_TMP=${TEST_TMP:-$(mktemp -d /tmp/parley-test.XXXXXX)}
TEST_FAILED=0

cleanup_all() {
  local pid i left
  # SIGTERM first: a `timeout` wrapper (sipp_bg) passes it on to its sipp, which a
  # SIGKILL of the wrapper would leave running forever. Then SIGKILL what is left.
  for pid in "${PARLEY_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for i in 1 2 3 4 5 6 7 8 9 10; do
    left=0
    for pid in "${PARLEY_PIDS[@]}"; do
      # alive and not a zombie waiting to be reaped
      [ -r "/proc/$pid/stat" ] && ! grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null && left=1
    done
    [ "$left" = 0 ] && break
    sleep 0.2
  done
  for pid in "${PARLEY_PIDS[@]}"; do
    kill -9 "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  if [ "$TEST_FAILED" = 0 ] && [ -z "${KEEP_TMP:-}" ]; then
    rm -rf "$TEST_TMP"
  else
    echo "logs kept in $TEST_TMP" >&2
  fi
}
trap cleanup_all EXIT

fail() { echo "FAIL: $*" >&2; TEST_FAILED=1; exit 1; }
pass() { echo "ok: $*"; }

# A port free on 127.0.0.1 for both UDP and TCP.
free_port() {
  python3 - <<'PY'
import socket, random
for _ in range(200):
    p = random.randint(20000, 32767)   # below the ephemeral range (32768-60999): no client socket takes it meanwhile
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p))
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM); t.bind(("127.0.0.1", p))
        u.close(); t.close(); print(p); break
    except OSError:
        continue
PY
}

# wait_http URL [seconds]: polls until the URL answers 200 (no fixed sleep).
wait_http() {
  local url=$1 limit=${2:-10} i
  for ((i = 0; i < limit * 20; i++)); do
    curl -fs -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.05
  done
  return 1
}

# bg NAME CMD...: runs CMD in the background with output in $TEST_TMP/NAME.log; sets LAST_PID.
bg() {
  local name=$1; shift
  "$@" >"$TEST_TMP/$name.log" 2>&1 &
  LAST_PID=$!
  PARLEY_PIDS+=("$LAST_PID")
}

# pool_base [BIND_ADDR]: a base port B for deploy/local/pool with the pool's ports free
# for TCP and UDP on BIND_ADDR (default 127.0.0.1): B..B+51, B+200..B+240; below the
# kernel's ephemeral range (32768-60999), so no client socket takes one meanwhile
pool_base() {
  python3 - "${1:-127.0.0.1}" <<'PY'
import random, socket, sys
def free(p):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((sys.argv[1], p))
        except OSError:
            return False
        finally:
            s.close()
    return True
for _ in range(100):
    b = random.randrange(20000, 32500, 10)
    if all(free(b + o) for o in (0, 1, 2, 3, 10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 200, 202, 210, 220, 230, 240)):
        print(b); break
PY
}
