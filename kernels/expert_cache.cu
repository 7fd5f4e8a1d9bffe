// Router-choice histogram (contract in expert_cache.h). A decode step counts 6 ids per MoE layer
// and a prefill chunk at most 1,128 x 6: latency-bound single launches (~2 us), no tuning needed.
#include "kernels/expert_cache.h"

namespace dsocr {
namespace {

constexpr int kThreads = 256;
constexpr int kIdsPerThread = 4;
constexpr int kIdsPerBlock = kThreads * kIdsPerThread;

__global__ void __launch_bounds__(kThreads)
    expert_count_kernel(const int32_t* __restrict__ ids, int64_t n, int n_experts,
                        int32_t* __restrict__ counts) {
  __shared__ int32_t hist[kExpertCountMaxExperts];
  for (int e = threadIdx.x; e < n_experts; e += kThreads) hist[e] = 0;
  __syncthreads();
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kIdsPerBlock;
#pragma unroll
  for (int k = 0; k < kIdsPerThread; ++k) {
    const int64_t i = base + k * kThreads + threadIdx.x;
    if (i < n) {
      const int32_t e = ids[i];
      if (e >= 0 && e < n_experts) atomicAdd(&hist[e], 1);
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < n_experts; e += kThreads)
    if (hist[e] != 0) atomicAdd(&counts[e], hist[e]);
}

}  // namespace

cudaError_t expert_count(const int32_t* ids, int64_t n, int n_experts, int32_t* counts,
                         cudaStream_t stream) {
  if (n < 0 || n >= (int64_t{1} << 31) || n_experts < 1 || n_experts > kExpertCountMaxExperts ||
      !counts || (n > 0 && !ids))
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>((n + kIdsPerBlock - 1) / kIdsPerBlock);
  expert_count_kernel<<<blocks, kThreads, 0, stream>>>(ids, n, n_experts, counts);
  return cudaGetLastError();
}

}  // namespace dsocr
