#!/usr/bin/env bash
# parley-frontend --workers 2 (docs/internals/workers.md): two worker processes share
# the UDP listener with SO_REUSEPORT under a supervising parent.
#   - REGISTERs from 40 source ports (one UDP socket each) all get a 302 whose Contact
#     names the user's home server with maddr=127.0.0.1; both workers answered some
#     (per-worker /metrics on the admin port and admin port + 1)
#   - a worker killed with SIGKILL is started again by the parent; service continues
#     from 40 new source ports
#   - SIGTERM to the parent stops every worker
# Needs FE_BIN (parley-frontend) and a real etcd (tests/lib/etcd.sh).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../lib/common.sh"
source "$HERE/../../lib/etcd.sh"
: "${FE_BIN:?FE_BIN must point at parley-frontend}"

ETCD_ST=$TEST_TMP/etcd
trap 'etcd_stop "$ETCD_ST"; cleanup_all' EXIT
ETCD_URL=$(etcd_start "$ETCD_ST") || fail "etcd did not start"
b64() { printf '%s' "$1" | base64 -w0; }
etcd_put() {  # etcd_put KEY JSON
  curl -fsS -m 3 "$ETCD_URL/v3/kv/put" -d "{\"key\":\"$(b64 "$1")\",\"value\":\"$(b64 "$2")\"}" >/dev/null \
    || fail "etcd put $1"
}
wait_for() { local t=$1 i; shift; for ((i = 0; i < t * 10; i++)); do "$@" && return 0; sleep 0.1; done; return 1; }
# a port in 16900..16999 free for UDP and TCP, with <port>+1 free too (admin of worker 1)
pick() {
  python3 - "$1" <<'PY'
import socket, sys
start = int(sys.argv[1])
def free(p):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try: s.bind(("127.0.0.1", p))
        except OSError: return False
        finally: s.close()
    return True
for p in range(start, 16999, 2):
    if free(p) and free(p + 1):
        print(p); break
PY
}
SIP_PORT=$(pick 16900); ADMIN_PORT=$(pick $((SIP_PORT + 10)))
[ -n "$SIP_PORT" ] && [ -n "$ADMIN_PORT" ] || fail "no free ports in 16900..16999"

etcd_put /parley/servers/home1 '{"role":"homeserver","address":"sip:127.0.0.1:16990;transport=tcp","cert_subject":"home1.test","admin":""}'
for i in $(seq 1 20); do
  etcd_put "/parley/users/u$i@example.com" "{\"home\":\"home1\",\"ha1_md5\":\"00000000000000000000000000000000\",\"realm\":\"example.com\",\"enabled\":true}"
done

bg frontend "$FE_BIN" --listen "udp:127.0.0.1:$SIP_PORT" --domain example.com --data-dir "$TEST_TMP/fe" \
  --etcd "$ETCD_URL" --server-name fe1 --auth off --admin "127.0.0.1:$ADMIN_PORT" --workers 2 \
  --shutdown-grace 200ms
FE_PID=$LAST_PID
A0=http://127.0.0.1:$ADMIN_PORT; A1=http://127.0.0.1:$((ADMIN_PORT + 1))
metric() { curl -fs -m 2 "$1/metrics" | awk -v n="$2" '$1 == n {print $2}'; }
users_loaded() { [ "$(metric "$1" parley_directory_users)" = 20 ]; }
wait_for 15 users_loaded "$A0" || fail "worker 0 did not load the directory ($(tail -5 "$TEST_TMP/frontend.log"))"
wait_for 15 users_loaded "$A1" || fail "worker 1 did not load the directory"
[ "$(metric "$A1" parley_worker_index)" = 1 ] || fail "admin port + 1 is not worker 1"
pass "two workers up, each with its own directory copy and admin endpoint"

