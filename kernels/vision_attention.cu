// Vision attention on tensor cores (contract in vision_attention.h; CPU reference
// vision_attention_ref): FlashAttention-2 forward (Dao 2023, Algorithm 1) with mma.sync, plus
// SAM's decomposed relative-position bias (add_decomposed_rel_pos in SAM's image_encoder.py)
// added to the scores inside the key loop.
//
// Napkin math (H200/H100, mma.sync BF16 -> FP32 reaches ~60% of the 989 TFLOP/s wgmma peak):
// SAM global block at 1024 px: 12 heads · 4096² · 64 · 4 flop = 51.5 GFLOP (Q·Kᵀ and P·V), i.e.
// ~0.17 ms at 300 TFLOP/s; 201 M exp2 (16 / clk / SM on the MUFU pipe: ~50 µs, overlapped).
// q·R for the bias is 64 · (2g−1) · 64 · 2 MAC per 64 queries and table, ~6% of the main loop.
// Q, K, V move once per CTA from L2 (K/V re-read by every query block of a head: L2-resident).
// Measured (H100 SXM, vision_attention_test Timing): 64x64 global 268 µs (192 TFLOP/s; the same
// kernel without bias 198 µs, 260 TFLOP/s), 80x80 726 µs, 25 windows 49 µs, CLIP 257 11 µs.
//
// CTA = (query block of 16·kW·kMT rows, head, sequence), kW warps, warp w owns kMT m-tiles of 16
// query rows. The Q fragments stay in registers for the whole key loop. Per tile of 64 keys:
//   cp.async of tile t+1 (K and V, 16-byte chunks, XOR-swizzled 128-byte rows so ldmatrix is
//   conflict-free) -> S = Q·Kᵀ (ldmatrix, mma.m16n8k16) -> s·log2e/8 + bias·log2e, keys past
//   n_tokens masked to -inf -> online softmax in base 2 (running max m and sum l per row) ->
//   P rounded to BF16 in registers (the S accumulator layout is the A-fragment layout) ->
//   O += P·V (V through ldmatrix.trans). Two stages of K/V; two barriers per tile.
// At the end O / l is rounded to BF16 once and stored.
// On sm_90a the biased attention runs the two products as warpgroup MMAs instead (block shape 3,
// see pick_shape): one m64n64k16 per 16 dims with A = the warp's Q fragments from registers and
// B = the K tile (K-major), then one per 16 keys with A = P from registers and B = the V tile
// (MN-major), both tiles read through 128-byte-swizzle descriptors (the XOR swizzle above is that
// layout once a tile starts on a 1024-byte boundary). H200, 64x64 global: 271 -> 246 µs; 6 tiles
// of 40x40: 283 -> 245 µs.
//
// Rel-pos bias. bias[(qh,qw),(kh,kw)] = q·Rh[qh−kh+gh−1] + q·Rw[qw−kw+gw−1] with the UNSCALED q.
// Per CTA, before the key loop, each warp computes for its rows F_h[r][i] = q_r·Rh[i] for all
// 2gh−1 table rows on the tensor cores (A = the Q fragments already in registers, B = the FP32
// table split into BF16 hi + lo parts, two MMAs: ~16-bit mantissa, FP32 accumulation) and
// scatters it to shared memory as H[r][kh] = F_h[r][qh−kh+gh−1]·log2e (same for W). The key loop
// then adds H[r][j / gw] + W[r][j % gw]; j / gw comes from a float reciprocal (exact for the
// grids allowed, see kh_of).
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "kernels/cuda_vec.cuh"
#include "kernels/vision_attention.h"
#include "kernels/wgmma.cuh"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kD = 64;                         // head_dim
constexpr int kKeys = 64;                      // keys per tile
constexpr int kRowBytes = kD * 2;              // one Q/K/V row in shared memory (8 chunks of 16 B)
constexpr int kTileBytes = kKeys * kRowBytes;  // 8 KB
constexpr int kMaxGrid = 128;  // rel-pos grid side (smem: rows · 2 · ~grid floats)
constexpr float kLog2e = 1.4426950408889634f;

// How the bias is added: none (CLIP); per score (any grid); per pair of keys (even grid_w: keys
// 2i, 2i + 1 share a grid row, so one H load and one 8-byte W load serve both; every SAM grid).
enum class Bias { kNone, kAny, kEvenW };

