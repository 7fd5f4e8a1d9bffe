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

// =================================================================================================
// CUDA launchers (kernels/decode_attention.cu): decode attention, one new token (T = 1) at
// position p over a BF16 contiguous KV cache, flash-decoding (Dao et al. 2023): the keys 0..p are
// cut into tiles of kDecodeAttnTile; each (split, head) block runs an online softmax over a range
// of tiles and writes its partial max, sum and unnormalised output (FP32); the head's last split
// block merges them by their log-sum-exp (one launch). The grid depends only on max_kv_len (a host bound); the live length,
// and from it the tiles per split, only on *pos (device), so one captured graph serves every step.
// =================================================================================================
#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/kv_pages.h"

namespace dsocr {

constexpr int kDecodeAttnTile = 64;        // keys per tile (one pass of loads)
// Split blocks per head: 320 blocks for 10 heads, one wave. The decode step's graph is launched
// for max_pos keys, so most splits are empty at a page's context (282 / 912 keys: 5 / 15 tiles);
// with 128 splits a 282-key step launched 1,230 empty blocks per layer.
constexpr int kDecodeAttnMaxSplits = 32;

// Bytes of the workspace (partial results, per-head split counters) for contexts up to
// max_kv_len, and its one-time initialisation (the counters to 0, on the stream): before the first
// call; every call leaves the counters at 0 again.
size_t decode_attention_workspace_bytes(int n_heads, int head_dim, int64_t max_kv_len);
cudaError_t decode_attention_workspace_init(void* workspace, int n_heads, int head_dim,
                                            int64_t max_kv_len, cudaStream_t stream);

// out[h] = softmax_j(scale · q[h] · K[j, h]) · V[j, h] over j = 0 .. *pos, K/V rows read through
// the page table (kernels/kv_pages.h), FP32 scores/softmax/accumulation, output rounded to BF16
// (the official attention output dtype).
// PRECOND: head_dim == 128; 0 <= *pos < max_kv_len (a larger *pos is clamped: keys from
// max_kv_len on are ignored); rows 0 .. *pos written (rope_qk_append_kv first); page_size a power
// of two; all pointers 16-byte aligned; workspace holds decode_attention_workspace_bytes(...).
cudaError_t decode_attention(const uint16_t* q,   // [n_heads, head_dim] BF16, RoPE applied
                             const PagedKv& kv,   // one layer's pages + the sequence's table
                             const int32_t* pos,  // [1] device: the new token's position
                             uint16_t* out,       // [n_heads, head_dim] BF16
                             void* workspace, int64_t max_kv_len, int n_heads, int head_dim,
                             float scale, cudaStream_t stream);


}  // namespace dsocr
