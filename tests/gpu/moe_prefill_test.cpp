// Prefill MoE (kernels/moe_prefill.cu) against float64 and the naive BF16 rule at the model's shape
// (64 experts, top-6, inter 896, shared 1792, dim 1280) for T = 1 .. 912, routing from the device
// router or random distinct ids, a skewed routing (one expert takes every token, most get none),
// odd shapes, all three epilogues, against moe_decode for T <= 8, and against moe_ref.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "gpu/moe_test_util.h"
#include "kernels/parallel.h"

namespace dsocr::test {
namespace {

constexpr uint16_t kPoison16 = 0x7fc0;

// Per token y = Σ_k w_k·expert_k(x) + shared(x) without the residual: float64 (yd), and the naive
// BF16 form (yf: FP32 sequential dot products, act rounded to BF16, FP32 sums in k order).
struct Eval {
  std::vector<double> yd;
  std::vector<float> yf;
};
Eval evaluate(const Layer& L, const std::vector<uint16_t>& x, int T,
              const std::vector<int32_t>& idx, const std::vector<float>& w) {
  const Shape& s = L.s;
  Eval ev;
  ev.yd.assign(static_cast<size_t>(T) * s.dim, 0.0);
  ev.yf.assign(static_cast<size_t>(T) * s.dim, 0.f);
  const std::vector<float> xf = widen(x);
  parallel_for(T, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* xt = xf.data() + t * s.dim;
      double* yd = ev.yd.data() + t * s.dim;
      float* yf = ev.yf.data() + t * s.dim;
      auto mlp = [&](const MlpWeights& m, int inter, float wt) {
        std::vector<double> ad(inter);
        std::vector<float> af(inter);
        for (int j = 0; j < inter; ++j) {
          double g = 0, u = 0;
          float gf = 0, uf = 0;
          const uint16_t* gr = m.gate + static_cast<size_t>(j) * s.dim;
          const uint16_t* ur = m.up + static_cast<size_t>(j) * s.dim;
          for (int q = 0; q < s.dim; ++q) {
            const float gw = bf16_to_f32(gr[q]), uw = bf16_to_f32(ur[q]);
            g += static_cast<double>(gw) * xt[q], u += static_cast<double>(uw) * xt[q];
            gf += gw * xt[q], uf += uw * xt[q];
          }
          ad[j] = g / (1 + std::exp(-g)) * u;
          af[j] = round_bf16(gf / (1.f + std::exp(-gf)) * uf);
        }
        for (int i = 0; i < s.dim; ++i) {
          const uint16_t* dr = m.down + static_cast<size_t>(i) * inter;
          double d = 0;
          float f = 0;
          for (int j = 0; j < inter; ++j) {
            const float dw = bf16_to_f32(dr[j]);
            d += static_cast<double>(dw) * ad[j], f += dw * af[j];
          }
          yd[i] += static_cast<double>(wt) * d;
          yf[i] += wt * f;
        }
      };
      for (int k = 0; k < s.top_k; ++k)
        mlp(L.experts_h[idx[t * s.top_k + k]], s.moe_inter, w[t * s.top_k + k]);
      mlp(L.shared_h, s.shared_inter, 1.f);
    }
  });
  return ev;
}

// kDuplicates: random, with every third token holding its first expert twice (against moe_prefill's
// PRECOND; the kernel must still give each slot its own row, so the result stays the plain sum).
enum class Routing { kRouter, kRandom, kSkewed, kDuplicates };

