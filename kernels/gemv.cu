// Decode GEMV: y[m, n] = x[m, k] · W[n, k]ᵀ for m <= 8 (contract in linear.h).
//
// Napkin math (H200, 4.25 TB/s measured copy): lm_head 129280×1280 BF16 = 331 MB -> 78 µs floor;
// o_proj 1280×1280 = 3.3 MB -> 0.8 µs of transfer, so small shapes are latency-bound: the whole
// matrix must be in flight at once (one pass of loads per warp, enough warps).
//
// Two kernels (measurements behind the choices: bench/decoder_kernels_bench.cu, H200 figures in the
// comments where a default is set):
//  * m = 1 (and FP32 x): FFMA. A warp owns R consecutive output columns (R weight rows; R gate/up
//    pairs for SwiGLU); lane l reads chunks l, l+32, ... (8 BF16 = 16 bytes each) of every row,
//    all U·R loads of a pass issued before the first FMA (cuda_vec.cuh dot_rows); lane partials
//    are reduced by shuffles. Long rows (k > 1280) are split over `ks` warps of a block (split-K,
//    partials summed in shared memory in a fixed order) so that 1280-row matrices still have
//    enough warps in flight.
//  * m = 2..8 with BF16 x: tensor cores (mma.sync m16n8k16, FP32 accumulate). At m = 8 the FFMA
//    kernel needs 8 FMAs per weight value and measured 45 % of copy bandwidth on lm_head; the MMA
//    kernel does the same work in 1/256 of the instructions. A block owns 16 rows; its `ks` warps
//    split k in 32-wide slices; thread (g = lane/4, q = lane%4) loads the 16-byte chunk q of rows
//    g and g+8 (64 contiguous bytes per row per quad) and the matching chunk of x row g (token g).
//    The chunk's 8 values feed two k16 steps: a k permutation applied identically to A and B (a dot
//    product does not care about the order of k), so no shuffles or shared-memory staging.
#include <algorithm>
#include <type_traits>

#include "kernels/cuda_vec.cuh"
#include "kernels/linear.h"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kMaxWarps = 8;

// Chunks per lane issued together (U): 5 covers a 1280-wide row in one pass (1280 = 5 × 32 lanes
// × 8 values); with more rows per warp fewer, so that the U·NW 16-byte loads in flight (4
// registers each) plus the accumulators fit in registers.
constexpr int unroll_for(int nw) {
  return nw <= 2 ? 5 : (nw <= 4 ? 3 : 2);
}

// R (rows per warp) of the FFMA kernel for m > 1 (FP32 x): enough rows to amortise each x load
// over several weight loads, few enough for registers. SwiGLU reads two rows per column.
constexpr int ffma_rows(int m, bool swiglu) {
  return (m <= 2 ? 2 : 4) / (swiglu ? 2 : 1);
}

// Split-K of the FFMA kernel: rows longer than 1280 (160 chunks) are split over 4 warps. Measured
// at m = 1 (split 1 / 2 / 4 / 8): 1280×6848 10.3 / 8.2 / 7.1 / 8.4 µs, 1280×1792 4.0 / 3.7 / 3.4 /
// 4.8 µs.
int split_for(int kc) {
  return kc > 160 ? 4 : 1;
}

template <int M, int R, bool kSwiglu, typename XT>
__global__ void __launch_bounds__(256)
    gemv_kernel(const XT* __restrict__ x,  // [m, ldx]
                int64_t ldx, GemvWeights w, int64_t ldw,
                void* __restrict__ y,  // [m, ldy]
                int64_t ldy, int m, int64_t n, int kc, int ks, GemvEpilogue ep) {
  constexpr int NW = kSwiglu ? 2 * R : R;  // weight rows per warp
  __shared__ float s_red[kMaxWarps][M][NW];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  // ks == 1: each warp owns a row group; ks > 1: the block's warps share one, split over k.
  const int64_t task = ks == 1 ? static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp
                               : static_cast<int64_t>(blockIdx.x);
  const int64_t j0 = task * R;
  if (j0 >= n) return;  // warp-uniform; with ks > 1 the whole block (j0 depends on the block only)

  const uint16_t* rows[NW];
  unsigned row_mask = 0;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = j0 + r;
    rows[r] = nullptr;
    if constexpr (kSwiglu) rows[R + r] = nullptr;
    if (j >= n) continue;
    if constexpr (kSwiglu) {  // parts: 0 = gate, 1 = up
      rows[r] = w.w[0] + j * ldw;
      rows[R + r] = w.w[1] + j * ldw;
      row_mask |= (1u << r) | (1u << (R + r));
    } else {
      int64_t base = 0;
#pragma unroll
      for (int p = 0; p < GemvWeights::kMaxParts; ++p) {
        if (p < w.parts && j >= base && j < base + w.rows[p]) rows[r] = w.w[p] + (j - base) * ldw;
        base += w.rows[p];
      }
      row_mask |= 1u << r;
    }
  }
  const XT* xr[M];
