// 2-D convolutions of the SAM encoder (MODEL.md §3 steps 1, 5, 6), all NHWC (channels last):
//   patch_embed.proj  Conv2d(3→768,   k16 s16 p0, bias)  pixels [N,S,S,3] → tokens [N,g,g,768]
//   neck.0            Conv2d(768→256, k1  s1  p0)        = linear_ref on the tokens
//   neck.2            Conv2d(256→256, k3  s1  p1)
//   net_2             Conv2d(256→512, k3  s2  p1)
//   net_3             Conv2d(512→1024,k3  s2  p1)        → [N, g/4, g/4, 1024] = CLIP's tokens
// NHWC keeps the SAM tokens, LayerNorm2d (= layernorm_ref over the last dim) and CLIP's
// flatten(2).transpose(1,2) copy-free. Weights stay in PyTorch's [c_out, c_in, kh, kw] BF16 layout:
// the conv is an implicit GEMM (no im2col buffer) on the linear.h engine,
//   out[(n,oy,ox), co] = Σ_{ci,ky,kx} in[n, oy·s+ky−p, ox·s+kx−p, ci] · w[co, ci, ky, kx] (+
//   b[co]),
// with A gathered tile by tile (zeros outside the image) and B the weight seen as
// [c_out, c_in·kh·kw]. Accumulation float32.
// CPU float32 reference; the CUDA launchers (im2col + GemmRunner) follow at the end.
#pragma once

#include <cstdint>

namespace dsocr {

struct Conv2dShape {
  int64_t n = 1;         // batch (views)
  int64_t h = 0, w = 0;  // input height, width
  int64_t c_in = 0, c_out = 0;
  int kernel = 1;  // square kernel side (1, 3, 16)
  int stride = 1;
  int pad = 0;  // zero padding on every side
  int64_t out_h() const { return (h + 2 * pad - kernel) / stride + 1; }
  int64_t out_w() const { return (w + 2 * pad - kernel) / stride + 1; }
};

// PRECOND: in, w, out non-null; bias may be null; out does not alias in; h + 2·pad >= kernel,
// w + 2·pad >= kernel. Multithreaded (output pixel tiles x output channel tiles).
void conv2d_nhwc_ref(const float* in,       // [n, h, w, c_in]
                     const uint16_t* w,     // [c_out, c_in, kernel, kernel] BF16 (PyTorch layout)
                     const uint16_t* bias,  // [c_out] BF16, or null
                     float* out,            // [n, out_h, out_w, c_out]
                     const Conv2dShape& s);

// SAM patch embed: conv2d_nhwc_ref with kernel = stride = 16, pad 0, bias, c_in = 3, c_out = 768,
// on the normalised pixels in HWC order (as the preprocessing produces them).
// PRECOND: size % 16 == 0.
void patch_embed_ref(const float* pixels,   // [n, size, size, 3] normalised (x/255 − 0.5)/0.5
                     const uint16_t* w,     // [768, 3, 16, 16] BF16 patch_embed.proj.weight
                     const uint16_t* bias,  // [768] BF16 patch_embed.proj.bias
                     float* out,            // [n, size/16, size/16, 768]
                     int64_t n, int64_t size);

}  // namespace dsocr

// =================================================================================================
// CUDA launchers (kernels/conv2d.cu). On the GPU a convolution is an im2col into a BF16 workspace
// followed by one cuBLASLt GEMM (kernels/gemm.h, out = col · wᵀ with w seen as [c_out, c_in·k·k]
// exactly as stored). The largest col is neck.2 of a 1024² view: 4096 × 2304 × 2 B = 19 MB, which
// the GEMM reads at 2.3 GFLOP — the copy costs a few µs against ~5 µs of tensor-core time, and
// cuBLASLt's kernels beat a hand-written implicit GEMM by more than that. neck.0 (1×1) is the GEMM
// alone, on the token rows.
// =================================================================================================
#include <cuda_runtime_api.h>

namespace dsocr {

// col[(n, oy, ox), (ci, ky, kx)] = in[n, oy·s + ky − p, ox·s + kx − p, ci], 0 outside the image
// (k index order ci, ky, kx: the weight's [c_out, c_in, kh, kw]). BF16 copy, no arithmetic.
// PRECOND: c_in·kernel² % 8 == 0; in, col 16-byte aligned, col does not alias in; the shape as
// conv2d_nhwc_ref.
cudaError_t im2col_nhwc_bf16(const uint16_t* in,  // [n, h, w, c_in] BF16
                             uint16_t* col,       // [n·out_h·out_w, c_in·kernel²] BF16
                             const Conv2dShape& s, cudaStream_t stream);

// The normalisation of the 256 pixel values (preprocess.h normalize_pixel as BF16 bits): passed by
// value, so the GPU applies the very table the CPU path uses.
struct PixelLut {
  uint16_t v[256];
};

// SAM patch embed's im2col, normalisation fused: u8 RGB views (HWC, as preprocessed) to
// col[(n, py, px), (c, ky, kx)] = lut[pixels[n, py·16 + ky, px·16 + kx, c]] for patch side 16:
// [n·(size/16)², 768], ready for the GEMM with patch_embed.proj.weight [768, 3·16·16].
// PRECOND: size % 16 == 0; col 16-byte aligned.
cudaError_t patch_im2col_u8(const uint8_t* pixels,  // [n, size, size, 3] u8
                            const PixelLut& lut,
                            uint16_t* col,  // [n·(size/16)², 768] BF16
                            int64_t n, int64_t size, cudaStream_t stream);

}  // namespace dsocr
