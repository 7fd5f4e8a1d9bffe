// Causal prefill attention over the paged BF16 KV cache (contract in prefill_attention.h; CPU
// reference causal_attention_ref). FlashAttention-2 (Dao 2023, "FlashAttention-2: Faster Attention
// with Better Parallelism and Work Partitioning", Algorithm 1), written for mma.sync (sm_80+).
//
// Napkin math (912-token prompt, 10 heads, head_dim 128): causal QKᵀ and PV are
// 2 · 2 · 912² / 2 · 128 · 10 = 2.1 GFLOP -> ~5 µs at ~400 TFLOP/s of mma.sync; K+V read
// 912 · 2 · 1280 · 2 B = 4.7 MB (L2-resident after the first blocks). So: latency and the
// diagonal, not bandwidth. At 2048 tokens: 10.7 GFLOP.
//
// Block (64 queries of one head, 4 warps × 16 query rows), grid (query blocks, heads); the query
// blocks run longest first (blockIdx.x reversed) so the short ones fill the tail. Per block:
//  * Q [64 × 128] -> shared (cp.async) -> registers as mma A fragments (ldmatrix), once.
//  * K/V tiles of 64 keys, double-buffered: tile i+1 is in flight (cp.async) while tile i is
//    used. Each thread copies 8 rows × 16 B of K and of V per tile; every row's address goes
//    through the page table (a 64-key tile can span pages; rows past p0+T-1 are clamped to it).
//  * S = Q·Kᵀ (16 × 64 per warp, FP32 accumulators), the causal mask only on tiles that reach
//    past the block's first query position, online softmax in the exp2 domain
//    (p = 2^(s·c − m·c), c = scale·log2 e; m the running row max of the raw scores), then
//    O += P·V with P rounded to BF16 as the A operand (FA-2; l sums the unrounded p).
//  * O / l -> BF16 -> shared (the Q buffer) -> 16-byte row stores; query rows >= T not stored.
// Key split (kKeyGroups = 2): 8 warps, two groups of 4 over the same 64 queries, group 0 on the
// even key tiles and group 1 on the odd ones, each with its own K/V buffers (144 KB, one block
// per SM); group 1 hands its (O, m, l) to group 0 through shared memory, which merges the two
// softmax states (FlashAttention-2's split-KV rescaling) and stores. The longest block (the last
// query block walks every tile: the critical path while the blocks fit the GPU) walks half as
// many tiles in sequence. H200, T = 912 (150 blocks): 29.0 -> 22.3 µs.
// Shared tiles are [rows][128] BF16 with the 16-byte chunk index XOR-swizzled by row % 8, so the
// eight rows of one ldmatrix hit eight different bank groups.
#include <cmath>
#include <cstdint>

#include "kernels/cuda_vec.cuh"
#include "kernels/prefill_attention.h"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kHd = 128;
constexpr int kBlockQ = 64;           // queries per block
constexpr int kBlockK = 64;           // keys per tile
constexpr int kWarps = kBlockQ / 16;  // per key group
constexpr int kThreads = kWarps * kWarp;
constexpr int kChunks = kHd / 8;                              // 16-byte chunks per row
constexpr int kTileBytes = kBlockK * kHd * 2;                 // 16 KB
constexpr int kRowsPerThread = kBlockK * kChunks / kThreads;  // 8
static_assert(kBlockQ == kBlockK, "one tile shape for Q, K and V");
// Key groups per block (1 or 2, see the file comment). One fixed value: a chunked prefill must
// give the same bits as the whole one (the merge changes the rounding).
constexpr int kKeyGroups = 2;
// Shared memory: Q, then per key group K[2], V[2]: 80 KB (S = 1) or 144 KB (S = 2).
constexpr int smem_bytes(int S) {
  return kTileBytes * (1 + 4 * S);
}
// Merge state of a group-1 thread (S = 2): O (16 n-tiles x 4), then m and l of its two rows.
constexpr int kStateO = kHd / 8 * 4, kStateM = kStateO, kStateL = kStateO + 2;
constexpr int kStateFloats = kStateO + 4;
static_assert(kStateFloats * kThreads * 4 <= 4 * kTileBytes, "fits group 1's K/V buffers");

// Byte offset of 16-byte chunk c of row r in a swizzled [rows][128] BF16 tile.
__device__ __forceinline__ uint32_t tile_off(int r, int c) {
  return static_cast<uint32_t>(r * (kHd * 2) + ((c ^ (r & 7)) << 4));
}

