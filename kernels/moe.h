// Mixture-of-experts block of the DeepSeek-V2 decoder, layers 1..11 (../shared/MODEL.md §7.1,
// HF `MoEGate` + `DeepseekV2MoE.moe_infer`):
//   logits = x · Wgᵀ (float32) [T, 64];  p = softmax(logits) (float32)
//   top-6 of p per token, weights = p * routed_scale (1.0), NO renormalisation (sum < 1)
//   y = Σ_k w_k · expert_{idx_k}(x)  +  shared_experts(x)
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/swiglu.h"

namespace dsocr {

// Router: probs = softmax(x · w_routerᵀ), then top_k per token.
// Tie-breaking (torch.topk leaves it unspecified): higher probability first, equal
// probabilities by lower expert index. Output per token is sorted by descending probability.
// PRECOND: all pointers non-null; 1 <= top_k <= n_experts. Multithreaded over tokens.
void moe_router_ref(const float* x,            // [T, dim]
                    const uint16_t* w_router,  // [n_experts, dim] BF16 (mlp.gate.weight)
                    float* probs,              // [T, n_experts] out: softmax probabilities
                    int32_t* topk_idx,         // [T, top_k] out: expert ids
                    float* topk_w,             // [T, top_k] out: probs * routed_scale
                    int64_t T, int64_t dim, int n_experts, int top_k, float routed_scale);

// Floats of scratch moe_ref needs.
size_t moe_scratch_floats(int64_t T, int64_t dim, int64_t moe_inter, int64_t shared_inter);

// Routed experts + shared experts. Tokens are grouped by expert; each selected expert's SwiGLU
// runs once over its token group; the routed sum Σ_k w_k·expert(x) is accumulated in float32
// (experts in ascending id order), then the shared-expert output is added.
// experts[e] binds expert e's weights (from model.layers.N.mlp.experts.e.*); only the experts
// that appear in topk_idx are read. shared.* are the fused shared experts (inter = shared_inter).
// PRECOND: topk_idx values in [0, n_experts) and distinct per token (moe_router_ref output);
// y does not alias x or scratch; scratch holds moe_scratch_floats(...) floats.
void moe_ref(
    const float* x,             // [T, dim]
    const int32_t* topk_idx,    // [T, top_k]
    const float* topk_w,        // [T, top_k]
    const MlpWeights* experts,  // [n_experts]: gate/up [moe_inter, dim], down [dim, moe_inter]
    const MlpWeights& shared,   // gate/up [shared_inter, dim], down [dim, shared_inter]
    float* y,                   // [T, dim]
    float* scratch,             // [moe_scratch_floats(T, dim, moe_inter, shared_inter)]
    int64_t T, int64_t dim, int n_experts, int top_k, int64_t moe_inter, int64_t shared_inter);

}  // namespace dsocr
