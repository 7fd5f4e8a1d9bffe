#include "runtime/decoder_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/causal_attention.h"
#include "kernels/embed.h"
#include "kernels/linear.h"
#include "kernels/moe.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

namespace dsocr {

CpuDecoder::CpuDecoder(const ModelConfig& cfg, const DecoderWeights& w, int64_t max_tokens)
    : cfg_(cfg), w_(w), max_tokens_(std::min<int64_t>(max_tokens, cfg.max_pos)) {
  const size_t per_layer = static_cast<size_t>(max_tokens_) * cfg.dim;
  k_cache_.resize(per_layer * cfg.n_layers);
  v_cache_.resize(per_layer * cfg.n_layers);
}

void CpuDecoder::embed(const int32_t* ids, int64_t T, float* out) const {
  embed_ref(ids, w_.embed, out, T, cfg_.dim);
}

namespace {

void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// Copy rows of h at the tap's positions that fall in [p0, p0+T) into slot `layer` of the tap.
void tap_copy(HiddenTap* tap, int layer, const float* h, int64_t p0, int64_t T, int dim) {
  if (!tap) return;
  const size_t P = tap->positions.size();
  for (size_t i = 0; i < P; ++i) {
    int64_t p = tap->positions[i];
    if (p < p0 || p >= p0 + T) continue;
    std::memcpy(&tap->out[(static_cast<size_t>(layer) * P + i) * dim], h + (p - p0) * dim,
                sizeof(float) * dim);
  }
}

}  // namespace

Status CpuDecoder::forward(const float* embeds, int64_t T, float* logits_last, HiddenTap* tap) {
  if (T < 1) return Status::Error("decoder forward: no tokens to run");
  if (pos_ + T > max_tokens_)
    return Status::Error(strfmt("sequence of %lld tokens exceeds the KV cache of %lld tokens "
                                "(context limit %d); lower --max-tokens or use a smaller --mode",
                                static_cast<long long>(pos_ + T),
                                static_cast<long long>(max_tokens_), cfg_.max_pos));
  const int dim = cfg_.dim;
  const size_t td = static_cast<size_t>(T) * dim;
  grow(h_, td);
  grow(x_, td);
  grow(q_, td);
  grow(k_, td);
  grow(v_, td);
  grow(att_, td);
  grow(delta_, td);
  grow(scratch_, std::max(swiglu_scratch_floats(T, cfg_.dense_inter),
                          moe_scratch_floats(T, dim, cfg_.moe_inter, cfg_.shared_inter())));
  grow(probs_, static_cast<size_t>(T) * cfg_.n_experts);
  grow(topk_w_, static_cast<size_t>(T) * cfg_.top_k);
  if (topk_idx_.size() < static_cast<size_t>(T) * cfg_.top_k) topk_idx_.resize(T * cfg_.top_k);
  pos_ids_.resize(T);
  for (int64_t t = 0; t < T; ++t) pos_ids_[t] = static_cast<int32_t>(pos_ + t);
  if (tap) tap->out.assign((cfg_.n_layers + 1) * tap->positions.size() * dim, 0.f);

  std::memcpy(h_.data(), embeds, td * sizeof(float));
  // x = input_layernorm(h) for layer 0; every later norm is fused with the residual add.
  rmsnorm_ref(h_.data(), w_.layers[0].in_norm, x_.data(), T, dim, cfg_.rms_eps);
  for (int l = 0; l < cfg_.n_layers; ++l) layer(l, T, tap);
  tap_copy(tap, cfg_.n_layers, h_.data(), pos_, T, dim);

  // Final norm and lm_head on the last position only.
  const float* h_last = h_.data() + (T - 1) * dim;
  rmsnorm_ref(h_last, w_.final_norm, x_.data(), 1, dim, cfg_.rms_eps);
  linear_ref(x_.data(), w_.lm_head, nullptr, logits_last, 1, cfg_.vocab, dim);
  pos_ += T;
  return Status::Ok();
}

// One decoder layer on T tokens. On entry x_ = input_layernorm(h_); on exit h_ is the residual
// stream leaving the layer and x_ = the next layer's input_layernorm(h_) (or untouched after the
// last layer).
void CpuDecoder::layer(int l, int64_t T, HiddenTap* tap) {
  const DecoderLayerWeights& w = w_.layers[l];
  const int dim = cfg_.dim;
  const size_t cache_off = static_cast<size_t>(l) * max_tokens_ * dim;
  tap_copy(tap, l, h_.data(), pos_, T, dim);

  // Attention: q, k, v projections, RoPE, append K/V, causal MHA, o_proj.
  linear_ref(x_.data(), w.q, nullptr, q_.data(), T, dim, dim);
  linear_ref(x_.data(), w.k, nullptr, k_.data(), T, dim, dim);
  linear_ref(x_.data(), w.v, nullptr, v_.data(), T, dim, dim);
  rope_ref(q_.data(), pos_ids_.data(), T, cfg_.n_heads, cfg_.head_dim, cfg_.rope_theta);
  rope_ref(k_.data(), pos_ids_.data(), T, cfg_.n_heads, cfg_.head_dim, cfg_.rope_theta);
  kv_append_ref(k_.data(), v_.data(), k_cache_.data() + cache_off, v_cache_.data() + cache_off, T,
                pos_, cfg_.n_heads, cfg_.head_dim);
  causal_attention_ref(q_.data(), k_cache_.data() + cache_off, v_cache_.data() + cache_off,
                       att_.data(), T, pos_, cfg_.n_heads, cfg_.head_dim,
                       1.0f / std::sqrt(static_cast<float>(cfg_.head_dim)));
  linear_ref(att_.data(), w.o, nullptr, delta_.data(), T, dim, dim);
  add_rmsnorm_ref(h_.data(), delta_.data(), w.post_norm, x_.data(), T, dim, cfg_.rms_eps);

  // MLP: dense SwiGLU (layer 0) or MoE (router, top-6 routed experts, shared experts).
  if (!w.moe) {
    swiglu_ref(x_.data(), w.dense, delta_.data(), scratch_.data(), T, dim, cfg_.dense_inter);
  } else {
    moe_router_ref(x_.data(), w.router, probs_.data(), topk_idx_.data(), topk_w_.data(), T, dim,
                   cfg_.n_experts, cfg_.top_k, cfg_.routed_scale);
    moe_ref(x_.data(), topk_idx_.data(), topk_w_.data(), w.experts.data(), w.shared,
            delta_.data(), scratch_.data(), T, dim, cfg_.n_experts, cfg_.top_k, cfg_.moe_inter,
            cfg_.shared_inter());
  }
  if (l + 1 < cfg_.n_layers) {
    add_rmsnorm_ref(h_.data(), delta_.data(), w_.layers[l + 1].in_norm, x_.data(), T, dim,
                    cfg_.rms_eps);
  } else {
    for (size_t i = 0, n = static_cast<size_t>(T) * dim; i < n; ++i) h_[i] += delta_[i];
  }
}

}  // namespace dsocr
