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
