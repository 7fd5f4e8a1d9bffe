// Prefill MoE of the DeepSeek-V2 decoder on the GPU (contract in moe.h; CPU reference moe_ref.cpp;
// HF `DeepseekV2MoE.moe_infer`, ../shared/MODEL.md §7.1): permute tokens by expert, grouped GEMMs,
// unpermute with the router weights (DESIGN.md §5).
//
// Napkin math per MoE layer at T = 912 (top-6 of 64, dim 1280, inter 896, shared 1792), H200:
// weights 64 · 3 · 896 · 1280 · 2 B = 440 MB + shared 13.8 MB -> 0.11 ms at 4.25 TB/s if each is
// read once; FLOPs 912 · (6 · 3 · 896 + 3 · 1792) · 1280 · 2 = 50 GFLOP -> ~0.1 ms at ~500 TFLOP/s
// of mma.sync. Both floors are close: every expert weight byte must come from DRAM once (the tiles
// of one expert run next to each other, so the other row tiles find it in L2), and the tensor
// cores must be kept busy. ~86 rows per expert on average: BM = 64 wastes a third of the MMAs on
// padding rows; BM = 32 would read each expert's weights from L2 a third more often.
//
// Launches (all grids sized on the host from T, the real work read on the device):
//  1. route (a block per expert + one for the shared MLP, each counting the rows per expert
//     itself): expert offsets, perm = the (token, k) slots sorted by expert then token
//     (deterministic), and two lists of GEMM tiles (group, first row, column tile). Group
//     n_experts is the shared MLP: every token, weight 1.
//  2. gate+up grouped GEMM: a block computes BM rows × 128 columns of gate AND the same 128 of up
//     (a BM × 256 product with B = [gate rows; up rows]), A rows gathered from x by token, then
//     act = bf16(silu(g)·u) into the expert-sorted act buffer (shared: its own [T, 1792]).
//  3. down grouped GEMM: BM rows × 256 output columns, A = act rows (contiguous per group),
//     FP32 stored at the row's slot t·top_k + k (shared: T·top_k + t).
//  4. combine: per token, Σ_k w_k·out[t, k] (k = 0..top_k-1) + out_shared[t] in FP32, epilogue.
// GEMM block: 256 threads, K-steps of 32 through a cp.async pipeline; B = 256 weight rows.
//  * BM = 128 (the default): on sm_90a two warpgroups, each 64 rows × 256 columns by wgmma
//    m64n256k16 from shared memory (wgmma_mainloop, 6 stages: 144 KB BF16, 168 KB with INT4,
//    192 KB with INT8 raw rings; 1 block per SM); a build without sm_90a runs the mma.sync loop
//    below on the same tile.
//  * BM = 64: 2 × 4 warps of 32 rows × 64 B-columns (2 × 8 mma.sync tiles m16n8k16), 4 stages;
//    80 KB of shared memory (BF16), 2 blocks per SM.
// Shared rows are 64 bytes (4 chunks of 16 B), the chunk XOR-swizzled by (row / 2) % 4 so the 8
// rows of an ldmatrix land in 8 different 16-byte bank groups (the same layout is wgmma's 64-byte
// swizzle). Weights are [n, k] row-major (nn.Linear), so both operands are k-contiguous:
// non-transposed ldmatrix for A and B, K-major descriptors for wgmma.
// Blocks whose tile index is past the device-side tile count exit at once.
// Measured (H200, T = 912, ncu per kernel, default clocks): mma.sync BM 64: gate+up 171 µs, down
// 94 µs (tensor pipe 37 % busy, L2 throughput 70 %; 5 stages changed nothing); wgmma BM 128:
// gate+up 153 µs, down 78 µs; route 7.3 µs, combine 12.6 µs. Whole call (gpu_moe_prefill_test
// Perf; gpu_moe_quant_test PrefillPerf), BM 64 -> 128: BF16 287 -> 244 µs at T = 912, 209 -> 206
// µs at T = 282; INT4 experts + INT8 shared 432 -> 317 µs, INT8 381 -> 313 µs. The BM 128
// gate+up still moves ~550 MB from L2 per layer (A rows re-read by 7 column tiles, B by each row
// tile): ~3.6 TB/s.
#include <algorithm>
#include <type_traits>

#include "kernels/cuda_vec.cuh"
#include "kernels/moe.h"
#include "kernels/quant.cuh"
#include "kernels/wgmma.cuh"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kMinBM = 64;         // rows (tokens) per GEMM tile: 64 or 128 (MoePrefillTuning)
constexpr int kBN = 256;           // B rows per tile: 128 gate + 128 up, or 256 down
constexpr int kBK = 32;            // k per pipeline stage
constexpr int kStages = 4;         // cp.async pipeline depth
constexpr int kWgmmaStages = 6;    // the same for the wgmma tile (BM 128)
constexpr int kGemmThreads = 256;  // 8 warps: 2 (rows) × 4 (columns)
constexpr int kBBytes = kBN * kBK * 2;
// A tile of BM rows: BM = 32 · MI (MI m16 row tiles per warp).
constexpr int a_bytes(int mi) {
  return 32 * mi * kBK * 2;
}
constexpr int stage_bytes(int mi) {  // 20 KB (BM 64) or 24 KB (BM 128)
  return a_bytes(mi) + kBBytes;
}
constexpr int kGateUpCols = kBN / 2;  // act columns per gate+up tile
constexpr int kRouteThreads = 512;
constexpr int kCombineMaxThreads = 1024;
static_assert(kBN * (kBK / 8) == 4 * kGemmThreads, "four B chunks per thread per stage");

// A GEMM tile: group (expert id, or n_experts for the shared MLP), its first row within the group,
// the column tile, and the group's row count.
using Tile = int4;

