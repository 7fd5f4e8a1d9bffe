// dsocr-bench: performance of the runtime on this GPU, reported against the machine's own
// measured ceilings (DESIGN.md §9, METHOD.md: CUDA events, warm-up, medians).
//
//   dsocr-bench kernels [--ctx 282,912,2048] [--filter REGEX] [--json FILE]
//       every decoder kernel at the model's shapes (random weights): batch-1 decode step kernels
//       (attention at the last --ctx) and prefill kernels per --ctx, and the encoder's GEMMs,
//       attention and LayerNorm for a 1024² view and six 640² tiles; median and p10..p90 per
//       launch (graph of 16 launches, inputs rotated past 3x L2, 25 samples), GB/s and TFLOP/s
//       against the copy bandwidth and cuBLASLt BF16 GEMM peak measured in the same run, and the
//       sum of the decode step's kernels (launches per step x median); decode8.* rows (GEMVs at
//       m = 8, the MoE over 8 tokens) outside that sum.
//   dsocr-bench kernels --device cpu [--ctx LIST] [--filter REGEX] [--json FILE]
//       the CPU float32 reference kernels (kernels/*_ref.cpp) at the decode and prefill shapes:
//       median of 3 calls, MB, GFLOP, GB/s, GFLOP/s (no GPU needed).
//   dsocr-bench e2e --model DIR [--modes tiny,small,base,large,gundam] [--image PATH] [--tokens N]
//       whole pages through the engine on the GPU (EOS ignored: exactly --tokens per page): per
//       mode preprocessing, vision, prefill, TTFT, ms/token, tokens/s, pages/s, device and host
//       memory; the image defaults to a synthetic A4 page.
//   dsocr-bench compare --baseline TORCH.json --ours DSOCR.json [--ours ...]
//       the PyTorch baseline (bench/torch_*_baseline.py --json) beside dsocr's figures; with the
//       JSON of `kernels` and of `decode` at the same ctx, the decode step against its kernels.
//   dsocr-bench decode --model DIR [--ctx 282,912] [--tokens N] [--reps N] [--quant P] [--json F]
//       batch-1 decoder on the checkpoint: prefill time per context length, decode ms/token
//       (graph-replayed steps, the host one token behind), bytes read per token with the weights
//       as --quant stores them, achieved GB/s and % of that byte floor at the device-to-device
//       copy bandwidth measured in the same run.
// decode and e2e take --gpu-mem and the --quant flags of dsocr-run; under offload they also print
// the routed experts in host memory / cached and the pinned host-to-device bandwidth.
// Prompts are synthetic (BOS + seeded random text ids): timing does not depend on the content
// beyond the MoE routing. EOS is ignored so every run decodes exactly --tokens tokens.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "kernels/argmax.h"
#include "kernels/causal_attention.h"
#include "kernels/embed.h"
#include "kernels/gemm.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/moe.h"
#include "kernels/ngram.h"
#include "kernels/prefill_attention.h"
#include "kernels/quant.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "kernels/vision_attention.h"
#include "loader/bf16.h"
#include "loader/image.h"
#include "runtime/cuda_check.h"
#include "runtime/engine.h"
#include "runtime/gpu_model.h"
#include "runtime/kernel_timer.h"
#include "runtime/planner.h"
#include "runtime/quant_policy.h"

namespace dsocr {
namespace {

constexpr const char* kTool = "dsocr-bench";

std::string usage() {
  std::string u =
      "usage: dsocr-bench kernels [options]\n"
      "       dsocr-bench decode --model DIR [options]\n"
      "       dsocr-bench e2e --model DIR [options]\n"
      "       dsocr-bench compare --baseline TORCH.json --ours DSOCR.json [--ours ...]\n"
      "  kernels: every decoder kernel at the model's shapes, against the copy bandwidth and\n"
      "           BF16 GEMM peak measured in the same run (no model needed)\n"
      "  decode:  batch-1 prefill and decode timing of a model on this GPU\n"
      "  e2e:     whole pages per mode (preprocess, vision, prefill, TTFT, ms/token, pages/s)\n"
      "  compare: a PyTorch baseline JSON beside dsocr's JSON\n"
      "  --modes LIST    e2e: modes, comma separated (default tiny,small,base,large,gundam)\n"
      "  --image PATH    e2e: the page (default: a synthetic A4 page)\n"
      "  --filter REGEX  kernels: only rows whose name matches\n"
      "  --ctx LIST      prompt lengths, comma separated (decode: 282,912; kernels:\n"
      "                  282,912,2048, decode attention at the last)\n"
      "  --tokens N      tokens decoded per run (default 128)\n"
      "  --reps N        runs per figure; the median is reported (default 5)\n"
      "  --gpu-mem SIZE  decode, e2e: GPU memory budget (6G, 2500M); under the all-resident\n"
      "                  total the embedding and routed experts go to host memory (offload):\n"
      "                  the run also prints the experts in host memory / cached and the\n"
      "                  pinned host-to-device bandwidth measured in the same run\n"
      "  --device D      kernels: cuda (default) or cpu (the CPU float32 reference kernels,\n"
      "                  kernels/*_ref.cpp, 3 runs each)\n"
      "  --json FILE     also write the figures as JSON\n"
      "  -h, --help      this text\n"
      "decode, e2e: the weight formats, as dsocr-run (decode reports bytes/token as stored):\n";
  for (const QuantFlags::Flag& q : QuantFlags::all()) {
    const std::string flag = std::string(q.name) + " " + q.value;
    // A flag too wide for the 16-column field gets its text on the next line.
    u += flag.size() < 16 ? strfmt("  %-16s%s\n", flag.c_str(), q.help)
                          : strfmt("  %s\n  %-16s%s\n", flag.c_str(), "", q.help);
  }
  return u;
}

struct Args {
  std::string cmd, model, json, filter, image, baseline;
  std::vector<std::string> ours;
  std::vector<std::string> modes = {"tiny", "small", "base", "large", "gundam"};
  bool progress = isatty(2);
  std::vector<int> ctx;
  int tokens = 128, reps = 5;
  uint64_t gpu_mem = 0;  // 0: the GPU's free memory
  std::string gpu_mem_text;
  QuantFlags quant_flags;  // decode, e2e: --quant and the per-class overrides, as dsocr-run
  QuantPolicy quant;       // resolved from quant_flags
  bool quant_given = false;
  bool cpu = false;  // kernels --device cpu: the CPU float32 reference kernels
};

bool is_quant_flag(const std::string& f) {
  for (const QuantFlags::Flag& q : QuantFlags::all())
    if (f == q.name) return true;
  return false;
}

Expected<int> parse_int(const std::string& flag, const std::string& v, int lo, int hi) {
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || x < lo || x > hi)
    return Status::Error(strfmt("%s %s: expected an integer in %d..%d; change the value",
                                flag.c_str(), v.c_str(), lo, hi));
  return static_cast<int>(x);
}

Expected<Args> parse(int argc, char** argv) {
  Args a;
  if (argc < 2) return Status::Error("no command; try `dsocr-bench --help`");
  a.cmd = argv[1];
  if (a.cmd == "-h" || a.cmd == "--help") return a;
  if (a.cmd != "decode" && a.cmd != "kernels" && a.cmd != "e2e" && a.cmd != "compare")
    return Status::Error("unknown command '" + a.cmd +
                         "'; the commands are: kernels, decode, e2e, compare");
  for (int i = 2; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "-h" || f == "--help") {
      a.cmd = "--help";
      return a;
    }
    if (i + 1 >= argc) return Status::Error(f + " needs a value; see --help");
    const std::string v = argv[++i];
    if (f == "--model") {
      a.model = v;
    } else if (f == "--json") {
      a.json = v;
    } else if (f == "--image") {
      a.image = v;
    } else if (f == "--baseline") {
      a.baseline = v;
    } else if (f == "--ours") {
      a.ours.push_back(v);
    } else if (f == "--modes") {
      a.modes.clear();
      size_t b = 0;
      while (b <= v.size()) {
        const size_t e = std::min(v.find(',', b), v.size());
        const std::string m = v.substr(b, e - b);
        if (!parse_mode(m).ok())
          return Status::Error("--modes: unknown mode '" + m +
                               "'; use tiny, small, base, large, gundam");
        a.modes.push_back(m);
        b = e + 1;
      }
    } else if (f == "--filter") {
      try {
        std::regex r(v);
      } catch (const std::regex_error&) {
        return Status::Error("--filter '" + v +
                             "': not a valid regular expression; use ECMAScript syntax, e.g. "
                             "'decode\\.|prefill912'");
      }
      a.filter = v;
    } else if (f == "--gpu-mem") {
      Expected<uint64_t> b = parse_size(v);
      if (!b.ok()) return Status::Error("--gpu-mem: " + b.message());
      a.gpu_mem = *b;
      a.gpu_mem_text = v;
    } else if (is_quant_flag(f)) {
      DSOCR_TRY(a.quant_flags.take(f, v));
      a.quant_given = true;
    } else if (f == "--device") {
      if (v != "cuda" && v != "cpu")
        return Status::Error("--device '" + v + "' unknown; use cuda or cpu");
      a.cpu = v == "cpu";
    } else if (f == "--tokens") {
      DSOCR_ASSIGN_OR_RETURN(a.tokens, parse_int(f, v, 1, 4096));
    } else if (f == "--reps") {
      DSOCR_ASSIGN_OR_RETURN(a.reps, parse_int(f, v, 1, 1000));
    } else if (f == "--ctx") {
      a.ctx.clear();
      size_t b = 0;
      while (b <= v.size()) {
        const size_t e = std::min(v.find(',', b), v.size());
        DSOCR_ASSIGN_OR_RETURN(int c, parse_int(f, v.substr(b, e - b), 2, 8000));
        a.ctx.push_back(c);
        b = e + 1;
      }
    } else {
      return Status::Error("unknown option '" + f + "'; see --help");
    }
  }
  if (a.ctx.empty()) a.ctx = a.cmd == "kernels" ? std::vector<int>{282, 912, 2048}
                                                 : std::vector<int>{282, 912};
  if ((a.cmd == "decode" || a.cmd == "e2e") && a.model.empty())
    return Status::Error(a.cmd + " needs --model DIR; pass a checkpoint directory (dsocr-synth "
                         "--seed 1 --out DIR makes the synthetic one)");
  if (a.cmd == "kernels" && !a.model.empty())
    return Status::Error("kernels takes no --model; it times random weights at the model's "
                         "shapes, drop --model");
  if (a.quant_given && a.cmd != "decode" && a.cmd != "e2e")
    return Status::Error(a.cmd +
                         " takes no --quant flags (kernels times every format in its "
                         "quant.* rows); drop them");
  if (a.cpu && a.cmd != "kernels")
    return Status::Error("--device cpu is for `dsocr-bench kernels` only; drop it");
  a.quant = a.quant_flags.resolve();
  return a;
}