// Row stride (floats) of the H / W tables in shared memory. One load instruction touches the 8
// rows g = lane / 4. Scalar loads: the least stride >= g that is ≡ 4 (mod 8), so the rows start
// at 8 distinct multiples of 4 banks (H reads, 1-2 keys per row, are conflict-free; scalar W
// reads, 4 keys 2 apart, at worst 2-way). 8-byte W loads (kEvenW, served in two half-warp phases
// of 4 rows × 4 lanes × 8 bytes): ≡ 8 (mod 16), so 4 rows start 8 banks apart, conflict-free.
__host__ __device__ constexpr int rel_stride(int g) {
  return (g + 3) / 8 * 8 + 4;
}
__host__ __device__ constexpr int rel_stride_w(Bias b, int gw) {
  return b == Bias::kEvenW ? (gw + 7) / 16 * 16 + 8 : rel_stride(gw);
}

// A block: kW warps, each owning kMT m-tiles of 16 query rows.
template <int kW, int kMT>
constexpr int block_rows() {
  return kW * kMT * 16;
}

// Shared memory: 2 stages of K and V tiles, then the Q tile, which the H and W tables overwrite
// once the Q fragments are in registers; + 1 KB to align the tiles to the 128-byte swizzle's
// 1024-byte atoms (wgmma reads them through descriptors).
size_t smem_bytes(int warps, int m_tiles, Bias bias, int gh, int gw) {
  const size_t rows = static_cast<size_t>(warps) * m_tiles * 16;
  const size_t q = rows * kRowBytes;
  const size_t tables =
      bias != Bias::kNone ? rows * (rel_stride(gh) + rel_stride_w(bias, gw)) * sizeof(float) : 0;
  return 1024 + 4 * static_cast<size_t>(kTileBytes) + (tables > q ? tables : q);
}

// ---- PTX wrappers ----
// 16-byte global -> shared copy, bypassing L1; src_bytes 0 writes zeros (rows past n_tokens).
__device__ __forceinline__ void cp_async16_zfill(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
// 2^x (MUFU, max relative error 2^-22); 2^-inf = 0.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  cuda::mma_16816_bf16(c, a[0], a[1], a[2], a[3], b0, b1);
}

// Byte offset of 16-byte chunk `ch` (dims 8·ch .. 8·ch+7) of row `row` in a tile of 128-byte rows,
// XOR-swizzled: the 8 rows an ldmatrix 8x8 matrix reads land in 8 different bank groups.
__device__ __forceinline__ uint32_t swz(int row, int ch) {
  return static_cast<uint32_t>(row * kRowBytes + ((ch ^ (row & 7)) << 4));
}

// floor(j / g) for 0 <= j < 2^14, 1 <= g <= kMaxGrid from jf = j + 0.5 and inv_g = 1/g:
// jf·inv_g − 0.5 lies within 0.5 − 0.5/g of the quotient; the float error (< 2^-15 here) is far
// smaller, so rounding to nearest (the 1.5·2^23 trick: no conversion instruction) is exact.
__device__ __forceinline__ int kh_of(float jf, float inv_g) {
  const float x = __fadd_rn(fmaf(jf, inv_g, -0.5f), 12582912.0f);
  return __float_as_int(x) - 0x4B400000;
}

// Copies rows [r0, r0 + kN) of one part (q, k or v: `src` points at the head's 64 values of
// token 0, consecutive tokens `ld` apart) into a swizzled tile with kThreads threads; rows >= n
// become zeros.
template <int kN, int kThreads>
__device__ __forceinline__ void load_rows(unsigned char* dst, const uint16_t* src, int64_t ld,
                                          int r0, int n, int tid) {
  static_assert(kN * 8 % kThreads == 0, "whole passes");
#pragma unroll
  for (int it = 0; it < kN * 8 / kThreads; ++it) {
    const int i = tid + it * kThreads, row = i / 8, ch = i % 8, tok = r0 + row;
    const uint16_t* p = src + static_cast<int64_t>(tok < n ? tok : n - 1) * ld + ch * 8;
    cp_async16_zfill(cuda::smem_addr(dst + swz(row, ch)), p, tok < n ? 16 : 0);
  }
}

