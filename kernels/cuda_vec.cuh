// Device helpers shared by the decoder's CUDA kernels (gemv, moe_decode, rmsnorm, rope,
// decode_attention, argmax, prefill_attention, moe_prefill): 16-byte vector loads, BF16 <-> FP32
// conversion, warp reductions, the lane-partial dot-product core of every bandwidth-bound
// GEMV-like kernel, and the cp.async / ldmatrix / mma.sync wrappers of the tensor-core kernels.
// Internal to kernels/*.cu: include only from .cu files (device code). BF16 values travel as
// uint16_t bit patterns, as everywhere in dsocr (loader/bf16.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/launch.cuh"
#include "kernels/linear.h"  // GemvEpilogue

namespace dsocr::cuda {

constexpr int kWarp = 32;

// ---- BF16 ----
__device__ __forceinline__ float bf16_lo(uint32_t w) {
  return __uint_as_float(w << 16);
}
__device__ __forceinline__ float bf16_hi(uint32_t w) {
  return __uint_as_float(w & 0xffff0000u);
}
__device__ __forceinline__ float bf16_to_f32(uint16_t b) {
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
}
// Round to nearest even (NaN stays NaN), as loader/bf16.h f32_to_bf16.
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return static_cast<uint32_t>(f32_to_bf16(lo)) | (static_cast<uint32_t>(f32_to_bf16(hi)) << 16);
}
// 8 BF16 values in one 16-byte vector -> 8 floats.
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  f[0] = bf16_lo(v.x), f[1] = bf16_hi(v.x), f[2] = bf16_lo(v.y), f[3] = bf16_hi(v.y);
  f[4] = bf16_lo(v.z), f[5] = bf16_hi(v.z), f[6] = bf16_lo(v.w), f[7] = bf16_hi(v.w);
}
__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
  return make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]),
                    pack_bf16x2(f[6], f[7]));
}

// ---- Loads ----
// Streamed weights: read once per launch, so keep them out of L1 (they would evict the
// activations every warp re-reads) and ask L2 for 256-byte sectors (whole rows stream in).
__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
// Small activations re-read by many warps: through L1 (read-only path).
__device__ __forceinline__ uint4 ld_cached(const void* p) {
  return __ldg(static_cast<const uint4*>(p));
}

// The GemvEpilogue of one output value v at element o of y (linear.h): FP32 store, BF16 store, or
// a BF16 residual add with one rounding.
__device__ __forceinline__ void store_epilogue(void* y, int64_t o, float v, GemvEpilogue ep) {
  if (ep == GemvEpilogue::kStoreF32) {
    static_cast<float*>(y)[o] = v;
  } else if (ep == GemvEpilogue::kStoreBf16) {
    static_cast<uint16_t*>(y)[o] = f32_to_bf16(v);
  } else {
    uint16_t* p = static_cast<uint16_t*>(y) + o;
    *p = f32_to_bf16(bf16_to_f32(*p) + v);
  }
}

// SwiGLU of one gate/up pair in FP32: silu(g)·u = g / (1 + e^-g) · u (swiglu_ref's formula).
__device__ __forceinline__ float swiglu(float g, float u) {
  return g / (1.f + expf(-g)) * u;
}

// ---- Warp reductions (every lane gets the result) ----
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The tail of the FFMA decode GEMVs (gemv.cu, gemv_quant.cu): lane partials acc[t][r] -> warp
// sums; with ks > 1 the block's ks warps split k and their sums are added in warp order in s_red
// (deterministic), warp 0 storing; lane t·R + r stores output (t, j0 + r), M·R <= 32 stores spread
// over the warp: SwiGLU (NW = 2R, rows r and R + r = gate and up) bf16(silu(g)·u), else the
// epilogue. PRECOND: ks block-uniform; s_red holds ks rows.
template <int M, int NW, int R, bool kSwiglu>
__device__ __forceinline__ void gemv_reduce_store(float (&acc)[M][NW], float (*s_red)[M][NW],
                                                  int ks, int warp, int lane, void* y,
                                                  int64_t ldy, int m, int64_t n, int64_t j0,
                                                  GemvEpilogue ep) {
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < NW; ++r) acc[t][r] = warp_sum(acc[t][r]);
  if (ks > 1) {
    if (lane == 0)
#pragma unroll
      for (int t = 0; t < M; ++t)
#pragma unroll
        for (int r = 0; r < NW; ++r) s_red[warp][t][r] = acc[t][r];
    __syncthreads();
    if (warp != 0) return;
#pragma unroll
    for (int t = 0; t < M; ++t)
#pragma unroll
      for (int r = 0; r < NW; ++r) {
        float v = 0.f;
        for (int q = 0; q < ks; ++q) v += s_red[q][t][r];
        acc[t][r] = v;
      }
  }
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (lane != t * R + r || t >= m || j0 + r >= n) continue;
      const int64_t o = t * ldy + j0 + r;
      if constexpr (kSwiglu) {
        const float g = acc[t][r], u = acc[t][R + r];
        static_cast<uint16_t*>(y)[o] = f32_to_bf16(swiglu(g, u));
      } else {
        store_epilogue(y, o, acc[t][r], ep);
      }
    }
}

