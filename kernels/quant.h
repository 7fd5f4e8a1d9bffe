// Weight-only quantization (DESIGN.md §7): the stored formats, their byte layouts, and the CPU
// float32 references that define what the CUDA kernels must compute. Activations stay BF16/FP32,
// accumulation FP32; only nn.Linear weights W [n, k] (n outputs, k inputs) are quantized.
//
// ---- INT8, W8A16: symmetric, one scale per output row ----
//   amax_r  = max_j |w[r, j]|                                    (FP32, exact)
//   scale_r = bf16_rne(amax_r / 127.0f)                          (FP32 division, then RNE to BF16)
//   q[r, j] = clamp(rint(w[r, j] / scale_r), -127, 127)          (FP32 division, ties to even)
//   w'      = q · scale_r                                        (exact in FP32: 7 × 8 bits)
// A row whose scale is 0 (all-zero row, or amax so small that amax/127 rounds to BF16 zero)
// stores q = 0. -128 is never produced: the grid is symmetric, so negating W negates q exactly.
// The scale is rounded to BF16 *before* q is computed, so q is the nearest grid point of the scale
// actually stored. A scale rounded down (relative error ≤ 2^-8) puts |w|/scale at most
// 127/(1 − 2^-8) ≈ 127.498 < 127.5, so rounding alone stays inside the grid (the clamp is a
// guard) and |w − w'| ≤ scale/2 for every element, up to the FP32 rounding of the division
// (≤ 127·2^-24·scale). Example: amax 700 -> 700/127 = 5.512 -> scale 5.5, 700/5.5 = 127.27 -> 127.
//   Stored: q    int8  [n, k]      row-major, two's complement (row r at byte r·k)
//           scale bf16 [n]
//
// ---- INT4, W4A16: symmetric, one scale per group of G = 128 (or 64) inputs of a row ----
//   amax_g  = max over the group |w|;  scale_g = bf16_rne(amax_g / 7.0f)
//   q       = clamp(rint(w / scale_g), -7, 7)     (same rules as INT8; scale 0 -> q = 0)
//   stored as the unsigned nibble u = q + 8 in [1, 15] (offset binary; u = 0 is never written)
//   w'      = (u − 8) · scale_g
// Why [-7, 7] and not [-8, 7]: with scale = amax/7 rounding never reaches -8, and a grid that is
// symmetric around an exact zero keeps zeros zero and treats positive and negative outliers
// alike; the 16th level would only help an asymmetric (zero-point) scheme, which is not used (no
// evidence yet that it helps these weights; DESIGN.md §7 leaves it optional).
//   Stored: u    [n, k/2] bytes, row-major (row r at byte r·k/2), 8 values per 32-bit word:
//           scale bf16 [n, k/G]     (scale of row r, group g at r·(k/G) + g)
//
//   One little-endian 32-bit word holds columns c..c+7 of a row (c % 8 == 0), interleaved so that
//   one AND + one OR turns a nibble pair into a BF16 pair in k order (see below):
//
//     bits   31..28 27..24 23..20 19..16 | 15..12 11..8  7..4   3..0
//     column  c+7    c+5    c+3    c+1   |  c+6    c+4   c+2    c+0
//     nibble   7      6      5      4    |   3      2     1      0      nibble j holds column
//                                                                      c + kInt4Perm[j]
//     bytes: [0] = c+0 | c+2<<4   [1] = c+4 | c+6<<4   [2] = c+1 | c+3<<4   [3] = c+5 | c+7<<4
//
//   Dequantisation on the GPU, pair i = columns (c+2i, c+2i+1), i = 0..3:
//     t = (word >> 4i) & 0x000F000F      -> nibble i in bits 0..3, nibble i+4 in bits 16..19
//     t |= 0x43004300                    -> BF16 pair (128 + u_lo, 128 + u_hi), exact (ulp 1)
//     pair = t − bf16x2(136, 136)        -> (q_lo, q_hi) exact, then · scale (one HFMA2/HMUL2)
//   so 8 weights cost 4 shift/AND/OR (LOP3) + 4 BF16x2 SUB, and the pairs come out as the
//   consecutive-k pairs that a BF16 mma.sync B fragment register holds. A 16-byte load brings 32
//   consecutive columns of one row (4 words), so a warp reading 512 consecutive bytes of a row is
//   fully coalesced, like the BF16 GEMV (kernels/linear.h). Scales are a [n, k/G] table read once
//   per group. (Marlin-style tile shuffles that also pre-arrange rows for mma fragments are not
//   used: they need one layout per GEMM tile shape; prefill dequantises tiles into shared memory.)
//
// Shape rules (checked by check_quant_shape, PRECOND of every function below):
//   INT8: k % 16 == 0 (rows start 16-byte aligned); INT4: G ∈ {64, 128}, k % G == 0 (so k % 8 ==
//   0 and rows are 32-byte multiples). Every decoder linear weight qualifies, except that
//   layer 0's down_proj (k = 6848 = 53.5 × 128) needs G = 64; runtime/quant_policy.h resolves it.
//   n, k >= 1. Inputs are finite (the checkpoint's BF16 weights widened to float).
#pragma once

