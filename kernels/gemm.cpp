// cuBLASLt BF16 GEMM (kernels/gemm.h). Row-major out[m, n] = a[m, k] · w[n, k]ᵀ is, read
// column-major, outᵀ[n, m] = op_T(w as [k, n]) · (a as [k, m]): cuBLASLt's A is the weight (TRANSA =
// T), its B the activations, its D our output with leading dimension ldo; the BIAS epilogue adds a
// vector over D's rows = our n; C (beta = 1) is the residual.
#include "kernels/gemm.h"

#include <algorithm>

namespace dsocr {

struct GemmRunner::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t lw = nullptr, la = nullptr, lc = nullptr, ld = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lw) cublasLtMatrixLayoutDestroy(lw);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

// Largest power of two (<= 256) dividing the address: cuBLASLt's heuristic must know it.
int alignment_of(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  if (v == 0) return 256;
  return static_cast<int>(std::min<uintptr_t>(256, v & (~v + 1)));
}

#define GEMM_TRY(expr)                                        \
  do {                                                        \
    const cublasStatus_t s_ = (expr);                         \
    if (s_ != CUBLAS_STATUS_SUCCESS) return s_;               \
  } while (0)

}  // namespace

GemmRunner::~GemmRunner() {
  for (auto& [key, plan] : plans_) delete plan;
  if (handle_) cublasLtDestroy(handle_);
}

cublasStatus_t GemmRunner::init(void* workspace, size_t workspace_bytes) {
  workspace_ = workspace;
  workspace_bytes_ = workspace ? workspace_bytes : 0;
  if (handle_) return CUBLAS_STATUS_SUCCESS;
  return cublasLtCreate(&handle_);
}

cublasStatus_t GemmRunner::run(const GemmArgs& g, cudaStream_t stream) {
  if (!handle_) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (g.m < 1 || g.n < 1 || g.k < 1 || !g.a || !g.w || !g.out || g.lda < g.k || g.ldw < g.k ||
      g.ldo < g.n || (g.residual && g.ldr < g.n))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (g.bias && g.out_f32) return CUBLAS_STATUS_NOT_SUPPORTED;
  const int flags = (g.bias ? 1 : 0) | (g.residual ? 2 : 0) | (g.out_f32 ? 4 : 0);
  const int align = std::min({alignment_of(g.a), alignment_of(g.w), alignment_of(g.out),
                              g.residual ? alignment_of(g.residual) : 256});
  const int64_t ldc = g.residual ? g.ldr : g.ldo;
  const Key key{g.m, g.n, g.k, g.lda, g.ldw, ldc, g.ldo, flags | (align << 8)};
  Plan* plan = nullptr;
  if (auto it = plans_.find(key); it != plans_.end()) {
    plan = it->second;
  } else {
    auto fresh = new Plan;
    auto fail = [&](cublasStatus_t s) {
      delete fresh;
      return s;
    };
    const cudaDataType_t out_t = g.out_f32 ? CUDA_R_32F : CUDA_R_16BF;
    cublasStatus_t s = cublasLtMatmulDescCreate(&fresh->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (s != CUBLAS_STATUS_SUCCESS) return fail(s);
    const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(fresh->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT));
    cublasLtMatmulDescSetAttribute(fresh->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN));
    if (g.bias) {
      const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
      s = cublasLtMatmulDescSetAttribute(fresh->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep,
                                         sizeof(ep));
      if (s != CUBLAS_STATUS_SUCCESS) return fail(s);
    }
    if ((s = cublasLtMatrixLayoutCreate(&fresh->lw, CUDA_R_16BF, g.k, g.n, g.ldw)) ||
        (s = cublasLtMatrixLayoutCreate(&fresh->la, CUDA_R_16BF, g.k, g.m, g.lda)) ||
        (s = cublasLtMatrixLayoutCreate(&fresh->lc, out_t, g.n, g.m, ldc)) ||
        (s = cublasLtMatrixLayoutCreate(&fresh->ld, out_t, g.n, g.m, g.ldo)))
      return fail(s);
    cublasLtMatmulPreference_t pref = nullptr;
    if ((s = cublasLtMatmulPreferenceCreate(&pref))) return fail(s);
    const uint64_t ws = workspace_bytes_;
    const uint32_t al = static_cast<uint32_t>(align);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    s = cublasLtMatmulAlgoGetHeuristic(handle_, fresh->desc, fresh->lw, fresh->la, fresh->lc,
                                       fresh->ld, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS) return fail(s);
    if (found < 1) return fail(CUBLAS_STATUS_NOT_SUPPORTED);
    fresh->algo = result.algo;
    plan = fresh;
    plans_.emplace(key, plan);
  }
  if (g.bias)
    GEMM_TRY(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias,
                                            sizeof(g.bias)));
  const float alpha = 1.f, beta = g.residual ? 1.f : 0.f;
  const void* c = g.residual ? g.residual : g.out;
  return cublasLtMatmul(handle_, plan->desc, &alpha, g.w, plan->lw, g.a, plan->la, &beta, c,
                        plan->lc, g.out, plan->ld, &plan->algo, workspace_, workspace_bytes_,
                        stream);
}

}  // namespace dsocr
