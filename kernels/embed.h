// Token embedding lookup (../shared/MODEL.md §7.1: h = embed_tokens[ids], no scaling).
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstdint>

namespace dsocr {

// out[t] = float32(table[ids[t]]) (exact widening of BF16).
// PRECOND: 0 <= ids[t] < vocab for every t -- the caller checks ids (this function does not);
// out does not alias table. Image positions (id 128815) are overwritten by the caller afterwards.
void embed_ref(const int32_t* ids,     // [T]
               const uint16_t* table,  // [vocab, dim] BF16 (model.embed_tokens.weight)
               float* out,             // [T, dim]
               int64_t T, int64_t dim);

}  // namespace dsocr
