// Vision attention on the GPU (kernels/vision_attention.cu) against a float64 evaluation with the
// 2×-naive rule (naive: BF16 inputs, FP32 scores / bias / softmax / P·V, one BF16 rounding of the
// output), and loosely against vision_attention_ref. Every block shape the launcher can pick
// (1, 2: 64- and 128-query blocks on mma.sync; 3, 4: one and two warpgroups on wgmma) runs on
// every case, as does the launcher's own choice.
// Large grids compare a subset of query rows (every row_step-th, plus the last) to keep the
// float64 evaluation short; every output element must be written (the output starts as NaN).
// Timing: --gtest_also_run_disabled_tests --gtest_filter='*Timing*'.
#include "kernels/vision_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gpu/decoder_test_util.h"
#include "kernels/parallel.h"

namespace dsocr::detail {
// Defined in kernels/vision_attention.cu: the launcher with a forced block shape (1..4, its
// pick_shape; 0 = the launcher's choice).
cudaError_t vision_attention_shape(const uint16_t* qkv, const float* rel_pos_h,
                                   const float* rel_pos_w, uint16_t* out, int64_t n_seq,
                                   int64_t n_tokens, int64_t grid_h, int64_t grid_w, int n_heads,
                                   int head_dim, cudaStream_t stream, int shape);
}  // namespace dsocr::detail

