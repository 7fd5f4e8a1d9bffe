// One row of the (residual add +) RMSNorm, as a device routine for 128 threads: the rmsnorm kernels
// (rmsnorm.cu, one row per block) and the decode router that fuses the norm before the MoE
// (moe_decode.cu) run the same code, so the fused path rounds exactly as the separate one.
// Internal to kernels/*.cu.
#pragma once

#include "kernels/cuda_vec.cuh"

namespace dsocr::cuda {

constexpr int kNormThreads = 128;
constexpr int kNormMaxChunks = 4;  // 8-value chunks per thread: dim <= 128 × 4 × 8 = 4096

template <typename T>
__device__ __forceinline__ void norm_load8(const T* p, float (&f)[8]);
template <>
__device__ __forceinline__ void norm_load8<uint16_t>(const uint16_t* p, float (&f)[8]) {
  unpack8(*reinterpret_cast<const uint4*>(p), f);
}
template <>
__device__ __forceinline__ void norm_load8<float>(const float* p, float (&f)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
__device__ __forceinline__ void norm_store8(float* p, const float (&f)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}
__device__ __forceinline__ void norm_store8(uint16_t* p, const float (&f)[8]) {
  *reinterpret_cast<uint4*>(p) = pack8(f);
}

// The residual row x (BF16 or FP32). kAdd: x = x + delta, rounded to x's type and written back.
// widened (optional): an FP32 copy of the row as read (the FP32 residual stream's start).
// Then y = w · bf16(x · rsqrt(mean(x²) + eps)) (HF: normalise in FP32, round, scale in BF16).
// Run by threads 0..127 of a block (tid = threadIdx.x), and only by them: the statistics use
// named barrier 1 for 128 threads, so other warps of the block may do other work meanwhile.
// s_part: 4 floats of shared memory. Every thread's chunks, the order of the sum of squares
// (per thread, then warp shuffles, then the 4 warps in order) are fixed: deterministic.
template <typename HT, bool kAdd, typename DT>
__device__ __forceinline__ void rmsnorm_row(HT* xr, const DT* __restrict__ dr,
                                            float* __restrict__ widened,
                                            const uint16_t* __restrict__ w, uint16_t* yr, int dim,
                                            float eps, float* s_part, int tid) {
  const int nc = dim / 8;
  float v[kNormMaxChunks][8];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kNormMaxChunks; ++j) {
    const int c = tid + j * kNormThreads;
    if (c >= nc) break;
    norm_load8<HT>(xr + 8 * c, v[j]);
    if constexpr (kAdd) {
      float d[8];
      norm_load8<DT>(dr + 8 * c, d);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        v[j][e] += d[e];
        if constexpr (sizeof(HT) == 2) v[j][e] = bf16_to_f32(f32_to_bf16(v[j][e]));
      }
      norm_store8(xr + 8 * c, v[j]);
    }
    if (widened) norm_store8(widened + 8 * c, v[j]);
#pragma unroll
    for (int e = 0; e < 8; ++e) ss = fmaf(v[j][e], v[j][e], ss);
  }
  ss = warp_sum(ss);
  if (tid % kWarp == 0) s_part[tid / kWarp] = ss;
  asm volatile("bar.sync 1, %0;" ::"n"(kNormThreads) : "memory");
  float tot = 0.f;
#pragma unroll
  for (int i = 0; i < kNormThreads / kWarp; ++i) tot += s_part[i];  // same order in every thread
  const float r = 1.f / sqrtf(tot / static_cast<float>(dim) + eps);
#pragma unroll
  for (int j = 0; j < kNormMaxChunks; ++j) {
    const int c = tid + j * kNormThreads;
    if (c >= nc) break;
    float wf[8], o[8];
    unpack8(__ldg(reinterpret_cast<const uint4*>(w + 8 * c)), wf);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = wf[e] * bf16_to_f32(f32_to_bf16(v[j][e] * r));
    *reinterpret_cast<uint4*>(yr + 8 * c) = pack8(o);
  }
}

}  // namespace dsocr::cuda
