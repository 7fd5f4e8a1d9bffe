#!/usr/bin/env python3
"""PyTorch baseline for DeepSeek-OCR's vision encoder ("DeepEncoder"), for dsocr's benchmarks.

A from-scratch PyTorch re-implementation at the exact shapes of shared/MODEL.md sections 3-4:

* SAM ViT-B/16: patch conv 3->768, abs pos-emb [1,64,64,768] (bicubic-antialias resized in fp32
  when the grid is not 64x64), 12 pre-LN blocks (12 heads x 64), 14x14 windowed attention with zero
  padding except the global blocks 2, 5, 8, 11, decomposed rel-pos bias passed to
  F.scaled_dot_product_attention as attn_mask (as the official sam_vary_sdpa code does), erf-GELU MLP
  768->3072->768, neck (1x1 768->256, LayerNorm2d, 3x3 256->256, LayerNorm2d), net_2 (3x3 s2
  256->512), net_3 (3x3 s2 512->1024).
* CLIP-L body: the SAM map as patch embeddings, CLS + abs pos-emb (resized for non-16x16 grids),
  pre_layrnorm, 24 pre-LN layers (16 heads x 64, SDPA without mask, quick_gelu MLP 1024->4096->1024).
* Fusion concat(CLIP[:,1:], SAM) -> 2048, projector Linear(2048->1280), 2-D layout with
  image_newline rows and the view separator.

Weights are random (seeded, normal std 0.02), BF16, no autocast. Nothing is downloaded.

Cases (all batch views exactly as the official code does):
  vision.base_view  one 1024x1024 view -> 273 embeddings (Base mode)
  vision.tile_640   one 640x640 view -> 100 embeddings
  vision.gundam     one Gundam page: 6 tiles 640x640 as ONE batch of 6 (2 wide x 3 high) + the 1024
                    global view (batch 1) + layout -> 903 embeddings

Modes: eager, and torch.compile with mode default / reduce-overhead / max-autotune /
max-autotune-no-cudagraphs.

Timing (shared/../.library/device/METHOD.md): CUDA events around each call, the device synchronised
before each call (so each figure is the latency of one request from an idle GPU, launch overhead
included), >= 5 warm-up calls, median and p10/p90 of >= 20 calls, inputs rotated among 3 different
random tensors. The first compiled call's wall time is reported as compile time.

Usage (on a machine with a CUDA GPU and torch):
  python3 bench/torch_vision_baseline.py                          # eager + max-autotune, all cases
  python3 bench/torch_vision_baseline.py --compile none           # eager only
  python3 bench/torch_vision_baseline.py --modes eager,default --cases base_view
  python3 bench/torch_vision_baseline.py --quick --json out.json  # smoke test (few runs)
  python3 bench/torch_vision_baseline.py --official /path/to/deepencoder.py
      # time the official DeepEncoder modules (fetched by you, never committed) instead

Reference figures quoted by the project's issues (H200, PyTorch 2.11): base view 16.4 ms eager,
8.9 ms under torch.compile max-autotune.
"""

import argparse
import json
import math
import os
import sys
import time

