// Linear layers: y = x · Wᵀ (+ bias). CPU float32 reference (weights BF16 from the mapped
// checkpoint, widened on the fly; never a float32 copy of a whole weight). CUDA launchers join
// this header when the GPU issues land.
#pragma once

#include <cstdint>

namespace dsocr {

// PRECOND: x, w, y non-null; bias may be null; y does not alias x.
// Multithreaded over (rows of x) x (output columns), cache-blocked over K.
void linear_ref(const float* x,     // [m, k] row-major, row stride k
                const uint16_t* w,  // [n, k] BF16 bits (nn.Linear weight layout)
                const float* bias,  // [n] or null
                float* y,           // [m, n]
                int64_t m, int64_t n, int64_t k);

// Same with a float32 weight (used by tests and by the few weights kept in float32).
void linear_ref_f32w(const float* x, const float* w, const float* bias, float* y, int64_t m,
                     int64_t n, int64_t k);

}  // namespace dsocr
