// Rotary position embedding of the DeepSeek-OCR decoder (../shared/MODEL.md §7.1): NeoX /
// "rotate_half" layout over the full head_dim (128), base theta = 10000, no scaling.
//   inv_freq[j] = 1 / theta^(2j / head_dim)            j in [0, head_dim/2), float32 as PyTorch
//   a = float32(pos) * inv_freq[j]                     (float32 product, as the HF outer product)
//   c = cos(a), s = sin(a)                             (float32)
//   x'[j]         = x[j] * c - x[j + h] * s            h = head_dim / 2
//   x'[j + h]     = x[j + h] * c + x[j] * s
// which is q·cos + rotate_half(q)·sin with emb = cat(freqs, freqs), rotate_half(x) =
// cat(-x[h:], x[:h]). NOT the interleaved MLA-path permutation of modeling_deepseekv2.py.
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstdint>

namespace dsocr {

// inv_freq exactly as PyTorch float32 computes
//   1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim)).
// PRECOND: head_dim even, >= 2.
void rope_inv_freq_ref(float* inv_freq,  // [head_dim / 2]
                       int head_dim, float theta);

// cos/sin table rows for the given positions (what rope_ref applies).
// PRECOND: head_dim even; pos[t] >= 0.
void rope_cos_sin_ref(const int32_t* pos,  // [n_pos]
                      float* cos_out,      // [n_pos, head_dim / 2]
                      float* sin_out,      // [n_pos, head_dim / 2]
                      int64_t n_pos, int head_dim, float theta);

// Rotates q or k in place: token t is at position pos[t].
// PRECOND: x, pos non-null; head_dim even; pos[t] >= 0. Multithreaded over tokens.
void rope_ref(float* x,            // [T, n_heads, head_dim], rotated in place
              const int32_t* pos,  // [T]
              int64_t T, int n_heads, int head_dim, float theta);

}  // namespace dsocr

// =================================================================================================
// CUDA launchers (kernels/rope.cu)
// =================================================================================================
#include <cuda_runtime_api.h>

#include "kernels/kv_pages.h"

namespace dsocr {

// RoPE on q and k of T tokens (rotate-half, as rope_ref; cos/sin of float32(pos)·inv_freq[j] in
// FP32 on the fly, inv_freq from rope_inv_freq_ref), output rounded to BF16, plus the K/V append
// into the paged cache (kernels/kv_pages.h):
//   q_out[t] = rope(q[t], pos[t]);  K[pos[t]] = rope(k[t], pos[t]);  V[pos[t]] = v[t].
// q, k, v are rows of the fused QKV projection (ld_in elements between tokens; e.g. q = qkv,
// k = qkv + 1280, v = qkv + 2560, ld_in = 3840). pos is read on the device (graph-capturable).
// A token whose pos is outside [0, max_tokens) gets q_out but no cache write (max_tokens = the
// sequence's capacity: its page-table length × page_size).
// PRECOND: head_dim % 16 == 0, head_dim <= 256; ld_in, ld_q_out % 8 == 0; all pointers 16-byte
// aligned; q_out may equal q (in place), otherwise no overlaps; page_size a power of two.
// PDL (kernels/launch.cuh): pos and the page table are read before the wait, so each was written
// by a copy, or by a kernel at least two launches earlier with a PDL-contract kernel in between
// (the decoder: the QKV projection follows RMSNorm; pos comes from a copy or the previous step).
cudaError_t rope_qk_append_kv(const uint16_t* q,  // [T, ld_in] BF16, n_heads·head_dim used
                              const uint16_t* k,  // [T, ld_in] BF16
                              const uint16_t* v,  // [T, ld_in] BF16
                              int64_t ld_in,
                              const int32_t* pos,  // [T] device
                              uint16_t* q_out,     // [T, ld_q_out] BF16
                              int64_t ld_q_out,
                              const PagedKv& kv,  // one layer's pages + the sequence's table
                              int64_t max_tokens, int T, int n_heads, int head_dim, float theta,
                              cudaStream_t stream);

}  // namespace dsocr