namespace dsocr::test {
namespace {

constexpr int kHd = 64;

struct Case {
  std::string name;
  int64_t n_seq, gh, gw;  // tokens = gh·gw (CLIP: gh = tokens, gw = 1)
  int n_heads;
  bool bias;
  float rel_range;   // rel-pos tables uniform in ±rel_range
  int64_t row_step;  // compare rows 0, row_step, 2·row_step, ... and the last
  int64_t n() const { return gh * gw; }
};

struct Inputs {
  std::vector<uint16_t> qkv;  // [n_seq, n, 3, n_heads, 64]
  std::vector<float> rh, rw;  // [2·gh − 1, 64], [2·gw − 1, 64]
};

Inputs make_inputs(const Case& c, uint64_t seed) {
  Rng rng(seed);
  Inputs in;
  in.qkv = random_bf16(rng, c.n_seq * c.n() * 3 * c.n_heads * kHd, -2.f, 2.f);
  if (c.bias) {
    in.rh = random_f32(rng, (2 * c.gh - 1) * kHd, -c.rel_range, c.rel_range);
    in.rw = random_f32(rng, (2 * c.gw - 1) * kHd, -c.rel_range, c.rel_range);
  }
  return in;
}

std::vector<int64_t> rows_of(const Case& c) {
  std::vector<int64_t> r;
  for (int64_t t = 0; t < c.n(); t += c.row_step) r.push_back(t);
  if (r.back() != c.n() - 1) r.push_back(c.n() - 1);
  return r;
}

// Attention for the given query rows of every sequence and head, as [seq][row][head][64]:
// ref64 in float64 (bias from q·bias_q_scale: 1 is the model, 1/8 and 0 are the mistakes the
// bias-dominated case must tell apart), naive in float32 with the output rounded to BF16.
void evaluate(const Case& c, const Inputs& in, const std::vector<int64_t>& rows,
              double bias_q_scale, std::vector<double>* ref64, std::vector<double>* naive) {
  const int64_t n = c.n(), H = c.n_heads, hd = H * kHd, ld = 3 * hd, nr = rows.size();
  const std::vector<float> x = widen(in.qkv);
  ref64->assign(c.n_seq * nr * hd, 0.0);
  if (naive) naive->assign(c.n_seq * nr * hd, 0.0);
  parallel_for(c.n_seq * nr * H, [&](int64_t b, int64_t e) {
    std::vector<double> sd(n), bh(c.gh), bw(c.gw);
    std::vector<float> sf(n), fh(c.gh), fw(c.gw);
    for (int64_t it = b; it < e; ++it) {
      const int64_t s = it / (nr * H), ri = it / H % nr, h = it % H, t = rows[ri];
      const float* xs = x.data() + s * n * ld;
      const float* q = xs + t * ld + h * kHd;
      if (c.bias) {
        const int64_t qh = t / c.gw, qw = t % c.gw;
        for (int64_t k = 0; k < c.gh; ++k) {
          const float* r = in.rh.data() + (qh - k + c.gh - 1) * kHd;
          double d = 0;
          float f = 0;
          for (int i = 0; i < kHd; ++i) d += static_cast<double>(q[i]) * r[i], f += q[i] * r[i];
          bh[k] = d * bias_q_scale, fh[k] = f;
        }
        for (int64_t k = 0; k < c.gw; ++k) {
          const float* r = in.rw.data() + (qw - k + c.gw - 1) * kHd;
          double d = 0;
          float f = 0;
          for (int i = 0; i < kHd; ++i) d += static_cast<double>(q[i]) * r[i], f += q[i] * r[i];
          bw[k] = d * bias_q_scale, fw[k] = f;
        }
      }
      double md = -INFINITY;
      float mf = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const float* k = xs + j * ld + hd + h * kHd;
        double d = 0;
        float f = 0;
        for (int i = 0; i < kHd; ++i) d += static_cast<double>(q[i]) * k[i], f += q[i] * k[i];
        sd[j] = d / 8, sf[j] = f * 0.125f;
        if (c.bias) sd[j] += bh[j / c.gw] + bw[j % c.gw], sf[j] += fh[j / c.gw] + fw[j % c.gw];
        md = std::max(md, sd[j]), mf = std::max(mf, sf[j]);
      }
      double ld_sum = 0;
      float lf = 0;
      for (int64_t j = 0; j < n; ++j)
        ld_sum += (sd[j] = std::exp(sd[j] - md)), lf += (sf[j] = std::exp(sf[j] - mf));
      double od[kHd] = {};
      float of[kHd] = {};
      for (int64_t j = 0; j < n; ++j) {
        const float* v = xs + j * ld + 2 * hd + h * kHd;
        for (int i = 0; i < kHd; ++i) od[i] += sd[j] * v[i], of[i] += sf[j] * v[i];
      }
      const int64_t o = ((s * nr + ri) * H + h) * kHd;
      for (int i = 0; i < kHd; ++i) {
        (*ref64)[o + i] = od[i] / ld_sum;
        if (naive) (*naive)[o + i] = round_bf16(of[i] / lf);
      }
    }
  });
}

std::vector<double> gather(const Case& c, const std::vector<uint16_t>& out,
                           const std::vector<int64_t>& rows) {
  const int64_t hd = c.n_heads * kHd;
  std::vector<double> g;
  for (int64_t s = 0; s < c.n_seq; ++s)
    for (int64_t t : rows)
      for (int64_t i = 0; i < hd; ++i) g.push_back(bf16_to_f32(out[(s * c.n() + t) * hd + i]));
  return g;
}

cudaError_t launch(const Case& c, const uint16_t* qkv, const float* rh, const float* rw,
                   uint16_t* out, int shape, cudaStream_t stream = nullptr) {
  if (shape < 0)
    return vision_attention(qkv, c.bias ? rh : nullptr, c.bias ? rw : nullptr, out, c.n_seq, c.n(),
                            c.gh, c.gw, c.n_heads, kHd, stream);
  return detail::vision_attention_shape(qkv, c.bias ? rh : nullptr, c.bias ? rw : nullptr, out,
                                        c.n_seq, c.n(), c.gh, c.gw, c.n_heads, kHd, stream, shape);
}

void run_case(const Case& c, uint64_t seed) {
  SCOPED_TRACE(c.name);
  const Inputs in = make_inputs(c, seed);
  const std::vector<int64_t> rows = rows_of(c);
  std::vector<double> ref64, naive;
  evaluate(c, in, rows, 1.0, &ref64, &naive);

  // vision_attention_ref on the widened inputs (whole output) where it is quick.
  std::vector<float> cpu;
  if (c.n() <= 2048) {
    const std::vector<float> x = widen(in.qkv);
    cpu.assign(c.n_seq * c.n() * c.n_heads * kHd, NAN);
    vision_attention_ref(x.data(), c.bias ? in.rh.data() : nullptr, c.bias ? in.rw.data() : nullptr,
                         cpu.data(), c.n_seq, c.n(), c.gh, c.gw, c.n_heads, kHd);
  }

  DevBuf<uint16_t> dqkv(in.qkv), dout(c.n_seq * c.n() * c.n_heads * kHd);
  DevBuf<float> drh(c.bias ? in.rh : std::vector<float>(1)),
      drw(c.bias ? in.rw : std::vector<float>(1));
  for (int shape : {1, 2, 3, 4, -1}) {  // -1: the public launcher's choice
    SCOPED_TRACE(testing::Message() << "shape " << shape);
    dout.poison();
    LAUNCH_OK(launch(c, dqkv.get(), drh.get(), drw.get(), dout.get(), shape));
    const std::vector<uint16_t> out = dout.download();
    int64_t bad = 0;
    for (uint16_t b : out) bad += !std::isfinite(bf16_to_f32(b));
    EXPECT_EQ(bad, 0) << "non-finite (unwritten?) output elements";
    expect_2x_naive(c.name + " shape " + std::to_string(shape), gather(c, out, rows), naive, ref64);
    if (!cpu.empty()) {
      const double e = rel_err(bf16_to_f64(out), to_f64(cpu));
      EXPECT_LT(e, 1e-2) << "vs vision_attention_ref";
    }
  }
}

TEST(VisionAttention, SamWindows14x14) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_case({"sam windows 3 x 14x14", 3, 14, 14, 12, true, 0.25f, 1}, 1);
}
TEST(VisionAttention, SamGlobal64x64) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_case({"sam global 64x64", 1, 64, 64, 12, true, 0.25f, 37}, 2);
}
TEST(VisionAttention, SamGlobal40x40) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_case({"sam global 40x40", 1, 40, 40, 12, true, 0.25f, 7}, 3);
}
TEST(VisionAttention, SamGlobal80x80) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_case({"sam global 80x80 (1280 px)", 1, 80, 80, 12, true, 0.25f, 53}, 4);
}
TEST(VisionAttention, NonSquareGrid) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_case({"grid 12x20, 2 sequences", 2, 12, 20, 12, true, 0.25f, 1}, 5);
  // grid_h != grid_w with a bias as large as BiasDominated's and a partial last query block.
  run_case({"grid 7x64, 2 sequences, large bias", 2, 7, 64, 12, true, 1.0f, 1}, 15);
}
TEST(VisionAttention, GridsWithTails) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_case({"grid 10x13", 1, 10, 13, 12, true, 0.25f, 1}, 6);
  run_case({"grid 9x1", 2, 9, 1, 3, true, 0.25f, 1}, 7);
  run_case({"grid 1x5", 1, 1, 5, 2, true, 0.25f, 1}, 8);
  run_case({"grid 37x29", 1, 37, 29, 4, true, 0.25f, 3}, 9);
}
TEST(VisionAttention, Clip) {
  DSOCR_SKIP_WITHOUT_GPU();
  run_case({"clip 257 tokens, 2 sequences", 2, 257, 1, 16, false, 0.f, 1}, 10);
  run_case({"clip 101 tokens", 1, 101, 1, 16, false, 0.f, 1}, 11);
  run_case({"clip 401 tokens", 1, 401, 1, 16, false, 0.f, 1}, 12);
  run_case({"clip 65 tokens", 3, 65, 1, 16, false, 0.f, 1}, 13);
  run_case({"no bias, 12 heads, 4096 tokens", 1, 4096, 1, 12, false, 0.f, 41}, 16);
  run_case({"no bias, 12 heads, 130 tokens", 1, 130, 1, 12, false, 0.f, 1}, 17);
  run_case({"grid 12x20, 16 heads", 1, 12, 20, 16, true, 0.25f, 1}, 18);
}

