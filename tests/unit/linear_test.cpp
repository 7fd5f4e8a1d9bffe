// linear_ref / linear_ex_ref / linear_ref_f32w / gemm_ref against a float64 naive evaluation,
// for every micro-kernel family the CPU supports, at the model's shapes and at ragged ones that
// cross every block boundary (MR, NR, MC = 240, NC = 256, KC = 256) and the GEMV cut (m <= 64).
//
// Threshold: float32 accumulation of k products of O(1) random values gives a relative error of
// about sqrt(k)·2^-24 per output in the worst realistic case (≈ 4e-6 for k = 4096, far less on
// average since the errors are unbiased); 1e-5 leaves margin for the activations (float32 erf /
// exp, ~1 ulp) while any indexing or packing error gives O(1).
#include "kernels/linear.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/parallel.h"
#include "tests/unit/ref_test_util.h"

namespace dsocr {
namespace {

using test::nan_filled;
using test::random_bf16;
using test::random_f32;
using test::rel_l2;
using test::Rng;

constexpr double kTol = 1e-5;

double act64(double v, Epilogue ep) {
  switch (ep) {
    case Epilogue::kGelu:
      return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    case Epilogue::kQuickGelu:
      return v / (1.0 + std::exp(-1.702 * v));
    default:
      return v;
  }
}

// Naive float64: ref[i, j] = act(Σ_p x[i, p]·w[j, p] + b[j]) (+ y0[i, j] for kAdd), for the rows
// listed (all rows when empty).
std::vector<double> naive(const std::vector<float>& x, int64_t ldx, const std::vector<float>& w,
                          int64_t ldw, const std::vector<float>& b, const std::vector<float>& y0,
                          int64_t ldy, int64_t m, int64_t n, int64_t k, Epilogue ep,
                          const std::vector<int64_t>& rows) {
  std::vector<int64_t> rr = rows;
  if (rr.empty())
    for (int64_t i = 0; i < m; ++i) rr.push_back(i);
  std::vector<double> ref;
  for (int64_t i : rr)
    for (int64_t j = 0; j < n; ++j) {
      double s = b.empty() ? 0.0 : b[j];
      for (int64_t p = 0; p < k; ++p) s += static_cast<double>(x[i * ldx + p]) * w[j * ldw + p];
      s = act64(s, ep);
      if (ep == Epilogue::kAdd) s += y0[i * ldy + j];
      ref.push_back(s);
    }
  return ref;
}

std::vector<float> widen(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = bf16_to_f32(v[i]);
  return f;
}

std::vector<float> pick_rows(const std::vector<float>& y, int64_t ldy, int64_t n,
                             const std::vector<int64_t>& rows, int64_t m) {
  std::vector<float> out;
  if (rows.empty()) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) out.push_back(y[i * ldy + j]);
  } else {
    for (int64_t i : rows)
      for (int64_t j = 0; j < n; ++j) out.push_back(y[i * ldy + j]);
  }
  return out;
}

struct Case {
  int64_t m, n, k;
  int64_t pad_x = 0, pad_w = 0, pad_y = 0;  // extra row stride
  Epilogue ep = Epilogue::kStore;
  bool bias = true;
};

// Runs linear_ex_ref on one case and returns the error against float64 (sampled rows when big).
double run_case(const Case& c, uint64_t seed) {
  Rng rng(seed);
  const int64_t ldx = c.k + c.pad_x, ldw = c.k + c.pad_w, ldy = c.n + c.pad_y;
  auto x = random_f32(rng, c.m * ldx);
  auto wb = random_bf16(rng, c.n * ldw, -0.5f, 0.5f);
  auto bb = c.bias ? random_bf16(rng, c.n) : std::vector<uint16_t>{};
  auto y = c.ep == Epilogue::kAdd ? random_f32(rng, c.m * ldy) : nan_filled(c.m * ldy);
  const auto y0 = y;
  linear_ex_ref(x.data(), ldx, wb.data(), ldw, c.bias ? bb.data() : nullptr, y.data(), ldy, c.m,
                c.n, c.k, c.ep);
  std::vector<int64_t> rows;
  if (c.m * c.n * c.k > (int64_t{1} << 28))  // big: check 48 rows spread over all tiles
    for (int64_t i = 0; i < 48; ++i) rows.push_back((i * 977 + 13) % c.m);
  const auto ref = naive(x, ldx, widen(wb), ldw, widen(bb), y0, ldy, c.m, c.n, c.k, c.ep, rows);
  // Padding columns of y must be untouched (still NaN or the kAdd input).
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = c.n; j < ldy; ++j) {
      const float v = y[i * ldy + j], v0 = y0[i * ldy + j];
      if (!(std::isnan(v) && std::isnan(v0)) && v != v0) return 1e9;
    }
  return rel_l2(pick_rows(y, ldy, c.n, rows, c.m), ref);
}

