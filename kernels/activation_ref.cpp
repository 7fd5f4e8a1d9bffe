#include "kernels/activation.h"
#include "kernels/parallel.h"

namespace dsocr {

void gelu_erf_ref(float* x, int64_t n) {
  parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) x[i] = gelu_erf(x[i]);
      },
      4096);
}

void quick_gelu_ref(float* x, int64_t n) {
  parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) x[i] = quick_gelu(x[i]);
      },
      4096);
}

}  // namespace dsocr