// One decomposed rel-pos table for this warp's rows: T[r][k] = log2e · q_r·R[pos_r − k + L − 1]
// for k < L, from F[r][i] = q_r·R[i] over the 2L−1 table rows (see the file comment).
// qa: the warp's Q A-fragments; pos[mt][hh]: qh (or qw) of row g + 8·hh of m-tile mt.
template <int kMT>
__device__ __forceinline__ void rel_table(const uint32_t (&qa)[kMT][4][4],
                                          const float* __restrict__ R,  // [2L − 1, 64]
                                          int L, const int (&pos)[kMT][2],
                                          float* T,  // [rows, stride] (this warp's rows)
                                          int stride, int wrow0, int lane) {
  const int g = lane / 4, qd = lane % 4, n_rows = 2 * L - 1;
#pragma unroll 2
  for (int n0 = 0; n0 < n_rows; n0 += 8) {
    // Lane's B column is table row n0 + g; rows past the table are clamped: their F values map
    // to k = pos − i + L − 1 <= −1 and are never stored.
    const float* rp = R + static_cast<int64_t>(min(n0 + g, n_rows - 1)) * kD + 2 * qd;
    float hi[kMT][4], lo[kMT][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) hi[mt][i] = lo[mt][i] = 0.f;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      // b0: B[k = 16kk + 2qd, +1][n = g] = R[n0 + g][16kk + 2qd, +1]; b1: the same 8 dims later.
      const float2 x0 = __ldg(reinterpret_cast<const float2*>(rp + 16 * kk));
      const float2 x1 = __ldg(reinterpret_cast<const float2*>(rp + 16 * kk + 8));
      const uint32_t b0h = cuda::pack_bf16x2(x0.x, x0.y), b1h = cuda::pack_bf16x2(x1.x, x1.y);
      const uint32_t b0l = cuda::pack_bf16x2(x0.x - cuda::bf16_lo(b0h), x0.y - cuda::bf16_hi(b0h));
      const uint32_t b1l = cuda::pack_bf16x2(x1.x - cuda::bf16_lo(b1h), x1.y - cuda::bf16_hi(b1h));
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        mma(hi[mt], qa[mt][kk], b0h, b1h);
        mma(lo[mt], qa[mt][kk], b0l, b1l);
      }
    }
    // Accumulator i: row g + 8·(i / 2), table row n0 + 2qd + i % 2.
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int hh = i / 2, k = pos[mt][hh] - (n0 + 2 * qd + i % 2) + L - 1;
        if (k >= 0 && k < L)
          T[(wrow0 + mt * 16 + g + 8 * hh) * stride + k] = (hi[mt][i] + lo[mt][i]) * kLog2e;
      }
  }
}

