#include "kernels/expert_cache.h"

namespace dsocr {

void expert_count_ref(const int32_t* ids, int64_t n, int n_experts, int32_t* counts) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] >= 0 && ids[i] < n_experts) ++counts[ids[i]];
}

}  // namespace dsocr
