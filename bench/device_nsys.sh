#!/usr/bin/env bash
# An nsys timeline of dsocr-bench decode under --gpu-mem (prefill streaming on), its trace as CSV
# and the copy/compute overlap summary (bench/nsys_overlap.py). The device's nsys is the one in
# the Nsight Compute bundle, which fails to import its own .qdstrm ("Unable to retrieve the
# importer version"); the QdstrmImporter of the bundle's desktop host directory converts it.
# Input: DIR/carry.tar.xz (bench/build_device_carry.sh). Outputs under $OUT: nsys.log,
# nsys_<tag>.txt (the summary), nsys_<tag>_cuda_gpu_trace.csv.xz.
#   [ARGS="--gpu-mem 4G --quant bf16"] [TAG=4g_bf16] [NSYS_LIBS=DIR] bash bench/device_nsys.sh .dc
set -u
D=${1:-.dc}
OUT=${OUT:-$PWD/out}
LOG=$OUT/nsys.log
source "$(dirname "$0")/device_lib.sh"
carry_and_synth "$D" || exit 1
ARGS=${ARGS:---gpu-mem 4G --quant bf16}
TAG=${TAG:-4g_bf16}
NS=$(ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/bin/nsys \
  /opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys 2>/dev/null | head -1)
IMP=$(ls /opt/nvidia/nsight-compute/*/host/linux-desktop-*/QdstrmImporter 2>/dev/null | head -1)
say "nsys: ${NS:-none}; importer: ${IMP:-none}"
[ -n "$NS" ] || exit 1
R=/tmp/nsys_$TAG
rm -f "$R".*
# shellcheck disable=SC2086
step "nsys_profile_$TAG" 200 "$NS" profile -t cuda --sample=none --cpuctxsw=none -o "$R" \
  --force-overwrite true "$W/bin/dsocr-bench" decode --model /tmp/synth1 --ctx 912 --reps 2 \
  --tokens 16 $ARGS
if [ ! -f "$R.nsys-rep" ] && [ -f "$R.qdstrm" ] && [ -n "$IMP" ]; then
  # NSYS_LIBS: a folder with what the importer misses there (libdw.so.1, libelf.so.1 from the
  # build machine's elfutils; git-ignored, carried).
  export LD_LIBRARY_PATH="${NSYS_LIBS:+$NSYS_LIBS:}$(dirname "$IMP"):${LD_LIBRARY_PATH:-}"
  ldd "$IMP" | grep "not found" | tee -a "$LOG"
  step "nsys_import_$TAG" 200 "$IMP" --input-file "$R.qdstrm" ||
    step "nsys_import_i_$TAG" 200 "$IMP" -i "$R.qdstrm"
fi
ls -la "$R".* >>"$LOG" 2>&1
[ -f "$R.nsys-rep" ] || { say "no $R.nsys-rep"; exit 1; }
step "nsys_stats_$TAG" 200 "$NS" stats --report cuda_gpu_trace --format csv --force-export=true \
  --output "$R" "$R.nsys-rep"
CSV=$(ls "$R"*cuda_gpu_trace*.csv 2>/dev/null | head -1)
[ -n "$CSV" ] || { say "no trace CSV"; exit 1; }
python3 "$(dirname "$0")/nsys_overlap.py" "$CSV" | tee "$OUT/nsys_$TAG.txt" | tee -a "$LOG"
xz -T4 -c "$CSV" >"$OUT/nsys_${TAG}_cuda_gpu_trace.csv.xz"
exit 0
