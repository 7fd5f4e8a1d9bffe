// The DeepEncoder's GPU kernels other than attention (kernels/layernorm.h, conv2d.h,
// vision_misc.h) against float64 (the 2×-naive rule, decoder_test_util.h) or, for the pure copies,
// exactly against CPU loops and the CPU references (window_partition_ref, assemble_image_embeds),
// at the model's shapes and at odd ones. Outputs are NaN-poisoned first (DevBuf).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gpu/decoder_test_util.h"
#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "kernels/layernorm.h"
#include "kernels/vision_attention.h"  // window_partition_ref
#include "kernels/vision_misc.h"
#include "runtime/assemble.h"
#include "runtime/preprocess.h"  // normalize_pixel

namespace dsocr::test {
namespace {

std::string str(const testing::Message& m) {
  return m.GetString();
}

// ---- LayerNorm ----

// y = LN(x) in float64 (biased variance, two passes).
void ln64(const double* x, int dim, const std::vector<uint16_t>& w, const std::vector<uint16_t>& b,
          double eps, double* y) {
  double s = 0;
  for (int i = 0; i < dim; ++i) s += x[i];
  const double mu = s / dim;
  double ss = 0;
  for (int i = 0; i < dim; ++i) ss += (x[i] - mu) * (x[i] - mu);
  const double r = 1 / std::sqrt(ss / dim + eps);
  for (int i = 0; i < dim; ++i) y[i] = (x[i] - mu) * r * bf16_to_f32(w[i]) + bf16_to_f32(b[i]);
}
// The naive FP32 evaluation: sequential float sums (mean, then squared deviations), float math.
std::vector<float> ln_naive(const std::vector<float>& x, int dim, const std::vector<uint16_t>& w,
                            const std::vector<uint16_t>& b, float eps) {
  std::vector<float> y(x.size());
  for (size_t r = 0; r < x.size() / dim; ++r) {
    const float* xr = &x[r * dim];
    float s = 0.f;
    for (int i = 0; i < dim; ++i) s += xr[i];
    const float mean = s / static_cast<float>(dim);
    float ss = 0.f;
    for (int i = 0; i < dim; ++i) ss += (xr[i] - mean) * (xr[i] - mean);
    const float rstd = 1.f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (int i = 0; i < dim; ++i)
      y[r * dim + i] = (xr[i] - mean) * rstd * bf16_to_f32(w[i]) + bf16_to_f32(b[i]);
  }
  return y;
}

struct LnParams {
  std::vector<uint16_t> w, b;
  LnParams(Rng& rng, int dim) : w(random_bf16(rng, dim, 0.5f, 1.5f)), b(random_bf16(rng, dim)) {}
};

// BF16 -> BF16, FP32 -> FP32, FP32 -> BF16; padded leading dimensions (padding must stay poison).
void layernorm_case(int64_t rows, int dim, int64_t pad, int form, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "rows=" << rows << " dim=" << dim << " form=" << form);
  Rng rng(seed);
  const int64_t ld = dim + pad;
  const float eps = form == 0 ? 1e-6f : 1e-5f;
  LnParams p(rng, dim);
  DevBuf<uint16_t> dw(p.w), db(p.b);
  // Rows with an offset and a spread, as the residual streams have.
  std::vector<float> xf(rows * ld);
  for (int64_t r = 0; r < rows; ++r) {
    const float off = rng.uniform(-3.f, 3.f), sc = rng.uniform(0.2f, 4.f);
    for (int64_t c = 0; c < ld; ++c) xf[r * ld + c] = off + sc * rng.uniform(-1.f, 1.f);
  }
  std::vector<uint16_t> x16(xf.size());
  for (size_t i = 0; i < xf.size(); ++i) x16[i] = f32_to_bf16(xf[i]);
  if (form == 0)
    for (size_t i = 0; i < xf.size(); ++i) xf[i] = bf16_to_f32(x16[i]);
  DevBuf<uint16_t> dx16(x16), dy16(rows * ld);
  DevBuf<float> dx32(xf), dy32(rows * ld);
  if (form == 0)
    LAUNCH_OK(
        layernorm(dx16.get(), ld, dw.get(), db.get(), dy16.get(), ld, rows, dim, eps, nullptr));
  else if (form == 1)
    LAUNCH_OK(
        layernorm(dx32.get(), ld, dw.get(), db.get(), dy32.get(), ld, rows, dim, eps, nullptr));
  else
    LAUNCH_OK(
        layernorm(dx32.get(), ld, dw.get(), db.get(), dy16.get(), ld, rows, dim, eps, nullptr));
  const std::vector<uint16_t> y16 = dy16.download();
  const std::vector<float> y32 = dy32.download();
  std::vector<double> kern, naive, ref, row64(dim), x64(dim);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> xr(xf.begin() + r * ld, xf.begin() + r * ld + dim);
    for (int c = 0; c < dim; ++c) x64[c] = xr[c];
    ln64(x64.data(), dim, p.w, p.b, eps, row64.data());
    const std::vector<float> nv = ln_naive(xr, dim, p.w, p.b, eps);
    for (int c = 0; c < dim; ++c) {
      ref.push_back(row64[c]);
      naive.push_back(form == 1 ? nv[c] : round_bf16(nv[c]));
      kern.push_back(form == 1 ? y32[r * ld + c] : bf16_to_f32(y16[r * ld + c]));
    }
    if (pad) {
      if (form == 1)
        EXPECT_TRUE(std::isnan(y32[r * ld + dim]));
      else
        EXPECT_EQ(y16[r * ld + dim], kPoison32 & 0xffffu);
    }
  }
  const char* names[] = {"layernorm bf16->bf16", "layernorm f32->f32", "layernorm f32->bf16"};
  expect_2x_naive(str(testing::Message() << names[form] << " rows=" << rows << " dim=" << dim),
                  kern, naive, ref);
}

