// Decode-time MoE of the DeepSeek-V2 decoder on the GPU (contract in moe.h; CPU reference
// moe_ref.cpp; HF `MoEGate` + `DeepseekV2MoE.moe_infer`, ../shared/MODEL.md §7.1).
//
// Napkin math per MoE layer at T = 1 (H200, 4.25 TB/s): 6 experts × 3 × 896 × 1280 × 2 B = 41.3 MB
// + shared 3 × 1792 × 1280 × 2 B = 13.8 MB + router 0.16 MB = 55.2 MB -> 13 µs floor
// (PERF.md B4: "under 10 µs per MoE layer" is the target).
//
// Work items: the distinct experts chosen by the T tokens (slot (t, k) owns expert idx[t, k] when
// no earlier slot chose it) plus the shared experts cut into ceil(shared_inter / moe_inter) slices
// of moe_inter rows (gate/up) or columns (down), so every item is the same GEMV shape.
//  gate_up: grid (row blocks, slots); a warp computes R gate rows and the R matching up rows for
//           every token that chose the expert; act = bf16(silu(g)·u).
//  down:    grid (output row blocks); the block's warps share out the items, each accumulating
//           w_k · (lane-partial dots) in FP32 registers; one shuffle + shared-memory reduction in
//           a fixed order at the end (deterministic), then the epilogue.
#include <algorithm>

#include "kernels/moe.h"
#include "kernels/quant.cuh"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kGateUpWarps = 4;
constexpr int kDownWarps = 8;
constexpr int kRouterThreads = 1024;  // 32 warps × 2 experts: the whole [64, 1280] in one pass
static_assert(kMoeDecodeMaxT * kMoeMaxTopK <= 2 * 32, "WarpRouting holds 64 slots");

constexpr int unroll_for(int nw) {
  return nw <= 2 ? 5 : (nw <= 4 ? 3 : 2);
}
// gate/up row pairs per warp: 1 at every T. Output rows per down block: 2, and 4 at T = 1 with 4
// chunks per lane in flight, so one pass of loads covers a 896-wide row (112 chunks) and the 320
// blocks are about one wave (at 2 blocks per SM, 2 rows made 640 blocks = 2.4 waves: the down
// kernel took 10.6 µs of the step for 18 MB, 41 % of copy bandwidth). More rows per warp at T = 8
// needed 160-180 registers: one block per SM.
constexpr int gate_up_pairs(int) {
  return 1;
}
constexpr int down_rows(int m) {
  return m == 1 ? 4 : 2;
}
constexpr int down_unroll(int m) {
  return m == 1 ? 4 : unroll_for(down_rows(m));
}

// ---- Router ----
// Softmax over the logits of token t (FP32, max-subtracted) and its top_k, by one warp: lane l
// holds experts l and l + 32. Shared by moe_router_kernel and moe_topk_kernel.
__device__ __forceinline__ void softmax_topk(const float* logit, int t, int lane, float* probs,
                                             int32_t* topk_idx, float* topk_w, int n_experts,
                                             int top_k, float routed_scale) {
  const bool ok0 = lane < n_experts, ok1 = lane + kWarp < n_experts;
  const float v0 = ok0 ? logit[lane] : -INFINITY, v1 = ok1 ? logit[lane + kWarp] : -INFINITY;
  const float m = cuda::warp_max(fmaxf(v0, v1));
  const float e0 = ok0 ? expf(v0 - m) : 0.f, e1 = ok1 ? expf(v1 - m) : 0.f;
  const float inv = 1.f / cuda::warp_sum(e0 + e1);
  const float p0 = e0 * inv, p1 = e1 * inv;
  if (probs) {
    if (ok0) probs[t * n_experts + lane] = p0;
    if (ok1) probs[t * n_experts + lane + kWarp] = p1;
  }
  // Top-k by selection, as moe_router_ref: each round the largest remaining probability, equal
  // probabilities -> the lower expert id.
  bool taken0 = !ok0, taken1 = !ok1;
  for (int k = 0; k < top_k; ++k) {
    float bp = -1.f;
    int bi = INT32_MAX;
    if (!taken0) bp = p0, bi = lane;
    if (!taken1 && (p1 > bp)) bp = p1, bi = lane + kWarp;  // lane < lane + 32: '>' keeps lane
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float op = __shfl_xor_sync(0xffffffffu, bp, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (op > bp || (op == bp && oi < bi)) bp = op, bi = oi;
    }
    if (bi == lane) taken0 = true;
    if (bi == lane + kWarp) taken1 = true;
    if (lane == 0) {
      topk_idx[t * top_k + k] = bi;
      topk_w[t * top_k + k] = bp * routed_scale;
    }
  }
}

