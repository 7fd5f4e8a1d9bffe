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

// =================================================================================================
// CUDA launchers (kernels/activation.cu): elementwise, BF16 in/out, FP32 math (erff / expf),
// one rounding at the store -- the official BF16 model rounds the Linear output to BF16, then the
// activation's output to BF16, which is exactly this.
// =================================================================================================
#include <cuda_runtime_api.h>

namespace dsocr {

enum class Activation { kGeluErf, kQuickGelu };

// x[r, c] = act(x[r, c]) in place for r < rows, c < cols.
// PRECOND: cols % 8 == 0, ld % 8 == 0, x 16-byte aligned.
cudaError_t activation_bf16(uint16_t* x,  // [rows, ld] BF16
                            int64_t ld, int64_t rows, int64_t cols, Activation act,
                            cudaStream_t stream);

// out[r, c] = bf16(silu(gate[r, c]) · up[r, c]) (FP32 in between: silu(g) = g / (1 + exp(-g))).
// out may equal gate or up (in place). PRECOND: cols % 8 == 0; lds % 8 == 0; 16-byte aligned.
cudaError_t silu_mul_bf16(const uint16_t* gate,  // [rows, ldg] BF16
                          int64_t ldg,
                          const uint16_t* up,  // [rows, ldu] BF16
                          int64_t ldu,
                          uint16_t* out,  // [rows, ldo] BF16
                          int64_t ldo, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace dsocr
