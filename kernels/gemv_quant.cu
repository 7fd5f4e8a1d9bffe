// Decode GEMV over INT8 / INT4 weights (contract in quant.h): y[m, n] = x[m, k] · w'[n, k]ᵀ,
// m <= 8, the FFMA structure of gemv.cu's m = 1 kernel at every m.
//
// Napkin math (H200, 4.25 TB/s): q|k|v 3840×1280 INT8 = 4.9 MB + 7.7 kB scales -> 1.2 µs;
// lm_head 129280×1280 INT8 = 165 MB -> 39 µs; dense gate+up 2×6848×1280 INT8 = 17.5 MB -> 4.1 µs.
// A warp owns R output columns; lane l reads chunks l, l + 32, ... of each row, one 16-byte load
// per chunk (16 INT8 or 32 INT4 values), every load of a pass issued before the first FMA and,
// in the first pass, before the PDL wait (quant.cuh dot_rows_fmt). Rows longer than 1280 values
// are split over 4 warps of a block (partials summed in shared memory in warp order), as gemv.
// The launch shape is gemv's m = 1 default, not yet measured for these formats (dsocr-bench
// kernels has the rows: bench/RESULTS.md once run).
#include <algorithm>

#include "kernels/quant.cuh"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kMaxWarps = 8;
constexpr int kWarps = 4;

constexpr int unroll_q(int nw) {
  return nw <= 2 ? 3 : 2;
}
// Output columns per warp: 1 at m = 1 (most warps in flight), more at larger m so each x load
// feeds several rows.
constexpr int rows_for(int m, bool swiglu) {
  return m <= 1 ? 1 : (m <= 2 ? 2 : 4) / (swiglu ? 2 : 1);
}

template <WeightFormat F, int M, int R, bool kSwiglu>
__global__ void __launch_bounds__(kMaxWarps* kWarp)
    gemv_quant_kernel(const uint16_t* __restrict__ x,  // [m, ldx]
                      int64_t ldx, QGemvWeights w,
                      void* __restrict__ y,  // [m, ldy]
                      int64_t ldy, int m, int64_t n, int64_t k, int ks, GemvEpilogue ep) {
  constexpr int NW = kSwiglu ? 2 * R : R;
  constexpr int V = cuda::kChunkValues<F>;
  __shared__ float s_red[kMaxWarps][M][NW];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t task = ks == 1 ? static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp
                               : static_cast<int64_t>(blockIdx.x);
  const int64_t j0 = task * R;
  if (j0 >= n) return;
  const int64_t rb = cuda::row_bytes<F>(k), rs = cuda::row_scales<F>(k, w.group);

  const uint8_t* rows[NW];
  const uint16_t* sc[NW];
  unsigned row_mask = 0;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = j0 + r;
    rows[r] = static_cast<const uint8_t*>(w.q[0]), sc[r] = w.scale[0];
    if constexpr (kSwiglu) rows[R + r] = rows[r], sc[R + r] = sc[r];
    if (j >= n) continue;
    if constexpr (kSwiglu) {  // parts: 0 = gate, 1 = up
      rows[r] = static_cast<const uint8_t*>(w.q[0]) + j * rb, sc[r] = w.scale[0] + j * rs;
      rows[R + r] = static_cast<const uint8_t*>(w.q[1]) + j * rb, sc[R + r] = w.scale[1] + j * rs;
      row_mask |= (1u << r) | (1u << (R + r));
    } else {
      int64_t base = 0;
#pragma unroll
      for (int p = 0; p < QGemvWeights::kMaxParts; ++p) {
        if (p < w.parts && j >= base && j < base + w.rows[p]) {
          rows[r] = static_cast<const uint8_t*>(w.q[p]) + (j - base) * rb;
          sc[r] = w.scale[p] + (j - base) * rs;
        }
        base += w.rows[p];
      }
      row_mask |= 1u << r;
    }
  }
  const uint16_t* xr[M];
#pragma unroll
  for (int t = 0; t < M; ++t) xr[t] = x + static_cast<int64_t>(t < m ? t : 0) * ldx;
  const unsigned tok_mask = (1u << m) - 1u;

  float acc[M][NW];
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < NW; ++r) acc[t][r] = 0.f;
  const int kc = static_cast<int>(k / V);
  int c_begin = 0, c_end = kc;
  if (ks > 1) {
    const int slice = (kc + ks - 1) / ks;
    c_begin = min(kc, warp * slice);
    c_end = min(kc, c_begin + slice);
  }
  cuda::dot_rows_fmt<F, M, NW, unroll_q(NW), true>(rows, sc, row_mask, xr, tok_mask, c_begin,
                                                   c_end, w.group, lane, acc);
  cuda::pdl_enter();
  cuda::gemv_reduce_store<M, NW, R, kSwiglu>(acc, s_red, ks, warp, lane, y, ldy, m, n, j0, ep);
}