// PRECOND (checked by the launcher): head_dim 64; with a bias n == gh·gw, gh, gw <= kMaxGrid
// (so n <= 2^14), gw even for kEvenW; n <= 2^30 without; qkv, out 16-byte aligned; rel tables
// 8-byte aligned; dynamic smem = smem_bytes(kW, kMT, kB, gh, gw). kWg: Q·Kᵀ and P·V on warpgroup
// MMAs (sm_90a; kMT == 1, kW a multiple of 4, with a bias: see dispatch), else mma.sync.
template <int kW, int kMT, Bias kB, bool kWg>
__global__ void __launch_bounds__(kW* kWarp)
    vision_attn_kernel(const uint16_t* __restrict__ qkv,  // [n_seq, n, 3, n_heads, 64]
                       const float* __restrict__ rel_h,   // [2·gh − 1, 64] (with a bias)
                       const float* __restrict__ rel_w,   // [2·gw − 1, 64] (with a bias)
                       uint16_t* __restrict__ out,        // [n_seq, n, n_heads·64]
                       int n, int gh, int gw, int n_heads, float inv_gw) {
  constexpr int kRows = block_rows<kW, kMT>(), kThreads = kW * kWarp;
  static_assert(!kWg || (kMT == 1 && kW % 4 == 0 && kB != Bias::kNone),
                "warpgroup MMAs: whole warpgroups of 16-row m-tiles, with a bias");
  constexpr bool kBias = kB != Bias::kNone;
  constexpr float kScale = 0.125f * kLog2e;  // 1/√64, in base 2
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024 - (cuda::smem_addr(smem_raw) & 1023)) & 1023);
  unsigned char* s_kv = smem;                  // stage s: K at 2s·8 KB, V at (2s+1)·8 KB
  unsigned char* s_q = smem + 4 * kTileBytes;  // [kRows] swizzled rows, until the tables
  const int sh_stride = rel_stride(gh), sw_stride = rel_stride_w(kB, gw);
  float* s_h = reinterpret_cast<float*>(s_q);  // [kRows, sh_stride], over s_q
  float* s_w = s_h + kRows * sh_stride;        // [kRows, sw_stride]

  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  const int g = lane / 4, qd = lane % 4;
  const int q0 = blockIdx.x * kRows, h = blockIdx.y;
  const int64_t seq = blockIdx.z, hd = static_cast<int64_t>(n_heads) * kD, ld = 3 * hd;
  const uint16_t* q_src = qkv + seq * n * ld + h * kD;
  const uint16_t* k_src = q_src + hd;
  const uint16_t* v_src = q_src + 2 * hd;
  const int wrow0 = warp * kMT * 16;  // this warp's first row in the block

  load_rows<kRows, kThreads>(s_q, q_src, ld, q0, n, tid);
  load_rows<kKeys, kThreads>(s_kv, k_src, ld, 0, n, tid);
  load_rows<kKeys, kThreads>(s_kv + kTileBytes, v_src, ld, 0, n, tid);
  cuda::cp_async_commit();

  uint32_t qa[kMT][4][4];              // Q A-fragments [m-tile][16-dim k-step]
  float o[kMT][8][4];                  // O accumulators [m-tile][8-dim n-tile]
  float m_run[kMT][2], l_run[kMT][2];  // rows g, g + 8: running max (log2 units), partial sum
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int dt = 0; dt < 8; ++dt)
#pragma unroll
      for (int i = 0; i < 4; ++i) o[mt][dt][i] = 0.f;
    m_run[mt][0] = m_run[mt][1] = -INFINITY;
    l_run[mt][0] = l_run[mt][1] = 0.f;
  }

  const int n_tiles = (n + kKeys - 1) / kKeys;
  for (int t = 0; t < n_tiles; ++t) {
    if (t + 1 < n_tiles) {
      unsigned char* st = s_kv + ((t + 1) & 1) * 2 * kTileBytes;
      load_rows<kKeys, kThreads>(st, k_src, ld, (t + 1) * kKeys, n, tid);
      load_rows<kKeys, kThreads>(st + kTileBytes, v_src, ld, (t + 1) * kKeys, n, tid);
    }
    cuda::cp_async_commit();   // (possibly empty) group t + 1
    cuda::cp_async_wait<1>();  // group t (and Q with t = 0) landed for this thread ...
#if DSOCR_WGMMA
    if constexpr (kWg) cuda::fence_proxy_async();  // ... visible to the warpgroup MMAs ...
#endif
    __syncthreads();  // ... and for every thread

    if (t == 0) {
      // Matrix i = lane / 8 of ldmatrix.x4: rows + 8·(i % 2), dims + 8·(i / 2) -> a0..a3.
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
          cuda::ldmatrix_x4(qa[mt][kk], cuda::smem_addr(s_q + swz(wrow0 + mt * 16 + lane % 8 +
                                                                      8 * ((lane / 8) % 2),
                                                                  2 * kk + lane / 16)));
      if constexpr (kBias) {
        __syncthreads();  // every warp holds its Q fragments: the tables may overwrite s_q
        int ph[kMT][2], pw[kMT][2];  // (qh, qw) of this thread's rows; tail rows clamped
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            const int tok = min(q0 + wrow0 + mt * 16 + g + 8 * hh, n - 1);
            ph[mt][hh] = tok / gw;
            pw[mt][hh] = tok - ph[mt][hh] * gw;
          }
        rel_table<kMT>(qa, rel_h, gh, ph, s_h, sh_stride, wrow0, lane);
        rel_table<kMT>(qa, rel_w, gw, pw, s_w, sw_stride, wrow0, lane);
        __syncwarp();  // the tables of a row are written and read by its own warp only
      }
    }

    const unsigned char* s_k = s_kv + (t & 1) * 2 * kTileBytes;
    const unsigned char* s_v = s_k + kTileBytes;

    // ---- S = Q·Kᵀ: s[mt][nt] holds keys 8nt .. 8nt+7 of the tile ----
    float s[kMT][8][4];