template <int S>
__global__ void __launch_bounds__(S* kThreads, 1)
    prefill_attn_kernel(const uint16_t* __restrict__ q,  // [T, ldq]
                        int64_t ldq, PagedKv kv,
                        int page_shift,  // log2(kv.page_size)
                        int64_t kv_ld,   // elements per cache row (n_heads · 128)
                        int p0, int T,
                        uint16_t* __restrict__ out,  // [T, ldo]
                        int64_t ldo, float scale_log2) {
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x, lane = tid % kWarp;
  // Key group (S = 2: group 0 walks the even key tiles, group 1 the odd ones, over the same 64
  // queries), the warp's 16 query rows within the block, the thread within its group.
  const int grp = tid / kThreads, warp = (tid / kWarp) % kWarps, gtid = tid % kThreads;
  const uint32_t s_q = cuda::smem_addr(smem);
  const uint32_t s_k = s_q + kTileBytes + grp * 4 * kTileBytes;  // two buffers
  const uint32_t s_v = s_k + 2 * kTileBytes;
  const int g = lane / 4, qd = lane % 4;  // mma fragment row / column pair
  const int h = blockIdx.y;
  const int t0 = (gridDim.x - 1 - blockIdx.x) * kBlockQ;  // longest blocks first
  const int kv_len = p0 + T;
  const int t_last = min(t0 + kBlockQ, T) - 1;
  const int n_tiles = (p0 + t_last) / kBlockK + 1;
  // Tiles whose every key is <= the block's first query position need no mask.
  const int n_unmasked = (p0 + t0 + 1) / kBlockK;

  // K/V loader: a group's thread copies chunk c of rows r0, r0 + 8, ..., r0 + 56; Q is loaded
  // by all S groups (rows r0 + 8·grp + 8·S·i).
  const int c = gtid % kChunks, r0 = gtid / kChunks;
  const int64_t head_off = static_cast<int64_t>(h) * kHd + c * 8;
#pragma unroll
  for (int i = 0; i < kRowsPerThread / S; ++i) {
    const int r = r0 + 8 * grp + 8 * S * i;
    const int t = min(t0 + r, T - 1);  // rows past T: a copy of the last row, never stored
    cuda::cp_async16(s_q + tile_off(r, c), q + t * ldq + head_off);
  }
  // Page ids of the next tile to issue, loaded one tile ahead (their latency hides behind a
  // tile of math). Rows r0 + 16j and r0 + 16j + 8 share a page (page_size >= 16, r0 < 8; a row
  // clamped to kv_len - 1 stays in the same 16-row block), so 4 ids cover a thread's 8 rows.
  const int page_mask = (1 << page_shift) - 1;
  int page[kRowsPerThread / 2];
  auto load_pages = [&](int tile) {
#pragma unroll
    for (int j = 0; j < kRowsPerThread / 2; ++j)
      page[j] = kv.page_table[min(tile * kBlockK + r0 + 16 * j, kv_len - 1) >> page_shift];
  };
  auto load_kv = [&](int tile, int buf) {
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int r = r0 + 8 * i;
      const int pos = min(tile * kBlockK + r, kv_len - 1);  // kv_row(kv, pos), as shifts
      const int64_t row = (static_cast<int64_t>(page[i / 2]) << page_shift) + (pos & page_mask);
      const int64_t src = row * kv_ld + head_off;
      const uint32_t dst = static_cast<uint32_t>(buf * kTileBytes) + tile_off(r, c);
      cuda::cp_async16(s_k + dst, kv.k + src);
      cuda::cp_async16(s_v + dst, kv.v + src);
    }
  };
  // Group grp walks tiles grp, grp + S, ...: step j holds tile grp + S·j in buffer j & 1. All
  // groups run the same number of steps (barriers); a group past the last tile idles.
  if (grp < n_tiles) {
    load_pages(grp);
    load_kv(grp, 0);
  }
  cuda::cp_async_commit();
  if (grp + S < n_tiles) load_pages(grp + S);

  uint32_t qa[kHd / 16][4];  // Q as A fragments, k-steps of 16 dims
  float o[kHd / 8][4];       // O, 16 n-tiles of 8 dims