#include <cstdint>

#include "loader/status.h"

namespace dsocr {

// How a weight tensor is stored in device memory.
enum class WeightFormat : uint8_t {
  kBf16,  // as in the checkpoint
  kInt8,  // per-row scales
  kInt4,  // per-group scales, group 128 or 64
};
const char* weight_format_name(WeightFormat f);  // "bf16", "int8", "int4"

constexpr int kInt4GroupDefault = 128;
constexpr int kInt4GroupSmall = 64;
constexpr int kInt8Max = 127;  // q in [-127, 127]
constexpr int kInt4Max = 7;    // q in [-7, 7], stored as q + kInt4Offset
constexpr int kInt4Offset = 8;
// Nibble j of a packed word holds column c + kInt4Perm[j] (the diagram above).
constexpr int kInt4Perm[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Bytes of the quantized values and of the scales of a [n, k] weight (group: INT4 only). BF16:
// values n·k·2, no scales. The slot of a quantized tensor holds the values, then the scales
// (at byte quant_value_bytes(...), 16-byte aligned under the shape rules).
constexpr uint64_t quant_value_bytes(WeightFormat f, int64_t n, int64_t k) {
  const uint64_t nk = static_cast<uint64_t>(n) * static_cast<uint64_t>(k);
  return f == WeightFormat::kBf16 ? nk * 2 : f == WeightFormat::kInt8 ? nk : nk / 2;
}
constexpr uint64_t quant_scale_bytes(WeightFormat f, int64_t n, int64_t k, int group) {
  return f == WeightFormat::kBf16 ? 0
         : f == WeightFormat::kInt8
             ? static_cast<uint64_t>(n) * 2
             : static_cast<uint64_t>(n) * static_cast<uint64_t>(k / group) * 2;
}
constexpr uint64_t quant_bytes(WeightFormat f, int64_t n, int64_t k, int group) {
  return quant_value_bytes(f, n, k) + quant_scale_bytes(f, n, k, group);
}

// The shape rules above, as a one-line error naming the shape, the format and the rule.
Status check_quant_shape(WeightFormat f, int64_t n, int64_t k, int group);

// ---- CPU float32 references (kernels/quant_ref.cpp), multithreaded over rows ----

// PRECOND: check_quant_shape(kInt8, n, k, 0) ok; w finite; pointers non-null, no aliasing.
void quantize_int8_ref(const float* w,   // [n, k]
                       int8_t* q,        // [n, k] out
                       uint16_t* scale,  // [n] out, BF16 bits
                       int64_t n, int64_t k);
// w' = q · scale. PRECOND: as quantize_int8_ref.
void dequantize_int8_ref(const int8_t* q,        // [n, k]
                         const uint16_t* scale,  // [n] BF16
                         float* w,               // [n, k] out
                         int64_t n, int64_t k);

// PRECOND: check_quant_shape(kInt4, n, k, group) ok; w finite; pointers non-null, no aliasing.
void quantize_int4_ref(const float* w,   // [n, k]
                       uint8_t* packed,  // [n, k/2] out, the interleaved nibble layout above
                       uint16_t* scale,  // [n, k/group] out, BF16 bits
                       int64_t n, int64_t k, int group);
// w' = (u − 8) · scale. PRECOND: as quantize_int4_ref.
void dequantize_int4_ref(const uint8_t* packed,  // [n, k/2]
                         const uint16_t* scale,  // [n, k/group] BF16
                         float* w,               // [n, k] out
                         int64_t n, int64_t k, int group);

// The GEMV contract of the future W8A16 / W4A16 CUDA kernels: y = x · dequant(W)ᵀ, i.e.
//   y[i, r] = Σ_j x[i, j] · w'[r, j]   with w' exactly as dequantize_*_ref gives it,
// accumulated in FP32 (the order of the sum is not part of the contract: kernels match this
// reference within FP32 accumulation error, not bitwise). Any m (the CUDA kernels: m <= 8).
// PRECOND: as the quantize functions; m >= 1; y does not alias x.
void gemv_int8_ref(const float* x,         // [m, k]
                   const int8_t* q,        // [n, k]
                   const uint16_t* scale,  // [n] BF16
                   float* y,               // [m, n] out
                   int64_t m, int64_t n, int64_t k);
void gemv_int4_ref(const float* x,         // [m, k]
                   const uint8_t* packed,  // [n, k/2]
                   const uint16_t* scale,  // [n, k/group] BF16
                   float* y,               // [m, n] out
                   int64_t m, int64_t n, int64_t k, int group);

}  // namespace dsocr

// =================================================================================================
// CUDA launchers: the load-time quantizer and the prefill dequantizer (kernels/quant.cu), the
// decode GEMVs over quantized weights (kernels/gemv_quant.cu). Quantized weights are dense: row r
// of a [n, k] weight starts at byte r·quant_value_bytes(f, 1, k), its scales at r (INT8) or
// r·(k/G) (INT4); there is no row stride. Asynchronous on `stream`; every launcher returns the
// launch error, or cudaErrorInvalidValue (nothing launched) when a checkable PRECOND fails.
// =================================================================================================
#include <cuda_runtime_api.h>

#include "kernels/linear.h"  // GemvEpilogue, kDecodeGemvMaxM

namespace dsocr {

// One device weight [n, k] in any format: values at `q` (BF16 [n, k], int8 [n, k] or packed
// nibbles [n, k/2]), scales at `scale` (BF16 [n] or [n, k/group]; null for BF16).
struct QWeight {
  const void* q = nullptr;
  const uint16_t* scale = nullptr;
  WeightFormat format = WeightFormat::kBf16;
  int group = 0;  // INT4 only
};
// The weight stored in a planner slot (runtime/planner.h): values, then the scales at byte
// quant_value_bytes(f, n, k).
inline QWeight qweight_in_slot(const void* slot, WeightFormat f, int64_t n, int64_t k, int group) {
  QWeight w;
  w.q = slot;
  w.format = f;
  w.group = f == WeightFormat::kInt4 ? group : 0;
  if (f != WeightFormat::kBf16)
    w.scale = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(slot) +
                                                quant_value_bytes(f, n, k));
  return w;
}

// ---- Quantizer (load time): BF16 on the device -> the formats above, bit-identical to
// quantize_int8_ref / quantize_int4_ref on the widened weight (same FP32 division, the scale
// rounded to BF16 first, q = rint(w / scale) ties to even, clamp; a zero scale gives q = 0).
// PRECOND: check_quant_shape ok; w 16-byte aligned, q 16-byte aligned (INT8: 8-byte), no aliasing.
cudaError_t quantize_int8(const uint16_t* w,  // [n, k] BF16
                          int8_t* q,          // [n, k] out
                          uint16_t* scale,    // [n] out
                          int64_t n, int64_t k, cudaStream_t stream);
cudaError_t quantize_int4(const uint16_t* w,  // [n, k] BF16
                          uint8_t* packed,    // [n, k/2] out (interleaved nibbles)
                          uint16_t* scale,    // [n, k/group] out
                          int64_t n, int64_t k, int group, cudaStream_t stream);

// ---- Dequantizer (prefill, until a fused dequant-in-shared-memory GEMM exists): rows
// [r0, r0 + rows) of w as BF16, out[i, j] = bf16(w'[r0 + i, j]). Note: q·scale has up to 15
// significant bits (INT8) or 11 (INT4), so this rounds each weight once more (relative 2^-9).
// PRECOND: w quantized (INT8/INT4) with check_quant_shape ok; 0 <= r0, rows >= 1; out 16-byte
// aligned, [rows, k] contiguous.
cudaError_t dequantize_bf16(const QWeight& w, int64_t k, int64_t r0, int64_t rows,
                            uint16_t* out,  // [rows, k] BF16
                            cudaStream_t stream);

// ---- Decode GEMV over quantized weights: y[m, n] = x[m, k] · w'[n, k]ᵀ, FP32 accumulation, the
// contract of gemv_int8_ref / gemv_int4_ref (and of gemv in linear.h for the epilogues and parts).
// Every packed byte is read once with 16-byte streaming loads (16 INT8 or 32 INT4 values per load),
// the first loads issued before the PDL wait; INT4 nibbles become BF16 pairs with one LOP3 + one
// BF16x2 SUB (the trick above); each 16/32-value partial sum is multiplied by its scale once.
// FFMA at every m (a tensor-core path for m >= 2, as the BF16 gemv has, is a later step).
// All parts share one format (q|k|v are one tensor class).
struct QGemvWeights {
  static constexpr int kMaxParts = 4;
  const void* q[kMaxParts] = {};           // part p: values of [rows[p], k]
  const uint16_t* scale[kMaxParts] = {};   // part p: its scales
  int64_t rows[kMaxParts] = {};
  int parts = 0;
  WeightFormat format = WeightFormat::kInt8;  // kInt8 or kInt4
  int group = 0;                              // INT4
};
inline QGemvWeights qgemv_weights(const QWeight& w, int64_t n) {
  QGemvWeights g;
  g.q[0] = w.q, g.scale[0] = w.scale, g.rows[0] = n, g.parts = 1;
  g.format = w.format, g.group = w.group;
  return g;
}

// PRECOND: 1 <= m <= kDecodeGemvMaxM; check_quant_shape(format, rows, k, group) ok; ldx % 8 == 0,
// ldx >= k; x, every q 16-byte aligned; y does not alias x or w.
cudaError_t gemv_quant(const uint16_t* x,  // [m, ldx] BF16
                       int64_t ldx,
                       const QGemvWeights& w,  // Σ rows = n
                       void* y,                // [m, ldy]: float (kStoreF32) or BF16
                       int64_t ldy, int m, int64_t k, GemvEpilogue ep, cudaStream_t stream);

// Gated-MLP front half (as gemv_swiglu): act = bf16(silu(x·gate'ᵀ) · (x·up'ᵀ)).
// PRECOND: as gemv_quant; gate and up [inter, k] in the same format and group.
cudaError_t gemv_quant_swiglu(const uint16_t* x,  // [m, ldx] BF16
                              int64_t ldx, const QWeight& gate, const QWeight& up,
                              uint16_t* act,  // [m, ldact] BF16
                              int64_t ldact, int m, int64_t inter, int64_t k,
                              cudaStream_t stream);

}  // namespace dsocr
