// The GPU quantizer, dequantizer and quantized decode GEMVs (kernels/quant.cu, gemv_quant.cu):
//  * quantize_int8 / quantize_int4 bit for bit against quantize_*_ref on random rows and crafted
//    ones (one outlier, all-equal groups, all-zero groups, tiny values whose scale rounds to 0,
//    negative-only rows, values on rounding ties) at k = 1280, 896, 1792, 6848 (group 64 there);
//  * dequantize_bf16 against dequantize_*_ref rounded to BF16, for a row window;
//  * gemv_quant / gemv_quant_swiglu against float64 of the same dequantized weights with the
//    2×-naive rule (naive: FP32 sequential sum, BF16 rounding where the kernel stores BF16) and
//    against gemv_int8_ref / gemv_int4_ref, at 3840×1280 (three parts, q|k|v), 1280×1280,
//    129280×1280 (lm_head), 1280×6848 (group 64), m = 1, 2, 8, every epilogue.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "gpu/decoder_test_util.h"
#include "kernels/quant.h"

namespace dsocr::test {
namespace {

// n rows of k BF16 weights: random rows, then (when n >= 8) crafted ones in rows 0..7.
std::vector<uint16_t> weights(int64_t n, int64_t k, uint64_t seed, bool crafted = true) {
  Rng rng(seed);
  std::vector<uint16_t> w = random_bf16(rng, n * k, -0.05f, 0.05f);
  if (!crafted || n < 8) return w;
  auto row = [&](int64_t r) { return w.data() + r * k; };
  row(0)[k / 3] = f32_to_bf16(3.0f);                                      // one outlier
  for (int64_t j = 0; j < k; ++j) row(1)[j] = f32_to_bf16(j < 64 ? 0.25f : -0.125f);  // equal groups
  for (int64_t j = 0; j < k; ++j) row(2)[j] = j < 128 ? 0 : row(2)[j];   // zero groups
  std::fill(row(3), row(3) + k, uint16_t{0});                            // all-zero row
  for (int64_t j = 0; j < k; ++j)  // tiny: subnormal magnitudes whose amax/qmax rounds to 0
    row(4)[j] = static_cast<uint16_t>((j % 2 ? 0x8000 : 0) | (j % 3 + 1));
  for (int64_t j = 0; j < k; ++j) row(5)[j] = f32_to_bf16(-std::fabs(bf16_to_f32(row(5)[j])));
  for (int64_t j = 0; j < k; ++j)  // amax 127 or 7 -> scale 1: values on .5 ties
    row(6)[j] = f32_to_bf16(j == 0 ? 127.f : static_cast<float>(j % 15) - 7.f + 0.5f * (j % 2));
  for (int64_t j = 0; j < k; ++j)  // per group: amax 7 -> scale exactly 1 for INT4
    row(7)[j] = f32_to_bf16(j % 64 == 0 ? 7.f : 0.5f * static_cast<float>(j % 29) - 7.f);
  return w;
}

void check_int8(int64_t n, int64_t k, uint64_t seed) {
  const std::vector<uint16_t> w = weights(n, k, seed);
  const std::vector<float> wf = widen(w);
  std::vector<int8_t> q(n * k);
  std::vector<uint16_t> s(n);
  quantize_int8_ref(wf.data(), q.data(), s.data(), n, k);
  DevBuf<uint16_t> dw(w), ds(n);
  DevBuf<int8_t> dq(n * k);
  LAUNCH_OK(quantize_int8(dw.get(), dq.get(), ds.get(), n, k, nullptr));
  const std::vector<int8_t> gq = dq.download();
  const std::vector<uint16_t> gs = ds.download();
  for (int64_t r = 0; r < n; ++r) {
    ASSERT_EQ(gs[r], s[r]) << "int8 scale, row " << r << " k=" << k;
    ASSERT_EQ(std::memcmp(gq.data() + r * k, q.data() + r * k, k), 0)
        << "int8 values, row " << r << " k=" << k;
  }
  EXPECT_EQ(s[3], 0);  // the crafted zero-scale rows are really there
  EXPECT_EQ(s[4], 0);
}

void check_int4(int64_t n, int64_t k, int group, uint64_t seed) {
  const std::vector<uint16_t> w = weights(n, k, seed);
  const std::vector<float> wf = widen(w);
  const int64_t g = k / group;
  std::vector<uint8_t> p(n * k / 2);
  std::vector<uint16_t> s(n * g);
  quantize_int4_ref(wf.data(), p.data(), s.data(), n, k, group);
  DevBuf<uint16_t> dw(w), ds(n * g);
  DevBuf<uint8_t> dp(n * k / 2);
  LAUNCH_OK(quantize_int4(dw.get(), dp.get(), ds.get(), n, k, group, nullptr));
  const std::vector<uint8_t> gp = dp.download();
  const std::vector<uint16_t> gs = ds.download();
  for (int64_t r = 0; r < n; ++r) {
    ASSERT_EQ(std::memcmp(gs.data() + r * g, s.data() + r * g, g * 2), 0)
        << "int4 scales, row " << r << " k=" << k << " group " << group;
    ASSERT_EQ(std::memcmp(gp.data() + r * k / 2, p.data() + r * k / 2, k / 2), 0)
        << "int4 nibbles, row " << r << " k=" << k << " group " << group;
  }
  EXPECT_EQ(s[3 * g], 0);
  EXPECT_EQ(s[4 * g], 0);
}

TEST(GpuQuantize, Int8BitIdenticalToReference) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 1;
  for (int64_t k : {1280, 896, 1792, 6848}) check_int8(77, k, ++seed);
  check_int8(8, 16, ++seed);
}

TEST(GpuQuantize, Int4BitIdenticalToReference) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 20;
  for (int64_t k : {1280, 896, 1792}) {
    check_int4(77, k, 128, ++seed);
    check_int4(77, k, 64, ++seed);
  }
  check_int4(77, 6848, 64, ++seed);
  check_int4(9, 64, 64, ++seed);
}

