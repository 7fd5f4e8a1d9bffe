// MoE router + decode MoE (kernels/moe_decode.cu) against moe_router_ref / moe_ref, float64 and
// the naive BF16 rule, at the model's shape (64 experts, top-6, 896 / shared 1792, dim 1280) and
// odd ones; tokens sharing experts (each expert read once for all of them); graph capture.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "gpu/moe_test_util.h"

namespace dsocr::test {
namespace {

// y[t] = Σ_k w_k·expert_k(x_t) + shared(x_t) (+ res), in float64 (naive = false) or in the naive
// BF16 form (FP32 sequential sums, act rounded to BF16, the result rounded once if res is given).
std::vector<double> moe_eval(const Layer& L, const std::vector<uint16_t>& x, int T,
                             const std::vector<int32_t>& idx, const std::vector<float>& w,
                             const std::vector<uint16_t>* res, bool naive) {
  const Shape& s = L.s;
  std::vector<double> out;
  auto mlp = [&](const MlpWeights& m, int inter, const uint16_t* xt, double wt,
                 std::vector<double>& yd, std::vector<float>& yf) {
    std::vector<double> ad(inter);
    std::vector<float> af(inter);
    for (int j = 0; j < inter; ++j) {
      double g = 0, u = 0;
      float gf = 0, uf = 0;
      for (int q = 0; q < s.dim; ++q) {
        const float xv = bf16_to_f32(xt[q]);
        const float gw = bf16_to_f32(m.gate[static_cast<size_t>(j) * s.dim + q]);
        const float uw = bf16_to_f32(m.up[static_cast<size_t>(j) * s.dim + q]);
        if (naive)
          gf += gw * xv, uf += uw * xv;
        else
          g += static_cast<double>(gw) * xv, u += static_cast<double>(uw) * xv;
      }
      if (naive)
        af[j] = round_bf16(gf / (1.f + std::exp(-gf)) * uf);
      else
        ad[j] = g / (1 + std::exp(-g)) * u;
    }
    for (int i = 0; i < s.dim; ++i) {
      double d = 0;
      float f = 0;
      for (int j = 0; j < inter; ++j) {
        const float dw = bf16_to_f32(m.down[static_cast<size_t>(i) * inter + j]);
        if (naive)
          f += dw * af[j];
        else
          d += static_cast<double>(dw) * ad[j];
      }
      if (naive)
        yf[i] += static_cast<float>(wt) * f;
      else
        yd[i] += wt * d;
    }
  };
  for (int t = 0; t < T; ++t) {
    std::vector<double> yd(s.dim, 0.0);
    std::vector<float> yf(s.dim, 0.f);
    const uint16_t* xt = x.data() + static_cast<size_t>(t) * s.dim;
    for (int k = 0; k < s.top_k; ++k)
      mlp(L.experts_h[idx[t * s.top_k + k]], s.moe_inter, xt, w[t * s.top_k + k], yd, yf);
    mlp(L.shared_h, s.shared_inter, xt, 1.0, yd, yf);
    for (int i = 0; i < s.dim; ++i) {
      const double r = res ? bf16_to_f32((*res)[static_cast<size_t>(t) * s.dim + i]) : 0.0;
      if (naive)
        out.push_back(res ? round_bf16(static_cast<float>(r) + yf[i]) : yf[i]);
      else
        out.push_back(r + yd[i]);
    }
  }
  return out;
}

// Router on the device vs moe_router_ref; returns the device's top-k (ids, weights). gemm_logits:
// the prefill's way, logits x·Wᵀ (here in float64 on the host, rounded to FP32) through moe_topk.
void check_router(const Layer& L, const std::vector<uint16_t>& x, int T, const std::string& name,
                  std::vector<int32_t>* idx_out, std::vector<float>* w_out,
                  bool gemm_logits = false) {
  const Shape& s = L.s;
  DevBuf<uint16_t> dx(x);
  DevBuf<float> dprobs(T * s.n_experts), dw(T * s.top_k);
  DevBuf<int32_t> didx(T * s.top_k);
  if (!gemm_logits) {
    LAUNCH_OK(moe_router(dx.get(), s.dim, L.router_d, dprobs.get(), didx.get(), dw.get(), T, s.dim,
                         s.n_experts, s.top_k, 1.0f, nullptr));
  } else {
    const int64_t ld = s.n_experts + 3;  // a padded row stride
    std::vector<float> logits(static_cast<size_t>(T) * ld, std::nanf(""));
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < s.n_experts; ++e) {
        double acc = 0;
        for (int q = 0; q < s.dim; ++q)
          acc += static_cast<double>(bf16_to_f32(x[static_cast<size_t>(t) * s.dim + q])) *
                 bf16_to_f32(L.router_h[static_cast<size_t>(e) * s.dim + q]);
        logits[t * ld + e] = static_cast<float>(acc);
      }
    DevBuf<float> dl(logits);
    LAUNCH_OK(moe_topk(dl.get(), ld, dprobs.get(), didx.get(), dw.get(), T, s.n_experts, s.top_k,
                       1.0f, nullptr));
  }
  const std::vector<float> probs = dprobs.download(), w = dw.download();
  const std::vector<int32_t> idx = didx.download();
  std::vector<float> xf = widen(x), rp(T * s.n_experts), rw(T * s.top_k);
  std::vector<int32_t> ri(T * s.top_k);
  moe_router_ref(xf.data(), L.router_h, rp.data(), ri.data(), rw.data(), T, s.dim, s.n_experts,
                 s.top_k, 1.0f);
  double maxdiff = 0;
  for (size_t i = 0; i < probs.size(); ++i)
    maxdiff = std::max<double>(maxdiff, std::fabs(probs[i] - rp[i]));
  EXPECT_LT(maxdiff, 1e-6) << name;
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < s.top_k; ++k) {
      const int i = t * s.top_k + k;
      if (idx[i] != ri[i]) {  // allowed only between (near-)equal probabilities
        EXPECT_NEAR(rp[t * s.n_experts + idx[i]], rp[t * s.n_experts + ri[i]], 1e-6)
            << name << " t=" << t << " k=" << k;
      }
      EXPECT_EQ(w[i], probs[t * s.n_experts + idx[i]]) << name;
      if (k > 0) {
        EXPECT_GE(w[i - 1], w[i]) << name << ": not sorted";
      }
    }
  std::printf("  router %-44s max |p - p_ref| %.2e\n", name.c_str(), maxdiff);
  *idx_out = idx, *w_out = w;
}