#pragma unroll
  for (int t = 0; t < M; ++t) xr[t] = x + static_cast<int64_t>(t < m ? t : 0) * ldx;
  const unsigned tok_mask = (1u << m) - 1u;

  float acc[M][NW];
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < NW; ++r) acc[t][r] = 0.f;
  int c_begin = 0, c_end = kc;
  if (ks > 1) {
    const int slice = (kc + ks - 1) / ks;
    c_begin = min(kc, warp * slice);
    c_end = min(kc, c_begin + slice);
  }
  cuda::dot_rows<M, NW, unroll_for(NW), XT, true>(rows, row_mask, xr, tok_mask, c_begin, c_end,
                                                  lane, acc);
  cuda::pdl_enter();
  cuda::gemv_reduce_store<M, NW, R, kSwiglu>(acc, s_red, ks, warp, lane, y, ldy, m, n, j0, ep);
}

// Tensor-core GEMV for 2 <= m <= 8 (BF16 x); see the file comment. NT = 2 for SwiGLU (gate and
// up tiles of the same rows, combined in the epilogue).
template <int U, bool kSwiglu>
__global__ void __launch_bounds__(kMaxWarps* kWarp)
    gemv_mma_kernel(const uint16_t* __restrict__ x,  // [m, ldx]
                    int64_t ldx, GemvWeights w, int64_t ldw,
                    void* __restrict__ y,  // [m, ldy]
                    int64_t ldy, int m, int64_t n, int kc, GemvEpilogue ep) {
  constexpr int NT = kSwiglu ? 2 : 1;
  __shared__ float s_red[kMaxWarps][NT][kWarp][4];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, ks = blockDim.x / kWarp;
  const int g = lane / 4, q = lane % 4;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * 16;
  cuda::pdl_enter();

  const uint16_t* wr[NT][2];  // rows g and g + 8 of each tile (clamped to n - 1: not stored)
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t j = row0 + g + 8 * h < n ? row0 + g + 8 * h : n - 1;
    if constexpr (kSwiglu) {
      wr[0][h] = w.w[0] + j * ldw;
      wr[NT - 1][h] = w.w[1] + j * ldw;
    } else {
      int64_t base = 0;
      wr[0][h] = w.w[0];
#pragma unroll
      for (int p = 0; p < GemvWeights::kMaxParts; ++p) {
        if (p < w.parts && j >= base && j < base + w.rows[p]) wr[0][h] = w.w[p] + (j - base) * ldw;
        base += w.rows[p];
      }
    }
  }
  const bool x_ok = g < m;
  const uint16_t* xr = x + static_cast<int64_t>(x_ok ? g : 0) * ldx;

  float c[NT][4];
