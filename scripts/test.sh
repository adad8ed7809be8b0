#!/usr/bin/env bash
# The test command (README): installs what it needs, builds Parley twice (normal with
# -Werror, and ASan+UBSan), runs the whole ctest suite in both, then runs each libFuzzer
# target briefly. Exits non-zero on any failure. The normal suite includes one flow of the
# home server under valgrind memcheck (ctest -L valgrind, ~40 s; not in the ASan build) and
# the fault tests (ctest -L faults). The fuzz smoke suppresses only libosip2's own leaks
# (tests/fuzz/lsan.supp).
#   QUICK=1 scripts/test.sh    skip the sanitizer build and the fuzz smoke
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/setup.sh

run_suite() {  # <build dir> <cmake args...>
  local dir=$1; shift
  cmake -S "$ROOT" -B "$dir" -DPARLEY_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j2
  # Most integration tests wait on timers and peers rather than compute: four at a time
  # on two cores; the load tests claim two slots each (PROCESSORS in tests/CMakeLists.txt).
  ctest --test-dir "$dir" --output-on-failure -j4 --timeout 600
}

echo "== build and test (RelWithDebInfo, -Werror)"
run_suite build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [ "${QUICK:-0}" != 1 ]; then
  echo "== build and test (ASan + UBSan)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build/asan -DCMAKE_BUILD_TYPE=Debug -DPARLEY_ASAN=ON -DPARLEY_UBSAN=ON
  if [ -x tests/fuzz/run.sh ]; then
    echo "== fuzz smoke"
    FUZZ_SECONDS=${FUZZ_SECONDS:-10} bash tests/fuzz/run.sh
  fi
fi
echo "== all tests passed"