// One block per token: 32 warps × 2 expert rows, the whole [64, dim] weight in one pass of loads
// (issued before the PDL wait). The decode router; a prefill computes its logits with one GEMM
// (moe_topk).
__global__ void __launch_bounds__(kRouterThreads)
    moe_router_kernel(const uint16_t* __restrict__ x,  // [T, ldx]
                      int64_t ldx,
                      const uint16_t* __restrict__ wg,  // [n_experts, dim]
                      float* __restrict__ probs,        // [T, n_experts] or null
                      int32_t* __restrict__ topk_idx,   // [T, top_k]
                      float* __restrict__ topk_w,       // [T, top_k]
                      int dim, int n_experts, int top_k, float routed_scale) {
  __shared__ float s_logit[kMoeMaxExperts];
  const int t = blockIdx.x, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  constexpr int NW = kMoeMaxExperts / (kRouterThreads / kWarp);  // 2 experts per warp
  const uint16_t* rows[NW];
  unsigned row_mask = 0;
#pragma unroll
  for (int r = 0; r < NW; ++r) {
    const int e = warp * NW + r;
    rows[r] = wg + static_cast<int64_t>(e < n_experts ? e : 0) * dim;
    if (e < n_experts) row_mask |= 1u << r;
  }
  const uint16_t* xr[1] = {x + t * ldx};
  float acc[1][NW] = {};
  cuda::dot_rows<1, NW, unroll_for(NW), uint16_t, true>(rows, row_mask, xr, 1u, 0, dim / 8, lane,
                                                        acc);
  cuda::pdl_enter();
#pragma unroll
  for (int r = 0; r < NW; ++r) {
    const float v = cuda::warp_sum(acc[0][r]);
    if (lane == 0 && warp * NW + r < kMoeMaxExperts) s_logit[warp * NW + r] = v;
  }
  __syncthreads();
  if (warp == 0)
    softmax_topk(s_logit, t, lane, probs, topk_idx, topk_w, n_experts, top_k, routed_scale);
}

// Softmax + top-k of logits computed elsewhere: a warp per token.
constexpr int kTopkWarps = 8;
__global__ void __launch_bounds__(kTopkWarps* kWarp)
    moe_topk_kernel(const float* __restrict__ logits, int64_t ld, float* __restrict__ probs,
                    int32_t* __restrict__ topk_idx, float* __restrict__ topk_w, int T,
                    int n_experts, int top_k, float routed_scale) {
  cuda::pdl_enter();
  const int t = blockIdx.x * kTopkWarps + threadIdx.x / kWarp;
  if (t < T)
    softmax_topk(logits + t * ld, t, threadIdx.x % kWarp, probs, topk_idx, topk_w, n_experts, top_k,
                 routed_scale);
}

