// Flash-decoding for one query token (contract in causal_attention.h; CPU reference
// causal_attention_ref with T = 1, p0 = kv_len - 1).
//
// Napkin math: K+V = 2 · 10 heads · 128 · 2 B = 5 KB per position per layer; at kv_len 8192,
// 42 MB -> 9.9 µs at 4.25 TB/s; at 32768, 168 MB -> 39 µs. FLOPs: 4 per K/V value pair,
// negligible. So: bandwidth, enough blocks, and every load of a tile in flight at once.
//
// Split kernel, block (split s, head h), 256 threads: half a warp (16 lanes × 8 dims) covers one
// key, the 16 half-warps take keys g, g + 16, ... of a 64-key tile. Per tile all 8 K/V loads of a
// thread are issued first (row indices clamped to the live range, so the loads are unconditional
// and the compiler keeps them together), then scores (4 shuffles per key) -> shared memory (two
// buffers, one barrier per tile) -> tile max and sum per warp (each warp redundantly, same order)
// -> online-softmax rescale of the running max m, sum l and the per-half-warp p·V accumulators.
// Tiles per split = ceil(live tiles / splits), from *pos on the device: short contexts use one
// tile per block, long ones up to ceil(tiles / 32) (the grid is at most 32 splits per head).
// At the end the 16 half-warp accumulators are summed in shared memory (fixed order).
// Combine, in the same launch: each split block publishes its m, l and o, then counts itself done
// on the head's counter; the last one (threadfence + atomic, the "last block" pattern) merges the
// head's splits: M = max m_s, w_s = e^{m_s − M}, L = Σ l_s w_s, o[d] = Σ_s w_s o_s[d] / L, the
// splits in index order whichever block is last (deterministic), and resets the counter to 0.
// (A separate combine kernel was one more launch per layer; the change was not timed apart from
// the other decode-step changes of its session.)
#include <algorithm>

#include "kernels/causal_attention.h"
#include "kernels/cuda_vec.cuh"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kHeadDim = 128;
constexpr int kThreads =
    256;  // 16 half-warp key groups: 4 keys × (K, V) = 8 loads per thread per tile
constexpr int kC = kDecodeAttnTile;
constexpr int kMaxSplits = kDecodeAttnMaxSplits;
constexpr int kCombineGroups = kThreads / 128;  // split-sum groups of the in-block combine

// Live keys, tiles, and tiles per split: identical in both kernels.
struct Plan {
  int64_t kv_len;
  int64_t tiles;
  int64_t per_split;
};
__device__ __forceinline__ Plan plan(const int32_t* pos, int64_t max_kv_len, int max_splits) {
  Plan p;
  p.kv_len = static_cast<int64_t>(*pos) + 1;
  if (p.kv_len > max_kv_len) p.kv_len = max_kv_len;
  if (p.kv_len < 1) p.kv_len = 1;
  p.tiles = (p.kv_len + kC - 1) / kC;
  p.per_split = (p.tiles + max_splits - 1) / max_splits;
  return p;
}

