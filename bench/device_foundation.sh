#!/usr/bin/env bash
# Foundation run on a GPU machine (the device tool): GPU tests, compute-sanitizer memcheck, SYNTH-1
# generated with dsocr-synth, and the load-rate measurements of bench/RESULTS.md "Loading".
#
#   bash bench/device_foundation.sh [BUILD_DIR]      (default build-gpu, built beforehand with
#                                                     the gpu tests, dsocr-run, dsocr-synth and
#                                                     dsocr-loadbench targets)
# Logs: $OUT/foundation.log (everything) and $OUT/summary.txt (one line per step); OUT defaults to
# ./out. Needs root only to drop the page cache (cold numbers); without it the "cold" rows are warm.
# Never changes GPU clocks or settings.
set -u
B=${1:-build-gpu}
OUT=${OUT:-$PWD/out}
LOG=$OUT/foundation.log
SUM=$OUT/summary.txt
source "$(dirname "$0")/device_lib.sh"

drop_caches() {
  sync
  if echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then echo "(page cache dropped)" >>"$LOG"
  else say "cannot drop the page cache: the next 'cold' number is warm"; fi
}

# The build dir holds absolute paths of the machine it was built on (ctest files, the test
# binaries' DSOCR_BINARY_DIR): make that path lead here.
BUILT_IN=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$B/CMakeCache.txt")
if [ -n "$BUILT_IN" ] && [ "$BUILT_IN" != "$PWD" ] && [ ! -e "$BUILT_IN" ]; then
  mkdir -p "$(dirname "$BUILT_IN")" && ln -s "$PWD" "$BUILT_IN"
fi

{
  echo "=== machine"
  nvidia-smi
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem,clocks.max.sm,pcie.link.gen.current,pcie.link.width.current --format=csv
  uname -a; nproc; free -g; df -h /tmp "$PWD"; findmnt -T /tmp; findmnt -T "$PWD"
  lsblk -o NAME,SIZE,ROTA,TYPE,MOUNTPOINT 2>/dev/null
} >>"$LOG" 2>&1
say "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
say "pcie: $(nvidia-smi --query-gpu=pcie.link.gen.current,pcie.link.width.current --format=csv,noheader)"

