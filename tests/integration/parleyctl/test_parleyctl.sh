#!/usr/bin/env bash
# parleyctl against a real etcd on loopback (tests/lib/etcd.sh).
#   test_parleyctl.sh <path to parleyctl> [n_import_users (default 100000)]
# Proves: user add/show/list/disable/enable/passwd (HA1 = expected hex)/move/remove,
# duplicate add -> 1, bad usage -> 2, routes, --json parses, server list with a
# lease TTL, registrations through a fake admin endpoint, schema version guard,
# CSV import of N users (timed) and its count, etcd down -> 1 with a clear message.
set -uo pipefail

CTL=${1:?usage: test_parleyctl.sh PARLEYCTL [N]}
N=${2:-100000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
ETCD_SH="$ROOT/tests/lib/etcd.sh"

ST=$(mktemp -d /tmp/parleyctl-test.XXXXXX)
HTTP_PID=""
cleanup() {
  [ -n "$HTTP_PID" ] && kill "$HTTP_PID" 2>/dev/null && wait "$HTTP_PID" 2>/dev/null
  "$ETCD_SH" stop "$ST/etcd"
  if [ "${FAILED:-0}" != 0 ]; then
    echo "--- kept $ST for inspection (etcd log: $ST/etcd/etcd.log)"
  else
    rm -rf "$ST"
  fi
}
trap cleanup EXIT

FAILED=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; FAILED=$((FAILED + 1)); }

# run: CMD... ; sets $rc, $out (stdout) and $err (stderr)
run() {
  "$@" >"$ST/out" 2>"$ST/err"
  rc=$?
  out=$(cat "$ST/out")
  err=$(cat "$ST/err")
}

expect_rc() {  # <want> <description>
  if [ "$rc" = "$1" ]; then pass "$2 (exit $rc)"; else fail "$2: exit $rc, want $1; stderr: $err"; fi
}
expect_err() {  # <substring> <description>
  case "$err" in *"$1"*) pass "$2";; *) fail "$2: stderr '$err' lacks '$1'";; esac
}
json_ok() {  # <description>: $out is valid JSON
  if printf '%s' "$out" | python3 -m json.tool >/dev/null 2>&1; then pass "$1: JSON parses"
  else fail "$1: not JSON: $out"; fi
}
jget() {  # <python expression on j>: evaluates against $out
  printf '%s' "$out" | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"
}
hexdigest() {  # <alg> <text>
  python3 -c "import hashlib,sys; print(hashlib.new(sys.argv[1], sys.argv[2].encode()).hexdigest())" "$1" "$2"
}
b64() { printf '%s' "$1" | base64 -w0; }

URL=$("$ETCD_SH" start "$ST/etcd") || { echo "FAIL - etcd did not start"; FAILED=1; exit 1; }
export PARLEY_ETCD="$URL"
echo "# etcd at $URL"

# ---- users ----
run "$CTL" user add Alice@Example.com --password 'Circle Of Life' --home home1 --display "Alice Example"
expect_rc 0 "user add"
run "$CTL" --json user show alice@example.com
expect_rc 0 "user show --json"
json_ok "user show"
[ "$(jget 'j["user"], j["enabled"], j["home"], j["display"], j["realm"]')" = \
  "alice@example.com True home1 Alice Example example.com" ] && pass "record fields" || fail "record fields: $out"
[ "$(jget 'j["ha1_md5"]')" = "$(hexdigest md5 'alice:example.com:Circle Of Life')" ] \
  && pass "ha1_md5 = MD5(user:realm:password)" || fail "ha1_md5: $out"
[ "$(jget 'j["ha1_sha256"]')" = "$(hexdigest sha256 'alice:example.com:Circle Of Life')" ] \
  && pass "ha1_sha256 = SHA-256(user:realm:password)" || fail "ha1_sha256: $out"
run "$CTL" user show alice@example.com
expect_rc 0 "user show (table)"
case "$out" in *ha1*) fail "human show leaks HA1";; *) pass "human show hides HA1";; esac

run "$CTL" user add alice@example.com --password x --home home1
expect_rc 1 "duplicate user add"
expect_err "already exists" "duplicate add message"

run "$CTL" user add bob@example.com --password x
expect_rc 2 "user add without --home"
run "$CTL" user add not-a-user --password x --home home1
expect_rc 2 "user add with bad user"
run "$CTL" user add bob@example.com --password x --password-stdin --home home1
expect_rc 2 "both --password and --password-stdin"
run "$CTL" user frobnicate
expect_rc 2 "unknown subcommand"
run "$CTL" user add bob@example.com --bogus
expect_rc 2 "unknown option"
run "$CTL"
expect_rc 2 "no command"
run "$CTL" user add --help
expect_rc 0 "user add --help"
case "$out" in *"--password-stdin"*) pass "help text";; *) fail "help text: $out";; esac

