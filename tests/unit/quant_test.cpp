// The weight-only quantization formats (kernels/quant.h): exact values on crafted rows (scale
// rounding both ways, ties, outliers, all-equal / zero / negative-only groups, the INT4 nibble
// layout and its GPU dequantisation trick), the shape rules, the |w − w'| <= scale/2 bound on
// random weights, and the GEMV references against a float64 dot product.
#include "kernels/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "loader/bf16.h"
#include "unit/ref_test_util.h"

namespace dsocr {
namespace {

using test::Rng;

struct Int8 {
  std::vector<int8_t> q;
  std::vector<uint16_t> scale;
  std::vector<float> w;  // dequantized
};
Int8 round_trip_int8(const std::vector<float>& w, int64_t n, int64_t k) {
  Int8 r{std::vector<int8_t>(n * k, 99), std::vector<uint16_t>(n, 0xFFFF), test::nan_filled(n * k)};
  quantize_int8_ref(w.data(), r.q.data(), r.scale.data(), n, k);
  dequantize_int8_ref(r.q.data(), r.scale.data(), r.w.data(), n, k);
  return r;
}

struct Int4 {
  std::vector<uint8_t> packed;
  std::vector<uint16_t> scale;
  std::vector<float> w;
};
Int4 round_trip_int4(const std::vector<float>& w, int64_t n, int64_t k, int group) {
  Int4 r{std::vector<uint8_t>(n * k / 2, 0xAA), std::vector<uint16_t>(n * (k / group), 0xFFFF),
         test::nan_filled(n * k)};
  quantize_int4_ref(w.data(), r.packed.data(), r.scale.data(), n, k, group);
  dequantize_int4_ref(r.packed.data(), r.scale.data(), r.w.data(), n, k, group);
  return r;
}

// The stored nibble (u = q + 8) of column j of a packed row, read the way quant.h's diagram says:
// word j/8 (little-endian), nibble position p with kInt4Perm[p] == j % 8.
int nibble_at(const uint8_t* row, int64_t j) {
  uint32_t word;
  std::memcpy(&word, row + j / 8 * 4, 4);
  for (int p = 0; p < 8; ++p)
    if (kInt4Perm[p] == j % 8) return (word >> (4 * p)) & 0xF;
  return -1;
}

// ---- INT8 ----

TEST(QuantInt8, ExactScaleOneTiesAndNegativeRow) {
  // Row 0: amax 127 -> scale exactly 1, q = rint(w) with ties to even.
  // Row 1: negative only, amax 127 from the most negative value.
  const int64_t k = 16;
  std::vector<float> w = {127,    2.5f,    3.5f,  -2.5f, -3.5f,   0.5f, -0.5f,  1.5f,
                          126.5f, -126.5f, 0.49f, 0.51f, 0,       -0.f, 64,     -127,
                          -127,   -63.5f,  -0.5f, -1.5f, -126.5f, -1,   -2,     -3,
                          -4,     -5,      -6,    -7,    -8,      -9,   -10.5f, -11.5f};
  Int8 r = round_trip_int8(w, 2, k);
  EXPECT_EQ(r.scale[0], 0x3F80);  // 1.0
  EXPECT_EQ(r.scale[1], 0x3F80);
  const std::vector<int8_t> want = {127, 2,  4,  -2, -4,   0,    0,   2,  126, -126, 0,
                                    1,   0,  0,  64, -127, -127, -64, 0,  -2,  -126, -1,
                                    -2,  -3, -4, -5, -6,   -7,   -8,  -9, -10, -12};
  EXPECT_EQ(r.q, want);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(r.w[i], static_cast<float>(want[i])) << i;
}

TEST(QuantInt8, ScaleRoundedToBf16BeforeQuantizing) {
  const int64_t k = 16;
  std::vector<float> w(3 * k, 0.f);
  // Row 0: amax 100 -> 100/127 = 0.787402 rounds UP to bf16 0.7890625 (0x3F4A); 100 -> 126.73
  // -> 127; 50 -> 63.37 -> 63 -> 49.7109375.
  w[0] = 100, w[1] = 50, w[2] = -100;
  // Row 1: amax 700 -> 5.5118 rounds DOWN to 5.5 (0x40B0); 700/5.5 = 127.27 -> 127 (inside the
  // grid without the clamp); 5.5 * 63.5 = 349.25 is a tie -> 64 (even).
  w[k + 0] = -700, w[k + 1] = 349.25f, w[k + 2] = 2.75f, w[k + 3] = 8.25f;
  // Row 2: all zero -> scale 0, q 0, w' 0.
  Int8 r = round_trip_int8(w, 3, k);
  EXPECT_EQ(r.scale[0], 0x3F4A);
  EXPECT_EQ(bf16_to_f32(r.scale[0]), 0.7890625f);
  EXPECT_EQ(r.q[0], 127);
  EXPECT_EQ(r.q[1], 63);
  EXPECT_EQ(r.q[2], -127);
  EXPECT_EQ(r.w[0], 100.2109375f);
  EXPECT_EQ(r.w[1], 49.7109375f);
  EXPECT_EQ(r.scale[1], 0x40B0);
  EXPECT_EQ(r.q[k + 0], -127);
  EXPECT_EQ(r.w[k + 0], -698.5f);
  EXPECT_EQ(r.q[k + 1], 64);  // 63.5 -> 64
  EXPECT_EQ(r.q[k + 2], 0);   // 0.5 -> 0
  EXPECT_EQ(r.q[k + 3], 2);   // 1.5 -> 2
  EXPECT_EQ(r.scale[2], 0);
  for (int64_t j = 0; j < k; ++j) {
    EXPECT_EQ(r.q[2 * k + j], 0);
    EXPECT_EQ(r.w[2 * k + j], 0.f);
  }
}

TEST(QuantInt8, OutlierCrushesSmallValues) {
  // One outlier of 508 = 127 * 4 -> scale 4: everything below 2 in magnitude becomes 0, and
  // 2 (= 0.5 step) is a tie that goes to the even 0.
  const int64_t k = 16;
  std::vector<float> w = {1, -1, 1.99f, 2, 2.01f, 6, 10, -10, 508, 0, 0, 0, 0, 0, 0, 0};
  Int8 r = round_trip_int8(w, 1, k);
  EXPECT_EQ(bf16_to_f32(r.scale[0]), 4.f);
  const std::vector<int8_t> want = {0, 0, 0, 0, 1, 2, 2, -2, 127, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(r.q, want);
}

TEST(QuantInt8, TinyRowRoundsToZeroScale) {
  // amax = the smallest float subnormal: amax / 127 rounds to 0 in FP32 -> scale 0 -> q = 0.
  std::vector<float> w(16, 0.f);
  w[3] = std::ldexp(1.f, -149);
  Int8 r = round_trip_int8(w, 1, 16);
  EXPECT_EQ(r.scale[0], 0);
  for (int8_t q : r.q) EXPECT_EQ(q, 0);
}

// ---- INT4 ----

TEST(QuantInt4, NibbleLayoutBytes) {
  // Columns 0..7 with q = j - 7, i.e. u = j + 1; scale 1 (amax 7). The diagram in quant.h:
  // byte 0 = c0 | c2<<4, byte 1 = c4 | c6<<4, byte 2 = c1 | c3<<4, byte 3 = c5 | c7<<4.
  const int64_t k = 64;
  std::vector<float> w(k, 0.f);
  for (int j = 0; j < 8; ++j) w[j] = static_cast<float>(j - 7);
  Int4 r = round_trip_int4(w, 1, k, 64);
  EXPECT_EQ(bf16_to_f32(r.scale[0]), 1.f);
  EXPECT_EQ(r.packed[0], 0x31);
  EXPECT_EQ(r.packed[1], 0x75);
  EXPECT_EQ(r.packed[2], 0x42);
  EXPECT_EQ(r.packed[3], 0x86);
  for (int64_t b = 4; b < k / 2; ++b) EXPECT_EQ(r.packed[b], 0x88) << b;  // zeros: u = 8
  for (int j = 0; j < 8; ++j) EXPECT_EQ(nibble_at(r.packed.data(), j), j + 1);
}

TEST(QuantInt4, ExactGroups) {
  // One row of k = 512, group 128: four groups with exact expectations.
  const int64_t k = 512;
  const int g = 128;
  std::vector<float> w(k);
  // Group 0: all equal 3.5 -> scale 0.5, q = 7 everywhere, exact round trip.
  for (int j = 0; j < g; ++j) w[j] = 3.5f;
  // Group 1: all zero -> scale 0, u = 8, w' = 0.
  for (int j = g; j < 2 * g; ++j) w[j] = 0.f;
  // Group 2: scale 1 (amax 7), ties to even and the ends of the grid, negative values too.
  const float ties[] = {0.5f, 1.5f, 2.5f, -2.5f, 6.5f, -6.5f, 7, -7, 3.49f, -3.51f, -0.5f, 4.5f};
  const int want_ties[] = {0, 2, 2, -2, 6, -6, 7, -7, 3, -4, 0, 4};
  for (int j = 0; j < g; ++j) w[2 * g + j] = j < 12 ? ties[j] : 0.25f;
  // Group 3: negative only, with an outlier -700 -> scale 100: -49 -> 0, -50 -> tie -> 0,
  // -150 -> -1.5 -> -2, -250 -> -2.5 -> -2, -349 -> -3.
  const float neg[] = {-700, -49, -50, -150, -250, -349, -351};
  const int want_neg[] = {-7, 0, 0, -2, -2, -3, -4};
  for (int j = 0; j < g; ++j) w[3 * g + j] = j < 7 ? neg[j] : -1.f;
  Int4 r = round_trip_int4(w, 1, k, g);
  ASSERT_EQ(r.scale.size(), 4u);
  EXPECT_EQ(bf16_to_f32(r.scale[0]), 0.5f);
  EXPECT_EQ(r.scale[1], 0);
  EXPECT_EQ(bf16_to_f32(r.scale[2]), 1.f);
  EXPECT_EQ(bf16_to_f32(r.scale[3]), 100.f);
  for (int j = 0; j < g; ++j) {
    EXPECT_EQ(nibble_at(r.packed.data(), j), 7 + 8);
    EXPECT_EQ(r.w[j], 3.5f);
    EXPECT_EQ(nibble_at(r.packed.data(), g + j), 8);
    EXPECT_EQ(r.w[g + j], 0.f);
  }
  for (int j = 0; j < 12; ++j) {
    EXPECT_EQ(nibble_at(r.packed.data(), 2 * g + j), want_ties[j] + 8) << ties[j];
    EXPECT_EQ(r.w[2 * g + j], static_cast<float>(want_ties[j])) << ties[j];
  }
  EXPECT_EQ(r.w[2 * g + 12], 0.f);  // 0.25 -> 0
  for (int j = 0; j < 7; ++j) {
    EXPECT_EQ(nibble_at(r.packed.data(), 3 * g + j), want_neg[j] + 8) << neg[j];
    EXPECT_EQ(r.w[3 * g + j], 100.f * want_neg[j]) << neg[j];
  }
  EXPECT_EQ(r.w[3 * g + 7], 0.f);  // -1 -> -0.01 -> 0
}

TEST(QuantInt4, ScaleRoundsAndGroupsAreIndependent) {
  // Group 64: amax 100 -> 100/7 = 14.2857 -> bf16 14.3125 (0x4165); 100/14.3125 = 6.99 -> 7.
  // The second group (amax 1) is unaffected by the first one's outlier.
  const int64_t k = 128;
  std::vector<float> w(k, 0.f);
  w[5] = 100, w[6] = 50, w[64] = 1, w[65] = -0.5f;
  Int4 r = round_trip_int4(w, 1, k, 64);
  EXPECT_EQ(r.scale[0], 0x4165);
  EXPECT_EQ(nibble_at(r.packed.data(), 5), 7 + 8);
  EXPECT_EQ(r.w[5], 7 * 14.3125f);
  EXPECT_EQ(nibble_at(r.packed.data(), 6), 3 + 8);  // 50/14.3125 = 3.49 -> 3
  // 1/7 = 0.142857 -> bf16 0.142578125 (0x3E12); 1/s = 7.01 -> 7; -0.5/s = -3.507 -> -4.
  EXPECT_EQ(r.scale[1], 0x3E12);
  EXPECT_EQ(nibble_at(r.packed.data(), 64), 7 + 8);
  EXPECT_EQ(nibble_at(r.packed.data(), 65), -4 + 8);
}

// The GPU dequantisation trick of quant.h, emulated bit for bit: (word >> 4i) & 0x000F000F |
// 0x43004300 is the BF16 pair (128 + u), minus 136 gives q; it must give columns (2i, 2i+1).
TEST(QuantInt4, MagicNumberDequantMatchesLayout) {
  Rng rng(11);
  const int64_t n = 3, k = 256;
  const std::vector<float> w = test::random_f32(rng, n * k, -2.f, 2.f);
  Int4 r = round_trip_int4(w, n, k, 128);
  for (int64_t row = 0; row < n; ++row) {
    const uint8_t* p = r.packed.data() + row * k / 2;
    for (int64_t c = 0; c < k; c += 8) {
      uint32_t word;
      std::memcpy(&word, p + c / 2, 4);
      for (int i = 0; i < 4; ++i) {
        const uint32_t t = ((word >> (4 * i)) & 0x000F000Fu) | 0x43004300u;
        const float lo = bf16_to_f32(static_cast<uint16_t>(t & 0xFFFF)) - 136.f;
        const float hi = bf16_to_f32(static_cast<uint16_t>(t >> 16)) - 136.f;
        const float s = bf16_to_f32(r.scale[row * (k / 128) + c / 128]);
        EXPECT_EQ(lo * s, r.w[row * k + c + 2 * i]) << row << " " << c << " " << i;
        EXPECT_EQ(hi * s, r.w[row * k + c + 2 * i + 1]) << row << " " << c << " " << i;
      }
    }
  }
}

// ---- Shape rules ----

TEST(QuantShape, RefusesWhatTheLayoutCannotHold) {
  EXPECT_TRUE(check_quant_shape(WeightFormat::kInt8, 1280, 6848, 0).ok());
  EXPECT_TRUE(check_quant_shape(WeightFormat::kInt4, 1280, 896, 128).ok());
  EXPECT_TRUE(check_quant_shape(WeightFormat::kInt4, 1280, 6848, 64).ok());
  EXPECT_TRUE(check_quant_shape(WeightFormat::kBf16, 3, 5, 0).ok());
  struct Bad {
    WeightFormat f;
    int64_t n, k;
    int group;
    const char* want;
  };
  const Bad bad[] = {
      {WeightFormat::kInt4, 1280, 6848, 128, "not a multiple of the group 128"},
      {WeightFormat::kInt4, 1280, 1280, 32, "int4 group 32: unsupported"},
      {WeightFormat::kInt8, 10, 20, 0, "k % 16 != 0"},
      {WeightFormat::kInt8, 0, 16, 0, "empty shape"},
  };
  for (const Bad& b : bad) {
    Status s = check_quant_shape(b.f, b.n, b.k, b.group);
    ASSERT_FALSE(s.ok()) << b.want;
    EXPECT_NE(s.message().find(b.want), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("; "), std::string::npos) << "no advice: " << s.message();
  }
  EXPECT_EQ(quant_bytes(WeightFormat::kInt8, 896, 1280, 0), 896u * 1280 + 896 * 2);
  EXPECT_EQ(quant_bytes(WeightFormat::kInt4, 896, 1280, 128), 896u * 640 + 896 * 10 * 2);
  EXPECT_EQ(quant_bytes(WeightFormat::kInt4, 896, 1280, 64), 896u * 640 + 896 * 20 * 2);
  EXPECT_EQ(quant_bytes(WeightFormat::kBf16, 896, 1280, 0), 896u * 1280 * 2);
}

// ---- Random weights: the error bound, grid ends, and the scales ----

// |w − w'| <= scale · (1/2 + qmax·2^-24) for every element (quant.h), checked in float64; the
// largest magnitude of every block lands on ±qmax; q stays in the grid.
TEST(QuantRandom, ErrorWithinHalfAStep) {
  Rng rng(5);
  for (int64_t k : {128, 1280, 896}) {
    const int64_t n = 37;
    std::vector<float> w = test::random_f32(rng, n * k, -1.f, 1.f);
    for (int64_t i = 0; i < n * k; i += 97) w[i] *= 40.f;  // outliers
    Int8 r8 = round_trip_int8(w, n, k);
    for (int64_t row = 0; row < n; ++row) {
      const double s = bf16_to_f32(r8.scale[row]);
      double amax = 0;
      for (int64_t j = 0; j < k; ++j) amax = std::max(amax, std::fabs(double(w[row * k + j])));
      EXPECT_NEAR(s, amax / 127, amax / 127 * 0x1p-8) << row;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t i = row * k + j;
        ASSERT_LE(std::fabs(double(w[i]) - double(r8.w[i])), s * (0.5 + 127 * 0x1p-24)) << i;
        ASSERT_GE(r8.q[i], -127);
        if (std::fabs(double(w[i])) == amax) {
          EXPECT_EQ(std::abs(r8.q[i]), 127) << i;
        }
      }
    }
    for (int group : {64, 128}) {
      if (k % group) continue;
      Int4 r4 = round_trip_int4(w, n, k, group);
      for (int64_t row = 0; row < n; ++row)
        for (int64_t g = 0; g < k / group; ++g) {
          const double s = bf16_to_f32(r4.scale[row * (k / group) + g]);
          double amax = 0;
          for (int64_t j = g * group; j < (g + 1) * group; ++j)
            amax = std::max(amax, std::fabs(double(w[row * k + j])));
          EXPECT_NEAR(s, amax / 7, amax / 7 * 0x1p-8);
          for (int64_t j = g * group; j < (g + 1) * group; ++j) {
            const int64_t i = row * k + j;
            ASSERT_LE(std::fabs(double(w[i]) - double(r4.w[i])), s * (0.5 + 7 * 0x1p-24)) << i;
            const int u = nibble_at(r4.packed.data() + row * k / 2, j);
            ASSERT_GE(u, 1);  // q >= -7: u = 0 is never written
            if (std::fabs(double(w[i])) == amax) {
              EXPECT_EQ(std::abs(u - 8), 7) << i;
            }
          }
        }
    }
  }
}

// Negating W negates q and keeps the scales (the symmetric grid).
TEST(QuantRandom, SymmetricUnderNegation) {
  Rng rng(6);
  const int64_t n = 9, k = 256;
  std::vector<float> w = test::random_f32(rng, n * k, -3.f, 3.f), neg(w.size());
  for (size_t i = 0; i < w.size(); ++i) neg[i] = -w[i];
  Int8 a = round_trip_int8(w, n, k), b = round_trip_int8(neg, n, k);
  EXPECT_EQ(a.scale, b.scale);
  for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(a.q[i], -b.q[i]) << i;
  Int4 c = round_trip_int4(w, n, k, 64), d = round_trip_int4(neg, n, k, 64);
  EXPECT_EQ(c.scale, d.scale);
  for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(c.w[i], -d.w[i]) << i;
}

// ---- GEMV references: y = x · dequant(W)ᵀ against a float64 dot of the dequantized weights ----

TEST(QuantGemv, MatchesFloat64DotOfDequantizedWeights) {
  Rng rng(7);
  struct Shape {
    int64_t m, n, k;
    int group;
  };
  // The model's decode shapes (q/k/v/o, expert gate/up/down, dense down with group 64) and
  // awkward ones (n = 1, odd n, m up to 9).
  const Shape shapes[] = {{1, 1280, 1280, 128}, {4, 896, 1280, 128}, {8, 1280, 896, 128},
                          {3, 1280, 6848, 64},  {1, 1, 64, 64},      {9, 37, 192, 64},
                          {2, 5, 128, 128}};
  for (const Shape& sh : shapes) {
    const std::vector<float> x = test::random_f32(rng, sh.m * sh.k);
    const std::vector<float> w = test::random_f32(rng, sh.n * sh.k, -0.05f, 0.05f);
    Int8 r8 = round_trip_int8(w, sh.n, sh.k);
    Int4 r4 = round_trip_int4(w, sh.n, sh.k, sh.group);
    for (int fmt = 0; fmt < 2; ++fmt) {
      const std::vector<float>& wd = fmt == 0 ? r8.w : r4.w;
      std::vector<double> ref(sh.m * sh.n);
      for (int64_t i = 0; i < sh.m; ++i)
        for (int64_t r = 0; r < sh.n; ++r) {
          double acc = 0;
          for (int64_t j = 0; j < sh.k; ++j) acc += double(x[i * sh.k + j]) * wd[r * sh.k + j];
          ref[i * sh.n + r] = acc;
        }
      std::vector<float> y = test::nan_filled(sh.m * sh.n);
      if (fmt == 0)
        gemv_int8_ref(x.data(), r8.q.data(), r8.scale.data(), y.data(), sh.m, sh.n, sh.k);
      else
        gemv_int4_ref(x.data(), r4.packed.data(), r4.scale.data(), y.data(), sh.m, sh.n, sh.k,
                      sh.group);
      const double err =
          test::report(strfmt("gemv %s m=%lld n=%lld k=%lld", fmt == 0 ? "int8" : "int4",
                              static_cast<long long>(sh.m), static_cast<long long>(sh.n),
                              static_cast<long long>(sh.k)),
                       test::rel_l2(y, ref));
      EXPECT_LT(err, 1e-5) << "fmt " << fmt << " m " << sh.m << " n " << sh.n << " k " << sh.k;
    }
  }
}

}  // namespace
}  // namespace dsocr