#if DSOCR_WGMMA
    if constexpr (kWg) {
      // One m64n64k16 per 16 dims: A = this warp's Q fragments, B = the K tile (K-major).
      float d[32];
      const uint32_t k_addr = cuda::smem_addr(s_k);
      cuda::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        cuda::wgmma_m64n64k16_rs<0>(d, qa[0][kk], cuda::wgmma_desc_sw128(k_addr + 32 * kk), kk);
      cuda::wgmma_commit();
      cuda::wgmma_wait<0>();
      cuda::wgmma_fence_operands(d);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) cuda::wgmma_fence_operands(qa[0][kk]);
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) s[0][nt][i] = d[4 * nt + i];
    } else
#endif
    {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
          for (int i = 0; i < 4; ++i) s[mt][nt][i] = 0.f;
            // Per k16 step the four fragment loads, then the MMAs.
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        // Matrix i: keys 16np + 8·(i / 2) .., dims 16kk + 8·(i % 2) .. -> b0, b1 of n-tiles 2np
        // and 2np + 1.
        uint32_t b[4][4];
#pragma unroll
        for (int np = 0; np < 4; ++np)
          cuda::ldmatrix_x4(b[np], cuda::smem_addr(s_k + swz(16 * np + lane % 8 + 8 * (lane / 16),
                                                             2 * kk + (lane / 8) % 2)));
#pragma unroll
        for (int np = 0; np < 4; ++np)
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            mma(s[mt][2 * np], qa[mt][kk], b[np][0], b[np][1]);
            mma(s[mt][2 * np + 1], qa[mt][kk], b[np][2], b[np][3]);
          }
      }
    }

    // ---- scores in base 2, bias, mask ----
    const int kbase = t * kKeys;
    const bool tail = kbase + kKeys > n;
    const float jf0 = static_cast<float>(kbase + 2 * qd) + 0.5f;
    if constexpr (kB == Bias::kEvenW) {
      // Keys j, j + 1 (j even; n even): same kh, kw and kw + 1, both live or both masked.
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const int j = kbase + 8 * nt + 2 * qd;
        const int kh =
            kh_of(fminf(jf0 + static_cast<float>(8 * nt), static_cast<float>(n) - 1.5f), inv_gw);
        const int kw = min(j, n - 2) - kh * gw;  // masked keys: any in-range table entry
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            const int r = wrow0 + mt * 16 + g + 8 * hh;
            const float bh = s_h[r * sh_stride + kh];
            const float2 bw = *reinterpret_cast<const float2*>(s_w + r * sw_stride + kw);
            float v0 = s[mt][nt][2 * hh] * kScale + (bh + bw.x);
            float v1 = s[mt][nt][2 * hh + 1] * kScale + (bh + bw.y);
            if (tail && j >= n) v0 = v1 = -INFINITY;
            s[mt][nt][2 * hh] = v0;
            s[mt][nt][2 * hh + 1] = v1;
          }
      }
    } else {
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = kbase + 8 * nt + 2 * qd + e;  // key of accumulator elements e, 2 + e
          int kh = 0, kw = 0;
          if constexpr (kBias) {
            kh = kh_of(fminf(jf0 + static_cast<float>(8 * nt + e), static_cast<float>(n) - 0.5f),
                       inv_gw);
            kw = min(j, n - 1) - kh * gw;  // masked keys: any in-range table entry
          }
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
              float v = s[mt][nt][2 * hh + e] * kScale;
              if constexpr (kBias) {
                const int r = wrow0 + mt * 16 + g + 8 * hh;
                v += s_h[r * sh_stride + kh] + s_w[r * sw_stride + kw];
              }
              if (tail && j >= n) v = -INFINITY;
              s[mt][nt][2 * hh + e] = v;
            }
        }
    }

    // ---- online softmax (base 2) ----
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        float mx = m_run[mt][hh];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
          mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hh], s[mt][nt][2 * hh + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // mx is finite: every tile holds key kbase < n with a finite score.
        const float alpha = ex2(m_run[mt][hh] - mx);  // 0 on the first tile
        m_run[mt][hh] = mx;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float p = ex2(s[mt][nt][2 * hh + e] - mx);  // 0 for masked keys
            s[mt][nt][2 * hh + e] = p;
            sum += p;
          }
        l_run[mt][hh] = l_run[mt][hh] * alpha + sum;
