// Vision attention on the linear.h GEMM engine (see vision_attention.h).
// Per (sequence, head) task: K and V of the head are packed once into the engine's panel format
// (gemm_pack_b), then for every block of kQBlock queries
//   S = Q·Kᵀ (engine), S = S/√d + rel-pos bias, P = exp(S − rowmax) (unnormalised),
//   O = P·V (engine), O /= rowsum.
// SAM global attention at 1024 px (4096 tokens, 12 heads) is 103 GFLOP over the four global
// blocks plus 4096² · 12 exp per block: the exp runs through a branch-free polynomial that the
// compiler vectorises (target_clones), since libm's expf would cost more than the GEMMs.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/linear.h"
#include "kernels/parallel.h"
#include "kernels/vision_attention.h"

namespace dsocr {
namespace {

constexpr int64_t kQBlock = 48;  // queries per block: a multiple of every engine MR (12, 6)

// exp(x) for x <= 0 (softmax after max subtraction), Cephes expf: x = n·ln2 + r, |r| <= ln2/2,
// exp(r) = 1 + r + r²·P(r), times 2^n built in the exponent bits. Relative error ~2e-7 over the
// range; x < -87 is clamped (exp(-87) = 1.6e-38, invisible next to the row maximum's 1).
inline float exp_neg(float x) {
  x = std::max(x, -87.0f);
  const float fx = x * 1.44269504088896341f + 0.5f;
  // floor(fx) via the 1.5·2^23 rounding trick (round to nearest), corrected downwards.
  float n = (fx + 12582912.0f) - 12582912.0f;
  n = n > fx ? n - 1.0f : n;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(e);
}

// s[j] = exp(s[j]·scale + bias_j − max); returns the sum. bias from rel_h/rel_w when set:
// bias_j = rel_h[j / gw] + rel_w[j % gw].
__attribute__((target_clones("avx512f", "avx2", "default"))) float softmax_row(
    float* s, int64_t n, float scale, const float* rel_h, const float* rel_w, int64_t gw) {
  if (rel_h) {
    for (int64_t kh = 0, j = 0; j < n; ++kh) {
      const float bh = rel_h[kh];
      for (int64_t kw = 0; kw < gw; ++kw, ++j) s[j] = s[j] * scale + (bh + rel_w[kw]);
    }
  } else {
    for (int64_t j = 0; j < n; ++j) s[j] *= scale;
  }
  typedef float V16 __attribute__((vector_size(64), aligned(4), may_alias));
  // Max and sum in 16 independent lanes (vectorised without reassociation flags), then folded.
  float sum16[16];
  const int64_t nv = n - n % 16;
  float mx = s[0];
  if (nv > 0) {
    V16 m16 = *reinterpret_cast<const V16*>(s);
    for (int64_t j = 16; j < nv; j += 16) {
      const V16 v = *reinterpret_cast<const V16*>(s + j);
      m16 = v > m16 ? v : m16;
    }
    for (int l = 0; l < 16; ++l) mx = std::max(mx, m16[l]);
  }
  for (int64_t j = nv; j < n; ++j) mx = std::max(mx, s[j]);
  for (int l = 0; l < 16; ++l) sum16[l] = 0.f;
  for (int64_t j = 0; j < nv; j += 16)
    for (int l = 0; l < 16; ++l) {
      s[j + l] = exp_neg(s[j + l] - mx);
      sum16[l] += s[j + l];
    }
  float sum = 0.f;
  for (int l = 0; l < 16; ++l) sum += sum16[l];
  for (int64_t j = nv; j < n; ++j) {
    s[j] = exp_neg(s[j] - mx);
    sum += s[j];
  }
  return sum;
}

// One (sequence, head): all n_tokens queries.
void attend_head(const float* qkv, const float* rel_pos_h, const float* rel_pos_w, float* out,
                 int64_t n_tokens, int64_t gh, int64_t gw, int n_heads, int64_t d, int h) {
  const int64_t ld = 3 * n_heads * d, hd = n_heads * d;
  const float* q = qkv + h * d;
  GemmB kb;
  kb.layout = GemmBLayout::kF32NK;  // S = Q·Kᵀ: B[c, j] = K[j, c]
  kb.data = qkv + hd + h * d;
  kb.ld = ld;
  float* kp = thread_scratch(ScratchSlot::kAttnK, gemm_packed_b_floats(n_tokens, d));
  gemm_pack_b(kb, n_tokens, d, kp);
  GemmB vb;
  vb.layout = GemmBLayout::kF32KN;  // O = P·V: B[j, c] = V[j, c]
  vb.data = qkv + 2 * hd + h * d;
  vb.ld = ld;
  float* vp = thread_scratch(ScratchSlot::kAttnV, gemm_packed_b_floats(d, n_tokens));
  gemm_pack_b(vb, d, n_tokens, vp);
  kb = GemmB{};
  kb.layout = GemmBLayout::kPacked;
  kb.data = kp;
  vb = GemmB{};
  vb.layout = GemmBLayout::kPacked;
  vb.data = vp;

  float* s = thread_scratch(ScratchSlot::kAttnScores, static_cast<size_t>(kQBlock * n_tokens));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const bool rel = rel_pos_h != nullptr;
  float rel_h[1024], rel_w[1024];  // gh, gw <= 1024 (checked by the caller's PRECOND)
  for (int64_t q0 = 0; q0 < n_tokens; q0 += kQBlock) {
    const int64_t qn = std::min(kQBlock, n_tokens - q0);
    GemmA qa;
    qa.data = q + q0 * ld;
    qa.ld = ld;
    GemmC sc;
    sc.data = s;
    sc.ld = n_tokens;
    gemm_ref(qa, kb, sc, qn, n_tokens, d);
    float sums[kQBlock];
    for (int64_t r = 0; r < qn; ++r) {
      const int64_t t = q0 + r;
      if (rel) {
        // add_decomposed_rel_pos with the unscaled q: rel_h[kh] = q·Rh[qh − kh + gh − 1].
        const float* qt = q + t * ld;
        const int64_t qh = t / gw, qw = t % gw;
        for (int64_t kh = 0; kh < gh; ++kh) {
          const float* rp = rel_pos_h + (qh - kh + gh - 1) * d;
          float acc = 0.f;
          for (int64_t c = 0; c < d; ++c) acc += qt[c] * rp[c];
          rel_h[kh] = acc;
        }
        for (int64_t kw = 0; kw < gw; ++kw) {
          const float* rp = rel_pos_w + (qw - kw + gw - 1) * d;
          float acc = 0.f;
          for (int64_t c = 0; c < d; ++c) acc += qt[c] * rp[c];
          rel_w[kw] = acc;
        }
      }
      sums[r] = softmax_row(s + r * n_tokens, n_tokens, scale, rel ? rel_h : nullptr,
                            rel ? rel_w : nullptr, gw);
    }
    GemmA pa;
    pa.data = s;
    pa.ld = n_tokens;
    GemmC oc;
    oc.data = out + q0 * hd + h * d;
    oc.ld = hd;
    gemm_ref(pa, vb, oc, qn, d, n_tokens);
    for (int64_t r = 0; r < qn; ++r) {
      const float inv = 1.0f / sums[r];
      float* o = oc.data + r * hd;
      for (int64_t c = 0; c < d; ++c) o[c] *= inv;
    }
  }
}

// partition: windows[widx, wy, wx] = x[img, y, x] or 0 in the padding; unpartition: the
// reverse, padding dropped. One parallel item per (image, window, row inside the window).
template <bool kPartition>
void copy_windows(const float* src, float* dst, int64_t n, int64_t gh, int64_t gw, int64_t dim,
                  int64_t win) {
  const int64_t nwh = n_windows_side(gh, win), nww = n_windows_side(gw, win);
  const size_t row_bytes = sizeof(float) * static_cast<size_t>(dim);
  parallel_for(
      n * nwh * nww * win,
      [&](int64_t b, int64_t e) {
        for (int64_t it = b; it < e; ++it) {
          const int64_t wy = it % win, widx = it / win;
          const int64_t img = widx / (nwh * nww), wi = widx % (nwh * nww);
          const int64_t y = (wi / nww) * win + wy;
          for (int64_t wx = 0; wx < win; ++wx) {
            const int64_t x = (wi % nww) * win + wx;
            const int64_t w_off = ((widx * win + wy) * win + wx) * dim;
            const int64_t g_off = ((img * gh + y) * gw + x) * dim;
            const bool inside = y < gh && x < gw;
            if (kPartition) {
              if (inside)
                std::memcpy(dst + w_off, src + g_off, row_bytes);
              else
                std::memset(dst + w_off, 0, row_bytes);  // F.pad zeros take part in attention
            } else if (inside) {
              std::memcpy(dst + g_off, src + w_off, row_bytes);
            }
          }
        }
      },
      4);
}

}  // namespace

void vision_attention_ref(const float* qkv, const float* rel_pos_h, const float* rel_pos_w,
                          float* out, int64_t n_seq, int64_t n_tokens, int64_t grid_h,
                          int64_t grid_w, int n_heads, int head_dim) {
  const int64_t ld = 3 * static_cast<int64_t>(n_heads) * head_dim;
  const int64_t hd = static_cast<int64_t>(n_heads) * head_dim;
  parallel_for(n_seq * n_heads, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t sq = it / n_heads;
      attend_head(qkv + sq * n_tokens * ld, rel_pos_h, rel_pos_w, out + sq * n_tokens * hd,
                  n_tokens, grid_h, grid_w, n_heads, head_dim, static_cast<int>(it % n_heads));
    }
  });
}

void window_partition_ref(const float* x, float* windows, int64_t n, int64_t grid_h, int64_t grid_w,
                          int64_t dim, int64_t win) {
  copy_windows<true>(x, windows, n, grid_h, grid_w, dim, win);
}

void window_unpartition_ref(const float* windows, float* x, int64_t n, int64_t grid_h,
                            int64_t grid_w, int64_t dim, int64_t win) {
  copy_windows<false>(windows, x, n, grid_h, grid_w, dim, win);
}

}  // namespace dsocr
