#!/usr/bin/env python3
"""PyTorch / Hugging Face transformers baseline for DeepSeek-OCR's language model, for dsocr's benchmarks.

The decoder is transformers' own DeepSeek-OCR-2 language model, `DeepseekOcr2TextModel` (module
transformers.models.deepseek_ocr2), which is the DeepSeek-OCR decoder: DeepSeek-V2-style MoE with
plain MHA (no MLA), NeoX RoPE over the full head, greedy softmax top-k with no renormalisation.
It is built with DeepSeek-OCR v1's shapes (shared/MODEL.md section 1.2):
hidden 1280, 12 layers, 10 heads x 128 (MHA, kv heads 10), vocab 129280, layer 0 dense SwiGLU 6848,
layers 1-11 MoE with 64 routed experts (896) top-6 + 2 shared experts (1792), softmax scoring,
no top-k renormalisation, routed_scaling_factor 1.0, RoPE theta 10000, RMSNorm eps 1e-6,
untied lm_head. Random BF16 weights (seeded, the model's own init: normal std 0.02).
transformers has no causal-LM head class for this text model alone, so this script adds the usual
20-line wrapper (`OcrTextForCausalLM`: the text model + lm_head + GenerationMixin), exactly like
transformers' *ForCausalLM classes; everything inside the decoder is the library's code.

Measurements (batch 1 unless named):
  decoder.prefill_282 / _912          one forward over 282 / 912 prompt tokens (eager, DynamicCache,
                                      logits of the last position only)
  decoder.decode_ctx{282,912}_plain   ms per generated token of model.generate() with the library's
                                      defaults (eager, DynamicCache), greedy, no stopping
  decoder.decode_ctx912_plain_eager_experts   the same with experts_implementation="eager"
                                      (the per-expert Python loop of the original remote code)
  decoder.decode_ctx{282,912}_plain_forward   one bare forward step (no generate loop), DynamicCache
  decoder.decode_ctx{282,912}_compiled  ms per token of generate() with a StaticCache and
                                      transformers' automatic torch.compile of the decode step
                                      (CompileConfig mode "reduce-overhead" = CUDA graphs, etc.);
                                      every variant in --compiled is timed, the row without a suffix
                                      is the fastest, with the variant named
  decoder.decode_b32_step             one eager forward step at batch 32, context --b32-ctx (912)
  decoder.decode_b32_step_compiled    ms per step of generate() at batch 32, static cache + compile

ms per token of generate() = (T(prompt, N2 new tokens) - T(prompt, N1 new tokens)) / (N2 - N1),
from paired calls on the same prompt, so the prefill cancels. Every call is timed with CUDA events
after a device synchronise; >= 5 warm-ups (>= 2 generate() calls per shape), median and p10/p90 of
>= 20 runs (pairs), prompts rotated among 3 different random tensors.

Usage (on a machine with a CUDA GPU, torch and transformers >= 5 with deepseek_ocr2):
  python3 bench/torch_decoder_baseline.py --json dec.json
  python3 bench/torch_decoder_baseline.py --quick                     # smoke test
  python3 bench/torch_decoder_baseline.py --compiled grouped_mm:reduce-overhead,batched_mm:reduce-overhead
  python3 bench/torch_decoder_baseline.py --parts prefill,plain

Reference figures quoted by the project's issues (H200): decode 14.8 ms/token plain, 2.44 ms/token
static cache + torch.compile, 13.1 ms per step at batch 32, prefill of 912 tokens 24.8 ms.
"""

import argparse
import copy
import json
import math
import sys
import time

REFERENCE_MS = {
    "decoder.decode_ctx912_plain": 14.8,
    "decoder.decode_ctx912_compiled": 2.44,
    "decoder.decode_b32_step": 13.1,
    "decoder.prefill_912": 24.8,
}
ALL_PARTS = ("prefill", "plain", "forward", "compiled", "b32")

