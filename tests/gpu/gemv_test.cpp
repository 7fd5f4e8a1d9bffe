// Decode GEMV (kernels/gemv.cu) against float64, the naive BF16 rule and linear_ref, at the
// decoder's shapes and at awkward ones (ragged n, padded strides, k not a multiple of 256).
#include <gtest/gtest.h>

#include <cmath>

#include "gpu/decoder_test_util.h"
#include "kernels/linear.h"

namespace dsocr::test {
namespace {

struct Case {
  int m;
  int64_t n, k;
  int64_t pad = 0;  // extra columns in ldx / ldw / ldy
  int parts = 1;    // weight split into this many parts (rows as equal as possible)
};

enum class XKind { kBf16, kF32 };

const char* ep_name(GemvEpilogue ep) {
  return ep == GemvEpilogue::kStoreF32 ? "f32" : ep == GemvEpilogue::kStoreBf16 ? "bf16" : "add";
}

void run_case(const Case& c, XKind xk, GemvEpilogue ep, uint64_t seed,
              const GemvTuning* tuning = nullptr, bool check_linear_ref = false) {
  Rng rng(seed);
  const int64_t ldx = c.k + c.pad, ldw = c.k + c.pad, ldy = c.n + c.pad;
  std::vector<uint16_t> w = random_bf16(rng, c.n * ldw);
  std::vector<uint16_t> xb = random_bf16(rng, c.m * ldx);
  std::vector<float> xf(c.m * ldx);
  for (size_t i = 0; i < xf.size(); ++i)  // FP32 x: values not representable in BF16
    xf[i] = xk == XKind::kF32 ? rng.uniform(-1.f, 1.f) : bf16_to_f32(xb[i]);
  std::vector<uint16_t> res = random_bf16(rng, c.m * ldy);  // residual (kAddBf16)

  DevBuf<uint16_t> dw(w), dxb(xb);
  DevBuf<float> dxf(xf);
  DevBuf<float> dyf(c.m * ldy);
  DevBuf<uint16_t> dyb(c.m * ldy);
  std::vector<uint16_t> res_dev = res;  // padding columns keep the poison: must stay untouched
  for (int i = 0; i < c.m; ++i)
    for (int64_t j = c.n; j < ldy; ++j) res_dev[i * ldy + j] = 0x7fc0;
  if (ep == GemvEpilogue::kAddBf16) dyb.upload(res_dev);

  GemvWeights gw;
  gw.parts = c.parts;
  int64_t row0 = 0;
  for (int p = 0; p < c.parts; ++p) {
    const int64_t rows = c.n / c.parts + (p < c.n % c.parts ? 1 : 0);
    gw.w[p] = dw.get() + row0 * ldw;
    gw.rows[p] = rows;
    row0 += rows;
  }
  void* y = ep == GemvEpilogue::kStoreF32 ? static_cast<void*>(dyf.get()) : dyb.get();
  if (xk == XKind::kBf16) {
    LAUNCH_OK(gemv(dxb.get(), ldx, gw, ldw, y, ldy, c.m, c.k, ep, nullptr, tuning));
  } else {
    LAUNCH_OK(gemv(dxf.get(), ldx, gw, ldw, y, ldy, c.m, c.k, ep, nullptr, tuning));
  }

  // float64 truth, naive FP32-sequential with the kernel's rounding points, kernel output.
  std::vector<double> ref64, naive, kern;
  const std::vector<float> yf = dyf.download();
  const std::vector<uint16_t> yb = dyb.download();
  for (int i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      double d = 0;
      float f = 0.f;
      for (int64_t q = 0; q < c.k; ++q) {
        const float wv = bf16_to_f32(w[j * ldw + q]), xv = xf[i * ldx + q];
        d += static_cast<double>(wv) * xv;
        f += wv * xv;
      }
      const double r = bf16_to_f32(res[i * ldy + j]);
      switch (ep) {
        case GemvEpilogue::kStoreF32:
          ref64.push_back(d), naive.push_back(f), kern.push_back(yf[i * ldy + j]);
          break;
        case GemvEpilogue::kStoreBf16:
          ref64.push_back(d), naive.push_back(round_bf16(f));
          kern.push_back(bf16_to_f32(yb[i * ldy + j]));
          break;
        case GemvEpilogue::kAddBf16:
          ref64.push_back(r + d), naive.push_back(round_bf16(static_cast<float>(r) + f));
          kern.push_back(bf16_to_f32(yb[i * ldy + j]));
          break;
      }
    }
  char name[160];
  std::snprintf(name, sizeof name, "m=%d n=%lld k=%lld pad=%lld parts=%d x=%s y=%s R=%d W=%d S=%d",
                c.m, static_cast<long long>(c.n), static_cast<long long>(c.k),
                static_cast<long long>(c.pad), c.parts, xk == XKind::kBf16 ? "bf16" : "f32",
                ep_name(ep), tuning ? tuning->rows_per_warp : 0,
                tuning ? tuning->warps_per_block : 0, tuning ? tuning->split_k : 0);
  expect_2x_naive(name, kern, naive, ref64);

  // Nothing outside columns [0, n) of the m rows was written (padding still poison).
  if (ep != GemvEpilogue::kStoreF32) {
    for (int i = 0; i < c.m; ++i)
      for (int64_t j = c.n; j < ldy; ++j) ASSERT_EQ(yb[i * ldy + j], 0x7fc0) << name;
  }

  if (check_linear_ref && ep == GemvEpilogue::kStoreF32 && c.pad == 0) {
    std::vector<float> ref(c.m * c.n);
    linear_ref(xf.data(), w.data(), nullptr, ref.data(), c.m, c.n, c.k);
    std::vector<double> k64;
    for (int i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) k64.push_back(yf[i * ldy + j]);
    EXPECT_LT(rel_err(k64, to_f64(ref)), 1e-5) << "vs linear_ref: " << name;
  }
}

TEST(Gemv, DecoderShapes) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  // o_proj, fused QKV (three weights, no concatenated copy), dense gate+up, expert down,
  // shared down, dense down.
  const Case shapes[] = {{1, 1280, 1280}, {1, 3840, 1280, 0, 3}, {1, 13696, 1280},
                         {1, 1280, 896},  {1, 1280, 1792},       {1, 1280, 6848}};
  for (Case c : shapes)
    for (int m : {1, 2, 3, 5, 8}) {
      c.m = m;
      for (GemvEpilogue ep :
           {GemvEpilogue::kStoreF32, GemvEpilogue::kStoreBf16, GemvEpilogue::kAddBf16})
        run_case(c, XKind::kBf16, ep, ++seed, nullptr, /*check_linear_ref=*/true);
    }
}

TEST(Gemv, OddShapesAndStrides) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 200;
  const Case shapes[] = {{1, 1, 8},      {3, 5, 8, 8},    {2, 37, 24, 16, 2}, {8, 1001, 1288, 8, 4},
                         {4, 129, 2056}, {7, 3, 4104, 24}};
  for (const Case& c : shapes)
    for (GemvEpilogue ep :
         {GemvEpilogue::kStoreF32, GemvEpilogue::kStoreBf16, GemvEpilogue::kAddBf16}) {
      run_case(c, XKind::kBf16, ep, ++seed);
      run_case(c, XKind::kF32, ep, ++seed);
    }
}

