// Element-wise activations of the vision encoders (MODEL.md §3 step 3, §4.2):
//   gelu_erf(x)   = 0.5·x·(1 + erf(x/√2))   SAM MLPBlock (nn.GELU(), approximate='none')
//   quick_gelu(x) = x·sigmoid(1.702·x)       CLIP MLP (official deepencoder.py `quick_gelu`)
// Both are fused into the linear epilogue (linear.h Epilogue::kGelu / kQuickGelu); the in-place
// array forms are for callers that hold the pre-activation already.
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cmath>
#include <cstdint>

namespace dsocr {

// Scalar forms, float32 throughout (std::erf / std::exp of float).
inline float gelu_erf(float x) {
  return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
}
inline float quick_gelu(float x) {
  return x / (1.0f + std::exp(-1.702f * x));
}

// In place over n contiguous floats. PRECOND: x non-null when n > 0. Multithreaded.
void gelu_erf_ref(float* x,  // [n]
                  int64_t n);
void quick_gelu_ref(float* x,  // [n]
                    int64_t n);

}  // namespace dsocr
