// LayerNorm on BF16 / FP32 rows (contract in layernorm.h; CPU reference layernorm_ref.cpp), with
// the residual add and SAM's window (un)partition fused in.
// Bandwidth-bound: a SAM row is 768 × 2 B in and out, a 1024² view has 4096 rows (6.3 MB each
// way, ~3 µs at 4 TB/s). One warp per row keeps the whole row in registers (≤ 4 chunks of 8 values
// per lane for dim ≤ 1024), so x is read once and the statistics need only warp shuffles.
#include "kernels/cuda_vec.cuh"
#include "kernels/layernorm.h"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kWarpsPerBlock = 4;
constexpr int kMaxChunks = 4;  // 8-value chunks per lane: dim <= 32 × 4 × 8 = 1024

// ---- 8-value loads and stores of BF16 or FP32 rows ----
__device__ __forceinline__ void load8(const uint16_t* p, float (&f)[8]) {
  cuda::unpack8(*reinterpret_cast<const uint4*>(p), f);
}
__device__ __forceinline__ void load8(const float* p, float (&f)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
__device__ __forceinline__ void store8(uint16_t* p, const float (&f)[8]) {
  *reinterpret_cast<uint4*>(p) = cuda::pack8(f);
}
__device__ __forceinline__ void store8(float* p, const float (&f)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}
// The value a store of type T keeps (BF16: rounded), so the norm reads what was stored.
__device__ __forceinline__ float stored(uint16_t*, float v) {
  return cuda::bf16_to_f32(cuda::f32_to_bf16(v));
}
__device__ __forceinline__ float stored(float*, float v) {
  return v;
}

// Rows of a [n, grid, grid, dim] token map vs. its zero-padded win × win windows
// ([n·nw·nw, win, win, dim], windows row-major per image; window_partition_ref).
enum class RowMap { kNone, kPartition, kUnpartition };
struct Windows {
  int grid = 0, win = 0, nw = 0;
};
// Windowed row -> token row, or -1 for a padded token.
__device__ __forceinline__ int64_t token_of_window_row(const Windows& g, int64_t r) {
  const int64_t per_win = int64_t{g.win} * g.win, per_img = per_win * g.nw * g.nw;
  const int64_t img = r / per_img, wi = (r % per_img) / per_win, t = r % per_win;
  const int y = static_cast<int>(wi / g.nw) * g.win + static_cast<int>(t / g.win);
  const int x = static_cast<int>(wi % g.nw) * g.win + static_cast<int>(t % g.win);
  if (y >= g.grid || x >= g.grid) return -1;
  return (img * g.grid + y) * g.grid + x;
}
// Token row -> windowed row.
__device__ __forceinline__ int64_t window_row_of_token(const Windows& g, int64_t r) {
  const int64_t per_img = int64_t{g.grid} * g.grid;
  const int64_t img = r / per_img;
  const int y = static_cast<int>((r % per_img) / g.grid), x = static_cast<int>(r % g.grid);
  const int64_t wi = int64_t{y / g.win} * g.nw + x / g.win;
  return ((img * g.nw * g.nw + wi) * g.win + y % g.win) * g.win + x % g.win;
}

// Warp `row`: x (+ delta) -> [x written back] -> y = LN(x). `rows` counts the rows the warps walk:
// windowed rows for kPartition (y side), token rows otherwise.
template <typename XT, typename YT, bool kAdd, RowMap kMap>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarp)
    layernorm_kernel(XT* x,  // [.., ldx]
                     int64_t ldx,
                     const uint16_t* delta,  // [.., ld_delta] BF16 (kAdd)
                     int64_t ld_delta,
                     const uint16_t* __restrict__ w,  // [dim] or null (no norm)
                     const uint16_t* __restrict__ b,  // [dim]
                     YT* y,                           // [.., ldy] or null
                     int64_t ldy, int64_t rows, int dim, float eps, Windows win) {
  const int64_t row = int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const int nc = dim / 8;
  int64_t xrow = row, drow = row;
  if constexpr (kMap == RowMap::kPartition) {
    xrow = token_of_window_row(win, row);
    if (xrow < 0) {  // padded token: F.pad zeros after the norm
      const float z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int c = lane; c < nc; c += kWarp) store8(y + row * ldy + 8 * c, z);
      return;
    }
  } else if constexpr (kMap == RowMap::kUnpartition) {
    drow = window_row_of_token(win, row);
  }
  XT* xr = x + xrow * ldx;
  float v[kMaxChunks][8];
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int c = lane + j * kWarp;
    if (c >= nc) break;
    load8(xr + 8 * c, v[j]);
    if constexpr (kAdd) {
      float d[8];
      load8(delta + drow * ld_delta + 8 * c, d);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[j][e] = stored(xr, v[j][e] + d[e]);
      store8(xr + 8 * c, v[j]);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) sum += v[j][e];
  }
  if (y == nullptr) return;
  const float mean = cuda::warp_sum(sum) / static_cast<float>(dim);
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    if (lane + j * kWarp >= nc) break;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float d = v[j][e] - mean;
      ss = fmaf(d, d, ss);
    }
  }
  const float rstd = 1.f / sqrtf(cuda::warp_sum(ss) / static_cast<float>(dim) + eps);
  YT* yr = y + (kMap == RowMap::kPartition ? row : xrow) * ldy;
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int c = lane + j * kWarp;
    if (c >= nc) break;
    float wf[8], bf[8], o[8];
    cuda::unpack8(__ldg(reinterpret_cast<const uint4*>(w + 8 * c)), wf);
    cuda::unpack8(__ldg(reinterpret_cast<const uint4*>(b + 8 * c)), bf);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = fmaf((v[j][e] - mean) * rstd, wf[e], bf[e]);
    store8(yr + 8 * c, o);
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
bool bad_dim(int dim) {
  return dim < 8 || dim % 8 || dim > kWarp * kMaxChunks * 8;
}
bool bad_rows(const void* p, int64_t ld, int dim) {
  return ld < dim || ld % 8 || !aligned16(p);
}
// Norm parameters: all three set, or (add-only forms) all three null.
bool bad_norm(const void* w, const void* b, const void* y, bool may_skip) {
  if (!w && !b && !y) return !may_skip;
  return !w || !b || !y || !aligned16(w) || !aligned16(b);
}

