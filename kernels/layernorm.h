// LayerNorm of the vision encoders (MODEL.md §3, §4): SAM norm1/norm2 (eps 1e-6), SAM neck
// LayerNorm2d (eps 1e-6), CLIP pre_layrnorm / layer_norm1 / layer_norm2 (eps 1e-5).
//   y = (x − mean) / sqrt(var + eps) · w + b,  var biased (÷ dim), statistics in float32 math
// (nn.LayerNorm runs in float32 under autocast, MODEL.md §7.3).
// LayerNorm2d normalises over channels at each pixel; on an NHWC map that is exactly
// layernorm_ref with n_rows = N·H·W, which is how the SAM neck uses it (conv2d.h is NHWC).
// layernorm2d_nchw_ref is the same op on an NCHW map, for callers holding that layout.
// CPU float32 reference; the CUDA launchers follow at the end.
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

// =================================================================================================
// CUDA launchers (kernels/layernorm.cu): one warp per row, the row in registers (one read, one
// write), FP32 statistics in two passes over the registers (mean, then mean of (x − mean)²), then
// y = (x − mean) · (1/sqrt(var + eps)) · w + b and one rounding at the store.
// Where the official BF16 model keeps a tensor (MODEL.md §3, §4.2): SAM's residual stream is BF16
// (bf16 + bf16 adds); CLIP's residual stream is FP32, because under autocast nn.LayerNorm returns
// FP32 and pre_layrnorm's output starts the stream (h = x + out_proj(...) is fp32 + bf16). Hence
// the BF16 and FP32 residual forms below.
// =================================================================================================
#include <cuda_runtime_api.h>

namespace dsocr {

// y = layernorm(x). Forms: BF16 → BF16 (SAM norm1/norm2, neck LayerNorm2d on NHWC), FP32 → FP32
// (CLIP pre_layrnorm, may run in place), FP32 → BF16 (CLIP layer_norm1 of layer 0).
// PRECOND: dim % 8 == 0, 8 <= dim <= 1024; ldx, ldy % 8 == 0 and >= dim; x, w, b, y 16-byte
// aligned; y may equal x (same ld) but no partial overlap.
cudaError_t layernorm(const uint16_t* x,  // [rows, ldx] BF16
                      int64_t ldx,
                      const uint16_t* w,  // [dim] BF16 gain
                      const uint16_t* b,  // [dim] BF16 bias
                      uint16_t* y,        // [rows, ldy] BF16
                      int64_t ldy, int64_t rows, int dim, float eps, cudaStream_t stream);
cudaError_t layernorm(const float* x,  // [rows, ldx] FP32
                      int64_t ldx, const uint16_t* w, const uint16_t* b,
                      float* y,  // [rows, ldy] FP32
                      int64_t ldy, int64_t rows, int dim, float eps, cudaStream_t stream);
cudaError_t layernorm(const float* x,  // [rows, ldx] FP32
                      int64_t ldx, const uint16_t* w, const uint16_t* b,
                      uint16_t* y,  // [rows, ldy] BF16
                      int64_t ldy, int64_t rows, int dim, float eps, cudaStream_t stream);

// Residual add fused with the next norm: h = h + delta, then y = layernorm(h).
// BF16 h: h = bf16(h + delta) (SAM: `x = shortcut + x`, one rounding; the norm reads the
//   rounded h).
// FP32 h: h = h + delta in FP32 (CLIP: `h = x + out_proj(...)`, delta a BF16 Linear output).
// w, b, y all null: the add alone (the last CLIP layer).
// PRECOND: as layernorm; ld_delta % 8 == 0 and >= dim; y does not alias h; y may equal delta
// (same ld: each row is read whole before it is written).
cudaError_t add_layernorm(uint16_t* h,  // [rows, ldh] BF16 residual stream, updated in place
                          int64_t ldh,
                          const uint16_t* delta,  // [rows, ld_delta] BF16
                          int64_t ld_delta, const uint16_t* w, const uint16_t* b,
                          uint16_t* y,  // [rows, ldy] BF16, or null
                          int64_t ldy, int64_t rows, int dim, float eps, cudaStream_t stream);
cudaError_t add_layernorm(float* h,  // [rows, ldh] FP32 residual stream, updated in place
                          int64_t ldh,
                          const uint16_t* delta,  // [rows, ld_delta] BF16
                          int64_t ld_delta, const uint16_t* w, const uint16_t* b,
                          uint16_t* y,  // [rows, ldy] BF16, or null
                          int64_t ldy, int64_t rows, int dim, float eps, cudaStream_t stream);

// SAM windowed blocks (MODEL.md §3 step 3), the window (un)partition fused into the norms:
// norm1 + window_partition: windows = window_partition_ref(layernorm(x)), i.e. the normed map
// zero-padded at the bottom/right to whole win × win windows, windows row-major per image. Padded
// tokens are exact zeros (F.pad after norm1).
// PRECOND: dim as layernorm; n, grid, win >= 1; rows contiguous (ld = dim); windows does not
// alias x.
cudaError_t layernorm_window_partition(const uint16_t* x,  // [n, grid, grid, dim] BF16
                                       const uint16_t* w, const uint16_t* b,
                                       uint16_t* windows,  // [n·nw·nw, win, win, dim] BF16,
                                                           //   nw = ceil(grid / win)
                                       int64_t n, int grid, int win, int dim, float eps,
                                       cudaStream_t stream);
// window_unpartition + residual + norm2: x = bf16(x + window_unpartition_ref(windows)) (padded
// tokens dropped), y = layernorm(x).
// PRECOND: as layernorm_window_partition; y aliases neither x nor windows.
cudaError_t add_window_unpartition_layernorm(uint16_t* x,  // [n, grid, grid, dim] BF16, in place
                                             const uint16_t* windows,  // [n·nw·nw, win, win, dim]
                                             const uint16_t* w, const uint16_t* b,
                                             uint16_t* y,  // [n, grid, grid, dim] BF16
                                             int64_t n, int grid, int win, int dim, float eps,
                                             cudaStream_t stream);

}  // namespace dsocr
