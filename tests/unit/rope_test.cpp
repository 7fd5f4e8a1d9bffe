#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ref_test_util.h"

namespace dsocr {
namespace {

using test::random_f32;
using test::rel_l2;
using test::Rng;

constexpr int kHeads = 10;
constexpr int kHeadDim = 128;
constexpr float kTheta = 10000.f;

TEST(Rope, InvFreqMatchesFormula) {
  std::vector<float> f(kHeadDim / 2, NAN);
  rope_inv_freq_ref(f.data(), kHeadDim, kTheta);
  EXPECT_EQ(f[0], 1.f);
  for (int j = 0; j < kHeadDim / 2; ++j) {
    const double want = std::pow(10000.0, -2.0 * j / kHeadDim);
    // float32 pow (≤ 1 ulp in glibc) then a float32 reciprocal: a few 2⁻²⁴ at most.
    EXPECT_NEAR(f[j] / want, 1.0, 4e-7) << "j=" << j;
  }
  EXPECT_NEAR(f[32], 0.01, 0.01 * 4e-7);  // 10000^(-1/2)
}

TEST(Rope, PositionZeroIsIdentity) {
  Rng rng(31);
  const std::vector<float> x = random_f32(rng, 3 * kHeads * kHeadDim);
  std::vector<float> y = x;
  const int32_t pos[3] = {0, 0, 0};
  rope_ref(y.data(), pos, 3, kHeads, kHeadDim, kTheta);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], x[i]) << i;
}

// head_dim 4, inv_freq = [1, 1/100]. x = e0 at position 1: rotate_half pairs dim 0 with dim 2,
// so the result is [cos 1, 0, sin 1, 0]; the interleaved (MLA) layout would give
// [cos 1, sin 1, 0, 0].
TEST(Rope, RotateHalfLayoutByHand) {
  float x[4] = {1.f, 0.f, 0.f, 0.f};
  const int32_t pos = 1;
  rope_ref(x, &pos, 1, 1, 4, kTheta);
  EXPECT_FLOAT_EQ(x[0], std::cos(1.f));
  EXPECT_EQ(x[1], 0.f);
  EXPECT_FLOAT_EQ(x[2], std::sin(1.f));
  EXPECT_EQ(x[3], 0.f);
  // Second pair (frequency 1/100) at position 3: x = e3 -> [0, -sin .03, 0, cos .03].
  float y[4] = {0.f, 0.f, 0.f, 1.f};
  const int32_t pos3 = 3;
  rope_ref(y, &pos3, 1, 1, 4, kTheta);
  EXPECT_EQ(y[0], 0.f);
  EXPECT_FLOAT_EQ(y[1], -std::sin(0.03f));
  EXPECT_EQ(y[2], 0.f);
  EXPECT_FLOAT_EQ(y[3], std::cos(0.03f));
}

// Float64 evaluation of the rotation. The angle is the float32 product float32(pos)·inv_freq
// (that rounding is part of the definition: PyTorch computes it in float32), everything after
// it in float64.
std::vector<double> rope_f64(const std::vector<float>& x, const std::vector<int32_t>& pos) {
  std::vector<float> inv(kHeadDim / 2);
  rope_inv_freq_ref(inv.data(), kHeadDim, kTheta);
  std::vector<double> y(x.size());
  const int h2 = kHeadDim / 2;
  for (size_t t = 0; t < pos.size(); ++t)
    for (int h = 0; h < kHeads; ++h) {
      const size_t o = (t * kHeads + h) * kHeadDim;
      for (int j = 0; j < h2; ++j) {
        const double a = static_cast<float>(static_cast<float>(pos[t]) * inv[j]);
        const double c = std::cos(a), s = std::sin(a);
        y[o + j] = x[o + j] * c - double(x[o + j + h2]) * s;
        y[o + j + h2] = x[o + j + h2] * c + double(x[o + j]) * s;
      }
    }
  return y;
}

TEST(Rope, MatchesFloat64AtModelShapes) {
  Rng rng(32);
  // (T, p0): prefill blocks, a decode step, and positions near the 8192 limit.
  const std::pair<int64_t, int32_t> cases[] = {{1, 0},   {7, 0},   {82, 0},   {282, 0},
                                               {1, 281}, {7, 100}, {16, 8170}};
  for (auto [T, p0] : cases) {
    const std::vector<float> x = random_f32(rng, T * kHeads * kHeadDim, -2.f, 2.f);
    std::vector<int32_t> pos(T);
    for (int64_t t = 0; t < T; ++t) pos[t] = p0 + static_cast<int32_t>(t);
    std::vector<float> y = x;
    rope_ref(y.data(), pos.data(), T, kHeads, kHeadDim, kTheta);
    // float32 cos/sin (≤ 1 ulp of a value ≤ 1) and two products and a sum: ~1e-7 relative.
    const double err = test::report("rope T=" + std::to_string(T) + " p0=" + std::to_string(p0),
                                    rel_l2(y, rope_f64(x, pos)));
    EXPECT_LT(err, 1e-6) << "T=" << T << " p0=" << p0;
  }
}

TEST(Rope, CosSinTableMatchesApplied) {
  const int32_t pos[3] = {0, 5, 300};
  std::vector<float> c(3 * kHeadDim / 2, NAN), s(3 * kHeadDim / 2, NAN);
  rope_cos_sin_ref(pos, c.data(), s.data(), 3, kHeadDim, kTheta);
  Rng rng(33);
  for (int t = 0; t < 3; ++t) {
    std::vector<float> x = random_f32(rng, kHeadDim), y = x;
    rope_ref(y.data(), &pos[t], 1, 1, kHeadDim, kTheta);
    for (int j = 0; j < kHeadDim / 2; ++j) {
      const float cj = c[t * kHeadDim / 2 + j], sj = s[t * kHeadDim / 2 + j];
      ASSERT_EQ(y[j], x[j] * cj - x[j + 64] * sj) << t << " " << j;
      ASSERT_EQ(y[j + 64], x[j + 64] * cj + x[j] * sj) << t << " " << j;
    }
  }
}

}  // namespace
}  // namespace dsocr