#pragma unroll
        for (int dt = 0; dt < 8; ++dt) {
          o[mt][dt][2 * hh] *= alpha;
          o[mt][dt][2 * hh + 1] *= alpha;
        }
      }

    // ---- O += P·V: the accumulators of n-tiles 2kk, 2kk+1 are the A fragment of k-step kk ----
    // kk-th A fragment of P (this warp's m-tile mt): the accumulators of n-tiles 2kk, 2kk + 1.
    auto p_frag = [&](int kk, int mt, uint32_t(&pa)[4]) {
      pa[0] = cuda::pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
      pa[1] = cuda::pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
      pa[2] = cuda::pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
      pa[3] = cuda::pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
    };
#if DSOCR_WGMMA
    if constexpr (kWg) {
      // One m64n64k16 per 16 keys: A = P, B = the V tile (MN-major: rows are keys).
      float d[32];
#pragma unroll
      for (int dt = 0; dt < 8; ++dt)
#pragma unroll
        for (int i = 0; i < 4; ++i) d[4 * dt + i] = o[0][dt][i];
      uint32_t pa[4][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) p_frag(kk, 0, pa[kk]);
      const uint32_t v_addr = cuda::smem_addr(s_v);
      cuda::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        cuda::wgmma_m64n64k16_rs<1>(d, pa[kk], cuda::wgmma_desc_sw128(v_addr + 2048 * kk), 1);
      cuda::wgmma_commit();
      cuda::wgmma_wait<0>();
      cuda::wgmma_fence_operands(d);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) cuda::wgmma_fence_operands(pa[kk]);
#pragma unroll
      for (int dt = 0; dt < 8; ++dt)
#pragma unroll
        for (int i = 0; i < 4; ++i) o[0][dt][i] = d[4 * dt + i];
    } else
#endif
    {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t pa[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) p_frag(kk, mt, pa[mt]);
        // Matrix i (transposed): keys 16kk + 8·(i % 2) .., dims 16dp + 8·(i / 2) .. -> b0, b1 of
        // dim-tiles 2dp and 2dp + 1. Loads first, then the MMAs.
        uint32_t b[4][4];
#pragma unroll
        for (int dp = 0; dp < 4; ++dp)
          cuda::ldmatrix_x4_trans(
              b[dp], cuda::smem_addr(
                         s_v + swz(16 * kk + lane % 8 + 8 * ((lane / 8) % 2), 2 * dp + lane / 16)));
#pragma unroll
        for (int dp = 0; dp < 4; ++dp)
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            mma(o[mt][2 * dp], pa[mt], b[dp][0], b[dp][1]);
            mma(o[mt][2 * dp + 1], pa[mt], b[dp][2], b[dp][3]);
          }
      }
    }
    __syncthreads();  // stage t & 1 is refilled by the next iteration's loads (tile t + 2)
  }

  // ---- O / l, one BF16 rounding, 4-byte stores (a row's 4 lanes write 32 contiguous bytes) ----
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float l = l_run[mt][hh];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = 1.0f / l;
      const int tok = q0 + wrow0 + mt * 16 + g + 8 * hh;
      if (tok >= n) continue;
      uint16_t* orow = out + (seq * n + tok) * hd + h * kD + 2 * qd;
#pragma unroll
      for (int dt = 0; dt < 8; ++dt)
        *reinterpret_cast<uint32_t*>(orow + 8 * dt) =
            cuda::pack_bf16x2(o[mt][dt][2 * hh] * inv, o[mt][dt][2 * hh + 1] * inv);
    }
}