void run_decode(const Layer& L, int T, uint64_t seed, const std::string& label,
                int identical_groups = 0) {
  const Shape& s = L.s;
  Rng rng(seed);
  std::vector<uint16_t> x = random_bf16(rng, static_cast<size_t>(T) * s.dim);
  if (identical_groups > 0)  // token t copies token t % groups: shared experts across tokens
    for (int t = identical_groups; t < T; ++t)
      std::copy_n(x.begin() + (t % identical_groups) * s.dim, s.dim, x.begin() + t * s.dim);
  std::vector<uint16_t> res = random_bf16(rng, static_cast<size_t>(T) * s.dim);
  const std::string name = label + " T=" + std::to_string(T);
  std::vector<int32_t> idx;
  std::vector<float> w;
  check_router(L, x, T, name, &idx, &w);

  DevBuf<uint16_t> dx(x), dres(res);
  DevBuf<int32_t> didx(idx);
  DevBuf<float> dw(w), dyf(static_cast<size_t>(T) * s.dim);
  DevBuf<uint8_t> ws(moe_decode_workspace_bytes(T, s.top_k, s.moe_inter, s.shared_inter));
  LAUNCH_OK(moe_decode(dx.get(), s.dim, didx.get(), dw.get(), L.dw, dres.get(), s.dim,
                       GemvEpilogue::kAddBf16, ws.get(), T, s.dim, s.n_experts, s.top_k,
                       s.moe_inter, s.shared_inter, nullptr));
  ws.poison();
  LAUNCH_OK(moe_decode(dx.get(), s.dim, didx.get(), dw.get(), L.dw, dyf.get(), s.dim,
                       GemvEpilogue::kStoreF32, ws.get(), T, s.dim, s.n_experts, s.top_k,
                       s.moe_inter, s.shared_inter, nullptr));
  const std::vector<double> ref_add = moe_eval(L, x, T, idx, w, &res, false);
  const std::vector<double> naive_add = moe_eval(L, x, T, idx, w, &res, true);
  const std::vector<double> ref_f = moe_eval(L, x, T, idx, w, nullptr, false);
  const std::vector<double> naive_f = moe_eval(L, x, T, idx, w, nullptr, true);
  expect_2x_naive(name + " residual-add bf16", bf16_to_f64(dres.download()), naive_add, ref_add);
  expect_2x_naive(name + " f32 out", to_f64(dyf.download()), naive_f, ref_f);

  // moe_ref (float32) on the same routing.
  std::vector<float> xf = widen(x), yref(static_cast<size_t>(T) * s.dim);
  std::vector<float> scratch(moe_scratch_floats(T, s.dim, s.moe_inter, s.shared_inter));
  moe_ref(xf.data(), idx.data(), w.data(), L.experts_h.data(), L.shared_h, yref.data(),
          scratch.data(), T, s.dim, s.n_experts, s.top_k, s.moe_inter, s.shared_inter);
  EXPECT_LT(rel_err(to_f64(dyf.download()), to_f64(yref)), 1e-2) << name << " vs moe_ref";
}

