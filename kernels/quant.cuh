// Device helpers for quantized weights (formats in kernels/quant.h), shared by the quantized decode
// GEMV (gemv_quant.cu), the decode MoE (moe_decode.cu), the dequantizer (quant.cu) and the
// prefill MoE's weight tiles (moe_prefill.cu): per-format constants, the INT8 / INT4
// to float conversions, and dot_rows_fmt, the format-generic twin of cuda::dot_rows. Internal to
// kernels/*.cu.
#pragma once

#include <cuda_bf16.h>

#include "kernels/cuda_vec.cuh"
#include "kernels/quant.h"

namespace dsocr::cuda {

// Values per 16-byte load of a weight row: 8 BF16, 16 INT8, 32 INT4.
template <WeightFormat F>
constexpr int kChunkValues = F == WeightFormat::kBf16 ? 8 : F == WeightFormat::kInt8 ? 16 : 32;
// Bytes of `cols` values of a row (cols a multiple of kChunkValues<F> / 8 as the shape rules give).
template <WeightFormat F>
__host__ __device__ constexpr int64_t row_bytes(int64_t cols) {
  return F == WeightFormat::kBf16 ? 2 * cols : F == WeightFormat::kInt8 ? cols : cols / 2;
}
// Scales per row of a [.., cols] weight (0 for BF16).
template <WeightFormat F>
__host__ __device__ constexpr int64_t row_scales(int64_t cols, int group) {
  return F == WeightFormat::kBf16 ? 0 : F == WeightFormat::kInt8 ? 1 : cols / group;
}

// One INT4 word (columns c..c+7, interleaved nibbles) -> 8 floats in column order: per pair i,
// (word >> 4i) & 0x000F000F | 0x43004300 is the BF16 pair (128 + u_lo, 128 + u_hi), exact; one
// BF16x2 SUB of (136, 136) leaves (q_lo, q_hi) exactly (quant.h).
__device__ __forceinline__ void int4_word_to_f32(uint32_t word, float* f) {
  const __nv_bfloat162 k136 = __halves2bfloat162(__ushort_as_bfloat16(0x4308),
                                                 __ushort_as_bfloat16(0x4308));  // 136.0
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    uint32_t t = ((word >> (4 * i)) & 0x000F000Fu) | 0x43004300u;
    __nv_bfloat162 p = __hsub2(*reinterpret_cast<__nv_bfloat162*>(&t), k136);
    const uint32_t u = *reinterpret_cast<uint32_t*>(&p);
    f[2 * i] = bf16_lo(u);
    f[2 * i + 1] = bf16_hi(u);
  }
}
// One word of 4 INT8 values (little-endian, column order) -> 4 floats.
__device__ __forceinline__ void int8_word_to_f32(uint32_t word, float* f) {
#pragma unroll
  for (int b = 0; b < 4; ++b) f[b] = static_cast<float>(static_cast<int8_t>(word >> (8 * b)));
}

// 8 values of a quantized row as BF16, bf16(q · scale) (FP32 product, then round to nearest even):
// columns c..c+7 (c % 8 == 0) at p, 8 bytes (INT8) or one interleaved word (INT4), in global or
// shared memory. The one definition of a dequantized BF16 weight: dequantize_bf16 (quant.cu) and
// moe_prefill's weight tiles. q·scale is exact in FP32 (at most 15 significant bits), so the only
// rounding is the one to BF16 (relative 2^-9).
template <WeightFormat F>
__device__ __forceinline__ uint4 dequant8_bf16(const uint8_t* p, float scale) {
  static_assert(F == WeightFormat::kInt8 || F == WeightFormat::kInt4, "quantized formats only");
  float f[8];
  if constexpr (F == WeightFormat::kInt8) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    int8_word_to_f32(v.x, f);
    int8_word_to_f32(v.y, f + 4);
  } else {
    int4_word_to_f32(*reinterpret_cast<const uint32_t*>(p), f);
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) f[e] *= scale;
  return pack8(f);
}

