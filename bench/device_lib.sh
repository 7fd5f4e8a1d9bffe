# Shared by the bench/device_*.sh scripts (sourced after setting LOG, and SUM if wanted):
#   LOG=$OUT/x.log; [SUM=$OUT/summary.txt]; source bench/device_lib.sh
#   say TEXT                 one summary line: stdout, $LOG and $SUM
#   step NAME TIMEOUT CMD... runs CMD with a time limit, appends its output to $LOG, says one line
#                            (name, exit code, seconds, the step's gtest / sanitizer verdict) and
#                            returns CMD's exit code
#   carry_and_synth DIR      unpacks DIR/carry.tar.xz (bench/build_device_carry.sh) into W=/tmp/dsocr-carry
#                            once per machine and generates SYNTH-1 into /tmp/synth1 once
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
: >"$LOG"
[ -n "${SUM:-}" ] && : >"$SUM"
say() { echo "$*" | tee -a "$LOG" ${SUM:+"$SUM"}; }
step() {
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" >>"$LOG"
  local t0
  t0=$(date +%s%N)
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  say "$(printf '%-36s rc=%-3s %8.1fs  ' "$name" "$rc" "$(( ($(date +%s%N) - t0) / 1000000 ))e-3")$(sed -n "/^=== $name:/,\$p" "$LOG" | grep -hE '^\[  (PASSED|FAILED)  \]|ERROR SUMMARY' | tail -1)"
  return $rc
}
carry_and_synth() {
  W=/tmp/dsocr-carry
  if [ ! -d "$W/bin" ]; then mkdir -p "$W" && tar -C "$W" -xJf "$1/carry.tar.xz" || return 1; fi
  [ -f /tmp/synth1/config.json ] || step synth 300 "$W/bin/dsocr-synth" --seed 1 --out /tmp/synth1 --force
}