#pragma unroll
  for (int j = 0; j < kHd / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};  // rows g, g + 8

  const int n_steps = (n_tiles + S - 1) / S;
  for (int j = 0; j < n_steps; ++j) {
    const int it = grp + S * j;  // this group's tile
    if (it + S < n_tiles) {
      load_kv(it + S, (j + 1) & 1);
      cuda::cp_async_commit();
      if (it + 2 * S < n_tiles) load_pages(it + 2 * S);
      cuda::cp_async_wait<1>();
    } else {
      cuda::cp_async_wait<0>();
    }
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < kHd / 16; ++kk)
        cuda::ldmatrix_x4(qa[kk], s_q + tile_off(warp * 16 + lane % 16, kk * 2 + lane / 16));
    }
    if (it >= n_tiles) {  // group 1 on the last step of an odd tile count (block-uniform per group)
      __syncthreads();
      continue;
    }
    const uint32_t kb = s_k + (j & 1) * kTileBytes, vb = s_v + (j & 1) * kTileBytes;

    // S = Q·Kᵀ: 8 n-tiles of 8 keys.
    float s[kBlockK / 8][4];
#pragma unroll
    for (int j = 0; j < kBlockK / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      // Per k16 step the fragment loads, then the MMAs.
#pragma unroll
    for (int kk = 0; kk < kHd / 16; ++kk) {
      uint32_t b[kBlockK / 16][4];
#pragma unroll
      for (int np = 0; np < kBlockK / 16; ++np)
        cuda::ldmatrix_x4(
            b[np], kb + tile_off(np * 16 + lane % 8 + (lane / 16) * 8, kk * 2 + (lane / 8) % 2));
#pragma unroll
      for (int np = 0; np < kBlockK / 16; ++np) {
        cuda::mma_16816_bf16(s[2 * np], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b[np][0],
                             b[np][1]);
        cuda::mma_16816_bf16(s[2 * np + 1], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b[np][2],
                             b[np][3]);
      }
    }
    if (it >= n_unmasked) {  // causal mask: key > the query's position (rows >= T act as T-1)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const int t = min(t0 + warp * 16 + g + 8 * rr, T - 1);
        const int lim = p0 + t - it * kBlockK;  // last unmasked key, relative to the tile
#pragma unroll
        for (int j = 0; j < kBlockK / 8; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (8 * j + 2 * qd + e > lim) s[j][2 * rr + e] = -INFINITY;
      }
    }
    // Online softmax per row (the row's 64 scores live in the 4 lanes of a quad).
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float mt = -INFINITY;
#pragma unroll
      for (int j = 0; j < kBlockK / 8; ++j) mt = fmaxf(mt, fmaxf(s[j][2 * rr], s[j][2 * rr + 1]));
      mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
      mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
      // m_new is finite once a row has seen an unmasked key: always in group 0 (tile 0 holds
      // key 0), not in group 1 for a query before its first tile. A row with no key yet keeps
      // m = -inf, p = 0, and O = l = 0 (m_safe: no -inf - -inf).
      const float m_new = fmaxf(m_run[rr], mt);
      const float m_safe = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = exp2f((m_run[rr] - m_safe) * scale_log2);  // 0 on the first tile
      const float ms = m_safe * scale_log2;
      float ls = 0.f;
#pragma unroll
      for (int j = 0; j < kBlockK / 8; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float p = exp2f(fmaf(s[j][2 * rr + e], scale_log2, -ms));  // 0 where masked
          s[j][2 * rr + e] = p;
          ls += p;
        }
      l_run[rr] = l_run[rr] * alpha + ls;  // lane-partial; the quad is summed at the end
      m_run[rr] = m_new;
#pragma unroll
      for (int j = 0; j < kHd / 8; ++j) o[j][2 * rr] *= alpha, o[j][2 * rr + 1] *= alpha;
    }
    // O += P·V: P (C layout of two key n-tiles) is the A fragment of one 16-key k-step.
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
      const uint32_t a0 = cuda::pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
      const uint32_t a1 = cuda::pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
      const uint32_t a2 = cuda::pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      const uint32_t a3 = cuda::pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int d0 = 0; d0 < kHd / 16; d0 += 4) {  // 4 fragment loads, then their 8 MMAs
        uint32_t b[4][4];
#pragma unroll
        for (int dp = 0; dp < 4; ++dp)
          cuda::ldmatrix_x4_trans(b[dp], vb + tile_off(kk * 16 + lane % 8 + ((lane / 8) % 2) * 8,
                                                       (d0 + dp) * 2 + lane / 16));
#pragma unroll
        for (int dp = 0; dp < 4; ++dp) {
          cuda::mma_16816_bf16(o[2 * (d0 + dp)], a0, a1, a2, a3, b[dp][0], b[dp][1]);
          cuda::mma_16816_bf16(o[2 * (d0 + dp) + 1], a0, a1, a2, a3, b[dp][2], b[dp][3]);
        }
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's loads
  }

  if constexpr (S == 2) {
    // Group 1 leaves (O, m, l) in its K/V buffers; group 0 merges the two online-softmax states
    // (rescaling each to the joint row max) and stores. Group 0 holds tile 0, so its m is finite.
    float* st = reinterpret_cast<float*>(smem + kTileBytes + 4 * kTileBytes);
    if (grp == 1) {
#pragma unroll
      for (int jn = 0; jn < kHd / 8; ++jn)
#pragma unroll
        for (int i = 0; i < 4; ++i) st[(jn * 4 + i) * kThreads + gtid] = o[jn][i];
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        st[(kStateM + rr) * kThreads + gtid] = m_run[rr];
        st[(kStateL + rr) * kThreads + gtid] = l_run[rr];
      }
    }
    __syncthreads();
    if (grp == 1) return;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const float m1 = st[(kStateM + rr) * kThreads + gtid];
      const float l1 = st[(kStateL + rr) * kThreads + gtid];
      const float m = fmaxf(m_run[rr], m1);
      const float a0 = exp2f((m_run[rr] - m) * scale_log2);
      const float a1 = exp2f((m1 - m) * scale_log2);  // 0 when group 1 saw no key (m1 = -inf)
      l_run[rr] = l_run[rr] * a0 + l1 * a1;