printf 'stdinpw\n' | "$CTL" user add bob@example.com --password-stdin --home home1 --disabled >/dev/null 2>&1
rc=$?; err=""; expect_rc 0 "user add --password-stdin --disabled"

run "$CTL" user disable alice@example.com
expect_rc 0 "user disable"
run "$CTL" --json user show alice@example.com
[ "$(jget 'j["enabled"]')" = "False" ] && pass "disabled" || fail "disable: $out"
run "$CTL" user enable alice@example.com
run "$CTL" --json user show alice@example.com
[ "$(jget 'j["enabled"]')" = "True" ] && pass "enabled again" || fail "enable: $out"

old=$(jget 'j["ha1_md5"]')
run "$CTL" user passwd alice@example.com --password 'new pass'
expect_rc 0 "user passwd"
run "$CTL" --json user show alice@example.com
new=$(jget 'j["ha1_md5"]')
[ "$new" != "$old" ] && [ "$new" = "$(hexdigest md5 'alice:example.com:new pass')" ] \
  && [ "$(jget 'j["ha1_sha256"]')" = "$(hexdigest sha256 'alice:example.com:new pass')" ] \
  && pass "passwd changed HA1 to the expected hex" || fail "passwd HA1: $out"

run "$CTL" user move alice@example.com --home home2
expect_rc 1 "move to an unknown server"
expect_err "no server 'home2'" "move message"
curl -fsS -X POST "$URL/v3/kv/put" -d "{\"key\":\"$(b64 /parley/servers/edge1)\",\"value\":\"$(b64 '{"role":"edge","address":"sip:127.0.0.1:5061"}')\"}" >/dev/null
run "$CTL" user move alice@example.com --home edge1
expect_rc 1 "move to a non-homeserver"
run "$CTL" user move alice@example.com --home edge1 --force
expect_rc 0 "move --force"

# a home server announced under a lease, with a fake admin endpoint
mkdir -p "$ST/www/api"
printf '[{"contact":"sip:alice@127.0.0.1:5999","expires":3600,"epid":"abc123"}]' >"$ST/www/api/registrations"
HPORT=$(python3 -c 'import random, socket
for _ in range(200):
    p = random.randint(20000, 32767); s = socket.socket()   # below the ephemeral range
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()')
python3 -m http.server --bind 127.0.0.1 --directory "$ST/www" "$HPORT" >"$ST/http.log" 2>&1 &
HTTP_PID=$!
LEASE=$(curl -fsS -X POST "$URL/v3/lease/grant" -d '{"TTL":60}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["ID"])')
curl -fsS -X POST "$URL/v3/kv/put" -d "{\"key\":\"$(b64 /parley/servers/home2)\",\"value\":\"$(b64 "{\"role\":\"homeserver\",\"address\":\"sip:127.0.0.1:5070;transport=tcp\",\"cert_subject\":\"home2.pool.example\",\"admin\":\"http://127.0.0.1:$HPORT\"}")\",\"lease\":\"$LEASE\"}" >/dev/null
run "$CTL" user move alice@example.com --home home2
expect_rc 0 "move to a homeserver"
run "$CTL" --json user show alice@example.com
[ "$(jget 'j["home"]')" = "home2" ] && pass "home is home2" || fail "move: $out"

run "$CTL" --json server list
expect_rc 0 "server list --json"
json_ok "server list"
ttl=$(jget '[s["ttl"] for s in j if s["name"]=="home2"][0]')
[ "$ttl" -gt 0 ] 2>/dev/null && [ "$ttl" -le 60 ] && pass "lease TTL left = $ttl" || fail "server ttl: $out"
run "$CTL" server list
case "$out" in *home2*homeserver*) pass "server list table";; *) fail "server list: $out";; esac

for i in $(seq 1 50); do curl -fsS -m 1 "http://127.0.0.1:$HPORT/api/registrations" >/dev/null 2>&1 && break; sleep 0.1; done
run "$CTL" --json registrations alice@example.com
expect_rc 0 "registrations --json"
[ "$(jget 'j[0]["epid"]')" = "abc123" ] && pass "registrations JSON" || fail "registrations: $out"
run "$CTL" registrations alice@example.com
case "$out" in *"sip:alice@127.0.0.1:5999"*) pass "registrations table";; *) fail "registrations table: $out";; esac
kill "$HTTP_PID"; wait "$HTTP_PID" 2>/dev/null; HTTP_PID=""
run "$CTL" registrations alice@example.com
expect_rc 1 "registrations with the admin endpoint down"
expect_err "cannot reach the admin endpoint" "admin down message"