// ---- Routing as a warp sees it (no shared memory, no block barrier) ----
// Lane l holds the experts of slots l and l + 32 (slot = t·top_k + k; T·top_k <= 64); -1 past the
// last slot or for an id out of range.
struct WarpRouting {
  int e_lo, e_hi, n_slots;
};
__device__ __forceinline__ WarpRouting load_routing(const int32_t* idx, int n_slots, int n_experts,
                                                    int lane) {
  WarpRouting r{-1, -1, n_slots};
  if (lane < n_slots) r.e_lo = idx[lane];
  if (lane + kWarp < n_slots) r.e_hi = idx[lane + kWarp];
  if (r.e_lo < 0 || r.e_lo >= n_experts) r.e_lo = -1;
  if (r.e_hi < 0 || r.e_hi >= n_experts) r.e_hi = -1;
  return r;
}
// Expert of slot s (s warp-uniform).
__device__ __forceinline__ int expert_of(const WarpRouting& r, int s) {
  const int lo = __shfl_sync(0xffffffffu, r.e_lo, s % kWarp);
  const int hi = __shfl_sync(0xffffffffu, r.e_hi, s % kWarp);
  return s < kWarp ? lo : hi;
}
// Slots holding expert e (e warp-uniform, >= 0).
__device__ __forceinline__ uint64_t slots_of(const WarpRouting& r, int e) {
  const unsigned lo = __ballot_sync(0xffffffffu, r.e_lo == e);
  const unsigned hi = __ballot_sync(0xffffffffu, r.e_hi == e);
  return lo | (static_cast<uint64_t>(hi) << 32);
}
// Slots that hold the first occurrence of their expert (slot order).
__device__ __forceinline__ uint64_t first_slots(const WarpRouting& r, int lane) {
  bool dup_lo = false, dup_hi = false;
  for (int s = 0; s < r.n_slots; ++s) {
    const int e = expert_of(r, s);
    dup_lo |= s < lane && e == r.e_lo;
    dup_hi |= s < lane + kWarp && e == r.e_hi;
  }
  const unsigned lo = __ballot_sync(0xffffffffu, r.e_lo >= 0 && !dup_lo);
  const unsigned hi = __ballot_sync(0xffffffffu, r.e_hi >= 0 && !dup_hi);
  return lo | (static_cast<uint64_t>(hi) << 32);
}
// k of token t among the slots in `mask`, or -1.
__device__ __forceinline__ int slot_k(uint64_t mask, int t, int top_k) {
  const uint64_t bits = (mask >> (t * top_k)) & ((1ull << top_k) - 1);
  return bits ? __ffsll(static_cast<long long>(bits)) - 1 : -1;
}

// ---- gate + up + SiLU·mul ----
// FR / FS: the weight formats of the routed and of the shared experts (quant.cuh dot_rows_fmt;
// BF16 is cuda::dot_rows itself). A block is either routed or shared, so the branch between the
// two is block-uniform.
template <WeightFormat FR, WeightFormat FS, int M, int R>
__global__ void __launch_bounds__(kGateUpWarps* kWarp)
    moe_gate_up_kernel(const uint16_t* __restrict__ x,  // [T, ldx]
                       int64_t ldx,
                       const int32_t* __restrict__ idx,  // [T, top_k]
                       MoeDeviceWeights w,
                       uint16_t* __restrict__ act,     // [T, top_k, moe_inter]
                       uint16_t* __restrict__ act_sh,  // [T, shared_inter]
                       int T, int dim, int n_experts, int top_k, int moe_inter, int shared_inter) {
  constexpr int NW = 2 * R;
  // Shared slices first (blockIdx.y < n_sh): blocks are dispatched in y order, so the blocks that
  // can load their weights before the router's result are the first on the SMs; a routed block
  // waits for the routing before its first load.
  const int n_routed = T * top_k, n_sh = gridDim.y - n_routed;
  const bool routed = static_cast<int>(blockIdx.y) >= n_sh;
  const int slot = routed ? blockIdx.y - n_sh : n_routed + blockIdx.y;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const uint8_t* gate;
  const uint8_t* up;
  const uint16_t* gate_s = nullptr;
  const uint16_t* up_s = nullptr;
  int rows;
  uint16_t* out[M];
  unsigned tok_mask = 0;
  if (routed) {
    cuda::pdl_enter();  // the routing is the router's output; the shared slices load first
    const WarpRouting rt = load_routing(idx, n_routed, n_experts, lane);
    const int e = expert_of(rt, slot);
    if (e < 0) return;
    const uint64_t mask = slots_of(rt, e);
    if (mask & ((1ull << slot) - 1)) return;  // an earlier slot owns expert e
#pragma unroll
    for (int t = 0; t < M; ++t) {
      const int k = t < T ? slot_k(mask, t, top_k) : -1;
      out[t] = act;
      if (k >= 0) {
        out[t] = act + static_cast<int64_t>(t * top_k + k) * moe_inter;
        tok_mask |= 1u << t;
      }
    }
    gate = reinterpret_cast<const uint8_t*>(w.experts[e].gate);
    up = reinterpret_cast<const uint8_t*>(w.experts[e].up);
    gate_s = w.expert_scales[e].gate, up_s = w.expert_scales[e].up;
    rows = moe_inter;
  } else {
    const int row0 = (slot - n_routed) * moe_inter;
    rows = min(moe_inter, shared_inter - row0);
    gate = reinterpret_cast<const uint8_t*>(w.shared.gate) + cuda::row_bytes<FS>(dim) * row0;
    up = reinterpret_cast<const uint8_t*>(w.shared.up) + cuda::row_bytes<FS>(dim) * row0;
    const int64_t so = cuda::row_scales<FS>(dim, w.shared_group) * row0;
    if (w.shared_scales.gate) gate_s = w.shared_scales.gate + so, up_s = w.shared_scales.up + so;
#pragma unroll
    for (int t = 0; t < M; ++t)
      out[t] = act_sh + static_cast<int64_t>(t < T ? t : 0) * shared_inter + row0;
    tok_mask = (1u << T) - 1u;
  }
  const int j0 = (blockIdx.x * kGateUpWarps + warp) * R;
  if (j0 >= rows) return;

  const int64_t rb = routed ? cuda::row_bytes<FR>(dim) : cuda::row_bytes<FS>(dim);
  const int64_t rs = routed ? cuda::row_scales<FR>(dim, w.expert_group)
                            : cuda::row_scales<FS>(dim, w.shared_group);
  const uint8_t* wr[NW];
  const uint16_t* ws[NW];
  unsigned row_mask = 0;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int j = j0 + r < rows ? j0 + r : j0;
    wr[r] = gate + rb * j, ws[r] = gate_s ? gate_s + rs * j : nullptr;
    wr[R + r] = up + rb * j, ws[R + r] = up_s ? up_s + rs * j : nullptr;
    if (j0 + r < rows) row_mask |= (1u << r) | (1u << (R + r));
  }
  const uint16_t* xr[M];