#pragma unroll
      for (int jn = 0; jn < kHd / 8; ++jn)
#pragma unroll
        for (int e = 0; e < 2; ++e)
          o[jn][2 * rr + e] =
              o[jn][2 * rr + e] * a0 + st[(jn * 4 + 2 * rr + e) * kThreads + gtid] * a1;
    }
  }

  // O / l -> BF16 into the warp's own 16 rows of the Q buffer, then 16-byte stores.
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    float l = l_run[rr];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = 1.f / l;
    const int r = warp * 16 + g + 8 * rr;
#pragma unroll
    for (int j = 0; j < kHd / 8; ++j)
      *reinterpret_cast<uint32_t*>(smem + tile_off(r, j) + qd * 4) =
          cuda::pack_bf16x2(o[j][2 * rr] * inv, o[j][2 * rr + 1] * inv);
  }
  __syncwarp();
#pragma unroll
  for (int i = 0; i < 16 * kChunks / kWarp; ++i) {
    const int idx = lane + kWarp * i, r = idx / kChunks, cc = idx % kChunks;
    const int t = t0 + warp * 16 + r;
    if (t < T)
      *reinterpret_cast<uint4*>(out + t * ldo + static_cast<int64_t>(h) * kHd + cc * 8) =
          *reinterpret_cast<const uint4*>(smem + tile_off(warp * 16 + r, cc));
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

cudaError_t prefill_attention(const uint16_t* q, int64_t ldq, const PagedKv& kv, int64_t p0, int T,
                              uint16_t* out, int64_t ldo, int n_heads, int head_dim, float scale,
                              cudaStream_t stream) {
  const int64_t row = static_cast<int64_t>(n_heads) * head_dim;
  if (head_dim != kHd || n_heads < 1 || n_heads > 65535 || T < 1 || p0 < 0 || p0 + T > INT32_MAX ||
      !(scale > 0.f) || !q || !out || !kv.k || !kv.v || !kv.page_table ||
      (kv.page_size != 16 && kv.page_size != 32 && kv.page_size != 64) || ldq < row || ldq % 8 ||
      ldo < row || ldo % 8 || !aligned16(q) || !aligned16(kv.k) || !aligned16(kv.v) ||
      !aligned16(out))
    return cudaErrorInvalidValue;
  const dim3 grid((T + kBlockQ - 1) / kBlockQ, n_heads);
  const int page_shift = kv.page_size == 16 ? 4 : kv.page_size == 32 ? 5 : 6;
  const float scale_log2 = static_cast<float>(scale * M_LOG2E);
  constexpr int S = kKeyGroups;
  const cudaError_t e = cudaFuncSetAttribute(
      prefill_attn_kernel<S>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes(S));
  if (e != cudaSuccess) return e;
  prefill_attn_kernel<S><<<grid, S * kThreads, smem_bytes(S), stream>>>(
      q, ldq, kv, page_shift, row, static_cast<int>(p0), T, out, ldo, scale_log2);
  return cudaGetLastError();
}

}  // namespace dsocr