TEST(GpuLayerNorm, Forms) {
  DSOCR_SKIP_WITHOUT_GPU();
  layernorm_case(4096, 768, 0, 0, 1);  // SAM norm1/norm2, 1024² view
  layernorm_case(1600, 256, 0, 0, 2);  // neck LayerNorm2d (NHWC), 640² tile
  layernorm_case(514, 1024, 0, 1, 3);  // CLIP pre_layrnorm, 2 views of 257 tokens
  layernorm_case(257, 1024, 0, 2, 4);  // CLIP layer_norm1 of layer 0
  layernorm_case(7, 40, 8, 0, 5);      // odd: short rows, padded ld, rows % 4 != 0
  layernorm_case(1, 1000, 24, 1, 6);
  layernorm_case(33, 8, 0, 2, 7);
}

// h += delta (BF16 h: one rounding; FP32 h), then y = LN(h) (or the add alone).
void add_layernorm_case(int64_t rows, int dim, bool f32, bool add_only, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "rows=" << rows << " dim=" << dim << " f32=" << f32);
  Rng rng(seed);
  const float eps = f32 ? 1e-5f : 1e-6f;
  LnParams p(rng, dim);
  DevBuf<uint16_t> dw(p.w), db(p.b), dy(rows * dim);
  std::vector<uint16_t> d16 = random_bf16(rng, rows * dim, -2.f, 2.f);
  std::vector<float> h32 = random_f32(rng, rows * dim, -8.f, 8.f);
  std::vector<uint16_t> h16(h32.size());
  for (size_t i = 0; i < h32.size(); ++i) h16[i] = f32_to_bf16(h32[i]);
  if (!f32)
    for (size_t i = 0; i < h32.size(); ++i) h32[i] = bf16_to_f32(h16[i]);
  DevBuf<uint16_t> dd(d16), dh16(h16);
  DevBuf<float> dh32(h32);
  const uint16_t* w = add_only ? nullptr : dw.get();
  const uint16_t* b = add_only ? nullptr : db.get();
  uint16_t* y = add_only ? nullptr : dy.get();
  if (f32)
    LAUNCH_OK(add_layernorm(dh32.get(), dim, dd.get(), dim, w, b, y, dim, rows, dim, eps, nullptr));
  else
    LAUNCH_OK(add_layernorm(dh16.get(), dim, dd.get(), dim, w, b, y, dim, rows, dim, eps, nullptr));
  const std::vector<uint16_t> ho16 = dh16.download(), yo = dy.download();
  const std::vector<float> ho32 = dh32.download();
  std::vector<double> hk, hn, hr, yk, yn, yr, row64(dim), sum64(dim);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> hsum(dim);
    for (int c = 0; c < dim; ++c) {
      const size_t i = r * dim + c;
      const double d = bf16_to_f32(d16[i]);
      sum64[c] = h32[i] + d;
      const float s = h32[i] + static_cast<float>(d);
      hsum[c] = f32 ? s : round_bf16(s);
      hr.push_back(sum64[c]);
      hn.push_back(hsum[c]);
      hk.push_back(f32 ? ho32[i] : bf16_to_f32(ho16[i]));
    }
    if (add_only) continue;
    ln64(sum64.data(), dim, p.w, p.b, eps, row64.data());
    const std::vector<float> nv = ln_naive(hsum, dim, p.w, p.b, eps);
    for (int c = 0; c < dim; ++c) {
      yr.push_back(row64[c]);
      yn.push_back(round_bf16(nv[c]));
      yk.push_back(bf16_to_f32(yo[r * dim + c]));
    }
  }
  const std::string tag = std::string(f32 ? "add_layernorm f32 h" : "add_layernorm bf16 h") +
                          (add_only ? " (add only)" : "");
  expect_2x_naive(tag + ": h", hk, hn, hr);
  if (add_only) {
    EXPECT_EQ(yo[0], kPoison32 & 0xffffu);  // no norm output written
  } else {
    expect_2x_naive(tag + ": y", yk, yn, yr);
  }
}

