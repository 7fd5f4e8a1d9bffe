#!/usr/bin/env bash
# GPU decoder kernels (issue "GPU decoder", step 1) on a GPU machine (the device tool): the GPU
# tests, the decoder-kernel benchmarks, then compute-sanitizer memcheck on every test binary and
# racecheck on the kernels that use shared memory. Never changes GPU clocks or settings.
#
#   bash bench/device_gpu_decoder.sh [DIR]
# DIR (default build-gdec-carry) holds the prebuilt binaries and the mutants, made on the build
# machine by bench/build_gpu_decoder_carry.sh (same CUDA 13.0 as the GPU image).
# Logs under $OUT (default ./out): gdec.log (everything), summary.txt (one line per step, the worst
# error ratio, the mutants, the benchmark table), errors.txt (every error figure), bench.json
# (Google Benchmark), sass.txt (SASS of the m = 1 GEMV and the split attention kernel).
set -u
B=${1:-build-gdec-carry}
OUT=${OUT:-$PWD/out}
LOG=$OUT/gdec.log
SUM=$OUT/summary.txt
source "$(dirname "$0")/device_lib.sh"
export LD_LIBRARY_PATH="$PWD/$B/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
export DSOCR_TEST_VERBOSE=1


{
  echo "=== machine"
  nvidia-smi
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.draw,temperature.gpu --format=csv
  nvcc --version 2>/dev/null | tail -2
  ldd "$B/bench/dsocr_microbench"
} >>"$LOG" 2>&1
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader)"

TESTS="gemv rmsnorm rope decode_attention argmax moe_decode"
# 1. Tests (error figures printed per case).
for t in $TESTS; do step "test_$t" 150 "$B/tests/gpu_${t}_test"; done

# 2. Benchmarks.
step bench 200 "$B/bench/dsocr_microbench" --benchmark_counters_tabular=true \
  --benchmark_out="$OUT/bench.json" --benchmark_out_format=json
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv >>"$LOG" 2>&1

# 3. Sanitizers (slow: the largest shapes are left to the plain runs above).
CS="compute-sanitizer --error-exitcode 9"
step memcheck_gemv 90 $CS --tool memcheck "$B/tests/gpu_gemv_test" --gtest_filter=-*LmHead*:*DecoderShapes*
for t in rmsnorm rope decode_attention argmax moe_decode; do
  step "memcheck_$t" 60 $CS --tool memcheck "$B/tests/gpu_${t}_test" --gtest_filter=-*VocabularyWithBans*
done
step racecheck_decode_attention 60 $CS --tool racecheck "$B/tests/gpu_decode_attention_test" \
  --gtest_filter=*ContextLengths*
step racecheck_attention_multitile 90 $CS --tool racecheck "$B/tests/gpu_decode_attention_test" \
  --gtest_filter=*LongContexts*
step racecheck_moe_odd 40 $CS --tool racecheck "$B/tests/gpu_moe_decode_test" --gtest_filter=Moe.*
step racecheck_argmax 40 $CS --tool racecheck "$B/tests/gpu_argmax_test" --gtest_filter=*Ties*
step racecheck_gemv_splitk 60 $CS --tool racecheck "$B/tests/gpu_gemv_test" --gtest_filter=*EveryLaunchShape*

# 4. Mutants: each must FAIL (a test that cannot fail proves nothing).
for m in "$B"/_mut/*; do
  [ -x "$m" ] || continue
  name=$(basename "$m")
  echo "=== mutant $name" >>"$LOG"
  timeout 120 "$m" --gtest_fail_fast --gtest_filter=-*LmHead*:*GraphReplay* >"$OUT/mut.log" 2>&1
  rc=$?
  cat "$OUT/mut.log" >>"$LOG"
  failed=$(grep -m1 -E "^\[  FAILED  \] [A-Za-z]+\.[A-Za-z0-9]+ \(" "$OUT/mut.log" | awk '{print $4}')
  if [ $rc -ne 0 ]; then say "mutant ${name#*__}: killed (rc=$rc) by $failed"
  else say "mutant ${name#*__}: SURVIVED"; fi
done
rm -f "$OUT/mut.log"

# 5. SASS of the lm_head GEMV (m = 1), the tensor-core GEMV and the split attention kernel.
cuobjdump -sass "$B/tests/gpu_gemv_test" >"$OUT/sass_all.txt" 2>&1
cuobjdump -sass "$B/tests/gpu_decode_attention_test" >>"$OUT/sass_all.txt" 2>&1
awk '/Function : .*(gemv_kernelILi1ELi4ELb0Et|gemv_mma_kernelILi5ELb0E|decode_attn_split_kernel)/ { on = 1 } /Function : / && !/(gemv_kernelILi1ELi4ELb0Et|gemv_mma_kernelILi5ELb0E|decode_attn_split_kernel)/ { on = 0 } on' \
  "$OUT/sass_all.txt" >"$OUT/sass.txt"
rm -f "$OUT/sass_all.txt"
echo "sass: $(wc -l <"$OUT/sass.txt") lines, LDG $(grep -c LDG "$OUT/sass.txt"), LDG 128-bit $(grep -cE 'LDG.*128' "$OUT/sass.txt")" >>"$SUM"

# Results last, so the reply's tail holds them.
{
  echo "=== errors (kernel vs naive, relative to float64)"
  grep -hE "ratio|router|->" "$LOG" >"$OUT/errors.txt"
  grep -hE "ratio" "$LOG" | awk '{ for (i = 1; i <= NF; ++i) if ($i == "ratio") r = $(i + 1); if (r + 0 > m) { m = r + 0; w = $0 } } END { print "max ratio " m ": " w }'
  grep -hE "^\[  (PASSED|FAILED) |FAILED TEST|ERROR SUMMARY|Segmentation|Aborted" "$LOG" | sort | uniq -c
  echo "=== bench (us, MB, GB/s, % of copy)"
  grep -E "^BM_" "$LOG" | awk '{ printf "%-62s", $1; for (i = 2; i <= NF; ++i) if ($i ~ /^[0-9.]+[kMG]?$/) printf " %s", $i; printf "\n" }'
} >>"$SUM" 2>&1
cat "$SUM"
