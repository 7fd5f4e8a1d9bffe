#include <cmath>

#include "kernels/layernorm.h"
#include "kernels/parallel.h"
#include "loader/bf16.h"

namespace dsocr {
namespace {

// Mean and biased variance of n values spaced `stride` apart: float64 sums, two passes (no
// cancellation; PyTorch's float32 Welford agrees to well below float32 rounding), then the
// float32 rsqrt(var + eps) of nn.LayerNorm.
void stats(const float* x, int64_t n, int64_t stride, float eps, float* mean, float* rstd) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += x[i * stride];
  const double mu = s / static_cast<double>(n);
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i * stride] - mu;
    ss += d * d;
  }
  *mean = static_cast<float>(mu);
  *rstd = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
}

}  // namespace

void layernorm_ref(const float* x, const uint16_t* w, const uint16_t* b, float* y, int64_t n_rows,
                   int64_t dim, float eps) {
  parallel_for(
      n_rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* xr = x + r * dim;
          float* yr = y + r * dim;
          float mean, rstd;
          stats(xr, dim, 1, eps, &mean, &rstd);
          for (int64_t i = 0; i < dim; ++i)
            yr[i] = (xr[i] - mean) * rstd * bf16_to_f32(w[i]) + bf16_to_f32(b[i]);
        }
      },
      16);
}

void layernorm2d_nchw_ref(const float* x, const uint16_t* w, const uint16_t* b, float* y, int64_t n,
                          int64_t channels, int64_t hw, float eps) {
  parallel_for(
      n * hw,
      [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t img = p / hw, pix = p % hw;
          const float* xp = x + img * channels * hw + pix;
          float* yp = y + img * channels * hw + pix;
          float mean, rstd;
          stats(xp, channels, hw, eps, &mean, &rstd);
          for (int64_t c = 0; c < channels; ++c)
            yp[c * hw] = (xp[c * hw] - mean) * rstd * bf16_to_f32(w[c]) + bf16_to_f32(b[c]);
        }
      },
      64);
}

}  // namespace dsocr
