// Non-causal multi-head attention of the vision encoders (MODEL.md §3 step 4, §4.2) and SAM's
// window partition helpers (§3 step 3).
// * SAM: 12 heads x 64, per 14x14 window (8 blocks) or over the whole g x g grid (blocks 2, 5, 8,
//   11), decomposed relative-position bias (get_rel_pos + add_decomposed_rel_pos of SAM's
//   image_encoder.py):
//     bias[(qh,qw),(kh,kw)] = q[(qh,qw)]·Rh[qh,kh] + q[(qh,qw)]·Rw[qw,kw],  R[i,j] =
//     rel_pos[i−j+L−1]
//   with the UNSCALED q; then softmax(q·kᵀ/8 + bias)·v (SDPA with a float mask).
// * CLIP: 16 heads x 64 over the 1 + h·w tokens, no bias (SDPA, attn_mask=None).
// Input is the output of the fused qkv Linear, [tokens, 3, n_heads, head_dim] per sequence
// (MODEL.md §2.3); output heads are concatenated in head order, ready for the proj / out_proj
// Linear. Scores, softmax (max-subtracted, float32 exp) and P·V in float32; P is normalised after
// P·V. Multithreaded over (sequence, head, query block); Q·Kᵀ and P·V run on the linear.h engine.
// Scratch: a grow-only thread_local buffer of (query block x n_tokens) floats per thread.
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstdint>

namespace dsocr {

// out[s, t, h·head_dim + d] = Σ_j softmax_j(q·k_j/√head_dim + bias[t, j]) · v_j[d]
// for q = qkv[s, t, 0, h], k_j = qkv[s, j, 1, h], v_j = qkv[s, j, 2, h].
// rel_pos_h / rel_pos_w: both null (no bias, CLIP), or both set (SAM) with the tokens a row-major
// grid_h x grid_w grid, n_tokens == grid_h·grid_w, tables already resized to 2·grid−1 rows
// (interp_linear_rows_ref) and widened to float32.
// PRECOND: qkv, out non-null, out does not alias qkv; n_seq, n_tokens, n_heads, head_dim >= 1;
// with rel-pos, grid_h, grid_w <= 1024.
void vision_attention_ref(const float* qkv,        // [n_seq, n_tokens, 3, n_heads, head_dim]
                          const float* rel_pos_h,  // [2·grid_h − 1, head_dim] or null
                          const float* rel_pos_w,  // [2·grid_w − 1, head_dim] or null
                          float* out,              // [n_seq, n_tokens, n_heads·head_dim]
                          int64_t n_seq, int64_t n_tokens, int64_t grid_h, int64_t grid_w,
                          int n_heads, int head_dim);

// Number of windows per image side for a g-token side and window `win` (ceil(g / win)).
inline int64_t n_windows_side(int64_t g, int64_t win) {
  return (g + win - 1) / win;
}

// SAM window_partition: pad each image's [grid_h, grid_w, dim] map with zeros at the bottom/right
// to multiples of win (F.pad after norm1, so padded tokens are exact zeros) and cut it into
// win x win windows, row-major window order per image, images in order.
// PRECOND: x, windows non-null, no aliasing; win >= 1.
void window_partition_ref(const float* x,  // [n, grid_h, grid_w, dim]
                          float* windows,  // [n·nwh·nww, win, win, dim], nwh = ceil(grid_h/win)
                          int64_t n, int64_t grid_h, int64_t grid_w, int64_t dim, int64_t win);

// SAM window_unpartition: the inverse, dropping the padded tokens.
// PRECOND: as window_partition_ref.
void window_unpartition_ref(const float* windows,  // [n·nwh·nww, win, win, dim]
                            float* x,              // [n, grid_h, grid_w, dim]
                            int64_t n, int64_t grid_h, int64_t grid_w, int64_t dim, int64_t win);

}  // namespace dsocr

// =================================================================================================
// CUDA launcher (kernels/vision_attention.cu): the same attention, FlashAttention-style (tiled,
// online softmax, the score matrix never materialised), BF16 in and out, FP32 scores, softmax and
// accumulation, SAM's decomposed rel-pos bias added inside the kernel from q·R_h and q·R_w.
// =================================================================================================
#include <cuda_runtime_api.h>

namespace dsocr {

// out = vision_attention_ref(qkv, rel_pos_h, rel_pos_w) with BF16 storage: one rounding of each
// output element. rel_pos tables as in the reference (resized to 2·grid−1 rows, FP32, on the
// device; computed once per resolution by the caller) or both null (CLIP). Serves SAM windows
// (n_seq = views·windows, 14x14), SAM global blocks (grid 32, 40, 64, 80) and CLIP (65..401
// tokens); batch views / windows as n_seq.
// PRECOND (else cudaErrorInvalidValue, nothing launched): head_dim == 64; n_seq, n_heads in
// [1, 65535]; 1 <= n_tokens <= 2^30; with rel-pos n_tokens == grid_h·grid_w, 1 <= grid_h, grid_w
// <= 128 (shared memory holds q·R for every query row of a block), tables 8-byte aligned; qkv,
// out 16-byte aligned; out does not overlap qkv.
cudaError_t vision_attention(const uint16_t* qkv,      // [n_seq, n_tokens, 3, n_heads, head_dim]
                             const float* rel_pos_h,   // [2·grid_h − 1, head_dim] or null
                             const float* rel_pos_w,   // [2·grid_w − 1, head_dim] or null
                             uint16_t* out,            // [n_seq, n_tokens, n_heads·head_dim]
                             int64_t n_seq, int64_t n_tokens, int64_t grid_h, int64_t grid_w,
                             int n_heads, int head_dim, cudaStream_t stream);

}  // namespace dsocr