#pragma unroll
  for (int t = 0; t < M; ++t) xr[t] = x + static_cast<int64_t>(t < T ? t : 0) * ldx;
  float acc[M][NW];
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < NW; ++r) acc[t][r] = 0.f;
  if (routed)
    cuda::dot_rows_fmt<FR, M, NW, unroll_for(NW), true>(
        wr, ws, row_mask, xr, tok_mask, 0, dim / cuda::kChunkValues<FR>, w.expert_group, lane, acc);
  else
    cuda::dot_rows_fmt<FS, M, NW, unroll_for(NW), true>(
        wr, ws, row_mask, xr, tok_mask, 0, dim / cuda::kChunkValues<FS>, w.shared_group, lane, acc);
  cuda::pdl_enter();
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < NW; ++r) acc[t][r] = cuda::warp_sum(acc[t][r]);
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (lane != t * R + r || !((tok_mask >> t) & 1u) || j0 + r >= rows) continue;
      const float g = acc[t][r], u = acc[t][R + r];
      out[t][j0 + r] = cuda::f32_to_bf16(cuda::swiglu(g, u));
    }
}

// ---- down + weighted combine + epilogue ----
template <WeightFormat FR, WeightFormat FS, int M, int R>
__global__ void __launch_bounds__(kDownWarps* kWarp, 2)  // <= 128 registers: 2 blocks per SM
    moe_down_kernel(const int32_t* __restrict__ idx,     // [T, top_k]
                    const float* __restrict__ topk_w,    // [T, top_k]
                    MoeDeviceWeights w,
                    const uint16_t* __restrict__ act,     // [T, top_k, moe_inter]
                    const uint16_t* __restrict__ act_sh,  // [T, shared_inter]
                    void* __restrict__ y,                 // [T, ldy]
                    int64_t ldy, GemvEpilogue ep, int T, int dim, int n_experts, int top_k,
                    int moe_inter, int shared_inter) {
  __shared__ float s_red[kDownWarps][M][R];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  // The routing (idx, topk_w) is the router's output, two kernels back: read before the wait, with
  // the weight loads of the first item (launch.cuh, "two kernels back"); act waits.
  // Items: the distinct experts in first-slot order, then the shared slices; warp w takes items
  // w, w + kDownWarps, ...
  const WarpRouting rt = load_routing(idx, T * top_k, n_experts, lane);
  const uint64_t first = first_slots(rt, lane);
  const int n_unique = __popcll(static_cast<long long>(first));
  const int n_items = n_unique + (shared_inter + moe_inter - 1) / moe_inter;
  const int i0 = blockIdx.x * R;

  float tot[M][R];
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < R; ++r) tot[t][r] = 0.f;
  unsigned row_mask = 0;
