// Shared by the MoE GPU tests (moe_decode_test, moe_prefill_test): one MoE layer's random BF16
// weights, on the host and on the device, bound as MlpWeights / MoeDeviceWeights.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "gpu/decoder_test_util.h"
#include "kernels/moe.h"

namespace dsocr::test {

struct Shape {
  int dim, n_experts, top_k, moe_inter, shared_inter;
};
constexpr Shape kModel{1280, 64, 6, 896, 1792};

// All weights of one MoE layer, host and device, in one allocation each.
struct Layer {
  Shape s;
  std::vector<uint16_t> host;  // router | experts (gate, up, down each) | shared (gate, up, down)
  std::unique_ptr<DevBuf<uint16_t>> dev;
  std::vector<MlpWeights> experts_h;
  MlpWeights shared_h;
  MoeDeviceWeights dw{};
  const uint16_t* router_h = nullptr;
  const uint16_t* router_d = nullptr;

  Layer(const Shape& sh, uint64_t seed, float wr = 0.05f) : s(sh) {
    const size_t e_sz = static_cast<size_t>(s.moe_inter) * s.dim,
                 sh_sz = static_cast<size_t>(s.shared_inter) * s.dim;
    const size_t router = static_cast<size_t>(s.n_experts) * s.dim;
    const size_t total = router + 3 * e_sz * s.n_experts + 3 * sh_sz;
    Rng rng(seed);
    host = random_bf16(rng, total, -wr, wr);
    dev = std::make_unique<DevBuf<uint16_t>>(host);
    const uint16_t* hb = host.data();
    const uint16_t* db = dev->get();
    router_h = hb, router_d = db;
    size_t off = router;
    experts_h.resize(s.n_experts);
    for (int e = 0; e < s.n_experts; ++e) {
      experts_h[e] = {hb + off, hb + off + e_sz, hb + off + 2 * e_sz};
      dw.experts[e] = {db + off, db + off + e_sz, db + off + 2 * e_sz};
      off += 3 * e_sz;
    }
    shared_h = {hb + off, hb + off + sh_sz, hb + off + 2 * sh_sz};
    dw.shared = {db + off, db + off + sh_sz, db + off + 2 * sh_sz};
  }
};

// Median µs per call of `run` (a launch on the default stream): 10 warm-up calls, then 20 samples
// of 5 back-to-back calls timed with CUDA events (host launch latency hidden). Negative when a
// launch or event call fails. Timing only: the tests print it, they never assert on it.
inline double median_call_us(const std::function<cudaError_t()>& run) {
  for (int i = 0; i < 10; ++i)
    if (run() != cudaSuccess) return -1;
  if (cudaDeviceSynchronize() != cudaSuccess) return -1;
  cudaEvent_t a, b;
  if (cudaEventCreate(&a) != cudaSuccess || cudaEventCreate(&b) != cudaSuccess) return -1;
  constexpr int kBatch = 5;
  std::vector<float> ms;
  bool ok = true;
  for (int i = 0; i < 20 && ok; ++i) {
    ok = cudaEventRecord(a) == cudaSuccess;
    for (int j = 0; j < kBatch && ok; ++j) ok = run() == cudaSuccess;
    float t = 0;
    ok = ok && cudaEventRecord(b) == cudaSuccess && cudaEventSynchronize(b) == cudaSuccess &&
         cudaEventElapsedTime(&t, a, b) == cudaSuccess;
    ms.push_back(t / kBatch);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  if (!ok) return -1;
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2] * 1e3;
}

}  // namespace dsocr::test
