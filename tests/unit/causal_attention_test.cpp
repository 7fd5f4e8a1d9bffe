#include "kernels/causal_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ref_test_util.h"

namespace dsocr {
namespace {

using test::nan_filled;
using test::random_f32;
using test::rel_l2;
using test::Rng;

constexpr int kHeads = 10;
constexpr int kHeadDim = 128;
constexpr int64_t kRow = kHeads * kHeadDim;
constexpr int64_t kMaxTokens = 300;
const float kScale = 1.f / std::sqrt(128.f);

// Float64 causal attention of queries at positions p0..p0+T-1 over keys/values 0..p0+t.
std::vector<double> attention_f64(const std::vector<float>& q, const std::vector<float>& k,
                                  const std::vector<float>& v, int64_t T, int64_t p0,
                                  int H = kHeads, int D = kHeadDim) {
  const int64_t row = int64_t{H} * D;
  std::vector<double> out(T * row);
  const double scale = 1.0 / std::sqrt(double(D));
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      const int64_t n = p0 + t + 1;
      std::vector<double> s(n);
      double m = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        double d = 0;
        for (int i = 0; i < D; ++i) d += double(q[t * row + h * D + i]) * k[j * row + h * D + i];
        s[j] = d * scale;
        m = std::max(m, s[j]);
      }
      double sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - m));
      for (int i = 0; i < D; ++i) {
        double o = 0;
        for (int64_t j = 0; j < n; ++j) o += s[j] * v[j * row + h * D + i];
        out[t * row + h * D + i] = o / sum;
      }
    }
  return out;
}

struct Data {
  std::vector<float> q, k, v;  // [n, kRow] for positions 0..n-1
};

Data make_data(uint64_t seed, int64_t n) {
  Rng rng(seed);
  // q scaled up so the softmax is peaked (scores of several units), as in a trained model.
  return {random_f32(rng, n * kRow, -3.f, 3.f), random_f32(rng, n * kRow),
          random_f32(rng, n * kRow)};
}

// Runs the positions [0, n) through append+attention in blocks of the given sizes. The caches
// start all-NaN, so a read of a row that was not appended yet (a causality bug) poisons the output.
std::vector<float> run_blocks(const Data& d, const std::vector<int64_t>& blocks) {
  std::vector<float> kc = nan_filled(kMaxTokens * kRow), vc = nan_filled(kMaxTokens * kRow);
  int64_t n = 0;
  for (int64_t b : blocks) n += b;
  std::vector<float> out = nan_filled(n * kRow);
  int64_t p0 = 0;
  for (int64_t T : blocks) {
    kv_append_ref(d.k.data() + p0 * kRow, d.v.data() + p0 * kRow, kc.data(), vc.data(), T, p0,
                  kHeads, kHeadDim);
    causal_attention_ref(d.q.data() + p0 * kRow, kc.data(), vc.data(), out.data() + p0 * kRow, T,
                         p0, kHeads, kHeadDim, kScale);
    p0 += T;
  }
  return out;
}

// float32 dot products of 128 terms (~1e-7 relative each), a float32 exp whose argument carries
// that absolute error times the score magnitude (≲ 10), and a float32 weighted sum: observed
// errors are ~1e-7..1e-6; 1e-5 is the float32 budget of STYLE.md and catches any formula error
// (a missing scale, an off-by-one key range or a wrong head stride give errors ≫ 1e-2).
constexpr double kTol = 1e-5;

TEST(CausalAttention, PrefillMatchesFloat64) {
  for (int64_t T : {1, 7, 82, 282}) {
    const Data d = make_data(41 + T, T);
    const std::vector<float> out = run_blocks(d, {T});
    EXPECT_LT(test::report("prefill T=" + std::to_string(T),
                           rel_l2(out, attention_f64(d.q, d.k, d.v, T, 0))),
              kTol)
        << "T=" << T;
  }
}

TEST(CausalAttention, ChunkedAndDecodeMatchOneShot) {
  const int64_t n = 282;
  const Data d = make_data(42, n);
  const std::vector<float> one = run_blocks(d, {n});
  const std::vector<float> two = run_blocks(d, {200, 82});
  const std::vector<float> odd = run_blocks(d, {1, 7, 82, 192});
  const std::vector<float> tok = run_blocks(d, std::vector<int64_t>(n, 1));
  // Each (query, head) is computed by the same loop over the same cache rows whatever the
  // blocking, so the results are bitwise equal (a GPU kernel would only be within tolerance).
  EXPECT_EQ(rel_l2(two, one), 0.0);
  EXPECT_EQ(rel_l2(odd, one), 0.0);
  EXPECT_EQ(rel_l2(tok, one), 0.0);
  EXPECT_LT(test::report("token-by-token 282", rel_l2(tok, attention_f64(d.q, d.k, d.v, n, 0))),
            kTol);
}

TEST(CausalAttention, DecodeStepAgainstFloat64) {
  // T = 1 at position 281 and a block of 7 at position 100, checked alone against float64.
  for (auto [T, p0] : {std::pair<int64_t, int64_t>{1, 281}, {7, 100}}) {
    const Data d = make_data(43 + p0, p0 + T);
    std::vector<float> kc = nan_filled(kMaxTokens * kRow), vc = nan_filled(kMaxTokens * kRow);
    kv_append_ref(d.k.data(), d.v.data(), kc.data(), vc.data(), p0 + T, 0, kHeads, kHeadDim);
    std::vector<float> out = nan_filled(T * kRow);
    causal_attention_ref(d.q.data() + p0 * kRow, kc.data(), vc.data(), out.data(), T, p0, kHeads,
                         kHeadDim, kScale);
    const auto ref = attention_f64(d.q, d.k, d.v, p0 + T, 0);
    EXPECT_LT(test::report("block T=" + std::to_string(T) + " p0=" + std::to_string(p0),
                           test::rel_l2(out.data(), ref.data() + p0 * kRow, T * kRow)),
              kTol)
        << "T=" << T << " p0=" << p0;
  }
}

TEST(CausalAttention, LargeScoresStayFinite) {
  // Scores of several hundred: a softmax without the max subtraction overflows exp().
  const int64_t T = 7;
  Data d = make_data(44, T);
  for (auto& x : d.q) x *= 40.f;
  const std::vector<float> out = run_blocks(d, {T});
  EXPECT_LT(test::report("large scores", rel_l2(out, attention_f64(d.q, d.k, d.v, T, 0))), kTol);
}

TEST(CausalAttention, AwkwardShape) {
  // 3 heads of 37 (a head_dim that is not a multiple of the 8-lane dot product), two blocks.
  const int H = 3, D = 37;
  const int64_t row = H * D, n = 19;
  Rng rng(45);
  const std::vector<float> q = random_f32(rng, n * row, -3.f, 3.f), k = random_f32(rng, n * row),
                           v = random_f32(rng, n * row);
  std::vector<float> kc = nan_filled(n * row), vc = nan_filled(n * row), out = nan_filled(n * row);
  const float scale = 1.f / std::sqrt(float(D));
  for (auto [p0, T] : {std::pair<int64_t, int64_t>{0, 12}, {12, 7}}) {
    kv_append_ref(k.data() + p0 * row, v.data() + p0 * row, kc.data(), vc.data(), T, p0, H, D);
    causal_attention_ref(q.data() + p0 * row, kc.data(), vc.data(), out.data() + p0 * row, T, p0, H,
                         D, scale);
  }
  EXPECT_LT(test::report("3x37 heads", rel_l2(out, attention_f64(q, k, v, n, 0, H, D))), kTol);
}

}  // namespace
}  // namespace dsocr