#pragma unroll
  for (int r = 0; r < R; ++r)
    if (i0 + r < dim) row_mask |= 1u << r;

  for (int u = warp; u < n_items; u += kDownWarps) {
    const uint8_t* wr[R];
    const uint16_t* ws[R];
    const uint16_t* xr[M];
    float wt[M];
    unsigned tok_mask = 0;
    const bool routed = u < n_unique;
    int kc;
    if (routed) {
      uint64_t f = first;
      for (int i = 0; i < u; ++i) f &= f - 1;  // the u-th set bit
      const int e = expert_of(rt, __ffsll(static_cast<long long>(f)) - 1);
      const uint64_t mask = slots_of(rt, e);
      const uint8_t* down = reinterpret_cast<const uint8_t*>(w.experts[e].down);
      const uint16_t* down_s = w.expert_scales[e].down;
      const int64_t rb = cuda::row_bytes<FR>(moe_inter);
      const int64_t rs = cuda::row_scales<FR>(moe_inter, w.expert_group);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t row = i0 + r < dim ? i0 + r : i0;
        wr[r] = down + rb * row, ws[r] = down_s ? down_s + rs * row : nullptr;
      }
#pragma unroll
      for (int t = 0; t < M; ++t) {
        const int k = t < T ? slot_k(mask, t, top_k) : -1;
        xr[t] = act;
        wt[t] = 0.f;
        if (k >= 0) {
          xr[t] = act + static_cast<int64_t>(t * top_k + k) * moe_inter;
          wt[t] = topk_w[t * top_k + k];
          tok_mask |= 1u << t;
        }
      }
      kc = moe_inter / cuda::kChunkValues<FR>;
    } else {
      // Shared slice: columns [col0, col0 + moe_inter) of every down row (INT4: col0 is a
      // multiple of the group, the shape rule of moe_decode's quantized PRECOND).
      const int col0 = (u - n_unique) * moe_inter;
      const int64_t rb = cuda::row_bytes<FS>(shared_inter);
      const int64_t rs = cuda::row_scales<FS>(shared_inter, w.shared_group);
      const int64_t cs = FS == WeightFormat::kInt4 ? col0 / w.shared_group : 0;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t row = i0 + r < dim ? i0 + r : i0;
        wr[r] =
            reinterpret_cast<const uint8_t*>(w.shared.down) + rb * row + cuda::row_bytes<FS>(col0);
        ws[r] = w.shared_scales.down ? w.shared_scales.down + rs * row + cs : nullptr;
      }
#pragma unroll
      for (int t = 0; t < M; ++t) {
        xr[t] = act_sh + static_cast<int64_t>(t < T ? t : 0) * shared_inter + col0;
        wt[t] = 1.f;
      }
      tok_mask = (1u << T) - 1u;
      kc = min(moe_inter, shared_inter - col0) / cuda::kChunkValues<FS>;
    }
    float p[M][R];
#pragma unroll
    for (int t = 0; t < M; ++t)
#pragma unroll
      for (int r = 0; r < R; ++r) p[t][r] = 0.f;
    if (routed)
      cuda::dot_rows_fmt<FR, M, R, down_unroll(M), true>(wr, ws, row_mask, xr, tok_mask, 0, kc,
                                                         w.expert_group, lane, p);
    else
      cuda::dot_rows_fmt<FS, M, R, down_unroll(M), true>(wr, ws, row_mask, xr, tok_mask, 0, kc,
                                                         w.shared_group, lane, p);
#pragma unroll
    for (int t = 0; t < M; ++t)
