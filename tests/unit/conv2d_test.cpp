// conv2d_nhwc_ref / patch_embed_ref against a float64 direct convolution (PyTorch semantics:
// zero padding, out = floor((h + 2p − k)/s) + 1, weight [c_out, c_in, kh, kw]). The SAM shapes
// are checked on a sample of output pixels (all corners and edges plus random interior ones).
// Threshold 1e-5: float32 accumulation over k = c_in·k² <= 4608 products (see linear_test).
#include "kernels/conv2d.h"

#include <gtest/gtest.h>

#include <vector>

#include "kernels/linear.h"
#include "tests/unit/ref_test_util.h"

namespace dsocr {
namespace {

using test::nan_filled;
using test::random_bf16;
using test::random_f32;
using test::rel_l2;
using test::Rng;

constexpr double kTol = 1e-5;

// Float64 output pixel (img, oy, ox), all channels.
void naive_pixel(const std::vector<float>& in, const std::vector<uint16_t>& w,
                 const std::vector<uint16_t>& bias, const Conv2dShape& s, int64_t img, int64_t oy,
                 int64_t ox, std::vector<double>& out) {
  for (int64_t co = 0; co < s.c_out; ++co) {
    double acc = bias.empty() ? 0.0 : bf16_to_f32(bias[co]);
    for (int64_t ci = 0; ci < s.c_in; ++ci)
      for (int ky = 0; ky < s.kernel; ++ky)
        for (int kx = 0; kx < s.kernel; ++kx) {
          const int64_t iy = oy * s.stride + ky - s.pad, ix = ox * s.stride + kx - s.pad;
          if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
          acc += static_cast<double>(in[((img * s.h + iy) * s.w + ix) * s.c_in + ci]) *
                 bf16_to_f32(w[((co * s.c_in + ci) * s.kernel + ky) * s.kernel + kx]);
        }
    out.push_back(acc);
  }
}

// Runs the conv and compares `samples` output pixels (0 = all) with float64.
double check(const Conv2dShape& s, bool with_bias, int samples, uint64_t seed) {
  Rng rng(seed);
  auto in = random_f32(rng, s.n * s.h * s.w * s.c_in);
  auto w = random_bf16(rng, s.c_out * s.c_in * s.kernel * s.kernel, -0.2f, 0.2f);
  auto bias = with_bias ? random_bf16(rng, s.c_out) : std::vector<uint16_t>{};
  const int64_t oh = s.out_h(), ow = s.out_w();
  auto out = nan_filled(s.n * oh * ow * s.c_out);
  conv2d_nhwc_ref(in.data(), w.data(), with_bias ? bias.data() : nullptr, out.data(), s);
  std::vector<int64_t> pix;  // flat (img, oy, ox)
  if (samples == 0) {
    for (int64_t p = 0; p < s.n * oh * ow; ++p) pix.push_back(p);
  } else {
    for (int64_t img : {int64_t{0}, s.n - 1})
      for (int64_t oy : {int64_t{0}, oh - 1})
        for (int64_t ox : {int64_t{0}, ow - 1}) pix.push_back((img * oh + oy) * ow + ox);
    for (int i = 0; i < samples; ++i) pix.push_back(rng.below(s.n * oh * ow));
  }
  std::vector<double> ref;
  std::vector<float> got;
  for (int64_t p : pix) {
    naive_pixel(in, w, bias, s, p / (oh * ow), (p % (oh * ow)) / ow, p % ow, ref);
    got.insert(got.end(), out.begin() + p * s.c_out, out.begin() + (p + 1) * s.c_out);
  }
  return rel_l2(got, ref);
}

Conv2dShape shape(int64_t n, int64_t h, int64_t w, int64_t c_in, int64_t c_out, int k, int stride,
                  int pad) {
  Conv2dShape s;
  s.n = n;
  s.h = h;
  s.w = w;
  s.c_in = c_in;
  s.c_out = c_out;
  s.kernel = k;
  s.stride = stride;
  s.pad = pad;
  return s;
}

TEST(Conv2d, SmallOddShapesAllPixels) {
  const std::vector<Conv2dShape> shapes = {
      shape(2, 9, 7, 5, 11, 3, 1, 1),     shape(1, 9, 7, 5, 11, 3, 2, 1),
      shape(3, 8, 10, 13, 40, 3, 2, 1),   shape(1, 5, 6, 7, 9, 1, 1, 0),
      shape(2, 1, 1, 3, 4, 3, 1, 1),      shape(1, 4, 4, 2, 3, 1, 2, 0),
      shape(2, 32, 48, 3, 20, 16, 16, 0),  // patch-embed geometry, non-square
  };
  const std::string keep = gemm_isa();
  for (const char* isa : {"avx512", "avx2", "portable"}) {
    if (!set_gemm_isa(isa)) continue;
    uint64_t seed = 10;
    for (const auto& s : shapes) {
      EXPECT_LT(check(s, true, 0, seed), kTol) << isa << " k" << s.kernel << " s" << s.stride;
      EXPECT_LT(check(s, false, 0, seed + 100), kTol) << isa;
      ++seed;
    }
  }
  set_gemm_isa(keep.c_str());
}

TEST(Conv2d, SamNeckAndDownsamplers) {
  uint64_t seed = 50;
  for (const auto& s : {shape(1, 64, 64, 768, 256, 1, 1, 0),      // neck.0
                        shape(1, 64, 64, 256, 256, 3, 1, 1),      // neck.2 (1024 px)
                        shape(1, 80, 80, 256, 512, 3, 2, 1),      // net_2 (1280 px)
                        shape(1, 40, 40, 512, 1024, 3, 2, 1),     // net_3 (1280 px)
                        shape(2, 20, 20, 512, 1024, 3, 2, 1)}) {  // net_3 (640 px tiles)
    EXPECT_LT(check(s, false, 12, seed++), kTol) << s.c_in << "->" << s.c_out << " " << s.h;
  }
}

TEST(Conv2d, PatchEmbed) {
  Rng rng(70);
  const int64_t n = 1, size = 512;
  auto px = random_f32(rng, n * size * size * 3);
  auto w = random_bf16(rng, 768 * 3 * 16 * 16, -0.1f, 0.1f), b = random_bf16(rng, 768);
  auto out = nan_filled(n * 32 * 32 * 768);
  patch_embed_ref(px.data(), w.data(), b.data(), out.data(), n, size);
  Conv2dShape s = shape(n, size, size, 3, 768, 16, 16, 0);
  std::vector<double> ref;
  std::vector<float> got;
  for (int64_t p : {int64_t{0}, int64_t{31}, int64_t{32 * 31}, int64_t{1023}, int64_t{517}}) {
    naive_pixel(px, w, b, s, 0, p / 32, p % 32, ref);
    got.insert(got.end(), out.begin() + p * 768, out.begin() + (p + 1) * 768);
  }
  EXPECT_LT(rel_l2(got, ref), kTol);
}

}  // namespace
}  // namespace dsocr
