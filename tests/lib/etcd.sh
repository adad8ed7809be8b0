#!/usr/bin/env bash
# etcd.sh: start/stop a throwaway single-node etcd on loopback for tests.
#
#   tests/lib/etcd.sh start  <state_dir>   start (or restart on the same ports and data);
#                                          prints the client URL once /health answers
#   tests/lib/etcd.sh stop   <state_dir>   SIGTERM by PID, SIGKILL after 5 s; idempotent
#   tests/lib/etcd.sh pause  <state_dir>   SIGSTOP (etcd keeps its sockets, stops answering)
#   tests/lib/etcd.sh resume <state_dir>   SIGCONT
#   tests/lib/etcd.sh url    <state_dir>   print the client URL
#
# Or source it and call etcd_start/etcd_stop/etcd_pause/etcd_resume <state_dir>.
# <state_dir> holds data/ (etcd's data dir), pid, ports, url and etcd.log. Ports are
# picked by binding port 0 on 127.0.0.1, unless ETCD_CLIENT_PORT / ETCD_PEER_PORT are set.
# Typical use in a test script:
#   st=$(mktemp -d); trap 'tests/lib/etcd.sh stop "$st"; rm -rf "$st"' EXIT
#   url=$(tests/lib/etcd.sh start "$st")

ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}

_etcd_free_port() {
  # below the ephemeral range (32768-60999), so no client socket takes it before etcd binds
  python3 -c 'import random, socket
for _ in range(200):
    p = random.randint(20000, 32767); s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()'
}

_etcd_alive() {  # <state_dir>
  [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null
}

etcd_start() {  # <state_dir>
  local st=$1 cport pport url i
  mkdir -p "$st"
  if _etcd_alive "$st"; then cat "$st/url"; return 0; fi
  if [ -f "$st/ports" ]; then
    read -r cport pport <"$st/ports"
  else
    cport=${ETCD_CLIENT_PORT:-$(_etcd_free_port)}
    pport=${ETCD_PEER_PORT:-$(_etcd_free_port)}
    while [ "$pport" = "$cport" ]; do pport=$(_etcd_free_port); done
    echo "$cport $pport" >"$st/ports"
  fi
  url="http://127.0.0.1:$cport"
  echo "$url" >"$st/url"
  "$ETCD_BIN" --name t --data-dir "$st/data" \
    --listen-client-urls "$url" --advertise-client-urls "$url" \
    --listen-peer-urls "http://127.0.0.1:$pport" \
    --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "t=http://127.0.0.1:$pport" \
    --log-level error >>"$st/etcd.log" 2>&1 </dev/null &
  echo $! >"$st/pid"
  # wait on /health (poll, bounded to 20 s), never a fixed sleep
  for i in $(seq 1 200); do
    if curl -fsS -m 1 "$url/health" 2>/dev/null | grep -q '"health":"true"'; then
      echo "$url"
      return 0
    fi
    if ! _etcd_alive "$st"; then break; fi
    sleep 0.1
  done
  echo "etcd.sh: etcd did not become healthy; log:" >&2
  tail -20 "$st/etcd.log" >&2
  etcd_stop "$st"
  return 1
}

etcd_stop() {  # <state_dir>
  local st=$1 pid i
  [ -f "$st/pid" ] || return 0
  pid=$(cat "$st/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    # reap if it is our child (sourced use); harmless otherwise
    wait "$pid" 2>/dev/null
  fi
  rm -f "$st/pid"
  return 0
}

etcd_pause() { [ -f "$1/pid" ] && kill -STOP "$(cat "$1/pid")"; }
etcd_resume() { [ -f "$1/pid" ] && kill -CONT "$(cat "$1/pid")"; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -u
  cmd=${1:-}; st=${2:-}
  if [ -z "$cmd" ] || [ -z "$st" ]; then
    echo "usage: $0 start|stop|pause|resume|url <state_dir>" >&2
    exit 2
  fi
  case $cmd in
    start) etcd_start "$st" ;;
    stop) etcd_stop "$st" ;;
    pause) etcd_pause "$st" ;;
    resume) etcd_resume "$st" ;;
    url) cat "$st/url" ;;
    *) echo "usage: $0 start|stop|pause|resume|url <state_dir>" >&2; exit 2 ;;
  esac
fi
