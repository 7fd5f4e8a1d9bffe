#!/usr/bin/env bash
# Decode and whole-page speed against the GPU memory budget (the offload curves): dsocr-bench
# decode --ctx 912 and e2e --modes gundam at --gpu-mem 2G, 3G, 4G, 6G, 8G and all-resident (no
# --gpu-mem), each with BF16 weights and with --quant mixed; --reps 3 --tokens 64 keep the whole
# script within about 5 minutes. A budget below the plan's minimum is refused in one line (kept in
# curves.txt) and the script goes on. Under offload each run also prints the routed experts in host
# memory / cached on the GPU and the pinned host-to-device bandwidth measured in the same run.
# Input: DIR/carry.tar.xz from bench/build_device_carry.sh (already unpacked after another
# bench/device_*.sh in the same call). Outputs under $OUT: curves.txt (one row per budget and
# policy), curves.log (everything), curves_json.tar.gz (every --json).
#   bash bench/device_curves.sh .dc
set -u
D=${1:-.dc}
OUT=${OUT:-$PWD/out}
LOG=$OUT/curves.log
source "$(dirname "$0")/device_lib.sh"
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
carry_and_synth "$D" || exit 1
for budget in 2G 3G 4G 6G 8G all; do
  mem=()
  [ "$budget" = all ] || mem=(--gpu-mem "$budget")
  for quant in bf16 mixed; do
    tag=${budget}_$quant
    step "decode_$tag" 100 "$W/bin/dsocr-bench" decode --model /tmp/synth1 --ctx 912 --reps 3 \
      --tokens 64 "${mem[@]}" --quant "$quant" --json "$OUT/decode_$tag.json"
    step "e2e_$tag" 120 "$W/bin/dsocr-bench" e2e --model /tmp/synth1 --modes gundam --reps 3 \
      --tokens 64 "${mem[@]}" --quant "$quant" --json "$OUT/e2e_$tag.json"
  done
done
# One row per (budget, policy) from the JSON; a refused or failed run shows its one-line message.
python3 - "$OUT" "$LOG" >"$OUT/curves.txt" <<'PY'
import json, os, sys
out, log = sys.argv[1], open(sys.argv[2]).read().splitlines()

def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except Exception:
        return None

def message(step):  # the tool's own line(s) in the step's log section
    lines, inside = [], False
    for l in log:
        if l.startswith("=== "):
            inside = l.startswith(f"=== {step}:")
        elif inside and l.startswith("dsocr-bench: ") and "loading" not in l:
            lines.append(l)
    return lines[-1] if lines else "(no result; see curves.log)"

print(f"{'budget':7} {'quant':6} {'ms/tok':>8} {'% floor':>8} {'MB/tok':>8} {'h2d GB/s':>9} "
      f"{'experts host/cached':>20} | {'e2e ms/tok':>10} {'TTFT ms':>8} {'pages/s':>8}")
for budget in ["2G", "3G", "4G", "6G", "8G", "all"]:
    for quant in ["bf16", "mixed"]:
        tag = f"{budget}_{quant}"
        d, e = load(f"decode_{tag}.json"), load(f"e2e_{tag}.json")
        row = f"{budget:7} {quant:6} "
        if d and d.get("results"):
            r, o = d["results"][0], d.get("offload", {})
            hc = f"{o['experts_host']}/{o['experts_cached']}" if o else "resident"
            row += (f"{r['decode_ms_per_token']:8.4f} {r['pct_of_byte_floor']:7.1f}% "
                    f"{r['bytes_per_token'] * 1e-6:8.1f} "
                    f"{o.get('h2d_gbps', float('nan')) if o else float('nan'):9.1f} {hc:>20} | ")
        else:
            row += f"decode: {message('decode_' + tag)} | "
        if e and e.get("results"):
            r = e["results"][0]
            row += f"{r['ms_per_token']:10.4f} {r['ttft_ms']:8.2f} {r['pages_per_s']:8.2f}"
        else:
            row += f"e2e: {message('e2e_' + tag)}"
        print(row)
PY
cat "$OUT/curves.txt"
# The device tool returns at most 8 files: the JSON goes back as one archive.
(cd "$OUT" && tar czf curves_json.tar.gz ./*.json && rm -f ./*.json)
exit 0
