// Fused residual add + RMSNorm on BF16 rows (contract in rmsnorm.h; CPU reference rmsnorm_ref.cpp).
// Bandwidth: a 1280-wide row is 2.5 KB in, 2.5 KB (+2.5 KB with the add) out: at decode this is a
// latency-bound launch (~2 µs), so the whole row lives in registers (one read, one write) and the
// statistics need a single block reduction.
#include "kernels/cuda_vec.cuh"
#include "kernels/rmsnorm.h"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kThreads = 128;
constexpr int kMaxChunks = 4;  // 8-value chunks per thread: dim <= 128 × 4 × 8 = 4096

// 8 values from a BF16 or FP32 row; 8 values to an FP32 row.
template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&f)[8]);
template <>
__device__ __forceinline__ void load8<uint16_t>(const uint16_t* p, float (&f)[8]) {
  cuda::unpack8(*reinterpret_cast<const uint4*>(p), f);
}
template <>
__device__ __forceinline__ void load8<float>(const float* p, float (&f)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
__device__ __forceinline__ void store8(float* p, const float (&f)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}
__device__ __forceinline__ void store8(uint16_t* p, const float (&f)[8]) {
  *reinterpret_cast<uint4*>(p) = cuda::pack8(f);
}

// The residual row x (BF16 or FP32). kAdd: x = x + delta, rounded to x's type and written back.
// widened (optional): an FP32 copy of the row as read (the FP32 residual stream's start).
// Then y = w · bf16(x · rsqrt(mean(x²) + eps)) (HF: normalise in FP32, round, scale in BF16).
template <typename HT, bool kAdd, typename DT>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_kernel(HT* x,  // [T, ldx]
                   int64_t ldx,
                   const DT* __restrict__ delta,  // [T, ld_delta] (kAdd)
                   int64_t ld_delta,
                   float* __restrict__ widened,  // [T, ld_wide] or null
                   int64_t ld_wide,
                   const uint16_t* __restrict__ w,  // [dim]
                   uint16_t* y,                     // [T, ldy]
                   int64_t ldy, int dim, float eps) {
  __shared__ float s_part[kThreads / kWarp];
  const int row = blockIdx.x, tid = threadIdx.x;
  const int nc = dim / 8;
  // The gain is a weight (launch.cuh: no earlier kernel writes it): loaded before the PDL wait,
  // its latency hides under the previous kernel's tail.
  uint4 wq[kMaxChunks];
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int c = tid + j * kThreads;
    if (c >= nc) break;
    wq[j] = __ldg(reinterpret_cast<const uint4*>(w + 8 * c));
  }
  cuda::pdl_enter();
  HT* xr = x + row * ldx;
  float v[kMaxChunks][8];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int c = tid + j * kThreads;
    if (c >= nc) break;
    load8<HT>(xr + 8 * c, v[j]);
    if constexpr (kAdd) {
      float d[8];
      load8<DT>(delta + row * ld_delta + 8 * c, d);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        v[j][e] += d[e];
        if constexpr (sizeof(HT) == 2) v[j][e] = cuda::bf16_to_f32(cuda::f32_to_bf16(v[j][e]));
      }
      store8(xr + 8 * c, v[j]);
    }
    if (widened) store8(widened + row * ld_wide + 8 * c, v[j]);
#pragma unroll
    for (int e = 0; e < 8; ++e) ss = fmaf(v[j][e], v[j][e], ss);
  }
  ss = cuda::warp_sum(ss);
  if (tid % kWarp == 0) s_part[tid / kWarp] = ss;
  __syncthreads();
  float tot = 0.f;
#pragma unroll
  for (int i = 0; i < kThreads / kWarp; ++i) tot += s_part[i];  // same order in every thread
  const float r = 1.f / sqrtf(tot / static_cast<float>(dim) + eps);
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int c = tid + j * kThreads;
    if (c >= nc) break;
    float wf[8], o[8];
    cuda::unpack8(wq[j], wf);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = wf[e] * cuda::bf16_to_f32(cuda::f32_to_bf16(v[j][e] * r));
    *reinterpret_cast<uint4*>(y + row * ldy + 8 * c) = cuda::pack8(o);
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
bool bad_shape(const void* x, int64_t ldx, const void* w, const void* y, int64_t ldy, int T,
               int dim) {
  return T < 1 || dim < 8 || dim % 8 || dim > kThreads * kMaxChunks * 8 || ldx < dim || ldx % 8 ||
         ldy < dim || ldy % 8 || !aligned16(x) || !aligned16(w) || !aligned16(y);
}

