// Flash-decoding (kernels/decode_attention.cu) against float64, the naive BF16 rule and
// causal_attention_ref (T = 1 at p0 = kv_len - 1, K/V rounded to BF16 for the reference inputs).
#include <gtest/gtest.h>

#include <cmath>

#include "gpu/decoder_test_util.h"
#include "kernels/causal_attention.h"

namespace dsocr::test {
namespace {

constexpr int kHeads = 10, kHd = 128;
constexpr int64_t kRow = kHeads * kHd;

struct Inputs {
  std::vector<uint16_t> q, k, v;  // q [kRow]; k, v [kv_len, ld]
};

Inputs make_inputs(int64_t kv_len, int64_t ld, float q_range, uint64_t seed) {
  Rng rng(seed);
  Inputs in;
  in.q = random_bf16(rng, kRow, -q_range, q_range);
  in.k = random_bf16(rng, kv_len * ld, -1.f, 1.f);
  in.v = random_bf16(rng, kv_len * ld, -1.f, 1.f);
  return in;
}

// Checks out (BF16 [kRow]) for the given inputs: 2×-naive vs float64, and causal_attention_ref.
void check(const std::string& name, const Inputs& in, int64_t kv_len, int64_t ld,
           const std::vector<uint16_t>& out) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHd));
  std::vector<double> ref64, naive, kern;
  std::vector<double> s(kv_len);
  std::vector<float> sf(kv_len);
  for (int h = 0; h < kHeads; ++h) {
    double m = -INFINITY;
    float mf = -INFINITY;
    for (int64_t j = 0; j < kv_len; ++j) {
      double d = 0;
      float f = 0;
      for (int e = 0; e < kHd; ++e) {
        const float qv = bf16_to_f32(in.q[h * kHd + e]),
                    kv = bf16_to_f32(in.k[j * ld + h * kHd + e]);
        d += static_cast<double>(qv) * kv;
        f += qv * kv;
      }
      s[j] = d * scale, sf[j] = f * static_cast<float>(scale);
      m = std::max(m, s[j]), mf = std::max(mf, sf[j]);
    }
    double l = 0;
    float lf = 0;
    for (int64_t j = 0; j < kv_len; ++j)
      l += (s[j] = std::exp(s[j] - m)), lf += (sf[j] = std::exp(sf[j] - mf));
    for (int e = 0; e < kHd; ++e) {
      double o = 0;
      float of = 0;
      for (int64_t j = 0; j < kv_len; ++j) {
        const float vv = bf16_to_f32(in.v[j * ld + h * kHd + e]);
        o += s[j] * vv, of += sf[j] * vv;
      }
      ref64.push_back(o / l), naive.push_back(round_bf16(of / lf));
      kern.push_back(bf16_to_f32(out[h * kHd + e]));
    }
  }
  expect_2x_naive(name, kern, naive, ref64);

  // causal_attention_ref on float copies (contiguous rows).
  std::vector<float> qf = widen(in.q), kf(kv_len * kRow), vf(kv_len * kRow), o(kRow);
  for (int64_t j = 0; j < kv_len; ++j)
    for (int64_t i = 0; i < kRow; ++i)
      kf[j * kRow + i] = bf16_to_f32(in.k[j * ld + i]),
                    vf[j * kRow + i] = bf16_to_f32(in.v[j * ld + i]);
  causal_attention_ref(qf.data(), kf.data(), vf.data(), o.data(), 1, kv_len - 1, kHeads, kHd,
                       static_cast<float>(scale));
  EXPECT_LT(rel_err(kern, to_f64(o)), 1e-2) << name;
}

// A paged pool for max_kv_len rows (shuffled pages, spare pages) holding rows 0..n-1 of a host
// [n, ld] array; every other pool row is poison (NaN): reading one fails the test.
struct PagedCache {
  TestPages pages;
  DevBuf<uint16_t> k, v;
  DevBuf<int32_t> table;
  PagedCache(const Inputs& in, int64_t n, int64_t ld, int64_t max_kv_len, int page_size,
             uint64_t seed)
      : pages(max_kv_len, page_size, seed),
        k(pages.rows() * kRow),
        v(pages.rows() * kRow),
        table(pages.table) {
    std::vector<uint16_t> hk = k.download(), hv = v.download();
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < kRow; ++i)
        hk[pages.row_of(j) * kRow + i] = in.k[j * ld + i],
                                  hv[pages.row_of(j) * kRow + i] = in.v[j * ld + i];
    k.upload(hk), v.upload(hv);
  }
  PagedKv kv() const {
    PagedKv p;
    p.k = k.get(), p.v = v.get(), p.page_table = table.get();
    p.page_size = pages.page_size, p.n_pages = pages.n_pages;
    return p;
  }
};

