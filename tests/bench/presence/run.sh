#!/usr/bin/env bash
# Presence fan-out benchmark (docs/benchmarks.md "Presence fan-out"; not in CI).
#
#   tests/bench/presence/run.sh                       # 10,000 users x 50 contacts
#   USERS=2000 CONTACTS=20 tests/bench/presence/run.sh
#   PEER=kamailio tests/bench/presence/run.sh         # the same generator against Kamailio presence
#
# Starts one parley-homeserver (Release build in build-h3-rel unless HS_BIN is set) on
# 127.0.0.1 without a directory (so users need no authentication), fresh data dir, then
# presence_gen (built here with cc): SERVICE to give every user CONTACTS contacts,
# REGISTER, USERS x CONTACTS SUBSCRIBEs paced at SUB_RATE/s, one PUBLISH per user at
# PUB_RATE/s; it measures the NOTIFYs per second delivered after the publishes and the
# server's RSS/PSS before and after the subscriptions. The server is stopped by PID, also
# on failure. Results: tests/bench/results/presence-<date>/ (gitignored).
#
# Knobs: USERS (10000) CONTACTS (50) SUB_RATE (2000) PUB_RATE (200) WINDOW (200 requests
#        in flight) NOTIFY_BACKLOG (500: PUBLISHes wait while the server owes that many NOTIFYs)
#        SOCKETS (16) PORT (16300; admin PORT+1) PHASE_TIMEOUT (900 s) HS_BIN PEER
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
USERS=${USERS:-10000}
CONTACTS=${CONTACTS:-50}
SUB_RATE=${SUB_RATE:-2000}
PUB_RATE=${PUB_RATE:-200}
WINDOW=${WINDOW:-200}
NOTIFY_BACKLOG=${NOTIFY_BACKLOG:-500}
SOCKETS=${SOCKETS:-16}
PORT=${PORT:-16300}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-900}
PEER=${PEER:-parley}
OUT=${OUT:-$ROOT/tests/bench/results/presence-$(date -u +%Y%m%dT%H%M%S)-$PEER}
mkdir -p "$OUT"
SRV_PID=""
cleanup() {
  if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
    kill -TERM "$SRV_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SRV_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

GEN=$OUT/presence_gen
cc -O2 -Wall -Wextra -o "$GEN" "$HERE/presence_gen.c"

wait_udp_options() {  # the server answers an OPTIONS on PORT (bounded 20 s)
  python3 - "$PORT" <<'EOF'
import socket, sys, time
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(0.3)
msg = ("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-w%%d\r\n"
       "Max-Forwards: 70\r\nFrom: <sip:w@example.com>;tag=w\r\nTo: <sip:127.0.0.1:%d>\r\n"
       "Call-ID: w@bench\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n") % (port, s.getsockname()[1], port)
end = time.time() + 20
i = 0
while time.time() < end:
    i += 1
    s.sendto((msg % i).encode(), ("127.0.0.1", port))
    try:
        if s.recv(65535).startswith(b"SIP/2.0 "):
            sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
EOF
}

case "$PEER" in
parley)
  if [ -z "${HS_BIN:-}" ]; then
    cmake -S "$ROOT" -B "$ROOT/build-h3-rel" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$ROOT/build-h3-rel" -j2 --target parley-homeserver >/dev/null
    HS_BIN=$ROOT/build-h3-rel/homeserver/parley-homeserver
  fi
  "$HS_BIN" --listen "udp:127.0.0.1:$PORT" --domain example.com --data-dir "$OUT/hs-data" \
    --admin "127.0.0.1:$((PORT + 1))" --max-client-transactions 100000 --max-expires 7200 \
    --log-level warn >"$OUT/server.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 1 200); do
    curl -fs -m 1 "http://127.0.0.1:$((PORT + 1))/healthz" >/dev/null 2>&1 && break
    kill -0 "$SRV_PID" || { cat "$OUT/server.log"; exit 1; }
    sleep 0.1
  done
  GEN_ARGS=()
  ;;
kamailio)
  command -v kamailio >/dev/null || { echo "kamailio is not installed (apt-get install kamailio kamailio-presence-modules)"; exit 1; }
  sed -e "s/@PORT@/$PORT/g" -e "s#@DB@#$OUT/kamailio-db#g" "$HERE/kamailio-presence.cfg" >"$OUT/kamailio.cfg"
  mkdir -p "$OUT/kamailio-db"
  for t in version presentity active_watchers watchers xcap; do   # db_text tables with their versions
    sed '1s/flags(int)/flags(int,null)/' "/usr/share/kamailio/dbtext/kamailio/$t" >"$OUT/kamailio-db/$t"
  done
  kamailio -f "$OUT/kamailio.cfg" -DD -E -m 2048 -M 64 -P "$OUT/kamailio.pid" >"$OUT/server.log" 2>&1 &
  SRV_PID=$!
  wait_udp_options || { tail -30 "$OUT/server.log"; exit 1; }
  GEN_ARGS=(--kamailio)
  ;;
*) echo "PEER is parley or kamailio"; exit 2 ;;
esac

{
  echo "date: $(date -u +%FT%TZ)"
  echo "peer: $PEER"
  echo "host: $(nproc) cpus, $(grep MemTotal /proc/meminfo | awk '{print $2}') kB"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "command: USERS=$USERS CONTACTS=$CONTACTS SUB_RATE=$SUB_RATE PUB_RATE=$PUB_RATE WINDOW=$WINDOW NOTIFY_BACKLOG=$NOTIFY_BACKLOG PEER=$PEER tests/bench/presence/run.sh"
} | tee "$OUT/meta.txt"

# every process of the server (Kamailio forks workers): the generator measures the main PID
rc=0
"$GEN" --server "127.0.0.1:$PORT" --users "$USERS" --contacts "$CONTACTS" --pid "$SRV_PID" \
  --sockets "$SOCKETS" --window "$WINDOW" --sub-rate "$SUB_RATE" --pub-rate "$PUB_RATE" \
  --phase-timeout "$PHASE_TIMEOUT" --notify-backlog "$NOTIFY_BACKLOG" "${GEN_ARGS[@]}" | tee "$OUT/result.txt" || rc=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/meta.txt"
if [ "$PEER" = parley ]; then
  curl -fs -m 2 "http://127.0.0.1:$((PORT + 1))/metrics" >"$OUT/metrics.txt" 2>/dev/null || true
fi
echo "results in $OUT (generator exit $rc)"
exit "$rc"
