// Decode MoE over quantized weights (kernels/moe_decode.cu with MoeDeviceWeights' formats): the
// routed experts and the shared experts quantized with quantize_*_ref, every supported (routed,
// shared) pair, T = 1..8, against float64 of the same dequantized weights with the 2×-naive rule,
// and against moe_ref on the dequantized weights rounded to BF16 (rel 1e-2: that rounding is the
// only difference). Unsupported pairs and moe_prefill refuse quantized weights.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "gpu/moe_test_util.h"
#include "kernels/quant.h"

namespace dsocr::test {
namespace {

// One quantized [n, k] weight: the slot on the device, the dequantized floats on the host.
struct QMat {
  std::vector<float> deq;
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

// y[t] = Σ_k w_k·expert_k(x_t) + shared(x_t) on the dequantized weights: float64, or naive (FP32
// sequential sums, act rounded to BF16).
std::vector<double> eval(const QLayer& Q, const std::vector<uint16_t>& x, int T,
                         const std::vector<int32_t>& idx, const std::vector<float>& w, bool naive) {
  const Shape& s = Q.s;
  std::vector<double> out;
  auto mlp = [&](const QMat* m, int inter, const uint16_t* xt, double wt, std::vector<double>& yd,
                 std::vector<float>& yf) {
    std::vector<double> ad(inter);
    std::vector<float> af(inter);
    for (int j = 0; j < inter; ++j) {
      double g = 0, u = 0;
      float gf = 0, uf = 0;
      for (int q = 0; q < s.dim; ++q) {
        const float xv = bf16_to_f32(xt[q]);
        const float gw = m[0].deq[static_cast<size_t>(j) * s.dim + q];
        const float uw = m[1].deq[static_cast<size_t>(j) * s.dim + q];
        g += static_cast<double>(gw) * xv, u += static_cast<double>(uw) * xv;
        gf += gw * xv, uf += uw * xv;
      }
      ad[j] = g / (1 + std::exp(-g)) * u;
      af[j] = round_bf16(gf / (1.f + std::exp(-gf)) * uf);
    }
    for (int i = 0; i < s.dim; ++i) {
      double d = 0;
      float f = 0;
      for (int j = 0; j < inter; ++j) {
        const float dw = m[2].deq[static_cast<size_t>(i) * inter + j];
        d += static_cast<double>(dw) * ad[j];
        f += dw * af[j];
      }
      yd[i] += wt * d;
      yf[i] += static_cast<float>(wt) * f;
    }
  };
  for (int t = 0; t < T; ++t) {
    std::vector<double> yd(s.dim, 0.0);
    std::vector<float> yf(s.dim, 0.f);
    const uint16_t* xt = x.data() + static_cast<size_t>(t) * s.dim;
    for (int k = 0; k < s.top_k; ++k)
      mlp(&Q.experts[3 * idx[t * s.top_k + k]], s.moe_inter, xt, w[t * s.top_k + k], yd, yf);
    mlp(Q.shared, s.shared_inter, xt, 1.0, yd, yf);
    for (int i = 0; i < s.dim; ++i) out.push_back(naive ? yf[i] : yd[i]);
  }
  return out;
}

void run(const Layer& L, const QLayer& Q, int T, uint64_t seed, const std::string& label) {
  const Shape& s = L.s;
  Rng rng(seed);
  const std::vector<uint16_t> x = random_bf16(rng, static_cast<size_t>(T) * s.dim);
  DevBuf<uint16_t> dx(x);
  DevBuf<int32_t> didx(T * s.top_k);
  DevBuf<float> dw(T * s.top_k), dy(static_cast<size_t>(T) * s.dim);
  DevBuf<uint8_t> ws(moe_decode_workspace_bytes(T, s.top_k, s.moe_inter, s.shared_inter));
  LAUNCH_OK(moe_router(dx.get(), s.dim, L.router_d, nullptr, didx.get(), dw.get(), T, s.dim,
                       s.n_experts, s.top_k, 1.f, nullptr));
  LAUNCH_OK(moe_decode(dx.get(), s.dim, didx.get(), dw.get(), Q.dw, dy.get(), s.dim,
                       GemvEpilogue::kStoreF32, ws.get(), T, s.dim, s.n_experts, s.top_k,
                       s.moe_inter, s.shared_inter, nullptr));
  const std::vector<int32_t> idx = didx.download();
  const std::vector<float> w = dw.download(), y = dy.download();
  const std::string name = label + " T=" + std::to_string(T);
  expect_2x_naive(name, to_f64(y), eval(Q, x, T, idx, w, true), eval(Q, x, T, idx, w, false));

  // moe_ref on the dequantized weights rounded to BF16.
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
  EXPECT_LT(rel_err(to_f64(y), to_f64(yref)), 1e-2) << name << " vs moe_ref";
}

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
                    P{F::kInt8, 0, F::kInt8, 0, "int8/int8"},
                    P{F::kInt4, 64, F::kInt4, 64, "int4 g64/int4 g64"}}) {
    const QLayer Q(L, p.fr, p.gr, p.fs, p.gs);
    for (int T : {1, 2, 5, 8}) run(L, Q, T, ++seed, p.name);
  }
}

TEST(MoeQuant, SmallShape) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Layer L({256, 16, 4, 128, 384}, 6, 0.1f);  // shared 384 = 3 slices of 128
  const QLayer Q(L, WeightFormat::kInt4, 128, WeightFormat::kInt4, 128);
  for (int T : {1, 3, 8}) run(L, Q, T, 70 + T, "dim256 e16 k4 int4");
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
  EXPECT_EQ(moe_prefill(dx.get(), s.dim, didx.get(), dw.get(), Q.dw, dy.get(), s.dim,
                        GemvEpilogue::kStoreF32, ws.get(), 1, s.dim, s.n_experts, s.top_k,
                        s.moe_inter, s.shared_inter, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace dsocr::test
