// MoE over quantized weights (kernels/moe_decode.cu and kernels/moe_prefill.cu with
// MoeDeviceWeights' formats): the routed experts and the shared experts quantized with
// quantize_*_ref, every supported (routed, shared) pair, against float64 of the same dequantized
// weights with the 2×-naive rule, and against moe_ref on the dequantized weights rounded to BF16
// (rel 1e-2). Decode: T = 1..8. Prefill: T = 1, 8, 37, 300 through the device router (ragged expert
// groups), both row tiles, and against moe_decode at T = 8. Unsupported pairs are refused.
//
// The naive implementation of each kernel is the one in its own precision: moe_decode multiplies
// by the scale in FP32, so its naive form reads the exact dequantized weights; moe_prefill's tensor
// cores read BF16, so its naive form reads them rounded to BF16 (dequantize_bf16's values, the
// prefill's weights before this kernel existed). The float64 reference is the same for both: the
// exact dequantized weights.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <tuple>

#include "gpu/moe_test_util.h"
#include "kernels/parallel.h"
#include "kernels/quant.h"

namespace dsocr::test {
namespace {

// One quantized [n, k] weight: the slot on the device, the dequantized floats on the host (exact,
// and rounded to BF16).
struct QMat {
  std::vector<float> deq, deq_bf;
  size_t off = 0;  // byte offset of the slot in the layer's device buffer
  int64_t n = 0, k = 0;
};

struct QLayer {
  Shape s;
  WeightFormat fr, fs;
  int gr, gs;
  std::vector<QMat> experts;  // [e * 3 + {gate, up, down}]
  QMat shared[3];
  std::vector<uint8_t> host;
  std::unique_ptr<DevBuf<uint8_t>> dev;
  MoeDeviceWeights dw{};

  QMat add(const uint16_t* w, int64_t n, int64_t k, WeightFormat f, int group) {
    QMat m;
    m.n = n, m.k = k, m.off = host.size();
    std::vector<float> wf(n * k);
    for (int64_t i = 0; i < n * k; ++i) wf[i] = bf16_to_f32(w[i]);
    m.deq.resize(n * k);
    const uint64_t vb = quant_value_bytes(f, n, k), bytes = quant_bytes(f, n, k, group);
    host.resize(m.off + (bytes + 255) / 256 * 256);
    uint8_t* v = host.data() + m.off;
    auto* sc = reinterpret_cast<uint16_t*>(v + vb);
    if (f == WeightFormat::kInt8) {
      quantize_int8_ref(wf.data(), reinterpret_cast<int8_t*>(v), sc, n, k);
      dequantize_int8_ref(reinterpret_cast<int8_t*>(v), sc, m.deq.data(), n, k);
    } else {
      quantize_int4_ref(wf.data(), v, sc, n, k, group);
      dequantize_int4_ref(v, sc, m.deq.data(), n, k, group);
    }
    m.deq_bf.resize(n * k);
    for (int64_t i = 0; i < n * k; ++i) m.deq_bf[i] = round_bf16(m.deq[i]);
    return m;
  }