TEST(GpuLayerNorm, AddLayerNorm) {
  DSOCR_SKIP_WITHOUT_GPU();
  add_layernorm_case(1600, 768, false, false, 11);  // SAM residual + norm2
  add_layernorm_case(257, 1024, true, false, 12);   // CLIP h + out_proj, layer_norm2
  add_layernorm_case(514, 1024, true, true, 13);    // last CLIP layer: add only
  add_layernorm_case(5, 24, false, false, 14);      // odd
}

// Window map of a [n, g, g] token grid: windowed row -> token row + 1 (0 = padding), through the
// CPU reference window_partition_ref on a 1-channel map of row indices.
std::vector<int64_t> window_rows(int64_t n, int g, int win) {
  std::vector<float> idx(n * g * g);
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<float>(i + 1);
  const int64_t nw = n_windows_side(g, win);
  std::vector<float> out(n * nw * nw * win * win);
  window_partition_ref(idx.data(), out.data(), n, g, g, 1, win);
  return std::vector<int64_t>(out.begin(), out.end());
}

void partition_case(int64_t n, int g, int win, int dim, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "n=" << n << " g=" << g << " win=" << win << " dim=" << dim);
  Rng rng(seed);
  LnParams p(rng, dim);
  const float eps = 1e-6f;
  const int64_t N = n * g * g;
  const std::vector<int64_t> map = window_rows(n, g, win);
  const int64_t Nw = static_cast<int64_t>(map.size());
  std::vector<uint16_t> x = random_bf16(rng, N * dim, -3.f, 3.f);
  DevBuf<uint16_t> dw(p.w), db(p.b), dx(x), dwin(Nw * dim);
  LAUNCH_OK(layernorm_window_partition(dx.get(), dw.get(), db.get(), dwin.get(), n, g, win, dim,
                                       eps, nullptr));
  const std::vector<uint16_t> out = dwin.download();
  std::vector<double> kern, naive, ref, x64(dim), y64(dim);
  int64_t pad_rows = 0;
  for (int64_t r = 0; r < Nw; ++r) {
    if (map[r] == 0) {  // padded token: exact zeros
      ++pad_rows;
      for (int c = 0; c < dim; ++c) ASSERT_EQ(out[r * dim + c], 0u) << "padded row " << r;
      continue;
    }
    const int64_t t = map[r] - 1;
    std::vector<float> xr(dim);
    for (int c = 0; c < dim; ++c) x64[c] = xr[c] = bf16_to_f32(x[t * dim + c]);
    ln64(x64.data(), dim, p.w, p.b, eps, y64.data());
    const std::vector<float> nv = ln_naive(xr, dim, p.w, p.b, eps);
    for (int c = 0; c < dim; ++c) {
      ref.push_back(y64[c]);
      naive.push_back(round_bf16(nv[c]));
      kern.push_back(bf16_to_f32(out[r * dim + c]));
    }
  }
  EXPECT_EQ(pad_rows, Nw - N);
  expect_2x_naive(str(testing::Message() << "layernorm_window_partition g=" << g << " win=" << win),
                  kern, naive, ref);

  // The inverse with the residual and norm2: x = bf16(x + unpartition(windows)), y = LN(x).
  // Padded window rows hold garbage that must be dropped.
  std::vector<uint16_t> wv = random_bf16(rng, Nw * dim, -1.f, 1.f);
  for (int64_t r = 0; r < Nw; ++r)
    if (map[r] == 0) wv[r * dim] = 0x7fc0;  // NaN in a padded row: must not leak
  DevBuf<uint16_t> dwv(wv), dy(N * dim);
  dx.upload(x);
  LAUNCH_OK(add_window_unpartition_layernorm(dx.get(), dwv.get(), dw.get(), db.get(), dy.get(), n,
                                             g, win, dim, eps, nullptr));
  const std::vector<uint16_t> xo = dx.download(), yo = dy.download();
  std::vector<int64_t> inv(N);
  for (int64_t r = 0; r < Nw; ++r)
    if (map[r]) inv[map[r] - 1] = r;
  std::vector<double> hk, hn, hr, yk, yn, yr;
  for (int64_t t = 0; t < N; ++t) {
    std::vector<float> hs(dim);
    for (int c = 0; c < dim; ++c) {
      const double s = double(bf16_to_f32(x[t * dim + c])) + bf16_to_f32(wv[inv[t] * dim + c]);
      x64[c] = s;
      hs[c] = round_bf16(static_cast<float>(s));
      hr.push_back(s);
      hn.push_back(hs[c]);
      hk.push_back(bf16_to_f32(xo[t * dim + c]));
    }
    ln64(x64.data(), dim, p.w, p.b, eps, y64.data());
    const std::vector<float> nv = ln_naive(hs, dim, p.w, p.b, eps);
    for (int c = 0; c < dim; ++c) {
      yr.push_back(y64[c]);
      yn.push_back(round_bf16(nv[c]));
      yk.push_back(bf16_to_f32(yo[t * dim + c]));
    }
  }
  expect_2x_naive("add_window_unpartition_layernorm: x", hk, hn, hr);
  expect_2x_naive("add_window_unpartition_layernorm: y", yk, yn, yr);
}