#pragma unroll
      for (int r = 0; r < R; ++r) tot[t][r] = fmaf(wt[t], p[t][r], tot[t][r]);
  }
  cuda::pdl_enter();  // warps without an item have not waited yet
#pragma unroll
  for (int t = 0; t < M; ++t)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float v = cuda::warp_sum(tot[t][r]);
      if (lane == 0) s_red[warp][t][r] = v;
    }
  __syncthreads();
  if (threadIdx.x >= M * R) return;
  const int t = threadIdx.x / R, r = threadIdx.x % R;
  if (t >= T || i0 + r >= dim) return;
  float v = 0.f;
#pragma unroll
  for (int q = 0; q < kDownWarps; ++q) v += s_red[q][t][r];
  const int64_t o = t * ldy + i0 + r;
  cuda::store_epilogue(y, o, v, ep);
}

size_t align256(size_t b) {
  return (b + 255) / 256 * 256;
}
bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

int bucket(int T) {
  return T <= 1 ? 1 : T <= 2 ? 2 : T <= 4 ? 4 : 8;
}

// Workspace layout: act [T, top_k, moe_inter] then act_sh [T, shared_inter], BF16.
void split_workspace(const void* ws, int T, int top_k, int moe_inter, uint16_t** act,
                     uint16_t** act_sh) {
  *act = static_cast<uint16_t*>(const_cast<void*>(ws));
  *act_sh = reinterpret_cast<uint16_t*>(static_cast<char*>(const_cast<void*>(ws)) +
                                        align256(sizeof(uint16_t) * T * top_k * moe_inter));
}

bool bad_format(WeightFormat f, int group, int64_t n, int64_t k) {
  return f != WeightFormat::kBf16 && !check_quant_shape(f, n, k, group).ok();
}
bool bad_scales(WeightFormat f, const MlpScales& s) {
  return f != WeightFormat::kBf16 && (!s.gate || !s.up || !s.down);
}

bool bad_common(int T, int dim, int n_experts, int top_k, int moe_inter, int shared_inter,
                const MoeDeviceWeights& w, const void* workspace) {
  if (T < 1 || T > kMoeDecodeMaxT || n_experts < 1 || n_experts > kMoeMaxExperts || top_k < 1 ||
      top_k > kMoeMaxTopK || dim < 8 || dim % 8 || moe_inter < 8 || moe_inter % 8 ||
      shared_inter < 8 || shared_inter % 8 || !aligned16(workspace) || !workspace)
    return true;
  // Quantized: the shape rules for every weight, and for the shared slices of moe_inter columns.
  const WeightFormat fr = w.expert_format, fs = w.shared_format;
  if (!moe_decode_supports(fr, fs) || bad_format(fr, w.expert_group, moe_inter, dim) ||
      bad_format(fr, w.expert_group, dim, moe_inter) ||
      bad_format(fs, w.shared_group, shared_inter, dim) ||
      bad_format(fs, w.shared_group, dim, shared_inter) ||
      bad_format(fs, w.shared_group, dim, moe_inter) || bad_scales(fs, w.shared_scales))
    return true;
  for (int e = 0; e < n_experts; ++e) {
    const MlpWeights& m = w.experts[e];
    if (!m.gate || !m.up || !m.down || !aligned16(m.gate) || !aligned16(m.up) ||
        !aligned16(m.down) || bad_scales(fr, w.expert_scales[e]))
      return true;
  }
  return !w.shared.gate || !w.shared.up || !w.shared.down || !aligned16(w.shared.gate) ||
         !aligned16(w.shared.up) || !aligned16(w.shared.down);
}

// Runs go(kernel<FR, FS>) for the (routed, shared) format pair of w (moe_decode_supports).
template <template <WeightFormat, WeightFormat> class K, typename Go>
cudaError_t by_formats(const MoeDeviceWeights& w, const Go& go) {
  using F = WeightFormat;
  if (w.expert_format == F::kBf16) return go(K<F::kBf16, F::kBf16>::kernel);
  if (w.expert_format == F::kInt8) return go(K<F::kInt8, F::kInt8>::kernel);
  if (w.shared_format == F::kInt4) return go(K<F::kInt4, F::kInt4>::kernel);
  return go(K<F::kInt4, F::kInt8>::kernel);
}
template <int M, int R>
struct GateUpK {
  template <WeightFormat FR, WeightFormat FS>
  struct K {
    static constexpr auto kernel = moe_gate_up_kernel<FR, FS, M, R>;
  };
};
template <int M, int R>
struct DownK {
  template <WeightFormat FR, WeightFormat FS>
  struct K {
    static constexpr auto kernel = moe_down_kernel<FR, FS, M, R>;
  };
};

