// layernorm_ref / layernorm2d_nchw_ref against float64 (two-pass mean and biased variance).
// Threshold 1e-5: the float32 output carries (x − mean) rounded once (relative 2^-24 · |x|/σ; the
// inputs below have |mean|/σ up to ~7) and a float32 rsqrt: a few 1e-7 in the norm.
#include "kernels/layernorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/unit/ref_test_util.h"

namespace dsocr {
namespace {

using test::nan_filled;
using test::random_bf16;
using test::random_f32;
using test::rel_l2;
using test::Rng;

constexpr double kTol = 1e-5;

// ref[r, i] over rows of `dim` values spaced `stride` apart; row r starts at row_start(r).
template <class RowStart>
std::vector<double> naive(const std::vector<float>& x, const std::vector<uint16_t>& w,
                          const std::vector<uint16_t>& b, int64_t rows, int64_t dim, int64_t stride,
                          double eps, RowStart row_start) {
  std::vector<double> ref(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t s0 = row_start(r);
    double mean = 0, var = 0;
    for (int64_t i = 0; i < dim; ++i) mean += x[s0 + i * stride];
    mean /= dim;
    for (int64_t i = 0; i < dim; ++i)
      var += (x[s0 + i * stride] - mean) * (x[s0 + i * stride] - mean);
    var /= dim;
    for (int64_t i = 0; i < dim; ++i)
      ref[s0 + i * stride] =
          (x[s0 + i * stride] - mean) / std::sqrt(var + eps) * bf16_to_f32(w[i]) +
          bf16_to_f32(b[i]);
  }
  return ref;
}

TEST(LayerNorm, RowsAtModelAndOddShapes) {
  struct C {
    int64_t rows, dim;
    float eps;
  };
  uint64_t seed = 1;
  for (C c : {C{4096, 768, 1e-6f}, C{257, 1024, 1e-5f}, C{401, 1024, 1e-5f}, C{1600, 256, 1e-6f},
              C{1, 1, 1e-5f}, C{3, 37, 1e-6f}, C{33, 1023, 1e-5f}}) {
    Rng rng(seed++);
    auto x = random_f32(rng, c.rows * c.dim, 2.f, 5.f);  // mean ~3.5, σ ~0.87: cancellation
    for (int64_t r = 0; r < c.rows; r += 7)              // and rows on another scale
      for (int64_t i = 0; i < c.dim; ++i) x[r * c.dim + i] *= 40.f;
    auto w = random_bf16(rng, c.dim, 0.5f, 1.5f), b = random_bf16(rng, c.dim);
    auto y = nan_filled(x.size());
    layernorm_ref(x.data(), w.data(), b.data(), y.data(), c.rows, c.dim, c.eps);
    const auto ref = naive(x, w, b, c.rows, c.dim, 1, c.eps, [&](int64_t r) { return r * c.dim; });
    EXPECT_LT(rel_l2(y, ref), kTol) << c.rows << "x" << c.dim;
    // In place gives the same numbers.
    layernorm_ref(x.data(), w.data(), b.data(), x.data(), c.rows, c.dim, c.eps);
    EXPECT_EQ(x, y);
  }
}

// A nearly constant row makes eps matter: var ~1e-8 against eps 1e-6 (checks eps sits inside the
// sqrt and is not dropped).
TEST(LayerNorm, EpsInsideSqrt) {
  Rng rng(9);
  const int64_t dim = 256;
  auto x = random_f32(rng, dim, 1.0f - 2e-4f, 1.0f + 2e-4f);
  auto w = random_bf16(rng, dim, 0.5f, 1.5f), b = random_bf16(rng, dim);
  for (float eps : {1e-6f, 1e-5f}) {
    auto y = nan_filled(dim);
    layernorm_ref(x.data(), w.data(), b.data(), y.data(), 1, dim, eps);
    // Cancellation in x − mean is large here (|x|/σ ~ 1e4): allow 1e-3 of float32 rounding.
    EXPECT_LT(rel_l2(y, naive(x, w, b, 1, dim, 1, eps, [](int64_t) { return int64_t{0}; })), 1e-3);
  }
}

TEST(LayerNorm, Nchw) {
  for (auto [n, ch, hw] : {std::tuple<int64_t, int64_t, int64_t>{2, 256, 64 * 64 / 4}, {1, 5, 7}}) {
    Rng rng(20 + ch);
    auto x = random_f32(rng, n * ch * hw, -3.f, 5.f);
    auto w = random_bf16(rng, ch, 0.5f, 1.5f), b = random_bf16(rng, ch);
    auto y = nan_filled(x.size());
    layernorm2d_nchw_ref(x.data(), w.data(), b.data(), y.data(), n, ch, hw, 1e-6f);
    const auto ref = naive(x, w, b, n * hw, ch, hw, 1e-6,
                           [&](int64_t p) { return (p / hw) * ch * hw + p % hw; });
    EXPECT_LT(rel_l2(y, ref), kTol) << ch;
  }
}

}  // namespace
}  // namespace dsocr