  QLayer(const Layer& L, WeightFormat fr_, int gr_, WeightFormat fs_, int gs_)
      : s(L.s), fr(fr_), fs(fs_), gr(gr_), gs(gs_) {
    for (int e = 0; e < s.n_experts; ++e) {
      const MlpWeights& m = L.experts_h[e];
      experts.push_back(add(m.gate, s.moe_inter, s.dim, fr, gr));
      experts.push_back(add(m.up, s.moe_inter, s.dim, fr, gr));
      experts.push_back(add(m.down, s.dim, s.moe_inter, fr, gr));
    }
    shared[0] = add(L.shared_h.gate, s.shared_inter, s.dim, fs, gs);
    shared[1] = add(L.shared_h.up, s.shared_inter, s.dim, fs, gs);
    shared[2] = add(L.shared_h.down, s.dim, s.shared_inter, fs, gs);
    dev = std::make_unique<DevBuf<uint8_t>>(host);
    auto bind = [&](const QMat (&m)[3], WeightFormat f, int g, MlpWeights* w, MlpScales* sc) {
      QWeight q[3];
      for (int i = 0; i < 3; ++i) q[i] = qweight_in_slot(dev->get() + m[i].off, f, m[i].n, m[i].k, g);
      *w = {static_cast<const uint16_t*>(q[0].q), static_cast<const uint16_t*>(q[1].q),
            static_cast<const uint16_t*>(q[2].q)};
      *sc = {q[0].scale, q[1].scale, q[2].scale};
    };
    for (int e = 0; e < s.n_experts; ++e) {
      const QMat m[3] = {experts[3 * e], experts[3 * e + 1], experts[3 * e + 2]};
      bind(m, fr, gr, &dw.experts[e], &dw.expert_scales[e]);
    }
    bind(shared, fs, gs, &dw.shared, &dw.shared_scales);
    dw.expert_format = fr, dw.shared_format = fs;
    dw.expert_group = fr == WeightFormat::kInt4 ? gr : 0;
    dw.shared_group = fs == WeightFormat::kInt4 ? gs : 0;
  }
};

// y[t] = Σ_k w_k·expert_k(x_t) + shared(x_t) on the dequantized weights: float64 on the exact
// ones, or naive (FP32 sequential sums, act rounded to BF16) on the exact ones or on them rounded
// to BF16 (bf16_weights). Multithreaded over tokens.
std::vector<double> eval(const QLayer& Q, const std::vector<uint16_t>& x, int T,
                         const std::vector<int32_t>& idx, const std::vector<float>& w, bool naive,
                         bool bf16_weights = false) {
  const Shape& s = Q.s;
  std::vector<double> out(static_cast<size_t>(T) * s.dim);
  auto mlp = [&](const QMat* m, int inter, const uint16_t* xt, double wt, std::vector<double>& yd,
                 std::vector<float>& yf) {
    const std::vector<float>* fw[3];  // the weights the naive form reads
    for (int i = 0; i < 3; ++i) fw[i] = bf16_weights ? &m[i].deq_bf : &m[i].deq;
    std::vector<double> ad(inter);
    std::vector<float> af(inter);
    for (int j = 0; j < inter; ++j) {
      double g = 0, u = 0;
      float gf = 0, uf = 0;
      for (int q = 0; q < s.dim; ++q) {
        const float xv = bf16_to_f32(xt[q]);
        const size_t o = static_cast<size_t>(j) * s.dim + q;
        g += static_cast<double>(m[0].deq[o]) * xv, u += static_cast<double>(m[1].deq[o]) * xv;
        gf += (*fw[0])[o] * xv, uf += (*fw[1])[o] * xv;
      }
      ad[j] = g / (1 + std::exp(-g)) * u;
      af[j] = round_bf16(gf / (1.f + std::exp(-gf)) * uf);
    }
    for (int i = 0; i < s.dim; ++i) {
      double d = 0;
      float f = 0;
      for (int j = 0; j < inter; ++j) {
        const size_t o = static_cast<size_t>(i) * inter + j;
        d += static_cast<double>(m[2].deq[o]) * ad[j];
        f += (*fw[2])[o] * af[j];
      }
      yd[i] += wt * d;
      yf[i] += static_cast<float>(wt) * f;
    }
  };
  parallel_for(T, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      std::vector<double> yd(s.dim, 0.0);
      std::vector<float> yf(s.dim, 0.f);
      const uint16_t* xt = x.data() + static_cast<size_t>(t) * s.dim;
      for (int k = 0; k < s.top_k; ++k)
        mlp(&Q.experts[3 * idx[t * s.top_k + k]], s.moe_inter, xt, w[t * s.top_k + k], yd, yf);
      mlp(Q.shared, s.shared_inter, xt, 1.0, yd, yf);
      for (int i = 0; i < s.dim; ++i) out[t * s.dim + i] = naive ? yf[i] : yd[i];
    }
  });
  return out;
}