TEST(GpuQuantize, RejectsBadShapes) {
  DSOCR_SKIP_WITHOUT_GPU();
  DevBuf<uint16_t> w(64 * 200), s(64 * 4);
  DevBuf<uint8_t> q(64 * 200);
  EXPECT_EQ(quantize_int8(w.get(), reinterpret_cast<int8_t*>(q.get()), s.get(), 4, 24, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(quantize_int4(w.get(), q.get(), s.get(), 4, 192, 128, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(quantize_int4(w.get(), q.get(), s.get(), 4, 128, 32, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// A quantized weight on host and device: values + scales in one slot, as the planner lays it out.
struct QW {
  WeightFormat f;
  int group;
  int64_t n, k;
  std::vector<uint8_t> slot;  // values | scales
  std::vector<float> deq;     // dequantize_*_ref
  std::unique_ptr<DevBuf<uint8_t>> dev;
  QW(WeightFormat f_, int group_, int64_t n_, int64_t k_, uint64_t seed, bool crafted = true)
      : f(f_), group(f_ == WeightFormat::kInt4 ? group_ : 0), n(n_), k(k_) {
    const std::vector<float> w = widen(weights(n, k, seed, crafted));
    slot.resize(quant_bytes(f, n, k, group));
    deq.resize(n * k);
    auto* s = reinterpret_cast<uint16_t*>(slot.data() + quant_value_bytes(f, n, k));
    if (f == WeightFormat::kInt8) {
      auto* q = reinterpret_cast<int8_t*>(slot.data());
      quantize_int8_ref(w.data(), q, s, n, k);
      dequantize_int8_ref(q, s, deq.data(), n, k);
    } else {
      quantize_int4_ref(w.data(), slot.data(), s, n, k, group);
      dequantize_int4_ref(slot.data(), s, deq.data(), n, k, group);
    }
    dev = std::make_unique<DevBuf<uint8_t>>(slot);
  }
  QWeight d() const { return qweight_in_slot(dev->get(), f, n, k, group); }
  const uint16_t* scales_h() const {
    return reinterpret_cast<const uint16_t*>(slot.data() + quant_value_bytes(f, n, k));
  }
};

TEST(GpuQuantize, DequantizeRowWindow) {
  DSOCR_SKIP_WITHOUT_GPU();
  for (auto [f, group, k] : {std::tuple{WeightFormat::kInt8, 0, int64_t{1280}},
                             std::tuple{WeightFormat::kInt4, 128, int64_t{1792}},
                             std::tuple{WeightFormat::kInt4, 64, int64_t{6848}}}) {
    const QW w(f, group, 50, k, 7);
    const int64_t r0 = 13, rows = 29;
    DevBuf<uint16_t> out(rows * k + 8);
    LAUNCH_OK(dequantize_bf16(w.d(), k, r0, rows, out.get(), nullptr));
    const std::vector<uint16_t> o = out.download();
    for (int64_t i = 0; i < rows * k; ++i)
      ASSERT_EQ(o[i], f32_to_bf16(w.deq[r0 * k + i])) << weight_format_name(f) << " i=" << i;
    for (int64_t i = rows * k; i < rows * k + 8; ++i) ASSERT_EQ(o[i], 0x7fc0) << "wrote past end";
  }
}

const char* ep_name(GemvEpilogue ep) {
  return ep == GemvEpilogue::kStoreF32 ? "f32" : ep == GemvEpilogue::kStoreBf16 ? "bf16" : "add";
}

// y = x · w'ᵀ through gemv_quant with `parts` parts, vs float64 / naive / gemv_*_ref.
void run_gemv(const QW& w, int m, int parts, GemvEpilogue ep, int64_t pad, uint64_t seed) {
  const int64_t n = w.n, k = w.k, ldx = k + pad, ldy = n + pad;
  Rng rng(seed);
  const std::vector<uint16_t> x = random_bf16(rng, m * ldx);
  const std::vector<uint16_t> res = random_bf16(rng, m * ldy);
  DevBuf<uint16_t> dx(x), dyb(m * ldy);
  DevBuf<float> dyf(m * ldy);
  if (ep == GemvEpilogue::kAddBf16) {
    std::vector<uint16_t> r = res;
    for (int i = 0; i < m; ++i)
      for (int64_t j = n; j < ldy; ++j) r[i * ldy + j] = 0x7fc0;
    dyb.upload(r);
  }
  QGemvWeights g;
  g.parts = parts, g.format = w.f, g.group = w.group;
  const int64_t rb = quant_value_bytes(w.f, 1, k), rs = quant_scale_bytes(w.f, 1, k, w.group) / 2;
  int64_t row0 = 0;
  for (int p = 0; p < parts; ++p) {
    const int64_t rows = n / parts + (p < n % parts ? 1 : 0);
    g.q[p] = w.dev->get() + row0 * rb;
    g.scale[p] = w.d().scale + row0 * rs;
    g.rows[p] = rows;
    row0 += rows;
  }
  void* y = ep == GemvEpilogue::kStoreF32 ? static_cast<void*>(dyf.get()) : dyb.get();
  LAUNCH_OK(gemv_quant(dx.get(), ldx, g, y, ldy, m, k, ep, nullptr));
  const std::vector<float> yf = dyf.download();
  const std::vector<uint16_t> yb = dyb.download();

  std::vector<double> ref64, naive, kern;
  for (int i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double d = 0;
      float f = 0.f;
      for (int64_t q = 0; q < k; ++q) {
        const float wv = w.deq[j * k + q], xv = bf16_to_f32(x[i * ldx + q]);
        d += static_cast<double>(wv) * xv;
        f += wv * xv;
      }
      const double r = bf16_to_f32(res[i * ldy + j]);
      if (ep == GemvEpilogue::kStoreF32)
        ref64.push_back(d), naive.push_back(f), kern.push_back(yf[i * ldy + j]);
      else if (ep == GemvEpilogue::kStoreBf16)
        ref64.push_back(d), naive.push_back(round_bf16(f)), kern.push_back(bf16_to_f32(yb[i * ldy + j]));
      else
        ref64.push_back(r + d), naive.push_back(round_bf16(static_cast<float>(r) + f)),
            kern.push_back(bf16_to_f32(yb[i * ldy + j]));
    }
  char name[160];
  std::snprintf(name, sizeof name, "%s g%d m=%d n=%lld k=%lld parts=%d pad=%lld y=%s",
                weight_format_name(w.f), w.group, m, static_cast<long long>(n),
                static_cast<long long>(k), parts, static_cast<long long>(pad), ep_name(ep));
  expect_2x_naive(name, kern, naive, ref64);
  if (ep != GemvEpilogue::kStoreF32) {
    for (int i = 0; i < m; ++i)
      for (int64_t j = n; j < ldy; ++j) ASSERT_EQ(yb[i * ldy + j], 0x7fc0) << name;
  }
  if (ep == GemvEpilogue::kStoreF32 && pad == 0) {  // the reference of the contract
    std::vector<float> xf = widen(x), yr(m * n);
    if (w.f == WeightFormat::kInt8)
      gemv_int8_ref(xf.data(), reinterpret_cast<const int8_t*>(w.slot.data()), w.scales_h(),
                    yr.data(), m, n, k);
    else
      gemv_int4_ref(xf.data(), w.slot.data(), w.scales_h(), yr.data(), m, n, k, w.group);
    EXPECT_LT(rel_err(to_f64(yf), to_f64(yr)), 1e-5) << "vs gemv_ref: " << name;
  }
}

TEST(GpuQuantGemv, DecoderShapes) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  struct S {
    int64_t n, k;
    int parts, group;
  };
  for (const S s : {S{3840, 1280, 3, 128}, S{1280, 1280, 1, 128}, S{1280, 6848, 1, 64},
                    S{1280, 896, 1, 128}, S{1280, 1792, 1, 64}})
    for (WeightFormat f : {WeightFormat::kInt8, WeightFormat::kInt4}) {
      const QW w(f, s.group, s.n, s.k, ++seed);
      for (int m : {1, 2, 3, 8})
        for (GemvEpilogue ep :
             {GemvEpilogue::kStoreF32, GemvEpilogue::kStoreBf16, GemvEpilogue::kAddBf16})
          run_gemv(w, m, s.parts, ep, 0, ++seed);
    }
}

TEST(GpuQuantGemv, LmHeadAndPaddedStrides) {
  DSOCR_SKIP_WITHOUT_GPU();
  {
    const QW w(WeightFormat::kInt8, 0, 129280, 1280, 5, /*crafted=*/false);
    for (int m : {1, 2, 8}) run_gemv(w, m, 1, GemvEpilogue::kStoreF32, 0, 400 + m);
  }
  const QW a(WeightFormat::kInt4, 64, 37, 192, 6);
  for (int m : {1, 5}) run_gemv(a, m, 2, GemvEpilogue::kAddBf16, 8, 500 + m);
  const QW b(WeightFormat::kInt8, 0, 3, 48, 7);
  run_gemv(b, 7, 1, GemvEpilogue::kStoreBf16, 16, 510);
}

void run_swiglu(WeightFormat f, int group, int m, int64_t inter, int64_t k, uint64_t seed) {
  const QW g(f, group, inter, k, seed), u(f, group, inter, k, seed + 1000);
  Rng rng(seed);
  const std::vector<uint16_t> x = random_bf16(rng, m * k);
  DevBuf<uint16_t> dx(x), act(m * inter);
  LAUNCH_OK(gemv_quant_swiglu(dx.get(), k, g.d(), u.d(), act.get(), inter, m, inter, k, nullptr));
  const std::vector<uint16_t> a = act.download();
  std::vector<double> ref64, naive, kern;
  for (int i = 0; i < m; ++i)
    for (int64_t j = 0; j < inter; ++j) {
      double gd = 0, ud = 0;
      float gf = 0, uf = 0;
      for (int64_t q = 0; q < k; ++q) {
        const float xv = bf16_to_f32(x[i * k + q]);
        gd += static_cast<double>(g.deq[j * k + q]) * xv, ud += static_cast<double>(u.deq[j * k + q]) * xv;
        gf += g.deq[j * k + q] * xv, uf += u.deq[j * k + q] * xv;
      }
      ref64.push_back(gd / (1 + std::exp(-gd)) * ud);
      naive.push_back(round_bf16(gf / (1.f + std::exp(-gf)) * uf));
      kern.push_back(bf16_to_f32(a[i * inter + j]));
    }
  char name[96];
  std::snprintf(name, sizeof name, "swiglu %s m=%d inter=%lld k=%lld", weight_format_name(f), m,
                static_cast<long long>(inter), static_cast<long long>(k));
  expect_2x_naive(name, kern, naive, ref64);
}

TEST(GpuQuantGemv, SwiGLU) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 600;
  for (int m : {1, 2, 8}) {
    run_swiglu(WeightFormat::kInt8, 0, m, 6848, 1280, ++seed);
    run_swiglu(WeightFormat::kInt4, 128, m, 1792, 1280, ++seed);
  }
}

TEST(GpuQuantGemv, RejectsBadArguments) {
  DSOCR_SKIP_WITHOUT_GPU();
  const QW w(WeightFormat::kInt4, 128, 8, 256, 3);
  DevBuf<uint16_t> x(256);
  DevBuf<float> y(64);
  QGemvWeights g = qgemv_weights(w.d(), 8);
  const auto ep = GemvEpilogue::kStoreF32;
  EXPECT_EQ(gemv_quant(x.get(), 256, g, y.get(), 8, 0, 256, ep, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(gemv_quant(x.get(), 256, g, y.get(), 8, 9, 256, ep, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(gemv_quant(x.get(), 256, g, y.get(), 8, 1, 192, ep, nullptr), cudaErrorInvalidValue);
  g.group = 32;
  EXPECT_EQ(gemv_quant(x.get(), 256, g, y.get(), 8, 1, 256, ep, nullptr), cudaErrorInvalidValue);
  g.group = 128, g.format = WeightFormat::kBf16;
  EXPECT_EQ(gemv_quant(x.get(), 256, g, y.get(), 8, 1, 256, ep, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace dsocr::test
