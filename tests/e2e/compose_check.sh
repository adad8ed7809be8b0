#!/usr/bin/env bash
# Validates deploy/docker-compose.yml without Docker: `docker-compose config` (Debian's
# docker-compose parses and resolves the file, no daemon needed), then the structure:
# the services of design.md §6, /healthz health checks on every server, a scalable
# homeserver (no fixed name, no host ports), init services for certificates and users.
# Exit 77 (skipped) when docker-compose is not installed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FILE=$ROOT/deploy/docker-compose.yml
bash -n "$ROOT/deploy/docker/entrypoint.sh" && bash -n "$ROOT/deploy/certs.sh" || { echo "FAIL: shell syntax" >&2; exit 1; }
grep -q '^FROM debian:12' "$ROOT/deploy/Dockerfile" && grep -q 'scripts/setup.sh' "$ROOT/deploy/Dockerfile" &&
  grep -q 'cmake --install' "$ROOT/deploy/Dockerfile" || { echo "FAIL: Dockerfile (Debian 12, setup.sh, cmake --install)" >&2; exit 1; }
command -v docker-compose >/dev/null || { echo "docker-compose not installed: skipped"; exit 77; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
docker-compose -f "$FILE" config >"$out" 2>&1 || { cat "$out" >&2; echo "FAIL: docker-compose config" >&2; exit 1; }
# Debian's python3-yaml comes with docker-compose
/usr/bin/python3 - "$out" <<'PY' || exit 1
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c["services"]
def fail(m):
    print("FAIL: " + m, file=sys.stderr); sys.exit(1)
for name in ("etcd", "edge", "frontend", "homeserver", "certs", "seed"):
    if name not in s:
        fail("service %s missing" % name)
for name in ("edge", "frontend", "homeserver"):
    hc = s[name].get("healthcheck", {}).get("test", [])
    if not any("/healthz" in str(t) for t in hc):
        fail("%s has no /healthz health check" % name)
    if s[name].get("command") != [name]:
        fail("%s does not run its role" % name)
hs = s["homeserver"]
if "container_name" in hs or hs.get("ports"):
    fail("homeserver must scale (--scale): no container_name, no host ports")
if s["certs"].get("command") != ["certs"] or s["seed"].get("command") != ["seed"]:
    fail("init services for certificates and users")
if s["seed"]["depends_on"]["homeserver"]["condition"] != "service_healthy":
    fail("seed must wait for a healthy home server")
for name in ("edge", "frontend", "homeserver"):
    if s[name]["depends_on"].get("certs", {}).get("condition", "service_completed_successfully") != "service_completed_successfully":
        fail("%s must wait for the certificates" % name)
ports = [str(p.get("published", p) if isinstance(p, dict) else p) for p in s["edge"].get("ports", [])]
if not any("5061" in p for p in ports):
    fail("the edge publishes no TLS port")
print("ok: docker-compose.yml: %d services, health checks, scalable homeserver" % len(s))
PY