// moe_ref (float32) on the dequantized weights rounded to BF16.
std::vector<double> moe_ref_bf16(const QLayer& Q, const std::vector<uint16_t>& x, int T,
                                 const std::vector<int32_t>& idx, const std::vector<float>& w) {
  const Shape& s = Q.s;
  auto bf = [](const QMat& m) {
    std::vector<uint16_t> b(m.deq.size());
    for (size_t i = 0; i < b.size(); ++i) b[i] = f32_to_bf16(m.deq[i]);
    return b;
  };
  std::vector<std::vector<uint16_t>> keep;
  std::vector<MlpWeights> ex(s.n_experts);
  for (int e = 0; e < s.n_experts; ++e) {
    for (int i = 0; i < 3; ++i) keep.push_back(bf(Q.experts[3 * e + i]));
    const size_t b = keep.size() - 3;
    ex[e] = {keep[b].data(), keep[b + 1].data(), keep[b + 2].data()};
  }
  for (int i = 0; i < 3; ++i) keep.push_back(bf(Q.shared[i]));
  const size_t b = keep.size() - 3;
  const MlpWeights sh{keep[b].data(), keep[b + 1].data(), keep[b + 2].data()};
  std::vector<float> xf = widen(x), yref(static_cast<size_t>(T) * s.dim);
  std::vector<float> scratch(moe_scratch_floats(T, s.dim, s.moe_inter, s.shared_inter));
  moe_ref(xf.data(), idx.data(), w.data(), ex.data(), sh, yref.data(), scratch.data(), T, s.dim,
          s.n_experts, s.top_k, s.moe_inter, s.shared_inter);
  return to_f64(yref);
}

// T tokens routed by the device router (ragged groups at prefill sizes: ~T·6/64 rows per expert,
// some experts with none at small T) through moe_decode (T <= kMoeDecodeMaxT) and, with `prefill`,
// moe_prefill with both row tiles (FP32 output poisoned with NaN before each call), checked
// against moe_decode where both run.
void run(const Layer& L, const QLayer& Q, int T, uint64_t seed, const std::string& label,
         bool prefill = false) {
  const Shape& s = L.s;
  Rng rng(seed);
  const std::vector<uint16_t> x = random_bf16(rng, static_cast<size_t>(T) * s.dim);
  DevBuf<uint16_t> dx(x);
  DevBuf<int32_t> didx(T * s.top_k);
  DevBuf<float> dw(T * s.top_k), dy(static_cast<size_t>(T) * s.dim);
  LAUNCH_OK(moe_router(dx.get(), s.dim, L.router_d, nullptr, didx.get(), dw.get(), T, s.dim,
                       s.n_experts, s.top_k, 1.f, nullptr));
  const std::vector<int32_t> idx = didx.download();
  const std::vector<float> w = dw.download();
  const std::string name = label + (prefill ? " prefill" : "") + " T=" + std::to_string(T);
  const std::vector<double> ref = eval(Q, x, T, idx, w, false);
  std::vector<double> y_dec;
  if (T <= kMoeDecodeMaxT) {
    DevBuf<uint8_t> ws(moe_decode_workspace_bytes(T, s.top_k, s.moe_inter, s.shared_inter));
    LAUNCH_OK(moe_decode(dx.get(), s.dim, didx.get(), dw.get(), Q.dw, dy.get(), s.dim,
                         GemvEpilogue::kStoreF32, ws.get(), T, s.dim, s.n_experts, s.top_k,
                         s.moe_inter, s.shared_inter, nullptr));
    y_dec = to_f64(dy.download());
  }
  if (!prefill) {
    expect_2x_naive(name, y_dec, eval(Q, x, T, idx, w, true), ref);
    EXPECT_LT(rel_err(y_dec, moe_ref_bf16(Q, x, T, idx, w)), 1e-2) << name << " vs moe_ref";
    return;
  }
  const std::vector<double> naive = eval(Q, x, T, idx, w, true, true);
  DevBuf<uint8_t> ws(
      moe_prefill_workspace_bytes(T, s.top_k, s.n_experts, s.dim, s.moe_inter, s.shared_inter));
  std::vector<double> y;
  for (int bm : {64, 128}) {
    const MoePrefillTuning tune{bm};
    dy.poison();
    ws.poison();
    LAUNCH_OK(moe_prefill(dx.get(), s.dim, didx.get(), dw.get(), Q.dw, dy.get(), s.dim,
                          GemvEpilogue::kStoreF32, ws.get(), T, s.dim, s.n_experts, s.top_k,
                          s.moe_inter, s.shared_inter, nullptr, &tune));
    y = to_f64(dy.download());
    expect_2x_naive(name + " bm=" + std::to_string(bm), y, naive, ref);
  }
  if (T <= 64) {  // the kernel's weights are exactly these BF16 values: only the sums differ
    EXPECT_LT(rel_err(y, moe_ref_bf16(Q, x, T, idx, w)), 1e-2) << name << " vs moe_ref";
  }
  if (!y_dec.empty()) {
    const double d = rel_err(y, y_dec), en = rel_err(naive, ref);
    std::printf("  %-58s vs moe_decode %.3e (2x naive %.3e)\n", name.c_str(), d, 2 * en);
    EXPECT_LE(d, 2 * en + 0x1.0p-24) << name << " vs moe_decode";
  }
}

