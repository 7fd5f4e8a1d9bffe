#!/usr/bin/env bash
# Builds what bench/device_results.sh runs (stripped tools + the baseline scripts).
#   bash bench/build_results_carry.sh build-gdec .dc-res
set -euo pipefail
B=${1:-build-gdec}
C=${2:-.dc-res}
ninja -C "$B" -j2 dsocr-synth dsocr-bench
rm -rf "$C"
mkdir -p "$C/bin" "$C/scripts"
cp "$B/bin/dsocr-synth" "$B/bin/dsocr-bench" "$C/bin/"
strip "$C"/bin/*
cp bench/torch_decoder_baseline.py bench/torch_vision_baseline.py "$C/scripts/"
du -sh "$C"