std::vector<std::string> isas() {
  std::vector<std::string> out;
  const std::string keep = gemm_isa();
  for (const char* name : {"avx512", "avx2", "portable"})
    if (set_gemm_isa(name)) out.push_back(name);
  set_gemm_isa(keep.c_str());
  return out;
}

class IsaGuard {
 public:
  explicit IsaGuard(const std::string& name) : keep_(gemm_isa()) {
    EXPECT_TRUE(set_gemm_isa(name.c_str()));
  }
  ~IsaGuard() { set_gemm_isa(keep_.c_str()); }

 private:
  std::string keep_;
};

TEST(Linear, RaggedShapesEveryIsa) {
  const std::vector<Case> cases = {
      {1, 1, 1},
      {1, 129, 77},
      {2, 70, 33, 3, 5, 7},
      {3, 200, 300},
      {4, 64, 1280},
      {5, 33, 17},
      {12, 32, 256},
      {13, 37, 515, 1, 2, 3},
      {241, 257, 513},
      {250, 300, 70, 0, 0, 0, Epilogue::kStore, false},
      {7, 1000, 40},
      {481, 40, 9},
      {64, 300, 300},
      {65, 300, 300},
      {70, 90, 100, 3, 4, 5},
  };
  for (const auto& isa : isas()) {
    IsaGuard g(isa);
    uint64_t seed = 100;
    for (const Case& c : cases) {
      const double err = run_case(c, seed++);
      EXPECT_LT(err, kTol) << isa << " m=" << c.m << " n=" << c.n << " k=" << c.k;
    }
  }
}

TEST(Linear, EpiloguesEveryIsa) {
  for (const auto& isa : isas()) {
    IsaGuard g(isa);
    uint64_t seed = 200;
    for (Epilogue ep : {Epilogue::kAdd, Epilogue::kGelu, Epilogue::kQuickGelu})
      for (int64_t m : {1, 3, 4, 5, 64, 65, 263}) {
        Case c{m, 291, 133, 2, 3, 5, ep, true};
        const double err = run_case(c, seed++);
        EXPECT_LT(err, kTol) << isa << " ep=" << static_cast<int>(ep) << " m=" << m;
      }
  }
}

// The vision encoders' shapes (rows sampled): SAM qkv / lin1 / lin2 at 64x64 tokens, CLIP qkv at
// 257 tokens, the projector, and decode's GEMVs.
TEST(Linear, ModelShapes) {
  const std::vector<Case> cases = {
      {4096, 2304, 768},
      {4096, 3072, 768, 0, 0, 0, Epilogue::kGelu},
      {4096, 768, 3072, 0, 0, 0, Epilogue::kAdd},
      {257, 3072, 1024},
      {400, 1280, 2048},
      {1, 1280, 1280, 0, 0, 0, Epilogue::kStore, false},
      {1, 6848, 1280, 0, 0, 0, Epilogue::kStore, false},
  };
  uint64_t seed = 300;
  for (const Case& c : cases) {
    const double err = run_case(c, seed++);
    EXPECT_LT(err, kTol) << "m=" << c.m << " n=" << c.n << " k=" << c.k;
  }
}

TEST(Linear, F32Weights) {
  for (const auto& isa : isas()) {
    IsaGuard g(isa);
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 40, 50}, {30, 270, 300}}) {
      Rng rng(400 + m);
      auto x = random_f32(rng, m * k), w = random_f32(rng, n * k), b = random_f32(rng, n);
      auto y = nan_filled(m * n);
      linear_ref_f32w(x.data(), w.data(), b.data(), y.data(), m, n, k);
      EXPECT_LT(rel_l2(y, naive(x, k, w, k, b, {}, n, m, n, k, Epilogue::kStore, {})), kTol) << isa;
    }
  }
}