# gtest_discover_tests' files include CMake's GoogleTestAddTests.cmake from the building machine's
# CMake; when this machine's CMake lives elsewhere, put the copy carried in $B/_shim there.
GTEST_MOD=$(grep -ho '/[^"]*GoogleTestAddTests.cmake' "$B"/tests/*_include.cmake 2>/dev/null | head -1)
if [ -n "$GTEST_MOD" ] && [ ! -e "$GTEST_MOD" ] && [ -e "$B/_shim/GoogleTestAddTests.cmake" ]; then
  mkdir -p "$(dirname "$GTEST_MOD")" && cp "$B/_shim/GoogleTestAddTests.cmake" "$GTEST_MOD"
fi

# 1. Tests.
# This step's tests (other gpu tests may be unbuilt in $B); the Synth1 test pulls in the synth1
# fixture (tests/synth.cmake: dsocr-synth into $B/synth1).
step ctest_gpu 300 ctest --test-dir "$B" -L gpu -R '^gpu[.](Checksum|Fill|Pool|Upload)[.]' \
  --output-on-failure
step unit_planner 60 "$B/tests/unit_planner_test"
step unit_cli 120 "$B/tests/unit_cli_test"
# (The two tests that provoke CUDA errors on purpose run outside memcheck, which counts them.)
step memcheck_pool 240 compute-sanitizer --tool memcheck --error-exitcode 9 \
  "$B/tests/gpu_pool_test" --gtest_filter=-Pool.AllocationFailureIsOneLine:Pool.CudaErrorsNameTheCall
DSOCR_UPLOAD_TEST_MB=48 step memcheck_upload 240 compute-sanitizer --tool memcheck \
  --error-exitcode 9 "$B/tests/gpu_weights_upload_test"

# Mutants (optional, $B/_mut/: the same tests built with planted bugs: a byte lost where a tensor
# crosses a staging chunk, the checksum kernel's last word skipped, one region left unpoisoned).
# Each must FAIL (rc != 0); the failing tests are listed in the summary.
for t in gpu_pool_test gpu_weights_upload_test; do
  if [ -x "$B/_mut/$t" ]; then
    DSOCR_UPLOAD_TEST_MB=48 step "mutant_$t(must_fail)" 120 "$B/_mut/$t"
    grep -E "^\[  FAILED  \] [A-Za-z]+\.[A-Za-z0-9]+ \(" "$LOG" | tail -n 4 | sed 's/^/    /' >>"$SUM"
  fi
done

# 2. SYNTH-1 on a real disk (not tmpfs, where "disk" would be memory).
SYN=/tmp/synth1
if [ "$(findmnt -n -o FSTYPE -T /tmp)" = tmpfs ]; then SYN=$PWD/.synth/synth1; fi
say "synth dir: $SYN ($(findmnt -n -o FSTYPE,SOURCE -T "$(dirname "$SYN")" 2>/dev/null))"
mkdir -p "$(dirname "$SYN")"
step synth 400 "$B/bin/dsocr-synth" --seed 1 --out "$SYN"
F=$SYN/model-00001-of-000001.safetensors
ls -l "$SYN" >>"$LOG" 2>&1

# 3. Rates. Disk: cold O_DIRECT, cold buffered, then warm (page cache) buffered.
LB=$B/bin/dsocr-loadbench
drop_caches; step disk_cold_direct 120 "$LB" disk "$F" --direct --threads 4
drop_caches; step disk_cold_direct_t1 120 "$LB" disk "$F" --direct --threads 1
drop_caches; step disk_cold_pread 120 "$LB" disk "$F" --threads 4
step disk_warm_pread 120 "$LB" disk "$F" --threads 4
step disk_warm_pread_t8 120 "$LB" disk "$F" --threads 8
step h2d 120 "$LB" h2d --size 1G --reps 20
# Full loads, cold (each after a drop) and warm (repeats). Defaults: pread, 8 reader threads,
# 2 staging buffers of 8 MiB each.
cold() { local name=$1; shift; drop_caches; step "load_cold_$name" 180 "$LB" load "$SYN" "$@"; }
cold pread_t8_8M --method pread
cold direct_t8_8M --method direct
cold mmap_t8_8M --method mmap
cold pread_t16_8M --method pread --threads 16
cold pread_t4_16M --method pread --threads 4 --chunk 16M
cold pread_t8_32M --method pread --chunk 32M
cold mmap_t16_8M --method mmap --threads 16
cold direct_t16_8M --method direct --threads 16
warm() { local name=$1; shift; step "load_warm_$name" 180 "$LB" load "$SYN" --repeat 3 "$@"; }
warm pread_t8_8M --method pread
warm pread_t16_8M --method pread --threads 16
warm pread_t4_16M --method pread --threads 4 --chunk 16M
warm pread_t8_32M --method pread --chunk 32M
warm mmap_t8_8M --method mmap
warm mmap_t16_8M --method mmap --threads 16

# 4. The whole checkpoint device vs host, and dsocr-run on it.
DSOCR_SYNTH1_DIR=$SYN step synth1_upload_test 300 "$B/tests/gpu_synth1_upload_test"
step run_inspect 60 "$B/bin/dsocr-run" --model "$SYN" --inspect
drop_caches; step run_load_cold 120 "$B/bin/dsocr-run" --model "$SYN" -v
step run_load_warm 120 "$B/bin/dsocr-run" --model "$SYN" -v

# Result lines last, so the reply's tail holds them.
echo "=== results" >>"$LOG"
grep -E "^(disk|h2d|load) " "$LOG" | sed -E 's/ dir=[^ ]*| file=[^ ]*//' | tee -a "$SUM"
grep -E "SYNTH-1:|compared .* tensors|PASSED|FAILED|ERROR SUMMARY" "$LOG" | tee -a "$SUM" >/dev/null
cat "$SUM"
