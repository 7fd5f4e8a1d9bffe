#!/usr/bin/env python3
"""Copy golden cases with only the tensors a device run needs (the device tool carries <= 64 MiB).

    python3 bench/slim_golden.py --out .dc-dec/golden --keep decoder   # decoder checks
    python3 bench/slim_golden.py --out DIR --keep vision               # encoder checks
    python3 bench/slim_golden.py --out DIR --keep all --cases show1_tiny

Writes DIR/cases/<case>.safetensors and DIR/cases/cases.json; point DSOCR_GOLDEN_DIR at DIR.
Reads ../shared/golden next to the repository (or --src). Plain safetensors, no dependencies.
"""
import argparse
import json
import os
import struct
import sys

SETS = {
    "decoder": ["input_ids", "gen_ids", "image_embeds", "prefill_hidden", "prefill_hidden_positions",
                "prefill_logits_last", "tf_top64_vals", "tf_top64_ids"],
    "vision": ["global_u8", "crops_u8", "sam_global", "clip_global", "proj_global", "proj_crops",
               "image_embeds", "input_ids"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--src", default=os.path.join(here, "..", "..", "shared", "golden"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--keep", default="decoder", help="decoder | vision | all | comma list of tensors")
    ap.add_argument("--cases", default="", help="comma list (default: every case)")
    a = ap.parse_args()
    cases_json = os.path.join(a.src, "cases", "cases.json")
    if not os.path.exists(cases_json):
        sys.exit(f"slim_golden: {cases_json} not found; pass --src PATH/TO/golden")
    meta = json.load(open(cases_json))
    names = [c for c in a.cases.split(",") if c] or sorted(meta)
    if a.keep == "all":
        keep = None
    else:
        keep = set()
        for k in a.keep.split(","):
            keep.update(SETS.get(k, [k]))
        keep |= {"fp32ref_" + k for k in list(keep)}
    os.makedirs(os.path.join(a.out, "cases"), exist_ok=True)
    json.dump({n: meta[n] for n in names}, open(os.path.join(a.out, "cases", "cases.json"), "w"), indent=1)
    total = 0
    for n in names:
        src = os.path.join(a.src, "cases", n + ".safetensors")
        with open(src, "rb") as f:
            (hlen,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(hlen))
            base = 8 + hlen
            out_header, blobs, off = {}, [], 0
            for name, info in header.items():
                if name == "__metadata__":
                    out_header[name] = info
                    continue
                if keep is not None and name not in keep:
                    continue
                b, e = info["data_offsets"]
                f.seek(base + b)
                blob = f.read(e - b)
                out_header[name] = dict(info, data_offsets=[off, off + len(blob)])
                blobs.append(blob)
                off += len(blob)
        h = json.dumps(out_header).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        dst = os.path.join(a.out, "cases", n + ".safetensors")
        with open(dst, "wb") as g:
            g.write(struct.pack("<Q", len(h)) + h)
            for blob in blobs:
                g.write(blob)
        total += os.path.getsize(dst)
        print(f"{n}: {os.path.getsize(dst) / 1e6:.1f} MB")
    print(f"total {total / 1e6:.1f} MB in {a.out}")


if __name__ == "__main__":
    main()