TEST(GpuLayerNorm, WindowPartitionFused) {
  DSOCR_SKIP_WITHOUT_GPU();
  partition_case(2, 40, 14, 768, 21);  // 640² tiles: 40 -> 42, 9 windows each
  partition_case(1, 64, 14, 768, 22);  // 1024²: 64 -> 70, 25 windows
  partition_case(3, 5, 3, 16, 23);     // odd
  partition_case(1, 14, 14, 8, 24);    // no padding
}

TEST(GpuLayerNorm, RejectsBadArguments) {
  DSOCR_SKIP_WITHOUT_GPU();
  DevBuf<uint16_t> a(4096), w(1024);
  EXPECT_EQ(layernorm(a.get(), 12, w.get(), w.get(), a.get(), 12, 2, 12, 1e-6f, nullptr),
            cudaErrorInvalidValue);  // dim % 8
  EXPECT_EQ(layernorm(a.get(), 2048, w.get(), w.get(), a.get(), 2048, 1, 2048, 1e-6f, nullptr),
            cudaErrorInvalidValue);  // dim > 1024
  EXPECT_EQ(layernorm(a.get() + 1, 64, w.get(), w.get(), a.get(), 64, 2, 64, 1e-6f, nullptr),
            cudaErrorInvalidValue);  // misaligned
  EXPECT_EQ(
      add_layernorm(a.get(), 64, a.get(), 64, w.get(), nullptr, a.get(), 64, 2, 64, 1e-6f, nullptr),
      cudaErrorInvalidValue);  // half a norm
}

// ---- Convolutions: im2col (exact) and im2col + GEMM (2×-naive against float64) ----

struct GemmWs {
  void* p = nullptr;
  GemmRunner g;
  GemmWs() {
    EXPECT_EQ(cudaMalloc(&p, GemmRunner::kWorkspaceBytes), cudaSuccess);
    EXPECT_EQ(g.init(p, GemmRunner::kWorkspaceBytes), CUBLAS_STATUS_SUCCESS);
  }
  ~GemmWs() { cudaFree(p); }
};