run "$CTL" --json user list
expect_rc 0 "user list --json"
json_ok "user list"
[ "$(jget 'len(j)')" = 2 ] && pass "two users listed" || fail "user list: $out"
run "$CTL" --json user list --home home1
[ "$(jget '[u["user"] for u in j]')" = "['bob@example.com']" ] && pass "list --home" || fail "list --home: $out"

run "$CTL" user remove bob@example.com
expect_rc 0 "user remove"
run "$CTL" user remove bob@example.com
expect_rc 1 "remove a missing user"
expect_err "no such user" "remove message"
run "$CTL" user show bob@example.com
expect_rc 1 "show a missing user"

# ---- routes ----
run "$CTL" route add pstn --match prefix:+1 --next-hop sip:gw.example.com:5060 --treat-as-server --allow-from 127.0.0.1,10.0.0.0/8
expect_rc 0 "route add"
run "$CTL" route add pstn --match tel --next-hop sip:gw2.example.com
expect_rc 1 "duplicate route add"
run "$CTL" route add bad --match nonsense --next-hop sip:gw
expect_rc 2 "route add bad --match"
run "$CTL" route add bad --match tel --next-hop http://x
expect_rc 2 "route add bad --next-hop"
run "$CTL" route add bad --match tel --next-hop sip:gw --allow-from 1.2.3.400
expect_rc 2 "route add bad --allow-from"
run "$CTL" --json route list
expect_rc 0 "route list --json"
json_ok "route list"
[ "$(jget 'j[0]["name"], j[0]["match"], j[0]["next_hop"], j[0]["treat_as_server"], j[0]["allow_from"]')" = \
  "pstn prefix:+1 sip:gw.example.com:5060 True ['127.0.0.1', '10.0.0.0/8']" ] && pass "route record" || fail "route: $out"
run "$CTL" route remove pstn
expect_rc 0 "route remove"
run "$CTL" route remove pstn
expect_rc 1 "remove a missing route"
run "$CTL" --json route list
[ "$(jget 'len(j)')" = 0 ] && pass "no routes left" || fail "route list: $out"

# ---- import ----
printf 'user@domain,password,home,display\nok1@imp.example,pw,home1\nbad-row\nok2@imp.example,"p,w",home1,"Two, Jr"\nok1@imp.example,pw,home1\nalice@example.com,pw,home1\n' >"$ST/small.csv"
run "$CTL" user import "$ST/small.csv"
expect_rc 1 "import with bad rows"
expect_err "small.csv:3:" "bad row line number"
expect_err "small.csv:5: same user as line 2" "duplicate row line number"
expect_err "small.csv:6: user alice@example.com already exists" "existing user row"
run "$CTL" user import "$ST/missing.csv"
expect_rc 1 "import of a missing file"

python3 - "$N" "$ST/big.csv" <<'EOF'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("user@domain,password,home,display\n")
    for i in range(n):
        f.write(f"user{i}@bulk.example,pw{i},home{i % 4},Bulk User {i}\n")
EOF
t0=$(date +%s.%N)
run "$CTL" user import "$ST/big.csv"
t1=$(date +%s.%N)
expect_rc 0 "import of $N users"
echo "# import of $N users took $(python3 -c "print(round($t1 - $t0, 1))") s: $out"
t0=$(date +%s.%N)
count=$("$CTL" --json user list --domain bulk.example | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
t1=$(date +%s.%N)
[ "$count" = "$N" ] && pass "user list --json counts $N" || fail "imported count $count, want $N"
echo "# list of $N users took $(python3 -c "print(round($t1 - $t0, 1))") s"

# ---- schema guard ----
curl -fsS -X POST "$URL/v3/kv/put" -d "{\"key\":\"$(b64 /parley/schema)\",\"value\":\"$(b64 2)\"}" >/dev/null
run "$CTL" user list
expect_rc 1 "different schema version"
expect_err "schema version" "schema message"
curl -fsS -X POST "$URL/v3/kv/put" -d "{\"key\":\"$(b64 /parley/schema)\",\"value\":\"$(b64 1)\"}" >/dev/null

# ---- failover and etcd down ----
run "$CTL" --etcd "http://127.0.0.1:1,$URL" user show alice@example.com
expect_rc 0 "failover to the second endpoint"
"$ETCD_SH" stop "$ST/etcd"
run "$CTL" user list
expect_rc 1 "etcd down"
expect_err "cannot reach etcd at $URL" "etcd down message"
[ "$(printf '%s\n' "$err" | wc -l)" = 1 ] && pass "one-line error" || fail "error is not one line: $err"

echo "# $FAILED failure(s)"
[ "$FAILED" = 0 ]
