#include "runtime/kernel_timer.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>

#include "kernels/gemm.h"
#include "loader/bf16.h"
#include "runtime/cuda_check.h"
#include "runtime/planner.h"

namespace dsocr {
namespace {

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1) + 0.5)];
}

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  Events() { cudaEventCreate(&a), cudaEventCreate(&b); }
  ~Events() { cudaEventDestroy(a), cudaEventDestroy(b); }
  float ms() const {
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    return t;
  }
};

}  // namespace

Expected<KernelTiming> time_kernel(const std::function<cudaError_t(int, cudaStream_t)>& launch,
                                   int per_graph, int samples, int warmup) {
  // Inputs uploaded with plain cudaMemcpy (legacy stream, possibly still in DMA) land first.
  DSOCR_CUDA_TRY(cudaDeviceSynchronize());
  cudaStream_t st = nullptr;
  DSOCR_CUDA_TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  auto cleanup = [&]() {
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    cudaStreamDestroy(st);
  };
  cudaError_t e = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
  for (int i = 0; i < per_graph && e == cudaSuccess; ++i) e = launch(i, st);
  const cudaError_t end = cudaStreamEndCapture(st, &g);
  if (e == cudaSuccess) e = end;
  if (e == cudaSuccess) e = cudaGraphInstantiate(&ge, g, 0);
  if (e != cudaSuccess) {
    cleanup();
    return Status::Error(std::string("kernel launch: ") + cudaGetErrorName(e) + " (" +
                         cudaGetErrorString(e) + ")");
  }
  Events ev;
  for (int i = 0; i < warmup; ++i) cudaGraphLaunch(ge, st);
  std::vector<double> us;
  for (int s = 0; s < samples; ++s) {
    cudaEventRecord(ev.a, st);
    cudaGraphLaunch(ge, st);
    cudaEventRecord(ev.b, st);
    cudaEventSynchronize(ev.b);
    us.push_back(ev.ms() * 1e3 / per_graph);
  }
  e = cudaStreamSynchronize(st);
  if (e == cudaSuccess) e = cudaGetLastError();
  cleanup();
  if (e != cudaSuccess)
    return Status::Error(std::string("kernel run: ") + cudaGetErrorName(e) + " (" +
                         cudaGetErrorString(e) + ")");
  KernelTiming t;
  t.median_us = quantile(us, 0.5), t.p10_us = quantile(us, 0.1), t.p90_us = quantile(us, 0.9);
  t.samples = samples;
  return t;
}

uint64_t l2_cache_bytes() {
  int l2 = 0;
  cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0);
  return static_cast<uint64_t>(l2 > 0 ? l2 : 50 << 20);
}

int rotation_copies(uint64_t bytes, int max_copies) {
  if (bytes == 0) return 1;
  const uint64_t need = 3 * l2_cache_bytes() / bytes + 1;
  return static_cast<int>(std::clamp<uint64_t>(need, 1, static_cast<uint64_t>(max_copies)));
}