__device__ __forceinline__ uint32_t chunk_off(int r, int c) {  // [rows][32] BF16, swizzled
  return static_cast<uint32_t>(r * (kBK * 2) + ((c ^ ((r >> 1) & 3)) << 4));
}

// ---- 1. Routing and tile lists ----
// Exclusive prefix over the lanes of v (every lane gets its own); *total = the warp's sum.
__device__ __forceinline__ int warp_exclusive_scan(int v, int lane, int* total) {
  int incl = v;
#pragma unroll
  for (int o = 1; o < kWarp; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += u;
  }
  *total = __shfl_sync(0xffffffffu, incl, kWarp - 1);
  return incl - v;
}

// Grid: n_experts + 1 blocks. Every block counts the rows per expert (shared-memory atomics over
// the T·top_k ids: order-free, ~22 KB from L2 at T = 912) and derives the expert offsets and the
// two tile-list prefixes itself, so no block waits for another. Block e < n_experts then writes
// expert e's part of perm (its slots in ascending slot order: a block-wide scan of per-token
// hits, chunk by chunk) and its tiles; block n_experts writes the shared MLP's tiles; block 0 the
// offsets and tile counts. (One block doing all of it took 26.5 µs per MoE layer of a 912-token
// prefill on the H200.)
__global__ void __launch_bounds__(kRouteThreads)
    moe_route_kernel(const int32_t* __restrict__ idx,  // [T, top_k]
                     int T, int n_experts, int top_k, int bm, int ct_expert, int ct_shared,
                     int ct_down,
                     int32_t* __restrict__ off,      // [n_experts + 1] out: expert row offsets
                     int32_t* __restrict__ n_tiles,  // [2] out: tiles of GEMM 1 and GEMM 2
                     int32_t* __restrict__ perm,     // [T * top_k] out: sorted row -> slot
                     Tile* __restrict__ tiles1,      // [max tiles] out
                     Tile* __restrict__ tiles2) {    // [max tiles] out
  constexpr int kRouteWarps = kRouteThreads / kWarp;
  static_assert(kMoeMaxExperts <= 3 * kWarp && kRouteWarps <= kWarp,
                "one warp scans the groups and the warp totals");
  __shared__ int s_cnt[kMoeMaxExperts + 1], s_off[kMoeMaxExperts + 1];
  __shared__ int s_pre[2][kMoeMaxExperts + 2];  // tile prefix per list position (shared first)
  __shared__ int s_warp[kRouteWarps];
  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  const int b = blockIdx.x, n_slots = T * top_k;
  if (tid <= n_experts) s_cnt[tid] = tid == n_experts ? T : 0;
  __syncthreads();
  for (int s = tid; s < n_slots; s += kRouteThreads) {
    const int e = idx[s];
    if (e >= 0 && e < n_experts) atomicAdd(&s_cnt[e], 1);
  }
  __syncthreads();
  // Expert row offsets and the two tile-list prefixes: warp 0, lane l owns list positions
  // 3l .. 3l+2 (position 0 = the shared MLP, then experts 0..n-1; offsets in expert order).
  if (warp == 0) {
    int ve[3], v1[3], v2[3], se = 0, s1 = 0, s2 = 0;
#pragma unroll
    for (int i = 0; i < 3; ++i) {
      const int pos = 3 * lane + i;
      ve[i] = pos < n_experts ? s_cnt[pos] : 0;
      v1[i] = v2[i] = 0;
      if (pos <= n_experts) {
        const int g = pos == 0 ? n_experts : pos - 1;
        const int rt = (s_cnt[g] + bm - 1) / bm;
        v1[i] = rt * (g == n_experts ? ct_shared : ct_expert);
        v2[i] = rt * ct_down;
      }
      se += ve[i], s1 += v1[i], s2 += v2[i];
    }
    int tot;
    int be = warp_exclusive_scan(se, lane, &tot);
    int b1 = warp_exclusive_scan(s1, lane, &tot);
    int b2 = warp_exclusive_scan(s2, lane, &tot);
#pragma unroll
    for (int i = 0; i < 3; ++i) {
      const int pos = 3 * lane + i;
      if (pos <= n_experts) s_off[pos] = be;
      if (pos <= n_experts + 1) s_pre[0][pos] = b1, s_pre[1][pos] = b2;
      be += ve[i], b1 += v1[i], b2 += v2[i];
    }
  }
  __syncthreads();
  if (b == 0) {
    if (tid <= n_experts) off[tid] = s_off[tid];
    if (tid == 0) n_tiles[0] = s_pre[0][n_experts + 1], n_tiles[1] = s_pre[1][n_experts + 1];
  }

  // perm rows of expert b: thread i looks at token c0 + i; its hits (normally 0 or 1; a token
  // holding the expert twice, against the PRECOND, gets a row per slot, ascending k) are ranked
  // by a block-wide exclusive scan.
  if (b < n_experts) {
    int run = s_off[b];
    for (int c0 = 0; c0 < T; c0 += kRouteThreads) {
      const int t = c0 + tid;
      unsigned hit = 0;  // bit k: slot (t, k) chose expert b
      if (t < T)
        for (int k = 0; k < top_k; ++k) hit |= (idx[static_cast<int64_t>(t) * top_k + k] == b) << k;
      const int hits = __popc(hit);
      int wtot;
      const int in_warp = warp_exclusive_scan(hits, lane, &wtot);
      if (lane == 0) s_warp[warp] = wtot;
      __syncthreads();
      int ctot = 0, before = 0;
      for (int w = 0; w < kRouteWarps; ++w) {
        const int v = s_warp[w];
        before += w < warp ? v : 0;
        ctot += v;
      }
      int p = run + before + in_warp;
      for (int k = 0; k < top_k; ++k)
        if ((hit >> k) & 1u) perm[p++] = t * top_k + k;
      run += ctot;
      __syncthreads();  // s_warp is rewritten by the next chunk
    }
  }

  // Tiles of list position pos (0: the shared MLP, block n_experts; e + 1: expert e, block e),
  // column tile, then row tile (the row tiles of one column tile are neighbours: they read the
  // same weight rows while those are in L2).
  const int pos = b == n_experts ? 0 : b + 1, g = b;
  const int rows = s_cnt[g], rt = (rows + bm - 1) / bm;
  for (int l = 0; l < 2; ++l) {
    Tile* out = l == 0 ? tiles1 : tiles2;
    for (int i = s_pre[l][pos] + tid; i < s_pre[l][pos + 1]; i += kRouteThreads) {
      const int local = i - s_pre[l][pos];
      out[i] = make_int4(g, (local % rt) * bm, local / rt, rows);
    }
  }
}