// `j` to `path` (nothing when path is empty: no --json).
Status write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return Status::Ok();
  std::ofstream f(path);
  if (!f) return Status::Error(path + ": cannot write; check the directory");
  f << j.dump(1) << "\n";
  return Status::Ok();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Bytes one batch-1 decode step reads at context `ctx` (DESIGN.md §9) with the weights stored as
// `q` says: each linear weight as stored (packed values + scales, runtime/quant_policy.h), the
// router in BF16, the K/V rows of the context.
double decode_bytes(const ModelConfig& c, const QuantPolicy& q, int ctx) {
  auto w = [&](TensorClass cls, int64_t out, int64_t in) {
    return static_cast<double>(
        stored_bytes(stored_format(q, cls, out, in), out, in, static_cast<uint64_t>(out) * in * 2));
  };
  const int64_t d = c.dim, di = c.dense_inter, mi = c.moe_inter, si = c.shared_inter();
  const double attn = 4 * w(TensorClass::kAttn, d, d) * c.n_layers;
  const double dense =
      (2 * w(TensorClass::kDenseMlp, di, d) + w(TensorClass::kDenseMlp, d, di)) * c.first_dense;
  const double moe =
      (c.n_layers - c.first_dense) *
      (c.top_k * (2 * w(TensorClass::kRoutedExpert, mi, d) + w(TensorClass::kRoutedExpert, d, mi)) +
       2 * w(TensorClass::kSharedExpert, si, d) + w(TensorClass::kSharedExpert, d, si) +
       2.0 * c.n_experts * d);
  const double head = w(TensorClass::kLmHead, c.vocab, d);
  const double kv = static_cast<double>(c.n_layers) * 2 * d * 2 * ctx;
  return attn + dense + moe + head + kv;
}

// Under an offload plan, one stdout line: the host pool, the routed experts kept in host memory
// and the GPU cache slots for them, and the pinned host-to-device bandwidth measured now (what
// the cache refills and host reads ride on); the same under out["offload"].
Status report_offload(const MemoryPlan& plan, nlohmann::json& out) {
  if (!plan.offloaded()) return Status::Ok();
  DSOCR_ASSIGN_OR_RETURN(const double h2d, measure_h2d_gbps());
  const ExpertCachePlan& ec = plan.expert_cache;
  const int layers = static_cast<int>(ec.layers.size());
  std::printf(
      "offload: %s in host memory; routed experts host-resident: %d (%d MoE layers x %d), "
      "cached on the GPU: %d (%d slots per layer); pinned host-to-device %.1f GB/s "
      "(256 MiB, median of 7)\n",
      format_bytes(plan.host_total).c_str(), layers * ec.n_experts, layers, ec.n_experts,
      layers * ec.slots, ec.slots, h2d);
  out["offload"] = {{"host_bytes", plan.host_total},
                    {"experts_host", layers * ec.n_experts},
                    {"experts_cached", layers * ec.slots},
                    {"cache_slots_per_layer", ec.slots},
                    {"h2d_gbps", h2d}};
  return Status::Ok();
}

// Under an offload plan with prefill streaming (runtime/expert_cache.h), one stdout line: the
// experts a prefill copied into staging slots since the model opened, the copy engine's time and
// rate, and the share of it that ran while the model's stream computed a pass of the same layer
// (from CUDA events around each copy and pass); the same under out["prefill_streaming"].
Status report_streaming(GpuModel& model, nlohmann::json& out) {
  ExpertCache* cache = model.expert_cache();
  if (!cache) return Status::Ok();
  if (!cache->streaming()) {
    std::printf("prefill streaming: off (DSOCR_PREFILL_STREAM=0): uncached experts read zero-copy\n");
    return Status::Ok();
  }
  DSOCR_ASSIGN_OR_RETURN(const ExpertCache::StreamStats st, cache->stream_stats());
  const double gbps = st.copy_ms > 0 ? st.bytes / (st.copy_ms * 1e-3) * 1e-9 : 0;
  const double hidden = st.copy_ms > 0 ? 100 * st.hidden_ms / st.copy_ms : 0;
  std::printf(
      "prefill streaming: %d MoE layers streamed, %lld experts (%.1f MB) copied in %.2f ms "
      "(%.1f GB/s), %.1f%% of the copy time hidden behind compute passes (%d passes)\n",
      st.layers, static_cast<long long>(st.experts), st.bytes * 1e-6, st.copy_ms, gbps, hidden,
      st.passes);
  out["prefill_streaming"] = {{"layers", st.layers},    {"experts", st.experts},
                              {"bytes", st.bytes},      {"copy_ms", st.copy_ms},
                              {"hidden_ms", st.hidden_ms}, {"hidden_pct", hidden},
                              {"passes", st.passes}};
  return Status::Ok();
}

// `hint`: what else the command can do without a GPU ("" for none).
Status need_gpu(const std::string& hint = "") {
  const Status s = cuda_device_available();
  if (s.ok()) return s;
  return Status::Error("no CUDA device was found (" + s.message() +
                       "); dsocr-bench times CUDA kernels, run it on a machine with an NVIDIA GPU" +
                       hint);
}