# DeepSeek-OCR v1 language model (shared/MODEL.md 1.2)
N_LAYERS, HIDDEN, HEADS, VOCAB = 12, 1280, 10, 129280
DENSE_INTER, MOE_INTER, N_EXPERTS, TOP_K, N_SHARED = 6848, 896, 64, 6, 2
EXPECTED_PARAMS = 2934734080          # LM incl. embedding and untied lm_head


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="PyTorch/transformers baseline timings of DeepSeek-OCR's MoE decoder "
                    "(transformers' DeepseekOcr2TextModel at DeepSeek-OCR v1 shapes, random BF16 weights).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Reference (H200): 14.8 ms/token plain, 2.44 ms/token static cache + compile, "
               "13.1 ms/step at batch 32, prefill 912 tokens 24.8 ms.",
    )
    p.add_argument("--parts", default=",".join(ALL_PARTS),
                   help="comma list of what to time, from: " + ",".join(ALL_PARTS) + " (default: all)")
    p.add_argument("--contexts", default="282,912", help="prompt lengths at batch 1 (default 282,912)")
    p.add_argument("--b32-ctx", type=int, default=912, help="prompt length for the batch-32 step (default 912)")
    p.add_argument("--batch", type=int, default=32, help="batch of the batched step (default 32)")
    p.add_argument("--compiled", default="grouped_mm:reduce-overhead",
                   help="comma list of EXPERTS:MODE variants for the static-cache + compile decode; EXPERTS "
                        "in default|grouped_mm|batched_mm|eager, MODE a torch.compile mode "
                        "(reduce-overhead, max-autotune, max-autotune-no-cudagraphs, default)")
    p.add_argument("--b32-variants", default="all",
                   help="'all', 'first' (only the first compiled variant that worked at batch 1) or 'best'")
    p.add_argument("--fullgraph", action="store_true", help="CompileConfig(fullgraph=True)")
    p.add_argument("--plain-eager-experts", choices=("on", "off"), default="on",
                   help="also time plain decode at the largest context with experts_implementation=eager")
    p.add_argument("--n1", type=int, default=None, help="new tokens, short generate() (default 8; --quick 4)")
    p.add_argument("--n2", type=int, default=None, help="new tokens, long generate() (default 40; --quick 12)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 5; --quick 2)")
    p.add_argument("--runs", type=int, default=None, help="timed calls / pairs (default 20; --quick 4)")
    p.add_argument("--inputs", type=int, default=3, help="distinct prompts rotated (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="few runs, for smoke tests")
    p.add_argument("--log-recompiles", action="store_true",
                   help="print torch.compile recompilations (on with --quick)")
    p.add_argument("--json", metavar="FILE", help="write results as JSON")
    a = p.parse_args(argv)
    a.part_list = [x.strip() for x in a.parts.split(",") if x.strip()]
    for x in a.part_list:
        if x not in ALL_PARTS:
            p.error("unknown part %r" % x)
    a.ctx_list = [int(x) for x in a.contexts.split(",") if x.strip()]
    a.variant_list = []
    for v in a.compiled.split(","):
        v = v.strip()
        if not v:
            continue
        if ":" not in v:
            p.error("--compiled entries are EXPERTS:MODE, got %r" % v)
        e, m = v.split(":", 1)
        a.variant_list.append((e, m))
    if a.warmup is None:
        a.warmup = 2 if a.quick else 5
    if a.runs is None:
        a.runs = 4 if a.quick else 20
    if a.n1 is None:
        a.n1 = 4 if a.quick else 8
    if a.n2 is None:
        a.n2 = 12 if a.quick else 40
    if a.n2 <= a.n1:
        p.error("--n2 must be larger than --n1")
    if a.quick:
        a.log_recompiles = True
    return a


def log(msg):
    print(msg, flush=True)


def percentile(xs, p):
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    f = int(math.floor(k))
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def stats(name, mode, ts, **extra):
    r = {"name": name, "mode": mode, "ms_median": round(percentile(ts, 50), 4),
         "ms_p10": round(percentile(ts, 10), 4), "ms_p90": round(percentile(ts, 90), 4), "runs": len(ts)}
    r.update(extra)
    base = name.split("@")[0]
    if base in REFERENCE_MS and "@" not in name:
        r["reference_ms_h200"] = REFERENCE_MS[base]
    return r


# ------------------------------------------------------------------------------------------------

def build_config(C):
    """DeepseekOcr2TextConfig at DeepSeek-OCR v1 shapes; drops optional keys this version rejects."""
    cls = C.DeepseekOcr2TextConfig
    kw = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=DENSE_INTER,
              num_hidden_layers=N_LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
              hidden_act="silu", max_position_embeddings=8192, rms_norm_eps=1e-6, initializer_range=0.02,
              attention_bias=False, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1,
              n_routed_experts=N_EXPERTS, n_shared_experts=N_SHARED, num_experts_per_tok=TOP_K,
              moe_intermediate_size=MOE_INTER, routed_scaling_factor=1.0, topk_method="greedy",
              n_group=1, topk_group=1)
    optional = dict(mlp_layer_types=["dense"] + ["sparse"] * (N_LAYERS - 1),
                    first_k_dense_replace=1, moe_layer_freq=1, norm_topk_prob=False, scoring_func="softmax",
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    kw.update(optional)
    dropped = []
    for _ in range(len(optional) + 1):
        try:
            cfg = cls(**kw)
            break
        except (TypeError, ValueError) as e:
            msg = str(e)
            bad = [k for k in optional if k in kw and k in msg]
            if not bad:
                raise
            for k in bad:
                kw.pop(k)
                dropped.append(k)
            if "rope_parameters" in bad:
                kw["rope_theta"] = 10000.0
    if dropped:
        log("[decoder] config: this transformers version rejected %s (dropped)" % ",".join(dropped))
    return cfg


def make_wrapper(torch, M):
    from transformers import GenerationMixin
    from transformers.modeling_outputs import CausalLMOutputWithPast

    class OcrTextForCausalLM(M.DeepseekOcr2TextPreTrainedModel, GenerationMixin):
        """DeepseekOcr2TextModel + untied lm_head, the same wiring as transformers' *ForCausalLM."""

        def __init__(self, config):
            super().__init__(config)
            self.model = M.DeepseekOcr2TextModel(config)
            self.vocab_size = config.vocab_size
            self.lm_head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            self.post_init()

        @classmethod
        def _can_set_experts_implementation(cls):
            # transformers decides this by grepping the class's source file for its experts decorator;
            # this wrapper lives outside transformers, so say yes: the experts are the library's.
            return True

        def get_input_embeddings(self):
            return self.model.embed_tokens

        def get_output_embeddings(self):
            return self.lm_head

        def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                    inputs_embeds=None, use_cache=None, logits_to_keep=0, **kwargs):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                             use_cache=use_cache, **kwargs)
            h = out.last_hidden_state
            sl = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            return CausalLMOutputWithPast(logits=self.lm_head(h[:, sl, :]), past_key_values=out.past_key_values)

    return OcrTextForCausalLM