template <int HD, int C>
__global__ void __launch_bounds__(kThreads)
    decode_attn_kernel(const uint16_t* __restrict__ q,  // [n_heads, HD], RoPE applied
                       PagedKv kv,  // rows [n_heads * HD] through the page table
                       const int32_t* __restrict__ pos, int64_t max_kv_len,
                       float* __restrict__ o_part,  // [n_heads, max_splits, HD]
                       float* __restrict__ ml_part,  // [n_heads, max_splits, 2]
                       unsigned* __restrict__ done,  // [n_heads] split counters, 0 between calls
                       uint16_t* __restrict__ out,   // [n_heads, HD]
                       int max_splits, float scale, int zero) {
  constexpr int LPK = HD / 8;        // lanes per key (16)
  constexpr int KPW = kWarp / LPK;   // keys per warp per load (2)
  constexpr int G = kThreads / LPK;  // key groups per block (16)
  constexpr int IT = C / G;          // keys per group per tile (4)
  static_assert(C % G == 0 && HD % 8 == 0 && kWarp % LPK == 0 && C <= 2 * kWarp, "shape");
  static_assert(kThreads % HD == 0 && kMaxSplits <= kThreads, "combine shape");
  __shared__ float s_score[2][C];
  __shared__ __align__(16) float s_red[G][HD];
  __shared__ float s_m[kMaxSplits], s_w[kMaxSplits], s_ML[2];
  __shared__ bool s_last;

  const int s = blockIdx.x, h = blockIdx.y;
  cuda::pdl_enter();
  const Plan pl = plan(pos, max_kv_len, max_splits);
  const int64_t t_begin = s * pl.per_split;
  const int64_t t_end = t_begin + pl.per_split < pl.tiles ? t_begin + pl.per_split : pl.tiles;
  if (t_begin >= t_end) return;  // beyond the live context: the combine never reads this split
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int g = warp * KPW + lane / LPK, d0 = (lane % LPK) * 8;

  const int64_t row = static_cast<int64_t>(gridDim.y) * HD;
  float qf[8];
  cuda::unpack8(cuda::ld_cached(q + h * HD + d0), qf);
  const uint16_t* kh = kv.k + static_cast<int64_t>(h) * HD + d0;
  const uint16_t* vh = kv.v + static_cast<int64_t>(h) * HD + d0;
  float m_run = -INFINITY, l_run = 0.f;
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int64_t tile = t_begin; tile < t_end; ++tile) {
    const int64_t base = tile * C;
    const int n = pl.kv_len - base < C ? static_cast<int>(pl.kv_len - base) : C;
    float* sc = s_score[tile & 1];
    uint4 kr[IT], vv[IT];
#pragma unroll
    for (int it = 0; it < IT; ++it) {
      const int i = min(g + G * it, n - 1);  // clamped: a valid row, result masked below
      const int64_t r = kv_row(kv, base + i) * row;
      kr[it] = cuda::ld_stream(kh + r);
      vv[it] = cuda::ld_stream(vh + r);
    }
    // `zero` is 0 at run time, unknown to the compiler: making the first score store depend on
    // every loaded vector keeps ptxas from sinking loads next to their uses (it did, measured:
    // one latency per key instead of one per tile).
    uint32_t dep = 0;
#pragma unroll
    for (int it = 0; it < IT; ++it) dep ^= kr[it].x ^ vv[it].x;
    const int off = static_cast<int>(dep) & zero;
#pragma unroll
    for (int it = 0; it < IT; ++it) {
      const int i = g + G * it;
      float kf[8], d = 0.f;
      cuda::unpack8(kr[it], kf);
#pragma unroll
      for (int e = 0; e < 8; ++e) d = fmaf(qf[e], kf[e], d);
#pragma unroll
      for (int o = LPK / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
      if (lane % LPK == 0) sc[i + off] = i < n ? d * scale : -INFINITY;
    }
    __syncthreads();  // sc complete; the other buffer is free (read before this barrier)
    float mt = fmaxf(sc[lane], C > kWarp ? sc[lane + kWarp] : -INFINITY);
    mt = cuda::warp_max(mt);
    const float m_new = fmaxf(m_run, mt);     // finite: every tile holds >= 1 live key
    const float alpha = expf(m_run - m_new);  // 0 on the first tile (m_run = -inf)
    float lt = expf(sc[lane] - m_new) + (C > kWarp ? expf(sc[lane + kWarp] - m_new) : 0.f);
    l_run = l_run * alpha + cuda::warp_sum(lt);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= alpha;
#pragma unroll
    for (int it = 0; it < IT; ++it) {
      const float p = expf(sc[g + G * it] - m_new);  // 0 for masked keys
      float vf[8];
      cuda::unpack8(vv[it], vf);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] = fmaf(p, vf[e], acc[e]);
    }
    m_run = m_new;
  }
  reinterpret_cast<float4*>(&s_red[g][d0])[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
  reinterpret_cast<float4*>(&s_red[g][d0])[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
  __syncthreads();
  const int64_t part = static_cast<int64_t>(h) * max_splits + s;
  for (int d = threadIdx.x; d < HD; d += kThreads) {
    float o = 0.f;
#pragma unroll
    for (int gg = 0; gg < G; ++gg) o += s_red[gg][d];
    o_part[part * HD + d] = o;
  }
  if (threadIdx.x == 0) {
    ml_part[2 * part] = m_run;
    ml_part[2 * part + 1] = l_run;
  }

  // ---- the last split block of the head combines ----
  const int ns = static_cast<int>((pl.tiles + pl.per_split - 1) / pl.per_split);
  __threadfence();  // this block's partials, visible before it counts itself done
  __syncthreads();
  if (threadIdx.x == 0) s_last = atomicAdd(done + h, 1u) == static_cast<unsigned>(ns - 1);
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  const float* ml = ml_part + 2 * static_cast<int64_t>(h) * max_splits;
  const float* op = o_part + static_cast<int64_t>(h) * max_splits * HD;
  const int tid = threadIdx.x;
  if (tid < ns) s_m[tid] = __ldcg(ml + 2 * tid), s_w[tid] = __ldcg(ml + 2 * tid + 1);  // m_s, l_s
  __syncthreads();
  if (warp == 0) {
    float m = -INFINITY;
    for (int i = lane; i < ns; i += kWarp) m = fmaxf(m, s_m[i]);
    m = cuda::warp_max(m);
    float l = 0.f;
    for (int i = lane; i < ns; i += kWarp) l += s_w[i] * expf(s_m[i] - m);
    l = cuda::warp_sum(l);
    if (lane == 0) s_ML[0] = m, s_ML[1] = l;
  }
  __syncthreads();
  if (tid < ns) s_w[tid] = expf(s_m[tid] - s_ML[0]);
  __syncthreads();
  const int grp = tid / HD, d = tid % HD;
  float o = 0.f;
#pragma unroll 4
  for (int i = grp; i < ns; i += kCombineGroups)
    o = fmaf(s_w[i], __ldcg(op + static_cast<int64_t>(i) * HD + d), o);
  s_red[grp][d] = o;
  __syncthreads();
  if (tid < HD) {
    float v = 0.f;
#pragma unroll
    for (int q2 = 0; q2 < kCombineGroups; ++q2) v += s_red[q2][tid];
    out[h * HD + tid] = cuda::f32_to_bf16(v / s_ML[1]);
  }
  if (tid == 0) done[h] = 0;  // every split of this call has counted: ready for the next call
}

int splits_for(int64_t max_kv_len) {
  return static_cast<int>(std::min<int64_t>((max_kv_len + kC - 1) / kC, kMaxSplits));
}
bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Workspace: o_part [n_heads, max_splits, HD], ml_part [n_heads, max_splits, 2] (FP32), then the
// per-head split counters.
struct Workspace {
  float* o_part;
  float* ml_part;
  unsigned* done;
};
Workspace carve(void* ws, int n_heads, int head_dim, int max_splits) {
  Workspace w;
  w.o_part = static_cast<float*>(ws);
  w.ml_part = w.o_part + static_cast<size_t>(n_heads) * max_splits * head_dim;
  w.done = reinterpret_cast<unsigned*>(w.ml_part + static_cast<size_t>(n_heads) * max_splits * 2);
  return w;
}

bool bad_args(const PagedKv& kv, const int32_t* pos, const void* q, const uint16_t* out,
              const void* workspace, int64_t max_kv_len, int n_heads, int head_dim) {
  return head_dim != kHeadDim || n_heads < 1 || n_heads > 65535 || max_kv_len < 1 || !pos ||
         !aligned16(q) || !aligned16(kv.k) || !aligned16(kv.v) || !kv.page_table ||
         kv.page_size < 1 || (kv.page_size & (kv.page_size - 1)) || !out ||
         !aligned16(workspace) || !workspace;
}


}  // namespace

