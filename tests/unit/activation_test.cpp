// gelu_erf_ref / quick_gelu_ref (and their scalar forms) against float64 erf / exp.
// Threshold 1e-5: float32 erff/expf are within a few ulp, the products add two roundings.
#include "kernels/activation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/unit/ref_test_util.h"

namespace dsocr {
namespace {

using test::random_f32;
using test::rel_l2;
using test::Rng;

TEST(Activation, GeluErf) {
  Rng rng(1);
  auto x = random_f32(rng, 100003, -8.f, 8.f);
  std::vector<double> ref(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    ref[i] = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
  gelu_erf_ref(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_LT(rel_l2(x, ref), 1e-5);
  // The negative tail alone (small outputs, where a tanh approximation would be visibly off).
  std::vector<float> neg;
  std::vector<double> neg_ref;
  for (double v = -5.0; v < -1.0; v += 0.01) {
    neg.push_back(gelu_erf(static_cast<float>(v)));
    const double f = static_cast<float>(v);
    neg_ref.push_back(0.5 * f * (1.0 + std::erf(f / std::sqrt(2.0))));
  }
  EXPECT_LT(rel_l2(neg, neg_ref), 1e-5);
}

TEST(Activation, QuickGelu) {
  Rng rng(2);
  auto x = random_f32(rng, 100003, -12.f, 12.f);
  std::vector<double> ref(x.size());
  for (size_t i = 0; i < x.size(); ++i) ref[i] = x[i] / (1.0 + std::exp(-1.702 * x[i]));
  quick_gelu_ref(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_LT(rel_l2(x, ref), 1e-5);
  EXPECT_EQ(quick_gelu(-200.f), -0.f);  // exp overflow to inf gives -0, not NaN
}

}  // namespace
}  // namespace dsocr