template <WeightFormat F, int M, bool kSwiglu>
cudaError_t launch(const uint16_t* x, int64_t ldx, const QGemvWeights& w, void* y, int64_t ldy,
                   int m, int64_t n, int64_t k, GemvEpilogue ep, cudaStream_t stream) {
  constexpr int R = rows_for(M, kSwiglu);
  const int ks = k > 1280 ? 4 : 1;  // gemv.cu split_for: rows longer than 1280 values
  const int64_t tasks = (n + R - 1) / R;
  const int64_t blocks = ks > 1 ? tasks : (tasks + kWarps - 1) / kWarps;
  const int threads = (ks > 1 ? ks : kWarps) * kWarp;
  return cuda::launch(gemv_quant_kernel<F, M, R, kSwiglu>, static_cast<unsigned>(blocks), threads,
                      0, stream, x, ldx, w, y, ldy, m, n, k, ks, ep);
}

template <WeightFormat F, bool kSwiglu>
cudaError_t dispatch_m(const uint16_t* x, int64_t ldx, const QGemvWeights& w, void* y,
                       int64_t ldy, int m, int64_t n, int64_t k, GemvEpilogue ep,
                       cudaStream_t stream) {
  if (m == 1) return launch<F, 1, kSwiglu>(x, ldx, w, y, ldy, m, n, k, ep, stream);
  if (m == 2) return launch<F, 2, kSwiglu>(x, ldx, w, y, ldy, m, n, k, ep, stream);
  if (m <= 4) return launch<F, 4, kSwiglu>(x, ldx, w, y, ldy, m, n, k, ep, stream);
  return launch<F, 8, kSwiglu>(x, ldx, w, y, ldy, m, n, k, ep, stream);
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Checks shared by both launchers; n = Σ rows.
bool bad_args(const uint16_t* x, int64_t ldx, const QGemvWeights& w, const void* y, int m,
              int64_t k, int64_t* n) {
  if (m < 1 || m > kDecodeGemvMaxM || ldx < k || ldx % 8 || !aligned16(x) || !y || w.parts < 1 ||
      w.parts > QGemvWeights::kMaxParts || k > INT32_MAX ||
      (w.format != WeightFormat::kInt8 && w.format != WeightFormat::kInt4))
    return true;
  *n = 0;
  for (int p = 0; p < w.parts; ++p) {
    if (!w.q[p] || !w.scale[p] || !aligned16(w.q[p]) ||
        !check_quant_shape(w.format, w.rows[p] > 0 ? w.rows[p] : 1, k, w.group).ok() ||
        w.rows[p] < 0)
      return true;
    *n += w.rows[p];
  }
  return *n < 1;
}

template <bool kSwiglu>
cudaError_t dispatch(const uint16_t* x, int64_t ldx, const QGemvWeights& w, void* y, int64_t ldy,
                     int m, int64_t n, int64_t k, GemvEpilogue ep, cudaStream_t stream) {
  if (w.format == WeightFormat::kInt8)
    return dispatch_m<WeightFormat::kInt8, kSwiglu>(x, ldx, w, y, ldy, m, n, k, ep, stream);
  return dispatch_m<WeightFormat::kInt4, kSwiglu>(x, ldx, w, y, ldy, m, n, k, ep, stream);
}

}  // namespace

cudaError_t gemv_quant(const uint16_t* x, int64_t ldx, const QGemvWeights& w, void* y,
                       int64_t ldy, int m, int64_t k, GemvEpilogue ep, cudaStream_t stream) {
  int64_t n = 0;
  if (bad_args(x, ldx, w, y, m, k, &n) || ldy < n) return cudaErrorInvalidValue;
  QGemvWeights wc = w;  // parts beyond `parts` contribute no rows
  for (int p = w.parts; p < QGemvWeights::kMaxParts; ++p)
    wc.rows[p] = 0, wc.q[p] = nullptr, wc.scale[p] = nullptr;
  return dispatch<false>(x, ldx, wc, y, ldy, m, n, k, ep, stream);
}

cudaError_t gemv_quant_swiglu(const uint16_t* x, int64_t ldx, const QWeight& gate,
                              const QWeight& up, uint16_t* act, int64_t ldact, int m,
                              int64_t inter, int64_t k, cudaStream_t stream) {
  if (gate.format != up.format || gate.group != up.group || inter < 1 || ldact < inter)
    return cudaErrorInvalidValue;
  QGemvWeights w;
  w.q[0] = gate.q, w.scale[0] = gate.scale, w.q[1] = up.q, w.scale[1] = up.scale;
  w.rows[0] = w.rows[1] = inter, w.parts = 2, w.format = gate.format, w.group = gate.group;
  int64_t n = 0;
  if (bad_args(x, ldx, w, act, m, k, &n)) return cudaErrorInvalidValue;
  return dispatch<true>(x, ldx, w, act, ldact, m, inter, k, GemvEpilogue::kStoreBf16, stream);
}

}  // namespace dsocr
