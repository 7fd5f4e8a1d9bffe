# Shared by the bench/device_*.sh scripts (sourced): a log under $OUT and a step runner.
#   LOG=$OUT/x.log; source bench/device_lib.sh
#   run NAME TIMEOUT CMD...   runs CMD with a time limit, appends its output to $LOG, prints one
#                             line: name, exit code, seconds, and the step's gtest / sanitizer verdict
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }
run() {
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" >>"$LOG"
  local t0
  t0=$(date +%s%N)
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  say "$(printf '%-36s rc=%-3s %8.1fs  ' "$name" "$rc" "$(( ($(date +%s%N) - t0) / 1000000 ))e-3")$(sed -n "/^=== $name:/,\$p" "$LOG" | grep -hE '^\[  (PASSED|FAILED)  \]|ERROR SUMMARY' | tail -1)"
}