// The bias is ~4x the q·k/8 term: a kernel that dropped it or took q/8 for it would be far off.
// The test first shows that those mistakes move the float64 answer by much more than the
// tolerance, then runs the kernel.
TEST(VisionAttention, BiasDominated) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Case c{"bias-dominated 24x24", 1, 24, 24, 12, true, 1.0f, 5};
  const Inputs in = make_inputs(c, 14);
  const std::vector<int64_t> rows = rows_of(c);
  std::vector<double> ref64, scaled_q, no_bias;
  evaluate(c, in, rows, 1.0, &ref64, nullptr);
  evaluate(c, in, rows, 0.125, &scaled_q, nullptr);
  evaluate(c, in, rows, 0.0, &no_bias, nullptr);
  std::printf("  bias-dominated: error of a scaled-q bias %.3f, of no bias %.3f\n",
              rel_err(scaled_q, ref64), rel_err(no_bias, ref64));
  EXPECT_GT(rel_err(scaled_q, ref64), 0.3);
  EXPECT_GT(rel_err(no_bias, ref64), 0.3);
  run_case(c, 14);
}

TEST(VisionAttention, RejectsUnsupported) {
  // The launcher validates before touching the device: no GPU needed.
  auto* qkv = reinterpret_cast<const uint16_t*>(uintptr_t{1} << 20);
  auto* out = reinterpret_cast<uint16_t*>(uintptr_t{1} << 30);
  auto* r = reinterpret_cast<const float*>(uintptr_t{1} << 40);
  const cudaError_t inv = cudaErrorInvalidValue;
  EXPECT_EQ(vision_attention(qkv, nullptr, nullptr, out, 1, 10, 1, 1, 16, 128, nullptr), inv);
  EXPECT_EQ(vision_attention(qkv, r, r, out, 1, 10, 2, 4, 12, 64, nullptr), inv);  // 2·4 != 10
  EXPECT_EQ(vision_attention(qkv, r, r, out, 1, 129 * 2, 129, 2, 12, 64, nullptr), inv);
  EXPECT_EQ(vision_attention(qkv, r, nullptr, out, 1, 10, 2, 5, 12, 64, nullptr), inv);
  EXPECT_EQ(vision_attention(qkv, nullptr, nullptr, nullptr, 1, 10, 1, 1, 12, 64, nullptr), inv);
  EXPECT_EQ(vision_attention(qkv + 1, nullptr, nullptr, out, 1, 10, 1, 1, 12, 64, nullptr), inv);
  EXPECT_EQ(vision_attention(qkv, nullptr, nullptr, const_cast<uint16_t*>(qkv) + 64, 1, 10, 1, 1,
                             12, 64, nullptr),
            inv);  // out overlaps qkv
  EXPECT_EQ(vision_attention(qkv, nullptr, nullptr, out, 0, 10, 1, 1, 12, 64, nullptr), inv);
}