Status run_decode(const Args& a) {
  DSOCR_TRY(need_gpu());
  DSOCR_ASSIGN_OR_RETURN(const double copy_gbps, measure_copy_gbps());
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::fprintf(stderr, "%s: %s, copy bandwidth %.0f GB/s; loading %s\n", kTool, prop.name,
               copy_gbps, a.model.c_str());
  PlanOptions po;
  po.mode = Mode::kGundam;
  po.max_new_tokens = std::min(a.tokens, 8192 - max_prompt_tokens(Mode::kGundam));
  po.device = 0;
  po.gpu_mem = a.gpu_mem;
  po.quant = a.quant;
  po.budget_name = a.gpu_mem ? "--gpu-mem " + a.gpu_mem_text : "the GPU's free memory";
  po.fix = "raise --gpu-mem or lower --tokens";
  DSOCR_ASSIGN_OR_RETURN(std::unique_ptr<GpuModel> model, GpuModel::open(a.model, po));
  const ModelConfig& cfg = model->cfg();
  GpuDecoder& dec = model->decoder();
  nlohmann::json out = {{"gpu", prop.name}, {"copy_gbps", copy_gbps}, {"results", nlohmann::json::array()}};
  const MemoryPlan& plan = model->plan();
  out["host_gb"] = plan.host_total * 1e-9;
  out["expert_cache_slots"] = plan.expert_cache.active() ? plan.expert_cache.slots : -1;
  out["quant"] = a.quant.name, out["quant_policy"] = a.quant.describe();
  DSOCR_TRY(report_offload(plan, out));
  // MB/token: what one token reads with the weights as stored; % floor: that many bytes at the
  // copy bandwidth measured above, over the measured time (100% = the step at its byte floor).
  std::printf("weights: --quant %s: %s\n", a.quant.name.c_str(), a.quant.describe().c_str());
  std::printf("%-10s %10s %12s %12s %12s %10s %10s\n", "ctx", "prefill ms", "decode ms/tok",
              "tokens/s", "MB/token", "GB/s", "% floor");
  for (int ctx : a.ctx) {
    if (ctx > dec.max_rows())
      return Status::Error(strfmt("--ctx %d exceeds the %lld prompt rows planned for gundam",
                                  ctx, static_cast<long long>(dec.max_rows())));
    std::vector<int32_t> prompt(ctx);
    uint64_t r = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(ctx);
    for (int i = 0; i < ctx; ++i) {
      r ^= r << 13, r ^= r >> 7, r ^= r << 17;
      prompt[i] = i == 0 ? cfg.bos_id : static_cast<int32_t>(1000 + r % 100000);
    }
    NGramBan ban;
    ban.mode = NGramBan::kHF, ban.n = 20;
    std::vector<double> prefill_ms, decode_ms;
    for (int rep = 0; rep < a.reps + 1; ++rep) {  // rep 0: warm-up (graph capture, plans)
      DSOCR_TRY(dec.begin(prompt, a.tokens, ban, /*stop_at_eos=*/false));
      const auto t0 = std::chrono::steady_clock::now();
      DSOCR_TRY(dec.prefill());
      const double pms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      DSOCR_ASSIGN_OR_RETURN(GpuGeneration g, dec.generate());
      DSOCR_TRY(dec.end());
      DSOCR_TRY(model->between_pages());  // the expert cache's refill under offload
      if (static_cast<int>(g.ids.size()) != a.tokens)
        return Status::Error(strfmt("decoded %zu tokens, expected %d", g.ids.size(), a.tokens));
      if (rep > 0) prefill_ms.push_back(pms), decode_ms.push_back(g.decode_ms / a.tokens);
    }
    const double p = median(prefill_ms), t = median(decode_ms);
    const double bytes = decode_bytes(cfg, a.quant, ctx + a.tokens / 2);
    const double gbps = bytes / (t * 1e-3) * 1e-9;
    std::printf("%-10d %10.2f %12.4f %12.1f %12.1f %10.0f %9.1f%%\n", ctx, p, t, 1e3 / t,
                bytes * 1e-6, gbps, 100 * gbps / copy_gbps);
    out["results"].push_back({{"ctx", ctx},
                              {"tokens", a.tokens},
                              {"prefill_ms", p},
                              {"decode_ms_per_token", t},
                              {"bytes_per_token", bytes},
                              {"gbps", gbps},
                              {"pct_of_byte_floor", 100 * gbps / copy_gbps}});
  }
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  std::printf("device memory in use: %.2f GB of %.2f GB (pool %.2f GB)\n",
              (total_b - free_b) * 1e-9, total_b * 1e-9, model->pool().size() * 1e-9);
  DSOCR_TRY(report_streaming(*model, out));
  out["device_mem_used_gb"] = (total_b - free_b) * 1e-9;
  out["pool_gb"] = model->pool().size() * 1e-9;
  return write_json(a.json, out);
}

// ---- dsocr-bench kernels ----------------------------------------------------------------------
// One row per kernel at the model's shapes: median (p10..p90) per launch, bytes and flops it must
// move/do, achieved GB/s and TFLOP/s, the share of the ceilings measured in this run, the bound.
struct KernelRow {
  std::string name;
  int per_step = 0;  // launches per batch-1 decode step (0: not a decode-step kernel)
  double bytes = 0, flops = 0;
  KernelTiming t;
};

struct KernelCase {
  std::string name;
  int per_step;
  double bytes, flops;
  std::function<cudaError_t(int, cudaStream_t)> launch;
};

Status run_kernels_cpu(const Args& a);

