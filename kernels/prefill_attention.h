// Causal prefill attention over the paged BF16 KV cache (CUDA, kernels/prefill_attention.cu).
// Contract and CPU reference: causal_attention_ref (kernels/causal_attention.h) with the cache
// rows gathered through the page table (kernels/kv_pages.h). One call handles T new tokens at
// positions p0 .. p0+T-1: the whole prompt (p0 = 0) or one chunk of a chunked prefill (p0 > 0).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kv_pages.h"

namespace dsocr {

// out[t, h] = softmax_j(scale · q[t, h] · k[j, h]) · v[j, h] over keys j = 0 .. p0 + t, FP32
// scores, softmax and accumulation, the output rounded to BF16 once. FlashAttention-2 (Dao 2023):
// a block owns 64 queries of one head; two warp groups walk the even and the odd 64-key tiles up to
// the diagonal and merge their softmax states.
// PRECOND: head_dim == 128; n_heads >= 1; T >= 1; 0 <= p0, p0 + T <= INT32_MAX; keys/values of
// positions 0 .. p0+T-1 already written (page_table covers them); page_size in {16, 32, 64}; ldq,
// ldo multiples of 8 and >= n_heads·head_dim; q, kv.k, kv.v, out 16-byte aligned; out does not
// alias q or the cache. Returns cudaErrorInvalidValue (nothing launched) when a checkable one
// fails.
cudaError_t prefill_attention(
    const uint16_t* q,  // [T, ldq] BF16, RoPE applied, n_heads*head_dim used
    int64_t ldq,
    const PagedKv& kv,  // keys/values 0 .. p0+T-1 already written
    int64_t p0, int T,  // new tokens at positions p0 .. p0+T-1
    uint16_t* out,      // [T, ldo] BF16, columns 0 .. n_heads*head_dim-1
    int64_t ldo, int n_heads, int head_dim, float scale, cudaStream_t stream);

}  // namespace dsocr