Expected<double> measure_copy_gbps() {
  const uint64_t bytes = uint64_t{1} << 30;
  BenchBuffer a(bytes, 1), b(bytes, 2);
  if (!a.ok() || !b.ok()) return Status::Error("copy bandwidth: cannot allocate 2 GiB on the GPU");
  Events ev;
  std::vector<double> ms;
  for (int i = 0; i < 13; ++i) {
    cudaEventRecord(ev.a);
    cudaMemcpyAsync(i % 2 ? a.as<void>() : b.as<void>(), i % 2 ? b.as<void>() : a.as<void>(),
                    bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(ev.b);
    cudaEventSynchronize(ev.b);
    if (i >= 3) ms.push_back(ev.ms());
  }
  DSOCR_CUDA_TRY(cudaGetLastError());
  return 2.0 * static_cast<double>(bytes) / (quantile(ms, 0.5) * 1e-3) * 1e-9;
}

Expected<double> measure_h2d_gbps(uint64_t bytes, int samples) {
  void* host = nullptr;
  if (cudaHostAlloc(&host, bytes, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();
    return Status::Error("host-to-device bandwidth: cannot allocate " + format_bytes(bytes) +
                         " of pinned host memory");
  }
  const std::unique_ptr<void, cudaError_t (*)(void*)> keep(host, cudaFreeHost);
  std::memset(host, 0x3c, bytes);  // touched: no first-use cost in the timing
  BenchBuffer dst(bytes, 1);
  if (!dst.ok())
    return Status::Error("host-to-device bandwidth: cannot allocate " + format_bytes(bytes) +
                         " on the GPU");
  Events ev;
  std::vector<double> ms;
  for (int i = 0; i <= samples; ++i) {  // i = 0: warm-up
    cudaEventRecord(ev.a);
    cudaMemcpyAsync(dst.as<void>(), host, bytes, cudaMemcpyHostToDevice);
    cudaEventRecord(ev.b);
    cudaEventSynchronize(ev.b);
    if (i > 0) ms.push_back(ev.ms());
  }
  DSOCR_CUDA_TRY(cudaGetLastError());
  return static_cast<double>(bytes) / (quantile(ms, 0.5) * 1e-3) * 1e-9;
}

Expected<double> measure_gemm_tflops(int n) {
  const uint64_t sz = static_cast<uint64_t>(n) * n * 2;
  BenchBuffer a(sz, 3), w(sz, 4), out(sz, 5), ws(GemmRunner::kWorkspaceBytes, 6);
  if (!a.ok() || !w.ok() || !out.ok() || !ws.ok())
    return Status::Error("GEMM peak: cannot allocate the operands on the GPU");
  GemmRunner gemm;
  DSOCR_CUDA_TRY(gemm.init(ws.as<void>(), GemmRunner::kWorkspaceBytes));
  GemmArgs g;
  g.m = g.n = g.k = n;
  g.a = a.as<uint16_t>(), g.lda = n, g.w = w.as<uint16_t>(), g.ldw = n;
  g.out = out.as<uint16_t>(), g.ldo = n;
  cublasStatus_t bad = CUBLAS_STATUS_SUCCESS;
  auto t = time_kernel(
      [&](int, cudaStream_t s) {
        const cublasStatus_t r = gemm.run(g, s);
        if (r != CUBLAS_STATUS_SUCCESS) bad = r;
        return r == CUBLAS_STATUS_SUCCESS ? cudaSuccess : cudaErrorUnknown;
      },
      2, 10, 2);
  DSOCR_CUDA_TRY(bad);
  if (!t.ok()) return t.status();
  return 2.0 * n * n * static_cast<double>(n) / (t->median_us * 1e-6) * 1e-12;
}

std::vector<int32_t> random_topk(int sets, int T, int n_experts, int top_k, uint32_t seed,
                                 double* mean_distinct) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(sets) * T * top_k);
  double distinct = 0;
  for (int r = 0; r < sets; ++r) {
    std::vector<bool> used(n_experts, false);
    for (int t = 0; t < T; ++t) {
      std::vector<int> perm(n_experts);
      for (int e = 0; e < n_experts; ++e) perm[e] = e;
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int k = 0; k < top_k; ++k) {
        ids[(static_cast<size_t>(r) * T + t) * top_k + k] = perm[k];
        used[perm[k]] = true;
      }
    }
    distinct += std::count(used.begin(), used.end(), true);
  }
  if (mean_distinct) *mean_distinct = distinct / sets;
  return ids;
}

BenchBuffer::BenchBuffer(uint64_t bytes, uint32_t seed) : bytes_(bytes) {
  if (cudaMalloc(&p_, bytes ? bytes : 16) != cudaSuccess) {
    p_ = nullptr;
    return;
  }
  // A 1 MiB random BF16 tile, copied over the buffer.
  const uint64_t tile = std::min<uint64_t>(bytes, uint64_t{1} << 20);
  std::vector<uint16_t> h((tile + 1) / 2);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& v : h) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    const float f = (static_cast<float>(x >> 8) / 8388608.f) * 2.f - 1.f;  // [-1, 1)
    v = f32_to_bf16(f == 0.f ? 0.5f : f);
  }
  for (uint64_t off = 0; off < bytes; off += tile)
    cudaMemcpy(static_cast<uint8_t*>(p_) + off, h.data(), std::min(tile, bytes - off),
               cudaMemcpyHostToDevice);
}

BenchBuffer::~BenchBuffer() {
  if (p_) cudaFree(p_);
}

}  // namespace dsocr