class MoeModel : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (cuda_unavailable_reason().empty()) layer_ = new Layer(kModel, 42);
  }
  static void TearDownTestSuite() {
    delete layer_;
    layer_ = nullptr;
  }
  static Layer* layer_;
};
Layer* MoeModel::layer_ = nullptr;

TEST_F(MoeModel, DecodeBatches) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 10;
  for (int T : {1, 2, 3, 5, 8}) run_decode(*layer_, T, ++seed, "model");
  run_decode(*layer_, 4, ++seed, "model shared-x(2 groups)", 2);
  run_decode(*layer_, 8, ++seed, "model all-identical", 1);
}

TEST_F(MoeModel, GraphCaptureMatchesDirect) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Shape& s = kModel;
  const int T = 1;
  Rng rng(99);
  std::vector<uint16_t> x = random_bf16(rng, s.dim), res = random_bf16(rng, s.dim);
  DevBuf<uint16_t> dx(x), dres(res);
  DevBuf<int32_t> didx(s.top_k);
  DevBuf<float> dw(s.top_k), dy1(s.dim), dy2(s.dim);
  DevBuf<uint8_t> ws(moe_decode_workspace_bytes(T, s.top_k, s.moe_inter, s.shared_inter));
  auto step = [&](float* y, cudaStream_t st) {
    cudaError_t e = moe_router(dx.get(), s.dim, layer_->router_d, nullptr, didx.get(), dw.get(), T,
                               s.dim, s.n_experts, s.top_k, 1.f, st);
    if (e != cudaSuccess) return e;
    return moe_decode(dx.get(), s.dim, didx.get(), dw.get(), layer_->dw, y, s.dim,
                      GemvEpilogue::kStoreF32, ws.get(), T, s.dim, s.n_experts, s.top_k,
                      s.moe_inter, s.shared_inter, st);
  };
  LAUNCH_OK(step(dy1.get(), nullptr));
  cudaStream_t st;
  ASSERT_EQ(cudaStreamCreate(&st), cudaSuccess);
  cudaGraph_t g;
  cudaGraphExec_t ge;
  ASSERT_EQ(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(step(dy2.get(), st), cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(st, &g), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
  didx.poison(), dw.poison();
  ASSERT_EQ(cudaGraphLaunch(ge, st), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(st), cudaSuccess);
  EXPECT_EQ(dy1.download(), dy2.download());  // deterministic: bitwise equal
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(st);
}

// The prefill router (8 tokens per block from T = 9 on, a ragged last block) against
// moe_router_ref, and bitwise against the decode router run over the same rows 8 at a time: the
// logits of a token must not depend on T (the prefill's routing is the decode's).
TEST_F(MoeModel, RouterPrefillMatchesDecodeBitwise) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Shape& s = kModel;
  for (int T : {9, 37, 912}) {
    Rng rng(700 + T);
    const std::vector<uint16_t> x = random_bf16(rng, static_cast<size_t>(T) * s.dim);
    std::vector<int32_t> idx;
    std::vector<float> w;
    check_router(*layer_, x, T, "prefill T=" + std::to_string(T), &idx, &w);
    DevBuf<uint16_t> dx(x);
    DevBuf<float> dprobs(T * s.n_experts), dw(T * s.top_k);
    DevBuf<int32_t> didx(T * s.top_k);
    LAUNCH_OK(moe_router(dx.get(), s.dim, layer_->router_d, dprobs.get(), didx.get(), dw.get(), T,
                         s.dim, s.n_experts, s.top_k, 1.0f, nullptr));
    EXPECT_EQ(idx, didx.download()) << "T=" << T << ": not deterministic";
    DevBuf<float> dprobs1(T * s.n_experts), dw1(T * s.top_k);  // poisoned
    DevBuf<int32_t> didx1(T * s.top_k);
    for (int t0 = 0; t0 < T; t0 += kMoeDecodeMaxT) {
      const int n = std::min(kMoeDecodeMaxT, T - t0);
      LAUNCH_OK(moe_router(dx.get() + static_cast<size_t>(t0) * s.dim, s.dim, layer_->router_d,
                           dprobs1.get() + t0 * s.n_experts, didx1.get() + t0 * s.top_k,
                           dw1.get() + t0 * s.top_k, n, s.dim, s.n_experts, s.top_k, 1.0f,
                           nullptr));
    }
    EXPECT_EQ(dprobs.download(), dprobs1.download()) << "T=" << T;
    EXPECT_EQ(idx, didx1.download()) << "T=" << T;
    EXPECT_EQ(w, dw1.download()) << "T=" << T;
  }
}

