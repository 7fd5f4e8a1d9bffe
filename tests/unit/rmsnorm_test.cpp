#include "kernels/rmsnorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ref_test_util.h"

namespace dsocr {
namespace {

using test::nan_filled;
using test::random_bf16;
using test::random_f32;
using test::rel_l2;
using test::Rng;

constexpr int64_t kDim = 1280;
constexpr float kEps = 1e-6f;
// Each output element goes through ~4 float32 roundings (mean, rsqrt, x·r, w·(x·r)):
// ≤ 4·2⁻²⁴ ≈ 2.4e-7 relative. 2e-6 leaves a ~10x margin and still catches any wrong formula.
constexpr double kTol = 2e-6;

// Float64 evaluation: y = w · x / sqrt(mean(x²) + eps).
std::vector<double> rmsnorm_f64(const std::vector<float>& x, const std::vector<uint16_t>& w,
                                int64_t rows, int64_t dim, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = bf16_to_f32(w[i]) * x[r * dim + i] * inv;
  }
  return y;
}

// Rows of very different magnitudes, including rows so small that eps dominates mean(x²).
std::vector<float> test_rows(Rng& rng, int64_t rows, int64_t dim) {
  std::vector<float> x = random_f32(rng, rows * dim, -2.f, 2.f);
  const float scales[] = {1.f, 30.f, 1e-3f, 1e-4f, 0.5f};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dim; ++i) x[r * dim + i] *= scales[r % 5];
  return x;
}

TEST(RmsNorm, MatchesFloat64AtModelShapes) {
  Rng rng(11);
  const std::vector<uint16_t> w = random_bf16(rng, kDim, 0.9f, 1.1f);
  for (int64_t rows : {1, 7, 82, 282}) {
    const std::vector<float> x = test_rows(rng, rows, kDim);
    std::vector<float> y = nan_filled(x.size());
    rmsnorm_ref(x.data(), w.data(), y.data(), rows, kDim, kEps);
    const double err = test::report("rmsnorm rows=" + std::to_string(rows),
                                    rel_l2(y, rmsnorm_f64(x, w, rows, kDim, kEps)));
    EXPECT_LT(err, kTol) << "rows=" << rows;
    // Per-row check as well: the tiny rows (eps-dominated) must not hide in the global norm.
    const auto ref = rmsnorm_f64(x, w, rows, kDim, kEps);
    for (int64_t r = 0; r < rows; ++r)
      ASSERT_LT(test::rel_l2(y.data() + r * kDim, ref.data() + r * kDim, kDim), kTol)
          << "rows=" << rows << " row " << r;
  }
}

TEST(RmsNorm, InPlaceAndOddDim) {
  Rng rng(12);
  for (int64_t dim : {kDim, int64_t{129}}) {
    const std::vector<uint16_t> w = random_bf16(rng, dim, -1.5f, 1.5f);
    std::vector<float> x = test_rows(rng, 9, dim);
    const auto ref = rmsnorm_f64(x, w, 9, dim, kEps);
    rmsnorm_ref(x.data(), w.data(), x.data(), 9, dim, kEps);
    EXPECT_LT(rel_l2(x, ref), kTol) << "dim=" << dim;
  }
}

TEST(RmsNorm, FusedResidualAdd) {
  Rng rng(13);
  const std::vector<uint16_t> w = random_bf16(rng, kDim, 0.9f, 1.1f);
  for (int64_t rows : {1, 82}) {
    std::vector<float> h = test_rows(rng, rows, kDim);
    const std::vector<float> delta = random_f32(rng, h.size(), -0.5f, 0.5f);
    std::vector<float> sum(h.size());
    std::vector<double> sum64(h.size());
    for (size_t i = 0; i < h.size(); ++i) {
      sum[i] = h[i] + delta[i];  // the float32 sum is the defined residual stream
      sum64[i] = double(h[i]) + delta[i];
    }
    std::vector<float> y = nan_filled(h.size());
    add_rmsnorm_ref(h.data(), delta.data(), w.data(), y.data(), rows, kDim, kEps);
    EXPECT_LT(rel_l2(h, sum64), 1e-7) << "rows=" << rows;  // one float32 rounding per element
    EXPECT_LT(test::report("add_rmsnorm rows=" + std::to_string(rows),
                           rel_l2(y, rmsnorm_f64(sum, w, rows, kDim, kEps))),
              kTol)
        << "rows=" << rows;
  }
}

}  // namespace
}  // namespace dsocr