template <int M>
cudaError_t launch_gate_up(const uint16_t* x, int64_t ldx, const int32_t* idx,
                           const MoeDeviceWeights& w, uint16_t* act, uint16_t* act_sh, int T,
                           int dim, int n_experts, int top_k, int moe_inter, int shared_inter,
                           cudaStream_t stream) {
  constexpr int RP = gate_up_pairs(M);
  const int n_sh = (shared_inter + moe_inter - 1) / moe_inter;
  const dim3 grid((moe_inter + kGateUpWarps * RP - 1) / (kGateUpWarps * RP), T * top_k + n_sh);
  return by_formats<GateUpK<M, RP>::template K>(w, [&](auto kernel) {
    return cuda::launch(kernel, grid, kGateUpWarps * kWarp, 0, stream, x, ldx, idx, w, act, act_sh,
                        T, dim, n_experts, top_k, moe_inter, shared_inter);
  });
}

template <int M>
cudaError_t launch_down(const int32_t* idx, const float* topk_w, const MoeDeviceWeights& w,
                        const uint16_t* act, const uint16_t* act_sh, void* y, int64_t ldy,
                        GemvEpilogue ep, int T, int dim, int n_experts, int top_k, int moe_inter,
                        int shared_inter, cudaStream_t stream) {
  constexpr int RD = down_rows(M);
  return by_formats<DownK<M, RD>::template K>(w, [&](auto kernel) {
    return cuda::launch(kernel, (dim + RD - 1) / RD, kDownWarps * kWarp, 0, stream, idx, topk_w, w,
                        act, act_sh, y, ldy, ep, T, dim, n_experts, top_k, moe_inter, shared_inter);
  });
}

}  // namespace

bool moe_decode_supports(WeightFormat experts, WeightFormat shared) {
  using F = WeightFormat;
  return experts == shared ? true : experts == F::kInt4 && shared == F::kInt8;
}

cudaError_t moe_router(const uint16_t* x, int64_t ldx, const uint16_t* w_router, float* probs,
                       int32_t* topk_idx, float* topk_w, int T, int dim, int n_experts, int top_k,
                       float routed_scale, cudaStream_t stream) {
  if (T < 1 || n_experts < 1 || n_experts > kMoeMaxExperts || top_k < 1 || top_k > n_experts ||
      top_k > kMoeMaxTopK || dim < 8 || dim % 8 || ldx < dim || ldx % 8 || !aligned16(x) ||
      !aligned16(w_router) || !topk_idx || !topk_w)
    return cudaErrorInvalidValue;
  return cuda::launch(moe_router_kernel, T, kRouterThreads, 0, stream, x, ldx, w_router, probs,
                      topk_idx, topk_w, dim, n_experts, top_k, routed_scale);
}

cudaError_t moe_topk(const float* logits, int64_t ld, float* probs, int32_t* topk_idx,
                     float* topk_w, int T, int n_experts, int top_k, float routed_scale,
                     cudaStream_t stream) {
  if (T < 1 || n_experts < 1 || n_experts > kMoeMaxExperts || top_k < 1 || top_k > n_experts ||
      top_k > kMoeMaxTopK || ld < n_experts || !logits || !topk_idx || !topk_w)
    return cudaErrorInvalidValue;
  return cuda::launch(moe_topk_kernel, (T + kTopkWarps - 1) / kTopkWarps, kTopkWarps * kWarp, 0,
                      stream, logits, ld, probs, topk_idx, topk_w, T, n_experts, top_k,
                      routed_scale);
}

size_t moe_decode_workspace_bytes(int T, int top_k, int64_t moe_inter, int64_t shared_inter) {
  return align256(sizeof(uint16_t) * T * top_k * moe_inter) +
         align256(sizeof(uint16_t) * T * shared_inter);
}

