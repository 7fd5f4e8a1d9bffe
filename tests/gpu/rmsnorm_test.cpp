// Fused residual add + RMSNorm (kernels/rmsnorm.cu) against float64, the naive BF16 rule and
// add_rmsnorm_ref / rmsnorm_ref.
#include "kernels/rmsnorm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "gpu/decoder_test_util.h"

namespace dsocr::test {
namespace {

enum class Delta { kNone, kBf16, kF32 };

void run_case(int T, int dim, int64_t pad, Delta dk, uint64_t seed) {
  Rng rng(seed);
  const int64_t ld = dim + pad;
  const float eps = 1e-6f;
  std::vector<uint16_t> h = random_bf16(rng, T * ld, -3.f, 3.f),
                        w = random_bf16(rng, dim, 0.f, 2.f);
  std::vector<uint16_t> db = random_bf16(rng, T * ld, -1.f, 1.f);
  std::vector<float> df = random_f32(rng, T * ld, -1.f, 1.f);
  DevBuf<uint16_t> dh(h), dw(w), ddb(db), dy(T * ld);
  DevBuf<float> ddf(df);
  switch (dk) {
    case Delta::kNone:
      LAUNCH_OK(rmsnorm(dh.get(), ld, dw.get(), dy.get(), ld, T, dim, eps, nullptr));
      break;
    case Delta::kBf16:
      LAUNCH_OK(
          add_rmsnorm(dh.get(), ld, ddb.get(), ld, dw.get(), dy.get(), ld, T, dim, eps, nullptr));
      break;
    case Delta::kF32:
      LAUNCH_OK(
          add_rmsnorm(dh.get(), ld, ddf.get(), ld, dw.get(), dy.get(), ld, T, dim, eps, nullptr));
      break;
  }
  const std::vector<uint16_t> h_out = dh.download(), y = dy.download();
  std::vector<double> h64, hn, hk, y64, yn, yk;
  std::vector<float> hsum(T * dim);  // for add_rmsnorm_ref: float h + delta
  for (int t = 0; t < T; ++t) {
    std::vector<double> hd(dim);
    std::vector<float> hr(dim);
    double ss = 0;
    float ssf = 0;
    for (int i = 0; i < dim; ++i) {
      const double d = dk == Delta::kNone   ? 0.0
                       : dk == Delta::kBf16 ? bf16_to_f32(db[t * ld + i])
                                            : df[t * ld + i];
      hd[i] = bf16_to_f32(h[t * ld + i]) + d;
      hr[i] = round_bf16(static_cast<float>(hd[i]));  // exact for BF16 deltas before rounding
      ss += hd[i] * hd[i];
      ssf += hr[i] * hr[i];
      hsum[t * dim + i] = static_cast<float>(bf16_to_f32(h[t * ld + i]) + static_cast<float>(d));
      if (dk != Delta::kNone) {
        h64.push_back(hd[i]), hn.push_back(hr[i]);
        hk.push_back(bf16_to_f32(h_out[t * ld + i]));
      }
    }
    const double r64 = 1.0 / std::sqrt(ss / dim + eps);
    const float rf = 1.f / std::sqrt(ssf / dim + eps);
    for (int i = 0; i < dim; ++i) {
      const float wv = bf16_to_f32(w[i]);
      y64.push_back(wv * hd[i] * r64);
      yn.push_back(round_bf16(wv * round_bf16(hr[i] * rf)));
      yk.push_back(bf16_to_f32(y[t * ld + i]));
    }
  }
  char name[96];
  std::snprintf(name, sizeof name, "T=%d dim=%d pad=%lld delta=%s", T, dim,
                static_cast<long long>(pad),
                dk == Delta::kNone   ? "none"
                : dk == Delta::kBf16 ? "bf16"
                                     : "f32");
  expect_2x_naive(std::string(name) + " y", yk, yn, y64);
  if (dk != Delta::kNone) expect_2x_naive(std::string(name) + " h", hk, hn, h64);
  for (int t = 0; t < T; ++t)
    for (int64_t i = dim; i < ld; ++i) {
      ASSERT_EQ(y[t * ld + i], 0x7fc0) << name;
      ASSERT_EQ(h_out[t * ld + i], h[t * ld + i]) << name;
    }

  // The CPU float32 reference, on the same inputs (BF16 rounding of the kernel: ~1e-3).
  std::vector<float> yref(T * dim), hin(T * dim), dzero(T * dim, 0.f);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < dim; ++i) hin[t * dim + i] = bf16_to_f32(h[t * ld + i]);
  if (dk == Delta::kNone) {
    rmsnorm_ref(hin.data(), w.data(), yref.data(), T, dim, eps);
  } else {
    add_rmsnorm_ref(hsum.data(), dzero.data(), w.data(), yref.data(), T, dim, eps);
  }
  std::vector<double> yk2;
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < dim; ++i) yk2.push_back(bf16_to_f32(y[t * ld + i]));
  EXPECT_LT(rel_err(yk2, to_f64(yref)), 1e-2) << name;
}