// Top-k ids and weights for T tokens of x.
void route(const Layer& L, const std::vector<uint16_t>& x, int64_t ldx, int T, Routing how,
           Rng& rng, std::vector<int32_t>* idx, std::vector<float>* w) {
  const Shape& s = L.s;
  idx->assign(static_cast<size_t>(T) * s.top_k, -1);
  w->assign(static_cast<size_t>(T) * s.top_k, 0.f);
  if (how == Routing::kRouter) {
    DevBuf<uint16_t> dx(x);
    DevBuf<int32_t> di(idx->size());
    DevBuf<float> dw(w->size());
    LAUNCH_OK(moe_router(dx.get(), ldx, L.router_d, nullptr, di.get(), dw.get(), T, s.dim,
                         s.n_experts, s.top_k, 1.f, nullptr));
    *idx = di.download(), *w = dw.download();
    return;
  }
  // kRandom: distinct ids from all experts. kSkewed: k = 0 is expert 1 for every token, the
  // others distinct from the few experts n/2 .. n/2 + top_k + 1: every other expert gets nothing.
  std::vector<int32_t> pool(s.n_experts);
  std::iota(pool.begin(), pool.end(), 0);
  const int lo = s.n_experts / 2, n_few = std::min(s.top_k + 2, s.n_experts - lo);
  for (int t = 0; t < T; ++t) {
    int32_t* it = idx->data() + t * s.top_k;
    if (how != Routing::kSkewed) {
      for (int k = 0; k < s.top_k; ++k)
        std::swap(pool[k], pool[k + rng.below(s.n_experts - k)]), it[k] = pool[k];
      if (how == Routing::kDuplicates && t % 3 == 0) it[s.top_k - 1] = it[0];
    } else {
      std::vector<int32_t> few(n_few);
      std::iota(few.begin(), few.end(), lo);
      it[0] = 1;
      for (int k = 1; k < s.top_k; ++k)
        std::swap(few[k - 1], few[k - 1 + rng.below(n_few - k + 1)]), it[k] = few[k - 1];
    }
    for (int k = 0; k < s.top_k; ++k) (*w)[t * s.top_k + k] = rng.uniform(0.01f, 0.3f);
  }
}

std::vector<double> columns(const std::vector<double>& v, int T, int dim, int64_t ld) {
  std::vector<double> o(static_cast<size_t>(T) * dim);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < dim; ++i) o[t * dim + i] = v[t * ld + i];
  return o;
}

// Poison left in the padding columns dim .. ld-1 of a BF16 or FP32 output.
template <typename Tv>
int64_t padding_written(const std::vector<Tv>& y, int T, int dim, int64_t ld) {
  int64_t n = 0;
  for (int t = 0; t < T; ++t)
    for (int64_t i = dim; i < ld; ++i) {
      if constexpr (sizeof(Tv) == 2)
        n += y[t * ld + i] != kPoison16;
      else
        n += !std::isnan(y[t * ld + i]);
    }
  return n;
}

