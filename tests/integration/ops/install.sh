#!/usr/bin/env bash
# Installs the build into a temporary prefix and checks the tree (docs/operations.md,
# "Installing"): binaries, application scripts, example configs, systemd units.
# usage: install.sh BUILD_DIR HAS_FRONTEND HAS_EDGE HAS_PARLEYCTL   (the HAS_* are 0/1)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../../.." && pwd)
source "$HERE/../../lib/common.sh"
BUILD=${1:?build dir}
HAS_FRONTEND=${2:-0}
HAS_EDGE=${3:-0}
HAS_CTL=${4:-0}
P=$TEST_TMP/prefix

timeout 60 cmake --install "$BUILD" --prefix "$P" >"$TEST_TMP/install.log" 2>&1 \
  || fail "cmake --install: $(tail -5 "$TEST_TMP/install.log")"

need_exec() { [ -x "$P/$1" ] || fail "$1 not installed (or not executable)"; }
need_file() { [ -s "$P/$1" ] || fail "$1 not installed"; }

need_exec bin/parley-homeserver
[ "$HAS_CTL" = 1 ] && need_exec bin/parleyctl
roles=(homeserver)
[ "$HAS_FRONTEND" = 1 ] && { need_exec bin/parley-frontend; roles+=(frontend); }
[ "$HAS_EDGE" = 1 ] && { need_exec bin/parley-edge; roles+=(edge); }
# the application chain scripts, when the source tree has them
shopt -s nullglob
for am in "$SRC"/homeserver/apps/*.am; do
  need_file "share/parley/apps/$(basename "$am")"
done
shopt -u nullglob
need_file share/doc/parley/configuration.md
need_file share/doc/parley/operations.md
pass "binaries, apps and docs installed under $P"

# cmake's configured bin directory (what the units must name), from the cache
bindir=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")/bin
for role in "${roles[@]}"; do
  unit=lib/systemd/system/parley-$role.service
  need_file "$unit"
  u=$P/$unit
  for line in "Type=simple" \
              "ExecStart=$bindir/parley-$role --config /etc/parley/$role.conf" \
              'ExecReload=/bin/kill -HUP $MAINPID' \
              "Restart=on-failure" "NoNewPrivileges=yes" "ProtectSystem=strict" "PrivateTmp=yes"; do
    grep -qxF "$line" "$u" || fail "$unit lacks '$line'"
  done
  if [ -s "$SRC/deploy/config/$role.conf" ]; then
    conf=share/doc/parley/examples/$role.conf
    need_file "$conf"
    # the installed binary accepts the installed example (nothing is started or created)
    out=$(timeout 10 "$P/bin/parley-$role" --config "$P/$conf" --check-config 2>&1) \
      || fail "$conf rejected by parley-$role: $out"
    # the unit lets the server write exactly the example's data-dir
    dd=$(sed -n 's/^data-dir *= *\([^ #]*\).*/\1/p' "$P/$conf")
    if [ -n "$dd" ]; then
      grep -qxF "ReadWritePaths=$dd" "$u" || fail "$unit does not make data-dir $dd writable"
      grep -qxF "StateDirectory=${dd#/var/lib/}" "$u" || fail "$unit does not create data-dir $dd"
    fi
  fi
  if command -v systemd-analyze >/dev/null; then
    # offline check of the unit syntax, with ExecStart pointing at the installed binary
    sed "s#$bindir/#$P/bin/#g" "$u" >"$TEST_TMP/parley-$role.service"
    ( cd "$TEST_TMP" && timeout 30 systemd-analyze verify "./parley-$role.service" ) >"$TEST_TMP/verify.log" 2>&1 \
      || fail "systemd-analyze verify parley-$role.service: $(cat "$TEST_TMP/verify.log")"
  fi
  pass "parley-$role.service: Type=simple, ExecStart with /etc/parley/$role.conf, ExecReload HUP, hardening"
done
