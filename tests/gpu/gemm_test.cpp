// cuBLASLt BF16 GEMM wrapper (kernels/gemm.h) and the elementwise activations
// (kernels/activation.h) against float64 and the 2×-naive rule (decoder_test_util.h).
#include "kernels/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "gpu/decoder_test_util.h"
#include "kernels/activation.h"

namespace dsocr::test {
namespace {

struct Workspace {
  void* p = nullptr;
  Workspace() { EXPECT_EQ(cudaMalloc(&p, GemmRunner::kWorkspaceBytes), cudaSuccess); }
  ~Workspace() { cudaFree(p); }
};

enum class Kind { kPlain, kBias, kResidualInPlace, kBiasResidual };

void run_case(int64_t m, int64_t n, int64_t k, int64_t pad, Kind kind, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "m=" << m << " n=" << n << " k=" << k << " kind="
                                  << static_cast<int>(kind));
  Rng rng(seed);
  const int64_t lda = k + pad, ldw = k + pad, ldo = n + pad;
  const bool bias = kind == Kind::kBias || kind == Kind::kBiasResidual;
  const bool resid = kind == Kind::kResidualInPlace || kind == Kind::kBiasResidual;
  std::vector<uint16_t> a = random_bf16(rng, m * lda, -2.f, 2.f),
                        w = random_bf16(rng, n * ldw, -0.1f, 0.1f),
                        b = random_bf16(rng, n, -1.f, 1.f),
                        r16 = random_bf16(rng, m * ldo, -3.f, 3.f);
  DevBuf<uint16_t> da(a), dw(w), db(b), dout(m * ldo);
  Workspace ws;
  GemmRunner g;
  ASSERT_EQ(g.init(ws.p, GemmRunner::kWorkspaceBytes), CUBLAS_STATUS_SUCCESS);
  GemmArgs args;
  args.m = m, args.n = n, args.k = k;
  args.a = da.get(), args.lda = lda, args.w = dw.get(), args.ldw = ldw;
  args.bias = bias ? db.get() : nullptr;
  args.out = dout.get(), args.ldo = ldo;
  if (resid) args.residual = dout.get(), args.ldr = ldo;
  for (int rep = 0; rep < 2; ++rep) {  // the second call takes the cached plan
    if (resid) dout.upload(r16);
    else dout.poison();
    ASSERT_EQ(g.run(args, nullptr), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  const std::vector<uint16_t> o16 = dout.download();
  std::vector<double> kern, naive, ref;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      float accf = 0;
      for (int64_t c = 0; c < k; ++c) {
        const float x = bf16_to_f32(a[i * lda + c]), y = bf16_to_f32(w[j * ldw + c]);
        acc += double(x) * y;
        accf += x * y;
      }
      double extra = 0;
      if (bias) extra += bf16_to_f32(b[j]);
      if (resid) extra += bf16_to_f32(r16[i * ldo + j]);
      ref.push_back(acc + extra);
      naive.push_back(round_bf16(accf + static_cast<float>(extra)));
      kern.push_back(bf16_to_f32(o16[i * ldo + j]));
    }
    // Columns past n stay unwritten (poison) when there is padding and no residual.
    if (pad && !resid) EXPECT_EQ(o16[i * ldo + n], kPoison32 & 0xffffu);
  }
  expect_2x_naive("gemm", kern, naive, ref);
}

TEST(GpuGemm, ShapesAndEpilogues) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_case(64, 128, 64, 0, Kind::kPlain, 1);
  run_case(37, 200, 136, 8, Kind::kBias, 2);
  run_case(257, 1024, 1024, 0, Kind::kResidualInPlace, 3);
  run_case(100, 96, 1280, 16, Kind::kBiasResidual, 4);
  run_case(29, 1280, 896, 0, Kind::kResidualInPlace, 5);
  run_case(1, 1280, 1280, 0, Kind::kBias, 6);
  run_case(512, 2304, 768, 0, Kind::kBias, 7);  // SAM qkv, one window batch's worth of rows
  run_case(300, 6848, 1280, 0, Kind::kPlain, 8);  // decoder layer 0 gate
}