// ---- 2./3. Grouped GEMM ----
struct GemmArgs {
  const Tile* tiles;       // [max tiles]
  const int32_t* n_tiles;  // [1] device
  const int32_t* off;      // [n_experts + 1]
  const int32_t* perm;     // [T * top_k]
  const uint16_t* x;       // [T, ldx] (gate+up A)
  int64_t ldx;
  uint16_t* act;     // [T * top_k, moe_inter] expert-sorted (gate+up out, down A)
  uint16_t* act_sh;  // [T, shared_inter]
  float* out;        // [T * top_k + T, dim] by slot (down out)
  int T, dim, n_experts, top_k, moe_inter, shared_inter;
  uint64_t run_experts;  // MoePrefillPass: the groups this launch runs
  bool run_shared;
};

// Quantized weights (kernels/quant.h layouts): a stage's packed bytes (kBK = 32 values of each of
// the 256 B rows: 32 B INT8, 16 B INT4, so 8 or 4 KB) travel by cp.async into a raw ring beside
// the stages, as deep as the BF16 pipeline; once landed, each thread turns its four (row, 16-byte
// chunk) pairs of the stage's B tile into bf16(q·scale) (dequant8_bf16: the value dequantize_bf16
// gives) in the swizzled layout the ldmatrix loop reads, and the tensor-core loop is the BF16 one.
// Cost: one more barrier per K-step and 4 x 16 B shared stores per thread, against 2-4x fewer
// weight bytes from DRAM. Shared memory, BM 64: 80 + 4 x 8 = 112 KB (INT8), 96 KB (INT4): still 2
// blocks per SM (228 KB).
// BF16 has no raw ring: its bytes land in the B tile directly (a 64 B ring row for BF16 made the
// BF16 kernel ask for 147 KB of shared memory, one block per SM instead of two: measured 374 vs
// 329 µs for the MoE of a 912-token prefill on the H200).
template <WeightFormat F>
constexpr int kRawRow = F == WeightFormat::kBf16 ? 0 : static_cast<int>(cuda::row_bytes<F>(kBK));
template <WeightFormat F>
constexpr int kRawStage = kBN* kRawRow<F>;
// Stages of the pipeline: BM 128 is the wgmma tile (kWgmmaStages; a build without sm_90a runs
// the mma.sync loop in the first kStages of them), BM 64 the mma.sync one. The quantized raw
// ring follows the stages.
constexpr int ring_stages(int mi) {
  return mi == 4 ? kWgmmaStages : kStages;
}
template <WeightFormat FR, WeightFormat FS>
constexpr int gemm_smem_fmt(int mi) {  // BM 128: 144 KB (BF16), 168 KB (INT4), 192 KB (INT8)
  return ring_stages(mi) * (stage_bytes(mi) + std::max(kRawStage<FR>, kRawStage<FS>));
}
static_assert(gemm_smem_fmt<WeightFormat::kBf16, WeightFormat::kBf16>(2) ==
                  kStages * stage_bytes(2),
              "the BF16 kernel needs no raw ring: two blocks per SM");
static_assert(stage_bytes(4) % 512 == 0 && a_bytes(4) % 512 == 0,
              "wgmma tiles start on 512-byte swizzle atoms");

// The FP32 output row of group row r of the down GEMM: its (token, k) slot, or T·top_k + t for the
// shared MLP (both GEMM cores' epilogues).
__device__ __forceinline__ float* down_out_row(const GemmArgs& a, bool sh, int64_t act_base,
                                               int r) {
  const int64_t slot = sh ? static_cast<int64_t>(a.T) * a.top_k + r : a.perm[act_base + r];
  return a.out + slot * a.dim;
}

