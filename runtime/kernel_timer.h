// Timing kernels the way METHOD.md asks (used by dsocr-bench): launches captured in a CUDA graph
// with the inputs rotated between copies whose total exceeds the L2 cache, warm-up replays, CUDA
// events, the median and spread of many samples; and the machine's own ceilings measured in the
// same process (device-to-device copy bandwidth, a large cuBLASLt BF16 GEMM).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "loader/status.h"

namespace dsocr {

struct KernelTiming {
  double median_us = 0, p10_us = 0, p90_us = 0;  // per launch
  int samples = 0;
};

// Captures launch(i, stream) for i = 0 .. per_graph-1 into one graph (rotate the inputs by i),
// replays it `warmup` times, then `samples` times between two events; per-launch figures.
// A launch error (or an error of the kernels) fails with its name.
Expected<KernelTiming> time_kernel(const std::function<cudaError_t(int, cudaStream_t)>& launch,
                                   int per_graph = 16, int samples = 25, int warmup = 3);

// Bytes of L2 on device 0.
uint64_t l2_cache_bytes();
// How many copies of a working set of `bytes` make the rotation exceed 3x L2 (at least 1, at
// most max_copies).
int rotation_copies(uint64_t bytes, int max_copies = 64);

// Device-to-device copy of 1 GiB, read + write bytes per second (GB/s), median of 10.
Expected<double> measure_copy_gbps();
// Host-to-device copy from pinned memory (what an offload plan's expert-cache refills and host
// reads ride on): `bytes` (256 MiB) per copy, GB/s of the median of `samples` after one warm-up.
Expected<double> measure_h2d_gbps(uint64_t bytes = uint64_t{256} << 20, int samples = 7);
// A cuBLASLt BF16 GEMM of n x n x n (FP32 accumulation), TFLOP/s, median of 10.
Expected<double> measure_gemm_tflops(int n = 8192);

// Benchmark routing: `sets` draws of T tokens, each with top_k distinct experts of n_experts
// (uniformly random, std::mt19937(seed)), [sets, T, top_k] flattened; *mean_distinct (if not
// null): the mean number of distinct experts per set, i.e. the expert matrices one MoE launch over
// the T tokens reads.
std::vector<int32_t> random_topk(int sets, int T, int n_experts, int top_k, uint32_t seed,
                                 double* mean_distinct);

// Device buffer filled with a fixed pseudo-random BF16 pattern in [-1, 1) (no NaN/Inf, no zeros);
// freed by the destructor.
class BenchBuffer {
 public:
  explicit BenchBuffer(uint64_t bytes, uint32_t seed = 1);
  ~BenchBuffer();
  BenchBuffer(const BenchBuffer&) = delete;
  BenchBuffer& operator=(const BenchBuffer&) = delete;
  bool ok() const { return p_ != nullptr; }
  template <typename T>
  T* as(uint64_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(p_) + byte_offset);
  }
  uint64_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  uint64_t bytes_ = 0;
};

}  // namespace dsocr
