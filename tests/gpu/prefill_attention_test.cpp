// Causal prefill attention over a paged KV cache (kernels/prefill_attention.cu) against float64,
// the naive BF16 rule and causal_attention_ref. The cache pool is laid out through a randomly
// permuted page table with spare pages; every pool row that is not a live position, and every
// page-table entry past the live pages, is poison (NaN rows, out-of-range page ids), so reading
// one shows up as a NaN or a fault. T and p0 are not multiples of the page or the tile.
#include "kernels/prefill_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "gpu/decoder_test_util.h"
#include "kernels/causal_attention.h"
#include "kernels/parallel.h"

namespace dsocr::test {
namespace {

constexpr int kHd = 128;
constexpr uint16_t kPoison16 = 0x7fc0;  // kPoison32's BF16 half

struct Case {
  int64_t p0;
  int T;
  int page_size;
  int n_heads = 10;
  int64_t ld_pad = 0;  // extra elements per row of q and out
  float q_range = 1.f;
};

std::string name_of(const Case& c) {
  char b[128];
  std::snprintf(b, sizeof b, "p0=%lld T=%d page=%d heads=%d pad=%lld q_range=%g",
                static_cast<long long>(c.p0), c.T, c.page_size, c.n_heads,
                static_cast<long long>(c.ld_pad), c.q_range);
  return b;
}

// Host side of one case: q [T, ldq]; K/V [kv_len, row] in position order; the paged pool.
struct Host {
  int64_t row, ldq, ldo, kv_len, n_pages;
  std::vector<uint16_t> q, k, v, pool_k, pool_v;
  std::vector<int32_t> page_table;
};

Host make_host(const Case& c, uint64_t seed) {
  Rng rng(seed);
  Host h;
  h.row = static_cast<int64_t>(c.n_heads) * kHd;
  h.ldq = h.row + c.ld_pad, h.ldo = h.row + c.ld_pad;
  h.kv_len = c.p0 + c.T;
  const int64_t live_pages = (h.kv_len + c.page_size - 1) / c.page_size;
  h.n_pages = live_pages + 3;  // spare pages stay poison
  h.q = random_bf16(rng, static_cast<size_t>(c.T) * h.ldq, -c.q_range, c.q_range);
  h.k = random_bf16(rng, static_cast<size_t>(h.kv_len) * h.row);
  h.v = random_bf16(rng, static_cast<size_t>(h.kv_len) * h.row);
  std::vector<int32_t> perm(h.n_pages);
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t i = h.n_pages - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);
  h.page_table.assign(live_pages + 4, 1 << 30);  // entries past the live pages: out of the pool
  std::copy_n(perm.begin(), live_pages, h.page_table.begin());
  const size_t pool = static_cast<size_t>(h.n_pages) * c.page_size * h.row;
  h.pool_k.assign(pool, kPoison16), h.pool_v.assign(pool, kPoison16);
  for (int64_t p = 0; p < h.kv_len; ++p) {
    const int64_t r =
        static_cast<int64_t>(h.page_table[p / c.page_size]) * c.page_size + p % c.page_size;
    std::copy_n(h.k.begin() + p * h.row, h.row, h.pool_k.begin() + r * h.row);
    std::copy_n(h.v.begin() + p * h.row, h.row, h.pool_v.begin() + r * h.row);
  }
  return h;
}

// Device copies; out has one poison row before and after the T rows the kernel owns.
struct Dev {
  DevBuf<uint16_t> q, k, v, out;
  DevBuf<int32_t> pt;
  PagedKv kv;
  Dev(const Host& h, const Case& c)
      : q(h.q), k(h.pool_k), v(h.pool_v), out((c.T + 2) * h.ldo), pt(h.page_table) {
    kv = {k.get(), v.get(), pt.get(), c.page_size, h.n_pages};
  }
};

cudaError_t launch(const Case& c, const Host& h, const Dev& d, int64_t p0, int T, int t_begin,
                   cudaStream_t st = nullptr) {
  return prefill_attention(d.q.get() + t_begin * h.ldq, h.ldq, d.kv, p0, T,
                           d.out.get() + (1 + t_begin) * h.ldo, h.ldo, c.n_heads, kHd,
                           1.f / std::sqrt(static_cast<float>(kHd)), st);
}

// float64 and naive (BF16 inputs, FP32 sequential sums, BF16 output) evaluations, [T, row].
void evaluate(const Case& c, const Host& h, std::vector<double>* ref64,
              std::vector<double>* naive) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHd));
  const float scale_f = static_cast<float>(scale);
  ref64->assign(static_cast<size_t>(c.T) * h.row, 0.0);
  naive->assign(static_cast<size_t>(c.T) * h.row, 0.0);
  const std::vector<float> qf = widen(h.q), kf = widen(h.k), vf = widen(h.v);
  parallel_for(static_cast<int64_t>(c.T) * c.n_heads, [&](int64_t b, int64_t e) {
    std::vector<double> s;
    std::vector<float> sf;
    std::vector<double> od(kHd);
    std::vector<float> of(kHd);
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = i / c.n_heads, hh = i % c.n_heads, n = c.p0 + t + 1;
      s.resize(n), sf.resize(n);
      const float* qv = qf.data() + t * h.ldq + hh * kHd;
      double m = -INFINITY;
      float mf = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const float* kv = kf.data() + j * h.row + hh * kHd;
        double d = 0;
        float f = 0;
        for (int x = 0; x < kHd; ++x) d += static_cast<double>(qv[x]) * kv[x], f += qv[x] * kv[x];
        s[j] = d * scale, sf[j] = f * scale_f;
        m = std::max(m, s[j]), mf = std::max(mf, sf[j]);
      }
      double l = 0;
      float lf = 0;
      for (int64_t j = 0; j < n; ++j)
        l += (s[j] = std::exp(s[j] - m)), lf += (sf[j] = std::exp(sf[j] - mf));
      std::fill(od.begin(), od.end(), 0.0), std::fill(of.begin(), of.end(), 0.f);
      for (int64_t j = 0; j < n; ++j) {
        const float* vv = vf.data() + j * h.row + hh * kHd;
        for (int x = 0; x < kHd; ++x) od[x] += s[j] * vv[x], of[x] += sf[j] * vv[x];
      }
      for (int x = 0; x < kHd; ++x) {
        (*ref64)[t * h.row + hh * kHd + x] = od[x] / l;
        (*naive)[t * h.row + hh * kHd + x] = round_bf16(of[x] / lf);
      }
    }
  });
}