#if DSOCR_WGMMA
// The tile of BM = 128 rows on Hopper's warpgroup MMA (sm_90a builds): the loader of gemm_tile
// fills the same swizzled stages (chunk_off is wgmma's 64-byte swizzle), deeper (kWgmmaStages;
// quantized weights: each thread dequantizes its B chunks of the landed raw ring into the stage,
// as in the mma.sync loop, then fences them for wgmma), and warpgroup g multiplies rows 64·g ..
// 64·g + 63 of the A tile by all 256 B rows with m64n256k16 (128 FP32 accumulators per thread),
// operands read from shared memory by descriptor: no ldmatrix, no fragment registers. Both
// warpgroups always multiply (skipping the MMAs of a warpgroup past the group's last row made ptxas
// serialize every wgmma: C7518, "WG.DP in divergent path"); padding rows are copies, never stored.
// The wgmma groups of K-step kt run while the loads of kt + 1.. are issued; a stage is refilled two
// K-steps after its last read (P = S - 2), once every warpgroup's wait_group<1> has retired the
// MMAs that read it. Why: at T = 912 the mma.sync kernel (BM 64) kept the tensor pipe 37 % busy
// with L2 at 70 %; BM = 128 halves the weight reads from L2 (one row tile per ~86-row expert) and
// wgmma keeps the tensor cores fed from shared memory.
template <bool kGateUp, bool kQuant, typename Load, typename Dequant>
__device__ __forceinline__ void wgmma_mainloop(const GemmArgs& a, const Tile tile, uint32_t s_base,
                                               uint16_t* act, int64_t act_base, int inter, int K,
                                               int N, int n0, Load& load, Dequant& dequant) {
  constexpr int kABytes = a_bytes(4), kStageBytes = stage_bytes(4);
  constexpr int S = kWgmmaStages, P = S - 2;
  constexpr int kWgRows = 64, kWgABytes = kWgRows * kBK * 2;
  const int row0 = tile.y, rows = tile.w;
  const bool sh = tile.x == a.n_experts;
  const int tid = threadIdx.x, wg = tid / 128, wq = (tid % 128) / kWarp, lane = tid % kWarp;
  float acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.f;
  const int nk = K / kBK;
#pragma unroll
  for (int s = 0; s < P; ++s) {
    if (s < nk) load(s, s);
    cuda::cp_async_commit();
  }
  for (int kt = 0; kt < nk; ++kt) {
    cuda::cp_async_wait<P - 1>();
    if constexpr (kQuant) {
      __syncthreads();  // stage kt's raw bytes landed for all
      dequant(kt % S, kt);
    }
    cuda::fence_proxy_async();  // this thread's cp.async (A) and dequantized (B) bytes -> wgmma
    __syncthreads();            // stage kt ready; the MMAs of kt - 2 retired in every warpgroup
    const int nxt = kt + P;     // into the stage (and raw slot) of kt - 2
    if (nxt < nk) load(nxt % S, nxt);
    cuda::cp_async_commit();
    const uint32_t sa = s_base + (kt % S) * kStageBytes, sb = sa + kABytes;
    cuda::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks)
      cuda::wgmma_m64n256k16_bf16(acc, cuda::wgmma_desc_sw64(sa + wg * kWgABytes + 32 * ks),
                                  cuda::wgmma_desc_sw64(sb + 32 * ks));
    cuda::wgmma_commit();
    cuda::wgmma_wait<1>();
  }
  cuda::wgmma_wait<0>();
  cuda::wgmma_fence_operands(acc);

  // Epilogue: acc[4·j + 2·h + e] = row 16·wq + lane/4 + 8·h, column 8·j + 2·(lane%4) + e of this
  // warpgroup's 64 x 256 block (wgmma.cuh). Gate+up: column j < 16 is gate, j + 16 the same up.
  const int fc = 2 * (lane % 4);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = row0 + kWgRows * wg + 16 * wq + lane / 4 + 8 * hh;
    if (r >= rows) continue;
    if constexpr (kGateUp) {
      uint16_t* dst = act + (act_base + r) * inter;
#pragma unroll
      for (int j = 0; j < kGateUpCols / 8; ++j) {
        const int col = n0 + 8 * j + fc;
        if (col >= N) continue;
        const int g0 = 4 * j + 2 * hh, u0 = g0 + 4 * (kGateUpCols / 8);
        *reinterpret_cast<uint32_t*>(dst + col) = cuda::pack_bf16x2(
            cuda::swiglu(acc[g0], acc[u0]), cuda::swiglu(acc[g0 + 1], acc[u0 + 1]));
      }
    } else {
      float* dst = down_out_row(a, sh, act_base, r);
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        const int col = n0 + 8 * j + fc;
        if (col < N)
          *reinterpret_cast<float2*>(dst + col) =
              make_float2(acc[4 * j + 2 * hh], acc[4 * j + 2 * hh + 1]);
      }
    }
  }
}
#endif  // DSOCR_WGMMA

