#!/usr/bin/env python3
"""Copy/compute overlap from an nsys timeline (issue 10's "percent of copy time hidden").

Input: the CSV of `nsys stats --report cuda_gpu_trace --format csv` over a dsocr run under
--gpu-mem (bench/device_nsys.sh makes it). Every host-to-device copy of at least 256 kB (an INT4
expert part is 591 kB) is a copy; every kernel is compute. A copy's hidden time is the part of it
during which some kernel ran (on any stream). Copies are split into those of a prefill (within
1 ms of a burst of MoE grouped-GEMM kernels, the kernels closer than 2 ms to each other) and the
others (the upload at load, the expert cache's fills and refills between pages).
  python3 bench/nsys_overlap.py trace.csv
"""
import csv
import sys


def column(header, *names):
    for i, h in enumerate(header):
        if any(h.strip().lower().startswith(n) for n in names):
            return i
    raise SystemExit(f"nsys_overlap: no column {names} in {header}")


def main(path):
    rows = list(csv.reader(open(path, newline="")))
    hi = next(i for i, r in enumerate(rows) if any(c.strip().startswith("Start") for c in r))
    header, rows = rows[hi], rows[hi + 1:]
    c_start, c_dur = column(header, "start"), column(header, "duration")
    c_name = column(header, "name")
    c_bytes = next((i for i, h in enumerate(header) if h.lower().startswith("bytes")), None)
    kernels, copies, moe = [], [], []
    for r in rows:
        if len(r) <= max(c_start, c_dur, c_name):
            continue
        try:
            s, d = float(r[c_start]), float(r[c_dur])
        except ValueError:
            continue
        name = r[c_name]
        if "memcpy" in name.lower():
            if "host-to-device" in name.lower() or "htod" in name.lower():
                mb = float(r[c_bytes]) if c_bytes is not None and r[c_bytes] else 0.0
                if "kb" in header[c_bytes].lower():
                    mb /= 1024
                if mb >= 0.25:
                    copies.append((s, s + d, mb))
        elif "memset" not in name.lower():
            kernels.append((s, s + d))
            if "moe_grouped_gemm" in name:
                moe.append((s, s + d))
    kernels.sort()
    busy = []  # union of kernel intervals
    for a, b in kernels:
        if busy and a <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], b)
        else:
            busy.append([a, b])
    spans = []  # prefill bursts of MoE GEMMs
    for a, b in sorted(moe):
        if spans and a - spans[-1][1] < 2e6:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])

    def hidden(a, b):
        return sum(max(0.0, min(b, y) - max(a, x)) for x, y in busy if y > a and x < b)

    groups = {"prefill": [0.0, 0.0, 0.0, 0], "other": [0.0, 0.0, 0.0, 0]}
    for a, b, mb in copies:
        g = "prefill" if any(x - 1e6 <= a and b <= y + 1e6 for x, y in spans) else "other"
        groups[g][0] += (b - a) * 1e-6
        groups[g][1] += hidden(a, b) * 1e-6
        groups[g][2] += mb
        groups[g][3] += 1
    print(f"nsys timeline: {len(kernels)} kernels, {len(copies)} host-to-device copies >= 256 kB, "
          f"{len(spans)} prefill bursts")
    for g, (ms, hid, mb, n) in groups.items():
        if n:
            print(f"  {g:8} copies {n:5d}  {mb:9.1f} MB  {ms:9.2f} ms  {mb / 1e3 / (ms * 1e-3):6.1f} GB/s"
                  f"  hidden behind kernels {hid:8.2f} ms = {100 * hid / ms:5.1f} %")


if __name__ == "__main__":
    main(sys.argv[1])
