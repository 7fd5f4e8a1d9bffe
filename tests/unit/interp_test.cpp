// interp_bicubic_aa_{chw,hwc}_ref and interp_linear_rows_ref.
// * float64 references written independently of the kernel's window bookkeeping: every input
//   index j gets weight cubic((j − centre + 0.5)/max(scale, 1)) (zero beyond the support), the
//   weights are normalised over j in [0, in), out = Σ_y Σ_x wy·wx·in. Threshold 1e-5: float32
//   weights and sums over at most 9 x 9 taps (~1e-7).
// * hand-derived values for tiny inputs (Keys a = −0.5: cubic(0.25) = 111/128,
//   cubic(0.75) = 29/128, cubic(1.25) = −9/128), identity at equal sizes, constants preserved.
#include "kernels/interp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/unit/ref_test_util.h"

namespace dsocr {
namespace {

using test::nan_filled;
using test::random_f32;
using test::rel_l2;
using test::Rng;

double cubic64(double x) {
  const double a = -0.5;
  x = std::fabs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

// [out, in] weight matrix of one axis.
std::vector<double> weights64(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / out, s = std::max(scale, 1.0);
  std::vector<double> w(out * in);
  for (int64_t i = 0; i < out; ++i) {
    const double center = scale * (i + 0.5);
    double total = 0;
    for (int64_t j = 0; j < in; ++j) total += w[i * in + j] = cubic64((j - center + 0.5) / s);
    for (int64_t j = 0; j < in; ++j) w[i * in + j] /= total;
  }
  return w;
}

// HWC float64 reference.
std::vector<double> naive_hwc(const std::vector<float>& in, int64_t c, int64_t ih, int64_t iw,
                              int64_t oh, int64_t ow) {
  const auto wy = weights64(ih, oh), wx = weights64(iw, ow);
  std::vector<double> out(oh * ow * c, 0.0);
  for (int64_t oy = 0; oy < oh; ++oy)
    for (int64_t ox = 0; ox < ow; ++ox)
      for (int64_t y = 0; y < ih; ++y)
        for (int64_t x = 0; x < iw; ++x) {
          const double w = wy[oy * ih + y] * wx[ox * iw + x];
          if (w == 0) continue;
          for (int64_t ch = 0; ch < c; ++ch)
            out[(oy * ow + ox) * c + ch] += w * in[(y * iw + x) * c + ch];
        }
  return out;
}

struct Sz {
  int64_t c, ih, iw, oh, ow;
};

TEST(InterpBicubicAA, ModelShapesHwc) {
  uint64_t seed = 1;
  // SAM pos_embed 64x64x768 -> 32, 40, 80 (Tiny/Small/Large); CLIP 16x16x1024 -> 8, 10, 20.
  for (Sz s : {Sz{768, 64, 64, 32, 32}, Sz{768, 64, 64, 40, 40}, Sz{768, 64, 64, 80, 80},
               Sz{1024, 16, 16, 8, 8}, Sz{1024, 16, 16, 10, 10}, Sz{1024, 16, 16, 20, 20}}) {
    Rng rng(seed++);
    auto in = random_f32(rng, s.c * s.ih * s.iw);
    auto out = nan_filled(s.c * s.oh * s.ow);
    interp_bicubic_aa_hwc_ref(in.data(), out.data(), s.c, s.ih, s.iw, s.oh, s.ow);
    EXPECT_LT(rel_l2(out, naive_hwc(in, s.c, s.ih, s.iw, s.oh, s.ow)), 1e-5)
        << s.ih << "->" << s.oh;
  }
}

// Non-square, mixed up/down per axis, odd sizes; CHW must equal HWC transposed.
TEST(InterpBicubicAA, OddShapesChwAndHwc) {
  uint64_t seed = 20;
  for (Sz s : {Sz{3, 5, 9, 7, 4}, Sz{2, 1, 6, 3, 11}, Sz{5, 13, 2, 3, 5}, Sz{1, 7, 7, 1, 1},
               Sz{300, 11, 17, 29, 6}}) {
    Rng rng(seed++);
    auto hwc = random_f32(rng, s.c * s.ih * s.iw);
    std::vector<float> chw(hwc.size());
    for (int64_t p = 0; p < s.ih * s.iw; ++p)
      for (int64_t ch = 0; ch < s.c; ++ch) chw[ch * s.ih * s.iw + p] = hwc[p * s.c + ch];
    auto out_hwc = nan_filled(s.c * s.oh * s.ow), out_chw = nan_filled(s.c * s.oh * s.ow);
    interp_bicubic_aa_hwc_ref(hwc.data(), out_hwc.data(), s.c, s.ih, s.iw, s.oh, s.ow);
    interp_bicubic_aa_chw_ref(chw.data(), out_chw.data(), s.c, s.ih, s.iw, s.oh, s.ow);
    const auto ref = naive_hwc(hwc, s.c, s.ih, s.iw, s.oh, s.ow);
    EXPECT_LT(rel_l2(out_hwc, ref), 1e-5) << s.ih << "x" << s.iw << "->" << s.oh << "x" << s.ow;
    std::vector<float> back(out_chw.size());
    for (int64_t p = 0; p < s.oh * s.ow; ++p)
      for (int64_t ch = 0; ch < s.c; ++ch) back[p * s.c + ch] = out_chw[ch * s.oh * s.ow + p];
    EXPECT_EQ(back, out_hwc);
  }
}

TEST(InterpBicubicAA, IdentityAtEqualSize) {
  Rng rng(30);
  auto in = random_f32(rng, 7 * 16 * 13);
  auto out = nan_filled(in.size());
  interp_bicubic_aa_hwc_ref(in.data(), out.data(), 7, 16, 13, 16, 13);
  EXPECT_EQ(out, in);  // taps (0, 1, 0): exact
}

TEST(InterpBicubicAA, ConstantStaysConstant) {
  for (Sz s : {Sz{4, 64, 64, 80, 80}, Sz{4, 64, 64, 32, 32}, Sz{2, 16, 16, 10, 10}}) {
    std::vector<float> in(s.c * s.ih * s.iw, 0.7f);
    auto out = nan_filled(s.c * s.oh * s.ow);
    interp_bicubic_aa_hwc_ref(in.data(), out.data(), s.c, s.ih, s.iw, s.oh, s.ow);
    for (float v : out) EXPECT_NEAR(v, 0.7f, 1e-6f);
  }
}

TEST(InterpBicubicAA, HandValues) {
  const float a = 0.3f, b = -1.1f, c = 2.0f, d = 0.5f;
  // Upsampling 2 -> 4 along x (scale 0.5, support 2): taps at distances 0.25/1.25 and 0.25/0.75.
  {
    const float in[2] = {a, b};
    float out[4];
    interp_bicubic_aa_hwc_ref(in, out, 1, 1, 2, 1, 4);
    EXPECT_NEAR(out[0], (37 * a - 3 * b) / 34, 1e-6);
    EXPECT_NEAR(out[1], (111 * a + 29 * b) / 140, 1e-6);
    EXPECT_NEAR(out[2], (29 * a + 111 * b) / 140, 1e-6);
    EXPECT_NEAR(out[3], (-3 * a + 37 * b) / 34, 1e-6);
  }
  // Downsampling 4 -> 2 along y (scale 2, support 4): taps (j − c + 0.5)/2 = −.25, .25, .75, 1.25.
  {
    const float in[4] = {a, b, c, d};
    float out[2];
    interp_bicubic_aa_chw_ref(in, out, 1, 4, 1, 2, 1);
    EXPECT_NEAR(out[0], (111 * a + 111 * b + 29 * c - 9 * d) / 242, 1e-6);
    EXPECT_NEAR(out[1], (-9 * a + 29 * b + 111 * c + 111 * d) / 242, 1e-6);
  }
}

// Float64 linear interpolation. The kernel, like PyTorch, forms the source position in float32
// (scale = 127/159 rounded, times i + 0.5): ~2^-24·127 absolute error in the position, a few 1e-6
// relative in the output, hence 1e-5 here too.
std::vector<double> naive_linear(const std::vector<float>& in, int64_t il, int64_t ol, int64_t c) {
  std::vector<double> out(ol * c);
  const double scale = static_cast<double>(il) / ol;
  for (int64_t i = 0; i < ol; ++i) {
    const double src = std::max(scale * (i + 0.5) - 0.5, 0.0);
    const int64_t i0 = static_cast<int64_t>(src), i1 = std::min(i0 + 1, il - 1);
    const double l = src - i0;
    for (int64_t ch = 0; ch < c; ++ch)
      out[i * c + ch] = (1 - l) * in[i0 * c + ch] + l * in[i1 * c + ch];
  }
  return out;
}

TEST(InterpLinear, RelPosTables) {
  uint64_t seed = 40;
  for (auto [il, ol] : {std::pair<int64_t, int64_t>{127, 63},
                        {127, 79},
                        {127, 159},
                        {27, 27},
                        {5, 3},
                        {3, 8},
                        {1, 4}}) {
    Rng rng(seed++);
    auto in = random_f32(rng, il * 64);
    auto out = nan_filled(ol * 64);
    interp_linear_rows_ref(in.data(), out.data(), il, ol, 64);
    EXPECT_LT(rel_l2(out, naive_linear(in, il, ol, 64)), 1e-5) << il << "->" << ol;
    if (il == ol) {
      EXPECT_EQ(out, in);
    }
  }
  // Hand values, 3 -> 2 (scale 1.5): src = 0.25 and 1.75.
  const float in[3] = {1.0f, -2.0f, 4.0f};
  float out[2];
  interp_linear_rows_ref(in, out, 3, 2, 1);
  EXPECT_FLOAT_EQ(out[0], 0.75f * 1.0f + 0.25f * -2.0f);
  EXPECT_FLOAT_EQ(out[1], 0.25f * -2.0f + 0.75f * 4.0f);
}

}  // namespace
}  // namespace dsocr