void conv_case(const Conv2dShape& s, bool full_check, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "n=" << s.n << " " << s.h << "x" << s.w << "x" << s.c_in
                                  << " -> " << s.c_out << " k" << s.kernel << " s" << s.stride
                                  << " p" << s.pad);
  Rng rng(seed);
  const int64_t oh = s.out_h(), ow = s.out_w(), M = s.n * oh * ow, K = s.c_in * s.kernel * s.kernel;
  std::vector<uint16_t> in = random_bf16(rng, s.n * s.h * s.w * s.c_in, -2.f, 2.f);
  std::vector<uint16_t> w = random_bf16(rng, s.c_out * K, -0.05f, 0.05f);
  DevBuf<uint16_t> din(in), dw(w), dcol(M * K), dout(M * s.c_out);
  LAUNCH_OK(im2col_nhwc_bf16(din.get(), dcol.get(), s, nullptr));
  const std::vector<uint16_t> col = dcol.download();
  int64_t bad = 0;
  for (int64_t m = 0; m < M && bad < 5; ++m) {
    const int64_t img = m / (oh * ow), oy = (m % (oh * ow)) / ow, ox = m % ow;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t ci = k / (s.kernel * s.kernel), ky = (k / s.kernel) % s.kernel,
                    kx = k % s.kernel;
      const int64_t iy = oy * s.stride + ky - s.pad, ix = ox * s.stride + kx - s.pad;
      const uint16_t want = (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w)
                                ? in[((img * s.h + iy) * s.w + ix) * s.c_in + ci]
                                : uint16_t{0};
      if (col[m * K + k] != want) {
        ADD_FAILURE() << "col[" << m << ", " << k << "] = " << col[m * K + k] << ", want " << want;
        ++bad;
      }
    }
  }
  if (!full_check) return;
  GemmWs ws;
  GemmArgs a;
  a.m = M, a.n = s.c_out, a.k = K, a.a = dcol.get(), a.lda = K, a.w = dw.get(), a.ldw = K;
  a.out = dout.get(), a.ldo = s.c_out;
  ASSERT_EQ(ws.g.run(a, nullptr), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> out = dout.download();
  // Naive: conv2d_nhwc_ref (FP32) rounded once; float64 from the same col.
  std::vector<float> inf(in.size()), nv(M * s.c_out);
  for (size_t i = 0; i < in.size(); ++i) inf[i] = bf16_to_f32(in[i]);
  conv2d_nhwc_ref(inf.data(), w.data(), nullptr, nv.data(), s);
  std::vector<double> kern, naive, ref, wf(w.size());
  for (size_t i = 0; i < w.size(); ++i) wf[i] = bf16_to_f32(w[i]);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t co = 0; co < s.c_out; ++co) {
      double acc = 0;
      const uint16_t* cr = &col[m * K];
      const double* wr = &wf[co * K];
      for (int64_t k = 0; k < K; ++k) acc += double(bf16_to_f32(cr[k])) * wr[k];
      ref.push_back(acc);
      naive.push_back(round_bf16(nv[m * s.c_out + co]));
      kern.push_back(bf16_to_f32(out[m * s.c_out + co]));
    }
  expect_2x_naive(str(testing::Message() << "conv " << s.c_in << "->" << s.c_out << " k" << s.kernel
                                         << " s" << s.stride << " (im2col + GEMM)"),
                  kern, naive, ref);
}

TEST(GpuConv, Im2colAndGemm) {
  DSOCR_SKIP_WITHOUT_GPU();
  conv_case({1, 40, 40, 256, 256, 3, 1, 1}, true, 31);   // neck.2 at a 640² tile
  conv_case({2, 40, 40, 256, 512, 3, 2, 1}, true, 32);   // net_2, two tiles
  conv_case({1, 32, 32, 512, 1024, 3, 2, 1}, true, 33);  // net_3 at 1024²
  conv_case({1, 64, 64, 256, 256, 3, 1, 1}, false, 34);  // neck.2 at 1024² (copy only)
  conv_case({2, 7, 5, 8, 16, 3, 2, 1}, true, 35);        // odd grid, ragged stride-2 edge
  conv_case({1, 6, 6, 8, 8, 5, 1, 2}, true, 36);         // k5
  EXPECT_EQ(im2col_nhwc_bf16(nullptr, nullptr, Conv2dShape{1, 4, 4, 3, 8, 3, 1, 1}, nullptr),
            cudaErrorInvalidValue);  // 27 % 8
}

PixelLut pixel_lut() {
  PixelLut lut;
  for (int i = 0; i < 256; ++i) lut.v[i] = f32_to_bf16(normalize_pixel(static_cast<uint8_t>(i)));
  return lut;
}