template <int kW, int kMT, Bias kB, bool kWg>
cudaError_t launch(const uint16_t* qkv, const float* rel_h, const float* rel_w, uint16_t* out,
                   int64_t n_seq, int64_t n, int64_t gh, int64_t gw, int n_heads,
                   cudaStream_t stream) {
  const size_t smem = smem_bytes(kW, kMT, kB, static_cast<int>(gh), static_cast<int>(gw));
  auto* kern = vision_attn_kernel<kW, kMT, kB, kWg>;
  // Allow the largest size this instantiation can ask for, once per device (a per-launch
  // cudaFuncSetAttribute would put host time between back-to-back launches).
  static std::atomic<uint64_t> allowed{0};  // bit d: done on device d
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  const uint64_t bit = dev < 64 ? uint64_t{1} << dev : 0;
  if (!(allowed.load(std::memory_order_acquire) & bit)) {
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem_bytes(kW, kMT, kB, kMaxGrid, kMaxGrid)));
    if (e != cudaSuccess) return e;
    allowed.fetch_or(bit, std::memory_order_release);
  }
  constexpr int kRows = block_rows<kW, kMT>();
  const dim3 grid(static_cast<unsigned>((n + kRows - 1) / kRows), static_cast<unsigned>(n_heads),
                  static_cast<unsigned>(n_seq));
  kern<<<grid, kW * kWarp, smem, stream>>>(qkv, rel_h, rel_w, out, static_cast<int>(n),
                                           static_cast<int>(gh), static_cast<int>(gw), n_heads,
                                           1.0f / static_cast<float>(gw));
  return cudaGetLastError();
}

// Without a bias (CLIP) the warpgroup-MMA shapes run on mma.sync: their no-bias instantiation
// gave wrong results on the H200 (rel. error 0.1-0.9 against float64, the same bits every run,
// with or without a barrier or an ALU pass over the Q fragments before the first wgmma), for a
// reason not found yet; CLIP's short sequences gained nothing from wgmma anyway (10.0 vs 10.1 µs).
template <int kW, int kMT, bool kWg>
cudaError_t dispatch(const uint16_t* qkv, const float* rel_h, const float* rel_w, uint16_t* out,
                     int64_t n_seq, int64_t n, int64_t gh, int64_t gw, int n_heads,
                     cudaStream_t stream) {
  if (!rel_h)
    return launch<kW, kMT, Bias::kNone, false>(qkv, nullptr, nullptr, out, n_seq, n, 1, 1, n_heads,
                                               stream);
  if (gw % 2 == 0)
    return launch<kW, kMT, Bias::kEvenW, kWg>(qkv, rel_h, rel_w, out, n_seq, n, gh, gw, n_heads,
                                              stream);
  return launch<kW, kMT, Bias::kAny, kWg>(qkv, rel_h, rel_w, out, n_seq, n, gh, gw, n_heads,
                                          stream);
}

// Block shapes (16-row m-tiles): 1 = 4 warps x 1 m-tile (64 queries), 2 = 4 warps x 2 m-tiles
// (128 queries), both on mma.sync; 3 = one warpgroup (64 queries) and 4 = two warpgroups (128
// queries) on warpgroup MMAs (m64n64k16, A = Q or P from registers, B = the K or V tile through
// a 128-byte-swizzle descriptor; sm_90a builds, else mma.sync; with a bias only). 128-query
// blocks halve the K/V shared-memory traffic per flop and the per-block fixed costs; 64-query
// blocks use fewer registers and less shared memory, so more blocks fit an SM.
// Measured on the H200 (vision_attention_test Timing, µs, shapes 1 / 2 / 3 / 4):
//   bias 64x64 x1   298 / 271 / 246 / 257      40x40 x1  70 / 77 / 59 / 75
//   bias 40x40 x6   292 / 283 / 245 / 274      80x80 x1  801 / 806 / 677 / 778
//   windows 25x196  51 / 50 / 47 / 47          windows 9x196  28 / 22 / 26 / 22
//   no bias: CLIP 257, 401 tokens 11.0 / 13.5 (1 / 2), 101 x6 9.3 / 9.4.
// Hence: 3 for biased attention, except a batch of windows too small to give shape 2 two blocks
// per SM (a 640 tile's 9 windows: 2); 1 without a bias.
cudaError_t pick_shape(bool bias, int64_t n_seq, int64_t n, int n_heads, int* shape) {
  *shape = 1;
  if (!bias) return cudaSuccess;
  *shape = 3;
  if (n > 256) return cudaSuccess;
  int dev = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  const int64_t blocks2 = (n + block_rows<4, 2>() - 1) / block_rows<4, 2>() * n_heads * n_seq;
  if (blocks2 < 2 * sms) *shape = 2;
  return cudaSuccess;
}

