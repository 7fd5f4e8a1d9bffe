// Router-choice counting for the expert cache (runtime/expert_cache.h, DESIGN.md §8): every
// forward adds its tokens' top-k expert ids to a per-layer histogram in device memory, captured in
// the decode graph like any other launch (no host sync). Between pages the runtime reads the
// histogram and moves the most-used experts into the GPU's cache slots.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dsocr {

// counts[e] += number of i in [0, n) with ids[i] == e, for e in [0, n_experts); ids outside that
// range are skipped. CPU reference.
void expert_count_ref(const int32_t* ids,  // [n] (the router's topk_idx, [T, top_k] flattened)
                      int64_t n, int n_experts,
                      int32_t* counts);  // [n_experts] in/out

// The same on the device: one block per 1024 ids, a shared-memory histogram per block, then one
// atomicAdd per non-zero bin. Integer adds, so the result does not depend on the order.
// PRECOND: 0 <= n < 2^31; 1 <= n_experts <= kExpertCountMaxExperts; ids, counts device memory.
constexpr int kExpertCountMaxExperts = 1024;
cudaError_t expert_count(const int32_t* ids,  // [n] device
                         int64_t n, int n_experts,
                         int32_t* counts,  // [n_experts] device, in/out
                         cudaStream_t stream);

}  // namespace dsocr
