#include <cmath>

#include "kernels/parallel.h"
#include "kernels/rmsnorm.h"
#include "loader/bf16.h"

namespace dsocr {
namespace {

// One row: float64 sum of squares (order-independent to well below float32 rounding), then the
// float32 statistics of HF: r = rsqrt(float32(mean) + eps); y = w * (x * r).
void rmsnorm_row(const float* x, const uint16_t* w, float* y, int64_t dim, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(ss / static_cast<double>(dim));
  const float r = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < dim; ++i) y[i] = bf16_to_f32(w[i]) * (x[i] * r);
}

}  // namespace

void rmsnorm_ref(const float* x, const uint16_t* w, float* y, int64_t n_rows, int64_t dim,
                 float eps) {
  parallel_for(n_rows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) rmsnorm_row(x + r * dim, w, y + r * dim, dim, eps);
  });
}

void add_rmsnorm_ref(float* h, const float* delta, const uint16_t* w, float* y, int64_t n_rows,
                     int64_t dim, float eps) {
  parallel_for(n_rows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* hr = h + r * dim;
      const float* dr = delta + r * dim;
      for (int64_t i = 0; i < dim; ++i) hr[i] += dr[i];
      rmsnorm_row(hr, w, y + r * dim, dim, eps);
    }
  });
}

}  // namespace dsocr