Status run_kernels(const Args& a) {
  if (a.cpu) return run_kernels_cpu(a);
  DSOCR_TRY(need_gpu(", or use --device cpu to time the CPU reference kernels"));
  const ModelConfig c;  // the official shapes
  DSOCR_ASSIGN_OR_RETURN(const double copy_gbps, measure_copy_gbps());
  DSOCR_ASSIGN_OR_RETURN(const double gemm_tflops, measure_gemm_tflops());
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::fprintf(stderr, "%s: %s, copy %.0f GB/s, BF16 GEMM %.0f TFLOP/s (8192^3 cuBLASLt)\n", kTool,
               prop.name, copy_gbps, gemm_tflops);
  const std::regex filter(a.filter.empty() ? ".*" : a.filter);
  const int64_t d = c.dim, V = c.vocab, E = c.n_experts, K = c.top_k;
  const int64_t mi = c.moe_inter, si = c.shared_inter(), di = c.dense_inter;
  const float scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  const int ctx = a.ctx.empty() ? 912 : a.ctx.back();
  std::vector<KernelCase> cases;
  std::vector<std::unique_ptr<BenchBuffer>> keep;  // buffers live until the end
  auto buf = [&](uint64_t bytes) {
    keep.push_back(std::make_unique<BenchBuffer>(bytes, static_cast<uint32_t>(keep.size() + 7)));
    return keep.back().get();
  };
  auto ints = [&](const std::vector<int32_t>& v) {
    BenchBuffer* b = buf(v.size() * 4);
    cudaMemcpy(b->as<void>(), v.data(), v.size() * 4, cudaMemcpyHostToDevice);
    return b->as<int32_t>();
  };
  auto floats = [&](const std::vector<float>& v) {
    BenchBuffer* b = buf(v.size() * 4);
    cudaMemcpy(b->as<void>(), v.data(), v.size() * 4, cudaMemcpyHostToDevice);
    return b->as<float>();
  };
  // One MoE layer's pointers: expert e's gate, up, down at 3e, 3e+1, 3e+2 matrices of eb bytes in
  // the pool; the shared expert's three matrices of shb bytes from `shared`.
  auto moe_weights = [E](const BenchBuffer* pool, uint64_t eb, uint16_t* shared, uint64_t shb) {
    MoeDeviceWeights w;
    for (int e = 0; e < E; ++e)
      w.experts[e] = MlpWeights{pool->as<uint16_t>(eb * (3 * e)),
                                pool->as<uint16_t>(eb * (3 * e + 1)),
                                pool->as<uint16_t>(eb * (3 * e + 2))};
    const uint64_t sh = shb / 2;  // elements
    w.shared = MlpWeights{shared, shared + sh, shared + 2 * sh};
    return w;
  };
  // Activations (small, L2-resident as in the real step).
  BenchBuffer* x = buf(4096 * 13696 * 2);   // BF16 rows for every input
  BenchBuffer* y = buf(4096 * 13696 * 4);   // outputs (FP32 or BF16)
  BenchBuffer* h = buf(4096 * d * 4);       // FP32 residual
  BenchBuffer* ws = buf(uint64_t{64} << 20);
  // Decode: one weight matrix rotated through enough copies to leave L2 each launch.
  // m > 1: a decode batch of m sequences (the tensor-core path of gemv), bytes = the weights.
  auto gemv_case = [&](const std::string& name, int per_step, int64_t n, int64_t k, GemvEpilogue ep,
                       int m = 1) {
    const uint64_t wb = static_cast<uint64_t>(n) * k * 2;
    const int copies = rotation_copies(wb);
    BenchBuffer* w = buf(wb * copies);
    cases.push_back(
        {name, per_step, static_cast<double>(wb), 2.0 * m * n * k, [=](int i, cudaStream_t s) {
           return gemv(x->as<uint16_t>(), k, gemv_weights(w->as<uint16_t>(wb * (i % copies)), n), k,
                       y->as<void>(), n, m, k, ep, s);
         }});
  };
  // Per step: before and after every layer's attention, and the final norm.
  cases.push_back({"decode.add_rmsnorm", 2 * c.n_layers + 1, d * 14.0, 0,
                   [=](int, cudaStream_t s) {
                     return add_rmsnorm(h->as<float>(), d, y->as<float>(), d, x->as<uint16_t>(),
                                        x->as<uint16_t>(d * 2), d, 1, static_cast<int>(d),
                                        c.rms_eps, s);
                   }});
  gemv_case("decode.gemv_qkv 3840x1280", c.n_layers, 3 * d, d, GemvEpilogue::kStoreBf16);
  // Quantized decode GEMVs (kernels/quant.h): bytes = packed values + BF16 scales. Not part of the
  // BF16 step's sum (per_step 0); the weights are random bytes (timing does not depend on them).
  auto qgemv_case = [&](const std::string& name, WeightFormat f, int group, int64_t n, int64_t k,
                        GemvEpilogue ep) {
    const uint64_t wb = quant_bytes(f, n, k, group), slot = (wb + 255) / 256 * 256;
    const int copies = rotation_copies(slot);
    BenchBuffer* w = buf(slot * copies);
    cases.push_back({name, 0, static_cast<double>(wb), 2.0 * n * k, [=](int i, cudaStream_t s) {
                       const QWeight q = qweight_in_slot(w->as<uint8_t>(slot * (i % copies)), f,
                                                         n, k, group);
                       return gemv_quant(x->as<uint16_t>(), k, qgemv_weights(q, n),
                                         y->as<void>(), n, 1, k, ep, s);
                     }});
  };
  for (WeightFormat f : {WeightFormat::kInt8, WeightFormat::kInt4}) {
    const std::string fn = weight_format_name(f);
    qgemv_case("quant." + fn + ".gemv_qkv 3840x1280", f, 128, 3 * d, d, GemvEpilogue::kStoreBf16);
    qgemv_case("quant." + fn + ".gemv_o 1280x1280", f, 128, d, d, GemvEpilogue::kStoreF32);
    qgemv_case("quant." + fn + ".gemv_down 1280x6848", f, 64, d, di, GemvEpilogue::kStoreF32);
    qgemv_case("quant." + fn + ".lm_head 129280x1280", f, 128, V, d, GemvEpilogue::kStoreF32);
  }
  {  // RoPE + K/V append: one token
    const int64_t pages = (c.max_pos + kKvPageSize - 1) / kKvPageSize;
    BenchBuffer* kv = buf(static_cast<uint64_t>(pages) * kKvPageSize * d * 2 * 2);
    std::vector<int32_t> table(pages);
    for (int64_t p = 0; p < pages; ++p) table[p] = static_cast<int32_t>(p);
    PagedKv pk;
    pk.k = kv->as<uint16_t>(), pk.v = kv->as<uint16_t>(pages * kKvPageSize * d * 2);
    pk.page_table = ints(table), pk.page_size = kKvPageSize, pk.n_pages = pages;
    const int32_t* pos = ints({ctx - 1});
    cases.push_back({"decode.rope_append", c.n_layers, d * 2.0 * 5, 0, [=](int, cudaStream_t s) {
                       return rope_qk_append_kv(x->as<uint16_t>(), x->as<uint16_t>(d * 2),
                                                x->as<uint16_t>(d * 4), 3 * d, pos,
                                                y->as<uint16_t>(), d, pk, c.max_pos, 1,
                                                c.n_heads, c.head_dim, c.rope_theta, s);
                     }});
    // Attention over ctx keys; the cache is rotated through copies of the live rows.
    const uint64_t live = static_cast<uint64_t>(ctx) * d * 2 * 2;
    const int copies = rotation_copies(live, 16);
    const int64_t span = (ctx + kKvPageSize - 1) / kKvPageSize;  // pages per copy
    BenchBuffer* kvr = buf(static_cast<uint64_t>(span) * copies * kKvPageSize * d * 2 * 2);
    std::vector<int32_t> tables(static_cast<size_t>(span) * copies);
    for (size_t p = 0; p < tables.size(); ++p) tables[p] = static_cast<int32_t>(p);
    const int32_t* tdev = ints(tables);
    const int64_t pool_pages = span * copies;
    BenchBuffer* aws = buf(decode_attention_workspace_bytes(c.n_heads, c.head_dim, c.max_pos));
    if (cudaError_t e = decode_attention_workspace_init(aws->as<void>(), c.n_heads, c.head_dim,
                                                        c.max_pos, nullptr);
        e != cudaSuccess || (e = cudaDeviceSynchronize()) != cudaSuccess)
      return Status::Error(strfmt("decode attention workspace: %s", cudaGetErrorString(e)));
    cases.push_back({strfmt("decode.attention ctx %d", ctx), c.n_layers, static_cast<double>(live),
                     4.0 * ctx * d, [=](int i, cudaStream_t s) {
                       PagedKv r;
                       r.k = kvr->as<uint16_t>();
                       r.v = kvr->as<uint16_t>(pool_pages * kKvPageSize * d * 2);
                       r.page_table = tdev + (i % copies) * span;
                       r.page_size = kKvPageSize, r.n_pages = pool_pages;
                       return decode_attention(x->as<uint16_t>(), r, pos, y->as<uint16_t>(),
                                               aws->as<void>(), c.max_pos, c.n_heads, c.head_dim,
                                               scale, s);
                     }});
  }
  gemv_case("decode.gemv_o 1280x1280", c.n_layers, d, d, GemvEpilogue::kStoreF32);
  {  // MoE: a 64-expert layer; each launch picks other experts (the pool is > 3x L2).
    const uint64_t eb = static_cast<uint64_t>(mi) * d * 2, shb = static_cast<uint64_t>(si) * d * 2;
    BenchBuffer* experts = buf(eb * 3 * E);
    const int sh_copies = rotation_copies(3 * shb, 8);
    BenchBuffer* shared = buf(shb * 3 * sh_copies);
    BenchBuffer* router = buf(static_cast<uint64_t>(E) * d * 2);
    std::vector<MoeDeviceWeights> mw;
    for (int r = 0; r < sh_copies; ++r)
      mw.push_back(moe_weights(experts, eb, shared->as<uint16_t>(shb * 3 * r), shb));
    constexpr int kRot = 16;
    std::vector<int32_t> ids(kRot * K);
    for (int i = 0; i < kRot; ++i)
      for (int k = 0; k < K; ++k) ids[i * K + k] = static_cast<int32_t>((i * K + k) % E);
    const int32_t* dids = ints(ids);
    const float* dw = floats(std::vector<float>(kRot * K, 1.f / K));
    cases.push_back({"decode.moe_router", c.n_layers - c.first_dense, E * d * 2.0, 2.0 * E * d,
                     [=](int, cudaStream_t s) {
                       return moe_router(x->as<uint16_t>(), d, router->as<uint16_t>(), nullptr,
                                         ws->as<int32_t>(), ws->as<float>(4096), 1,
                                         static_cast<int>(d), static_cast<int>(E),
                                         static_cast<int>(K), c.routed_scale, s);
                     }});
    // moe_decode of T tokens (ids, weights) on one copy of the weights, FP32 out.
    auto moe_call = [=](const MoeDeviceWeights& w, const int32_t* ids, const float* wts, int T,
                        cudaStream_t s) {
      return moe_decode(x->as<uint16_t>(), d, ids, wts, w, y->as<float>(), d,
                        GemvEpilogue::kStoreF32, ws->as<void>(), T, static_cast<int>(d),
                        static_cast<int>(E), static_cast<int>(K), static_cast<int>(mi),
                        static_cast<int>(si), s);
    };
    const double moe_bytes = (K * 3.0 * eb + 3.0 * shb);
    cases.push_back({"decode.moe 6 experts + shared", c.n_layers - c.first_dense, moe_bytes,
                     2.0 * (K * 3.0 * mi + 3.0 * si) * d, [=](int i, cudaStream_t s) {
                       return moe_call(mw[i % sh_copies], dids + (i % kRot) * K,
                                       dw + (i % kRot) * K, 1, s);
                     }});
    // Batched decode, 8 tokens with random distinct top-k each: every distinct expert is read
    // once for all the tokens that chose it; bytes = the mean distinct experts of the sets.
    constexpr int kT = 8;
    double distinct = 0;
    const std::vector<int32_t> ids8 = random_topk(kRot, kT, E, K, 13, &distinct);
    const int32_t* dids8 = ints(ids8);
    const float* dw8 = floats(std::vector<float>(ids8.size(), 1.f / K));
    cases.push_back({strfmt("decode8.moe %d tokens (%.1f distinct experts) + shared", kT, distinct),
                     0, distinct * 3.0 * eb + 3.0 * shb, 2.0 * kT * (K * 3.0 * mi + 3.0 * si) * d,
                     [=](int i, cudaStream_t s) {
                       const size_t set = static_cast<size_t>(i % kRot) * kT * K;
                       return moe_call(mw[i % sh_copies], dids8 + set, dw8 + set, kT, s);
                     }});
    // mixed: INT4 g128 routed experts, INT8 shared experts, in the same buffers (each quantized
    // matrix at the start of its BF16-sized slot, its scales after the values).
    std::vector<MoeDeviceWeights> qw;
    for (int r = 0; r < sh_copies; ++r) {
      MoeDeviceWeights m = mw[r];
      m.expert_format = WeightFormat::kInt4, m.expert_group = 128;
      m.shared_format = WeightFormat::kInt8;
      auto scales = [](const uint16_t* p, WeightFormat f, int64_t n, int64_t k) {
        return qweight_in_slot(p, f, n, k, 128).scale;
      };
      for (int e = 0; e < E; ++e) {
        const MlpWeights& x3 = m.experts[e];
        m.expert_scales[e] = {scales(x3.gate, m.expert_format, mi, d),
                              scales(x3.up, m.expert_format, mi, d),
                              scales(x3.down, m.expert_format, d, mi)};
      }
      m.shared_scales = {scales(m.shared.gate, m.shared_format, si, d),
                         scales(m.shared.up, m.shared_format, si, d),
                         scales(m.shared.down, m.shared_format, d, si)};
      qw.push_back(m);
    }
    const double qmoe_bytes = K * 3.0 * quant_bytes(WeightFormat::kInt4, mi, d, 128) +
                              3.0 * quant_bytes(WeightFormat::kInt8, si, d, 0);
    cases.push_back({"quant.mixed.moe 6 int4 experts + int8 shared", 0, qmoe_bytes,
                     2.0 * (K * 3.0 * mi + 3.0 * si) * d, [=](int i, cudaStream_t s) {
                       return moe_call(qw[i % sh_copies], dids + (i % kRot) * K,
                                       dw + (i % kRot) * K, 1, s);
                     }});
  }
  {  // Dense layer 0
    const uint64_t wb = static_cast<uint64_t>(di) * d * 2;
    const int copies = rotation_copies(2 * wb);
    BenchBuffer* gu = buf(2 * wb * copies);
    cases.push_back({"decode.gemv_swiglu 2x6848x1280", c.first_dense, 2.0 * wb, 4.0 * di * d,
                     [=](int i, cudaStream_t s) {
                       const uint64_t off = 2 * wb * (i % copies);
                       return gemv_swiglu(x->as<uint16_t>(), d, gu->as<uint16_t>(off),
                                          gu->as<uint16_t>(off + wb), d, y->as<uint16_t>(), di, 1,
                                          di, d, s);
                     }});
  }
  gemv_case("decode.gemv_down 1280x6848", c.first_dense, d, di, GemvEpilogue::kStoreF32);
  gemv_case("decode.lm_head 129280x1280", 1, V, d, GemvEpilogue::kStoreF32);
  // Batched decode, 8 sequences (runtime/batch.h), outside the batch-1 step sum: the GEMVs at
  // m = 8 read each weight once for all rows. decode_attention takes one sequence per launch
  // (kernels/causal_attention.h), so a batch runs it per sequence: no decode8 attention row.
  constexpr int kBatch = 8;
  gemv_case("decode8.gemv_qkv 3840x1280", 0, 3 * d, d, GemvEpilogue::kStoreBf16, kBatch);
  gemv_case("decode8.gemv_o 1280x1280", 0, d, d, GemvEpilogue::kStoreF32, kBatch);
  gemv_case("decode8.gemv_down 1280x6848", 0, d, di, GemvEpilogue::kStoreF32, kBatch);
  gemv_case("decode8.lm_head 129280x1280", 0, V, d, GemvEpilogue::kStoreF32, kBatch);
  {
    const int32_t* ids = ints(std::vector<int32_t>(1, 1000));
    BenchBuffer* table = buf(static_cast<uint64_t>(V) * d * 2);
    cases.push_back({"decode.embed", 1, d * 4.0, 0, [=](int, cudaStream_t s) {
                       return embed_rows(ids, table->as<uint16_t>(), x->as<uint16_t>(), d, 1, V, d,
                                         s);
                     }});
    std::vector<int32_t> hist(ctx);
    for (int i = 0; i < ctx; ++i) hist[i] = 1000 + (i * 7919) % 500;
    int32_t* dh = ints(hist);
    DecodeSeqState st0;
    st0.len = ctx, st0.prompt_len = ctx / 2, st0.pos = ctx - 1, st0.token = 5;
    st0.max_new = 1 << 30, st0.capacity = c.max_pos;
    BenchBuffer* stb = buf(sizeof(DecodeSeqState));
    cudaMemcpy(stb->as<void>(), &st0, sizeof st0, cudaMemcpyHostToDevice);
    auto* st = stb->as<DecodeSeqState>();
    NGramBan ban;
    ban.mode = NGramBan::kHF, ban.n = 20;
    BenchBuffer* banned = buf(static_cast<uint64_t>(c.max_pos) * 4);
    cases.push_back({strfmt("decode.ngram_ban ctx %d", ctx), 1, ctx * 4.0, 0,
                     [=](int, cudaStream_t s) {
                       return ngram_ban(dh, st, ban, banned->as<int32_t>(), s);
                     }});
    BenchBuffer* logits = buf(static_cast<uint64_t>(V) * 4);
    BenchBuffer* aws = buf(argmax_workspace_bytes(V));
    cases.push_back({"decode.argmax 129280", 1, V * 4.0, 0, [=](int, cudaStream_t s) {
                       return argmax_banned(logits->as<float>(), V, banned->as<int32_t>(),
                                            &st->n_banned, ws->as<int32_t>(), aws->as<void>(), s);
                     }});
  }
  // Prefill at each --ctx length.
  BenchBuffer* gws = buf(GemmRunner::kWorkspaceBytes);
  auto gemm = std::make_shared<GemmRunner>();
  DSOCR_CUDA_TRY(gemm->init(gws->as<void>(), GemmRunner::kWorkspaceBytes));
  BenchBuffer* wbig = buf(static_cast<uint64_t>(di) * d * 2 * 2);
  // out[m, n] = x[m, k] · w[n, k]ᵀ (+ bias) on cuBLASLt.
  auto gemm_case = [&](const std::string& name, int64_t m, int64_t n, int64_t k, bool bias) {
    cases.push_back({name, 0, (static_cast<double>(m) * k + static_cast<double>(n) * k + m * n) * 2,
                     2.0 * m * n * k, [=](int, cudaStream_t s) {
                       GemmArgs g;
                       g.m = m, g.n = n, g.k = k;
                       g.a = x->as<uint16_t>(), g.lda = k, g.w = wbig->as<uint16_t>(), g.ldw = k;
                       g.bias = bias ? wbig->as<uint16_t>() : nullptr;
                       g.out = y->as<uint16_t>(), g.ldo = n;
                       return gemm->run(g, s) == CUBLAS_STATUS_SUCCESS ? cudaSuccess
                                                                        : cudaErrorUnknown;
                     }});
  };
  for (int T : a.ctx) {
    gemm_case(strfmt("prefill%d.gemm 1280x1280 (q, k, v, o)", T), T, d, d, false);
    gemm_case(strfmt("prefill%d.gemm 6848x1280 (dense gate, up)", T), T, di, d, false);
    gemm_case(strfmt("prefill%d.gemm 1280x6848 (dense down)", T), T, d, di, false);
    const int64_t pages = (T + kKvPageSize - 1) / kKvPageSize;
    std::vector<int32_t> table(pages);
    for (int64_t p = 0; p < pages; ++p) table[p] = static_cast<int32_t>(p);
    BenchBuffer* kv = buf(static_cast<uint64_t>(pages) * kKvPageSize * d * 2 * 2);
    PagedKv pk;
    pk.k = kv->as<uint16_t>(), pk.v = kv->as<uint16_t>(pages * kKvPageSize * d * 2);
    pk.page_table = ints(table), pk.page_size = kKvPageSize, pk.n_pages = pages;
    cases.push_back({strfmt("prefill%d.attention", T), 0, 4.0 * T * d * 2,
                     2.0 * T * T * d /* causal: half of 4 T^2 d */, [=](int, cudaStream_t s) {
                       return prefill_attention(x->as<uint16_t>(), 3 * d, pk, 0, T,
                                                y->as<uint16_t>(), d, c.n_heads, c.head_dim,
                                                scale, s);
                     }});
    // MoE over T tokens with a spread routing (every expert used).
    const uint64_t eb = static_cast<uint64_t>(mi) * d * 2, shb = static_cast<uint64_t>(si) * d * 2;
    BenchBuffer* experts = buf(eb * 3 * E + shb * 3);
    const MoeDeviceWeights mw = moe_weights(experts, eb, experts->as<uint16_t>(eb * 3 * E), shb);
    std::vector<int32_t> ids(static_cast<size_t>(T) * K);
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < K; ++k) ids[t * K + k] = static_cast<int32_t>((t * 7 + k * 11) % E);
    const int32_t* dids = ints(ids);
    const float* dw = floats(std::vector<float>(ids.size(), 1.f / K));
    BenchBuffer* mws = buf(moe_prefill_workspace_bytes(T, static_cast<int>(K), static_cast<int>(E),
                                                       d, mi, si));
    cases.push_back({strfmt("prefill%d.moe (64 experts + shared)", T), 0,
                     (E * 3.0 * eb + 3.0 * shb),
                     2.0 * T * (K * 3.0 * mi + 3.0 * si) * d, [=](int, cudaStream_t s) {
                       return moe_prefill(x->as<uint16_t>(), d, dids, dw, mw, y->as<float>(), d,
                                          GemvEpilogue::kStoreF32, mws->as<void>(), T,
                                          static_cast<int>(d), static_cast<int>(E),
                                          static_cast<int>(K), static_cast<int>(mi),
                                          static_cast<int>(si), s);
                     }});
  }
  // The encoder's kernels for one 1024² view (SAM grid 64, windows padded to 70 = 25 windows of
  // 14², CLIP 257 tokens) and a batch of six 640² tiles (grid 40, 9 windows each).
  {
    const SamConfig& sc = c.sam;
    const ClipConfig& cc = c.clip;
    const int hd = sc.dim / sc.n_heads;
    auto vgemm = [&](const std::string& what, int64_t m, int64_t n, int64_t k) {
      gemm_case("vision.gemm " + what, m, n, k, true);
    };
    vgemm("SAM qkv 4096x2304x768", 4096, 3 * sc.dim, sc.dim);
    vgemm("SAM lin1 4096x3072x768", 4096, sc.mlp_dim, sc.dim);
    vgemm("SAM lin2 4096x768x3072", 4096, sc.dim, sc.mlp_dim);
    vgemm("CLIP qkv 257x3072x1024", 257, 3 * cc.dim, cc.dim);
    vgemm("CLIP fc1 257x4096x1024", 257, cc.mlp_dim, cc.dim);
    vgemm("projector 256x1280x2048", 256, c.proj_out, c.proj_in);
    const float* rel = floats(std::vector<float>(static_cast<size_t>(2 * 80 - 1) * hd, 0.01f));
    auto vattn = [&](const std::string& what, int64_t n_seq, int64_t tokens, int64_t gh,
                     int64_t gw, int heads, bool bias) {
      const double f = 4.0 * n_seq * heads * static_cast<double>(tokens) * tokens * hd;
      cases.push_back({"vision.attention " + what, 0, n_seq * tokens * heads * hd * 2.0 * 4, f,
                       [=](int, cudaStream_t s) {
                         return vision_attention(x->as<uint16_t>(), bias ? rel : nullptr,
                                                 bias ? rel : nullptr, y->as<uint16_t>(), n_seq,
                                                 tokens, bias ? gh : 0, bias ? gw : 0, heads, hd,
                                                 s);
                       }});
    };
    vattn("SAM global 64x64", 1, 4096, 64, 64, sc.n_heads, true);
    vattn("SAM 25 windows 14x14", 25, 196, 14, 14, sc.n_heads, true);
    vattn("SAM global 40x40 x6 tiles", 6, 1600, 40, 40, sc.n_heads, true);
    vattn("SAM 54 windows (6 tiles)", 54, 196, 14, 14, sc.n_heads, true);
    vattn("CLIP 257 tokens", 1, 257, 0, 0, cc.n_heads, false);
    cases.push_back({"vision.layernorm 4096x768", 0, 4096 * 768 * 4.0, 0, [=](int, cudaStream_t s) {
                       return layernorm(x->as<uint16_t>(), sc.dim, wbig->as<uint16_t>(),
                                        wbig->as<uint16_t>(), y->as<uint16_t>(), sc.dim, 4096,
                                        sc.dim, sc.ln_eps, s);
                     }});
  }
  for (const auto& b : keep)
    if (!b->ok()) return Status::Error("cannot allocate the benchmark buffers on the GPU");

  std::vector<KernelRow> rows;
  std::printf("%-40s %10s %17s %9s %8s %6s %9s %8s %6s %s\n", "kernel", "median us", "p10..p90",
              "MB", "GB/s", "%copy", "GFLOP", "TFLOP/s", "%gemm", "bound");
  for (const KernelCase& kc : cases) {
    if (!std::regex_search(kc.name, filter)) continue;
    DSOCR_ASSIGN_OR_RETURN(KernelTiming t, time_kernel(kc.launch));
    const double sec = t.median_us * 1e-6;
    const double gbps = kc.bytes / sec * 1e-9, tflops = kc.flops / sec * 1e-12;
    const bool mem = kc.bytes / (copy_gbps * 1e9) >= kc.flops / (gemm_tflops * 1e12);
    std::printf("%-40s %10.2f %8.2f..%-8.2f %9.2f %8.0f %5.0f%% %9.3f %8.1f %5.0f%% %s\n",
                kc.name.c_str(), t.median_us, t.p10_us, t.p90_us, kc.bytes * 1e-6, gbps,
                100 * gbps / copy_gbps, kc.flops * 1e-9, tflops, 100 * tflops / gemm_tflops,
                mem ? "memory" : "compute");
    rows.push_back({kc.name, kc.per_step, kc.bytes, kc.flops, t});
  }
  double step_us = 0, step_bytes = 0;
  for (const KernelRow& r : rows) step_us += r.per_step * r.t.median_us, step_bytes += r.per_step * r.bytes;
  if (step_us > 0)
    std::printf("decode step (batch 1, ctx %d): sum of kernel medians x launches per step = %.1f "
                "us, %.0f MB, %.0f GB/s = %.0f%% of copy\n",
                ctx, step_us, step_bytes * 1e-6, step_bytes / (step_us * 1e-6) * 1e-9,
                100 * step_bytes / (step_us * 1e-6) * 1e-9 / copy_gbps);
  nlohmann::json out = {{"gpu", prop.name},
                        {"copy_gbps", copy_gbps},
                        {"gemm_tflops", gemm_tflops},
                        {"kernels", nlohmann::json::array()},
                        {"decode_step_sum_us", step_us},
                        {"decode_ctx", ctx}};
  for (const KernelRow& r : rows)
    out["kernels"].push_back({{"name", r.name},
                              {"median_us", r.t.median_us},
                              {"p10_us", r.t.p10_us},
                              {"p90_us", r.t.p90_us},
                              {"bytes", r.bytes},
                              {"flops", r.flops},
                              {"per_decode_step", r.per_step}});
  return write_json(a.json, out);
}

