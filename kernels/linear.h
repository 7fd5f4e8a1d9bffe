// Linear layers: y = x · Wᵀ (+ bias), and the blocked float32 GEMM engine behind every CPU matmul
// (linear, conv2d, vision attention). CPU float32 reference: weights and biases are BF16 from the
// mapped checkpoint (MODEL.md §2.1: every tensor is BF16), widened on the fly into small
// per-thread float tiles; never a float32 copy of a whole weight. Accumulation is float32.
// CUDA launchers join this header when the GPU issues land.
//
// Engine (linear_ref.cpp): BLIS-style. C is cut into tiles of MC rows x NC columns, handed to the
// thread pool; per tile and per KC-slice of k, A is packed into MR-row strips and B into NR-column
// panels (BF16 widened here), and an MR x NR register micro-kernel (AVX-512 12x32, AVX2+FMA 6x16,
// portable 6x8, picked at run time) accumulates. For m <= 64 with a BF16 [n, k] weight a GEMV
// kernel skips packing: 64-row chunks of the weight are streamed once (decode: bandwidth-bound,
// one pass over lm_head) and swept by groups of 4 rows of x from L2.
// Scratch: grow-only thread_local packing buffers (about 0.5 MB per thread), allocated once.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dsocr {

// What happens to a tile of C = A·B once the sum over k is complete (bias is added first).
enum class Epilogue {
  kStore,      // y = x·Wᵀ + b
  kAdd,        // y += x·Wᵀ + b        (residual add fused into the output projection)
  kGelu,       // y = gelu_erf(x·Wᵀ + b)   (SAM MLPBlock, nn.GELU default)
  kQuickGelu,  // y = quick_gelu(x·Wᵀ + b) (CLIP MLP)
};

// y = x · Wᵀ + bias, contiguous rows.
// PRECOND: x, w, y non-null; bias may be null; y does not alias x; m, n, k >= 1.
// Multithreaded over (rows of x) x (output columns), cache-blocked over k.
void linear_ref(const float* x,        // [m, k] row-major
                const uint16_t* w,     // [n, k] BF16 bits (nn.Linear weight layout)
                const uint16_t* bias,  // [n] BF16 bits, or null
                float* y,              // [m, n]
                int64_t m, int64_t n, int64_t k);

// The general form: explicit row strides (ldw lets a caller use a column slice [:, k0:k0+k] of a
// weight by offsetting w and passing the full row length), and an epilogue.
// PRECOND: as linear_ref; ldx >= k, ldw >= k, ldy >= n; with kAdd, y holds valid values.
void linear_ex_ref(const float* x,  // [m, ldx], columns 0..k-1 used
                   int64_t ldx,
                   const uint16_t* w,  // [n, ldw] BF16, columns 0..k-1 used
                   int64_t ldw,
                   const uint16_t* bias,  // [n] BF16, or null
                   float* y,              // [m, ldy], columns 0..n-1 written
                   int64_t ldy, int64_t m, int64_t n, int64_t k, Epilogue ep);

// Same as linear_ref with a float32 weight and bias (tests; the few float32 weights).
void linear_ref_f32w(const float* x,     // [m, k]
                     const float* w,     // [n, k]
                     const float* bias,  // [n] or null
                     float* y,           // [m, n]
                     int64_t m, int64_t n, int64_t k);

// ---- The engine, for the other CPU ops of this family (conv2d, vision attention) ----

// Operand A, logically [m, k] float32: a strided matrix, or a gather callback (implicit im2col).
struct GemmA {
  const float* data = nullptr;  // [m, ld] when gather is null
  int64_t ld = 0;
  // Writes A[i0 + r, p0 + p] to dst[p * mr + r] for r < rows, p < kc (rows <= mr). The engine
  // zero-fills rows rows..mr-1 itself. Called concurrently from worker threads: must be pure.
  void (*gather)(const void* ctx, int64_t i0, int rows, int64_t p0, int64_t kc, float* dst,
                 int mr) = nullptr;
  const void* ctx = nullptr;
};

// Operand B, logically [k, n]. kBf16NK / kF32NK: stored as [n, ld] (nn.Linear weight, K rows of
// attention); kF32KN: stored as [k, ld] (V of attention). kGather: the callback writes
// B[p0 + p, j0 + c] to dst[p * nr + c] for c < cols, p < kc (the engine zero-fills c >= cols).
// kPacked: data is the output of gemm_pack_b for the same (n, k) (ld unused), for a B that is
// reused by many GEMMs (attention packs K and V once per head, then runs every query block).
enum class GemmBLayout { kBf16NK, kF32NK, kF32KN, kGather, kPacked };
struct GemmB {
  GemmBLayout layout = GemmBLayout::kBf16NK;
  const void* data = nullptr;  // uint16_t (kBf16NK) or float, see layout
  int64_t ld = 0;
  void (*gather)(const void* ctx, int64_t j0, int cols, int64_t p0, int64_t kc, float* dst,
                 int nr) = nullptr;
  const void* ctx = nullptr;
};

// Output C [m, ld] plus bias (at most one of the two) and epilogue.
struct GemmC {
  float* data = nullptr;  // [m, ld], columns 0..n-1
  int64_t ld = 0;
  const uint16_t* bias_bf16 = nullptr;  // [n] or null
  const float* bias_f32 = nullptr;      // [n] or null
  Epilogue ep = Epilogue::kStore;
};

