// vision_attention_ref against a float64 naive attention (scores, optional decomposed rel-pos
// bias with the unscaled q, softmax, weighted V), and the SAM window partition helpers.
// Threshold 1e-5: float32 dot products of 64 terms, a float32 softmax whose exp polynomial is
// within ~2e-7, and P·V sums over up to 4096 keys (~1e-6 in the norm).
#include "kernels/vision_attention.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "kernels/parallel.h"
#include "tests/unit/ref_test_util.h"

namespace dsocr {
namespace {

using test::nan_filled;
using test::random_f32;
using test::rel_l2;
using test::Rng;

constexpr double kTol = 1e-5;
constexpr int kD = 64;

// Float64 output rows for the listed (seq, head, query) triples.
struct Q {
  int64_t s, h, t;
};
std::vector<double> naive(const std::vector<float>& qkv, const float* rh, const float* rw,
                          int64_t T, int64_t gh, int64_t gw, int H, const std::vector<Q>& qs) {
  const int64_t ld = 3 * H * kD;
  std::vector<double> out;
  std::vector<double> sc(T);
  for (const Q& q : qs) {
    const float* base = qkv.data() + q.s * T * ld;
    const float* qv = base + q.t * ld + q.h * kD;
    double mx = -1e300;
    for (int64_t j = 0; j < T; ++j) {
      const float* kv = base + j * ld + H * kD + q.h * kD;
      double dot = 0;
      for (int c = 0; c < kD; ++c) dot += static_cast<double>(qv[c]) * kv[c];
      dot /= 8.0;
      if (rh) {
        const int64_t qh = q.t / gw, qw = q.t % gw, kh = j / gw, kw = j % gw;
        double bh = 0, bw = 0;
        for (int c = 0; c < kD; ++c) {
          bh += static_cast<double>(qv[c]) * rh[(qh - kh + gh - 1) * kD + c];
          bw += static_cast<double>(qv[c]) * rw[(qw - kw + gw - 1) * kD + c];
        }
        dot += bh + bw;
      }
      sc[j] = dot;
      mx = std::max(mx, dot);
    }
    double sum = 0;
    for (int64_t j = 0; j < T; ++j) sum += sc[j] = std::exp(sc[j] - mx);
    for (int c = 0; c < kD; ++c) {
      double o = 0;
      for (int64_t j = 0; j < T; ++j) o += sc[j] * base[j * ld + 2 * H * kD + q.h * kD + c];
      out.push_back(o / sum);
    }
  }
  return out;
}

std::vector<float> gather(const std::vector<float>& out, int64_t T, int H,
                          const std::vector<Q>& qs) {
  std::vector<float> g;
  for (const Q& q : qs) {
    const float* o = out.data() + (q.s * T + q.t) * H * kD + q.h * kD;
    g.insert(g.end(), o, o + kD);
  }
  return g;
}

// All queries, or `per_head` random ones per (seq, head) plus the first and last.
std::vector<Q> queries(int64_t n_seq, int64_t T, int H, int per_head, Rng& rng) {
  std::vector<Q> qs;
  for (int64_t s = 0; s < n_seq; ++s)
    for (int h = 0; h < H; ++h) {
      if (per_head == 0) {
        for (int64_t t = 0; t < T; ++t) qs.push_back({s, h, t});
      } else {
        qs.push_back({s, h, 0});
        qs.push_back({s, h, T - 1});
        for (int i = 0; i < per_head; ++i) qs.push_back({s, h, rng.below(T)});
      }
    }
  return qs;
}

// Runs one configuration: inputs scaled so the softmax is far from uniform.
double run(int64_t n_seq, int64_t T, int64_t gh, int64_t gw, int H, bool rel, int per_head,
           uint64_t seed) {
  Rng rng(seed);
  auto qkv = random_f32(rng, n_seq * T * 3 * H * kD, -1.5f, 1.5f);
  std::vector<float> rh, rw;
  if (rel) {
    rh = random_f32(rng, (2 * gh - 1) * kD, -0.3f, 0.3f);
    rw = random_f32(rng, (2 * gw - 1) * kD, -0.3f, 0.3f);
  }
  auto out = nan_filled(n_seq * T * H * kD);
  const auto t0 = std::chrono::steady_clock::now();
  vision_attention_ref(qkv.data(), rel ? rh.data() : nullptr, rel ? rw.data() : nullptr, out.data(),
                       n_seq, T, gh, gw, H, kD);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (n_seq * T * T * H >= 9 * 196 * 196 * 12)  // model-sized: print the timing
    std::printf(
        "vision_attention_ref %ld x %ld tokens x %d heads%s (%s, %d threads): %.1f ms, "
        "%.1f GFLOP/s\n",
        static_cast<long>(n_seq), static_cast<long>(T), H, rel ? " + rel-pos" : "", gemm_isa(),
        cpu_threads(), sec * 1e3, 4.0 * n_seq * H * T * T * kD / sec * 1e-9);
  const auto qs = queries(n_seq, T, H, per_head, rng);
  return rel_l2(gather(out, T, H, qs),
                naive(qkv, rel ? rh.data() : nullptr, rel ? rw.data() : nullptr, T, gh, gw, H, qs));
}

TEST(VisionAttention, ClipTokenCounts) {
  uint64_t seed = 1;
  for (int64_t T : {65, 101, 257, 401})  // 1 + 8², 1 + 10², 1 + 16², 1 + 20²
    EXPECT_LT(run(2, T, T, 1, 16, false, T > 200 ? 6 : 0, seed++), kTol) << T;
}

TEST(VisionAttention, SamWindowsWithRelPos) {
  // 14x14 windows as cut from a 32- or 40-token grid (9 windows per image), 12 heads.
  EXPECT_LT(run(9, 196, 14, 14, 12, true, 0, 10), kTol);
}

TEST(VisionAttention, SamGlobalWithRelPos) {
  // Global blocks: g = 32 (127 -> 63 table), and 64 (4096 tokens) sampled.
  EXPECT_LT(run(1, 32 * 32, 32, 32, 12, true, 8, 20), kTol);
  EXPECT_LT(run(1, 64 * 64, 64, 64, 12, true, 3, 21), kTol);
}

TEST(VisionAttention, RaggedEveryIsa) {
  const std::string keep = gemm_isa();
  for (const char* isa : {"avx512", "avx2", "portable"}) {
    if (!set_gemm_isa(isa)) continue;
    EXPECT_LT(run(2, 7 * 11, 7, 11, 3, true, 0, 30), kTol) << isa;  // non-square grid
    EXPECT_LT(run(1, 1, 1, 1, 2, true, 0, 31), kTol) << isa;
    EXPECT_LT(run(3, 50, 50, 1, 1, false, 0, 32), kTol) << isa;    // crosses a 48-query block
    EXPECT_LT(run(1, 300, 300, 1, 2, false, 0, 33), kTol) << isa;  // crosses NC = 256 keys
  }
  set_gemm_isa(keep.c_str());
}

TEST(WindowPartition, PadsWithZerosAndRoundTrips) {
  for (int64_t g : {32, 40, 64, 80}) {
    const int64_t n = 2, dim = 5, win = 14, nw = n_windows_side(g, win);
    Rng rng(40 + g);
    auto x = random_f32(rng, n * g * g * dim);
    auto windows = nan_filled(n * nw * nw * win * win * dim);
    window_partition_ref(x.data(), windows.data(), n, g, g, dim, win);
    bool ok = true;
    for (int64_t img = 0; img < n; ++img)
      for (int64_t wy = 0; wy < nw; ++wy)
        for (int64_t wx = 0; wx < nw; ++wx)
          for (int64_t r = 0; r < win; ++r)
            for (int64_t c = 0; c < win; ++c)
              for (int64_t d = 0; d < dim; ++d) {
                const int64_t y = wy * win + r, xx = wx * win + c;
                const float want = (y < g && xx < g) ? x[((img * g + y) * g + xx) * dim + d] : 0.f;
                const float got =
                    windows[((((img * nw + wy) * nw + wx) * win + r) * win + c) * dim + d];
                ok = ok && got == want;
              }
    EXPECT_TRUE(ok) << g;
    auto back = nan_filled(x.size());
    window_unpartition_ref(windows.data(), back.data(), n, g, g, dim, win);
    EXPECT_EQ(back, x) << g;
  }
}

}  // namespace
}  // namespace dsocr
