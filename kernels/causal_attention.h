// Causal multi-head attention over a float32 KV cache (../shared/MODEL.md §7.1: MHA, 10 heads of
// 128, scale 1/sqrt(128), RoPE already applied to q and k). One call handles a block of T new
// tokens at positions p0 .. p0+T-1: prefill (p0 = 0, T = prompt), chunked prefill, decode (T = 1).
// Per layer, the cache holds K and V separately, [max_tokens, n_heads, head_dim] each; a token's
// K/V live in row `position`. Order per layer: kv_append_ref (rows p0..p0+T-1), then
// causal_attention_ref.
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstdint>

namespace dsocr {

// Copies the new tokens' K and V into cache rows p0 .. p0+T-1.
// PRECOND: all pointers non-null; 0 <= p0 and p0 + T <= max_tokens (caller checks the capacity).
void kv_append_ref(const float* k_new,  // [T, n_heads, head_dim]
                   const float* v_new,  // [T, n_heads, head_dim]
                   float* k_cache,      // [max_tokens, n_heads, head_dim]
                   float* v_cache,      // [max_tokens, n_heads, head_dim]
                   int64_t T, int64_t p0, int n_heads, int head_dim);

// out[t, h] = softmax_j(scale · q[t, h] · k_cache[j, h]) · v_cache[j, h] over j = 0 .. p0 + t.
// Scores, softmax (max-subtracted, float32 exp) and the weighted sum of V all in float32; the
// normalisation by the softmax denominator is applied once at the end. `scale` multiplies the
// scores (the model passes 1/sqrt(head_dim); HF divides by sqrt(head_dim): within 1 ulp).
// Each (query, head) is computed in a fixed order, so prefill in one block, in chunks, or token
// by token gives bitwise-equal results.
// PRECOND: cache rows 0 .. p0+T-1 are filled (kv_append_ref first); out does not alias q or the
// cache; T >= 1, p0 >= 0. Multithreaded over (query, head) pairs; per-thread grow-only score
// buffer (p0 + T floats).
void causal_attention_ref(const float* q,        // [T, n_heads, head_dim]
                          const float* k_cache,  // [>= p0 + T, n_heads, head_dim]
                          const float* v_cache,  // [>= p0 + T, n_heads, head_dim]
                          float* out,            // [T, n_heads, head_dim] (= [T, n_heads*head_dim])
                          int64_t T, int64_t p0, int n_heads, int head_dim, float scale);

}  // namespace dsocr