#pragma unroll
  for (int t = 0; t < NT; ++t) c[t][0] = c[t][1] = c[t][2] = c[t][3] = 0.f;
  const int nb = (kc + 3) / 4;  // 32-wide k blocks; this thread's chunk in block b is 4b + q
  for (int b0 = warp; b0 < nb; b0 += ks * U) {
    uint4 wv[U][NT][2], xv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int ch = 4 * (b0 + ks * u) + q;
      const bool ok = ch < kc;  // also false past the last block
#pragma unroll
      for (int t = 0; t < NT; ++t)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          wv[u][t][h] = ok ? cuda::ld_stream(wr[t][h] + 8 * ch) : make_uint4(0u, 0u, 0u, 0u);
      xv[u] = ok && x_ok ? cuda::ld_cached(xr + 8 * ch) : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (b0 + ks * u >= nb) break;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        // A fresh accumulator per 32-wide block, added into c with FP32 adds: chaining the
        // tensor cores' own accumulation over a whole row lost precision (measured, split_k = 1,
        // k = 1280: 80 chained steps, 4.4x the error of a sequential FP32 sum; split_k = 2: 2.0x).
        float blk[4] = {0.f, 0.f, 0.f, 0.f};
        cuda::mma_16816_bf16(blk, wv[u][t][0].x, wv[u][t][1].x, wv[u][t][0].y, wv[u][t][1].y,
                             xv[u].x, xv[u].y);
        cuda::mma_16816_bf16(blk, wv[u][t][0].z, wv[u][t][1].z, wv[u][t][0].w, wv[u][t][1].w,
                             xv[u].z, xv[u].w);
#pragma unroll
        for (int i = 0; i < 4; ++i) c[t][i] += blk[i];
      }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int i = 0; i < 4; ++i) s_red[warp][t][lane][i] = c[t][i];
  __syncthreads();
  // Thread e < 128 finishes accumulator (lane e/4, register e%4): row g' (+8), token 2q' (+1).
  for (int e = threadIdx.x; e < kWarp * 4; e += blockDim.x) {
    const int ln = e / 4, i = e % 4;
    const int64_t row = row0 + ln / 4 + (i >= 2 ? 8 : 0);
    const int tok = (ln % 4) * 2 + (i & 1);
    if (row >= n || tok >= m) continue;
    float v[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      v[t] = 0.f;
      for (int wq = 0; wq < ks; ++wq) v[t] += s_red[wq][t][ln][i];
    }
    const int64_t o = tok * ldy + row;
    if constexpr (kSwiglu) {
      static_cast<uint16_t*>(y)[o] = cuda::f32_to_bf16(cuda::swiglu(v[0], v[NT - 1]));
    } else {
      cuda::store_epilogue(y, o, v[0], ep);
    }
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <int M, int R, bool kSwiglu, typename XT>
cudaError_t launch(const XT* x, int64_t ldx, const GemvWeights& w, int64_t ldw, void* y,
                   int64_t ldy, int m, int64_t n, int64_t k, GemvEpilogue ep, int warps, int ks,
                   cudaStream_t stream) {
  const int64_t tasks = (n + R - 1) / R;
  const int64_t blocks = ks > 1 ? tasks : (tasks + warps - 1) / warps;
  const int threads = (ks > 1 ? ks : warps) * kWarp;
  return cuda::launch(gemv_kernel<M, R, kSwiglu, XT>, static_cast<unsigned>(blocks), threads, 0,
                      stream, x, ldx, w, ldw, y, ldy, m, n, static_cast<int>(k / 8), ks, ep);
}

template <bool kSwiglu>
cudaError_t launch_mma(const uint16_t* x, int64_t ldx, const GemvWeights& w, int64_t ldw, void* y,
                       int64_t ldy, int m, int64_t n, int64_t k, GemvEpilogue ep, int ks,
                       cudaStream_t stream) {
  constexpr int U = kSwiglu ? 3 : 5;  // 32-wide k blocks per warp and pass
  const int kc = static_cast<int>(k / 8), nb = (kc + 3) / 4;
  // One pass of U blocks per warp (8 warps at k = 1280), except on lm_head-sized n, where 4 warps
  // per block measured better (m = 8, 129280×1280, split 2 / 4 / 8: 82.0 / 81.5 / 87.1 µs).
  if (ks == 0) ks = n >= 32768 ? 4 : std::clamp((nb + U - 1) / U, 1, kMaxWarps);
  const int64_t blocks = (n + 15) / 16;
  return cuda::launch(gemv_mma_kernel<U, kSwiglu>, static_cast<unsigned>(blocks), ks * kWarp, 0,
                      stream, x, ldx, w, ldw, y, ldy, m, n, kc, ep);
}

// Runtime m and tuning -> kernel and template instantiation.
template <bool kSwiglu, typename XT>
cudaError_t dispatch(const XT* x, int64_t ldx, const GemvWeights& w, int64_t ldw, void* y,
                     int64_t ldy, int m, int64_t n, int64_t k, GemvEpilogue ep,
                     const GemvTuning* tuning, cudaStream_t stream) {
  const int kc = static_cast<int>(k / 8);
  GemvTuning t;
  if (tuning) t = *tuning;
  if (t.warps_per_block < 0 || t.warps_per_block > kMaxWarps || t.split_k < 0 ||
      t.split_k > kMaxWarps || (t.rows_per_warp != 0 && (m != 1 || kSwiglu)))
    return cudaErrorInvalidValue;
  if constexpr (std::is_same_v<XT, uint16_t>) {
    if (m >= 2) return launch_mma<kSwiglu>(x, ldx, w, ldw, y, ldy, m, n, k, ep, t.split_k, stream);
  }
  const int ks = t.split_k ? t.split_k : split_for(kc);
  if (m == 1) {
    // m = 1 defaults, measured (H200): lm_head-sized n: 4 rows/warp, 8 warps (R = 1 / 2 / 4:
    // 81.8 / 82.1 / 80.7 µs); smaller n: 1 row/warp, more warps in flight (1280×1280: R = 1 3.2 µs,
    // R = 2 3.4, R = 4 3.8; 3840×1280: 4.8 / 5.0 / 5.2).
    const bool big = n >= 32768;
    const int warps = t.warps_per_block ? t.warps_per_block : (big ? 8 : 4);
    if constexpr (kSwiglu) {
      return launch<1, 1, true>(x, ldx, w, ldw, y, ldy, m, n, k, ep, warps, ks, stream);
    } else {
      switch (t.rows_per_warp ? t.rows_per_warp : (big ? 4 : 1)) {
        case 1:
          return launch<1, 1, false>(x, ldx, w, ldw, y, ldy, m, n, k, ep, warps, ks, stream);
        case 2:
          return launch<1, 2, false>(x, ldx, w, ldw, y, ldy, m, n, k, ep, warps, ks, stream);
        case 4:
          return launch<1, 4, false>(x, ldx, w, ldw, y, ldy, m, n, k, ep, warps, ks, stream);
        default:
          return cudaErrorInvalidValue;  // unsupported rows_per_warp
      }
    }
  }
  // FP32 x, m >= 2: FFMA (the tensor-core path would round x to BF16).
  if constexpr (!kSwiglu && std::is_same_v<XT, float>) {
    const int warps = t.warps_per_block ? t.warps_per_block : 4;
    if (m == 2)
      return launch<2, ffma_rows(2, false), false>(x, ldx, w, ldw, y, ldy, m, n, k, ep, warps, ks,
                                                   stream);
    if (m <= 4)
      return launch<4, ffma_rows(4, false), false>(x, ldx, w, ldw, y, ldy, m, n, k, ep, warps, ks,
                                                   stream);
    return launch<8, ffma_rows(8, false), false>(x, ldx, w, ldw, y, ldy, m, n, k, ep, warps, ks,
                                                 stream);
  }
  return cudaErrorInvalidValue;  // not reached: BF16 x with m >= 2 took the tensor-core path
}

template <typename XT>
cudaError_t gemv_any(const XT* x, int64_t ldx, const GemvWeights& w, int64_t ldw, void* y,
                     int64_t ldy, int m, int64_t k, GemvEpilogue ep, cudaStream_t stream,
                     const GemvTuning* tuning) {
  constexpr int64_t kXAlign = 16 / sizeof(XT);
  if (m < 1 || m > kDecodeGemvMaxM || k < 8 || k % 8 || k / 8 > INT32_MAX || ldw % 8 || ldx < k ||
      ldx % kXAlign || ldw < k || !aligned16(x) || !y || w.parts < 1 ||
      w.parts > GemvWeights::kMaxParts)
    return cudaErrorInvalidValue;
  int64_t n = 0;
  for (int p = 0; p < w.parts; ++p) {
    if (!w.w[p] || w.rows[p] < 0 || !aligned16(w.w[p])) return cudaErrorInvalidValue;
    n += w.rows[p];
  }
  GemvWeights wc = w;  // parts beyond `parts` contribute no rows
  for (int p = w.parts; p < GemvWeights::kMaxParts; ++p) wc.rows[p] = 0, wc.w[p] = nullptr;
  if (n < 1 || ldy < n) return cudaErrorInvalidValue;
  return dispatch<false>(x, ldx, wc, ldw, y, ldy, m, n, k, ep, tuning, stream);
}

}  // namespace