TEST(RmsNorm, DecoderAndOddShapes) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 1;
  for (Delta dk : {Delta::kNone, Delta::kBf16, Delta::kF32}) {
    for (int T : {1, 3, 8, 37}) run_case(T, 1280, 0, dk, ++seed);
    run_case(2, 8, 8, dk, ++seed);
    run_case(5, 1288, 24, dk, ++seed);
    run_case(3, 4096, 0, dk, ++seed);
    run_case(1, 2056, 8, dk, ++seed);
  }
}

// The FP32 residual stream: h = float(x) / h += delta exactly in FP32, y = rmsnorm(h).
void fp32_case(int T, int dim, int64_t pad, bool widen, bool bf16_delta, uint64_t seed) {
  Rng rng(seed);
  const int64_t ld = dim + pad;
  const float eps = 1e-6f;
  const std::vector<uint16_t> x16 = random_bf16(rng, T * ld, -3.f, 3.f),
                              w = random_bf16(rng, dim, 0.f, 2.f),
                              d16 = random_bf16(rng, T * ld, -1.f, 1.f);
  const std::vector<float> h0 = random_f32(rng, T * ld, -3.f, 3.f),
                           d32 = random_f32(rng, T * ld, -1.f, 1.f);
  DevBuf<uint16_t> dx(x16), dw(w), dd16(d16), dy(T * ld);
  DevBuf<float> dh(h0), dd32(d32);
  if (widen) {
    dh.poison();
    LAUNCH_OK(rmsnorm_widen(dx.get(), ld, dh.get(), ld, dw.get(), dy.get(), ld, T, dim, eps,
                            nullptr));
  } else if (bf16_delta) {
    LAUNCH_OK(add_rmsnorm(dh.get(), ld, dd16.get(), ld, dw.get(), dy.get(), ld, T, dim, eps,
                          nullptr));
  } else {
    LAUNCH_OK(add_rmsnorm(dh.get(), ld, dd32.get(), ld, dw.get(), dy.get(), ld, T, dim, eps,
                          nullptr));
  }
  const std::vector<float> h = dh.download();
  const std::vector<uint16_t> y = dy.download();
  std::vector<double> y64, yn, yk;
  for (int t = 0; t < T; ++t) {
    std::vector<float> hr(dim);
    double ss = 0;
    float ssf = 0;
    for (int i = 0; i < dim; ++i) {
      const size_t k = static_cast<size_t>(t) * ld + i;
      hr[i] = widen ? bf16_to_f32(x16[k]) : h0[k] + (bf16_delta ? bf16_to_f32(d16[k]) : d32[k]);
      ASSERT_EQ(h[k], hr[i]) << "h t=" << t << " i=" << i;  // exact: one FP32 add, or a copy
      ss += double(hr[i]) * hr[i];
      ssf += hr[i] * hr[i];
    }
    const double r64 = 1.0 / std::sqrt(ss / dim + eps);
    const float rf = 1.f / std::sqrt(ssf / dim + eps);
    for (int i = 0; i < dim; ++i) {
      const float wv = bf16_to_f32(w[i]);
      y64.push_back(wv * hr[i] * r64);
      yn.push_back(round_bf16(wv * round_bf16(hr[i] * rf)));
      yk.push_back(bf16_to_f32(y[t * ld + i]));
    }
  }
  char name[96];
  std::snprintf(name, sizeof name, "fp32 residual T=%d dim=%d %s", T, dim,
                widen ? "widen" : bf16_delta ? "+bf16" : "+f32");
  expect_2x_naive(name, yk, yn, y64);
}

TEST(RmsNorm, Fp32ResidualStream) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 50;
  for (int T : {1, 37, 912})
    for (int mode = 0; mode < 3; ++mode) fp32_case(T, 1280, T == 37 ? 8 : 0, mode == 0, mode == 1, ++seed);
  fp32_case(3, 4096, 0, false, false, ++seed);
}

TEST(RmsNorm, InPlaceAndRejects) {
  DSOCR_SKIP_WITHOUT_GPU();
  Rng rng(9);
  std::vector<uint16_t> x = random_bf16(rng, 2 * 1280), w = random_bf16(rng, 1280);
  DevBuf<uint16_t> dx(x), dw(w), dy(2 * 1280);
  LAUNCH_OK(rmsnorm(dx.get(), 1280, dw.get(), dy.get(), 1280, 2, 1280, 1e-6f, nullptr));
  LAUNCH_OK(rmsnorm(dx.get(), 1280, dw.get(), dx.get(), 1280, 2, 1280, 1e-6f, nullptr));
  EXPECT_EQ(dx.download(), dy.download());
  EXPECT_EQ(rmsnorm(dx.get(), 1280, dw.get(), dy.get(), 1280, 1, 4104, 1e-6f, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(rmsnorm(dx.get(), 1280, dw.get(), dy.get(), 1280, 1, 1276, 1e-6f, nullptr),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace dsocr::test
