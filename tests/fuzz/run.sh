#!/usr/bin/env bash
# CI fuzz runner: build every libFuzzer target with clang (PARLEY_FUZZ=ON, build
# dir build/fuzz) and run each fuzz_* executable for FUZZ_SECONDS (default 60)
# on a temporary copy of its seed corpus tests/fuzz/corpus/<name without fuzz_>/
# (the repo corpus is never written). Fails if any target crashes, leaks, times
# out or runs out of memory; prints executions per target. Leaks inside libosip2 listed
# in tests/fuzz/lsan.supp are suppressed (LSAN_OPTIONS).
#
#   FUZZ_SECONDS=300 tests/fuzz/run.sh            # all targets
#   tests/fuzz/run.sh fuzz_tp_frame               # only the named targets
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build/fuzz}
SECONDS_PER=${FUZZ_SECONDS:-60}
SECONDS=0
JOBS=${FUZZ_JOBS:-2}

command -v clang >/dev/null || { echo "fuzz: clang not found" >&2; exit 2; }
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DPARLEY_FUZZ=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD.configure.log" 2>&1 \
  || { echo "fuzz: configure failed" >&2; cat "$BUILD.configure.log" >&2; exit 1; }

# The fuzz targets are exactly the executables named fuzz_* that CMake knows.
targets=$(cmake --build "$BUILD" --target help 2>/dev/null \
          | sed -n 's/^\.\.\. \(fuzz_[A-Za-z0-9_]*\).*/\1/p' | grep -v '_replay$' | sort -u)
[ $# -gt 0 ] && targets="$*"
[ -n "$targets" ] || { echo "fuzz: no fuzz targets configured" >&2; exit 1; }
# shellcheck disable=SC2086
cmake --build "$BUILD" -j"$JOBS" --target $targets || { echo "fuzz: build failed" >&2; exit 1; }

# Known leaks inside libosip2 (not ours) are suppressed; every other leak still fails.
export LSAN_OPTIONS="suppressions=$ROOT/tests/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
failed=0 passed=0
for t in $targets; do
  exe=$(find "$BUILD" -type f -name "$t" -perm -u+x | head -n 1)
  if [ -z "$exe" ]; then echo "FAIL $t: executable not found"; failed=$((failed + 1)); continue; fi
  name=${t#fuzz_}
  corpus="$WORK/$name/corpus"; artifacts="$WORK/$name/artifacts"
  mkdir -p "$corpus" "$artifacts"
  # Seed corpus: corpus/<name>, else the folder the target's area uses (auth_parse ->
  # auth, scr_compile -> script); a target without seeds starts from nothing.
  seeds=""
  for c in "$name" "${name%_*}" "$(case $name in scr_*) echo script ;; esac)"; do
    if [ -n "$c" ] && [ -d "$ROOT/tests/fuzz/corpus/$c" ]; then seeds=$ROOT/tests/fuzz/corpus/$c; break; fi
  done
  [ -n "$seeds" ] && cp -R "$seeds/." "$corpus/"
  log="$WORK/$name/fuzz.log"
  # -max_total_time bounds the run; timeout(1) is the backstop if the target hangs.
  timeout --kill-after=30 $((SECONDS_PER + 120)) "$exe" "$corpus" \
      -max_total_time="$SECONDS_PER" -max_len=65536 -rss_limit_mb=2048 -timeout=25 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  crashes=$(find "$artifacts" -type f | wc -l)
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    echo "FAIL $t: exit $rc, ${execs:-?} executions, artifacts:"
    mkdir -p "$ROOT/build/fuzz-artifacts/$name"
    for a in "$artifacts"/*; do
      [ -f "$a" ] || continue
      cp "$a" "$ROOT/build/fuzz-artifacts/$name/"
      echo "  build/fuzz-artifacts/$name/$(basename "$a")"
    done
    grep -m1 -A30 -E '==ERROR|runtime error|deadly signal|out-of-memory|timeout' "$log" | head -n 40
    failed=$((failed + 1))
  else
    echo "ok   $t: ${execs:-?} executions in ${SECONDS_PER}s${seeds:+ (seeds: ${seeds#"$ROOT"/})}"
    passed=$((passed + 1))
  fi
done
echo "$passed passed, $failed failed in $SECONDS s (build included)"
[ "$failed" -eq 0 ]
