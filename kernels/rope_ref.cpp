#include <cmath>
#include <vector>

#include "kernels/parallel.h"
#include "kernels/rope.h"

namespace dsocr {
namespace {

// cos/sin of float32(p) * inv_freq[j] for j < half.
void cos_sin_row(int32_t p, const float* inv_freq, float* c, float* s, int half) {
  const float pf = static_cast<float>(p);
  for (int j = 0; j < half; ++j) {
    const float a = pf * inv_freq[j];  // float32 product, as the HF outer product
    c[j] = std::cos(a);
    s[j] = std::sin(a);
  }
}

}  // namespace

void rope_inv_freq_ref(float* inv_freq, int head_dim, float theta) {
  // PyTorch: arange(0, d, 2).float() / d  -> float32 division (exact here: d is a power of two,
  // but kept general), then float32 pow(theta, e), then float32 reciprocal.
  for (int j = 0; j < head_dim / 2; ++j) {
    const float e = static_cast<float>(2 * j) / static_cast<float>(head_dim);
    inv_freq[j] = 1.0f / std::pow(theta, e);
  }
}

void rope_cos_sin_ref(const int32_t* pos, float* cos_out, float* sin_out, int64_t n_pos,
                      int head_dim, float theta) {
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  rope_inv_freq_ref(inv_freq.data(), head_dim, theta);
  for (int64_t t = 0; t < n_pos; ++t)
    cos_sin_row(pos[t], inv_freq.data(), cos_out + t * half, sin_out + t * half, half);
}

void rope_ref(float* x, const int32_t* pos, int64_t T, int n_heads, int head_dim, float theta) {
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  rope_inv_freq_ref(inv_freq.data(), head_dim, theta);
  parallel_for(T, [&](int64_t b, int64_t e) {
    std::vector<float> c(half), s(half);
    for (int64_t t = b; t < e; ++t) {
      cos_sin_row(pos[t], inv_freq.data(), c.data(), s.data(), half);
      for (int h = 0; h < n_heads; ++h) {
        float* v = x + (t * n_heads + h) * head_dim;
        for (int j = 0; j < half; ++j) {
          const float x0 = v[j], x1 = v[j + half];
          v[j] = x0 * c[j] - x1 * s[j];
          v[j + half] = x1 * c[j] + x0 * s[j];
        }
      }
    }
  });
}

}  // namespace dsocr
