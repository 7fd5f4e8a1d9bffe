#!/usr/bin/env bash
# One device call for the GPU decoder: kernel tests, the decoder golden test on every case, and
# compute-sanitizer over the kernel tests. Inputs (carried, see bench/build_decoder_carry.sh):
#   DIR/bin: gpu_*_test, golden_decoder_gpu_test, dsocr-synth     DIR/golden: slimmed cases
#   bash bench/device_decoder.sh .dc-dec
set -u
D=${1:-.dc-dec}
OUT=${OUT:-$PWD/out}
LOG=$OUT/decoder.log
source "$(dirname "$0")/device_lib.sh"
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
[ -d "$D/lib" ] && export LD_LIBRARY_PATH="$PWD/$D/lib:${LD_LIBRARY_PATH:-}"
for t in "$D"/bin/gpu_*_test; do step "$(basename "$t")" 300 "$t"; done
step synth 300 "$D/bin/dsocr-synth" --seed 1 --out /tmp/synth1 --force
DSOCR_SYNTH1_DIR=/tmp/synth1 DSOCR_GOLDEN_DIR=$PWD/$D/golden step golden_decoder_gpu_test 400 \
  "$D/bin/golden_decoder_gpu_test"
if [ -x "$D/bin/dsocr-bench" ]; then
  step bench_decode 400 "$D/bin/dsocr-bench" decode --model /tmp/synth1 --json "$OUT/decode.json"
  sed -n '/^=== bench_decode:/,/^===/p' "$LOG" | grep -vE "^===" | tee "$OUT/decode.txt"
fi
if [ -x "$D/bin/dsocr-run" ]; then
  step e2e_cuda 300 "$D/bin/dsocr-run" --model /tmp/synth1 --device cuda --mode base --max-tokens 64 \
    --image "$D/data/sample_page.png" --format json -v
  sed -n '/^=== e2e_cuda:/,/^===/p' "$LOG" | grep -E "dsocr-run:|tokens" | tail -3
fi
grep -E "^\s+\[" "$LOG" | grep -E "golden|rel-L2|free-running|prefill of|teacher" > "$OUT/golden_summary.txt" || true
for t in gpu_gemm_test gpu_ngram_test gpu_rope_test; do
  [ -x "$D/bin/$t" ] && step "memcheck_$t" 300 compute-sanitizer --tool memcheck --error-exitcode 9 "$D/bin/$t"
done
[ -x "$D/bin/gpu_ngram_test" ] && step racecheck_ngram 300 compute-sanitizer --tool racecheck --error-exitcode 9 "$D/bin/gpu_ngram_test"
exit 0
