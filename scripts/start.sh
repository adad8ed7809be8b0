#!/usr/bin/env bash
# start.sh: set up, build and start the whole pool on loopback (README "The two commands").
#   scripts/start.sh            packages (scripts/setup.sh), build in build/, deploy/local/pool up
# Then: deploy/local/pool status | down. Build dir: PARLEY_BUILD (default build/).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${PARLEY_BUILD:-$ROOT/build}
bash "$ROOT/scripts/setup.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target parley-homeserver parley-frontend parley-edge parleyctl
PARLEY_BUILD=$BUILD exec "$ROOT/deploy/local/pool" up