// C = epilogue(A · B + bias). Runs on the thread pool; called from inside a parallel_for task it
// runs serially on that thread (the pool does not nest), which is how vision attention uses it.
// PRECOND: m, n, k >= 1; C does not alias A or B.
void gemm_ref(const GemmA& a, const GemmB& b, const GemmC& c, int64_t m, int64_t n, int64_t k);

// Pre-packing of a B operand into the engine's panel format (serial, on the calling thread).
size_t gemm_packed_b_floats(int64_t n, int64_t k);  // size of the packed buffer
// PRECOND: b.layout != kPacked; packed holds gemm_packed_b_floats(n, k) floats, 64-byte aligned;
// the panel width depends on gemm_isa(): use the buffer under the ISA it was packed with.
void gemm_pack_b(const GemmB& b, int64_t n, int64_t k,
                 float* packed);  // [gemm_packed_b_floats(n, k)]

// The micro-kernel family in use: "avx512", "avx2" or "portable" (best the CPU supports, or the
// DSOCR_CPU_ISA environment variable). set_gemm_isa switches it (tests, benchmarks); it returns
// false and changes nothing for an unknown name or one the CPU lacks. Not while a GEMM runs.
const char* gemm_isa();
bool set_gemm_isa(const char* name);

}  // namespace dsocr

// =================================================================================================
// CUDA launchers (kernels/gemv.cu): the decoder's batch-1..8 linear layers on the GPU.
// y[m, n] = x[m, k] · W[n, k]ᵀ, W BF16 row-major (nn.Linear layout), FP32 accumulation.
// Bandwidth-bound (a weight byte is used m <= 8 times): every weight byte is read once with 16-byte
// loads, the activations stay in L1. m = 1 (or FP32 x): FFMA, a warp owns R output columns;
// m = 2..8 with BF16 x: tensor cores (mma.sync), a block owns 16. Long k is split over the warps
// of a block. Asynchronous on `stream`; return the launch error.
// =================================================================================================
#include <cuda_runtime_api.h>

namespace dsocr {

constexpr int kDecodeGemvMaxM = 8;  // rows of x per launch (decode batch)

// Up to kMaxParts weights stacked along n without a concatenated copy: output columns
// [0, rows[0]) come from w[0], the next rows[1] from w[1], ... (q, k, v -> one launch).
struct GemvWeights {
  static constexpr int kMaxParts = 4;
  const uint16_t* w[kMaxParts] = {};  // part p: [rows[p], ldw] BF16, device memory
  int64_t rows[kMaxParts] = {};
  int parts = 0;
};
inline GemvWeights gemv_weights(const uint16_t* w, int64_t n) {
  GemvWeights g;
  g.w[0] = w;
  g.rows[0] = n;
  g.parts = 1;
  return g;
}

enum class GemvEpilogue {
  kStoreF32,   // y (float*)    = x·Wᵀ
  kStoreBf16,  // y (uint16_t*) = bf16(x·Wᵀ)
  kAddBf16,    // y (uint16_t*) = bf16(y + x·Wᵀ): residual add into the BF16 stream, one rounding
};

// Optional launch shape (tests and benchmarks sweep it; null = the measured defaults).
struct GemvTuning {
  int rows_per_warp = 0;    // FFMA kernel, m == 1: R = 1, 2 or 4 output columns per warp
  int warps_per_block = 0;  // FFMA kernel without split-K: 1..8
  int split_k = 0;          // warps sharing one row group, splitting k: 1..8 (both kernels)
};

// PRECOND: 1 <= m <= kDecodeGemvMaxM; k % 8 == 0; ldx, ldw % 8 == 0 (BF16 x) / ldx % 4 == 0 (FP32
// x); x and every w 16-byte aligned; n = Σ rows >= 1; y does not alias x or W. Returns
// cudaErrorInvalidValue (nothing launched) when a precondition that can be checked fails.
cudaError_t gemv(const uint16_t* x,  // [m, ldx] BF16, columns 0..k-1 used
                 int64_t ldx,
                 const GemvWeights& w,  // Σ rows = n, each [rows, ldw] BF16
                 int64_t ldw,
                 void* y,  // [m, ldy]: float (kStoreF32) or BF16 bits, columns 0..n-1
                 int64_t ldy, int m, int64_t k, GemvEpilogue ep, cudaStream_t stream,
                 const GemvTuning* tuning = nullptr);
cudaError_t gemv(const float* x,  // [m, ldx] FP32
                 int64_t ldx, const GemvWeights& w, int64_t ldw, void* y, int64_t ldy, int m,
                 int64_t k, GemvEpilogue ep, cudaStream_t stream,
                 const GemvTuning* tuning = nullptr);

// Gated-MLP front half with the SiLU·mul epilogue (dense layer 0, swiglu.h):
//   act[t, j] = bf16( silu(x_t · gate_j) · (x_t · up_j) ),  silu(g) = g / (1 + exp(-g)), FP32.
// PRECOND: as gemv; gate and up both [inter, ldw].
cudaError_t gemv_swiglu(const uint16_t* x,  // [m, ldx] BF16
                        int64_t ldx,
                        const uint16_t* w_gate,  // [inter, ldw] BF16
                        const uint16_t* w_up,    // [inter, ldw] BF16
                        int64_t ldw,
                        uint16_t* act,  // [m, ldact] BF16, columns 0..inter-1
                        int64_t ldact, int m, int64_t inter, int64_t k, cudaStream_t stream);

}  // namespace dsocr