// The kernel's [T, row] part of out (rows 1..T of the buffer), and the poison checks.
std::vector<double> kernel_rows(const Case& c, const Host& h, const std::vector<uint16_t>& out,
                                const std::string& name) {
  std::vector<double> k(static_cast<size_t>(c.T) * h.row);
  int64_t bad_pad = 0, bad_rows = 0, nan = 0;
  for (int64_t r = 0; r < c.T + 2; ++r)
    for (int64_t x = 0; x < h.ldo; ++x) {
      const uint16_t b = out[r * h.ldo + x];
      const bool inside = r >= 1 && r <= c.T && x < h.row;
      if (!inside) {
        bad_rows += (r == 0 || r == c.T + 1) && b != kPoison16;
        bad_pad += (r >= 1 && r <= c.T) && b != kPoison16;
        continue;
      }
      const float f = bf16_to_f32(b);
      nan += std::isnan(f);
      k[(r - 1) * h.row + x] = f;
    }
  EXPECT_EQ(nan, 0) << name << ": NaN in the output (unwritten or poisoned input read)";
  EXPECT_EQ(bad_rows, 0) << name << ": rows outside [0, T) written";
  EXPECT_EQ(bad_pad, 0) << name << ": padding columns written";
  return k;
}

void run_case(const Case& c, uint64_t seed, bool with_ref = true) {
  const Host h = make_host(c, seed);
  Dev d(h, c);
  LAUNCH_OK(launch(c, h, d, c.p0, c.T, 0));
  const std::string name = name_of(c);
  const std::vector<double> kern = kernel_rows(c, h, d.out.download(), name);
  std::vector<double> ref64, naive;
  evaluate(c, h, &ref64, &naive);
  expect_2x_naive(name, kern, naive, ref64);
  if (!with_ref) return;
  // causal_attention_ref (float32) on contiguous copies: q without padding, K/V by position.
  std::vector<float> qf(static_cast<size_t>(c.T) * h.row), o(qf.size());
  for (int64_t t = 0; t < c.T; ++t)
    for (int64_t x = 0; x < h.row; ++x) qf[t * h.row + x] = bf16_to_f32(h.q[t * h.ldq + x]);
  const std::vector<float> kf = widen(h.k), vf = widen(h.v);
  causal_attention_ref(qf.data(), kf.data(), vf.data(), o.data(), c.T, c.p0, c.n_heads, kHd,
                       1.f / std::sqrt(static_cast<float>(kHd)));
  EXPECT_LT(rel_err(kern, to_f64(o)), 1e-2) << name << " vs causal_attention_ref";
}

// Small shapes (also the compute-sanitizer set): one query, one tile, ragged pages, p0 mid-page.
TEST(PrefillAttention, Small) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 1;
  run_case({0, 1, 16}, ++seed);
  run_case({0, 17, 32}, ++seed);
  run_case({0, 64, 16}, ++seed);
  run_case({5, 70, 16, 3, 8, 4.f}, ++seed);
  run_case({513, 77, 64}, ++seed);
  run_case({63, 2, 32, 1}, ++seed);  // the second query starts a new tile
  run_case({0, 130, 64, 2, 16, 8.f}, ++seed);
}