TEST(Gemv, EveryLaunchShape) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 300;
  for (int rows : {1, 2, 4})
    for (int warps : {1, 3, 4, 8}) {
      const GemvTuning t{rows, warps, 1};
      run_case({1, 1283, 1280}, XKind::kBf16, GemvEpilogue::kStoreF32, ++seed, &t);
      run_case({1, 130, 904, 8, 3}, XKind::kF32, GemvEpilogue::kAddBf16, ++seed, &t);
    }
  // Split-K over 1..8 warps: FFMA (m = 1, FP32 x with m > 1) and tensor cores (BF16 x, m > 1).
  for (int ks : {1, 2, 3, 5, 8}) {
    const GemvTuning t{0, 0, ks};
    run_case({1, 61, 6848}, XKind::kBf16, GemvEpilogue::kStoreBf16, ++seed, &t);
    run_case({3, 45, 1800, 8}, XKind::kF32, GemvEpilogue::kStoreF32, ++seed, &t);
    run_case({5, 37, 1304, 8, 2}, XKind::kBf16, GemvEpilogue::kAddBf16, ++seed, &t);
    run_case({8, 300, 1280}, XKind::kBf16, GemvEpilogue::kStoreF32, ++seed, &t);
  }
}

TEST(Gemv, LmHead) {
  DSOCR_SKIP_WITHOUT_GPU();
  for (int m : {1, 2, 8})
    run_case({m, 129280, 1280}, XKind::kBf16, GemvEpilogue::kStoreF32, 400 + m);
}

