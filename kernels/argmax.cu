// Ban mask + argmax over the vocabulary (contract in argmax.h). 129280 FP32 logits = 517 KB: a
// latency-bound pair of launches (~2 × 2 µs); pass 1 has one block per 2048 logits (64 blocks,
// two 16-byte loads per thread), pass 2 one block over the 64 candidates.
#include <cmath>

#include "kernels/argmax.h"
#include "kernels/cuda_vec.cuh"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kThreads = 256;
constexpr int64_t kSpan = 2048;  // logits per pass-1 block (multiple of 4)
constexpr int kMaxBlocks = 4096;

struct Cand {
  float v;
  int32_t i;
};

// argmax_ref's order: NaN above everything (first NaN wins), then value, then lower index.
__device__ __forceinline__ bool better(float a, int32_t ia, float b, int32_t ib) {
  const bool an = isnan(a), bn = isnan(b);
  if (an != bn) return an;
  if (!an && a != b) return a > b;
  return ia < ib;
}

__device__ __forceinline__ void take(Cand& c, float v, int32_t i) {
  if (better(v, i, c.v, c.i)) c = {v, i};
}

// Block-wide best candidate; valid in thread 0.
__device__ Cand block_best(Cand c) {
  __shared__ Cand s[kThreads / kWarp];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, c.v, o);
    const int32_t i = __shfl_xor_sync(0xffffffffu, c.i, o);
    take(c, v, i);
  }
  if (threadIdx.x % kWarp == 0) s[threadIdx.x / kWarp] = c;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int w = 1; w < kThreads / kWarp; ++w) take(c, s[w].v, s[w].i);
  return c;
}

__global__ void __launch_bounds__(kThreads)
    argmax_pass1_kernel(float* logits,  // [n]
                        int64_t n, int64_t span, const int32_t* __restrict__ banned,
                        const int32_t* __restrict__ n_banned, Cand* __restrict__ part) {
  const int64_t lo = blockIdx.x * span, hi = lo + span < n ? lo + span : n;
  cuda::pdl_enter();
  // 1. The ban, for the ids this block owns (written before any thread of the block reads them).
  const int nb = n_banned ? *n_banned : 0;
  for (int b = threadIdx.x; b < nb; b += kThreads) {
    const int64_t id = banned[b];
    if (id >= lo && id < hi) logits[id] = -INFINITY;
  }
  __syncthreads();
  // 2. Candidates (plain loads: the ban above went through this block's own stores).
  Cand c{-INFINITY, INT32_MAX};
  for (int64_t i = lo + 4 * threadIdx.x; i < hi; i += 4 * kThreads) {
    if (i + 4 <= hi) {
      const float4 v = *reinterpret_cast<const float4*>(logits + i);
      take(c, v.x, static_cast<int32_t>(i));
      take(c, v.y, static_cast<int32_t>(i + 1));
      take(c, v.z, static_cast<int32_t>(i + 2));
      take(c, v.w, static_cast<int32_t>(i + 3));
    } else {
      for (int64_t j = i; j < hi; ++j) take(c, logits[j], static_cast<int32_t>(j));
    }
  }
  c = block_best(c);
  if (threadIdx.x == 0) part[blockIdx.x] = c;
}

__global__ void __launch_bounds__(kThreads)
    argmax_pass2_kernel(const Cand* __restrict__ part, int n_part, int32_t* __restrict__ out) {
  cuda::pdl_enter();
  Cand c{-INFINITY, INT32_MAX};
  for (int b = threadIdx.x; b < n_part; b += kThreads) take(c, part[b].v, part[b].i);
  c = block_best(c);
  if (threadIdx.x == 0) *out = c.i;
}

// Pass-1 layout: blocks of kSpan logits, or wider spans (multiple of 4) past kMaxBlocks.
void layout(int64_t n, int64_t* span, int* blocks) {
  int64_t s = kSpan;
  if ((n + s - 1) / s > kMaxBlocks) s = ((n + kMaxBlocks - 1) / kMaxBlocks + 3) / 4 * 4;
  *span = s;
  *blocks = static_cast<int>((n + s - 1) / s);
}

}  // namespace

size_t argmax_workspace_bytes(int64_t n) {
  int64_t span;
  int blocks;
  layout(n < 1 ? 1 : n, &span, &blocks);
  return sizeof(Cand) * static_cast<size_t>(blocks);
}

cudaError_t argmax_banned(float* logits, int64_t n, const int32_t* banned, const int32_t* n_banned,
                          int32_t* out, void* workspace, cudaStream_t stream) {
  if (n < 1 || n >= INT32_MAX || !logits || reinterpret_cast<uintptr_t>(logits) % 16 || !out ||
      !workspace || (n_banned && !banned))
    return cudaErrorInvalidValue;
  int64_t span;
  int blocks;
  layout(n, &span, &blocks);
  auto* part = static_cast<Cand*>(workspace);
  const cudaError_t e = cuda::launch(argmax_pass1_kernel, blocks, kThreads, 0, stream, logits, n,
                                     span, banned, n_banned, part);
  if (e != cudaSuccess) return e;
  return cuda::launch(argmax_pass2_kernel, 1, kThreads, 0, stream, part, blocks, out);
}

}  // namespace dsocr
