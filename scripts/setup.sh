#!/usr/bin/env bash
# Installs every Debian package Parley needs to build, test and benchmark.
# Idempotent: packages already present are skipped by apt.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang llvm libclang-rt-14-dev
  libosip2-dev libevent-dev libssl-dev libsqlite3-dev sqlite3 libcurl4-openssl-dev
  libjansson-dev libxml2-dev libcmocka-dev
  etcd-server etcd-client
  sip-tester openssl curl python3 procps iproute2 valgrind util-linux
  docker-compose
  kamailio kamailio-presence-modules   # peers of tests/bench (presence: tests/bench/presence)
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: installed ${missing[*]}"