// ---- The GEMV core ----
// Activation rows: BF16 (one 16-byte load = 8 values) or FP32 (two 16-byte loads).
template <typename XT>
__device__ __forceinline__ void load_x8(const XT* row, int c, float (&f)[8]);
template <>
__device__ __forceinline__ void load_x8<uint16_t>(const uint16_t* row, int c, float (&f)[8]) {
  unpack8(ld_cached(row + 8 * c), f);
}
template <>
__device__ __forceinline__ void load_x8<float>(const float* row, int c, float (&f)[8]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(row + 8 * c));
  const float4 b = __ldg(reinterpret_cast<const float4*>(row + 8 * c) + 1);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

// Lane-partial dot products acc[t][r] += Σ_{c ≡ c_begin + lane (mod 32)} w_r[8c..8c+8) ·
// x_t[8c..8c+8) of NW BF16 weight rows with M activation rows over the chunks [c_begin, c_end) of
// 8 values. Chunk c = c_begin + lane + 32·i: a warp reads 512 contiguous bytes of a row per load
// instruction. The U·NW weight loads of one pass are all issued before the first FMA (bytes in
// flight; U = 5 covers a 1280-wide row in one pass). Rows with bit r of row_mask clear and tokens
// with bit t of tok_mask clear are skipped (both masks are warp-uniform, so nothing diverges).
// acc is not reduced across lanes.
// kPdl (kernels launched with cuda::launch): the first pass's weight loads are issued before
// pdl_enter(), so they overlap the previous kernel; x is read after it. A lane with no chunk
// never waits here: the caller calls pdl_enter() after dot_rows as well.
// PRECOND: every row pointer and x row 16-byte aligned; rows hold c_end·8 values.
template <int M, int NW, int U, typename XT, bool kPdl = false>
__device__ __forceinline__ void dot_rows(const uint16_t* const (&w)[NW], unsigned row_mask,
                                         const XT* const (&x)[M], unsigned tok_mask, int c_begin,
                                         int c_end, int lane, float (&acc)[M][NW]) {
  bool waited = !kPdl;
  for (int c0 = c_begin + lane; c0 < c_end; c0 += kWarp * U) {
    uint4 wv[U][NW];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + kWarp * u;
#pragma unroll
      for (int r = 0; r < NW; ++r)
        wv[u][r] = (c < c_end && ((row_mask >> r) & 1u)) ? ld_stream(w[r] + 8 * c)
                                                         : make_uint4(0u, 0u, 0u, 0u);
    }
    if (!waited) pdl_enter(), waited = true;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + kWarp * u;
      if (c >= c_end) break;
#pragma unroll
      for (int t = 0; t < M; ++t) {
        if (!((tok_mask >> t) & 1u)) continue;
        float xf[8];
        load_x8<XT>(x[t], c, xf);
#pragma unroll
        for (int r = 0; r < NW; ++r) {
          float wf[8];
          unpack8(wv[u][r], wf);
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[t][r] = fmaf(wf[e], xf[e], acc[t][r]);
        }
      }
    }
  }
}

// ---- Tensor cores: D = A·B + D, m16n8k16, BF16 in, FP32 accumulate (PTX mma.sync) ----
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16"), g = lane / 4, q = lane % 4:
//   a0: A[g][2q..2q+1]  a1: A[g+8][2q..2q+1]  a2: A[g][2q+8..2q+9]  a3: A[g+8][2q+8..2q+9]
//   b0: B[2q..2q+1][g]  b1: B[2q+8..2q+9][g]
//   c0,c1: D[g][2q..2q+1]  c2,c3: D[g+8][2q..2q+1]
__device__ __forceinline__ void mma_16816_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                               uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// ---- Shared-memory staging for the tensor-core kernels (prefill attention, MoE prefill) ----
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16-byte asynchronous global -> shared copy, bypassing L1 (cp.async.cg, sm_80+).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
// Four 8x8 BF16 matrices from shared memory; lanes 8i..8i+7 give the row addresses of matrix i,
// r[i] is this lane's fragment of matrix i (row lane/4, columns 2(lane%4)..+1; with .trans the
// matrix is transposed on the way: rows 2(lane%4)..+1 of column lane/4).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

}  // namespace dsocr::cuda