void run_case(int64_t kv_len, int64_t max_kv_len, int64_t ld, float q_range, uint64_t seed,
              int page_size = 16) {
  const Inputs in = make_inputs(kv_len, ld, q_range, seed);
  const PagedCache cache(in, kv_len, ld, max_kv_len, page_size, seed + 1000);
  DevBuf<uint16_t> dq(in.q), dout(kRow);
  DevBuf<int32_t> dpos(std::vector<int32_t>{static_cast<int32_t>(kv_len - 1)});
  DevBuf<uint8_t> ws(decode_attention_workspace_bytes(kHeads, kHd, max_kv_len));
  ASSERT_EQ(decode_attention_workspace_init(ws.get(), kHeads, kHd, max_kv_len, nullptr),
            cudaSuccess);
  LAUNCH_OK(decode_attention(dq.get(), cache.kv(), dpos.get(), dout.get(), ws.get(), max_kv_len,
                             kHeads, kHd, 1.f / std::sqrt(128.f), nullptr));
  char name[112];
  std::snprintf(name, sizeof name, "kv_len=%lld max=%lld ld=%lld q_range=%g page=%d",
                static_cast<long long>(kv_len), static_cast<long long>(max_kv_len),
                static_cast<long long>(ld), q_range, page_size);
  check(name, in, kv_len, ld, dout.download());
}

TEST(DecodeAttention, ContextLengths) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 1;
  for (int64_t kv : {1, 17, 282, 912, 4099, 8192}) {
    run_case(kv, kv, kRow, 1.f, ++seed);    // tight bound
    run_case(kv, 8192, kRow, 4.f, ++seed);  // the graph's bound, peaky softmax
  }
  run_case(63, 65, kRow + 8, 2.f, ++seed, 32);  // split boundary, ragged last page
  run_case(65, 128, kRow, 8.f, ++seed, 64);
  run_case(300, 1000, kRow, 3.f, ++seed, 32);
}

// Past 128 tiles (8192 keys) a split runs the online softmax over several tiles.
TEST(DecodeAttention, LongContextsSeveralTilesPerSplit) {
  DSOCR_SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  run_case(8193, 8193, kRow, 2.f, ++seed);    // 129 tiles: 2 per split, the last split 1
  run_case(20000, 32768, kRow, 4.f, ++seed);  // 313 tiles: 3 per split, ragged last tile
  run_case(32768, 32768, kRow, 8.f, ++seed);  // 512 tiles: 4 per split
  run_case(912, 32768, kRow, 4.f, ++seed);    // large bound, short context: 1 tile per split
}

// One captured graph (bound 8192) replayed for several live lengths set through *pos.
TEST(DecodeAttention, GraphReplayFollowsDevicePosition) {
  DSOCR_SKIP_WITHOUT_GPU();
  const int64_t max_kv = 8192;
  const Inputs in = make_inputs(max_kv, kRow, 3.f, 77);
  const PagedCache cache(in, max_kv, kRow, max_kv, 32, 78);
  DevBuf<uint16_t> dq(in.q), dout(kRow);
  DevBuf<int32_t> dpos(1);
  DevBuf<uint8_t> ws(decode_attention_workspace_bytes(kHeads, kHd, max_kv));
  ASSERT_EQ(decode_attention_workspace_init(ws.get(), kHeads, kHd, max_kv, nullptr), cudaSuccess);
  cudaStream_t st;
  ASSERT_EQ(cudaStreamCreate(&st), cudaSuccess);
  cudaGraph_t g;
  cudaGraphExec_t ge;
  ASSERT_EQ(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(decode_attention(dq.get(), cache.kv(), dpos.get(), dout.get(), ws.get(), max_kv,
                             kHeads, kHd, 1.f / std::sqrt(128.f), st),
            cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(st, &g), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
  for (int64_t kv : {5, 4099, 64, 8192, 129}) {
    const int32_t p = static_cast<int32_t>(kv - 1);
    ASSERT_EQ(cudaMemcpyAsync(dpos.get(), &p, 4, cudaMemcpyHostToDevice, st), cudaSuccess);
    dout.poison();
    ASSERT_EQ(cudaGraphLaunch(ge, st), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(st), cudaSuccess);
    Inputs sub{in.q, std::vector<uint16_t>(in.k.begin(), in.k.begin() + kv * kRow),
               std::vector<uint16_t>(in.v.begin(), in.v.begin() + kv * kRow)};
    check("graph replay kv_len=" + std::to_string(kv), sub, kv, kRow, dout.download());
  }
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(st);
}

TEST(DecodeAttention, Rejects) {
  DSOCR_SKIP_WITHOUT_GPU();
  DevBuf<uint16_t> b(kRow);
  DevBuf<int32_t> p(1);
  DevBuf<int32_t> table(std::vector<int32_t>{0, 1, 2, 3});
  DevBuf<uint8_t> ws(decode_attention_workspace_bytes(kHeads, kHd, 64));
  PagedKv kv;
  kv.k = kv.v = b.get(), kv.page_table = table.get(), kv.page_size = 16, kv.n_pages = 4;
  EXPECT_EQ(decode_attention(b.get(), kv, p.get(), b.get(), ws.get(), 64, kHeads, 64, 0.125f,
                             nullptr),
            cudaErrorInvalidValue);  // head_dim 64
  kv.page_size = 24;
  EXPECT_EQ(decode_attention(b.get(), kv, p.get(), b.get(), ws.get(), 64, kHeads, kHd, 0.125f,
                             nullptr),
            cudaErrorInvalidValue);  // page size not a power of two
  kv.page_size = 16, kv.page_table = nullptr;
  EXPECT_EQ(decode_attention(b.get(), kv, p.get(), b.get(), ws.get(), 64, kHeads, kHd, 0.125f,
                             nullptr),
            cudaErrorInvalidValue);  // no table
}

}  // namespace
}  // namespace dsocr::test
