#!/usr/bin/env bash
# The README's memory table (policy x mode -> weights, activations, KV cache, total), built from
# `dsocr-run --inspect` so that it is regenerated, never hand-typed:
#   bench/memory_table.sh [MODEL_DIR] [DSOCR_RUN] > table.md
# MODEL_DIR: any valid DeepSeek-OCR checkpoint; --inspect reads only its header, so the synthetic
# one (`ctest --test-dir build -R synth1.generate`, 6.67 GB) gives the official model's figures.
# Default: $DSOCR_MODEL, else build/synth1. DSOCR_RUN default: build/bin/dsocr-run.
# Every mode plans the default run: one page, new tokens up to the 8192-token context (so the KV
# cache is 8192 tokens everywhere). The total also counts the sampling state (67 kB) and the
# pool's 256-byte alignment.
set -euo pipefail
model=${1:-${DSOCR_MODEL:-build/synth1}}
run=${2:-build/bin/dsocr-run}

echo "| --quant | mode | weights | activations | KV cache | total |"
echo "|---|---|---:|---:|---:|---:|"
for policy in bf16 int8 int4 mixed; do
  for mode in tiny small base large gundam; do
    out=$("$run" --model "$model" --inspect --device cpu --quant "$policy" --mode "$mode")
    # "  all <kind>   543 MB  (543302912 bytes)" and "  total   3.94 GB  (... bytes)".
    kind() { awk -v k="$1" '$1 == "all" && $2 == k { print $3 " " $4 }' <<<"$out"; }
    total=$(awk '$1 == "total" { print $2 " " $3 }' <<<"$out")
    echo "| $policy | $mode | $(kind weights) | $(kind activations) | $(kind kv_cache) | $total |"
  done
done
