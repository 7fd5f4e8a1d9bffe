#include "kernels/embed.h"
#include "kernels/parallel.h"
#include "loader/bf16.h"

namespace dsocr {

void embed_ref(const int32_t* ids, const uint16_t* table, float* out, int64_t T, int64_t dim) {
  parallel_for(T, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const uint16_t* row = table + static_cast<int64_t>(ids[t]) * dim;
      float* o = out + t * dim;
      for (int64_t i = 0; i < dim; ++i) o[i] = bf16_to_f32(row[i]);
    }
  });
}

}  // namespace dsocr