def verify(torch, lm, cfg):
    """Checks the built model has DeepSeek-OCR v1's decoder shapes; returns a list of problems."""
    probs = []
    layers = lm.model.layers
    if len(layers) != N_LAYERS:
        probs.append("layers %d" % len(layers))
    a = layers[0].self_attn
    for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
        w = getattr(a, n).weight
        if tuple(w.shape) != (HIDDEN, HIDDEN) or getattr(a, n).bias is not None:
            probs.append("attn %s %s" % (n, tuple(w.shape)))
    m0 = layers[0].mlp
    if not hasattr(m0, "gate_proj") or m0.gate_proj.weight.shape[0] != DENSE_INTER:
        probs.append("layer 0 is not a dense %d MLP: %s" % (DENSE_INTER, type(m0).__name__))
    for i in range(1, N_LAYERS):
        m = layers[i].mlp
        ex = getattr(m, "experts", None)
        if ex is None:
            probs.append("layer %d has no experts (%s)" % (i, type(m).__name__))
            continue
        gu = getattr(ex, "gate_up_proj", None)
        if gu is not None and tuple(gu.shape) != (N_EXPERTS, 2 * MOE_INTER, HIDDEN):
            probs.append("layer %d gate_up_proj %s" % (i, tuple(gu.shape)))
        sh = getattr(m, "shared_experts", None)
        if sh is None or sh.gate_proj.weight.shape[0] != MOE_INTER * N_SHARED:
            probs.append("layer %d shared experts" % i)
        g = m.gate
        if getattr(g, "top_k", TOP_K) != TOP_K or getattr(g, "routed_scaling_factor", 1.0) != 1.0 \
                or getattr(g, "topk_method", "greedy") != "greedy":
            probs.append("layer %d router top_k/scale/method" % i)
    inv = lm.model.rotary_emb.inv_freq.float()
    want = 10000.0 ** (-2.0 / 128.0)
    if inv.numel() != 64 or abs(float(inv[1]) - want) > 1e-6:
        probs.append("rope inv_freq[1]=%g (want %g, theta 1e4, dim 128)" % (float(inv[1]), want))
    if getattr(lm.model.norm, "variance_epsilon", 1e-6) != 1e-6:
        probs.append("rms eps")
    n = sum(p.numel() for p in lm.parameters())
    if n != EXPECTED_PARAMS:
        probs.append("parameters %d, expected %d" % (n, EXPECTED_PARAMS))
    dts = {p.dtype for p in lm.parameters()}
    if dts != {torch.bfloat16}:
        probs.append("dtypes %s" % dts)
    return probs, n