// One tile of a grouped GEMM whose weights are in format F.
template <bool kGateUp, int MI, WeightFormat F>
__device__ __forceinline__ void gemm_tile(const GemmArgs& a, const MoeDeviceWeights& w,
                                          const Tile tile) {
  constexpr int kABytes = a_bytes(MI), kStageBytes = stage_bytes(MI), kWarpRows = 16 * MI;
  constexpr bool kQuant = F != WeightFormat::kBf16;
  constexpr int kRawChunks = kRawRow<F> / 16;  // 16-byte chunks per raw row: 2 (INT8), 1 (INT4)
  extern __shared__ __align__(1024) uint8_t smem[];  // wgmma: 512-byte swizzle atoms
  const int g = tile.x, row0 = tile.y, ct = tile.z, rows = tile.w;
  const bool sh = g == a.n_experts;
  const MlpWeights& mw = sh ? w.shared : w.experts[g];
  const MlpScales& ms = sh ? w.shared_scales : w.expert_scales[g];
  const int group = sh ? w.shared_group : w.expert_group;
  const int inter = sh ? a.shared_inter : a.moe_inter;
  const int64_t act_base = sh ? 0 : a.off[g];  // first act row of the group
  uint16_t* act = sh ? a.act_sh : a.act;
  const int K = kGateUp ? a.dim : inter;
  const int N = kGateUp ? inter : a.dim;  // output columns of the group
  const int n0 = ct * (kGateUp ? kGateUpCols : kBN);

  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  const int c = tid % 4, lr = tid / 4;  // loader: chunk c of A and B rows lr + 64 i
  const uint16_t* a_src[MI / 2];
#pragma unroll
  for (int i = 0; i < MI / 2; ++i) {
    const int r = min(row0 + lr + 64 * i, rows - 1);  // padding rows: copies, never stored
    if (kGateUp) {
      const int tok = sh ? r : a.perm[act_base + r] / a.top_k;
      a_src[i] = a.x + tok * a.ldx + c * 8;
    } else {
      a_src[i] = act + (act_base + r) * inter + c * 8;
    }
  }
  // Weight row of B row br (its first byte) and the row's scales (null for BF16).
  auto b_row_src = [&](int br, const uint16_t** scales) {
    const uint16_t *base, *sc;
    int n;
    if (kGateUp) {
      n = min(n0 + br % kGateUpCols, N - 1);
      base = br < kGateUpCols ? mw.gate : mw.up, sc = br < kGateUpCols ? ms.gate : ms.up;
    } else {
      n = min(n0 + br, N - 1);
      base = mw.down, sc = ms.down;
    }
    *scales = kQuant ? sc + n * cuda::row_scales<F>(K, group) : nullptr;
    return reinterpret_cast<const uint8_t*>(base) + n * cuda::row_bytes<F>(K);
  };
  const uint8_t* b_src[4];  // BF16: chunk c of B rows lr + 64 i
  const uint16_t* b_sc[4];  // quantized: the scales of B rows lr + 64 i
#pragma unroll
  for (int i = 0; i < 4; ++i) b_src[i] = b_row_src(lr + 64 * i, &b_sc[i]) + 16 * c;
  const uint8_t* raw_src[kQuant ? kRawChunks : 1];  // quantized: raw chunk tid + 256 j
  float s_row[4];                                   // INT8: the row scales, fixed over K
  if constexpr (kQuant) {
    const uint16_t* unused;
#pragma unroll
    for (int j = 0; j < kRawChunks; ++j) {
      const int q = tid + kGemmThreads * j;
      raw_src[j] = b_row_src(q / kRawChunks, &unused) + 16 * (q % kRawChunks);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
      s_row[i] = F == WeightFormat::kInt8 ? cuda::bf16_to_f32(__ldg(b_sc[i])) : 0.f;
  }
  const uint32_t s_base = cuda::smem_addr(smem);
  auto load = [&](int stage, int kt) {
    const uint32_t sa = s_base + stage * kStageBytes, sb = sa + kABytes;
#pragma unroll
    for (int i = 0; i < MI / 2; ++i)
      cuda::cp_async16(sa + chunk_off(lr + 64 * i, c), a_src[i] + kt * kBK);
    if constexpr (kQuant) {
      const uint32_t raw = s_base + ring_stages(MI) * kStageBytes + stage * kRawStage<F>;
#pragma unroll
      for (int j = 0; j < kRawChunks; ++j)
        cuda::cp_async16(raw + 16 * (tid + kGemmThreads * j), raw_src[j] + kt * kRawRow<F>);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        cuda::cp_async16(sb + chunk_off(lr + 64 * i, c), b_src[i] + kt * (kBK * 2));
    }
  };
  // Quantized: the landed raw bytes of K-step kt -> the BF16 B tile of its stage.
  auto dequant = [&](int stage, int kt) {
    if constexpr (kQuant) {
      const uint8_t* raw = smem + ring_stages(MI) * kStageBytes + stage * kRawStage<F>;
      uint8_t* bt = smem + stage * kStageBytes + kABytes;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = lr + 64 * i;
        const float sc = F == WeightFormat::kInt8
                             ? s_row[i]
                             : cuda::bf16_to_f32(__ldg(b_sc[i] + (kt * kBK + c * 8) / group));
        *reinterpret_cast<uint4*>(bt + chunk_off(r, c)) =
            cuda::dequant8_bf16<F>(raw + r * kRawRow<F> + cuda::row_bytes<F>(c * 8), sc);
      }
    }
  };

#if DSOCR_WGMMA
  if constexpr (MI == 4) {
    wgmma_mainloop<kGateUp, kQuant>(a, tile, s_base, act, act_base, inter, K, N, n0, load, dequant);
    return;
  }
#endif
  const int wm = warp / 4, wn = warp % 4;
  // B row of n-tile pair jp (16 rows): gate+up: pairs 0, 1 gate columns wn·32 .. +31, pairs 2, 3
  // the same up columns; down: columns wn·64 + 16 jp.
  auto b_row = [&](int jp) {
    return kGateUp ? (jp / 2) * kGateUpCols + wn * 32 + (jp % 2) * 16 : wn * 64 + jp * 16;
  };
  float acc[MI][8][4];
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[mi][j][0] = acc[mi][j][1] = acc[mi][j][2] = acc[mi][j][3] = 0.f;

  // This warp's m16 tiles that hold group rows (0..MI, warp-uniform).
  const int live_mi = min(MI, max(0, (rows - row0 - wm * kWarpRows + 15) / 16));
  const int nk = K / kBK;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nk) load(s, s);
    cuda::cp_async_commit();
  }
  for (int kt = 0; kt < nk; ++kt) {
    cuda::cp_async_wait<kStages - 2>();
    __syncthreads();  // stage kt landed for all; stage kt - 1 consumed by all
    if constexpr (kQuant) dequant(kt % kStages, kt);
    const int nxt = kt + kStages - 1;  // into the stage (and raw slot) of kt - 1
    if (nxt < nk) load(nxt % kStages, nxt);
    cuda::cp_async_commit();
    if constexpr (kQuant) __syncthreads();  // stage kt's B tile written by all
    const uint32_t sa = s_base + (kt % kStages) * kStageBytes, sb = sa + kABytes;
    // Per k16 step the fragment loads, then the MMAs, on the m16 tiles of this warp that hold
    // group rows: a row tile past the group's last row (the second tile of an 86-row expert
    // holds 22) skips the MMAs of its empty 16-row slices. The live count is a template
    // argument (a runtime bound inside the unrolled loops made ptxas spill).
    auto mma_step = [&](auto live_c) {
      constexpr int L = decltype(live_c)::value;
#pragma unroll
      for (int ks = 0; ks < kBK / 16; ++ks) {
        uint32_t af[L][4], bf[4][4];
#pragma unroll
        for (int mi = 0; mi < L; ++mi)
          cuda::ldmatrix_x4(
              af[mi], sa + chunk_off(wm * kWarpRows + mi * 16 + lane % 16, ks * 2 + lane / 16));
#pragma unroll
        for (int jp = 0; jp < 4; ++jp)
          cuda::ldmatrix_x4(bf[jp], sb + chunk_off(b_row(jp) + lane % 8 + (lane / 16) * 8,
                                                   ks * 2 + (lane / 8) % 2));
#pragma unroll
        for (int jp = 0; jp < 4; ++jp)
#pragma unroll
          for (int mi = 0; mi < L; ++mi) {
            cuda::mma_16816_bf16(acc[mi][2 * jp], af[mi][0], af[mi][1], af[mi][2], af[mi][3],
                                 bf[jp][0], bf[jp][1]);
            cuda::mma_16816_bf16(acc[mi][2 * jp + 1], af[mi][0], af[mi][1], af[mi][2], af[mi][3],
                                 bf[jp][2], bf[jp][3]);
          }
      }
    };
    if (live_mi == MI) {
      mma_step(std::integral_constant<int, MI>{});
    } else if (live_mi == 1) {
      mma_step(std::integral_constant<int, 1>{});
    } else if constexpr (MI == 4) {
      if (live_mi == 2)
        mma_step(std::integral_constant<int, 2>{});
      else if (live_mi == 3)
        mma_step(std::integral_constant<int, 3>{});
    }
  }

  // Epilogue. Fragment (mi, j): rows wm·32 + mi·16 + lane/4 (+8), columns 2·(lane%4) (+1).
  const int fr = lane / 4, fc = 2 * (lane % 4);
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int r = row0 + wm * kWarpRows + mi * 16 + fr + 8 * hh;
      if (r >= rows) continue;
      if (kGateUp) {
        uint16_t* dst = act + (act_base + r) * inter;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int col = n0 + wn * 32 + 8 * j + fc;
          if (col >= N) continue;
          const float(&gv)[4] = acc[mi][j];  // gate columns; up: the same 4 pairs later
          const float(&uv)[4] = acc[mi][j + 4];
          *reinterpret_cast<uint32_t*>(dst + col) = cuda::pack_bf16x2(
              cuda::swiglu(gv[2 * hh], uv[2 * hh]), cuda::swiglu(gv[2 * hh + 1], uv[2 * hh + 1]));
        }
      } else {
        float* dst = down_out_row(a, sh, act_base, r);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int col = n0 + wn * 64 + 8 * j + fc;
          if (col < N)
            *reinterpret_cast<float2*>(dst + col) =
                make_float2(acc[mi][j][2 * hh], acc[mi][j][2 * hh + 1]);
        }
      }
    }
}

