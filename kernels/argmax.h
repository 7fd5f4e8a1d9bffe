// Greedy sampling on the GPU: the n-gram ban mask and argmax over the logits (CPU reference:
// argmax_ref in runtime/sampling.h; the banned ids come from NGramIndex / hf_banned_scan).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace dsocr {

// Bytes of scratch argmax_banned needs for n logits.
size_t argmax_workspace_bytes(int64_t n);

// logits[banned[i]] = -inf for i < *n_banned (in place; ids outside [0, n) are ignored), then
// *out = index of the largest logit with argmax_ref's rules: ties -> the lowest index; a NaN counts
// as the maximum (the first NaN wins); all -inf -> 0. Two passes (per-block candidates, then one
// block), the ban applied by the block that owns each id; everything on the device, so the step
// can be captured in a graph. banned / n_banned may be null (no ban).
// PRECOND: 1 <= n < 2^31; logits 16-byte aligned; workspace holds argmax_workspace_bytes(n).
cudaError_t argmax_banned(float* logits,  // [n] FP32, banned entries set to -inf
                          int64_t n,
                          const int32_t* banned,    // [*n_banned] device, or null
                          const int32_t* n_banned,  // [1] device, or null
                          int32_t* out,             // [1] device: the argmax
                          void* workspace, cudaStream_t stream);

}  // namespace dsocr