def experts_impl(lm):
    vals = set()
    for m in lm.modules():
        if hasattr(m, "gate_up_proj") and hasattr(m, "config"):
            vals.add(str(getattr(m.config, "_experts_implementation", None)))
    return ",".join(sorted(vals)) or "n/a"


def set_experts(lm, impl):
    if impl == "default":
        return experts_impl(lm)
    done = False
    if hasattr(lm, "set_experts_implementation"):
        try:
            lm.set_experts_implementation(impl)
            done = True
        except Exception as e:  # older API
            log("[decoder] set_experts_implementation(%s) failed: %s" % (impl, e))
    seen = set()
    for m in [lm] + list(lm.modules()):
        c = getattr(m, "config", None)
        if c is not None and id(c) not in seen:
            seen.add(id(c))
            try:
                c._experts_implementation = impl
                done = True
            except Exception:
                pass
    if not done:
        raise RuntimeError("cannot set experts implementation %s" % impl)
    return experts_impl(lm)


class Timer:
    def __init__(self, torch):
        self.torch = torch

    def __call__(self, fn):
        torch = self.torch
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        s.record()
        fn()
        e.record()
        e.synchronize()
        return s.elapsed_time(e)


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
    try:
        import transformers
        from transformers.models.deepseek_ocr2 import configuration_deepseek_ocr2 as C
        from transformers.models.deepseek_ocr2 import modeling_deepseek_ocr2 as M
    except ImportError as e:
        print("error: transformers with the deepseek_ocr2 model is needed (transformers >= 5): %s" % e,
              file=sys.stderr)
        return 2
    from transformers import GenerationConfig

    gpu = torch.cuda.get_device_name(0)
    timer = Timer(torch)
    log("[decoder] GPU %s | torch %s (CUDA %s) | transformers %s | parts %s | warmup %d runs %d | N1 %d N2 %d%s"
        % (gpu, torch.__version__, torch.version.cuda, transformers.__version__, ",".join(args.part_list),
           args.warmup, args.runs, args.n1, args.n2, " | QUICK" if args.quick else ""))
    if args.log_recompiles:
        try:
            torch._logging.set_logs(recompiles=True, graph_breaks=True)
        except Exception:
            pass

    # ---- build ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    cfg = build_config(C)
    try:
        cfg.dtype = torch.bfloat16
    except Exception:
        pass
    Wrapper = make_wrapper(torch, M)
    torch.manual_seed(args.seed)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            lm = Wrapper(cfg)
    finally:
        torch.set_default_dtype(prev)
    lm.eval()
    lm.requires_grad_(False)
    probs, n_params = verify(torch, lm, cfg)
    attn_impl = getattr(lm.config, "_attn_implementation", None)
    default_experts = experts_impl(lm)
    log("[decoder] built %s.DeepseekOcr2TextModel + lm_head in %.1f s: %.3f B parameters, attn %s, experts %s"
        % (M.__name__, time.perf_counter() - t0, n_params / 1e9, attn_impl, default_experts))
    if probs:
        log("[decoder] WARNING: the model differs from DeepSeek-OCR v1's decoder: " + "; ".join(probs))
    else:
        log("[decoder] verified: MHA 10x128, layer 0 dense 6848, 11 MoE layers 64x896 top-6 + shared 1792, "
            "greedy softmax no renorm, scale 1.0, RoPE 1e4, %d parameters" % n_params)

    restore_to = default_experts.split(",")[0]
    if restore_to not in ("eager", "grouped_mm", "batched_mm"):
        restore_to = "default"
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)

    def prompts(batch, length):
        return [torch.randint(3, 128000, (batch, length), generator=gen).to("cuda") for _ in range(args.inputs)]

    results, failures, notes = [], [], []

    def attempt(label, fn):
        try:
            fn()
        except Exception as e:
            import traceback
            traceback.print_exc()
            msg = "%s: %s: %s" % (label, type(e).__name__, (str(e).splitlines() or [""])[0][:300])
            failures.append(msg)
            log("[decoder] FAILED " + msg)
        torch.cuda.empty_cache()

    def add(r):
        results.append(r)
        write_json(args, gpu, torch, transformers, M, probs, n_params, attn_impl, default_experts,
                   time.perf_counter() - t_start, failures, results, partial=True)
        log("[decoder] %-46s %-36s median %8.3f ms  p10 %8.3f  p90 %8.3f  (%d)"
            % (r["name"], r["mode"], r["ms_median"], r["ms_p10"], r["ms_p90"], r["runs"]))

    # no EOS: every generate() call produces exactly max_new_tokens (random weights could emit id 1)
    for k, v in (("eos_token_id", None), ("pad_token_id", 0), ("bos_token_id", 0)):
        try:
            setattr(lm.generation_config, k, v)
        except Exception:
            pass
    base_gc = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=0, bos_token_id=0,
                               use_cache=True)

    def gen_call(ids, n, gc, cache=None):
        gc = copy.copy(gc)            # shallow: the compile_config object stays the same one
        gc.max_new_tokens = n
        gc.min_new_tokens = n
        kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gc)
        if cache is not None:
            try:
                cache.reset()
            except Exception as e:  # a lazily allocated cache may not reset before its first use
                if getattr(cache, "_reset_failed_logged", False) is False:
                    log("[decoder] note: StaticCache.reset() raised %s: %s" % (type(e).__name__, e))
                    cache._reset_failed_logged = True
            kw["past_key_values"] = cache
        out = lm.generate(**kw)
        if out.shape[1] != ids.shape[1] + n:
            raise RuntimeError("generate returned %d new tokens, expected %d" % (out.shape[1] - ids.shape[1], n))
        return out

    def per_token(ps, gc, cache=None, warm=2):
        """Paired generate() timings -> list of ms per token; also returns first-call seconds."""
        t0 = time.perf_counter()
        gen_call(ps[0], args.n2, gc, cache)
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        for i in range(warm):
            gen_call(ps[i % len(ps)], args.n2, gc, cache)
            gen_call(ps[i % len(ps)], args.n1, gc, cache)
        ds = []
        for i in range(args.runs):
            ids = ps[i % len(ps)]
            t1 = timer(lambda: gen_call(ids, args.n1, gc, cache))
            t2 = timer(lambda: gen_call(ids, args.n2, gc, cache))
            ds.append((t2 - t1) / (args.n2 - args.n1))
        return ds, first

    with torch.inference_mode():
        # ---- prefill ------------------------------------------------------------------------
        if "prefill" in args.part_list:
            for L in args.ctx_list:
                def run_prefill(L=L):
                    ps = prompts(1, L)
                    f = lambda ids: lm(input_ids=ids, use_cache=True, logits_to_keep=1)
                    for i in range(args.warmup):
                        f(ps[i % len(ps)])
                    ts = [timer(lambda ids=ps[i % len(ps)]: f(ids)) for i in range(args.runs)]
                    add(stats("decoder.prefill_%d" % L, "eager", ts, experts=experts_impl(lm), attn=attn_impl,
                              tokens=L))
                attempt("prefill_%d" % L, run_prefill)

        # ---- plain generate -----------------------------------------------------------------
        if "plain" in args.part_list:
            gc = copy.deepcopy(base_gc)
            gc.disable_compile = True
            for L in args.ctx_list:
                def run_plain(L=L):
                    ds, _ = per_token(prompts(1, L), gc, warm=1)
                    add(stats("decoder.decode_ctx%d_plain" % L, "eager generate, DynamicCache", ds,
                              experts=experts_impl(lm), attn=attn_impl, n1=args.n1, n2=args.n2))
                attempt("decode_ctx%d_plain" % L, run_plain)
            if args.plain_eager_experts == "on":
                L = max(args.ctx_list)

                def run_plain_eager():
                    try:
                        set_experts(lm, "eager")
                        ds, _ = per_token(prompts(1, L), gc, warm=1)
                        add(stats("decoder.decode_ctx%d_plain_eager_experts" % L,
                                  "eager generate, DynamicCache", ds, experts=experts_impl(lm), attn=attn_impl,
                                  n1=args.n1, n2=args.n2))
                    finally:
                        set_experts(lm, restore_to)
                attempt("decode_ctx%d_plain_eager_experts" % L, run_plain_eager)

        # ---- bare forward steps (DynamicCache), batch 1 and batch B ----------------------------
        def step_times(batch, L):
            ps = prompts(batch, L)
            caches = [lm(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values for ids in ps]
            nxt = [torch.randint(3, 128000, (batch, 1), generator=gen).to("cuda") for _ in ps]

            def step(i):
                lm(input_ids=nxt[i], past_key_values=caches[i], use_cache=True, logits_to_keep=1)
                caches[i].crop(-1)
            for i in range(args.warmup):
                step(i % len(ps))
            return [timer(lambda i=i: step(i % len(ps))) for i in range(args.runs)]

        if "forward" in args.part_list:
            for L in args.ctx_list:
                def run_fwd(L=L):
                    add(stats("decoder.decode_ctx%d_plain_forward" % L, "eager forward, DynamicCache",
                              step_times(1, L), experts=experts_impl(lm), attn=attn_impl))
                attempt("decode_ctx%d_plain_forward" % L, run_fwd)
        if "b32" in args.part_list:
            def run_b32():
                add(stats("decoder.decode_b%d_step" % args.batch if args.batch != 32 else "decoder.decode_b32_step",
                          "eager forward, DynamicCache", step_times(args.batch, args.b32_ctx),
                          experts=experts_impl(lm), attn=attn_impl, ctx=args.b32_ctx, batch=args.batch))
            attempt("decode_b32_step", run_b32)

        # ---- static cache + torch.compile ---------------------------------------------------------
        if "compiled" in args.part_list:
            try:
                from transformers import StaticCache
                from transformers.generation import CompileConfig
            except ImportError as e:
                failures.append("compiled: %s" % e)
                StaticCache = None
            worked = []
            for experts, mode in (args.variant_list if StaticCache is not None else []):
                tag = "%s/%s" % (experts, mode)

                def make_cache(batch, max_len):
                    try:
                        return StaticCache(config=cfg, max_cache_len=max_len)
                    except TypeError:
                        return StaticCache(config=cfg, max_batch_size=batch, max_cache_len=max_len,
                                           device="cuda", dtype=torch.bfloat16)

                def run_variant(experts=experts, mode=mode, tag=tag):
                    torch._dynamo.reset()
                    for attr in ("_compiled_call", "_last_compile_config"):
                        if hasattr(lm, attr):
                            delattr(lm, attr)
                    eff = set_experts(lm, experts)
                    gc = copy.deepcopy(base_gc)
                    gc.compile_config = CompileConfig(fullgraph=args.fullgraph, dynamic=False, mode=mode)
                    cache = make_cache(1, max(args.ctx_list) + args.n2 + 8)
                    first_any = None
                    for L in sorted(args.ctx_list, reverse=True):
                        ds, first = per_token(prompts(1, L), gc, cache, warm=2)
                        first_any = first if first_any is None else first_any
                        add(stats("decoder.decode_ctx%d_compiled@%s" % (L, tag),
                                  "generate, StaticCache, compile %s" % mode, ds, experts=eff, attn=attn_impl,
                                  first_generate_s=round(first, 2), n1=args.n1, n2=args.n2,
                                  fullgraph=args.fullgraph))
                    log("[decoder] variant %s: first generate() (compile + CUDA-graph capture) %.1f s"
                        % (tag, first_any))
                    worked.append(tag)
                    del cache
                attempt("compiled@" + tag, run_variant)

                b32_go = ("b32" in args.part_list and tag in worked and
                          (args.b32_variants == "all" or (args.b32_variants == "first" and worked == [tag])))
                if b32_go:
                    def run_b32c(experts=experts, mode=mode, tag=tag):
                        gc = copy.deepcopy(base_gc)
                        gc.compile_config = CompileConfig(fullgraph=args.fullgraph, dynamic=False, mode=mode)
                        cache = make_cache(args.batch, args.b32_ctx + args.n2 + 8)
                        ds, first = per_token(prompts(args.batch, args.b32_ctx), gc, cache, warm=2)
                        add(stats("decoder.decode_b32_step_compiled@%s" % tag,
                                  "generate, StaticCache, compile %s" % mode, ds, experts=experts_impl(lm),
                                  attn=attn_impl, first_generate_s=round(first, 2), ctx=args.b32_ctx,
                                  batch=args.batch, n1=args.n1, n2=args.n2))
                        del cache
                    attempt("decode_b32_step_compiled@" + tag, run_b32c)
            set_experts(lm, restore_to)
            # best variant per measurement, under the plain name
            groups = {}
            for r in results:
                if "@" in r["name"]:
                    groups.setdefault(r["name"].split("@")[0], []).append(r)
            if args.b32_variants == "best":
                notes.append("--b32-variants best is treated as all")
            for base, rs in groups.items():
                best = min(rs, key=lambda r: r["ms_median"])
                r = dict(best)
                r["name"] = base
                r["variant"] = best["name"].split("@")[1]
                if base in REFERENCE_MS:
                    r["reference_ms_h200"] = REFERENCE_MS[base]
                results.append(r)

    total_s = time.perf_counter() - t_start
    log("")
    log("== DeepSeek-OCR decoder, PyTorch/transformers baseline, %s, torch %s, transformers %s =="
        % (gpu, torch.__version__, transformers.__version__))
    log("model: %s.DeepseekOcr2TextModel + lm_head (v1 shapes), attn %s, default experts %s"
        % (M.__name__, attn_impl, default_experts))
    log("%-46s %10s %10s %10s %5s %9s %11s  %s" % ("measurement", "median ms", "p10 ms", "p90 ms", "runs",
                                                 "first s", "ref ms H200", "mode / variant"))
    for r in results:
        log("%-46s %10.3f %10.3f %10.3f %5d %9s %11s  %s%s" % (
            r["name"], r["ms_median"], r["ms_p10"], r["ms_p90"], r["runs"],
            "%.1f" % r["first_generate_s"] if "first_generate_s" in r else "-",
            "%.2f" % r["reference_ms_h200"] if "reference_ms_h200" in r else "-",
            r["mode"], (" [" + r["variant"] + "]") if "variant" in r else ""))
    for f in failures:
        log("FAILED: " + f)
    for n in notes:
        log("note: " + n)
    log("decode rows are ms per generated token (batch 1) or per step (batch %d); prefill rows ms per forward"
        % args.batch)
    log("total runtime %.1f s" % total_s)
    write_json(args, gpu, torch, transformers, M, probs, n_params, attn_impl, default_experts,
               total_s, failures, results)
    return 1 if failures else 0


def write_json(args, gpu, torch, transformers, M, probs, n_params, attn_impl, default_experts,
               total_s, failures, results, partial=False):
    if args.json:
        doc = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
               "transformers": transformers.__version__, "script": "torch_decoder_baseline.py",
               "model_class": M.__name__ + ".DeepseekOcr2TextModel (+ lm_head wrapper)",
               "config_problems": probs, "parameters": n_params, "attn_implementation": attn_impl,
               "default_experts_implementation": default_experts, "quick": args.quick,
               "total_s": round(total_s, 1), "failures": failures, "results": results}
        if partial:
            doc["partial"] = True
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1)
        if not partial:
            log("wrote " + args.json)


if __name__ == "__main__":
    sys.exit(main())
