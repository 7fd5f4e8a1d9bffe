// Conv2d NHWC as an implicit GEMM on the linear.h engine (see conv2d.h).
//   A[(n,oy,ox), (ci,ky,kx)] = in[n, oy·s+ky−p, ox·s+kx−p, ci] (0 outside the image)
//   B = the BF16 weight [c_out, c_in·k·k] as stored (k index order ci, ky, kx), i.e. an
//       nn.Linear-shaped operand packed by the engine's fast BF16 path.
// The gather writes one A strip (MR consecutive output pixels x kc k-indices) k-index by k-index:
// for a fixed (ci, ky, kx) the MR source addresses are precomputed pixel bases plus one offset,
// and the MR destinations are contiguous. Cost: about one load per packed element, once per
// 256-column tile of C, against 2·256 flops per element in the GEMM (a few percent).
#include <algorithm>

#include "kernels/conv2d.h"
#include "kernels/linear.h"

namespace dsocr {
namespace {

struct ConvCtx {
  const float* in;  // [n, h, w, c_in]
  Conv2dShape s;
  int64_t oh, ow;
};

void conv_gather(const void* vctx, int64_t i0, int rows, int64_t p0, int64_t kc, float* dst,
                 int mr) {
  const auto& g = *static_cast<const ConvCtx*>(vctx);
  const Conv2dShape& s = g.s;
  const int64_t kk = static_cast<int64_t>(s.kernel) * s.kernel;
  // Per row (output pixel): top-left input coordinate of its receptive field and the offset of
  // that (possibly out-of-image) pixel in `in`.
  constexpr int kMaxMr = 32;  // every micro-kernel's MR is <= 12
  int64_t iy0[kMaxMr], ix0[kMaxMr], base[kMaxMr];
  for (int r = 0; r < rows; ++r) {
    const int64_t i = i0 + r;
    const int64_t img = i / (g.oh * g.ow), pix = i % (g.oh * g.ow);
    iy0[r] = (pix / g.ow) * s.stride - s.pad;
    ix0[r] = (pix % g.ow) * s.stride - s.pad;
    base[r] = ((img * s.h + iy0[r]) * s.w + ix0[r]) * s.c_in;
  }
  int64_t ci = p0 / kk, t = p0 % kk;
  int64_t ky = t / s.kernel, kx = t % s.kernel;
  for (int64_t p = 0; p < kc; ++p) {
    const int64_t off = (ky * s.w + kx) * s.c_in + ci;
    float* d = dst + p * mr;
    for (int r = 0; r < rows; ++r) {
      const int64_t iy = iy0[r] + ky, ix = ix0[r] + kx;
      d[r] = (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) ? g.in[base[r] + off] : 0.f;
    }
    if (++kx == s.kernel) {
      kx = 0;
      if (++ky == s.kernel) {
        ky = 0;
        ++ci;
      }
    }
  }
}

}  // namespace

void conv2d_nhwc_ref(const float* in, const uint16_t* w, const uint16_t* bias, float* out,
                     const Conv2dShape& s) {
  ConvCtx ctx{in, s, s.out_h(), s.out_w()};
  const int64_t k = s.c_in * s.kernel * s.kernel;
  GemmA a;
  if (s.kernel == 1 && s.stride == 1 && s.pad == 0) {  // neck.0: a plain linear over pixels
    a.data = in;
    a.ld = s.c_in;
  } else {
    a.gather = conv_gather;
    a.ctx = &ctx;
  }
  GemmB b;
  b.layout = GemmBLayout::kBf16NK;
  b.data = w;
  b.ld = k;
  GemmC c;
  c.data = out;
  c.ld = s.c_out;
  c.bias_bf16 = bias;
  gemm_ref(a, b, c, s.n * ctx.oh * ctx.ow, s.c_out, k);
}

void patch_embed_ref(const float* pixels, const uint16_t* w, const uint16_t* bias, float* out,
                     int64_t n, int64_t size) {
  Conv2dShape s;
  s.n = n;
  s.h = s.w = size;
  s.c_in = 3;
  s.c_out = 768;
  s.kernel = s.stride = 16;
  s.pad = 0;
  conv2d_nhwc_ref(pixels, w, bias, out, s);
}

}  // namespace dsocr