cudaError_t gemv(const uint16_t* x, int64_t ldx, const GemvWeights& w, int64_t ldw, void* y,
                 int64_t ldy, int m, int64_t k, GemvEpilogue ep, cudaStream_t stream,
                 const GemvTuning* tuning) {
  return gemv_any(x, ldx, w, ldw, y, ldy, m, k, ep, stream, tuning);
}

cudaError_t gemv(const float* x, int64_t ldx, const GemvWeights& w, int64_t ldw, void* y,
                 int64_t ldy, int m, int64_t k, GemvEpilogue ep, cudaStream_t stream,
                 const GemvTuning* tuning) {
  return gemv_any(x, ldx, w, ldw, y, ldy, m, k, ep, stream, tuning);
}

cudaError_t gemv_swiglu(const uint16_t* x, int64_t ldx, const uint16_t* w_gate,
                        const uint16_t* w_up, int64_t ldw, uint16_t* act, int64_t ldact, int m,
                        int64_t inter, int64_t k, cudaStream_t stream) {
  if (m < 1 || m > kDecodeGemvMaxM || k < 8 || k % 8 || k / 8 > INT32_MAX || ldw % 8 || ldw < k ||
      ldx < k || ldx % 8 || inter < 1 || ldact < inter || !aligned16(x) || !w_gate || !w_up ||
      !aligned16(w_gate) || !aligned16(w_up) || !act)
    return cudaErrorInvalidValue;
  GemvWeights w;
  w.w[0] = w_gate, w.w[1] = w_up, w.rows[0] = inter, w.rows[1] = inter, w.parts = 2;
  return dispatch<true>(x, ldx, w, ldw, act, ldact, m, inter, k, GemvEpilogue::kStoreBf16, nullptr,
                        stream);
}

}  // namespace dsocr
