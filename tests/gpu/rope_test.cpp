// RoPE on q/k + K/V cache append (kernels/rope.cu) against float64, the naive BF16 rule and
// rope_ref.
#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>

#include "gpu/decoder_test_util.h"

namespace dsocr::test {
namespace {

constexpr float kTheta = 10000.f;

// pos: token positions (a position outside [0, max_tokens) must not be written to the cache).
void run_case(const std::vector<int32_t>& pos, int n_heads, int head_dim, int64_t max_tokens,
              bool in_place, uint64_t seed, int page_size = 16) {
  Rng rng(seed);
  const int T = static_cast<int>(pos.size());
  const int64_t row = static_cast<int64_t>(n_heads) * head_dim, ld_in = 3 * row + 8;
  std::vector<uint16_t> qkv = random_bf16(rng, T * ld_in, -2.f, 2.f);
  const TestPages pages(max_tokens, page_size, seed + 100);
  DevBuf<uint16_t> dqkv(qkv), dq(T * row), dk(pages.rows() * row), dv(pages.rows() * row);
  DevBuf<int32_t> dpos(pos), dtable(pages.table);
  PagedKv kv;
  kv.k = dk.get(), kv.v = dv.get(), kv.page_table = dtable.get();
  kv.page_size = page_size, kv.n_pages = pages.n_pages;
  uint16_t* q_out = in_place ? dqkv.get() : dq.get();
  const int64_t ld_q = in_place ? ld_in : row;
  LAUNCH_OK(rope_qk_append_kv(dqkv.get(), dqkv.get() + row, dqkv.get() + 2 * row, ld_in, dpos.get(),
                              q_out, ld_q, kv, max_tokens, T, n_heads, head_dim,
                              kTheta, nullptr));
  const std::vector<uint16_t> qo = in_place ? dqkv.download() : dq.download();
  const std::vector<uint16_t> kc = dk.download(), vc = dv.download();

  const int half = head_dim / 2;
  std::vector<float> inv(half);
  rope_inv_freq_ref(inv.data(), head_dim, kTheta);
  std::vector<double> ref64, naive, kern;
  std::vector<float> qf(T * row);  // for rope_ref
  for (int t = 0; t < T; ++t) {
    const bool cached = pos[t] >= 0 && pos[t] < max_tokens;
    for (int which = 0; which < 2; ++which) {  // 0 = q, 1 = k
      if (which == 1 && !cached) continue;
      const uint16_t* src = qkv.data() + t * ld_in + which * row;
      const uint16_t* out = which == 0 ? qo.data() + t * ld_q : kc.data() + pages.row_of(pos[t]) * row;
      for (int h = 0; h < n_heads; ++h)
        for (int j = 0; j < half; ++j) {
          // The angle is float32(pos) · inv_freq[j] in float32 (the model's definition).
          const float a = static_cast<float>(pos[t]) * inv[j];
          const double c = std::cos(static_cast<double>(a)), s = std::sin(static_cast<double>(a));
          const float cf = std::cos(a), sf = std::sin(a);
          const double x0 = bf16_to_f32(src[h * head_dim + j]);
          const double x1 = bf16_to_f32(src[h * head_dim + j + half]);
          ref64.push_back(x0 * c - x1 * s), ref64.push_back(x1 * c + x0 * s);
          const float f0 = static_cast<float>(x0), f1 = static_cast<float>(x1);
          naive.push_back(round_bf16(f0 * cf - f1 * sf));
          naive.push_back(round_bf16(f1 * cf + f0 * sf));
          kern.push_back(bf16_to_f32(out[h * head_dim + j]));
          kern.push_back(bf16_to_f32(out[h * head_dim + j + half]));
          if (which == 0)
            qf[t * row + h * head_dim + j] = f0, qf[t * row + h * head_dim + j + half] = f1;
        }
    }
  }
  char name[96];
  std::snprintf(name, sizeof name, "T=%d heads=%d hd=%d max_tokens=%lld%s", T, n_heads, head_dim,
                static_cast<long long>(max_tokens), in_place ? " in-place" : "");
  expect_2x_naive(name, kern, naive, ref64);

  // V rows copied bit for bit to the row the page table names; every other pool row (spare
  // pages included) still poison.
  std::vector<bool> used(pages.rows(), false);
  for (int t = 0; t < T; ++t)
    if (pos[t] >= 0 && pos[t] < max_tokens) {
      const int64_t r = pages.row_of(pos[t]);
      used[r] = true;
      for (int64_t i = 0; i < row; ++i)
        ASSERT_EQ(vc[r * row + i], qkv[t * ld_in + 2 * row + i]) << name << " v t=" << t;
    }
  for (int64_t p = 0; p < pages.rows(); ++p)
    if (!used[p])
      for (int64_t i = 0; i < row; ++i) {
        ASSERT_EQ(kc[p * row + i], 0x7fc0) << name << " k row " << p;
        ASSERT_EQ(vc[p * row + i], 0x7fc0) << name << " v row " << p;
      }

  // rope_ref (float32) on q: BF16 output rounding apart, the same function.
  std::vector<int32_t> pq = pos;
  rope_ref(qf.data(), pq.data(), T, n_heads, head_dim, kTheta);
  std::vector<double> qk, qr;
  for (int t = 0; t < T; ++t)
    for (int64_t i = 0; i < row; ++i)
      qk.push_back(bf16_to_f32(qo[t * ld_q + i])), qr.push_back(qf[t * row + i]);
  EXPECT_LT(rel_err(qk, qr), 1e-2) << name;
}

TEST(Rope, DecodeAndPrefillPositions) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_case({0}, 10, 128, 16, false, 1);
  run_case({911}, 10, 128, 1024, false, 2);
  run_case({8191}, 10, 128, 8192, false, 3);
  run_case({5, 6, 7, 8, 9}, 10, 128, 64, false, 4);
  run_case({3, 1, 4, 15, 9, 2, 6, 5}, 10, 128, 16, true, 5);
  run_case({100000, 7}, 10, 128, 8, false, 6);  // 100000 beyond the cache: q only
  run_case({-1, 2}, 3, 64, 4, false, 7);
  run_case({30, 0, 12}, 1, 16, 31, false, 8);
  run_case({65535, 123456}, 2, 256, 70000, false, 9, 64);
  run_case({31, 32, 33, 0, 63}, 10, 128, 64, false, 10, 32);
}

}  // namespace
}  // namespace dsocr::test
