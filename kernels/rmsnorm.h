// RMSNorm of the DeepSeek-V2 decoder (../shared/MODEL.md §7.1):
//   y = w * (x * rsqrt(mean(x²) + eps))
// HF `DeepseekV2RMSNorm` computes the statistics in float32, casts the normalised row back to the
// *input* dtype, then multiplies by the weight. In the BF16 model that cast rounds to BF16; in the
// float32 reference the input dtype is float32, so the cast is a no-op and is not reproduced here.
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstdint>

namespace dsocr {

// PRECOND: x, w, y non-null; dim >= 1. y may equal x (in place); partial overlap is not allowed.
// Sum of squares accumulated in float64, then mean + eps and rsqrt in float32. Multithreaded over
// rows.
void rmsnorm_ref(const float* x,     // [n_rows, dim]
                 const uint16_t* w,  // [dim] BF16 gain (e.g. input_layernorm.weight)
                 float* y,           // [n_rows, dim]
                 int64_t n_rows, int64_t dim, float eps);

// Residual add fused with the next norm (the decoder's `h = r + x; x = RMSNorm(h)`):
//   h += delta;  y = rmsnorm(h).
// PRECOND: h, delta, w, y non-null; y does not alias h or delta.
void add_rmsnorm_ref(float* h,            // [n_rows, dim] residual stream, updated in place
                     const float* delta,  // [n_rows, dim] sublayer output added to h
                     const uint16_t* w,   // [dim] BF16 gain
                     float* y,            // [n_rows, dim] normalised h
                     int64_t n_rows, int64_t dim, float eps);

}  // namespace dsocr

// =================================================================================================
// CUDA launchers (kernels/rmsnorm.cu): BF16 rows, FP32 statistics, one row per block.
// Rounding as HF `DeepseekV2RMSNorm` under BF16: y = bf16( w · bf16(h · r) ),
// r = 1 / sqrt(mean(h²) + eps) with mean and r in FP32 (the sum of squares in FP32, fixed order).
// =================================================================================================
#include <cuda_runtime_api.h>

namespace dsocr {

// y = rmsnorm(x).  PRECOND: dim % 8 == 0, 8 <= dim <= 4096; ldx, ldy % 8 == 0; x, w, y 16-byte
// aligned; y may equal x (in place) but no partial overlap.
cudaError_t rmsnorm(const uint16_t* x,  // [T, ldx] BF16
                    int64_t ldx,
                    const uint16_t* w,  // [dim] BF16 gain
                    uint16_t* y,        // [T, ldy] BF16
                    int64_t ldy, int T, int dim, float eps, cudaStream_t stream);

// Residual add fused with the next norm (the decoder's `h = r + x; x = RMSNorm(h)`):
//   h = bf16(h + delta) (one rounding; the norm reads the rounded h), y = rmsnorm(h).
// delta BF16 (HF: a BF16 sublayer output) or FP32 (an FP32 sublayer output, one rounding in all).
// PRECOND: as rmsnorm; ld_delta % 8 == 0; y does not alias h or delta.
cudaError_t add_rmsnorm(uint16_t* h,  // [T, ldh] BF16 residual stream, updated in place
                        int64_t ldh,
                        const uint16_t* delta,  // [T, ld_delta] BF16
                        int64_t ld_delta,
                        const uint16_t* w,  // [dim] BF16 gain
                        uint16_t* y,        // [T, ldy] BF16
                        int64_t ldy, int T, int dim, float eps, cudaStream_t stream);
cudaError_t add_rmsnorm(uint16_t* h, int64_t ldh,
                        const float* delta,  // [T, ld_delta] FP32
                        int64_t ld_delta, const uint16_t* w, uint16_t* y, int64_t ldy, int T,
                        int dim, float eps, cudaStream_t stream);

// The FP32 residual stream (the GPU decoder keeps h in FP32: the official BF16 model rounds h to
// BF16 after every sublayer, which alone puts it at the BF16 error level; runtime/decoder_gpu.cpp):
//   rmsnorm_widen: h = float(x) (the BF16 embeddings), y = rmsnorm(h);
//   add_rmsnorm:   h = h + delta in FP32 (no rounding), y = rmsnorm(h).
// PRECOND: as add_rmsnorm; ldh % 8 == 0, h 16-byte aligned.
cudaError_t rmsnorm_widen(const uint16_t* x,  // [T, ldx] BF16
                          int64_t ldx,
                          float* h,  // [T, ldh] FP32 out
                          int64_t ldh, const uint16_t* w, uint16_t* y, int64_t ldy, int T,
                          int dim, float eps, cudaStream_t stream);
cudaError_t add_rmsnorm(float* h,  // [T, ldh] FP32 residual stream, updated in place
                        int64_t ldh,
                        const uint16_t* delta,  // [T, ld_delta] BF16
                        int64_t ld_delta, const uint16_t* w, uint16_t* y, int64_t ldy, int T,
                        int dim, float eps, cudaStream_t stream);
cudaError_t add_rmsnorm(float* h, int64_t ldh,
                        const float* delta,  // [T, ld_delta] FP32
                        int64_t ld_delta, const uint16_t* w, uint16_t* y, int64_t ldy, int T,
                        int dim, float eps, cudaStream_t stream);

}  // namespace dsocr