template <typename XT, typename YT, bool kAdd, RowMap kMap>
cudaError_t launch(XT* x, int64_t ldx, const uint16_t* delta, int64_t ld_delta, const uint16_t* w,
                   const uint16_t* b, YT* y, int64_t ldy, int64_t rows, int dim, float eps,
                   Windows win, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  layernorm_kernel<XT, YT, kAdd, kMap>
      <<<static_cast<unsigned>(blocks), kWarpsPerBlock * kWarp, 0, stream>>>(
          x, ldx, delta, ld_delta, w, b, y, ldy, rows, dim, eps, win);
  return cudaGetLastError();
}

template <typename XT, typename YT>
cudaError_t plain(const XT* x, int64_t ldx, const uint16_t* w, const uint16_t* b, YT* y,
                  int64_t ldy, int64_t rows, int dim, float eps, cudaStream_t stream) {
  if (rows < 0 || bad_dim(dim) || bad_rows(x, ldx, dim) || bad_rows(y, ldy, dim) ||
      bad_norm(w, b, y, false))
    return cudaErrorInvalidValue;
  // kAdd = false never writes x.
  return launch<XT, YT, false, RowMap::kNone>(const_cast<XT*>(x), ldx, nullptr, 0, w, b, y, ldy,
                                              rows, dim, eps, Windows{}, stream);
}

