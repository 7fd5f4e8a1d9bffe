// dsocr-bench: performance of the runtime on this GPU, reported against the machine's own
// measured ceilings (DESIGN.md §9, METHOD.md: CUDA events, warm-up, medians).
//
//   dsocr-bench decode --model DIR [--ctx 282,912] [--tokens N] [--reps N] [--json FILE]
//       batch-1 decoder on the checkpoint: prefill time per context length, decode ms/token
//       (graph-replayed steps, the host one token behind), bytes read per token, achieved GB/s
//       and % of the device-to-device copy bandwidth measured in the same run.
// Prompts are synthetic (BOS + seeded random text ids): timing does not depend on the content
// beyond the MoE routing. EOS is ignored so every run decodes exactly --tokens tokens.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/cuda_check.h"
#include "runtime/gpu_model.h"

namespace dsocr {
namespace {

constexpr const char* kTool = "dsocr-bench";

std::string usage() {
  return "usage: dsocr-bench decode --model DIR [options]\n"
         "  Batch-1 decoder timing on this GPU, against its measured copy bandwidth.\n"
         "  --ctx LIST      prompt lengths to time, comma separated (default 282,912)\n"
         "  --tokens N      tokens decoded per run (default 128)\n"
         "  --reps N        runs per figure; the median is reported (default 5)\n"
         "  --json FILE     also write the figures as JSON\n"
         "  -h, --help      this text\n";
}

struct Args {
  std::string cmd, model, json;
  std::vector<int> ctx = {282, 912};
  int tokens = 128, reps = 5;
};

Expected<int> parse_int(const std::string& flag, const std::string& v, int lo, int hi) {
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || x < lo || x > hi)
    return Status::Error(strfmt("%s %s: expected an integer in %d..%d", flag.c_str(), v.c_str(),
                                lo, hi));
  return static_cast<int>(x);
}

Expected<Args> parse(int argc, char** argv) {
  Args a;
  if (argc < 2) return Status::Error("no command; try `dsocr-bench --help`");
  a.cmd = argv[1];
  if (a.cmd == "-h" || a.cmd == "--help") return a;
  if (a.cmd != "decode")
    return Status::Error("unknown command '" + a.cmd + "'; the commands are: decode");
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
  if (a.model.empty()) return Status::Error("decode needs --model DIR");
  return a;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Device-to-device copy of a 1 GiB buffer: the bandwidth ceiling of a streaming kernel.
Expected<double> measure_copy_gbps() {
  const size_t bytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  DSOCR_CUDA_TRY(cudaMalloc(&a, bytes));
  DSOCR_CUDA_TRY(cudaMalloc(&b, bytes));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  std::vector<double> ms;
  for (int i = 0; i < 13; ++i) {
    cudaEventRecord(e0);
    cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    if (i >= 3) ms.push_back(t);  // warm-up
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  cudaFree(a), cudaFree(b);
  DSOCR_CUDA_TRY(cudaGetLastError());
  return 2.0 * bytes / (median(ms) * 1e-3) * 1e-9;  // read + write
}

// Bytes one batch-1 decode step reads at context `ctx` (DESIGN.md §9).
double decode_bytes(const ModelConfig& c, int ctx) {
  const double d = c.dim, bf = 2;
  const double attn = 4 * d * d * bf * c.n_layers;
  const double dense = 3 * d * c.dense_inter * bf * c.first_dense;
  const double moe = (c.n_layers - c.first_dense) *
                     (c.top_k * 3 * d * c.moe_inter + 3 * d * c.shared_inter() +
                      c.n_experts * d) * bf;
  const double head = static_cast<double>(c.vocab) * d * bf;
  const double kv = static_cast<double>(c.n_layers) * 2 * d * bf * ctx;
  return attn + dense + moe + head + kv;
}

Status run_decode(const Args& a) {
  DSOCR_TRY(cuda_device_available());
  DSOCR_ASSIGN_OR_RETURN(const double copy_gbps, measure_copy_gbps());
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::fprintf(stderr, "%s: %s, copy bandwidth %.0f GB/s; loading %s\n", kTool, prop.name,
               copy_gbps, a.model.c_str());
  PlanOptions po;
  po.mode = Mode::kGundam;
  po.max_new_tokens = std::min(a.tokens, 8192 - max_prompt_tokens(Mode::kGundam));
  po.device = 0;
  po.budget_name = "the GPU's free memory";
  DSOCR_ASSIGN_OR_RETURN(std::unique_ptr<GpuModel> model, GpuModel::open(a.model, po));
  const ModelConfig& cfg = model->cfg();
  GpuDecoder& dec = model->decoder();
  nlohmann::json out = {{"gpu", prop.name}, {"copy_gbps", copy_gbps}, {"results", nlohmann::json::array()}};
  std::printf("%-10s %10s %12s %12s %12s %10s %10s\n", "ctx", "prefill ms", "decode ms/tok",
              "tokens/s", "MB/token", "GB/s", "% of copy");
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
      if (static_cast<int>(g.ids.size()) != a.tokens)
        return Status::Error(strfmt("decoded %zu tokens, expected %d", g.ids.size(), a.tokens));
      if (rep > 0) prefill_ms.push_back(pms), decode_ms.push_back(g.decode_ms / a.tokens);
    }
    const double p = median(prefill_ms), t = median(decode_ms);
    const double bytes = decode_bytes(cfg, ctx + a.tokens / 2);
    const double gbps = bytes / (t * 1e-3) * 1e-9;
    std::printf("%-10d %10.2f %12.4f %12.1f %12.1f %10.0f %9.1f%%\n", ctx, p, t, 1e3 / t,
                bytes * 1e-6, gbps, 100 * gbps / copy_gbps);
    out["results"].push_back({{"ctx", ctx},
                              {"tokens", a.tokens},
                              {"prefill_ms", p},
                              {"decode_ms_per_token", t},
                              {"bytes_per_token", bytes},
                              {"gbps", gbps},
                              {"pct_of_copy", 100 * gbps / copy_gbps}});
  }
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  std::printf("device memory in use: %.2f GB of %.2f GB (pool %.2f GB)\n",
              (total_b - free_b) * 1e-9, total_b * 1e-9, model->pool().size() * 1e-9);
  out["device_mem_used_gb"] = (total_b - free_b) * 1e-9;
  out["pool_gb"] = model->pool().size() * 1e-9;
  if (!a.json.empty()) {
    std::ofstream f(a.json);
    if (!f) return Status::Error(a.json + ": cannot write; check the directory");
    f << out.dump(1) << "\n";
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
  const Status s = run_decode(*a);
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", kTool, s.message().c_str());
    return 1;
  }
  return 0;
}
