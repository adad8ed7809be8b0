# Starting and stopping parley-homeserver for tests (sourced after common.sh).
# Needs HS_BIN. HS_MAX_CLIENT_TX (default 10000: sipp multiplexes many users on one socket)
# is the per-client transaction limit (design §2 default 10). Sets HS_PORT (SIP, udp+tcp), HS_ADMIN (http://127.0.0.1:port), HS_PID, HS_DATA.

hs_start() {  # hs_start [extra args...]
  HS_PORT=${HS_PORT:-$(free_port)}
  HS_ADMIN_PORT=${HS_ADMIN_PORT:-$(free_port)}
  HS_DATA=${HS_DATA:-$TEST_TMP/hs-data}
  HS_ADMIN=http://127.0.0.1:$HS_ADMIN_PORT
  bg homeserver "$HS_BIN" --listen "udp:127.0.0.1:$HS_PORT" --listen "tcp:127.0.0.1:$HS_PORT" \
    --domain example.com --data-dir "$HS_DATA" --admin "127.0.0.1:$HS_ADMIN_PORT" \
    --max-client-transactions "${HS_MAX_CLIENT_TX:-10000}" "$@"
  HS_PID=$LAST_PID
  wait_http "$HS_ADMIN/healthz" 10 || { cat "$TEST_TMP/homeserver.log" >&2; fail "homeserver did not become healthy"; }
}

hs_stop() {  # SIGTERM and wait
  kill -TERM "$HS_PID" 2>/dev/null
  local i
  for ((i = 0; i < 100; i++)); do kill -0 "$HS_PID" 2>/dev/null || return 0; sleep 0.05; done
  kill -9 "$HS_PID" 2>/dev/null
  return 1
}

hs_kill9() {
  kill -9 "$HS_PID" 2>/dev/null
  wait "$HS_PID" 2>/dev/null
  return 0
}

# registrations AOR: the JSON of the admin endpoint
registrations() { curl -fs --max-time 2 "$HS_ADMIN/api/registrations?aor=$1"; }
binding_count() { registrations "$1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["bindings"]))'; }

# metric NAME[{labels}]: the value of one series on /metrics
metric() {
  curl -fs --max-time 2 "$HS_ADMIN/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