// µs per call (median of 20 after 5 warm-ups, CUDA events) for the model's shapes.
TEST(VisionAttention, DISABLED_Timing) {
  DSOCR_SKIP_WITHOUT_GPU();
  const Case cases[] = {
      {"sam global 64x64 (1024 view)", 1, 64, 64, 12, true, 0.25f, 1},
      {"sam global 40x40 (640 tile)", 1, 40, 40, 12, true, 0.25f, 1},
      {"sam global 40x40 x6 tiles", 6, 40, 40, 12, true, 0.25f, 1},
      {"sam global 80x80 (1280 view)", 1, 80, 80, 12, true, 0.25f, 1},
      {"sam windows 25 x 14x14 (1024 view)", 25, 14, 14, 12, true, 0.25f, 1},
      {"sam windows 9 x 14x14 (640 tile)", 9, 14, 14, 12, true, 0.25f, 1},
      {"clip 257 (1024 view)", 1, 257, 1, 16, false, 0.f, 1},
      {"clip 101 x6 (640 tiles)", 6, 101, 1, 16, false, 0.f, 1},
      {"clip 401 (1280 view)", 1, 401, 1, 16, false, 0.f, 1},
      {"no-bias 4096 (FA2 reference point)", 1, 4096, 1, 12, false, 0.f, 1},
  };
  cudaEvent_t e0, e1;
  ASSERT_EQ(cudaEventCreate(&e0), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&e1), cudaSuccess);
  for (const Case& c : cases) {
    const Inputs in = make_inputs(c, 99);
    DevBuf<uint16_t> dqkv(in.qkv), dout(c.n_seq * c.n() * c.n_heads * kHd);
    DevBuf<float> drh(c.bias ? in.rh : std::vector<float>(1)),
        drw(c.bias ? in.rw : std::vector<float>(1));
    const double flop = 4.0 * c.n_seq * c.n_heads * c.n() * c.n() * kHd;
    for (int shape : {1, 2, 3, 4, -1}) {
      for (int i = 0; i < 5; ++i)
        ASSERT_EQ(launch(c, dqkv.get(), drh.get(), drw.get(), dout.get(), shape), cudaSuccess);
      std::vector<float> ms;
      for (int i = 0; i < 20; ++i) {
        ASSERT_EQ(cudaEventRecord(e0), cudaSuccess);
        ASSERT_EQ(launch(c, dqkv.get(), drh.get(), drw.get(), dout.get(), shape), cudaSuccess);
        ASSERT_EQ(cudaEventRecord(e1), cudaSuccess);
        ASSERT_EQ(cudaEventSynchronize(e1), cudaSuccess);
        float t = 0;
        ASSERT_EQ(cudaEventElapsedTime(&t, e0, e1), cudaSuccess);
        ms.push_back(t);
      }
      std::sort(ms.begin(), ms.end());
      const double us = 1e3 * ms[ms.size() / 2];
      std::printf("  timing %-38s shape %-4s %9.1f us  %6.1f TFLOP/s\n", c.name.c_str(),
                  shape < 0 ? "auto" : std::to_string(shape).c_str(), us,
                  flop / (us * 1e-6) / 1e12);
    }
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}

}  // namespace
}  // namespace dsocr::test