// The routed experts' tiles run gemm_tile<FR>, the shared MLP's gemm_tile<FS> (a block-uniform
// branch; FR == FS, the BF16 kernel among them, compiles one body).
template <bool kGateUp, int MI, WeightFormat FR, WeightFormat FS>
__global__ void __launch_bounds__(kGemmThreads, MI == 2 ? 2 : 1)
    moe_grouped_gemm_kernel(GemmArgs a, MoeDeviceWeights w) {
  if (static_cast<int>(blockIdx.x) >= *a.n_tiles) return;
  const Tile tile = a.tiles[blockIdx.x];
  if (tile.x == a.n_experts ? !a.run_shared : !((a.run_experts >> tile.x) & 1u))
    return;  // another pass's group
  if constexpr (FR == FS)
    gemm_tile<kGateUp, MI, FR>(a, w, tile);
  else if (tile.x == a.n_experts)
    gemm_tile<kGateUp, MI, FS>(a, w, tile);
  else
    gemm_tile<kGateUp, MI, FR>(a, w, tile);
}

// ---- 4. Weighted combine + epilogue ----
// A block per token, a thread per 4 columns (blockDim = dim / 4 rounded up to a warp: one pass;
// 256 threads for dim 1280 left a second pass of 64 columns): the top_k + 1 float4 loads are all
// issued before the first FMA. The sum order (k ascending, then the shared MLP) is fixed.
__global__ void __launch_bounds__(kCombineMaxThreads)
    moe_combine_kernel(const int32_t* __restrict__ idx,   // [T, top_k]
                       const float* __restrict__ topk_w,  // [T, top_k]
                       const float* __restrict__ out,     // [T * top_k + T, dim] by slot
                       void* __restrict__ y,              // [T, ldy]
                       int64_t ldy, GemvEpilogue ep, int T, int dim, int n_experts, int top_k) {
  const int t = blockIdx.x;
  float wk[kMoeMaxTopK];
  unsigned live = 0;  // slots whose expert ran (the others were never written)
#pragma unroll
  for (int k = 0; k < kMoeMaxTopK; ++k) {
    const int e = k < top_k ? idx[t * top_k + k] : -1;
    const bool ok = e >= 0 && e < n_experts;
    wk[k] = ok ? topk_w[t * top_k + k] : 0.f;
    if (ok) live |= 1u << k;
  }
  const float* o_sh = out + (static_cast<int64_t>(T) * top_k + t) * dim;
  for (int c = 4 * threadIdx.x; c < dim; c += 4 * blockDim.x) {
    float4 o[kMoeMaxTopK];
#pragma unroll
    for (int k = 0; k < kMoeMaxTopK; ++k)
      o[k] = (live >> k) & 1u ? *reinterpret_cast<const float4*>(
                                    out + (static_cast<int64_t>(t) * top_k + k) * dim + c)
                              : make_float4(0.f, 0.f, 0.f, 0.f);
    const float4 sh = *reinterpret_cast<const float4*>(o_sh + c);
    float v[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int k = 0; k < kMoeMaxTopK; ++k) {
      if (!((live >> k) & 1u)) continue;
      v[0] = fmaf(wk[k], o[k].x, v[0]), v[1] = fmaf(wk[k], o[k].y, v[1]);
      v[2] = fmaf(wk[k], o[k].z, v[2]), v[3] = fmaf(wk[k], o[k].w, v[3]);
    }
    v[0] += sh.x, v[1] += sh.y, v[2] += sh.z, v[3] += sh.w;
    const int64_t o0 = t * ldy + c;
#pragma unroll
    for (int i = 0; i < 4; ++i) cuda::store_epilogue(y, o0 + i, v[i], ep);
  }
}