void run_prefill(const Layer& L, int T, Routing how, uint64_t seed, const std::string& label,
                 int64_t ld_pad = 0) {
  const Shape& s = L.s;
  const int64_t ld = s.dim + ld_pad;
  Rng rng(seed);
  const std::vector<uint16_t> x = random_bf16(rng, static_cast<size_t>(T) * ld);
  const std::vector<uint16_t> res = random_bf16(rng, static_cast<size_t>(T) * ld);
  std::vector<int32_t> idx;
  std::vector<float> w;
  route(L, x, ld, T, how, rng, &idx, &w);
  const std::string name = label + " T=" + std::to_string(T);

  // x without padding for the evaluation.
  std::vector<uint16_t> xc(static_cast<size_t>(T) * s.dim);
  for (int t = 0; t < T; ++t) std::copy_n(x.begin() + t * ld, s.dim, xc.begin() + t * s.dim);
  const Eval ev = evaluate(L, xc, T, idx, w);
  std::vector<double> ref_add(ev.yd.size()), naive_add(ev.yd.size()), naive_bf(ev.yd.size());
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < s.dim; ++i) {
      const size_t o = static_cast<size_t>(t) * s.dim + i;
      const float r = bf16_to_f32(res[t * ld + i]);
      ref_add[o] = r + ev.yd[o];
      naive_add[o] = round_bf16(r + ev.yf[o]);
      naive_bf[o] = round_bf16(ev.yf[o]);
    }

  DevBuf<uint16_t> dx(x);
  DevBuf<int32_t> didx(idx);
  DevBuf<float> dw(w);
  DevBuf<uint8_t> ws(
      moe_prefill_workspace_bytes(T, s.top_k, s.n_experts, s.dim, s.moe_inter, s.shared_inter));
  std::vector<double> kern_f;
  for (int bm : {64, 128}) {  // every row-tile size the launcher can pick
    const std::string nm = name + " bm=" + std::to_string(bm);
    const MoePrefillTuning tune{bm};
    DevBuf<uint16_t> dres(res), dbf(static_cast<size_t>(T) * ld);
    DevBuf<float> dyf(static_cast<size_t>(T) * ld);
    auto run = [&](void* y, GemvEpilogue ep) {
      return moe_prefill(dx.get(), ld, didx.get(), dw.get(), L.dw, y, ld, ep, ws.get(), T, s.dim,
                         s.n_experts, s.top_k, s.moe_inter, s.shared_inter, nullptr, &tune);
    };
    ws.poison();
    LAUNCH_OK(run(dres.get(), GemvEpilogue::kAddBf16));
    ws.poison();
    LAUNCH_OK(run(dbf.get(), GemvEpilogue::kStoreBf16));
    ws.poison();
    LAUNCH_OK(run(dyf.get(), GemvEpilogue::kStoreF32));
    const std::vector<uint16_t> got_add = dres.download(), got_bf = dbf.download();
    const std::vector<float> got_f = dyf.download();
    {  // MoePrefillPass: the same bits from three passes (offload streaming's split)
      DevBuf<uint16_t> pres(res);
      DevBuf<float> pyf(static_cast<size_t>(T) * ld);
      for (GemvEpilogue ep : {GemvEpilogue::kAddBf16, GemvEpilogue::kStoreF32}) {
        ws.poison();
        void* y = ep == GemvEpilogue::kAddBf16 ? static_cast<void*>(pres.get()) : pyf.get();
        uint64_t in_pass[3] = {0, 0, 0};  // even experts; odd below n/2; odd above
        for (int e = 0; e < s.n_experts; ++e)
          in_pass[e % 2 == 0 ? 0 : (e < s.n_experts / 2 ? 1 : 2)] |= 1ull << e;
        for (int i = 0; i < 3; ++i) {
          MoeDeviceWeights wp = L.dw;  // the experts of other passes: null, never read
          for (int e = 0; e < s.n_experts; ++e)
            if (!((in_pass[i] >> e) & 1)) wp.experts[e] = MlpWeights{};
          if (i > 0) wp.shared = MlpWeights{};
          const MoePrefillPass pass{in_pass[i], i == 0, i == 0, i == 2};
          LAUNCH_OK(moe_prefill(dx.get(), ld, didx.get(), dw.get(), wp, y, ld, ep, ws.get(), T,
                                s.dim, s.n_experts, s.top_k, s.moe_inter, s.shared_inter, nullptr,
                                &tune, &pass));
        }
      }
      EXPECT_TRUE(pres.download() == got_add) << nm << ": three passes differ (residual-add)";
      const std::vector<float> pf = pyf.download();
      EXPECT_EQ(std::memcmp(pf.data(), got_f.data(), pf.size() * sizeof(float)), 0)
          << nm << ": three passes differ (store f32)";
    }
    expect_2x_naive(nm + " residual-add bf16", columns(bf16_to_f64(got_add), T, s.dim, ld),
                    naive_add, ref_add);
    expect_2x_naive(nm + " store bf16", columns(bf16_to_f64(got_bf), T, s.dim, ld), naive_bf,
                    ev.yd);
    kern_f = columns(to_f64(got_f), T, s.dim, ld);
    expect_2x_naive(nm + " store f32", kern_f, to_f64(ev.yf), ev.yd);
    EXPECT_EQ(padding_written(got_bf, T, s.dim, ld), 0) << nm << ": padding columns written";
    EXPECT_EQ(padding_written(got_f, T, s.dim, ld), 0) << nm << ": padding columns written";
    int64_t add_pad = 0;  // the residual's padding columns must keep their values
    for (int t = 0; t < T; ++t)
      for (int64_t i = s.dim; i < ld; ++i) add_pad += got_add[t * ld + i] != res[t * ld + i];
    EXPECT_EQ(add_pad, 0) << nm << ": residual padding columns written";
  }

  if (T <= kMoeDecodeMaxT && how != Routing::kSkewed &&
      how != Routing::kDuplicates) {  // moe_decode on the same routing
    DevBuf<float> dyd(static_cast<size_t>(T) * ld);
    DevBuf<uint8_t> wsd(moe_decode_workspace_bytes(T, s.top_k, s.moe_inter, s.shared_inter));
    LAUNCH_OK(moe_decode(dx.get(), ld, didx.get(), dw.get(), L.dw, dyd.get(), ld,
                         GemvEpilogue::kStoreF32, wsd.get(), T, s.dim, s.n_experts, s.top_k,
                         s.moe_inter, s.shared_inter, nullptr));
    const double d = rel_err(kern_f, columns(to_f64(dyd.download()), T, s.dim, ld));
    const double naive = rel_err(to_f64(ev.yf), ev.yd);
    std::printf("  %-58s vs moe_decode %.3e (2x naive %.3e)\n", name.c_str(), d, 2 * naive);
    EXPECT_LE(d, 2 * naive + 0x1.0p-24) << name << " vs moe_decode";
  }
  if (T <= 64 && how != Routing::kDuplicates) {  // moe_ref (float32) on the same routing
    std::vector<float> xf = widen(xc), yref(static_cast<size_t>(T) * s.dim);
    std::vector<float> scratch(moe_scratch_floats(T, s.dim, s.moe_inter, s.shared_inter));
    moe_ref(xf.data(), idx.data(), w.data(), L.experts_h.data(), L.shared_h, yref.data(),
            scratch.data(), T, s.dim, s.n_experts, s.top_k, s.moe_inter, s.shared_inter);
    EXPECT_LT(rel_err(kern_f, to_f64(yref)), 1e-2) << name << " vs moe_ref";
  }
}