template <typename HT, typename DT>
cudaError_t add_rmsnorm_any(HT* h, int64_t ldh, const DT* delta, int64_t ld_delta,
                            const uint16_t* w, uint16_t* y, int64_t ldy, int T, int dim, float eps,
                            cudaStream_t stream) {
  if (bad_shape(h, ldh, w, y, ldy, T, dim) || ld_delta < dim || ld_delta % 8 || !aligned16(delta))
    return cudaErrorInvalidValue;
  return cuda::launch(rmsnorm_kernel<HT, true, DT>, T, kThreads, 0, stream, h, ldh, delta, ld_delta,
                      nullptr, int64_t{0}, w, y, ldy, dim, eps);
}

}  // namespace

cudaError_t rmsnorm(const uint16_t* x, int64_t ldx, const uint16_t* w, uint16_t* y, int64_t ldy,
                    int T, int dim, float eps, cudaStream_t stream) {
  if (bad_shape(x, ldx, w, y, ldy, T, dim)) return cudaErrorInvalidValue;
  // kAdd = false never writes x.
  return cuda::launch(rmsnorm_kernel<uint16_t, false, uint16_t>, T, kThreads, 0, stream,
                      const_cast<uint16_t*>(x), ldx, nullptr, int64_t{0}, nullptr, int64_t{0}, w,
                      y, ldy, dim, eps);
}

cudaError_t rmsnorm_widen(const uint16_t* x, int64_t ldx, float* h, int64_t ldh,
                          const uint16_t* w, uint16_t* y, int64_t ldy, int T, int dim, float eps,
                          cudaStream_t stream) {
  if (bad_shape(x, ldx, w, y, ldy, T, dim) || !h || ldh < dim || ldh % 8 || !aligned16(h))
    return cudaErrorInvalidValue;
  return cuda::launch(rmsnorm_kernel<uint16_t, false, uint16_t>, T, kThreads, 0, stream,
                      const_cast<uint16_t*>(x), ldx, nullptr, int64_t{0}, h, ldh, w, y, ldy, dim,
                      eps);
}

cudaError_t add_rmsnorm(uint16_t* h, int64_t ldh, const uint16_t* delta, int64_t ld_delta,
                        const uint16_t* w, uint16_t* y, int64_t ldy, int T, int dim, float eps,
                        cudaStream_t stream) {
  return add_rmsnorm_any(h, ldh, delta, ld_delta, w, y, ldy, T, dim, eps, stream);
}
cudaError_t add_rmsnorm(uint16_t* h, int64_t ldh, const float* delta, int64_t ld_delta,
                        const uint16_t* w, uint16_t* y, int64_t ldy, int T, int dim, float eps,
                        cudaStream_t stream) {
  return add_rmsnorm_any(h, ldh, delta, ld_delta, w, y, ldy, T, dim, eps, stream);
}
cudaError_t add_rmsnorm(float* h, int64_t ldh, const uint16_t* delta, int64_t ld_delta,
                        const uint16_t* w, uint16_t* y, int64_t ldy, int T, int dim, float eps,
                        cudaStream_t stream) {
  return add_rmsnorm_any(h, ldh, delta, ld_delta, w, y, ldy, T, dim, eps, stream);
}
cudaError_t add_rmsnorm(float* h, int64_t ldh, const float* delta, int64_t ld_delta,
                        const uint16_t* w, uint16_t* y, int64_t ldy, int T, int dim, float eps,
                        cudaStream_t stream) {
  return add_rmsnorm_any(h, ldh, delta, ld_delta, w, y, ldy, T, dim, eps, stream);
}

}  // namespace dsocr