// The prefill's routing: GEMM logits through moe_topk (ragged warp count per block), against
// moe_router_ref and against moe_router on the same rows (equal ids but at near-ties).
TEST_F(MoeModel, TopkOfGemmLogits) {
  DSOCR_SKIP_WITHOUT_GPU();
  for (int T : {1, 9, 37, 300}) {
    Rng rng(700 + T);
    const std::vector<uint16_t> x = random_bf16(rng, static_cast<size_t>(T) * kModel.dim);
    std::vector<int32_t> idx, idx_router;
    std::vector<float> w, w_router;
    check_router(*layer_, x, T, "topk(gemm) T=" + std::to_string(T), &idx, &w, true);
    check_router(*layer_, x, T, "router T=" + std::to_string(T), &idx_router, &w_router);
    int same = 0;
    for (size_t i = 0; i < idx.size(); ++i) same += idx[i] == idx_router[i];
    std::printf("  topk(gemm) vs router T=%d: %d of %zu ids equal\n", T, same, idx.size());
  }
}

TEST(Moe, OddShapes) {
  DSOCR_SKIP_WITHOUT_GPU();
  {
    const Layer L({64, 10, 3, 24, 40}, 5, 0.3f);  // shared 40 = 24 + a ragged slice of 16
    for (int T : {1, 3, 7}) run_decode(L, T, 50 + T, "dim64 e10 k3 i24 s40");
  }
  {
    const Layer L({256, 64, 8, 128, 256}, 6, 0.1f);  // top-8 × 8 tokens = 64 slots
    run_decode(L, 8, 60, "dim256 e64 k8 i128 s256");
    run_decode(L, 6, 61, "dim256 e64 k8 shared-x", 3);
  }
}

TEST(Moe, RouterTiesGoToTheLowerId) {
  DSOCR_SKIP_WITHOUT_GPU();
  Layer L({128, 16, 4, 16, 16}, 8, 0.01f);
  // Experts 3 and 11 get identical rows aligned with x (the two largest logits, exactly equal);
  // experts 5 and 9 identical, the next largest.
  Rng rng(3);
  std::vector<uint16_t> x = random_bf16(rng, 128);
  for (int q = 0; q < 128; ++q) {
    const float sgn = bf16_to_f32(x[q]) >= 0 ? 1.f : -1.f;
    L.host[3 * 128 + q] = L.host[11 * 128 + q] = f32_to_bf16(0.05f * sgn);
    L.host[5 * 128 + q] = L.host[9 * 128 + q] = f32_to_bf16(0.03f * sgn);
  }
  L.dev->upload(L.host);
  std::vector<int32_t> idx;
  std::vector<float> w;
  check_router(L, x, 1, "ties", &idx, &w);
  EXPECT_EQ(idx, (std::vector<int32_t>{3, 11, 5, 9}));
  EXPECT_EQ(w[0], w[1]);
  EXPECT_EQ(w[2], w[3]);
}

}  // namespace
}  // namespace dsocr::test