class MoePrefillModel : public testing::Test {
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
Layer* MoePrefillModel::layer_ = nullptr;

TEST_F(MoePrefillModel, RouterTopK) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 10;
  for (int T : {1, 5, 37, 282, 912}) run_prefill(*layer_, T, Routing::kRouter, ++seed, "model");
}

TEST_F(MoePrefillModel, RandomAndSkewedRouting) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_prefill(*layer_, 8, Routing::kRandom, 30, "model random ids", 8);
  run_prefill(*layer_, 100, Routing::kRandom, 31, "model random ids", 8);
  run_prefill(*layer_, 3, Routing::kSkewed, 32, "model skewed");
  run_prefill(*layer_, 300, Routing::kSkewed, 33, "model skewed");
}

// Timing: 20 samples of 5 back-to-back calls (host launch latency hidden), median per call,
// after 10 warm-up calls; the 454 MB of weights do not fit in L2, so every call streams them.
TEST_F(MoePrefillModel, Perf) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Shape& s = kModel;
  for (int T : {912, 282}) {
    Rng rng(5);
    const std::vector<uint16_t> x = random_bf16(rng, static_cast<size_t>(T) * s.dim);
    std::vector<int32_t> idx;
    std::vector<float> w;
    route(*layer_, x, s.dim, T, Routing::kRouter, rng, &idx, &w);
    DevBuf<uint16_t> dx(x), dy(static_cast<size_t>(T) * s.dim);
    DevBuf<int32_t> didx(idx);
    DevBuf<float> dw(w);
    DevBuf<uint8_t> ws(
        moe_prefill_workspace_bytes(T, s.top_k, s.n_experts, s.dim, s.moe_inter, s.shared_inter));
    for (int bm : {64, 128}) {
      const MoePrefillTuning tune{bm};
      const double us = median_call_us([&] {
        return moe_prefill(dx.get(), s.dim, didx.get(), dw.get(), layer_->dw, dy.get(), s.dim,
                           GemvEpilogue::kStoreBf16, ws.get(), T, s.dim, s.n_experts, s.top_k,
                           s.moe_inter, s.shared_inter, nullptr, &tune);
      });
      ASSERT_GT(us, 0) << "launch failed";
      const double flop = 2.0 * T * s.dim * (3.0 * s.top_k * s.moe_inter + 3.0 * s.shared_inter);
      std::printf(
          "  PERF moe_prefill T=%d bm=%d: %8.1f us  %6.1f TFLOP/s (useful)  %6.1f GB/s "
          "weights\n",
          T, bm, us, flop / us * 1e-6, 454e6 / us * 1e-3);
    }
  }
}