// ---- dsocr-bench kernels --device cpu ---------------------------------------------------------
// The CPU float32 reference kernels (kernels/*_ref.cpp, the correctness oracle of every GPU
// kernel) at the decoder's decode and prefill shapes: wall time per call (median of 3 after one
// warm-up), the bytes a call reads and writes (FP32 activations, BF16 weights), its flops, GB/s
// and GFLOP/s. Inputs and weights are built only for the rows --filter keeps.
struct CpuKernelCase {
  std::string name;
  double bytes, flops;
  std::function<std::function<void()>()> make;  // allocates the inputs, returns one call
};

std::vector<float> cpu_floats(size_t n, uint32_t seed) {  // in [-1, 1)
  std::vector<float> v(n);
  for (float& x : v) {
    seed ^= seed << 13, seed ^= seed >> 17, seed ^= seed << 5;
    x = static_cast<float>(seed >> 8) * (2.f / 16777216.f) - 1.f;
  }
  return v;
}

std::vector<uint16_t> cpu_bf16(size_t n, uint32_t seed) {  // in [-1/32, 1/32)
  std::vector<float> f = cpu_floats(n, seed);
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = f32_to_bf16(f[i] * (1.f / 32));
  return v;
}

Status run_kernels_cpu(const Args& a) {
  const ModelConfig c;
  constexpr int kReps = 3;
  const std::regex filter(a.filter.empty() ? ".*" : a.filter);
  const int64_t d = c.dim, V = c.vocab, di = c.dense_inter, mi = c.moe_inter, si = c.shared_inter();
  const int E = c.n_experts, K = c.top_k, H = c.n_heads, hd = c.head_dim;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  const int ctx = a.ctx.back();
  std::vector<CpuKernelCase> cases;
  using Run = std::function<void()>;
  // y[T, n] = x[T, k] · w[n, k]ᵀ
  auto linear_case = [&](const std::string& name, int64_t T, int64_t n, int64_t k) {
    cases.push_back({name, 2.0 * n * k + 4.0 * T * (n + k), 2.0 * T * n * k, [=]() -> Run {
                       auto x = std::make_shared<std::vector<float>>(cpu_floats(T * k, 1));
                       auto w = std::make_shared<std::vector<uint16_t>>(cpu_bf16(n * k, 2));
                       auto y = std::make_shared<std::vector<float>>(T * n);
                       return
                           [=] { linear_ref(x->data(), w->data(), nullptr, y->data(), T, n, k); };
                     }});
  };
  auto swiglu_case = [&](const std::string& name, int64_t T) {
    cases.push_back({name, 3.0 * di * d * 2 + 8.0 * T * d, 6.0 * T * di * d, [=]() -> Run {
                       auto x = std::make_shared<std::vector<float>>(cpu_floats(T * d, 1));
                       auto w = std::make_shared<std::vector<uint16_t>>(cpu_bf16(3 * di * d, 2));
                       auto y = std::make_shared<std::vector<float>>(T * d);
                       auto sc = std::make_shared<std::vector<float>>(swiglu_scratch_floats(T, di));
                       return [=] {  // every buffer captured: the call keeps them alive
                         const MlpWeights mw{w->data(), w->data() + di * d, w->data() + 2 * di * d};
                         swiglu_ref(x->data(), mw, y->data(), sc->data(), T, d, di);
                       };
                     }});
  };
  // Attention of T new tokens after p0 cached ones (FP32 K/V cache).
  auto attention_case = [&](const std::string& name, int64_t T, int64_t p0) {
    const double keys = static_cast<double>(p0 + T);
    cases.push_back({name, 2.0 * keys * d * 4 + 8.0 * T * d, 4.0 * d * (p0 * T + T * (T + 1) / 2.0),
                     [=]() -> Run {
                       auto q = std::make_shared<std::vector<float>>(cpu_floats(T * d, 1));
                       auto kv = std::make_shared<std::vector<float>>(
                           cpu_floats(2 * static_cast<size_t>(keys) * d, 2));
                       auto y = std::make_shared<std::vector<float>>(T * d);
                       return [=] {
                         const float* k = kv->data();
                         causal_attention_ref(q->data(), k, k + static_cast<size_t>(keys) * d,
                                              y->data(), T, p0, H, hd, scale);
                       };
                     }});
  };
  // Routed (top_k of n_experts, distinct per token, spread over the experts) + shared experts.
  auto moe_case = [&](const std::string& name, int64_t T) {
    const int used = static_cast<int>(std::min<int64_t>(E, T * K));
    cases.push_back({name, (used * 3.0 * mi + 3.0 * si) * d * 2 + 8.0 * T * d,
                     2.0 * T * (K * 3.0 * mi + 3.0 * si) * d, [=]() -> Run {
                       auto x = std::make_shared<std::vector<float>>(cpu_floats(T * d, 1));
                       auto w = std::make_shared<std::vector<uint16_t>>(
                           cpu_bf16(static_cast<size_t>(3 * (used * mi + si) * d), 2));
                       auto ids = std::make_shared<std::vector<int32_t>>(T * K);
                       auto tw = std::make_shared<std::vector<float>>(T * K, 1.f / K);
                       for (int64_t t = 0; t < T; ++t)
                         for (int k = 0; k < K; ++k)
                           (*ids)[t * K + k] = static_cast<int32_t>((t * K + k) % used);
                       auto experts = std::make_shared<std::vector<MlpWeights>>(E);
                       for (int e = 0; e < E; ++e) {
                         const uint16_t* p = w->data() + 3 * (e % used) * mi * d;
                         (*experts)[e] = {p, p + mi * d, p + 2 * mi * d};
                       }
                       auto y = std::make_shared<std::vector<float>>(T * d);
                       auto sc =
                           std::make_shared<std::vector<float>>(moe_scratch_floats(T, d, mi, si));
                       return [=] {  // w captured: `experts` points into it
                         const uint16_t* sp = w->data() + 3 * used * mi * d;
                         const MlpWeights shared{sp, sp + si * d, sp + 2 * si * d};
                         moe_ref(x->data(), ids->data(), tw->data(), experts->data(), shared,
                                 y->data(), sc->data(), T, d, E, K, mi, si);
                       };
                     }});
  };
  auto rmsnorm_case = [&](const std::string& name, int64_t T) {
    cases.push_back({name, 16.0 * T * d + 2.0 * d, 4.0 * T * d, [=]() -> Run {
                       auto h = std::make_shared<std::vector<float>>(cpu_floats(T * d, 1));
                       auto x = std::make_shared<std::vector<float>>(cpu_floats(T * d, 2));
                       auto w = std::make_shared<std::vector<uint16_t>>(cpu_bf16(d, 3));
                       auto y = std::make_shared<std::vector<float>>(T * d);
                       return [=] {
                         add_rmsnorm_ref(h->data(), x->data(), w->data(), y->data(), T, d,
                                         c.rms_eps);
                       };
                     }});
  };
  auto rope_case = [&](const std::string& name, int64_t T) {
    cases.push_back({name, 8.0 * T * d, 6.0 * T * d, [=]() -> Run {
                       auto x = std::make_shared<std::vector<float>>(cpu_floats(T * d, 1));
                       auto pos = std::make_shared<std::vector<int32_t>>(T);
                       for (int64_t t = 0; t < T; ++t)
                         (*pos)[t] = static_cast<int32_t>(ctx - T + t);
                       return [=] { rope_ref(x->data(), pos->data(), T, H, hd, c.rope_theta); };
                     }});
  };
  rmsnorm_case("decode.add_rmsnorm", 1);
  linear_case("decode.linear qkv 3840x1280", 1, 3 * d, d);
  rope_case("decode.rope q", 1);
  attention_case(strfmt("decode.attention ctx %d", ctx), 1, ctx - 1);
  linear_case("decode.linear o 1280x1280", 1, d, d);
  cases.push_back({"decode.moe_router", E * d * 2.0 + 4.0 * d, 2.0 * E * d, [=]() -> Run {
                     auto x = std::make_shared<std::vector<float>>(cpu_floats(d, 1));
                     auto w = std::make_shared<std::vector<uint16_t>>(cpu_bf16(E * d, 2));
                     auto out = std::make_shared<std::vector<float>>(E + 2 * K);
                     auto ids = std::make_shared<std::vector<int32_t>>(K);
                     return [=] {
                       moe_router_ref(x->data(), w->data(), out->data(), ids->data(),
                                      out->data() + E, 1, d, E, K, c.routed_scale);
                     };
                   }});
  moe_case("decode.moe 6 experts + shared", 1);
  swiglu_case("decode.swiglu dense 6848", 1);
  linear_case("decode.lm_head 129280x1280", 1, V, d);
  cases.push_back({"decode.embed", 6.0 * d, 0, [=]() -> Run {
                     auto table = std::make_shared<std::vector<uint16_t>>(cpu_bf16(V * d, 1));
                     auto y = std::make_shared<std::vector<float>>(d);
                     return [=] {
                       const int32_t id = 1000;
                       embed_ref(&id, table->data(), y->data(), 1, d);
                     };
                   }});
  for (int T : a.ctx) {
    rmsnorm_case(strfmt("prefill%d.add_rmsnorm", T), T);
    linear_case(strfmt("prefill%d.linear 1280x1280 (q, k, v, o)", T), T, d, d);
    rope_case(strfmt("prefill%d.rope q", T), T);
    attention_case(strfmt("prefill%d.attention", T), T, 0);
    swiglu_case(strfmt("prefill%d.swiglu dense 6848", T), T);
    moe_case(strfmt("prefill%d.moe (64 experts + shared)", T), T);
  }

  std::vector<CpuKernelCase> run;
  for (const CpuKernelCase& kc : cases)
    if (std::regex_search(kc.name, filter)) run.push_back(kc);
  if (run.empty())
    return Status::Error("--filter '" + a.filter +
                         "' matches no CPU kernel row; see the names "
                         "without --filter");
  nlohmann::json out = {{"device", "cpu"}, {"reps", kReps}, {"kernels", nlohmann::json::array()}};
  std::printf("%-40s %10s %9s %9s %8s %9s\n", "kernel (CPU float32 reference)", "median ms", "MB",
              "GFLOP", "GB/s", "GFLOP/s");
  for (size_t i = 0; i < run.size(); ++i) {
    const CpuKernelCase& kc = run[i];
    std::fprintf(stderr, "%s: cpu [%zu/%zu] %s\n", kTool, i + 1, run.size(), kc.name.c_str());
    const Run call = kc.make();
    std::vector<double> ms;
    for (int r = 0; r <= kReps; ++r) {  // r = 0: warm-up (page faults, thread pool)
      const auto t0 = std::chrono::steady_clock::now();
      call();
      const double t =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) ms.push_back(t);
    }
    const double t = median(ms), sec = t * 1e-3;
    std::printf("%-40s %10.3f %9.2f %9.3f %8.1f %9.1f\n", kc.name.c_str(), t, kc.bytes * 1e-6,
                kc.flops * 1e-9, kc.bytes / sec * 1e-9, kc.flops / sec * 1e-9);
    out["kernels"].push_back(
        {{"name", kc.name}, {"median_ms", t}, {"bytes", kc.bytes}, {"flops", kc.flops}});
  }
  return write_json(a.json, out);
}

