// Small glue kernels of the DeepEncoder on the GPU (runtime/vision_gpu.cpp), elementwise over BF16
// / FP32 rows, FP32 math, one rounding at each BF16 store:
//   patch_bias_pos   SAM patch-embed epilogue + absolute position embedding (MODEL.md §3 steps 1-2)
//   clip_embed       CLIP embeddings: [CLS; SAM tokens] + position embedding (§4.2)
//   clip_to_feat     CLIP output without its CLS row into the projector input (§4.3)
//   assemble_embeds  projector rows + image_newline (+ view_seperator) into the decoder's input
//                    rows, tiles stitched into one grid (§4.5; runtime/assemble.cpp on the CPU)
// SAM's window partition / unpartition are fused into the norms (layernorm.h).
// CPU references: the loops of runtime/vision_cpu.cpp and runtime/assemble.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dsocr {

// x[v, p, c] = bf16(acc[v, p, c] + bias[c] + pos[p, c]): the patch conv's FP32 GEMM output, its
// bias and the (resized, FP32) position table, one rounding. The official BF16 model rounds the
// conv output and the resized table to BF16 before the add; one rounding is closer to float32.
// PRECOND: dim % 8 == 0; all pointers 16-byte aligned; x does not alias acc.
cudaError_t patch_bias_pos(const float* acc,      // [n, P, dim] FP32
                           const uint16_t* bias,  // [dim] BF16
                           const float* pos,      // [P, dim] FP32
                           uint16_t* x,           // [n, P, dim] BF16
                           int64_t n, int64_t P, int dim, cudaStream_t stream);

// h[v, 0, c] = cls[c] + pos[0, c];  h[v, 1 + p, c] = sam[v·P + p, c] + pos[1 + p, c]  (FP32: the
// pre_layrnorm reads it next, in FP32).
// PRECOND: dim % 8 == 0; ld_sam % 8 == 0, >= dim; 16-byte aligned.
cudaError_t clip_embed(const uint16_t* sam,  // [n·P, ld_sam] BF16 SAM tokens (net_3 output)
                       int64_t ld_sam,
                       const uint16_t* cls,  // [dim] BF16 class_embedding
                       const float* pos,     // [1 + P, dim] FP32 (resized) position embedding
                       float* h,             // [n, 1 + P, dim] FP32
                       int64_t n, int64_t P, int dim, cudaStream_t stream);

// feat[v·P + p, c] = bf16(h[v, 1 + p, c]) for c < dim (the projector's autocast rounds its input).
// PRECOND: dim % 8 == 0; ld_feat % 8 == 0, >= dim; 16-byte aligned.
cudaError_t clip_to_feat(const float* h,  // [n, 1 + P, dim] FP32
                         uint16_t* feat,  // [n·P, ld_feat] BF16, columns [0, dim) written
                         int64_t ld_feat, int64_t n, int64_t P, int dim, cudaStream_t stream);

// Rows of the image-embedding sequence for one group of views with t × t projector rows each,
// laid out as a w_t × h_t grid of views (tile i at grid row i / w_t, column i % w_t; the global
// view: w_t = h_t = 1): out row R·(w_t·t + 1) + C = proj[tile (R/t)·w_t + C/t, row (R%t)·t + C%t]
// for C < w_t·t, the newline at C = w_t·t; then, when separator is set, one more row = separator.
// Writes h_t·t·(w_t·t + 1) (+1) rows.
// PRECOND: dim % 8 == 0; 16-byte aligned; out does not alias the inputs.
cudaError_t assemble_embeds(const uint16_t* proj,  // [w_t·h_t, t·t, dim] BF16
                            int t, int w_t, int h_t,
                            const uint16_t* newline,    // [dim] BF16 image_newline
                            const uint16_t* separator,  // [dim] BF16 view_seperator, or null
                            uint16_t* out,              // [rows, dim] BF16
                            int dim, cudaStream_t stream);

}  // namespace dsocr
