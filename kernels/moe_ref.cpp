#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/linear.h"
#include "kernels/moe.h"
#include "kernels/parallel.h"

namespace dsocr {

void moe_router_ref(const float* x, const uint16_t* w_router, float* probs, int32_t* topk_idx,
                    float* topk_w, int64_t T, int64_t dim, int n_experts, int top_k,
                    float routed_scale) {
  linear_ref(x, w_router, nullptr, probs, T, n_experts, dim);  // logits, float32
  parallel_for(T, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* p = probs + t * n_experts;
      // Numerically stable float32 softmax.
      float m = p[0];
      for (int i = 1; i < n_experts; ++i) m = std::max(m, p[i]);
      float sum = 0.f;
      for (int i = 0; i < n_experts; ++i) {
        p[i] = std::exp(p[i] - m);
        sum += p[i];
      }
      const float inv = 1.f / sum;
      for (int i = 0; i < n_experts; ++i) p[i] *= inv;
      // Top-k by selection: each round takes the largest remaining probability; the strict '>'
      // keeps the lowest index among equal values.
      int32_t* idx = topk_idx + t * top_k;
      float* w = topk_w + t * top_k;
      for (int k = 0; k < top_k; ++k) {
        int best = -1;
        for (int i = 0; i < n_experts; ++i) {
          bool taken = false;
          for (int j = 0; j < k; ++j) taken |= (idx[j] == i);
          if (taken) continue;
          if (best < 0 || p[i] > p[best]) best = i;
        }
        idx[k] = best;
        w[k] = p[best] * routed_scale;
      }
    }
  });
}

size_t moe_scratch_floats(int64_t T, int64_t dim, int64_t moe_inter, int64_t shared_inter) {
  // xg, eo, acc [T, dim] each + the SwiGLU scratch of the larger MLP.
  return static_cast<size_t>(3 * T * dim) +
         swiglu_scratch_floats(T, std::max(moe_inter, shared_inter));
}

void moe_ref(const float* x, const int32_t* topk_idx, const float* topk_w,
             const MlpWeights* experts, const MlpWeights& shared, float* y, float* scratch,
             int64_t T, int64_t dim, int n_experts, int top_k, int64_t moe_inter,
             int64_t shared_inter) {
  float* xg = scratch;         // [T, dim] the token group of one expert
  float* eo = xg + T * dim;    // [T, dim] that expert's outputs
  float* acc = eo + T * dim;   // [T, dim] Σ_k w_k · expert_k(x)
  float* mlp = acc + T * dim;  // SwiGLU scratch
  std::fill(acc, acc + T * dim, 0.f);
  for (int ex = 0; ex < n_experts; ++ex) {
    // Gather the tokens routed to ex (at most one slot per token: the ids are distinct).
    int64_t n = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int k = 0; k < top_k; ++k)
        if (topk_idx[t * top_k + k] == ex) {
          std::memcpy(xg + n * dim, x + t * dim, sizeof(float) * dim);
          ++n;
        }
    if (n == 0) continue;
    swiglu_ref(xg, experts[ex], eo, mlp, n, dim, moe_inter);
    // Scatter-add in the same token order.
    int64_t r = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int k = 0; k < top_k; ++k)
        if (topk_idx[t * top_k + k] == ex) {
          const float w = topk_w[t * top_k + k];
          const float* o = eo + r * dim;
          float* a = acc + t * dim;
          for (int64_t i = 0; i < dim; ++i) a[i] += w * o[i];
          ++r;
        }
  }
  swiglu_ref(x, shared, y, mlp, T, dim, shared_inter);
  for (int64_t i = 0; i < T * dim; ++i) y[i] = acc[i] + y[i];
}

}  // namespace dsocr