// Every supported pair at the model's shape, decode at T = 1..8 and prefill at T = 1, 8, 37, 300;
// the prefill's policy pairs: mixed (INT4 g128 routed + INT8 shared), INT4 g64 + INT8, INT8 + INT8.
TEST(MoeQuant, ModelShapeEveryFormatPair) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Layer L(kModel, 42);
  using F = WeightFormat;
  struct P {
    F fr;
    int gr;
    F fs;
    int gs;
    const char* name;
  };
  uint64_t seed = 10;
  for (const P p : {P{F::kInt4, 128, F::kInt8, 0, "mixed int4/int8"},
                    P{F::kInt4, 64, F::kInt8, 0, "int4 g64/int8"},
                    P{F::kInt8, 0, F::kInt8, 0, "int8/int8"},
                    P{F::kInt4, 64, F::kInt4, 64, "int4 g64/int4 g64"}}) {
    const QLayer Q(L, p.fr, p.gr, p.fs, p.gs);
    for (int T : {1, 2, 5, 8}) run(L, Q, T, ++seed, p.name);
    for (int T : {1, 8, 37, 300}) run(L, Q, T, ++seed, p.name, true);
  }
}

// Timing of the quantized prefill at a Gundam page's 912 tokens, both row tiles (printed, never
// asserted: figures go to bench/RESULTS.md).
TEST(MoeQuant, PrefillPerf) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Layer L(kModel, 42);
  const Shape& s = kModel;
  constexpr int T = 912;
  using F = WeightFormat;
  Rng rng(3);
  const std::vector<uint16_t> x = random_bf16(rng, static_cast<size_t>(T) * s.dim);
  DevBuf<uint16_t> dx(x), dy(static_cast<size_t>(T) * s.dim);
  DevBuf<int32_t> didx(T * s.top_k);
  DevBuf<float> dw(T * s.top_k);
  LAUNCH_OK(moe_router(dx.get(), s.dim, L.router_d, nullptr, didx.get(), dw.get(), T, s.dim,
                       s.n_experts, s.top_k, 1.f, nullptr));
  DevBuf<uint8_t> ws(
      moe_prefill_workspace_bytes(T, s.top_k, s.n_experts, s.dim, s.moe_inter, s.shared_inter));
  for (const auto& [fr, fs, name] : {std::tuple{F::kInt4, F::kInt8, "mixed int4/int8"},
                                     std::tuple{F::kInt8, F::kInt8, "int8/int8"}}) {
    const QLayer Q(L, fr, fr == F::kInt4 ? 128 : 0, fs, 0);
    for (int bm : {64, 128}) {
      const MoePrefillTuning tune{bm};
      const double us = median_call_us([&] {
        return moe_prefill(dx.get(), s.dim, didx.get(), dw.get(), Q.dw, dy.get(), s.dim,
                           GemvEpilogue::kStoreBf16, ws.get(), T, s.dim, s.n_experts, s.top_k,
                           s.moe_inter, s.shared_inter, nullptr, &tune);
      });
      ASSERT_GT(us, 0) << name << ": launch failed";
      std::printf("  PERF moe_prefill %s T=%d bm=%d: %8.1f us\n", name, T, bm, us);
    }
  }
}