// gemm_ref's other operand forms: B as [k, n] float32, B gathered, B pre-packed, A gathered.
struct GatherCtx {
  const float* a;  // [m, k]
  const float* b;  // [k, n]
  int64_t k, n;
};
void gather_a(const void* ctx, int64_t i0, int rows, int64_t p0, int64_t kc, float* dst, int mr) {
  const auto* g = static_cast<const GatherCtx*>(ctx);
  for (int r = 0; r < rows; ++r)
    for (int64_t p = 0; p < kc; ++p) dst[p * mr + r] = g->a[(i0 + r) * g->k + p0 + p];
}
void gather_b(const void* ctx, int64_t j0, int cols, int64_t p0, int64_t kc, float* dst, int nr) {
  const auto* g = static_cast<const GatherCtx*>(ctx);
  for (int64_t p = 0; p < kc; ++p)
    for (int c = 0; c < cols; ++c) dst[p * nr + c] = g->b[(p0 + p) * g->n + j0 + c];
}

TEST(Gemm, OperandFormsEveryIsa) {
  for (const auto& isa : isas()) {
    IsaGuard g(isa);
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 33, 20},
                           {48, 64, 600},
                           {250, 300, 64},
                           {3, 517, 290}}) {
      Rng rng(500 + m + n);
      auto a = random_f32(rng, m * k), bkn = random_f32(rng, k * n);
      std::vector<float> bnk(n * k);  // the same B stored [n, k] for the naive reference
      for (int64_t p = 0; p < k; ++p)
        for (int64_t j = 0; j < n; ++j) bnk[j * k + p] = bkn[p * n + j];
      const auto ref = naive(a, k, bnk, k, {}, {}, n, m, n, k, Epilogue::kStore, {});
      GatherCtx ctx{a.data(), bkn.data(), k, n};
      std::vector<float> packed(gemm_packed_b_floats(n, k) + 16);
      float* pk = packed.data() + (16 - reinterpret_cast<uintptr_t>(packed.data()) / 4 % 16) % 16;
      GemmB kn;
      kn.layout = GemmBLayout::kF32KN;
      kn.data = bkn.data();
      kn.ld = n;
      gemm_pack_b(kn, n, k, pk);
      for (int form = 0; form < 4; ++form) {
        GemmA ga;
        ga.data = a.data();
        ga.ld = k;
        GemmB gb = kn;
        if (form == 1) {
          gb.layout = GemmBLayout::kGather;
          gb.gather = gather_b;
          gb.ctx = &ctx;
        } else if (form == 2) {
          gb.layout = GemmBLayout::kPacked;
          gb.data = pk;
        } else if (form == 3) {
          ga.data = nullptr;
          ga.gather = gather_a;
          ga.ctx = &ctx;
        }
        auto c = nan_filled(m * n);
        GemmC gc;
        gc.data = c.data();
        gc.ld = n;
        gemm_ref(ga, gb, gc, m, n, k);
        EXPECT_LT(rel_l2(c, ref), kTol) << isa << " form=" << form << " m=" << m << " n=" << n;
      }
    }
  }
}

// Timings (printed, not asserted): the SAM qkv GEMM and the decode lm_head GEMV.
TEST(Linear, Perf) {
  Rng rng(600);
  struct P {
    int64_t m, n, k;
  };
  for (P p : {P{4096, 2304, 768}, P{1, 129280, 1280}}) {
    auto x = random_f32(rng, p.m * p.k);
    std::vector<uint16_t> w(p.n * p.k);  // a cheap pattern: 165 M random draws would dominate
    for (size_t i = 0; i < w.size(); ++i) w[i] = f32_to_bf16(static_cast<float>(i % 61) * 0.01f);
    std::vector<float> y(p.m * p.n);
    linear_ref(x.data(), w.data(), nullptr, y.data(), p.m, p.n, p.k);  // warm-up
    double best = 1e30;
    for (int it = 0; it < 3; ++it) {
      auto t0 = std::chrono::steady_clock::now();
      linear_ref(x.data(), w.data(), nullptr, y.data(), p.m, p.n, p.k);
      best = std::min(best,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double gflops = 2.0 * p.m * p.n * p.k / best * 1e-9;
    const double gbs = 2.0 * p.n * p.k / best * 1e-9;
    std::printf(
        "linear_ref [%ldx%ld]·[%ldx%ld]ᵀ (%s, %d threads): %.2f ms, %.1f GFLOP/s, "
        "weights %.1f GB/s\n",
        static_cast<long>(p.m), static_cast<long>(p.k), static_cast<long>(p.n),
        static_cast<long>(p.k), gemm_isa(), cpu_threads(), best * 1e3, gflops, gbs);
  }
}

}  // namespace
}  // namespace dsocr