size_t align256(size_t b) {
  return (b + 255) / 256 * 256;
}
bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Host-side bounds of the device-side tile lists, and the workspace carve-up.
struct Plan {
  int ct_expert, ct_shared, ct_down;  // column tiles per group
  size_t off_b, n_tiles_b, perm_b, tiles1_b, tiles2_b, act_b, act_sh_b, out_b, total;
};
// Upper bounds of the two tile lists for row tiles of bm: Σ_e ceil(n_e / bm) <=
// ceil(Σ n_e / bm) + n_experts whatever the routing; the shared MLP has ceil(T / bm).
int64_t max_tiles(const Plan& p, int list, int64_t T, int64_t top_k, int64_t n_experts, int bm) {
  const int64_t rt_e = ceil_div(T * top_k, bm) + n_experts, rt_s = ceil_div(T, bm);
  return list == 0 ? rt_e * p.ct_expert + rt_s * p.ct_shared : (rt_e + rt_s) * p.ct_down;
}
Plan make_plan(int64_t T, int64_t top_k, int64_t n_experts, int64_t dim, int64_t moe_inter,
               int64_t shared_inter) {
  Plan p;
  p.ct_expert = static_cast<int>(ceil_div(moe_inter, kGateUpCols));
  p.ct_shared = static_cast<int>(ceil_div(shared_inter, kGateUpCols));
  p.ct_down = static_cast<int>(ceil_div(dim, kBN));
  size_t o = 0;
  auto take = [&](size_t bytes) {
    const size_t at = o;
    o += align256(bytes);
    return at;
  };
  p.off_b = take(sizeof(int32_t) * (kMoeMaxExperts + 1));
  p.n_tiles_b = take(sizeof(int32_t) * 2);
  p.perm_b = take(sizeof(int32_t) * T * top_k);
  // Tile lists sized for the smallest row tile (the most tiles).
  p.tiles1_b = take(sizeof(Tile) * max_tiles(p, 0, T, top_k, n_experts, kMinBM));
  p.tiles2_b = take(sizeof(Tile) * max_tiles(p, 1, T, top_k, n_experts, kMinBM));
  p.act_b = take(sizeof(uint16_t) * T * top_k * moe_inter);
  p.act_sh_b = take(sizeof(uint16_t) * T * shared_inter);
  p.out_b = take(sizeof(float) * (T * top_k + T) * dim);
  p.total = o;
  return p;
}

// The two grouped GEMMs with row tiles of 32 · MI, routed experts in FR, shared in FS.
template <int MI, WeightFormat FR, WeightFormat FS>
cudaError_t launch_gemms(GemmArgs a, const MoeDeviceWeights& w, int64_t grid1, int64_t grid2,
                         Tile* tiles2, const int32_t* n_tiles2, cudaStream_t stream) {
  constexpr int smem = gemm_smem_fmt<FR, FS>(MI);
  cudaError_t e = cudaFuncSetAttribute(moe_grouped_gemm_kernel<true, MI, FR, FS>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e == cudaSuccess)
    e = cudaFuncSetAttribute(moe_grouped_gemm_kernel<false, MI, FR, FS>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return e;
  moe_grouped_gemm_kernel<true, MI, FR, FS>
      <<<static_cast<unsigned>(grid1), kGemmThreads, smem, stream>>>(a, w);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  a.tiles = tiles2;
  a.n_tiles = n_tiles2;
  moe_grouped_gemm_kernel<false, MI, FR, FS>
      <<<static_cast<unsigned>(grid2), kGemmThreads, smem, stream>>>(a, w);
  return cudaGetLastError();
}
// launch_gemms for the (routed, shared) format pair of w (moe_decode_supports).
template <int MI>
cudaError_t launch_gemms_fmt(GemmArgs a, const MoeDeviceWeights& w, int64_t grid1, int64_t grid2,
                             Tile* tiles2, const int32_t* n_tiles2, cudaStream_t stream) {
  using F = WeightFormat;
  if (w.expert_format == F::kBf16)
    return launch_gemms<MI, F::kBf16, F::kBf16>(a, w, grid1, grid2, tiles2, n_tiles2, stream);
  if (w.expert_format == F::kInt8)
    return launch_gemms<MI, F::kInt8, F::kInt8>(a, w, grid1, grid2, tiles2, n_tiles2, stream);
  if (w.shared_format == F::kInt4)
    return launch_gemms<MI, F::kInt4, F::kInt4>(a, w, grid1, grid2, tiles2, n_tiles2, stream);
  return launch_gemms<MI, F::kInt4, F::kInt8>(a, w, grid1, grid2, tiles2, n_tiles2, stream);
}

// A quantized MLP's shapes (check_quant_shape for gate/up [inter, dim] and down [dim, inter]) and
// scales; BF16: nothing to check.
bool bad_quant_mlp(WeightFormat f, int group, const MlpScales& s, int dim, int inter) {
  return f != WeightFormat::kBf16 &&
         (!check_quant_shape(f, inter, dim, group).ok() ||
          !check_quant_shape(f, dim, inter, group).ok() || !s.gate || !s.up || !s.down);
}

}  // namespace