TEST(MoeQuant, SmallShape) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Layer L({256, 16, 4, 128, 384}, 6, 0.1f);  // shared 384 = 3 slices of 128
  const QLayer Q(L, WeightFormat::kInt4, 128, WeightFormat::kInt4, 128);
  for (int T : {1, 3, 8}) run(L, Q, T, 70 + T, "dim256 e16 k4 int4");
}

// Small shapes: int4/int4 (the fourth supported pair) with group 128 on dim 256; dim 128 and inter
// 192 cut the column tiles mid-tile (clamped B rows), INT4 groups of 64 span two K-steps.
TEST(MoeQuant, PrefillSmallShapes) {
  DSOCR_SKIP_WITHOUT_GPU();
  {
    const Layer L({256, 16, 4, 128, 384}, 6, 0.1f);
    const QLayer Q(L, WeightFormat::kInt4, 128, WeightFormat::kInt4, 128);
    for (int T : {3, 8, 130}) run(L, Q, T, 80 + T, "dim256 e16 k4 int4/int4", true);
  }
  {
    const Layer L({128, 7, 2, 192, 64}, 9, 0.2f);
    const QLayer Q(L, WeightFormat::kInt4, 64, WeightFormat::kInt8, 0);
    for (int T : {5, 77}) run(L, Q, T, 90 + T, "dim128 e7 k2 i192 s64 int4 g64/int8", true);
  }
}

TEST(MoeQuant, RefusesUnsupported) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Shape s{256, 16, 4, 128, 384};
  const Layer L(s, 6, 0.1f);
  QLayer Q(L, WeightFormat::kInt8, 0, WeightFormat::kInt8, 0);
  DevBuf<uint16_t> dx(s.dim);
  DevBuf<int32_t> didx(s.top_k);
  DevBuf<float> dw(s.top_k), dy(s.dim);
  DevBuf<uint8_t> ws(1 << 20);
  EXPECT_FALSE(moe_decode_supports(WeightFormat::kInt8, WeightFormat::kInt4));
  EXPECT_TRUE(moe_decode_supports(WeightFormat::kInt4, WeightFormat::kInt8));
  MoeDeviceWeights bad = Q.dw;
  bad.shared_format = WeightFormat::kInt4;  // (int8, int4): no kernel
  bad.shared_group = 128;
  EXPECT_EQ(moe_decode(dx.get(), s.dim, didx.get(), dw.get(), bad, dy.get(), s.dim,
                       GemvEpilogue::kStoreF32, ws.get(), 1, s.dim, s.n_experts, s.top_k,
                       s.moe_inter, s.shared_inter, nullptr),
            cudaErrorInvalidValue);
  bad = Q.dw;
  bad.expert_scales[3].down = nullptr;
  EXPECT_EQ(moe_decode(dx.get(), s.dim, didx.get(), dw.get(), bad, dy.get(), s.dim,
                       GemvEpilogue::kStoreF32, ws.get(), 1, s.dim, s.n_experts, s.top_k,
                       s.moe_inter, s.shared_inter, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(moe_prefill(dx.get(), s.dim, didx.get(), dw.get(), bad, dy.get(), s.dim,
                        GemvEpilogue::kStoreF32, ws.get(), 1, s.dim, s.n_experts, s.top_k,
                        s.moe_inter, s.shared_inter, nullptr),
            cudaErrorInvalidValue);  // a scale missing
  bad = Q.dw;
  bad.shared_format = WeightFormat::kInt4;
  bad.shared_group = 128;
  EXPECT_EQ(moe_prefill(dx.get(), s.dim, didx.get(), dw.get(), bad, dy.get(), s.dim,
                        GemvEpilogue::kStoreF32, ws.get(), 1, s.dim, s.n_experts, s.top_k,
                        s.moe_inter, s.shared_inter, nullptr),
            cudaErrorInvalidValue);  // (int8, int4)
  bad = Q.dw;
  bad.expert_format = WeightFormat::kInt4;
  bad.expert_group = 96;  // not 64 or 128
  EXPECT_EQ(moe_prefill(dx.get(), s.dim, didx.get(), dw.get(), bad, dy.get(), s.dim,
                        GemvEpilogue::kStoreF32, ws.get(), 1, s.dim, s.n_experts, s.top_k,
                        s.moe_inter, s.shared_inter, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace dsocr::test
