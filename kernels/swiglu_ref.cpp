#include <cmath>

#include "kernels/linear.h"
#include "kernels/parallel.h"
#include "kernels/swiglu.h"

namespace dsocr {

void swiglu_ref(const float* x, const MlpWeights& w, float* y, float* scratch, int64_t T,
                int64_t dim, int64_t inter) {
  float* g = scratch;              // [T, inter] gate(x), then silu(gate(x)) * up(x)
  float* u = scratch + T * inter;  // [T, inter] up(x)
  linear_ref(x, w.gate, nullptr, g, T, inter, dim);
  linear_ref(x, w.up, nullptr, u, T, inter, dim);
  parallel_for(
      T * inter,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float a = g[i];
          g[i] = a / (1.f + std::exp(-a)) * u[i];  // silu in float32, then the gate product
        }
      },
      4096);
  linear_ref(g, w.down, nullptr, y, T, dim, inter);
}

}  // namespace dsocr