TEST(PrefillAttention, ModelShapes) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  for (int ps : {16, 32, 64}) {
    run_case({0, 282, ps}, ++seed);
    run_case({100, 300, ps}, ++seed);
    run_case({0, 912, ps, 10, 0, 3.f}, ++seed);
  }
  run_case({0, 2048, 32}, ++seed, false);
  run_case({1000, 1048, 16, 10, 8, 2.f}, ++seed, false);
}

// Key tiles are aligned to absolute positions and a fully masked tile changes nothing (alpha = 1,
// p = 0), so a prefill in chunks equals the prefill in one call bit for bit, as in the reference.
TEST(PrefillAttention, ChunksEqualWholeBitwise) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Case c{0, 912, 16, 10, 8, 2.f};
  const Host h = make_host(c, 7);
  Dev d(h, c);
  LAUNCH_OK(launch(c, h, d, 0, c.T, 0));
  const std::vector<uint16_t> whole = d.out.download();
  d.out.poison();
  int t = 0;
  for (int len : {300, 1, 65, 546}) {  // the cache already holds every key; each chunk sees 0..p
    LAUNCH_OK(launch(c, h, d, t, len, t));
    t += len;
  }
  ASSERT_EQ(t, c.T);
  EXPECT_EQ(whole, d.out.download());
}

TEST(PrefillAttention, Rejects) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Case c{0, 8, 16, 2};
  const Host h = make_host(c, 3);
  Dev d(h, c);
  const float s = 0.125f;
  EXPECT_EQ(prefill_attention(d.q.get(), h.ldq, d.kv, 0, 8, d.out.get(), h.ldo, 2, 64, s, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(
      prefill_attention(d.q.get(), h.ldq - 8, d.kv, 0, 8, d.out.get(), h.ldo, 2, kHd, s, nullptr),
      cudaErrorInvalidValue);
  EXPECT_EQ(
      prefill_attention(d.q.get() + 1, h.ldq, d.kv, 0, 8, d.out.get(), h.ldo, 2, kHd, s, nullptr),
      cudaErrorInvalidValue);
  PagedKv bad = d.kv;
  bad.page_size = 8;
  EXPECT_EQ(prefill_attention(d.q.get(), h.ldq, bad, 0, 8, d.out.get(), h.ldo, 2, kHd, s, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(prefill_attention(d.q.get(), h.ldq, d.kv, 0, 0, d.out.get(), h.ldo, 2, kHd, s, nullptr),
            cudaErrorInvalidValue);
}

// Timing: 20 samples of 10 back-to-back launches (the host's launch latency hidden, as in a
// queued prefill), median per launch, after 50 warm-up launches; the 4.7 MB of K/V stay in L2, as
// they do right after the QKV projection wrote them in a real prefill.
TEST(PrefillAttention, Perf) {
  DSOCR_SKIP_WITHOUT_GPU();
  for (const Case& c : {Case{0, 912, 16}, Case{0, 2048, 16}, Case{912, 512, 16}}) {
    const Host h = make_host(c, 11);
    Dev d(h, c);
    cudaEvent_t a, b;
    ASSERT_EQ(cudaEventCreate(&a), cudaSuccess);
    ASSERT_EQ(cudaEventCreate(&b), cudaSuccess);
    for (int i = 0; i < 50; ++i) ASSERT_EQ(launch(c, h, d, c.p0, c.T, 0), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    constexpr int kBatch = 10;
    std::vector<float> ms;
    for (int i = 0; i < 20; ++i) {
      ASSERT_EQ(cudaEventRecord(a), cudaSuccess);
      for (int j = 0; j < kBatch; ++j) ASSERT_EQ(launch(c, h, d, c.p0, c.T, 0), cudaSuccess);
      ASSERT_EQ(cudaEventRecord(b), cudaSuccess);
      ASSERT_EQ(cudaEventSynchronize(b), cudaSuccess);
      float t = 0;
      ASSERT_EQ(cudaEventElapsedTime(&t, a, b), cudaSuccess);
      ms.push_back(t / kBatch);
    }
    std::sort(ms.begin(), ms.end());
    const double us = ms[ms.size() / 2] * 1e3;
    double flop = 0;  // QKᵀ + PV over the causal keys
    for (int64_t t = 0; t < c.T; ++t) flop += 4.0 * (c.p0 + t + 1) * kHd * c.n_heads;
    std::printf("  PERF prefill_attention %-40s %8.1f us  %6.1f TFLOP/s\n", name_of(c).c_str(), us,
                flop / us * 1e-6);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
}

}  // namespace
}  // namespace dsocr::test
