#!/usr/bin/env bash
# Builds what bench/device_check.sh and bench/device_results.sh run on the GPU machine, packed small
# enough for the device tool's 64 MiB carry: DIR/carry.tar.xz holds bin/ (every GPU and GPU-golden
# test, dsocr-synth, dsocr-run, dsocr-bench; stripped), golden/ (the cases slimmed to the tensors
# the GPU tests read, bench/slim_golden.py), data/sample_page.png, scripts/ (PyTorch baselines).
#   cmake -S . -B build-gdec -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSOCR_CUDA_ARCHS=90a
#   bash bench/build_device_carry.sh build-gdec .dc
set -euo pipefail
B=${1:-build-gdec}
C=${2:-.dc}
KEEP=decoder,vision,prefill_logits_last,tf_top64_vals,tf_top64_ids,gen_ids
ninja -C "$B" -j2
S=$(mktemp -d)
trap 'rm -rf "$S"' EXIT
mkdir -p "$S/bin" "$S/data" "$S/scripts"
cp "$B"/tests/gpu_*_test "$B"/tests/golden_*_gpu_test "$S/bin/"
cp "$B/bin/dsocr-synth" "$B/bin/dsocr-run" "$B/bin/dsocr-bench" "$S/bin/"
strip "$S"/bin/*
cp tests/data/sample_page.png "$S/data/"
cp bench/torch_decoder_baseline.py bench/torch_vision_baseline.py "$S/scripts/"
python3 bench/slim_golden.py --out "$S/golden" --keep "$KEEP" >/dev/null
rm -rf "$C"
mkdir -p "$C"
tar -C "$S" -cf - . | xz -T2 -6 >"$C/carry.tar.xz"
du -sh "$C"
