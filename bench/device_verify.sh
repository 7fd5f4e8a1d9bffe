#!/usr/bin/env bash
# One device call that re-runs every GPU test the project has, from prebuilt binaries:
#   FOUNDATION_DIR/bin: gpu_pool_test gpu_weights_upload_test gpu_synth1_upload_test dsocr-synth
#                       dsocr-run (stripped; the default sm_90a+sm_90+PTX build)
#   DECODER_DIR: what bench/build_gpu_decoder_carry.sh makes (tests, mutants, microbench)
# Logs under $OUT: verify.log (everything), summary.txt; the decoder suite writes its own files.
#   bash bench/device_verify.sh .devcarry build-gdec-carry
set -u
F=${1:-.devcarry}
D=${2:-build-gdec-carry}
OUT=${OUT:-$PWD/out}
LOG=$OUT/verify.log
source "$(dirname "$0")/device_lib.sh"
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
step gpu_pool_test 120 "$F/bin/gpu_pool_test"
step gpu_weights_upload_test 300 "$F/bin/gpu_weights_upload_test"
step memcheck_pool 180 compute-sanitizer --tool memcheck --error-exitcode 9 "$F/bin/gpu_pool_test" \
  --gtest_filter=-*AllocationFailure*:*CudaErrorsNameTheCall*
DSOCR_UPLOAD_TEST_MB=48 step memcheck_upload 240 compute-sanitizer --tool memcheck \
  --error-exitcode 9 "$F/bin/gpu_weights_upload_test"
step synth 300 "$F/bin/dsocr-synth" --seed 1 --out /tmp/synth1 --force
DSOCR_SYNTH1_DIR=/tmp/synth1 step gpu_synth1_upload_test 300 "$F/bin/gpu_synth1_upload_test"
step inspect_cuda 60 "$F/bin/dsocr-run" --model /tmp/synth1 --inspect --mode gundam
step load_cuda 120 "$F/bin/dsocr-run" --model /tmp/synth1 -v
grep -A30 "=== inspect_cuda" "$LOG" | grep -E "total|budget" | head -3 | tee -a "$OUT/summary_foundation.txt"
grep -E "loaded .* tensors" "$LOG" | tee -a "$OUT/summary_foundation.txt"
OUT=$OUT bash bench/device_gpu_decoder.sh "$D" > /dev/null 2>&1
echo "=== decoder kernels"; cat "$OUT/summary.txt"