size_t decode_attention_workspace_bytes(int n_heads, int head_dim, int64_t max_kv_len) {
  const size_t parts = static_cast<size_t>(n_heads) * splits_for(max_kv_len < 1 ? 1 : max_kv_len);
  return (parts * head_dim + parts * 2) * sizeof(float) + static_cast<size_t>(n_heads) * 4;
}

cudaError_t decode_attention_workspace_init(void* workspace, int n_heads, int head_dim,
                                            int64_t max_kv_len, cudaStream_t stream) {
  if (!workspace || n_heads < 1 || head_dim < 1 || max_kv_len < 1) return cudaErrorInvalidValue;
  const Workspace w = carve(workspace, n_heads, head_dim, splits_for(max_kv_len));
  return cudaMemsetAsync(w.done, 0, static_cast<size_t>(n_heads) * 4, stream);
}

cudaError_t decode_attention(const uint16_t* q, const PagedKv& kv, const int32_t* pos,
                             uint16_t* out, void* workspace, int64_t max_kv_len, int n_heads,
                             int head_dim, float scale, cudaStream_t stream) {
  if (bad_args(kv, pos, q, out, workspace, max_kv_len, n_heads, head_dim))
    return cudaErrorInvalidValue;
  const int max_splits = splits_for(max_kv_len);
  const Workspace w = carve(workspace, n_heads, kHeadDim, max_splits);
  return cuda::launch(decode_attn_kernel<kHeadDim, kC>, dim3(max_splits, n_heads), kThreads, 0,
                      stream, q, kv, pos, max_kv_len, w.o_part, w.ml_part, w.done, out, max_splits,
                      scale, 0);
}

}  // namespace dsocr