// ---- dsocr-bench e2e ---------------------------------------------------------------------------
// Whole pages through the engine on the GPU, per mode: preprocessing (CPU), vision, prefill, time
// to first token, time per output token, tokens/s, pages/s, peak device and host memory.
double peak_host_mb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // KiB on Linux
}

// A synthetic page (no file needed): dark text-like bars on white, 1240 x 1754 (A4 at 150 dpi).
Image synthetic_page() {
  Image im;
  im.width = 1240, im.height = 1754;
  im.rgb.assign(static_cast<size_t>(im.width) * im.height * 3, 255);
  uint32_t r = 12345;
  for (int y = 120; y + 24 < im.height - 120; y += 36) {
    int x = 100;
    while (x < im.width - 140) {
      r ^= r << 13, r ^= r >> 17, r ^= r << 5;
      const int w = 20 + static_cast<int>(r % 90);
      for (int yy = y; yy < y + 20; ++yy)
        for (int xx = x; xx < std::min(x + w, im.width - 100); ++xx)
          for (int ch = 0; ch < 3; ++ch)
            im.rgb[(static_cast<size_t>(yy) * im.width + xx) * 3 + ch] = 30;
      x += w + 12;
    }
  }
  return im;
}

Status run_e2e(const Args& a) {
  DSOCR_TRY(need_gpu());
  Image image;
  if (a.image.empty()) {
    image = synthetic_page();
  } else {
    DSOCR_ASSIGN_OR_RETURN(image, load_image(a.image));
  }
  DSOCR_ASSIGN_OR_RETURN(const std::string prompt, task_prompt(Task::kMarkdown));
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  nlohmann::json out = {{"gpu", prop.name},
                        {"image", a.image.empty() ? "synthetic" : a.image},
                        {"tokens", a.tokens},
                        {"quant", a.quant.name},
                        {"quant_policy", a.quant.describe()},
                        {"results", nlohmann::json::array()}};
  std::printf("weights: --quant %s: %s\n", a.quant.name.c_str(), a.quant.describe().c_str());
  std::printf("%-7s %6s %9s %9s %9s %9s %10s %9s %8s %9s %9s\n", "mode", "image", "prep ms",
              "vision ms", "prefill", "TTFT ms", "ms/token", "tokens/s", "pages/s", "GPU GB",
              "host MB");
  for (const std::string& mode_name : a.modes) {
    DSOCR_ASSIGN_OR_RETURN(Mode mode, parse_mode(mode_name));
    EngineOptions eo;
    eo.model_dir = a.model;
    eo.mode = mode;
    eo.max_tokens = a.tokens;
    eo.cuda = true;
    eo.ignore_eos = true;
    eo.gpu_mem = a.gpu_mem;
    eo.quant = a.quant;
    if (a.progress) std::fprintf(stderr, "%s: %s: loading\n", kTool, mode_name.c_str());
    DSOCR_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::open(eo));
    nlohmann::json offload;
    DSOCR_TRY(report_offload(*engine->gpu_plan(), offload));
    std::map<std::string, std::vector<double>> ms;
    int image_tokens = 0;
    for (int rep = 0; rep <= a.reps; ++rep) {  // rep 0: warm-up
      DSOCR_ASSIGN_OR_RETURN(PageOutput page, engine->run(image, prompt));
      if (static_cast<int>(page.ids.size()) != a.tokens)
        return Status::Error(strfmt("%s: decoded %zu tokens, expected %d", mode_name.c_str(),
                                    page.ids.size(), a.tokens));
      image_tokens = page.image_tokens;
      if (rep == 0) continue;
      for (const auto& [k, v] : page.ms) ms[k].push_back(v);
    }
    auto med = [&](const char* k) { return ms.count(k) ? median(ms[k]) : 0.0; };
    const double prep = med("preprocess"), vis = med("vision"), pre = med("prefill"),
                 dec = med("decode");
    const double tpot = dec / a.tokens, ttft = prep + vis + pre + tpot;
    const double page_ms = prep + vis + pre + dec;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    const double gpu_gb = (total_b - free_b) * 1e-9;
    std::printf("%-7s %6d %9.2f %9.2f %9.2f %9.2f %10.4f %9.0f %8.2f %9.2f %9.0f\n",
                mode_name.c_str(), image_tokens, prep, vis, pre, ttft, tpot, 1e3 / tpot,
                1e3 / page_ms, gpu_gb, peak_host_mb());
    out["results"].push_back({{"mode", mode_name},
                              {"image_tokens", image_tokens},
                              {"preprocess_ms", prep},
                              {"vision_ms", vis},
                              {"prefill_ms", pre},
                              {"ttft_ms", ttft},
                              {"ms_per_token", tpot},
                              {"pages_per_s", 1e3 / page_ms},
                              {"device_mem_gb", gpu_gb},
                              {"peak_host_mb", peak_host_mb()}});
    if (!offload.is_null()) out["results"].back()["offload"] = offload["offload"];
    nlohmann::json streamed;
    DSOCR_TRY(report_streaming(*engine->gpu_model(), streamed));
    if (!streamed.is_null()) out["results"].back()["prefill_streaming"] = streamed["prefill_streaming"];
  }
  return write_json(a.json, out);
}