TEST(Gemv, RejectsBadArguments) {
  DSOCR_SKIP_WITHOUT_GPU();
  DevBuf<uint16_t> w(64 * 64), x(64);
  DevBuf<float> y(64);
  const GemvWeights gw = gemv_weights(w.get(), 64);
  const auto ep = GemvEpilogue::kStoreF32;
  EXPECT_EQ(gemv(x.get(), 64, gw, 64, y.get(), 64, 0, 64, ep, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(gemv(x.get(), 64, gw, 64, y.get(), 64, 9, 64, ep, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(gemv(x.get(), 64, gw, 64, y.get(), 64, 1, 60, ep, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(gemv(x.get() + 1, 64, gw, 64, y.get(), 64, 1, 56, ep, nullptr), cudaErrorInvalidValue);
  const GemvTuning bad{3, 4, 0};
  EXPECT_EQ(gemv(x.get(), 64, gw, 64, y.get(), 64, 1, 64, ep, nullptr, &bad),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// SiLU·mul epilogue (dense layer 0's gate+up).
void run_swiglu(int m, int64_t inter, int64_t k, int64_t pad, uint64_t seed) {
  Rng rng(seed);
  const int64_t ld = k + pad, ldact = inter + pad;
  std::vector<uint16_t> g = random_bf16(rng, inter * ld), u = random_bf16(rng, inter * ld);
  std::vector<uint16_t> x = random_bf16(rng, m * ld);
  DevBuf<uint16_t> dg(g), du(u), dx(x), dact(m * ldact);
  LAUNCH_OK(
      gemv_swiglu(dx.get(), ld, dg.get(), du.get(), ld, dact.get(), ldact, m, inter, k, nullptr));
  const std::vector<uint16_t> act = dact.download();
  std::vector<double> ref64, naive, kern;
  for (int i = 0; i < m; ++i)
    for (int64_t j = 0; j < inter; ++j) {
      double gd = 0, ud = 0;
      float gf = 0, uf = 0;
      for (int64_t q = 0; q < k; ++q) {
        const float xv = bf16_to_f32(x[i * ld + q]);
        gd += static_cast<double>(bf16_to_f32(g[j * ld + q])) * xv;
        ud += static_cast<double>(bf16_to_f32(u[j * ld + q])) * xv;
        gf += bf16_to_f32(g[j * ld + q]) * xv;
        uf += bf16_to_f32(u[j * ld + q]) * xv;
      }
      ref64.push_back(gd / (1 + std::exp(-gd)) * ud);
      naive.push_back(round_bf16(gf / (1.f + std::exp(-gf)) * uf));
      kern.push_back(bf16_to_f32(act[i * ldact + j]));
    }
  char name[96];
  std::snprintf(name, sizeof name, "swiglu m=%d inter=%lld k=%lld pad=%lld", m,
                static_cast<long long>(inter), static_cast<long long>(k),
                static_cast<long long>(pad));
  expect_2x_naive(name, kern, naive, ref64);
  for (int i = 0; i < m; ++i)
    for (int64_t j = inter; j < ldact; ++j) ASSERT_EQ(act[i * ldact + j], 0x7fc0) << name;
}

TEST(Gemv, SwiGLU) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 500;
  for (int m : {1, 2, 4, 8}) run_swiglu(m, 6848, 1280, 0, ++seed);
  run_swiglu(3, 37, 24, 8, ++seed);
  run_swiglu(6, 5, 1288, 16, ++seed);
}

}  // namespace
}  // namespace dsocr::test