// Scale of chunk c (kChunkValues<F> values) of a row whose scales start at s. INT4: a chunk lies
// inside one group (32 divides 64 and 128).
template <WeightFormat F>
__device__ __forceinline__ float chunk_scale(const uint16_t* s, int c, int group) {
  if constexpr (F == WeightFormat::kInt8) return bf16_to_f32(__ldg(s));
  return bf16_to_f32(__ldg(s + (c * kChunkValues<F>) / group));
}

// dot_rows over quantized rows: acc[t][r] += Σ over this lane's chunks of
// scale(r, chunk) · Σ_v q[r, v] · x_t[v], chunks c = c_begin + lane + 32·i of kChunkValues<F>
// values (one 16-byte load each). w[r]: the row's first byte; s[r]: the row's scales. The U·NW
// weight loads (and their scales) of a pass are issued before the first FMA, and with kPdl
// before pdl_enter() (x is read after it), as cuda::dot_rows. For F == kBf16 this is
// cuda::dot_rows itself (s unused), so the BF16 path is unchanged.
// PRECOND: rows and x rows 16-byte aligned; rows hold c_end chunks.
template <WeightFormat F, int M, int NW, int U, bool kPdl = false>
__device__ __forceinline__ void dot_rows_fmt(const uint8_t* const (&w)[NW],
                                             const uint16_t* const (&s)[NW], unsigned row_mask,
                                             const uint16_t* const (&x)[M], unsigned tok_mask,
                                             int c_begin, int c_end, int group, int lane,
                                             float (&acc)[M][NW]) {
  if constexpr (F == WeightFormat::kBf16) {
    const uint16_t* wb[NW];
#pragma unroll
    for (int r = 0; r < NW; ++r) wb[r] = reinterpret_cast<const uint16_t*>(w[r]);
    dot_rows<M, NW, U, uint16_t, kPdl>(wb, row_mask, x, tok_mask, c_begin, c_end, lane, acc);
  } else {
    constexpr int V = kChunkValues<F>;
    bool waited = !kPdl;
    for (int c0 = c_begin + lane; c0 < c_end; c0 += kWarp * U) {
      uint4 wv[U][NW];
      float sc[U][NW];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = c0 + kWarp * u;
#pragma unroll
        for (int r = 0; r < NW; ++r) {
          const bool ok = c < c_end && ((row_mask >> r) & 1u);
          wv[u][r] = ok ? ld_stream(w[r] + 16 * static_cast<int64_t>(c))
                        : make_uint4(0u, 0u, 0u, 0u);
          sc[u][r] = ok ? chunk_scale<F>(s[r], c, group) : 0.f;
        }
      }
      if (!waited) pdl_enter(), waited = true;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = c0 + kWarp * u;
        if (c >= c_end) break;
#pragma unroll
        for (int t = 0; t < M; ++t) {
          if (!((tok_mask >> t) & 1u)) continue;
          float xf[V];
#pragma unroll
          for (int h = 0; h < V / 8; ++h) {
            float x8[8];
            load_x8<uint16_t>(x[t], c * (V / 8) + h, x8);
#pragma unroll
            for (int e = 0; e < 8; ++e) xf[8 * h + e] = x8[e];
          }
#pragma unroll
          for (int r = 0; r < NW; ++r) {
            const uint32_t words[4] = {wv[u][r].x, wv[u][r].y, wv[u][r].z, wv[u][r].w};
            float part = 0.f;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              constexpr int P = V / 4;  // values per word
              float wf[P];
              if constexpr (F == WeightFormat::kInt8)
                int8_word_to_f32(words[i], wf);
              else
                int4_word_to_f32(words[i], wf);
#pragma unroll
              for (int e = 0; e < P; ++e) part = fmaf(wf[e], xf[P * i + e], part);
            }
            acc[t][r] = fmaf(part, sc[u][r], acc[t][r]);
          }
        }
      }
    }
  }
}

}  // namespace dsocr::cuda