REFERENCE_MS = {
    ("vision.base_view", "eager"): 16.4,
    ("vision.base_view", "max-autotune"): 8.9,
}

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
ALL_CASES = ("base_view", "tile_640", "gundam")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="PyTorch baseline timings of DeepSeek-OCR's vision encoder (SAM-B + CLIP-L + "
        "projector) at the model's exact shapes, random BF16 weights.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Reference (H200): base view 16.4 ms eager, 8.9 ms max-autotune.",
    )
    p.add_argument("--compile", choices=("none",) + COMPILE_MODES, default=None,
                   help="shorthand: 'none' = eager only; otherwise eager plus this torch.compile mode "
                        "(default when neither --compile nor --modes is given: max-autotune)")
    p.add_argument("--modes", default=None,
                   help="comma list of modes to time, from: eager," + ",".join(COMPILE_MODES))
    p.add_argument("--cases", default=",".join(ALL_CASES),
                   help="comma list from: " + ",".join(ALL_CASES) + " (default: all)")
    p.add_argument("--compile-cases", default="base_view",
                   help="cases the torch.compile modes run on (default base_view; 'all'): max-autotune "
                        "autotuned for about 5 minutes per case on the H100 machine")
    p.add_argument("--autotune-convs", action="store_true",
                   help="let max-autotune also autotune the convolutions (off: they stay on cuDNN, "
                        "which saves about a minute of compile; they are ~2%% of the FLOPs)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 5; --quick 2)")
    p.add_argument("--runs", type=int, default=None, help="timed calls (default 30; --quick 5)")
    p.add_argument("--inputs", type=int, default=3, help="distinct input tensors rotated (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="few runs, for smoke tests")
    p.add_argument("--json", metavar="FILE", help="write results as JSON")
    p.add_argument("--official", metavar="PATH",
                   help="import the official deepencoder.py (a file, or a folder holding deepencoder.py "
                        "or the vLLM ref's sam_vary_sdpa.py + clip_sdpa.py) and time its modules")
    a = p.parse_args(argv)
    if a.modes is not None and a.compile is not None:
        p.error("give --compile or --modes, not both")
    if a.modes is not None:
        modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    elif a.compile == "none":
        modes = ["eager"]
    else:
        modes = ["eager", a.compile or "max-autotune"]
    for m in modes:
        if m != "eager" and m not in COMPILE_MODES:
            p.error("unknown mode %r" % m)
    a.mode_list = modes
    a.case_list = [c.strip() for c in a.cases.split(",") if c.strip()]
    for c in a.case_list:
        if c not in ALL_CASES:
            p.error("unknown case %r" % c)
    a.compile_case_list = list(ALL_CASES) if a.compile_cases == "all" else \
        [c.strip() for c in a.compile_cases.split(",") if c.strip()]
    if a.warmup is None:
        a.warmup = 2 if a.quick else 5
    if a.runs is None:
        a.runs = 5 if a.quick else 30
    if a.inputs < 1:
        p.error("--inputs must be >= 1")
    return a


def log(msg):
    print(msg, flush=True)


def percentile(xs, p):
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    f = int(math.floor(k))
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


# ------------------------------------------------------------------------------------------------
# Model (own code; built inside a function so that --help works without torch)
# ------------------------------------------------------------------------------------------------

def build_modules(torch):
    nn = torch.nn
    F = torch.nn.functional

    def get_rel_pos(q_size, k_size, rel_pos):
        max_rel_dist = int(2 * max(q_size, k_size) - 1)
        if rel_pos.shape[0] != max_rel_dist:
            r = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1).float(),
                              size=max_rel_dist, mode="linear")
            r = r.to(rel_pos.dtype).reshape(-1, max_rel_dist).permute(1, 0)
        else:
            r = rel_pos
        q_coords = torch.arange(q_size, device=rel_pos.device)[:, None]
        k_coords = torch.arange(k_size, device=rel_pos.device)[None, :]
        rel = (q_coords - k_coords) + (k_size - 1)
        return r[rel.long()]

    def window_partition(x, ws):
        B, H, W, C = x.shape
        pad_h = (ws - H % ws) % ws
        pad_w = (ws - W % ws) % ws
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5).contiguous()
        return x.view(-1, ws, ws, C), (Hp, Wp)

    def window_unpartition(x, ws, pad_hw, hw):
        Hp, Wp = pad_hw
        H, W = hw
        B = x.shape[0] // (Hp * Wp // ws // ws)
        x = x.view(B, Hp // ws, Wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).contiguous()
        x = x.view(B, Hp, Wp, -1)
        if Hp > H or Wp > W:
            x = x[:, :H, :W, :].contiguous()
        return x

    class LayerNorm2d(nn.Module):
        def __init__(self, c, eps=1e-6):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(c))
            self.bias = nn.Parameter(torch.zeros(c))
            self.eps = eps

        def forward(self, x):
            u = x.mean(1, keepdim=True)
            s = (x - u).pow(2).mean(1, keepdim=True)
            x = (x - u) / torch.sqrt(s + self.eps)
            return self.weight[:, None, None] * x + self.bias[:, None, None]

    class SamAttention(nn.Module):
        def __init__(self, dim, heads, rel_len):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3, bias=True)
            self.proj = nn.Linear(dim, dim)
            hd = dim // heads
            self.rel_pos_h = nn.Parameter(torch.zeros(rel_len, hd))
            self.rel_pos_w = nn.Parameter(torch.zeros(rel_len, hd))

        def forward(self, x):
            B, H, W, _ = x.shape
            nh = self.heads
            qkv = self.qkv(x).reshape(B, H * W, 3, nh, -1).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.reshape(3, B * nh, H * W, -1).unbind(0)
            Rh = get_rel_pos(H, H, self.rel_pos_h)
            Rw = get_rel_pos(W, W, self.rel_pos_w)
            r_q = q.reshape(B * nh, H, W, -1)           # the UNSCALED q, as the official code
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
            bias = (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(B, nh, H * W, H * W)
            q = q.view(B, nh, H * W, -1)
            k = k.view(B, nh, H * W, -1)
            v = v.view(B, nh, H * W, -1)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            o = o.view(B, nh, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
            return self.proj(o)

    class SamBlock(nn.Module):
        def __init__(self, dim, heads, window, rel_len):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.attn = SamAttention(dim, heads, rel_len)
            self.norm2 = nn.LayerNorm(dim, eps=1e-6)
            self.lin1 = nn.Linear(dim, dim * 4)
            self.lin2 = nn.Linear(dim * 4, dim)
            self.window = window

        def forward(self, x):
            shortcut = x
            x = self.norm1(x)
            if self.window > 0:
                H, W = x.shape[1], x.shape[2]
                x, pad_hw = window_partition(x, self.window)
            x = self.attn(x)
            if self.window > 0:
                x = window_unpartition(x, self.window, pad_hw, (H, W))
            x = shortcut + x
            return x + self.lin2(F.gelu(self.lin1(self.norm2(x))))

    class Sam(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Conv2d(3, 768, kernel_size=16, stride=16)
            self.pos_embed = nn.Parameter(torch.zeros(1, 64, 64, 768))
            blocks = []
            for i in range(12):
                glob = i in (2, 5, 8, 11)
                blocks.append(SamBlock(768, 12, 0 if glob else 14, 127 if glob else 27))
            self.blocks = nn.ModuleList(blocks)
            self.neck = nn.Sequential(
                nn.Conv2d(768, 256, kernel_size=1, bias=False), LayerNorm2d(256),
                nn.Conv2d(256, 256, kernel_size=3, padding=1, bias=False), LayerNorm2d(256))
            self.net_2 = nn.Conv2d(256, 512, kernel_size=3, stride=2, padding=1, bias=False)
            self.net_3 = nn.Conv2d(512, 1024, kernel_size=3, stride=2, padding=1, bias=False)

        def forward(self, x):
            x = self.patch_embed(x).permute(0, 2, 3, 1)
            g = x.shape[1]
            pos = self.pos_embed
            if g != pos.shape[1]:
                pos = F.interpolate(pos.permute(0, 3, 1, 2).float(), size=(g, g), mode="bicubic",
                                    antialias=True, align_corners=False)
                pos = pos.to(x.dtype).permute(0, 2, 3, 1)
            x = x + pos
            for blk in self.blocks:
                x = blk(x)
            x = self.neck(x.permute(0, 3, 1, 2))
            return self.net_3(self.net_2(x))

    class ClipLayer(nn.Module):
        def __init__(self, dim=1024, heads=16, ffn=4096):
            super().__init__()
            self.heads = heads
            self.layer_norm1 = nn.LayerNorm(dim, eps=1e-5)
            self.qkv_proj = nn.Linear(dim, dim * 3)
            self.out_proj = nn.Linear(dim, dim)
            self.layer_norm2 = nn.LayerNorm(dim, eps=1e-5)
            self.fc1 = nn.Linear(dim, ffn)
            self.fc2 = nn.Linear(ffn, dim)

        def forward(self, x):
            N, L, C = x.shape
            h = self.layer_norm1(x)
            qkv = self.qkv_proj(h).view(N, L, 3, self.heads, C // self.heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=None)
            x = x + self.out_proj(o.permute(0, 2, 1, 3).reshape(N, L, C))
            h = self.fc1(self.layer_norm2(x))
            h = h * torch.sigmoid(1.702 * h)                 # quick_gelu
            return x + self.fc2(h)

    class Clip(nn.Module):
        def __init__(self):
            super().__init__()
            self.class_embedding = nn.Parameter(torch.zeros(1024))
            self.position_embedding = nn.Embedding(257, 1024)
            self.pre_layrnorm = nn.LayerNorm(1024, eps=1e-5)
            self.layers = nn.ModuleList([ClipLayer() for _ in range(24)])

        def forward(self, pixels, sam_out):
            N = sam_out.shape[0]
            pe = sam_out.flatten(2).transpose(1, 2)
            x = torch.cat([self.class_embedding.expand(N, 1, -1), pe], dim=1)
            pos = self.position_embedding.weight[None]
            tgt = int(math.sqrt(x.shape[1]))
            if tgt != 16:
                old = pos[:, 1:].reshape(1, 16, 16, -1).permute(0, 3, 1, 2).float()
                new = F.interpolate(old, size=(tgt, tgt), mode="bicubic", antialias=True,
                                    align_corners=False)
                new = new.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, tgt * tgt, -1)
                pos = torch.cat([pos[:, :1], new], dim=1)
            x = self.pre_layrnorm(x + pos)
            for layer in self.layers:
                x = layer(x)
            return x

    return Sam, Clip


class Encoder:
    """SAM + CLIP + projector + layout vectors; `views(px)` -> [N, h*w, 1280]."""

    def __init__(self, torch, sam, clip, proj, newline, sep):
        self.torch = torch
        self.sam, self.clip, self.proj = sam, clip, proj
        self.newline, self.sep = newline, sep

    def views(self, px):
        s = self.sam(px)
        c = self.clip(px, s)
        feat = self.torch.cat([c[:, 1:], s.flatten(2).permute(0, 2, 1)], dim=-1)
        return self.proj(feat)

    def rows_with_newline(self, grid):
        h, w, d = grid.shape
        return self.torch.cat([grid, self.newline.expand(h, 1, d)], dim=1).reshape(-1, d)

    def base_view(self, px):                      # [1,3,1024,1024] -> [273, 1280]
        g = self.views(px)
        h = int(math.isqrt(g.shape[1]))
        return self.torch.cat([self.rows_with_newline(g.view(h, h, -1)), self.sep[None]], dim=0)

    def tile(self, px):                           # [1,3,640,640] -> [1,100,1280]
        return self.views(px)

    def gundam(self, px_global, px_tiles, w_t=2, h_t=3):
        loc = self.views(px_tiles)                # one batch of P = w_t*h_t tiles
        P, n, d = loc.shape
        s = int(math.isqrt(n))
        loc = loc.view(h_t, w_t, s, s, d).permute(0, 2, 1, 3, 4).reshape(h_t * s, w_t * s, d)
        g = self.views(px_global)
        hg = int(math.isqrt(g.shape[1]))
        return self.torch.cat([self.rows_with_newline(loc), self.rows_with_newline(g.view(hg, hg, -1)),
                               self.sep[None]], dim=0)


class AttrDict(dict):
    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k)


def load_official(torch, path):
    """Import the official DeepEncoder code from a local path; returns (sam, clip, projector)."""
    import importlib.util
    path = os.path.abspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)

    def load(fname, modname):
        spec = importlib.util.spec_from_file_location(modname, fname)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    files = {}
    if os.path.isfile(path):
        files["all"] = path
    elif os.path.isfile(os.path.join(path, "deepencoder.py")):
        files["all"] = os.path.join(path, "deepencoder.py")
    else:
        for key, name in (("sam", "sam_vary_sdpa.py"), ("clip", "clip_sdpa.py"), ("proj", "build_linear.py")):
            f = os.path.join(path, name)
            if os.path.isfile(f):
                files[key] = f
        if "sam" not in files or "clip" not in files:
            raise SystemExit("--official: %s holds neither deepencoder.py nor sam_vary_sdpa.py + clip_sdpa.py" % path)
    try:
        if "all" in files:
            m = load(files["all"], "official_deepencoder")
            msam = mclip = mproj = m
        else:
            msam = load(files["sam"], "official_sam")
            mclip = load(files["clip"], "official_clip")
            mproj = load(files["proj"], "official_proj") if "proj" in files else None
    except ImportError as e:
        raise SystemExit("--official: importing the official code failed (%s); install what it needs "
                         "(e.g. addict/easydict) or carry it as a wheel" % e)
    sam = msam.build_sam_vit_b()
    clip = mclip.build_clip_l()
    if mproj is not None and hasattr(mproj, "MlpProjector"):
        proj = mproj.MlpProjector(AttrDict(projector_type="linear", input_dim=2048, n_embed=1280))
    else:
        log("--official: no MlpProjector found; using nn.Linear(2048, 1280) as the projector")
        proj = torch.nn.Linear(2048, 1280)
    return sam, clip, proj


def randomize_(torch, modules, seed):
    """Seeded random weights: every parameter of rank >= 2 ~ N(0, 0.02); rank-1 vectors keep their
    init (LayerNorm ones/zeros, biases) except CLIP's class embedding."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for mod in modules:
            for name, p in mod.named_parameters():
                if p.dim() >= 2 or name.endswith("class_embedding"):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)


# ------------------------------------------------------------------------------------------------

def time_calls(torch, fn, inputs, warmup, runs):
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    torch.cuda.synchronize()
    evs = []
    for i in range(runs):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        args = inputs[i % len(inputs)]
        torch.cuda.synchronize()
        s.record()
        fn(*args)
        e.record()
        evs.append((s, e))
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in evs]


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    try:
        import torch
    except ImportError:
        print("error: PyTorch is not installed; this baseline runs only where torch and a CUDA GPU are",
              file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("error: no CUDA device visible to PyTorch (torch %s); this baseline needs a GPU"
              % torch.__version__, file=sys.stderr)
        return 2

    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(0)
    log("[vision] GPU %s | torch %s (CUDA %s) | modes %s | cases %s (compiled: %s) | warmup %d runs %d inputs %d%s"
        % (gpu, torch.__version__, torch.version.cuda, ",".join(args.mode_list), ",".join(args.case_list),
           ",".join(args.compile_case_list),
           args.warmup, args.runs, args.inputs, " | QUICK" if args.quick else ""))
    torch.manual_seed(args.seed)

    if not args.autotune_convs:
        try:
            import torch._inductor.config as inductor_config
            inductor_config.max_autotune_conv_backends = "ATEN"
        except Exception as e:
            log("[vision] note: could not limit conv autotuning: %s" % e)

    t0 = time.perf_counter()
    if args.official:
        sam, clip, proj = load_official(torch, args.official)
        impl = "official:" + os.path.abspath(args.official)
    else:
        Sam, Clip = build_modules(torch)
        sam, clip, proj = Sam(), Clip(), torch.nn.Linear(2048, 1280)
        impl = "reimplementation"
    randomize_(torch, (sam, clip, proj), args.seed)
    for m in (sam, clip, proj):
        m.to(device=dev, dtype=torch.bfloat16).eval()
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    newline = (torch.randn(1280, generator=gen) * 0.02).to(dev, torch.bfloat16)
    sep = (torch.randn(1280, generator=gen) * 0.02).to(dev, torch.bfloat16)
    enc = Encoder(torch, sam, clip, proj, newline, sep)
    n_params = sum(p.numel() for m in (sam, clip, proj) for p in m.parameters())
    log("[vision] %s built in %.1f s: %.1f M parameters (SAM %.1f M, CLIP %.1f M, projector %.2f M)"
        % (impl, time.perf_counter() - t0, n_params / 1e6,
           sum(p.numel() for p in sam.parameters()) / 1e6, sum(p.numel() for p in clip.parameters()) / 1e6,
           sum(p.numel() for p in proj.parameters()) / 1e6))

    def px(n, s):
        # normalised pixels in [-1, 1] like the real preprocessing, cast to bf16 as both refs do
        return [(torch.rand(n, 3, s, s, generator=gen) * 2 - 1).to(dev, torch.bfloat16)
                for _ in range(args.inputs)]

    cases = {}
    if "base_view" in args.case_list:
        cases["vision.base_view"] = (enc.base_view, [(x,) for x in px(1, 1024)], (273, 1280))
    if "tile_640" in args.case_list:
        cases["vision.tile_640"] = (enc.tile, [(x,) for x in px(1, 640)], (1, 100, 1280))
    if "gundam" in args.case_list:
        cases["vision.gundam"] = (enc.gundam, list(zip(px(1, 1024), px(6, 640))), (903, 1280))

    results = []
    failures = []
    for mode in args.mode_list:
        if mode != "eager":
            torch._dynamo.reset()
        for name, (fn, inputs, want_shape) in cases.items():
            if mode != "eager" and name.split(".", 1)[1] not in args.compile_case_list:
                continue
            f = fn if mode == "eager" else torch.compile(fn, mode=mode, dynamic=False)
            try:
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    out = f(*inputs[0])
                    torch.cuda.synchronize()
                    first_s = time.perf_counter() - t0
                    if tuple(out.shape) != want_shape:
                        raise RuntimeError("output shape %s, expected %s" % (tuple(out.shape), want_shape))
                    if not bool(torch.isfinite(out.float()).all()):
                        raise RuntimeError("non-finite output")
                    del out
                    log("[vision] %-18s %-26s first call %.1f s%s" % (
                        name, mode, first_s, " (compile + autotune)" if mode != "eager" else ""))
                    ts = time_calls(torch, f, inputs, args.warmup, args.runs)
            except Exception as e:  # keep going: one broken mode must not hide the others
                import traceback
                traceback.print_exc()
                failures.append("%s/%s: %s: %s" % (name, mode, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
                log("[vision] %-18s %-26s FAILED (%s)" % (name, mode, failures[-1]))
                continue
            r = {"name": name, "mode": mode, "ms_median": round(percentile(ts, 50), 4),
                 "ms_p10": round(percentile(ts, 10), 4), "ms_p90": round(percentile(ts, 90), 4),
                 "runs": len(ts), "warmup": args.warmup, "inputs": len(inputs), "impl": impl}
            if mode != "eager":
                r["compile_s"] = round(first_s, 2)
                r["autotune_convs"] = bool(args.autotune_convs)
            ref = REFERENCE_MS.get((name, mode))
            if ref is not None:
                r["reference_ms_h200"] = ref
            results.append(r)
            if args.json:   # partial results, in case a later compile runs out of time
                with open(args.json, "w") as fh:
                    json.dump({"gpu": gpu, "torch": torch.__version__, "partial": True, "impl": impl,
                               "results": results, "failures": failures}, fh, indent=1)
            log("[vision] %-18s %-26s median %8.3f ms  p10 %8.3f  p90 %8.3f  (%d runs)"
                % (name, mode, r["ms_median"], r["ms_p10"], r["ms_p90"], r["runs"]))
        torch.cuda.empty_cache()

    total_s = time.perf_counter() - t_start
    log("")
    log("== DeepSeek-OCR vision encoder, PyTorch baseline (%s), %s, torch %s ==" % (impl, gpu, torch.__version__))
    log("%-18s %-26s %10s %10s %10s %6s %10s %12s" % ("case", "mode", "median ms", "p10 ms", "p90 ms",
                                                      "runs", "compile s", "ref ms H200"))
    for r in results:
        log("%-18s %-26s %10.3f %10.3f %10.3f %6d %10s %12s" % (
            r["name"], r["mode"], r["ms_median"], r["ms_p10"], r["ms_p90"], r["runs"],
            "%.1f" % r["compile_s"] if "compile_s" in r else "-",
            "%.1f" % r["reference_ms_h200"] if "reference_ms_h200" in r else "-"))
    for f in failures:
        log("FAILED: " + f)
    log("total runtime %.1f s" % total_s)
    if args.json:
        doc = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "script": "torch_vision_baseline.py",
               "impl": impl, "quick": args.quick, "total_s": round(total_s, 1), "failures": failures,
               "results": results}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1)
        log("wrote " + args.json)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