bool aligned(const void* p, uintptr_t a) {
  return reinterpret_cast<uintptr_t>(p) % a == 0;
}

}  // namespace

namespace detail {
// vision_attention with a forced block shape (see pick_shape; 0: the launcher's choice). Tests
// and timings only (declared where used).
cudaError_t vision_attention_shape(const uint16_t* qkv, const float* rel_pos_h,
                                   const float* rel_pos_w, uint16_t* out, int64_t n_seq,
                                   int64_t n_tokens, int64_t grid_h, int64_t grid_w, int n_heads,
                                   int head_dim, cudaStream_t stream, int shape) {
  const bool bias = rel_pos_h != nullptr;
  if (head_dim != kD || n_heads < 1 || n_heads > 65535 || n_seq < 1 || n_seq > 65535 ||
      n_tokens < 1 || n_tokens > (int64_t{1} << 30) || !qkv || !out || !aligned(qkv, 16) ||
      !aligned(out, 16) || bias != (rel_pos_w != nullptr) || shape < 0 || shape > 4)
    return cudaErrorInvalidValue;
  if (bias && (grid_h < 1 || grid_w < 1 || grid_h > kMaxGrid || grid_w > kMaxGrid ||
               grid_h * grid_w != n_tokens || !aligned(rel_pos_h, 8) || !aligned(rel_pos_w, 8)))
    return cudaErrorInvalidValue;
  const int64_t hd = static_cast<int64_t>(n_heads) * head_dim;
  const auto* in_lo = reinterpret_cast<const char*>(qkv);
  const auto* in_hi = reinterpret_cast<const char*>(qkv + n_seq * n_tokens * 3 * hd);
  const auto* out_lo = reinterpret_cast<const char*>(out);
  const auto* out_hi = reinterpret_cast<const char*>(out + n_seq * n_tokens * hd);
  if (out_lo < in_hi && in_lo < out_hi) return cudaErrorInvalidValue;
  if (shape == 0) {
    const cudaError_t e = pick_shape(bias, n_seq, n_tokens, n_heads, &shape);
    if (e != cudaSuccess) return e;
  }
  switch (shape) {
    case 1:
      return dispatch<4, 1, false>(qkv, rel_pos_h, rel_pos_w, out, n_seq, n_tokens, grid_h, grid_w,
                                   n_heads, stream);
    case 2:
      return dispatch<4, 2, false>(qkv, rel_pos_h, rel_pos_w, out, n_seq, n_tokens, grid_h, grid_w,
                                   n_heads, stream);
    case 3:
      return dispatch<4, 1, true>(qkv, rel_pos_h, rel_pos_w, out, n_seq, n_tokens, grid_h, grid_w,
                                  n_heads, stream);
    default:
      return dispatch<8, 1, true>(qkv, rel_pos_h, rel_pos_w, out, n_seq, n_tokens, grid_h, grid_w,
                                  n_heads, stream);
  }
}
}  // namespace detail

cudaError_t vision_attention(const uint16_t* qkv, const float* rel_pos_h, const float* rel_pos_w,
                             uint16_t* out, int64_t n_seq, int64_t n_tokens, int64_t grid_h,
                             int64_t grid_w, int n_heads, int head_dim, cudaStream_t stream) {
  // DSOCR_VISION_ATTN_SHAPE=1..4 forces a block shape on every call (A/B timing of pick_shape).
  static const int forced = [] {
    const char* env = std::getenv("DSOCR_VISION_ATTN_SHAPE");
    const int v = env ? std::atoi(env) : 0;
    return v >= 1 && v <= 4 ? v : 0;
  }();
  return detail::vision_attention_shape(qkv, rel_pos_h, rel_pos_w, out, n_seq, n_tokens, grid_h,
                                        grid_w, n_heads, head_dim, stream, forced);
}

}  // namespace dsocr
