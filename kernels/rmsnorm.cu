// Fused residual add + RMSNorm on BF16 rows (contract in rmsnorm.h; CPU reference rmsnorm_ref.cpp).
// Bandwidth: a 1280-wide row is 2.5 KB in, 2.5 KB (+2.5 KB with the add) out: at decode this is a
// latency-bound launch (~2 µs), so the whole row lives in registers (one read, one write) and the
// statistics need a single block reduction.
#include "kernels/rmsnorm.cuh"
#include "kernels/rmsnorm.h"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kThreads = cuda::kNormThreads;
constexpr int kMaxChunks = cuda::kNormMaxChunks;

// One row per block: cuda::rmsnorm_row (rmsnorm.cuh).
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
  const int row = blockIdx.x;
  cuda::pdl_enter();
  cuda::rmsnorm_row<HT, kAdd, DT>(x + row * ldx, kAdd ? delta + row * ld_delta : nullptr,
                                  widened ? widened + row * ld_wide : nullptr, w, y + row * ldy,
                                  dim, eps, s_part, threadIdx.x);
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