TEST(MoePrefill, OddShapes) {
  DSOCR_SKIP_WITHOUT_GPU();
  {
    const Layer L({64, 10, 3, 32, 64}, 5, 0.3f);
    for (int T : {1, 3, 7, 70}) run_prefill(L, T, Routing::kRouter, 50 + T, "dim64 e10 k3 i32 s64");
    run_prefill(L, 65, Routing::kSkewed, 49, "dim64 e10 k3 skewed", 8);
    run_prefill(L, 2100, Routing::kRouter, 48, "dim64 e10 k3 (two routing chunks)");
    run_prefill(L, 40, Routing::kDuplicates, 47, "dim64 e10 k3 duplicate ids");
  }
  {
    const Layer L({96, 7, 2, 160, 96}, 6, 0.2f);  // column tiles cut mid-tile, shared < inter
    for (int T : {2, 129}) run_prefill(L, T, Routing::kRandom, 60 + T, "dim96 e7 k2 i160 s96", 16);
  }
  {
    const Layer L({256, 64, 8, 128, 256}, 7, 0.1f);  // top-8
    run_prefill(L, 8, Routing::kRouter, 70, "dim256 e64 k8 i128 s256");
    run_prefill(L, 200, Routing::kRandom, 71, "dim256 e64 k8 i128 s256");
  }
}

TEST(MoePrefill, Rejects) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Layer L({64, 4, 2, 32, 64}, 8);
  DevBuf<uint16_t> x(64 * 4), y(64 * 4);
  DevBuf<int32_t> idx(8);
  DevBuf<float> w(8);
  DevBuf<uint8_t> ws(moe_prefill_workspace_bytes(4, 2, 4, 64, 32, 64));
  auto call = [&](int dim, int inter, int top_k, int64_t ldx) {
    return moe_prefill(x.get(), ldx, idx.get(), w.get(), L.dw, y.get(), 64,
                       GemvEpilogue::kStoreBf16, ws.get(), 4, dim, 4, top_k, inter, 64, nullptr);
  };
  EXPECT_EQ(call(48, 32, 2, 64), cudaErrorInvalidValue);  // dim % 32
  EXPECT_EQ(call(64, 24, 2, 64), cudaErrorInvalidValue);  // moe_inter % 32
  EXPECT_EQ(call(64, 32, 5, 64), cudaErrorInvalidValue);  // top_k > n_experts
  EXPECT_EQ(call(64, 32, 2, 60), cudaErrorInvalidValue);  // ldx
  const MoePrefillTuning bad{96};
  EXPECT_EQ(moe_prefill(x.get(), 64, idx.get(), w.get(), L.dw, y.get(), 64,
                        GemvEpilogue::kStoreBf16, ws.get(), 4, 64, 4, 2, 32, 64, nullptr, &bad),
            cudaErrorInvalidValue);  // row tile
  // A pass checks the weights of the groups it runs, and only those.
  MoeDeviceWeights holes = L.dw;
  holes.experts[1] = MlpWeights{};
  holes.shared = MlpWeights{};
  auto pass_call = [&](const MoePrefillPass& p) {
    return moe_prefill(x.get(), 64, idx.get(), w.get(), holes, y.get(), 64,
                       GemvEpilogue::kStoreBf16, ws.get(), 4, 64, 4, 2, 32, 64, nullptr, nullptr,
                       &p);
  };
  EXPECT_EQ(pass_call({1ull << 1, false, true, true}), cudaErrorInvalidValue);  // expert 1 null
  EXPECT_EQ(pass_call({1ull << 0, true, true, true}), cudaErrorInvalidValue);   // shared null
  EXPECT_EQ(pass_call({0b1101, false, true, true}), cudaSuccess);  // ids poisoned: none chosen
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace dsocr::test