// ---- dsocr-bench compare -----------------------------------------------------------------------
// A PyTorch baseline JSON (bench/torch_*_baseline.py --json) beside dsocr's own (decode / e2e
// --json): one row per stage both measured.
Expected<nlohmann::json> read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Status::Error(path + ": cannot read; give a JSON file written with --json");
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    return Status::Error(path + ": not valid JSON (" + e.what() + ")");
  }
}

Status run_compare(const Args& a) {
  if (a.baseline.empty() || a.ours.empty())
    return Status::Error("compare needs --baseline TORCH.json and --ours DSOCR.json; give both "
                         "(--ours may repeat)");
  DSOCR_ASSIGN_OR_RETURN(nlohmann::json base, read_json(a.baseline));
  std::map<std::string, double> ours;  // baseline name -> our ms
  std::map<int, double> step_ms, kernel_sum_ms;  // decode step at ctx: measured, kernels summed
  for (const std::string& p : a.ours) {
    DSOCR_ASSIGN_OR_RETURN(nlohmann::json j, read_json(p));
    if (j.contains("decode_step_sum_us") && j.contains("decode_ctx"))  // dsocr-bench kernels
      kernel_sum_ms[j.at("decode_ctx").get<int>()] = j.at("decode_step_sum_us").get<double>() * 1e-3;
    for (const auto& r : j.value("results", nlohmann::json::array())) {
      if (r.contains("ctx")) {  // dsocr-bench decode
        const int ctx = r.at("ctx").get<int>();
        ours[strfmt("decoder.prefill_%d", ctx)] = r.at("prefill_ms").get<double>();
        ours[strfmt("decoder.decode_ctx%d_plain", ctx)] = r.at("decode_ms_per_token").get<double>();
        ours[strfmt("decoder.decode_ctx%d_compiled", ctx)] =
            r.at("decode_ms_per_token").get<double>();
        step_ms[ctx] = r.at("decode_ms_per_token").get<double>();
      } else if (r.contains("mode") && r.contains("vision_ms")) {  // dsocr-bench e2e
        const std::string m = r.at("mode").get<std::string>();
        if (m == "base") ours["vision.base_view"] = r.at("vision_ms").get<double>();
        if (m == "gundam") ours["vision.gundam"] = r.at("vision_ms").get<double>();
      }
    }
  }
  std::vector<std::string> rows;
  for (const auto& r : base.value("results", nlohmann::json::array())) {
    const std::string name = r.value("name", "");
    auto it = ours.find(name);
    if (it == ours.end() || !r.contains("ms_median")) continue;
    const double t = r.at("ms_median").get<double>();
    rows.push_back(strfmt("%-34s %-22s %12.3f %12.3f %8.2fx\n", name.c_str(),
                          r.value("mode", "").substr(0, 22).c_str(), t, it->second,
                          t / it->second));
  }
  if (rows.empty())
    return Status::Error("no stage of " + a.baseline + " matches the dsocr results given; pass "
                         "the JSON of `dsocr-bench decode` / `dsocr-bench e2e`");
  std::printf("%-34s %-22s %12s %12s %9s\n", "stage", "PyTorch variant", "PyTorch ms", "dsocr ms",
              "speed-up");
  for (const std::string& r : rows) std::fputs(r.c_str(), stdout);
  // The decode step against the sum of its kernels timed one by one (dsocr-bench kernels at the
  // same --ctx): the gap is what launches and dependencies cost beyond the kernels themselves.
  for (const auto& [ctx, sum] : kernel_sum_ms) {
    auto it = step_ms.find(ctx);
    if (it == step_ms.end()) continue;
    const double dev = (sum - it->second) / it->second;
    std::printf("decode step at ctx %d: kernels summed %.3f ms, measured step %.3f ms (%+.1f%%, %s "
                "10%%)\n", ctx, sum, it->second, 100 * dev, std::fabs(dev) <= 0.1 ? "within" : "outside");
  }
  return Status::Ok();
}

}  // namespace
}  // namespace dsocr

int main(int argc, char** argv) {
  using namespace dsocr;
  Expected<Args> a = parse(argc, argv);
  if (!a.ok()) {
    std::fprintf(stderr, "%s: %s\n", kTool, a.message().c_str());
    return 2;
  }
  if (a->cmd == "-h" || a->cmd == "--help") {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  const Status s = a->cmd == "kernels"   ? run_kernels(*a)
                   : a->cmd == "e2e"     ? run_e2e(*a)
                   : a->cmd == "compare" ? run_compare(*a)
                                         : run_decode(*a);
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", kTool, s.message().c_str());
    return 1;
  }
  return 0;
}
