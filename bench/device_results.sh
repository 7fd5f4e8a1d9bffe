#!/usr/bin/env bash
# The figures of bench/RESULTS.md in one device call (regenerated, not hand-typed): the machine's
# ceilings, every kernel, batch-1 decode, whole pages per mode, the PyTorch baselines on the same
# GPU, and the comparison. Input: DIR/carry.tar.xz from bench/build_device_carry.sh (after
# bench/device_check.sh in the same call it is already unpacked). Outputs under $OUT:
# results.txt (the tables), results.log (everything), results_json.tar.gz (every --json).
#   bash bench/device_results.sh .dc [--quick]
set -u
D=${1:-.dc}
QUICK=${2:-}
OUT=${OUT:-$PWD/out}
LOG=$OUT/results.log
source "$(dirname "$0")/device_lib.sh"
export PYTHONUNBUFFERED=1
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
carry_and_synth "$D" || exit 1
reps=5; tokens=128
[ "$QUICK" = --quick ] && reps=2 && tokens=32
step kernels 400 "$W/bin/dsocr-bench" kernels --json "$OUT/kernels.json"
step kernels_step912 200 "$W/bin/dsocr-bench" kernels --ctx 912 --filter '^decode\.' \
  --json "$OUT/kernels_decode912.json"
step decode 400 "$W/bin/dsocr-bench" decode --model /tmp/synth1 --reps $reps --tokens $tokens \
  --json "$OUT/decode.json"
step e2e 500 "$W/bin/dsocr-bench" e2e --model /tmp/synth1 --reps $reps --tokens $tokens \
  --json "$OUT/e2e.json"
step torch_decoder 500 python3 "$W/scripts/torch_decoder_baseline.py" ${QUICK:+--quick} \
  --json "$OUT/torch_decoder.json"
step torch_vision 500 python3 "$W/scripts/torch_vision_baseline.py" --compile none ${QUICK:+--quick} \
  --json "$OUT/torch_vision.json"
python3 - "$OUT/torch_decoder.json" "$OUT/torch_vision.json" "$OUT/torch.json" <<'PY'
import json, sys
res = []
for p in sys.argv[1:3]:
    try:
        res += json.load(open(p)).get("results", [])
    except Exception:
        pass
json.dump({"results": res}, open(sys.argv[3], "w"), indent=1)
PY
step compare 60 "$W/bin/dsocr-bench" compare --baseline "$OUT/torch.json" \
  --ours "$OUT/decode.json" --ours "$OUT/e2e.json" --ours "$OUT/kernels_decode912.json"
for step in kernels decode e2e compare; do
  echo "== $step"
  sed -n "/^=== $step:/,/^===/p" "$LOG" | grep -vE "^===" 
done > "$OUT/results.txt"
# The device tool returns at most 8 files: the JSON goes back as one archive.
(cd "$OUT" && tar czf results_json.tar.gz ./*.json && rm -f ./*.json)
exit 0