// FP32 output, as the SAM patch embed uses it: the accumulators, then (in the consumer) + an FP32
// addend and one BF16 rounding. Tested after that rounding (gemm.h says why).
TEST(GpuGemm, Fp32AccumulatorsRoundedByTheConsumer) {
  DSOCR_SKIP_WITHOUT_GPU();
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{4096, 768, 768},
                         {1600, 768, 768}, {37, 96, 136}}) {
    Rng rng(static_cast<uint64_t>(m + n + k));
    const std::vector<uint16_t> a = random_bf16(rng, m * k, 0.f, 1.f),
                                w = random_bf16(rng, n * k, -0.1f, 0.1f);
    const std::vector<float> add = random_f32(rng, m * n, -1.f, 1.f);
    DevBuf<uint16_t> da(a), dw(w);
    DevBuf<float> dout(m * n);
    Workspace ws;
    GemmRunner g;
    ASSERT_EQ(g.init(ws.p, GemmRunner::kWorkspaceBytes), CUBLAS_STATUS_SUCCESS);
    GemmArgs args;
    args.m = m, args.n = n, args.k = k;
    args.a = da.get(), args.lda = k, args.w = dw.get(), args.ldw = k;
    args.out = dout.get(), args.ldo = n, args.out_f32 = true;
    ASSERT_EQ(g.run(args, nullptr), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> o = dout.download();
    std::vector<double> kern, naive, ref;
    for (int64_t i = 0; i < m; i += (m > 64 ? 7 : 1))
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        float accf = 0;
        for (int64_t c = 0; c < k; ++c) {
          const float x = bf16_to_f32(a[i * k + c]), y = bf16_to_f32(w[j * k + c]);
          acc += double(x) * y, accf += x * y;
        }
        ref.push_back(acc + add[i * n + j]);
        naive.push_back(round_bf16(accf + add[i * n + j]));
        kern.push_back(round_bf16(o[i * n + j] + add[i * n + j]));
      }
    expect_2x_naive("gemm fp32 out, rounded by the consumer", kern, naive, ref);
  }
}

TEST(GpuGemm, RejectsBadArguments) {
  DSOCR_SKIP_WITHOUT_GPU();
  Workspace ws;
  GemmRunner g;
  GemmArgs args;
  EXPECT_EQ(g.run(args, nullptr), CUBLAS_STATUS_NOT_INITIALIZED);
  ASSERT_EQ(g.init(ws.p, GemmRunner::kWorkspaceBytes), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(g.run(args, nullptr), CUBLAS_STATUS_INVALID_VALUE);
  DevBuf<uint16_t> buf(64 * 64);
  args.m = args.n = args.k = 64;
  args.a = args.w = buf.get(), args.out = buf.get();
  args.lda = args.ldw = 64, args.ldo = 32;  // ldo < n
  EXPECT_EQ(g.run(args, nullptr), CUBLAS_STATUS_INVALID_VALUE);
  args.ldo = 64, args.bias = buf.get(), args.out_f32 = true;  // no bias with an FP32 output
  EXPECT_EQ(g.run(args, nullptr), CUBLAS_STATUS_NOT_SUPPORTED);
}

void activation_case(Activation act, int64_t rows, int64_t cols, int64_t ld, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint16_t> x = random_bf16(rng, rows * ld, -6.f, 6.f);
  DevBuf<uint16_t> dx(x);
  LAUNCH_OK(activation_bf16(dx.get(), ld, rows, cols, act, nullptr));
  const std::vector<uint16_t> y = dx.download();
  std::vector<double> kern, naive, ref;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < ld; ++c) {
      const size_t i = r * ld + c;
      if (c >= cols) {  // padding untouched
        EXPECT_EQ(y[i], x[i]);
        continue;
      }
      const double v = bf16_to_f32(x[i]);
      const double r64 = act == Activation::kGeluErf ? 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))
                                                     : v / (1 + std::exp(-1.702 * v));
      const float vf = static_cast<float>(v);
      ref.push_back(r64);
      naive.push_back(round_bf16(act == Activation::kGeluErf ? gelu_erf(vf) : quick_gelu(vf)));
      kern.push_back(bf16_to_f32(y[i]));
    }
  }
  expect_2x_naive(act == Activation::kGeluErf ? "gelu_erf" : "quick_gelu", kern, naive, ref);
}

TEST(GpuActivation, GeluAndQuickGelu) {
  DSOCR_SKIP_WITHOUT_GPU();
  activation_case(Activation::kGeluErf, 333, 3072, 3072, 11);
  activation_case(Activation::kQuickGelu, 257, 4096, 4104, 12);
  activation_case(Activation::kGeluErf, 1, 8, 16, 13);
}

TEST(GpuActivation, SiluMul) {
  DSOCR_SKIP_WITHOUT_GPU();
  Rng rng(21);
  const int64_t rows = 91, cols = 6848, ld = 2 * cols;  // gate | up side by side, as one GEMM
  std::vector<uint16_t> gu = random_bf16(rng, rows * ld, -5.f, 5.f);
  DevBuf<uint16_t> dgu(gu), dout(rows * cols);
  LAUNCH_OK(silu_mul_bf16(dgu.get(), ld, dgu.get() + cols, ld, dout.get(), cols, rows, cols,
                          nullptr));
  const std::vector<uint16_t> y = dout.download();
  std::vector<double> kern, naive, ref;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double g = bf16_to_f32(gu[r * ld + c]), u = bf16_to_f32(gu[r * ld + cols + c]);
      ref.push_back(g / (1 + std::exp(-g)) * u);
      const float gf = static_cast<float>(g), uf = static_cast<float>(u);
      naive.push_back(round_bf16(gf / (1.f + std::exp(-gf)) * uf));
      kern.push_back(bf16_to_f32(y[r * cols + c]));
    }
  expect_2x_naive("silu_mul", kern, naive, ref);
  EXPECT_EQ(silu_mul_bf16(dgu.get(), ld, dgu.get(), ld, dout.get(), cols, rows, 12, nullptr),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace dsocr::test
