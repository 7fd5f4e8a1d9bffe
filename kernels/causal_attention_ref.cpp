#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/causal_attention.h"
#include "kernels/parallel.h"

namespace dsocr {

void kv_append_ref(const float* k_new, const float* v_new, float* k_cache, float* v_cache,
                   int64_t T, int64_t p0, int n_heads, int head_dim) {
  const int64_t row = static_cast<int64_t>(n_heads) * head_dim;
  std::memcpy(k_cache + p0 * row, k_new, sizeof(float) * T * row);
  std::memcpy(v_cache + p0 * row, v_new, sizeof(float) * T * row);
}

namespace {

// q·k over head_dim in float32 with 8 interleaved partial sums (a fixed order, so results do not
// depend on threading or blocking; the compiler can keep the 8 lanes in one vector register).
float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int d = 0;
  for (; d + 8 <= n; d += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[d + l] * b[d + l];
  for (; d < n; ++d) acc[d & 7] += a[d] * b[d];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

}  // namespace

void causal_attention_ref(const float* q, const float* k_cache, const float* v_cache, float* out,
                          int64_t T, int64_t p0, int n_heads, int head_dim, float scale) {
  const int64_t row = static_cast<int64_t>(n_heads) * head_dim;
  parallel_for(
      T * n_heads,
      [&](int64_t b, int64_t e) {
        // Per-thread score row, grow-only (at most max_tokens floats).
        thread_local std::vector<float> scores;
        for (int64_t i = b; i < e; ++i) {
          const int64_t t = i / n_heads;
          const int64_t h = i % n_heads;
          const int64_t kv_len = p0 + t + 1;  // causal: keys 0 .. p0+t
          if (static_cast<int64_t>(scores.size()) < kv_len) scores.resize(kv_len);
          const float* qv = q + t * row + h * head_dim;
          // Scores and their max; then exp(s - max) (no overflow) and the sum, all float32.
          float m = -INFINITY;
          for (int64_t j = 0; j < kv_len; ++j) {
            scores[j] = dot(qv, k_cache + j * row + h * head_dim, head_dim) * scale;
            m = std::fmax(m, scores[j]);
          }
          float sum = 0.f;
          for (int64_t j = 0; j < kv_len; ++j) sum += (scores[j] = std::exp(scores[j] - m));
          // o = Σ_j p_j v_j, normalised once at the end.
          float* o = out + t * row + h * head_dim;
          for (int d = 0; d < head_dim; ++d) o[d] = 0.f;
          for (int64_t j = 0; j < kv_len; ++j) {
            const float p = scores[j];
            const float* vv = v_cache + j * row + h * head_dim;
            for (int d = 0; d < head_dim; ++d) o[d] += p * vv[d];
          }
          const float inv = 1.f / sum;
          for (int d = 0; d < head_dim; ++d) o[d] *= inv;
        }
      },
      4);
}

}  // namespace dsocr