// Patch embed: normalising im2col (exact), then GEMM (FP32 out) + bias + pos (2×-naive).
void patch_case(int64_t n, int64_t S, bool full_check, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "n=" << n << " S=" << S);
  Rng rng(seed);
  const int64_t g = S / 16, P = g * g, M = n * P, D = 768;
  std::vector<uint8_t> px(n * S * S * 3);
  for (auto& v : px) v = static_cast<uint8_t>(rng.below(256));
  const PixelLut lut = pixel_lut();
  DevBuf<uint8_t> dpx(px.size());
  ASSERT_EQ(cudaMemcpy(dpx.get(), px.data(), px.size(), cudaMemcpyHostToDevice), cudaSuccess);
  DevBuf<uint16_t> dcol(M * 768);
  LAUNCH_OK(patch_im2col_u8(dpx.get(), lut, dcol.get(), n, S, nullptr));
  const std::vector<uint16_t> col = dcol.download();
  for (int64_t m = 0, bad = 0; m < M && bad < 5; ++m) {
    const int64_t img = m / P, py = (m % P) / g, px0 = m % g;
    for (int k = 0; k < 768; ++k) {
      const int c = k / 256, ky = (k / 16) % 16, kx = k % 16;
      const uint16_t want = lut.v[px[((img * S + py * 16 + ky) * S + px0 * 16 + kx) * 3 + c]];
      if (col[m * 768 + k] != want) {
        ADD_FAILURE() << "col[" << m << ", " << k << "]";
        ++bad;
      }
    }
  }
  if (!full_check) return;
  std::vector<uint16_t> w = random_bf16(rng, D * 768, -0.06f, 0.06f), b = random_bf16(rng, D);
  std::vector<float> pos = random_f32(rng, P * D, -0.5f, 0.5f);
  DevBuf<uint16_t> dw(w), db(b), dx(M * D);
  DevBuf<float> dacc(M * D), dpos(pos);
  GemmWs ws;
  GemmArgs a;
  a.m = M, a.n = D, a.k = 768, a.a = dcol.get(), a.lda = 768, a.w = dw.get(), a.ldw = 768;
  a.out = dacc.get(), a.ldo = D, a.out_f32 = true;
  ASSERT_EQ(ws.g.run(a, nullptr), CUBLAS_STATUS_SUCCESS);
  LAUNCH_OK(patch_bias_pos(dacc.get(), db.get(), dpos.get(), dx.get(), n, P, D, nullptr));
  const std::vector<uint16_t> x = dx.download();
  // Naive: patch_embed_ref on the normalised pixels (FP32), + pos, one rounding.
  std::vector<float> pf(px.size()), nv(M * D);
  for (size_t i = 0; i < px.size(); ++i) pf[i] = bf16_to_f32(lut.v[px[i]]);
  patch_embed_ref(pf.data(), w.data(), b.data(), nv.data(), n, S);
  std::vector<double> kern, naive, ref, wf(w.size());
  for (size_t i = 0; i < w.size(); ++i) wf[i] = bf16_to_f32(w[i]);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t d = 0; d < D; ++d) {
      double acc = bf16_to_f32(b[d]) + double(pos[(m % P) * D + d]);
      for (int k = 0; k < 768; ++k) acc += double(bf16_to_f32(col[m * 768 + k])) * wf[d * 768 + k];
      ref.push_back(acc);
      naive.push_back(round_bf16(nv[m * D + d] + pos[(m % P) * D + d]));
      kern.push_back(bf16_to_f32(x[m * D + d]));
    }
  expect_2x_naive(str(testing::Message() << "patch embed + pos, S=" << S), kern, naive, ref);
}

TEST(GpuConv, PatchEmbed) {
  DSOCR_SKIP_WITHOUT_GPU();
  patch_case(1, 640, true, 41);
  patch_case(2, 128, true, 42);
  patch_case(1, 1024, false, 43);
  patch_case(3, 16, true, 44);  // one patch per view
}

// ---- Glue: CLIP embeddings, CLIP -> projector input, assembly (exact) ----