template <typename XT>
cudaError_t add(XT* h, int64_t ldh, const uint16_t* delta, int64_t ld_delta, const uint16_t* w,
                const uint16_t* b, uint16_t* y, int64_t ldy, int64_t rows, int dim, float eps,
                cudaStream_t stream) {
  if (rows < 0 || bad_dim(dim) || bad_rows(h, ldh, dim) || bad_rows(delta, ld_delta, dim) ||
      bad_norm(w, b, y, true) || (y && bad_rows(y, ldy, dim)))
    return cudaErrorInvalidValue;
  return launch<XT, uint16_t, true, RowMap::kNone>(h, ldh, delta, ld_delta, w, b, y, ldy, rows, dim,
                                                   eps, Windows{}, stream);
}

bool bad_windows(int64_t n, int grid, int win) {
  return n < 0 || grid < 1 || win < 1;
}

}  // namespace

cudaError_t layernorm(const uint16_t* x, int64_t ldx, const uint16_t* w, const uint16_t* b,
                      uint16_t* y, int64_t ldy, int64_t rows, int dim, float eps,
                      cudaStream_t stream) {
  return plain(x, ldx, w, b, y, ldy, rows, dim, eps, stream);
}
cudaError_t layernorm(const float* x, int64_t ldx, const uint16_t* w, const uint16_t* b, float* y,
                      int64_t ldy, int64_t rows, int dim, float eps, cudaStream_t stream) {
  return plain(x, ldx, w, b, y, ldy, rows, dim, eps, stream);
}
cudaError_t layernorm(const float* x, int64_t ldx, const uint16_t* w, const uint16_t* b,
                      uint16_t* y, int64_t ldy, int64_t rows, int dim, float eps,
                      cudaStream_t stream) {
  return plain(x, ldx, w, b, y, ldy, rows, dim, eps, stream);
}

cudaError_t add_layernorm(uint16_t* h, int64_t ldh, const uint16_t* delta, int64_t ld_delta,
                          const uint16_t* w, const uint16_t* b, uint16_t* y, int64_t ldy,
                          int64_t rows, int dim, float eps, cudaStream_t stream) {
  return add(h, ldh, delta, ld_delta, w, b, y, ldy, rows, dim, eps, stream);
}
cudaError_t add_layernorm(float* h, int64_t ldh, const uint16_t* delta, int64_t ld_delta,
                          const uint16_t* w, const uint16_t* b, uint16_t* y, int64_t ldy,
                          int64_t rows, int dim, float eps, cudaStream_t stream) {
  return add(h, ldh, delta, ld_delta, w, b, y, ldy, rows, dim, eps, stream);
}

cudaError_t layernorm_window_partition(const uint16_t* x, const uint16_t* w, const uint16_t* b,
                                       uint16_t* windows, int64_t n, int grid, int win, int dim,
                                       float eps, cudaStream_t stream) {
  if (bad_windows(n, grid, win) || bad_dim(dim) || bad_rows(x, dim, dim) ||
      bad_rows(windows, dim, dim) || bad_norm(w, b, windows, false))
    return cudaErrorInvalidValue;
  const Windows g{grid, win, (grid + win - 1) / win};
  const int64_t rows = n * g.nw * g.nw * win * win;
  return launch<uint16_t, uint16_t, false, RowMap::kPartition>(
      const_cast<uint16_t*>(x), dim, nullptr, 0, w, b, windows, dim, rows, dim, eps, g, stream);
}

cudaError_t add_window_unpartition_layernorm(uint16_t* x, const uint16_t* windows,
                                             const uint16_t* w, const uint16_t* b, uint16_t* y,
                                             int64_t n, int grid, int win, int dim, float eps,
                                             cudaStream_t stream) {
  if (bad_windows(n, grid, win) || bad_dim(dim) || bad_rows(x, dim, dim) ||
      bad_rows(windows, dim, dim) || bad_rows(y, dim, dim) || bad_norm(w, b, y, false))
    return cudaErrorInvalidValue;
  const Windows g{grid, win, (grid + win - 1) / win};
  const int64_t rows = n * grid * grid;
  return launch<uint16_t, uint16_t, true, RowMap::kUnpartition>(x, dim, windows, dim, w, b, y, dim,
                                                                rows, dim, eps, g, stream);
}

}  // namespace dsocr
