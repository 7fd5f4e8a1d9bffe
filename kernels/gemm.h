// Dense BF16 GEMM for the compute-bound linear layers (vision, decoder prefill, lm_head over many
// rows): out[m, n] = a[m, k] · w[n, k]ᵀ (+ bias[n]) (+ residual[m, n]), FP32 accumulation, one
// rounding at the store. Runs on cuBLASLt: at the model's large shapes (e.g. SAM's 4096 × 3072 ×
// 768) its Hopper kernels reach ~600+ TFLOP/s, which a hand-written mma.sync GEMM does not; its
// BIAS epilogue and the beta·C input give the bias and residual fusions for free. Activations
// that cuBLASLt lacks in exact form (erf GELU, quick-GELU, SiLU·mul) run as separate elementwise
// kernels (kernels/activation.h), which also matches the official BF16 rounding points (PyTorch
// rounds the Linear output to BF16 before the activation).
// CPU float32 reference: linear_ex_ref / gemm_ref (kernels/linear.h).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

namespace dsocr {

struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const uint16_t* a = nullptr;  // [m, lda] BF16, row-major (activations)
  int64_t lda = 0;
  const uint16_t* w = nullptr;  // [n, ldw] BF16, row-major (PyTorch Linear weight [out, in])
  int64_t ldw = 0;
  const uint16_t* bias = nullptr;  // [n] BF16, or null (BF16 output only)
  const void* residual = nullptr;  // [m, ldr] same type as out, added before the store; may
  int64_t ldr = 0;                 //   equal out (in-place residual add), or null
  void* out = nullptr;             // [m, ldo] BF16, or FP32 with out_f32
  int64_t ldo = 0;
  bool out_f32 = false;
};
// FP32 output is for accumulators a later kernel rounds to BF16 (the SAM patch embed adds bias and
// the position embedding in FP32, then rounds once). Its FP32 values carry cuBLASLt's tensor-core
// accumulation error (measured 4.5x a sequential FP32 sum on H100, ~1e-6 relative), so it is
// tested as used: after the BF16 rounding, against the 2x-naive rule (tests/gpu/gemm_test.cpp).

// Owns the cuBLASLt handle and a cache of the heuristic's algorithm per shape, so that a call
// after the first for a shape does no host-side search (and can be captured in a CUDA graph).
// The caller provides the workspace (device memory, from the pool); 32 MiB is what cuBLASLt's
// Hopper kernels ask for at most.
class GemmRunner {
 public:
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  GemmRunner() = default;
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // Creates the handle. workspace: device memory of workspace_bytes, 256-byte aligned.
  cublasStatus_t init(void* workspace, size_t workspace_bytes);

  // PRECOND: init() succeeded; k, n, m >= 1; lda, ldw, ldr, ldo >= the used columns and multiples
  // of 8; pointers 16-byte aligned. Returns CUBLAS_STATUS_INVALID_VALUE for bad shapes,
  // CUBLAS_STATUS_NOT_SUPPORTED for a bias with an FP32 output.
  cublasStatus_t run(const GemmArgs& g, cudaStream_t stream);

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, Plan*> plans_;
};

}  // namespace dsocr