size_t moe_prefill_workspace_bytes(int T, int top_k, int n_experts, int64_t dim, int64_t moe_inter,
                                   int64_t shared_inter) {
  return make_plan(T, top_k, n_experts, dim, moe_inter, shared_inter).total;
}

cudaError_t moe_prefill(const uint16_t* x, int64_t ldx, const int32_t* topk_idx,
                        const float* topk_w, const MoeDeviceWeights& w, void* y, int64_t ldy,
                        GemvEpilogue ep, void* workspace, int T, int dim, int n_experts, int top_k,
                        int moe_inter, int shared_inter, cudaStream_t stream,
                        const MoePrefillTuning* tuning, const MoePrefillPass* pass) {
  const MoePrefillPass all;
  const MoePrefillPass& ps = pass ? *pass : all;
  const int bm = tuning && tuning->block_rows ? tuning->block_rows : kMoePrefillDefaultBlockRows;
  if (bm != 64 && bm != 128) return cudaErrorInvalidValue;
  if (!moe_decode_supports(w.expert_format, w.shared_format) ||
      bad_quant_mlp(w.shared_format, w.shared_group, w.shared_scales, dim, shared_inter))
    return cudaErrorInvalidValue;  // the format pairs of moe_decode (moe.h)
  if (T < 1 || n_experts < 1 || n_experts > kMoeMaxExperts || top_k < 1 || top_k > n_experts ||
      top_k > kMoeMaxTopK || dim < kBK || dim % kBK || moe_inter < kBK || moe_inter % kBK ||
      shared_inter < kBK || shared_inter % kBK || ldx < dim || ldx % 8 || !aligned16(x) || !x ||
      !topk_idx || !topk_w || !y || ldy < dim || !workspace || !aligned16(workspace))
    return cudaErrorInvalidValue;
  for (int e = 0; e < n_experts; ++e) {
    if (!((ps.experts >> e) & 1u)) continue;  // not run by this pass
    const MlpWeights& m = w.experts[e];
    if (!m.gate || !m.up || !m.down || !aligned16(m.gate) || !aligned16(m.up) ||
        !aligned16(m.down) ||
        bad_quant_mlp(w.expert_format, w.expert_group, w.expert_scales[e], dim, moe_inter))
      return cudaErrorInvalidValue;
  }
  if (ps.shared && (!w.shared.gate || !w.shared.up || !w.shared.down ||
                    !aligned16(w.shared.gate) || !aligned16(w.shared.up) ||
                    !aligned16(w.shared.down)))
    return cudaErrorInvalidValue;

  const Plan p = make_plan(T, top_k, n_experts, dim, moe_inter, shared_inter);
  char* ws = static_cast<char*>(workspace);
  auto* off = reinterpret_cast<int32_t*>(ws + p.off_b);
  auto* n_tiles = reinterpret_cast<int32_t*>(ws + p.n_tiles_b);
  auto* perm = reinterpret_cast<int32_t*>(ws + p.perm_b);
  auto* tiles1 = reinterpret_cast<Tile*>(ws + p.tiles1_b);
  auto* tiles2 = reinterpret_cast<Tile*>(ws + p.tiles2_b);
  GemmArgs a{tiles1,
             n_tiles,
             off,
             perm,
             x,
             ldx,
             reinterpret_cast<uint16_t*>(ws + p.act_b),
             reinterpret_cast<uint16_t*>(ws + p.act_sh_b),
             reinterpret_cast<float*>(ws + p.out_b),
             T,
             dim,
             n_experts,
             top_k,
             moe_inter,
             shared_inter,
             ps.experts,
             ps.shared};

  cudaError_t e;
  if (ps.route) {
    moe_route_kernel<<<n_experts + 1, kRouteThreads, 0, stream>>>(
        topk_idx, T, n_experts, top_k, bm, p.ct_expert, p.ct_shared, p.ct_down, off, n_tiles, perm,
        tiles1, tiles2);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  const uint64_t everyone = n_experts == 64 ? ~0ull : (1ull << n_experts) - 1;
  if (ps.shared || (ps.experts & everyone)) {
    const int64_t g1 = max_tiles(p, 0, T, top_k, n_experts, bm);
    const int64_t g2 = max_tiles(p, 1, T, top_k, n_experts, bm);
    e = bm == 64 ? launch_gemms_fmt<2>(a, w, g1, g2, tiles2, n_tiles + 1, stream)
                 : launch_gemms_fmt<4>(a, w, g1, g2, tiles2, n_tiles + 1, stream);
    if (e != cudaSuccess) return e;
  }
  if (!ps.combine) return cudaSuccess;
  const int combine_threads =
      static_cast<int>(std::min<int64_t>(kCombineMaxThreads, ceil_div(dim / 4, kWarp) * kWarp));
  moe_combine_kernel<<<T, combine_threads, 0, stream>>>(topk_idx, topk_w, a.out, y, ldy, ep, T, dim,
                                                        n_experts, top_k);
  return cudaGetLastError();
}

}  // namespace dsocr
