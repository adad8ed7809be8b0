# sipp helpers (sourced after common.sh). SCEN is the scenario folder.
# sipp_run NAME TIMEOUT ARGS...: runs sipp in the foreground, bounded; returns sipp's exit code
# (0 = every call successful). Its screen goes to $TEST_TMP/NAME.out, errors to NAME_errors.log.
sipp_run() {
  local name=$1 t=$2; shift 2
  ( cd "$TEST_TMP" && timeout "$((t + 5))" sipp -nostdin -timeout "${t}s" -timeout_error \
      -trace_err -error_file "$TEST_TMP/${name}_errors.log" -recv_timeout 10000 "$@" ) \
      >"$TEST_TMP/$name.out" 2>&1
}

# sipp_bg NAME ARGS...: a sipp in the background (a UAS); sets LAST_PID
sipp_bg() {
  local name=$1; shift
  ( cd "$TEST_TMP" && exec timeout 120 sipp -nostdin -trace_err -error_file "$TEST_TMP/${name}_errors.log" "$@" ) \
    >"$TEST_TMP/$name.out" 2>&1 &
  LAST_PID=$!
  PARLEY_PIDS+=("$LAST_PID")
}

# users.csv with N users named PREFIX0..N-1
make_users() {  # make_users FILE PREFIX N
  { echo SEQUENTIAL; for ((i = 0; i < $3; i++)); do echo "$2$i;"; done; } > "$1"
}

sipp_summary() {  # prints successful/failed counts of a finished run
  grep -E "Successful call|Failed call" "$TEST_TMP/$1.out" | tail -2
}