cudaError_t moe_decode_gate_up(const uint16_t* x, int64_t ldx, const int32_t* topk_idx,
                               const MoeDeviceWeights& w, void* workspace, int T, int dim,
                               int n_experts, int top_k, int moe_inter, int shared_inter,
                               cudaStream_t stream) {
  if (bad_common(T, dim, n_experts, top_k, moe_inter, shared_inter, w, workspace) || ldx < dim ||
      ldx % 8 || !aligned16(x) || !topk_idx)
    return cudaErrorInvalidValue;
  uint16_t *act, *act_sh;
  split_workspace(workspace, T, top_k, moe_inter, &act, &act_sh);
  switch (bucket(T)) {
    case 1:
      return launch_gate_up<1>(x, ldx, topk_idx, w, act, act_sh, T, dim, n_experts, top_k,
                               moe_inter, shared_inter, stream);
    case 2:
      return launch_gate_up<2>(x, ldx, topk_idx, w, act, act_sh, T, dim, n_experts, top_k,
                               moe_inter, shared_inter, stream);
    case 4:
      return launch_gate_up<4>(x, ldx, topk_idx, w, act, act_sh, T, dim, n_experts, top_k,
                               moe_inter, shared_inter, stream);
    default:
      return launch_gate_up<8>(x, ldx, topk_idx, w, act, act_sh, T, dim, n_experts, top_k,
                               moe_inter, shared_inter, stream);
  }
}

cudaError_t moe_decode_down(const int32_t* topk_idx, const float* topk_w, const MoeDeviceWeights& w,
                            void* y, int64_t ldy, GemvEpilogue ep, const void* workspace, int T,
                            int dim, int n_experts, int top_k, int moe_inter, int shared_inter,
                            cudaStream_t stream) {
  if (bad_common(T, dim, n_experts, top_k, moe_inter, shared_inter, w, workspace) || ldy < dim ||
      !topk_idx || !topk_w || !y)
    return cudaErrorInvalidValue;
  uint16_t *act, *act_sh;
  split_workspace(workspace, T, top_k, moe_inter, &act, &act_sh);
  switch (bucket(T)) {
    case 1:
      return launch_down<1>(topk_idx, topk_w, w, act, act_sh, y, ldy, ep, T, dim, n_experts, top_k,
                            moe_inter, shared_inter, stream);
    case 2:
      return launch_down<2>(topk_idx, topk_w, w, act, act_sh, y, ldy, ep, T, dim, n_experts, top_k,
                            moe_inter, shared_inter, stream);
    case 4:
      return launch_down<4>(topk_idx, topk_w, w, act, act_sh, y, ldy, ep, T, dim, n_experts, top_k,
                            moe_inter, shared_inter, stream);
    default:
      return launch_down<8>(topk_idx, topk_w, w, act, act_sh, y, ldy, ep, T, dim, n_experts, top_k,
                            moe_inter, shared_inter, stream);
  }
}

cudaError_t moe_decode(const uint16_t* x, int64_t ldx, const int32_t* topk_idx, const float* topk_w,
                       const MoeDeviceWeights& w, void* y, int64_t ldy, GemvEpilogue ep,
                       void* workspace, int T, int dim, int n_experts, int top_k, int moe_inter,
                       int shared_inter, cudaStream_t stream) {
  // Check everything before the first launch, so a bad argument launches nothing.
  if (bad_common(T, dim, n_experts, top_k, moe_inter, shared_inter, w, workspace) || ldx < dim ||
      ldx % 8 || !aligned16(x) || !topk_idx || !topk_w || !y || ldy < dim)
    return cudaErrorInvalidValue;
  const cudaError_t e = moe_decode_gate_up(x, ldx, topk_idx, w, workspace, T, dim, n_experts, top_k,
                                           moe_inter, shared_inter, stream);
  if (e != cudaSuccess) return e;
  return moe_decode_down(topk_idx, topk_w, w, y, ldy, ep, workspace, T, dim, n_experts, top_k,
                         moe_inter, shared_inter, stream);
}

}  // namespace dsocr
