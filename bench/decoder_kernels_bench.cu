// Decoder batch-1 decode kernels (GEMV, SwiGLU GEMV, MoE router + decode MoE, flash-decoding,
// RMSNorm, RoPE, argmax) against the measured device-to-device copy bandwidth, plus cuBLAS on the
// same GEMV shapes.
//
// Method (STYLE.md, ../shared/PERF.md B5): each case captures R >= 16 launches into one CUDA graph,
// the launches rotating over enough copies of the inputs that the bytes between two reads of a
// copy exceed 3x L2 (cudaDevAttrL2CacheSize); 3 warm-up replays, then one timed replay per
// benchmark iteration (CUDA events); the counters give the median per launch: us, GB/s of the
// bytes a launch must move (weights or KV read once + activations), and pct_copy = GB/s over the
// copy bandwidth measured in the same process (bytes read + written, 1 GiB, median of 20).
//
//   dsocr_microbench --benchmark_filter='Copy|Gemv|Moe|Attn|Norm|Rope|Argmax'
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/argmax.h"
#include "kernels/causal_attention.h"
#include "kernels/linear.h"
#include "kernels/moe.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "runtime/kernel_timer.h"

namespace {

using namespace dsocr;

#define BENCH_CUDA(expr)                                                                 \
  do {                                                                                   \
    const cudaError_t e_ = (expr);                                                       \
    if (e_ != cudaSuccess) {                                                             \
      state.SkipWithError((std::string(#expr) + ": " + cudaGetErrorString(e_)).c_str()); \
      return;                                                                            \
    }                                                                                    \
  } while (0)

constexpr int kIters = 30;  // timed replays (median)

// Random BF16 in [-1, 1) from a hash of the index (never zeros: see METHOD.md).
__global__ void fill_bf16_kernel(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9e3779b9u ^ seed ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 16, h *= 0x7feb352du, h ^= h >> 15, h *= 0x846ca68bu, h ^= h >> 16;
    const float f = static_cast<float>(h & 0xffffff) * (2.f / 16777216.f) - 1.f;
    p[i] = static_cast<uint16_t>(__float_as_uint(f) >> 16);
  }
}
__global__ void fill_f32_kernel(float* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9e3779b9u ^ seed;
    h ^= h >> 16, h *= 0x7feb352du, h ^= h >> 15, h *= 0x846ca68bu, h ^= h >> 16;
    p[i] = static_cast<float>(h & 0xffffff) * (40.f / 16777216.f) - 20.f;
  }
}

// Device allocation freed at scope exit.
struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Dev(size_t b) : bytes(b) {
    if (cudaMalloc(&p, b ? b : 16) != cudaSuccess) p = nullptr;
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

void fill_bf16(const Dev& d, uint32_t seed) {
  fill_bf16_kernel<<<1024, 256>>>(d.as<uint16_t>(), d.bytes / 2, seed);
}

// Copies of an input of `bytes` needed so that a copy is re-read only after > 3x L2 of traffic.
int copies_for(size_t bytes) {
  return static_cast<int>(std::max<size_t>(2, (3 * l2_cache_bytes()) / std::max<size_t>(bytes, 1) + 2));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Measured device-to-device copy bandwidth (read + write bytes), GB/s; once per process
// (runtime/kernel_timer.h; 0 if it cannot be measured).
double copy_gbps() {
  static double gbps = [] {
    Expected<double> g = measure_copy_gbps();
    return g.ok() ? *g : 0.0;
  }();
  return gbps;
}

// Captures launch(0..R-1) into a graph, replays: 3 warm-ups, then one timed replay per benchmark
// iteration; sets the manual iteration time (per launch) and the counters from the median.
void time_graph(benchmark::State& state, int R, double bytes_per_launch,
                const std::function<cudaError_t(int, cudaStream_t)>& launch) {
  cudaStream_t st;
  BENCH_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  BENCH_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < R; ++i) {
    const cudaError_t e = launch(i, st);
    if (e != cudaSuccess) {
      cudaStreamEndCapture(st, &g);
      state.SkipWithError((std::string("launch: ") + cudaGetErrorString(e)).c_str());
      return;
    }
  }
  BENCH_CUDA(cudaStreamEndCapture(st, &g));
  BENCH_CUDA(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  for (int i = 0; i < 3; ++i) cudaGraphLaunch(ge, st);
  BENCH_CUDA(cudaStreamSynchronize(st));
  std::vector<double> us;
  for (auto _ : state) {
    cudaEventRecord(e0, st);
    cudaGraphLaunch(ge, st);
    cudaEventRecord(e1, st);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    const double per = ms * 1e3 / R;
    us.push_back(per);
    state.SetIterationTime(per * 1e-6);
  }
  BENCH_CUDA(cudaGetLastError());
  const double med = median(us);
  const double gbps = bytes_per_launch / (med * 1e-6) / 1e9;
  state.counters["us"] = med;
  state.counters["MB"] = bytes_per_launch / 1e6;
  state.counters["GBps"] = gbps;
  state.counters["pct_copy"] = 100.0 * gbps / copy_gbps();
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(st);
}

// ---- Copy bandwidth ----
void BM_CopyD2D(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) << 20;
  Dev a(n), b(n);
  if (!a.p || !b.p) return state.SkipWithError("cudaMalloc");
  fill_bf16(a, 2);
  time_graph(state, 4, 2.0 * n, [&](int, cudaStream_t s) {
    return cudaMemcpyAsync(b.p, a.p, n, cudaMemcpyDeviceToDevice, s);
  });
}
BENCHMARK(BM_CopyD2D)
    ->Arg(1024)
    ->Arg(64)
    ->UseManualTime()
    ->Iterations(kIters)
    ->Unit(benchmark::kMicrosecond);

// ---- GEMV ----
// Args: n, k, m, rows_per_warp, warps_per_block, split_k (0 = the default).
void BM_Gemv(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  const int m = static_cast<int>(state.range(2));
  const GemvTuning tune{static_cast<int>(state.range(3)), static_cast<int>(state.range(4)),
                        static_cast<int>(state.range(5))};
  const size_t wbytes = static_cast<size_t>(n) * k * 2;
  const int C = copies_for(wbytes);
  Dev w(wbytes * C), x(static_cast<size_t>(m) * k * 2 * C), y(static_cast<size_t>(m) * n * 4);
  if (!w.p || !x.p || !y.p) return state.SkipWithError("cudaMalloc");
  fill_bf16(w, 3), fill_bf16(x, 4);
  const int R = std::max(16, C);
  const double bytes = wbytes + m * k * 2.0 + m * n * 4.0;
  time_graph(state, R, bytes, [&](int i, cudaStream_t s) {
    const int c = i % C;
    return gemv(x.as<uint16_t>() + static_cast<size_t>(c) * m * k, k,
                gemv_weights(w.as<uint16_t>() + static_cast<size_t>(c) * n * k, n), k, y.p, n, m, k,
                GemvEpilogue::kStoreF32, s, &tune);
  });
}
// cuBLAS on the same shapes (GemmEx, BF16 in, FP32 out, FP32 compute), as PERF.md B5's baseline.
void BM_CublasGemv(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  const int m = static_cast<int>(state.range(2));
  const size_t wbytes = static_cast<size_t>(n) * k * 2;
  const int C = copies_for(wbytes);
  Dev w(wbytes * C), x(static_cast<size_t>(m) * k * 2 * C), y(static_cast<size_t>(m) * n * 4);
  Dev ws(32 << 20);
  if (!w.p || !x.p || !y.p || !ws.p) return state.SkipWithError("cudaMalloc");
  fill_bf16(w, 3), fill_bf16(x, 4);
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return state.SkipWithError("cublasCreate");
  cublasSetWorkspace(h, ws.p, ws.bytes);
  const float one = 1.f, zero = 0.f;
  const int R = std::max(16, C);
  time_graph(state, R, wbytes + m * k * 2.0 + m * n * 4.0, [&](int i, cudaStream_t s) {
    const int c = i % C;
    cublasSetStream(h, s);
    // y[m, n] (column-major n × m) = Wᵀ[n, k] · x[k, m]: W row-major [n, k] is column-major [k, n].
    const cublasStatus_t st = cublasGemmEx(
        h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), m, static_cast<int>(k), &one,
        w.as<uint16_t>() + static_cast<size_t>(c) * n * k, CUDA_R_16BF, static_cast<int>(k),
        x.as<uint16_t>() + static_cast<size_t>(c) * m * k, CUDA_R_16BF, static_cast<int>(k), &zero,
        y.p, CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return st == CUBLAS_STATUS_SUCCESS ? cudaSuccess : cudaErrorUnknown;
  });
  cublasDestroy(h);
}

const std::vector<std::pair<int64_t, int64_t>> kShapes = {
    {129280, 1280},  // lm_head
    {13696, 1280},   // dense layer-0 gate+up, fused
    {3840, 1280},    // q,k,v fused
    {1280, 1280},    // o_proj
    {1280, 6848},    // dense layer-0 down
    {1280, 896},     // expert down
};
void gemv_args(benchmark::internal::Benchmark* b) {
  for (auto [n, k] : kShapes)
    for (int m : {1, 2, 4, 8}) b->Args({n, k, m, 0, 0, 0});
  // m = 1 launch shapes (defaults: n >= 32768 -> R = 4, 8 warps; else R = 1, 4 warps).
  for (int r : {1, 2, 4}) b->Args({129280, 1280, 1, r, 8, 0});
  for (auto [n, k] : {std::pair<int64_t, int64_t>{13696, 1280}, {3840, 1280}, {1280, 1280}})
    for (int wp : {2, 8}) b->Args({n, k, 1, 1, wp, 0});
  // Split-K over warps (default: ceil(k / 1280)).
  for (auto [n, k] : {std::pair<int64_t, int64_t>{1280, 6848}, {1280, 1792}})
    for (int ks : {1, 2, 4, 8}) b->Args({n, k, 1, 0, 0, ks});
  for (int ks : {1, 2, 4, 8}) b->Args({1280, 1280, 8, 0, 0, ks});
  for (int ks : {2, 4, 8}) b->Args({129280, 1280, 8, 0, 0, ks});
}
void cublas_args(benchmark::internal::Benchmark* b) {
  for (auto [n, k] : kShapes)
    for (int m : {1, 8}) b->Args({n, k, m});
}
BENCHMARK(BM_Gemv)->Apply(gemv_args)->UseManualTime()->Iterations(kIters)->Unit(
    benchmark::kMicrosecond);
BENCHMARK(BM_CublasGemv)
    ->Apply(cublas_args)
    ->UseManualTime()
    ->Iterations(kIters)
    ->Unit(benchmark::kMicrosecond);

// Dense layer-0 gate+up with the SiLU·mul epilogue (two [6848, 1280] weights).
void BM_GemvSwiglu(benchmark::State& state) {
  const int64_t inter = 6848, k = 1280;
  const int m = static_cast<int>(state.range(0));
  const size_t wbytes = 2 * static_cast<size_t>(inter) * k * 2;
  const int C = copies_for(wbytes);
  Dev w(wbytes * C), x(static_cast<size_t>(m) * k * 2), a(static_cast<size_t>(m) * inter * 2);
  if (!w.p || !x.p || !a.p) return state.SkipWithError("cudaMalloc");
  fill_bf16(w, 5), fill_bf16(x, 6);
  time_graph(state, std::max(16, C), wbytes + m * (k + inter) * 2.0, [&](int i, cudaStream_t s) {
    const uint16_t* g = w.as<uint16_t>() + static_cast<size_t>(i % C) * 2 * inter * k;
    return gemv_swiglu(x.as<uint16_t>(), k, g, g + inter * k, k, a.as<uint16_t>(), inter, m, inter,
                       k, s);
  });
}
BENCHMARK(BM_GemvSwiglu)
    ->Arg(1)
    ->Arg(8)
    ->UseManualTime()
    ->Iterations(kIters)
    ->Unit(benchmark::kMicrosecond);

// ---- MoE ----
constexpr int kDim = 1280, kExperts = 64, kTopK = 6, kInter = 896, kShared = 1792;

void BM_MoeRouter(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  const size_t wbytes = static_cast<size_t>(kExperts) * kDim * 2;
  const int C = copies_for(wbytes);
  Dev w(wbytes * C), x(static_cast<size_t>(T) * kDim * 2), idx(T * kTopK * 4), tw(T * kTopK * 4);
  if (!w.p || !x.p || !idx.p || !tw.p) return state.SkipWithError("cudaMalloc");
  fill_bf16(w, 7), fill_bf16(x, 8);
  time_graph(state, std::max(16, C), wbytes + T * kDim * 2.0, [&](int i, cudaStream_t s) {
    return moe_router(x.as<uint16_t>(), kDim,
                      w.as<uint16_t>() + static_cast<size_t>(i % C) * kExperts * kDim, nullptr,
                      idx.as<int32_t>(), tw.as<float>(), T, kDim, kExperts, kTopK, 1.f, s);
  });
}
BENCHMARK(BM_MoeRouter)
    ->Arg(1)
    ->Arg(8)
    ->UseManualTime()
    ->Iterations(kIters)
    ->Unit(benchmark::kMicrosecond);

// moe_decode over one layer's 64 experts; R launches rotate over R routings (random, 6 distinct
// experts per token) and over shared-expert copies, so consecutive launches read other experts.
// Args: T, phase (0 = moe_decode, 1 = gate_up only, 2 = down only).
void BM_MoeDecode(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0)), phase = static_cast<int>(state.range(1));
  const size_t e_elems = static_cast<size_t>(kInter) * kDim,
               sh_elems = static_cast<size_t>(kShared) * kDim;
  const size_t sh_bytes = 3 * sh_elems * 2;
  const int R = 16, n_sh = copies_for(sh_bytes + 6 * 3 * e_elems * 2);
  Dev experts(3 * e_elems * 2 * kExperts), shared(sh_bytes * n_sh);
  Dev x(static_cast<size_t>(T) * kDim * 2), y(static_cast<size_t>(T) * kDim * 2);
  Dev idx(static_cast<size_t>(R) * T * kTopK * 4), tw(static_cast<size_t>(R) * T * kTopK * 4);
  Dev ws(moe_decode_workspace_bytes(T, kTopK, kInter, kShared));
  if (!experts.p || !shared.p || !x.p || !y.p || !idx.p || !tw.p || !ws.p)
    return state.SkipWithError("cudaMalloc");
  fill_bf16(experts, 9), fill_bf16(shared, 10), fill_bf16(x, 11), fill_bf16(y, 12);
  fill_bf16(ws, 22);  // the down phase alone reads activations nobody wrote
  double distinct_mean = 0;
  const std::vector<int32_t> hidx = random_topk(R, T, kExperts, kTopK, 13, &distinct_mean);
  std::vector<float> htw(hidx.size(), 0.1f);
  cudaMemcpy(idx.p, hidx.data(), hidx.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(tw.p, htw.data(), htw.size() * 4, cudaMemcpyHostToDevice);
  std::vector<MoeDeviceWeights> lw(n_sh);
  for (int c = 0; c < n_sh; ++c) {
    for (int e = 0; e < kExperts; ++e) {
      const uint16_t* b = experts.as<uint16_t>() + 3 * e_elems * e;
      lw[c].experts[e] = {b, b + e_elems, b + 2 * e_elems};
    }
    const uint16_t* s = shared.as<uint16_t>() + 3 * sh_elems * c;
    lw[c].shared = {s, s + sh_elems, s + 2 * sh_elems};
  }
  const double mats = phase == 0 ? 3 : phase == 1 ? 2 : 1;  // of gate, up, down
  const double bytes =
      mats * (distinct_mean * e_elems * 2 + sh_elems * 2) + T * kDim * 2.0 * 3;
  state.counters["experts"] = distinct_mean;
  time_graph(state, R, bytes, [&](int i, cudaStream_t s) {
    const int32_t* id = idx.as<int32_t>() + static_cast<size_t>(i) * T * kTopK;
    const float* w = tw.as<float>() + static_cast<size_t>(i) * T * kTopK;
    if (phase == 1)
      return moe_decode_gate_up(x.as<uint16_t>(), kDim, id, lw[i % n_sh], ws.p, T, kDim, kExperts,
                                kTopK, kInter, kShared, s);
    if (phase == 2)
      return moe_decode_down(id, w, lw[i % n_sh], y.p, kDim, GemvEpilogue::kAddBf16, ws.p, T, kDim,
                             kExperts, kTopK, kInter, kShared, s);
    return moe_decode(x.as<uint16_t>(), kDim, id, w, lw[i % n_sh], y.p, kDim,
                      GemvEpilogue::kAddBf16, ws.p, T, kDim, kExperts, kTopK, kInter, kShared, s);
  });
}
BENCHMARK(BM_MoeDecode)
    ->ArgsProduct({{1, 2, 4, 8}, {0}})
    ->ArgsProduct({{1, 8}, {1, 2}})
    ->UseManualTime()
    ->Iterations(kIters)
    ->Unit(benchmark::kMicrosecond);

// ---- Decode attention ----
// The runtime's page size; benchmarks lay the cache out contiguously (page i = rows 32i..32i+31).
constexpr int kPageSize = 32;
struct IdentityPages : Dev {
  explicit IdentityPages(int64_t max_tokens)
      : Dev(static_cast<size_t>((max_tokens + kPageSize - 1) / kPageSize) * 4) {
    std::vector<int32_t> t(bytes / 4);
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>(i);
    cudaMemcpy(p, t.data(), bytes, cudaMemcpyHostToDevice);
  }
};
// Args: kv_len, max_kv_len (the graph's bound).
void BM_DecodeAttn(benchmark::State& state) {
  const int64_t kv = state.range(0), max_kv = state.range(1);
  constexpr int kHeads = 10, kHd = 128;
  const size_t row = kHeads * kHd;
  const size_t cache_bytes = static_cast<size_t>(max_kv) * row * 2;
  // Copies of the whole cache (max_kv rows): enough to rotate the live bytes through > 3x L2, at
  // most 4 GB in all (tiny contexts then stay in L2: they are latency-bound anyway).
  const int C = static_cast<int>(std::min<size_t>(
      copies_for(2 * kv * row * 2), std::max<size_t>(2, (size_t{4} << 30) / (2 * cache_bytes))));
  Dev k(cache_bytes * C), v(cache_bytes * C), q(row * 2), out(row * 2), pos(4);
  Dev ws(decode_attention_workspace_bytes(kHeads, kHd, max_kv));
  if (!k.p || !v.p || !q.p || !out.p || !ws.p) return state.SkipWithError("cudaMalloc");
  if (decode_attention_workspace_init(ws.p, kHeads, kHd, max_kv, nullptr) != cudaSuccess)
    return state.SkipWithError("decode_attention_workspace_init");
  fill_bf16(k, 14), fill_bf16(v, 15), fill_bf16(q, 16);
  const int32_t p = static_cast<int32_t>(kv - 1);
  cudaMemcpy(pos.p, &p, 4, cudaMemcpyHostToDevice);
  const IdentityPages table(max_kv);
  time_graph(state, std::max(16, C), 2.0 * kv * row * 2, [&](int i, cudaStream_t s) {
    const size_t off = static_cast<size_t>(i % C) * max_kv * row;
    PagedKv cache;
    cache.k = k.as<uint16_t>() + off, cache.v = v.as<uint16_t>() + off;
    cache.page_table = table.as<int32_t>(), cache.page_size = kPageSize;
    cache.n_pages = (max_kv + kPageSize - 1) / kPageSize;
    return decode_attention(q.as<uint16_t>(), cache, pos.as<int32_t>(), out.as<uint16_t>(), ws.p,
                            max_kv, kHeads, kHd, 0.08838834764f, s);
  });
}
BENCHMARK(BM_DecodeAttn)
    ->Args({1, 8192})
    ->Args({912, 912})
    ->Args({912, 8192})
    ->Args({912, 32768})
    ->Args({2048, 2048})
    ->Args({4096, 4096})
    ->Args({8192, 8192})
    ->Args({16384, 16384})
    ->Args({32768, 32768})
    ->UseManualTime()
    ->Iterations(kIters)
    ->Unit(benchmark::kMicrosecond);

// ---- Small per-token kernels (launch-bound) ----
void BM_AddRmsNorm(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  Dev h(T * kDim * 2), d(T * kDim * 2), w(kDim * 2), y(T * kDim * 2);
  fill_bf16(h, 17), fill_bf16(d, 18), fill_bf16(w, 19);
  time_graph(state, 32, T * kDim * 2.0 * 4, [&](int, cudaStream_t s) {
    return add_rmsnorm(h.as<uint16_t>(), kDim, d.as<uint16_t>(), kDim, w.as<uint16_t>(),
                       y.as<uint16_t>(), kDim, T, kDim, 1e-6f, s);
  });
}
BENCHMARK(BM_AddRmsNorm)
    ->Arg(1)
    ->Arg(8)
    ->UseManualTime()
    ->Iterations(kIters)
    ->Unit(benchmark::kMicrosecond);

void BM_RopeAppend(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  const int64_t max_tokens = 8192, row = 1280;
  Dev qkv(T * 3 * row * 2), qo(T * row * 2), kc(max_tokens * row * 2), vc(max_tokens * row * 2),
      pos(T * 4);
  fill_bf16(qkv, 20);
  std::vector<int32_t> hp(T);
  for (int t = 0; t < T; ++t) hp[t] = 900 + t;
  cudaMemcpy(pos.p, hp.data(), T * 4, cudaMemcpyHostToDevice);
  const IdentityPages table(max_tokens);
  time_graph(state, 32, T * row * 2.0 * 6, [&](int, cudaStream_t s) {
    const uint16_t* b = qkv.as<uint16_t>();
    PagedKv cache;
    cache.k = kc.as<uint16_t>(), cache.v = vc.as<uint16_t>();
    cache.page_table = table.as<int32_t>(), cache.page_size = kPageSize;
    cache.n_pages = max_tokens / kPageSize;
    return rope_qk_append_kv(b, b + row, b + 2 * row, 3 * row, pos.as<int32_t>(), qo.as<uint16_t>(),
                             row, cache, max_tokens, T, 10, 128, 10000.f, s);
  });
}
BENCHMARK(BM_RopeAppend)
    ->Arg(1)
    ->Arg(8)
    ->UseManualTime()
    ->Iterations(kIters)
    ->Unit(benchmark::kMicrosecond);

void BM_ArgmaxBanned(benchmark::State& state) {
  const int64_t n = 129280;
  Dev l(n * 4), ban(64 * 4), nb(4), out(4), ws(argmax_workspace_bytes(n));
  fill_f32_kernel<<<256, 256>>>(l.as<float>(), n, 21);
  std::vector<int32_t> hb(64);
  for (int i = 0; i < 64; ++i) hb[i] = i * 2011;
  const int32_t cnt = 20;
  cudaMemcpy(ban.p, hb.data(), 64 * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(nb.p, &cnt, 4, cudaMemcpyHostToDevice);
  time_graph(state, 32, n * 4.0, [&](int, cudaStream_t s) {
    return argmax_banned(l.as<float>(), n, ban.as<int32_t>(), nb.as<int32_t>(), out.as<int32_t>(),
                         ws.p, s);
  });
}
BENCHMARK(BM_ArgmaxBanned)->UseManualTime()->Iterations(kIters)->Unit(benchmark::kMicrosecond);

}  // namespace