TEST(GpuVisionMisc, ClipEmbedAndFeat) {
  DSOCR_SKIP_WITHOUT_GPU();
  Rng rng(51);
  for (auto [n, P, dim] :
       {std::tuple<int64_t, int64_t, int>{2, 100, 1024}, {1, 256, 1024}, {3, 5, 16}}) {
    SCOPED_TRACE(testing::Message() << "n=" << n << " P=" << P << " dim=" << dim);
    const int64_t ld = 2 * dim, L = P + 1;  // SAM tokens in the projector input's right half
    std::vector<uint16_t> feat = random_bf16(rng, n * P * ld), cls = random_bf16(rng, dim);
    std::vector<float> pos = random_f32(rng, L * dim);
    DevBuf<uint16_t> dfeat(feat), dcls(cls);
    DevBuf<float> dpos(pos), dh(n * L * dim);
    LAUNCH_OK(
        clip_embed(dfeat.get() + dim, ld, dcls.get(), dpos.get(), dh.get(), n, P, dim, nullptr));
    std::vector<float> h = dh.download();
    for (int64_t v = 0; v < n; ++v)
      for (int64_t t = 0; t < L; ++t)
        for (int c = 0; c < dim; ++c) {
          const float s =
              t == 0 ? bf16_to_f32(cls[c]) : bf16_to_f32(feat[(v * P + t - 1) * ld + dim + c]);
          ASSERT_EQ(h[(v * L + t) * dim + c], s + pos[t * dim + c]) << v << " " << t << " " << c;
        }
    // CLIP output (minus CLS) into the left half; the right half stays as it was.
    h = random_f32(rng, h.size(), -4.f, 4.f);
    dh.upload(h);
    LAUNCH_OK(clip_to_feat(dh.get(), dfeat.get(), ld, n, P, dim, nullptr));
    const std::vector<uint16_t> f = dfeat.download();
    for (int64_t r = 0; r < n * P; ++r)
      for (int c = 0; c < dim; ++c) {
        const int64_t v = r / P, p = r % P;
        ASSERT_EQ(f[r * ld + c], f32_to_bf16(h[(v * L + 1 + p) * dim + c]));
        ASSERT_EQ(f[r * ld + dim + c], feat[r * ld + dim + c]);
      }
  }
}

// Against runtime/assemble.cpp (the CPU path): global view alone, and tiles + global.
TEST(GpuVisionMisc, AssembleMatchesCpu) {
  DSOCR_SKIP_WITHOUT_GPU();
  Rng rng(61);
  const int dim = 1280;
  for (auto [g, t, w_t, h_t] : {std::tuple<int, int, int, int>{16, 10, 2, 3},
                                {8, 10, 1, 1},
                                {16, 10, 3, 1},
                                {3, 2, 1, 2}}) {
    SCOPED_TRACE(testing::Message() << "g=" << g << " tiles " << w_t << "x" << h_t);
    const bool tiled = w_t > 1 || h_t > 1;
    const int n_tiles = tiled ? w_t * h_t : 0;
    std::vector<uint16_t> pg = random_bf16(rng, size_t(g) * g * dim),
                          pt = random_bf16(rng, size_t(n_tiles) * t * t * dim + 8),
                          nl = random_bf16(rng, dim), sep = random_bf16(rng, dim);
    const int64_t rows = image_embed_rows(g, t, w_t, h_t);
    std::vector<float> want(rows * dim);
    std::vector<float> gf(pg.size()), tf(pt.size());
    for (size_t i = 0; i < pg.size(); ++i) gf[i] = bf16_to_f32(pg[i]);
    for (size_t i = 0; i < pt.size(); ++i) tf[i] = bf16_to_f32(pt[i]);
    assemble_image_embeds(gf.data(), g, tiled ? tf.data() : nullptr, t, w_t, h_t, nl.data(),
                          sep.data(), want.data(), dim);
    DevBuf<uint16_t> dg(pg), dt(pt), dnl(nl), dsep(sep), dout(rows * dim);
    int64_t local = 0;
    if (tiled) {
      LAUNCH_OK(
          assemble_embeds(dt.get(), t, w_t, h_t, dnl.get(), nullptr, dout.get(), dim, nullptr));
      local = int64_t{h_t} * t * (int64_t{w_t} * t + 1);
    }
    LAUNCH_OK(assemble_embeds(dg.get(), g, 1, 1, dnl.get(), dsep.get(), dout.get() + local * dim,
                              dim, nullptr));
    const std::vector<uint16_t> out = dout.download();
    for (int64_t i = 0; i < rows * dim; ++i)
      ASSERT_EQ(bf16_to_f32(out[i]), want[i]) << "row " << i / dim << " col " << i % dim;
  }
}

}  // namespace
}  // namespace dsocr::test
