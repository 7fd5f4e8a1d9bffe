// The rotate-half RoPE of 8 rotation pairs on the device (rope.h has the formula), shared by
// rope_qk_append_kv (rope.cu) and the decode attention that ropes q and the new key itself
// (decode_attention.cu). Internal to kernels/*.cu.
#pragma once

#include <cuda_runtime.h>

namespace dsocr::cuda {

constexpr int kRopeMaxHalf = 128;

struct RopeInvFreq {
  float v[kRopeMaxHalf];  // [head_dim / 2]: rope_inv_freq_ref, so the angles match the reference
};

// cos/sin of float32(pos)·inv_freq[j0 + e], e < 8, in FP32 as rope_ref.
__device__ __forceinline__ void rope_cos_sin8(const RopeInvFreq& inv, float pf, int j0,
                                              float (&c)[8], float (&s)[8]) {
#pragma unroll
  for (int e = 0; e < 8; ++e) sincosf(pf * inv.v[j0 + e], &s[e], &c[e]);
}

// y0 = x0·c − x1·s, y1 = x1·c + x0·s (x0: dims j, x1: dims j + head_dim/2).
__device__ __forceinline__ void rotate8(const float (&x0)[8], const float (&x1)[8],
                                        const float (&c)[8], const float (&s)[8], float (&y0)[8],
                                        float (&y1)[8]) {
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    y0[e] = x0[e] * c[e] - x1[e] * s[e];
    y1[e] = x1[e] * c[e] + x0[e] * s[e];
  }
}

}  // namespace dsocr::cuda
