#!/usr/bin/env bash
# Builds what bench/device_decoder.sh runs: stripped GPU tests, the decoder golden test,
# dsocr-synth, and the golden cases slimmed to the decoder's tensors (bench/slim_golden.py).
#   cmake -S . -B build-gdec -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSOCR_CUDA_ARCHS=90a
#   bash bench/build_decoder_carry.sh build-gdec .dc-dec
set -euo pipefail
B=${1:-build-gdec}
C=${2:-.dc-dec}
TESTS=${TESTS:-"gemm ngram rope decode_attention gemv rmsnorm argmax moe_decode"}
targets="golden_decoder_gpu_test dsocr-synth"
for t in $TESTS; do targets="$targets gpu_${t}_test"; done
ninja -C "$B" -j2 $targets
rm -rf "$C/bin"
mkdir -p "$C/bin"
for t in $TESTS; do cp "$B/tests/gpu_${t}_test" "$C/bin/"; done
cp "$B/tests/golden_decoder_gpu_test" "$B/bin/dsocr-synth" "$C/bin/"
strip "$C"/bin/*
[ -d "$C/golden" ] || python3 bench/slim_golden.py --out "$C/golden" --keep decoder
du -sh "$C"
