#include "runtime/vision_cpu.h"

#include <algorithm>
#include <cstring>

#include "kernels/conv2d.h"
#include "kernels/interp.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/vision_attention.h"
#include "loader/bf16.h"
#include "runtime/preprocess.h"

namespace dsocr {
namespace {

std::vector<float> widen(const bf16_t* p, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = bf16_to_f32(p[i]);
  return v;
}

// y (+)= x · Wᵀ + b with an epilogue, contiguous rows.
void linear_ep(const float* x, const bf16_t* w, const bf16_t* b, float* y, int64_t m, int64_t n,
               int64_t k, Epilogue ep) {
  linear_ex_ref(x, k, w, k, b, y, n, m, n, k, ep);
}

// SAM-B: [n, S, S, 3] pixels -> [n, S/64, S/64, 1024] NHWC (MODEL.md §3).
std::vector<float> run_sam(const ModelConfig& cfg, const SamWeights& w, const float* pixels, int n,
                           int S) {
  const SamConfig& c = cfg.sam;
  const int64_t g = S / c.patch, tokens = static_cast<int64_t>(n) * g * g, dim = c.dim;
  const int hd = dim / c.n_heads;
  std::vector<float> x(tokens * dim);
  patch_embed_ref(pixels, w.patch_w, w.patch_b, x.data(), n, S);

  // Absolute position embedding, bicubic-antialias resized when the grid is not 64x64.
  const int64_t g0 = c.img_size / c.patch;
  std::vector<float> pos = widen(w.pos_embed, g0 * g0 * dim);
  if (g != g0) {
    std::vector<float> resized(g * g * dim);
    interp_bicubic_aa_hwc_ref(pos.data(), resized.data(), dim, g0, g0, g, g);
    pos.swap(resized);
  }
  for (int v = 0; v < n; ++v)
    for (int64_t i = 0; i < g * g * dim; ++i) x[v * g * g * dim + i] += pos[i];

  const int win = c.window;
  const int64_t nw = n_windows_side(g, win);
  const int64_t win_tokens = static_cast<int64_t>(n) * nw * nw * win * win;
  const int64_t max_tokens = std::max(tokens, win_tokens);
  std::vector<float> xn(tokens * dim), xw(max_tokens * dim), qkv(max_tokens * 3 * dim),
      att(max_tokens * dim), y(max_tokens * dim), hidden(tokens * c.mlp_dim);
  for (const SamBlockWeights& b : w.blocks) {
    layernorm_ref(x.data(), b.norm1_w, b.norm1_b, xn.data(), tokens, dim, c.ln_eps);
    // Relative-position tables, resized (linear) when the global grid is not 64.
    const int64_t L = b.global ? g : win;
    std::vector<float> rh = widen(b.rel_h, b.rel_len * hd), rw = widen(b.rel_w, b.rel_len * hd);
    if (2 * L - 1 != b.rel_len) {
      std::vector<float> rh2((2 * L - 1) * hd), rw2((2 * L - 1) * hd);
      interp_linear_rows_ref(rh.data(), rh2.data(), b.rel_len, 2 * L - 1, hd);
      interp_linear_rows_ref(rw.data(), rw2.data(), b.rel_len, 2 * L - 1, hd);
      rh.swap(rh2);
      rw.swap(rw2);
    }
    if (b.global) {
      linear_ref(xn.data(), b.qkv_w, b.qkv_b, qkv.data(), tokens, 3 * dim, dim);
      vision_attention_ref(qkv.data(), rh.data(), rw.data(), att.data(), n, g * g, g, g,
                           c.n_heads, hd);
      linear_ep(att.data(), b.proj_w, b.proj_b, x.data(), tokens, dim, dim, Epilogue::kAdd);
    } else {
      // Windows of the zero-padded normed map; padded tokens attend like any other (no mask).
      window_partition_ref(xn.data(), xw.data(), n, g, g, dim, win);
      linear_ref(xw.data(), b.qkv_w, b.qkv_b, qkv.data(), win_tokens, 3 * dim, dim);
      vision_attention_ref(qkv.data(), rh.data(), rw.data(), att.data(), n * nw * nw,
                           win * win, win, win, c.n_heads, hd);
      linear_ref(att.data(), b.proj_w, b.proj_b, xw.data(), win_tokens, dim, dim);
      window_unpartition_ref(xw.data(), y.data(), n, g, g, dim, win);
      for (int64_t i = 0; i < tokens * dim; ++i) x[i] += y[i];
    }
    layernorm_ref(x.data(), b.norm2_w, b.norm2_b, xn.data(), tokens, dim, c.ln_eps);
    linear_ep(xn.data(), b.lin1_w, b.lin1_b, hidden.data(), tokens, c.mlp_dim, dim,
              Epilogue::kGelu);
    linear_ep(hidden.data(), b.lin2_w, b.lin2_b, x.data(), tokens, dim, c.mlp_dim,
              Epilogue::kAdd);
  }

  // Neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d; then net_2, net_3 (3x3, stride 2).
  // NHWC, so LayerNorm2d is a LayerNorm over the last dim.
  Conv2dShape s{n, g, g, dim, c.neck_dim, 1, 1, 0};
  std::vector<float> a(tokens * c.neck_dim), bbuf(tokens * c.neck_dim);
  conv2d_nhwc_ref(x.data(), w.neck0_w, nullptr, a.data(), s);
  layernorm_ref(a.data(), w.neck1_w, w.neck1_b, a.data(), tokens, c.neck_dim, c.ln_eps);
  s = Conv2dShape{n, g, g, c.neck_dim, c.neck_dim, 3, 1, 1};
  conv2d_nhwc_ref(a.data(), w.neck2_w, nullptr, bbuf.data(), s);
  layernorm_ref(bbuf.data(), w.neck3_w, w.neck3_b, bbuf.data(), tokens, c.neck_dim, c.ln_eps);
  s = Conv2dShape{n, g, g, c.neck_dim, c.net2_dim, 3, 2, 1};
  std::vector<float> n2(static_cast<size_t>(n) * s.out_h() * s.out_w() * c.net2_dim);
  conv2d_nhwc_ref(bbuf.data(), w.net2_w, nullptr, n2.data(), s);
  s = Conv2dShape{n, g / 2, g / 2, c.net2_dim, c.net3_dim, 3, 2, 1};
  std::vector<float> out(static_cast<size_t>(n) * s.out_h() * s.out_w() * c.net3_dim);
  conv2d_nhwc_ref(n2.data(), w.net3_w, nullptr, out.data(), s);
  return out;
}

// CLIP-L body on SAM features: [n, q*q, 1024] -> [n, 1 + q*q, 1024] (MODEL.md §4.2).
std::vector<float> run_clip(const ModelConfig& cfg, const ClipWeights& w, const float* sam, int n,
                            int q) {
  const ClipConfig& c = cfg.clip;
  const int64_t dim = c.dim, L = 1 + static_cast<int64_t>(q) * q, tokens = n * L;
  const int hd = dim / c.n_heads;
  const int64_t g0 = c.pos_grid;
  std::vector<float> pos = widen(w.pos_emb, (1 + g0 * g0) * dim);
  if (q != g0) {  // keep the CLS row, bicubic-antialias resize the 16x16 patch rows
    std::vector<float> resized((1 + static_cast<int64_t>(q) * q) * dim);
    std::copy(pos.begin(), pos.begin() + dim, resized.begin());
    interp_bicubic_aa_hwc_ref(pos.data() + dim, resized.data() + dim, dim, g0, g0, q, q);
    pos.swap(resized);
  }
  std::vector<float> cls = widen(w.class_emb, dim);
  std::vector<float> x(tokens * dim);
  for (int v = 0; v < n; ++v) {
    float* xv = x.data() + v * L * dim;
    for (int64_t d = 0; d < dim; ++d) xv[d] = cls[d] + pos[d];
    const float* sv = sam + static_cast<size_t>(v) * q * q * dim;
    for (int64_t i = 0; i < (L - 1) * dim; ++i) xv[dim + i] = sv[i] + pos[dim + i];
  }
  layernorm_ref(x.data(), w.pre_ln_w, w.pre_ln_b, x.data(), tokens, dim, c.ln_eps);

  std::vector<float> xn(tokens * dim), qkv(tokens * 3 * dim), att(tokens * dim),
      hidden(tokens * c.mlp_dim);
  for (const ClipLayerWeights& l : w.layers) {
    layernorm_ref(x.data(), l.ln1_w, l.ln1_b, xn.data(), tokens, dim, c.ln_eps);
    linear_ref(xn.data(), l.qkv_w, l.qkv_b, qkv.data(), tokens, 3 * dim, dim);
    vision_attention_ref(qkv.data(), nullptr, nullptr, att.data(), n, L, 0, 0, c.n_heads, hd);
    linear_ep(att.data(), l.out_w, l.out_b, x.data(), tokens, dim, dim, Epilogue::kAdd);
    layernorm_ref(x.data(), l.ln2_w, l.ln2_b, xn.data(), tokens, dim, c.ln_eps);
    linear_ep(xn.data(), l.fc1_w, l.fc1_b, hidden.data(), tokens, c.mlp_dim, dim,
              Epilogue::kQuickGelu);
    linear_ep(hidden.data(), l.fc2_w, l.fc2_b, x.data(), tokens, dim, c.mlp_dim, Epilogue::kAdd);
  }
  return x;
}

}  // namespace

void normalize_views_hwc(const uint8_t* u8, size_t count, float* out) {
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = normalize_pixel(static_cast<uint8_t>(v));
  for (size_t i = 0; i < count; ++i) out[i] = lut[u8[i]];
}

Expected<VisionOutput> encode_views_cpu(const ModelConfig& cfg, const ModelWeights& w,
                                        const float* pixels, int n, int S) {
  if (n < 1 || S < 64 || S % 64 != 0)
    return Status::Error(strfmt("vision encoder: view size %d is not a positive multiple of 64 "
                                "(or no views: %d)", S, n));
  VisionOutput o;
  o.n = n;
  o.q = S / 64;
  const int64_t q2 = static_cast<int64_t>(o.q) * o.q, sd = cfg.sam.net3_dim;
  std::vector<float> sam = run_sam(cfg, w.sam, pixels, n, S);  // [n, q, q, 1024] NHWC
  o.clip = run_clip(cfg, w.clip, sam.data(), n, o.q);          // [n, 1 + q², 1024]

  // Projector on concat(CLIP without its class token, SAM flattened) -> [n, q², 1280].
  const int64_t cd = cfg.clip.dim, fd = cd + sd;
  std::vector<float> feat(n * q2 * fd);
  for (int v = 0; v < n; ++v)
    for (int64_t i = 0; i < q2; ++i) {
      float* f = feat.data() + (v * q2 + i) * fd;
      std::memcpy(f, o.clip.data() + (v * (1 + q2) + 1 + i) * cd, sizeof(float) * cd);
      std::memcpy(f + cd, sam.data() + (v * q2 + i) * sd, sizeof(float) * sd);
    }
  o.proj.resize(n * q2 * cfg.proj_out);
  linear_ref(feat.data(), w.proj.w, w.proj.b, o.proj.data(), n * q2, cfg.proj_out, fd);

  // SAM output as the official code returns it: NCHW.
  o.sam.resize(n * q2 * sd);
  for (int v = 0; v < n; ++v)
    for (int64_t i = 0; i < q2; ++i)
      for (int64_t ch = 0; ch < sd; ++ch)
        o.sam[(v * sd + ch) * q2 + i] = sam[(v * q2 + i) * sd + ch];
  return o;
}

}  // namespace dsocr
