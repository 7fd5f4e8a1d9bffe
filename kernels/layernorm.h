// LayerNorm of the vision encoders (MODEL.md §3, §4): SAM norm1/norm2 (eps 1e-6), SAM neck
// LayerNorm2d (eps 1e-6), CLIP pre_layrnorm / layer_norm1 / layer_norm2 (eps 1e-5).
//   y = (x − mean) / sqrt(var + eps) · w + b,  var biased (÷ dim), statistics in float32 math
// (nn.LayerNorm runs in float32 under autocast, MODEL.md §7.3).
// LayerNorm2d normalises over channels at each pixel; on an NHWC map that is exactly
// layernorm_ref with n_rows = N·H·W, which is how the SAM neck uses it (conv2d.h is NHWC).
// layernorm2d_nchw_ref is the same op on an NCHW map, for callers holding that layout.
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstdint>

namespace dsocr {

// PRECOND: x, w, b, y non-null; dim >= 1; y may equal x (in place), no partial overlap.
// Mean and variance accumulated in float64 over the row (two passes), then rsqrt(var + eps) in
// float32. Multithreaded over rows.
void layernorm_ref(const float* x,     // [n_rows, dim]
                   const uint16_t* w,  // [dim] BF16 gain
                   const uint16_t* b,  // [dim] BF16 bias
                   float* y,           // [n_rows, dim]
                   int64_t n_rows, int64_t dim, float eps);

// LayerNorm2d on NCHW: for every (n, y, x) normalise the `channels` values x[n, :, y, x].
// PRECOND: as layernorm_ref; y may equal x. Multithreaded over (n, pixel blocks).
void layernorm2d_nchw_ref(const float* x,     // [n, channels, hw]
                          const uint16_t* w,  // [channels] BF16
                          const uint16_t* b,  // [channels] BF16
                          float* y,           // [n, channels, hw]
                          int64_t n, int64_t channels, int64_t hw, float eps);

}  // namespace dsocr
