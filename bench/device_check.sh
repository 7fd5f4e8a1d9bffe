#!/usr/bin/env bash
# One device call that checks the GPU build: every GPU kernel test, every GPU golden test
# (decoder, vision, whole pipeline) on SYNTH-1, dsocr-run --device cuda on the sample page per
# mode, and compute-sanitizer over the tests named in MEMCHECK / RACECHECK (space-separated test
# names, e.g. MEMCHECK="gpu_gemm_test gpu_rmsnorm_test"). Never changes GPU clocks or settings.
# Input: DIR/carry.tar.xz from bench/build_device_carry.sh. Logs under $OUT: check.log
# (everything), summary.txt (one line per step), golden.txt (the golden tests' figures).
#   [MEMCHECK=...] [RACECHECK=...] bash bench/device_check.sh .dc
set -u
D=${1:-.dc}
OUT=${OUT:-$PWD/out}
LOG=$OUT/check.log
SUM=$OUT/summary.txt
source "$(dirname "$0")/device_lib.sh"
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
carry_and_synth "$D" || exit 1
export DSOCR_SYNTH1_DIR=/tmp/synth1 DSOCR_GOLDEN_DIR=$W/golden
for t in "$W"/bin/gpu_*_test; do step "$(basename "$t")" 300 "$t"; done
for t in "$W"/bin/golden_*_gpu_test; do step "$(basename "$t")" 600 "$t"; done
grep -E "^\s+\[[a-z0-9_]+\] " "$LOG" > "$OUT/golden.txt" || true
for m in base gundam; do
  step "run_cuda_$m" 300 "$W/bin/dsocr-run" --model /tmp/synth1 --device cuda --mode $m \
    --max-tokens 64 --image "$W/data/sample_page.png" --out /tmp/run_$m -v
  sed -n "/^=== run_cuda_$m:/,\$p" "$LOG" | grep -E "tokens|prefill" | tail -2 | tee -a "$SUM"
done
for t in ${MEMCHECK:-}; do
  step "memcheck_$t" 300 compute-sanitizer --tool memcheck --error-exitcode 9 "$W/bin/$t"
done
for t in ${RACECHECK:-}; do
  step "racecheck_$t" 300 compute-sanitizer --tool racecheck --error-exitcode 9 "$W/bin/$t"
done
exit 0
