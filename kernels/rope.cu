// RoPE (rotate-half, NeoX layout) on q and k + the K/V cache append (contract in rope.h; CPU
// reference rope_ref.cpp, kv_append_ref in causal_attention_ref.cpp). Per decode token: 7.5 KB in,
// 7.5 KB out; a latency-bound launch. One block per token; a thread owns 8 rotation pairs (j, j +
// head_dim/2) of one head for q and k (cos/sin computed once for both) or one 16-byte chunk of v.
#include "kernels/cuda_vec.cuh"
#include "kernels/rope.h"

namespace dsocr {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxHalf = 128;

struct InvFreq {
  float v[kMaxHalf];  // [head_dim / 2]: rope_inv_freq_ref, so the angles match the reference
};

__device__ __forceinline__ void rotate8(const float (&x0)[8], const float (&x1)[8],
                                        const float (&c)[8], const float (&s)[8], float (&y0)[8],
                                        float (&y1)[8]) {
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    y0[e] = x0[e] * c[e] - x1[e] * s[e];
    y1[e] = x1[e] * c[e] + x0[e] * s[e];
  }
}

__global__ void __launch_bounds__(kThreads, 5)
    rope_qk_append_kv_kernel(const uint16_t* q, const uint16_t* __restrict__ k,
                             const uint16_t* __restrict__ v, int64_t ld_in,
                             const int32_t* __restrict__ pos, uint16_t* q_out, int64_t ld_q_out,
                             PagedKv kv, int64_t max_tokens, int n_heads, int head_dim,
                             InvFreq inv) {
  const int t = blockIdx.x;
  // Before the PDL wait (launch.cuh, "two kernels back"; contract in rope.h): the position, the
  // cache rows and the angles of this thread's first rotation unit, so the sincosf latency hides
  // under the QKV projection's tail.
  const int p = pos[t];
  const bool cache_ok = p >= 0 && p < max_tokens;
  const int half = head_dim / 2, per_head = half / 8;
  const int n_rope = n_heads * per_head, n_v = n_heads * head_dim / 8;
  const int64_t row = static_cast<int64_t>(n_heads) * head_dim;
  const float pf = static_cast<float>(p);
  uint16_t* k_row = cache_ok ? kv.k + kv_row(kv, p) * row : nullptr;
  uint16_t* v_row = cache_ok ? kv.v + kv_row(kv, p) * row : nullptr;
  float c[8], s[8];
  auto angles = [&](int j0) {
#pragma unroll
    for (int e = 0; e < 8; ++e) sincosf(pf * inv.v[j0 + e], &s[e], &c[e]);  // FP32, as rope_ref
  };
  const int u0 = threadIdx.x;
  if (u0 < n_rope) angles((u0 % per_head) * 8);
  cuda::pdl_enter();
  for (int u = u0; u < n_rope + n_v; u += kThreads) {
    if (u < n_rope) {
      const int h = u / per_head, j0 = (u % per_head) * 8;
      const int64_t o0 = static_cast<int64_t>(h) * head_dim + j0, o1 = o0 + half;
      const uint4 q0 = *reinterpret_cast<const uint4*>(q + t * ld_in + o0);
      const uint4 q1 = *reinterpret_cast<const uint4*>(q + t * ld_in + o1);
      uint4 k0{}, k1{};
      if (cache_ok) {
        k0 = *reinterpret_cast<const uint4*>(k + t * ld_in + o0);
        k1 = *reinterpret_cast<const uint4*>(k + t * ld_in + o1);
      }
      if (u != u0) angles(j0);  // a second pass (more than kThreads units per token)
      float a0[8], a1[8], b0[8], b1[8];
      cuda::unpack8(q0, a0);
      cuda::unpack8(q1, a1);
      rotate8(a0, a1, c, s, b0, b1);
      *reinterpret_cast<uint4*>(q_out + t * ld_q_out + o0) = cuda::pack8(b0);
      *reinterpret_cast<uint4*>(q_out + t * ld_q_out + o1) = cuda::pack8(b1);
      if (!cache_ok) continue;
      cuda::unpack8(k0, a0);
      cuda::unpack8(k1, a1);
      rotate8(a0, a1, c, s, b0, b1);
      *reinterpret_cast<uint4*>(k_row + o0) = cuda::pack8(b0);
      *reinterpret_cast<uint4*>(k_row + o1) = cuda::pack8(b1);
    } else if (cache_ok) {
      const int64_t o = static_cast<int64_t>(u - n_rope) * 8;
      *reinterpret_cast<uint4*>(v_row + o) =
          *reinterpret_cast<const uint4*>(v + t * ld_in + o);
    }
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

cudaError_t rope_qk_append_kv(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                              int64_t ld_in, const int32_t* pos, uint16_t* q_out, int64_t ld_q_out,
                              const PagedKv& kv, int64_t max_tokens, int T,
                              int n_heads, int head_dim, float theta, cudaStream_t stream) {
  const int64_t row = static_cast<int64_t>(n_heads) * head_dim;
  if (T < 1 || n_heads < 1 || head_dim < 16 || head_dim % 16 || head_dim > 2 * kMaxHalf ||
      ld_in < row || ld_in % 8 || ld_q_out < row || ld_q_out % 8 || !pos || !aligned16(q) ||
      !aligned16(k) || !aligned16(v) || !aligned16(q_out) || !aligned16(kv.k) ||
      !aligned16(kv.v) || !kv.page_table || kv.page_size < 1 || (kv.page_size & (kv.page_size - 1)))
    return cudaErrorInvalidValue;
  InvFreq inv{};
  rope_inv_freq_ref(inv.v, head_dim, theta);
  return cuda::launch(rope_qk_append_kv_kernel, T, kThreads, 0, stream, q, k, v, ld_in, pos, q_out,
                      ld_q_out, kv, max_tokens, n_heads, head_dim, inv);
}

}  // namespace dsocr