# REGISTER from N sockets (distinct source ports); prints one line per socket: the status
# line's code and whether the Contact carries the home server with maddr
burst() {
  python3 - "$SIP_PORT" "$1" <<'PY'
import socket, sys, random
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(0.5)
    socks.append(s)
def req(s, i, tag):
    lp = s.getsockname()[1]; u = "u%d" % (i % 20 + 1); b = "z9hG4bK%s%d%d" % (tag, lp, random.randrange(1 << 30))
    return ("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:%s@example.com>;tag=%d\r\nTo: <sip:%s@example.com>\r\n"
            "Call-ID: w%d-%s@test\r\nCSeq: 1 REGISTER\r\nContact: <sip:%s@127.0.0.1:%d>\r\n"
            "Expires: 60\r\nContent-Length: 0\r\n\r\n" % (lp, b, u, lp, u, lp, tag, u, lp)).encode()
for i, s in enumerate(socks):
    got = None
    for attempt in range(6):   # retransmit like a client (a restarting worker may drop one)
        s.sendto(req(s, i, "a%d" % attempt), ("127.0.0.1", port))
        try:
            while True:
                data = s.recv(65535).decode(errors="replace")
                if data.startswith("SIP/2.0 1"):
                    continue
                got = data; break
        except socket.timeout:
            continue
        break
    if got is None:
        print("timeout"); continue
    code = got.split(" ", 2)[1]
    ok = any(l.lower().startswith(("contact:", "m:")) and "127.0.0.1:16990" in l and "maddr=127.0.0.1" in l
             for l in got.split("\r\n"))
    print(code, "maddr" if ok else "no-maddr:" + got.replace("\r\n", " | ")[:300])
PY
}
check_burst() {  # check_burst LABEL
  local out bad
  out=$(burst 40)
  bad=$(grep -vc '^302 maddr$' <<<"$out")
  [ "$(wc -l <<<"$out")" = 40 ] && [ "$bad" = 0 ] || fail "$1: not all 302 with maddr: $(grep -v '^302 maddr$' <<<"$out" | head -3)"
}
check_burst "40 source ports"
r0=$(metric "$A0" parley_director_redirects_total); r1=$(metric "$A1" parley_director_redirects_total)
[ "${r0%.*}" -gt 0 ] && [ "${r1%.*}" -gt 0 ] || fail "one worker took every source: w0=$r0 w1=$r1"
[ $(( ${r0%.*} + ${r1%.*} )) -ge 40 ] || fail "redirects w0=$r0 + w1=$r1 < 40"
pass "REGISTERs from 40 source ports: all 302 with maddr=127.0.0.1, spread over both workers (w0=$r0 w1=$r1)"

# kill worker 1 with SIGKILL: the parent starts it again
W1=$(sed -n 's/.*worker 1 started (pid \([0-9]*\)).*/\1/p' "$TEST_TMP/frontend.log" | tail -1)
[ -n "$W1" ] && kill -0 "$W1" 2>/dev/null || fail "no pid for worker 1 in the log"
kill -9 "$W1"
restarted() { [ "$(grep -c 'worker 1 started' "$TEST_TMP/frontend.log")" -ge 2 ]; }
wait_for 10 restarted || fail "worker 1 not restarted after SIGKILL"
grep -q "worker 1 (pid $W1) killed by signal 9" "$TEST_TMP/frontend.log" || fail "death of worker 1 not logged"
wait_for 15 users_loaded "$A1" || fail "restarted worker 1 did not load the directory"
check_burst "after the restart"
pass "worker killed with SIGKILL restarted by the parent; 40 new source ports all 302"

# SIGTERM stops all
W0=$(sed -n 's/.*worker 0 started (pid \([0-9]*\)).*/\1/p' "$TEST_TMP/frontend.log" | tail -1)
W1=$(sed -n 's/.*worker 1 started (pid \([0-9]*\)).*/\1/p' "$TEST_TMP/frontend.log" | tail -1)
kill -TERM "$FE_PID"
gone() { ! kill -0 "$FE_PID" 2>/dev/null && ! kill -0 "$W0" 2>/dev/null && ! kill -0 "$W1" 2>/dev/null; }
wait_for 10 gone || { kill -9 "$W0" "$W1" 2>/dev/null; fail "SIGTERM did not stop the parent and both workers"; }
wait "$FE_PID"; rc=$?
[ "$rc" = 0 ] || fail "parent exit status $rc after SIGTERM"
grep -q "all workers stopped" "$TEST_TMP/frontend.log" || fail "no 'all workers stopped'"
pass "SIGTERM to the parent stops both workers (exit 0)"
