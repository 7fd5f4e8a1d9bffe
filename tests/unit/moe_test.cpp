#include "kernels/moe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/parallel.h"
#include "ref_test_util.h"

namespace dsocr {
namespace {

using test::nan_filled;
using test::random_bf16;
using test::random_f32;
using test::rel_l2;
using test::Rng;

constexpr int64_t kDim = 1280;
constexpr int kExperts = 64;
constexpr int kTopK = 6;
constexpr int64_t kMoeInter = 896;
constexpr int64_t kSharedInter = 1792;

// ---- Router ----

struct RouterRef {
  std::vector<double> probs;  // [T, n_experts]
};

RouterRef router_f64(const std::vector<float>& x, const std::vector<uint16_t>& wg, int64_t T) {
  RouterRef r{std::vector<double>(T * kExperts)};
  for (int64_t t = 0; t < T; ++t) {
    double* p = r.probs.data() + t * kExperts;
    double m = -INFINITY;
    for (int e = 0; e < kExperts; ++e) {
      double s = 0;
      for (int64_t i = 0; i < kDim; ++i)
        s += double(x[t * kDim + i]) * bf16_to_f32(wg[e * kDim + i]);
      p[e] = s;
      m = std::max(m, s);
    }
    double sum = 0;
    for (int e = 0; e < kExperts; ++e) sum += (p[e] = std::exp(p[e] - m));
    for (int e = 0; e < kExperts; ++e) p[e] /= sum;
  }
  return r;
}

// Expert ids sorted by descending probability, ties by ascending id.
std::vector<int> ranked(const double* p) {
  std::vector<int> id(kExperts);
  std::iota(id.begin(), id.end(), 0);
  std::stable_sort(id.begin(), id.end(), [&](int a, int b) { return p[a] > p[b]; });
  return id;
}

TEST(MoeRouter, TopKAndWeightsMatchFloat64Softmax) {
  Rng rng(71);
  // Twice the SYNTH-1 scale so the router logits spread over a few units.
  const float a = 2.f * std::sqrt(3.f / kDim);
  const std::vector<uint16_t> wg = random_bf16(rng, kExperts * kDim, -a, a);
  for (int64_t T : {1, 7, 82, 282}) {
    const std::vector<float> x = random_f32(rng, T * kDim, -2.f, 2.f);
    std::vector<float> probs = nan_filled(T * kExperts), w = nan_filled(T * kTopK);
    std::vector<int32_t> idx(T * kTopK, -1);
    moe_router_ref(x.data(), wg.data(), probs.data(), idx.data(), w.data(), T, kDim, kExperts,
                   kTopK, 1.f);
    const RouterRef ref = router_f64(x, wg, T);
    // A probability's relative error is the absolute error of its float32 logit (a 1280-term dot
    // product of magnitude ~2): observed ≤ 1e-6; 1e-5 is the float32 budget.
    EXPECT_LT(test::report("router probs T=" + std::to_string(T), rel_l2(probs, ref.probs)), 1e-5);
    std::vector<double> w_ref(T * kTopK);
    int near_ties = 0;
    for (int64_t t = 0; t < T; ++t) {
      const double* p = ref.probs.data() + t * kExperts;
      const std::vector<int> order = ranked(p);
      // The 6th/7th boundary is decided in float32: skip tokens where float64 says it is closer
      // than float32 can resolve (none expected for random data, so count them).
      if (p[order[kTopK - 1]] - p[order[kTopK]] < 1e-6 * p[order[kTopK - 1]]) {
        ++near_ties;
        continue;
      }
      std::vector<int> got(idx.begin() + t * kTopK, idx.begin() + (t + 1) * kTopK);
      std::vector<int> want(order.begin(), order.begin() + kTopK);
      std::vector<int> got_sorted = got, want_sorted = want;
      std::sort(got_sorted.begin(), got_sorted.end());
      std::sort(want_sorted.begin(), want_sorted.end());
      ASSERT_EQ(got_sorted, want_sorted) << "T=" << T << " t=" << t;
      double wsum = 0;
      for (int k = 0; k < kTopK; ++k) {
        w_ref[t * kTopK + k] = p[got[k]];  // no renormalisation, scaling 1.0
        wsum += w[t * kTopK + k];
        if (k > 0) {
          ASSERT_GE(w[t * kTopK + k - 1], w[t * kTopK + k]) << "not sorted, t=" << t;
        }
      }
      EXPECT_LT(wsum, 1.0);
    }
    EXPECT_EQ(near_ties, 0) << "T=" << T;
    EXPECT_LT(test::report("router top-k weights T=" + std::to_string(T), rel_l2(w, w_ref)), 1e-5);
  }
}

TEST(MoeRouter, TieBreakingAndScaling) {
  // Rows 3, 10 and 20 of the router are equal and point along x: their logits tie at the top;
  // all other rows are zero and tie at logit 0. Expected order: 3, 10, 20, then 0, 1, 2.
  std::vector<uint16_t> wg(kExperts * kDim, 0);
  Rng rng(72);
  const std::vector<uint16_t> v = random_bf16(rng, kDim, -0.05f, 0.05f);
  for (int e : {3, 10, 20}) std::copy(v.begin(), v.end(), wg.begin() + e * kDim);
  std::vector<float> x(kDim);
  for (int64_t i = 0; i < kDim; ++i) x[i] = bf16_to_f32(v[i]) * 40.f;
  std::vector<float> probs(kExperts), w(kTopK);
  std::vector<int32_t> idx(kTopK);
  moe_router_ref(x.data(), wg.data(), probs.data(), idx.data(), w.data(), 1, kDim, kExperts, kTopK,
                 2.5f);
  EXPECT_EQ(idx, (std::vector<int32_t>{3, 10, 20, 0, 1, 2}));
  for (int k = 0; k < kTopK; ++k) EXPECT_EQ(w[k], probs[idx[k]] * 2.5f) << k;
  EXPECT_GT(probs[3], probs[0]);
  // All-zero input: uniform 1/64, the six lowest ids.
  std::fill(x.begin(), x.end(), 0.f);
  moe_router_ref(x.data(), wg.data(), probs.data(), idx.data(), w.data(), 1, kDim, kExperts, kTopK,
                 1.f);
  EXPECT_EQ(idx, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  for (int k = 0; k < kTopK; ++k) EXPECT_FLOAT_EQ(w[k], 1.f / 64.f);
}

// ---- Experts + combine ----

// 64 distinct experts without 64 full copies (440 MB): expert e's matrices are windows of one
// random pool, offset by e * kStride elements. Any two experts differ, so a wrong expert id or a
// wrong token grouping changes the result.
constexpr int64_t kStride = 1013;

struct Fixture {
  std::vector<uint16_t> gate_pool, up_pool, down_pool;  // expert pools
  std::vector<uint16_t> sh_gate, sh_up, sh_down;        // shared experts
  std::vector<MlpWeights> experts;                      // [64]
  MlpWeights shared;
};

Fixture make_fixture(Rng& rng) {
  Fixture f;
  const float a = std::sqrt(3.f / kDim);
  const float b = std::sqrt(3.f / kMoeInter), c = std::sqrt(3.f / kSharedInter);
  const int64_t pool = kMoeInter * kDim + kExperts * kStride;
  f.gate_pool = random_bf16(rng, pool, -a, a);
  f.up_pool = random_bf16(rng, pool, -a, a);
  f.down_pool = random_bf16(rng, pool, -b, b);
  f.sh_gate = random_bf16(rng, kSharedInter * kDim, -a, a);
  f.sh_up = random_bf16(rng, kSharedInter * kDim, -a, a);
  f.sh_down = random_bf16(rng, kDim * kSharedInter, -c, c);
  for (int e = 0; e < kExperts; ++e)
    f.experts.push_back({f.gate_pool.data() + e * kStride, f.up_pool.data() + e * kStride,
                         f.down_pool.data() + e * kStride});
  f.shared = {f.sh_gate.data(), f.sh_up.data(), f.sh_down.data()};
  return f;
}

// acc += scale * down(silu(gate(x)) * up(x)), one token, float64.
void mlp_f64(const float* x, const MlpWeights& w, int64_t inter, double scale, double* acc) {
  std::vector<double> a(inter);
  for (int64_t j = 0; j < inter; ++j) {
    double g = 0, u = 0;
    for (int64_t i = 0; i < kDim; ++i) {
      g += double(x[i]) * bf16_to_f32(w.gate[j * kDim + i]);
      u += double(x[i]) * bf16_to_f32(w.up[j * kDim + i]);
    }
    a[j] = g / (1.0 + std::exp(-g)) * u;
  }
  for (int64_t i = 0; i < kDim; ++i) {
    double s = 0;
    for (int64_t j = 0; j < inter; ++j) s += a[j] * bf16_to_f32(w.down[i * inter + j]);
    acc[i] += scale * s;
  }
}

// The naive per-token loop: y[t] = Σ_k w[t,k]·expert_{idx[t,k]}(x[t]) + shared(x[t]).
std::vector<double> moe_f64(const std::vector<float>& x, const std::vector<int32_t>& idx,
                            const std::vector<float>& w, const Fixture& f, int64_t T) {
  std::vector<double> y(T * kDim, 0.0);
  parallel_for(T, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      for (int k = 0; k < kTopK; ++k)
        mlp_f64(x.data() + t * kDim, f.experts[idx[t * kTopK + k]], kMoeInter, w[t * kTopK + k],
                y.data() + t * kDim);
      mlp_f64(x.data() + t * kDim, f.shared, kSharedInter, 1.0, y.data() + t * kDim);
    }
  });
  return y;
}

std::vector<float> run_moe(const std::vector<float>& x, const std::vector<int32_t>& idx,
                           const std::vector<float>& w, const Fixture& f, int64_t T) {
  // Experts no token selected get null pointers: moe_ref must not touch them.
  std::vector<MlpWeights> bound(kExperts);
  for (int32_t e : idx) bound[e] = f.experts[e];
  std::vector<float> y = nan_filled(T * kDim);
  std::vector<float> scratch = nan_filled(moe_scratch_floats(T, kDim, kMoeInter, kSharedInter));
  moe_ref(x.data(), idx.data(), w.data(), bound.data(), f.shared, y.data(), scratch.data(), T, kDim,
          kExperts, kTopK, kMoeInter, kSharedInter);
  return y;
}

// Routed sum of six float32 SwiGLU outputs (each ~5e-7, see swiglu_test) plus the shared
// experts: observed ~5e-7. 1e-5 is the float32 budget; a missing weight, a renormalisation, a
// wrong expert or a lost token is ≥ 1e-2.
constexpr double kTol = 1e-5;

TEST(Moe, CombineMatchesNaivePerTokenLoop) {
  Rng rng(73);
  const Fixture f = make_fixture(rng);
  const float a = 2.f * std::sqrt(3.f / kDim);
  const std::vector<uint16_t> wg = random_bf16(rng, kExperts * kDim, -a, a);
  for (int64_t T : {1, 7, 40}) {
    const std::vector<float> x = random_f32(rng, T * kDim, -2.f, 2.f);
    std::vector<float> probs(T * kExperts), w(T * kTopK);
    std::vector<int32_t> idx(T * kTopK);
    moe_router_ref(x.data(), wg.data(), probs.data(), idx.data(), w.data(), T, kDim, kExperts,
                   kTopK, 1.f);
    const std::vector<float> y = run_moe(x, idx, w, f, T);
    EXPECT_LT(test::report("moe T=" + std::to_string(T), rel_l2(y, moe_f64(x, idx, w, f, T))), kTol)
        << "T=" << T;
    if (T == 40) {
      // Grouping is invisible: each token alone gives the same rows.
      std::vector<float> alone(T * kDim);
      for (int64_t t = 0; t < T; ++t) {
        const std::vector<float> xt(x.begin() + t * kDim, x.begin() + (t + 1) * kDim);
        const std::vector<int32_t> it(idx.begin() + t * kTopK, idx.begin() + (t + 1) * kTopK);
        const std::vector<float> wt(w.begin() + t * kTopK, w.begin() + (t + 1) * kTopK);
        const std::vector<float> yt = run_moe(xt, it, wt, f, 1);
        std::copy(yt.begin(), yt.end(), alone.begin() + t * kDim);
      }
      EXPECT_LT(test::report("moe T=40 batched vs per-token", rel_l2(alone, y)), 1e-6);
    }
  }
}

TEST(Moe, ManyTokensOnFewExperts) {
  // Hand-made routing: every token uses experts {63, 0, 17, 5, 42, 8} in a rotated order with
  // distinct weights, so each expert group holds all 12 tokens and the slot k varies per token.
  Rng rng(74);
  const Fixture f = make_fixture(rng);
  const int64_t T = 12;
  const int32_t set[kTopK] = {63, 0, 17, 5, 42, 8};
  std::vector<int32_t> idx(T * kTopK);
  std::vector<float> w(T * kTopK);
  for (int64_t t = 0; t < T; ++t)
    for (int k = 0; k < kTopK; ++k) {
      idx[t * kTopK + k] = set[(k + t) % kTopK];
      w[t * kTopK + k] = rng.uniform(0.01f, 0.3f);
    }
  const std::vector<float> x = random_f32(rng, T * kDim, -2.f, 2.f);
  const std::vector<float> y = run_moe(x, idx, w, f, T);
  EXPECT_LT(test::report("moe fixed routing T=12", rel_l2(y, moe_f64(x, idx, w, f, T))), kTol);
}

}  // namespace
}  // namespace dsocr
