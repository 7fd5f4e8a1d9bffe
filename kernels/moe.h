// Mixture-of-experts block of the DeepSeek-V2 decoder, layers 1..11 (../shared/MODEL.md §7.1,
// HF `MoEGate` + `DeepseekV2MoE.moe_infer`):
//   logits = x · Wgᵀ (float32) [T, 64];  p = softmax(logits) (float32)
//   top-6 of p per token, weights = p * routed_scale (1.0), NO renormalisation (sum < 1)
//   y = Σ_k w_k · expert_{idx_k}(x)  +  shared_experts(x)
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/swiglu.h"

namespace dsocr {

// Router: probs = softmax(x · w_routerᵀ), then top_k per token.
// Tie-breaking (torch.topk leaves it unspecified): higher probability first, equal
// probabilities by lower expert index. Output per token is sorted by descending probability.
// PRECOND: all pointers non-null; 1 <= top_k <= n_experts. Multithreaded over tokens.
void moe_router_ref(const float* x,            // [T, dim]
                    const uint16_t* w_router,  // [n_experts, dim] BF16 (mlp.gate.weight)
                    float* probs,              // [T, n_experts] out: softmax probabilities
                    int32_t* topk_idx,         // [T, top_k] out: expert ids
                    float* topk_w,             // [T, top_k] out: probs * routed_scale
                    int64_t T, int64_t dim, int n_experts, int top_k, float routed_scale);

// Floats of scratch moe_ref needs.
size_t moe_scratch_floats(int64_t T, int64_t dim, int64_t moe_inter, int64_t shared_inter);

// Routed experts + shared experts. Tokens are grouped by expert; each selected expert's SwiGLU
// runs once over its token group; the routed sum Σ_k w_k·expert(x) is accumulated in float32
// (experts in ascending id order), then the shared-expert output is added.
// experts[e] binds expert e's weights (from model.layers.N.mlp.experts.e.*); only the experts
// that appear in topk_idx are read. shared.* are the fused shared experts (inter = shared_inter).
// PRECOND: topk_idx values in [0, n_experts) and distinct per token (moe_router_ref output);
// y does not alias x or scratch; scratch holds moe_scratch_floats(...) floats.
void moe_ref(
    const float* x,             // [T, dim]
    const int32_t* topk_idx,    // [T, top_k]
    const float* topk_w,        // [T, top_k]
    const MlpWeights* experts,  // [n_experts]: gate/up [moe_inter, dim], down [dim, moe_inter]
    const MlpWeights& shared,   // gate/up [shared_inter, dim], down [dim, shared_inter]
    float* y,                   // [T, dim]
    float* scratch,             // [moe_scratch_floats(T, dim, moe_inter, shared_inter)]
    int64_t T, int64_t dim, int n_experts, int top_k, int64_t moe_inter, int64_t shared_inter);

}  // namespace dsocr

// =================================================================================================
// CUDA launchers (kernels/moe_decode.cu): router and the decode-time MoE (T <= 8 tokens), all
// routing on the device (expert ids are read from device memory: no host sync, graph-capturable).
// =================================================================================================
#include <cuda_runtime_api.h>

#include "kernels/linear.h"  // GemvEpilogue
#include "kernels/quant.h"   // WeightFormat

namespace dsocr {

constexpr int kMoeMaxExperts = 64;
constexpr int kMoeMaxTopK = 8;
constexpr int kMoeDecodeMaxT = 8;

// Router: logits = x · w_routerᵀ in FP32 (BF16 inputs), probs = softmax (FP32), top_k of probs
// with the tie rule of moe_router_ref (equal probabilities -> lower expert id first), output
// sorted by descending probability; topk_w = p · routed_scale, no renormalisation.
// One block per token. PRECOND: 1 <= n_experts <= kMoeMaxExperts; 1 <= top_k <= min(n_experts,
// kMoeMaxTopK); dim % 8 == 0; ldx % 8 == 0; x, w_router 16-byte aligned.
cudaError_t moe_router(const uint16_t* x,  // [T, ldx] BF16 (post-attention-norm hidden)
                       int64_t ldx,
                       const uint16_t* w_router,  // [n_experts, dim] BF16 (mlp.gate.weight)
                       float* probs,              // [T, n_experts] out, or null
                       int32_t* topk_idx,         // [T, top_k] out
                       float* topk_w,             // [T, top_k] out
                       int T, int dim, int n_experts, int top_k, float routed_scale,
                       cudaStream_t stream);

// The softmax and top-k of moe_router (same rule, same code) over logits computed elsewhere: a
// prefill's [T, 64] router logits are one BF16 GEMM with FP32 output (GemmRunner, tensor cores),
// where moe_router's per-token GEMV read the 164 KB weight once per token (38.6 µs for a
// 912-token layer on the H200). PRECOND as moe_router; ld >= n_experts.
cudaError_t moe_topk(const float* logits,  // [T, ld] FP32
                     int64_t ld,
                     float* probs,       // [T, n_experts] out, or null
                     int32_t* topk_idx,  // [T, top_k] out
                     float* topk_w,      // [T, top_k] out
                     int T, int n_experts, int top_k, float routed_scale, cudaStream_t stream);

// Scales of a quantized SwiGLU MLP's three weights (kernels/quant.h layouts; null for BF16).
struct MlpScales {
  const uint16_t* gate = nullptr;  // [inter, 1] (INT8) or [inter, dim / group] (INT4), BF16
  const uint16_t* up = nullptr;
  const uint16_t* down = nullptr;  // [dim, 1] or [dim, inter / group]
};

// Device pointers of one MoE layer's weights (passed by value as a kernel argument, ~3.2 KB).
// Weight-only quantization (kernels/quant.h): with expert_format / shared_format other than BF16
// the MlpWeights pointers hold the quantized values (INT8 [n, k] or packed INT4 nibbles [n, k/2],
// cast to uint16_t*; only the address is used) and the *_scales their scales. The routed experts
// share one format and group, the shared experts another. moe_decode supports the combinations
// (routed, shared) = (bf16, bf16), (int8, int8), (int4, int4), (int4, int8) (moe_decode_supports);
// moe_prefill the same pairs (its grouped GEMMs dequantize each weight tile to BF16 in shared
// memory: bf16(q·scale), the value dequantize_bf16 gives, then the BF16 tensor-core loop).
struct MoeDeviceWeights {
  MlpWeights experts[kMoeMaxExperts];  // gate/up [moe_inter, dim], down [dim, moe_inter]
  MlpWeights shared;                   // gate/up [shared_inter, dim], down [dim, shared_inter]
  MlpScales expert_scales[kMoeMaxExperts];
  MlpScales shared_scales;
  WeightFormat expert_format = WeightFormat::kBf16;
  WeightFormat shared_format = WeightFormat::kBf16;
  int expert_group = 0;  // INT4 group of the routed experts (64 or 128)
  int shared_group = 0;
};
// Whether moe_decode (and moe_prefill) have kernels for this (routed, shared) format pair.
bool moe_decode_supports(WeightFormat experts, WeightFormat shared);

// Bytes of scratch moe_decode needs (the SwiGLU activations, BF16).
size_t moe_decode_workspace_bytes(int T, int top_k, int64_t moe_inter, int64_t shared_inter);

// Decode MoE, two launches, each weight byte read once (an expert chosen by several tokens is
// read once for all of them):
//  1. gate+up of the distinct chosen experts and of the shared experts in one GEMV pass:
//     act = bf16(silu(x·gateᵀ) · (x·upᵀ));
//  2. down projections of the same experts; per output column, Σ_k w_k·down_k(act_k) +
//     shared_down(act_sh) in FP32, then the epilogue: kAddBf16 adds it into y (the BF16 residual
//     stream, one rounding), kStoreF32 / kStoreBf16 write it.
// PRECOND: 1 <= T <= kMoeDecodeMaxT; topk_idx values in [0, n_experts), distinct per token (ids out
// of range are skipped, their output left unwritten); dim, moe_inter, shared_inter multiples of 8;
// ldx, ldy as gemv; workspace holds moe_decode_workspace_bytes(...), 16-byte aligned; y does not
// alias x.
cudaError_t moe_decode(const uint16_t* x,  // [T, ldx] BF16
                       int64_t ldx,
                       const int32_t* topk_idx,    // [T, top_k] device (moe_router output)
                       const float* topk_w,        // [T, top_k] device
                       const MoeDeviceWeights& w,  // device pointers
                       void* y,                    // [T, ldy]: float or BF16 per `ep`
                       int64_t ldy, GemvEpilogue ep,
                       void* workspace,  // [moe_decode_workspace_bytes(...)]
                       int T, int dim, int n_experts, int top_k, int moe_inter, int shared_inter,
                       cudaStream_t stream);

// The two launches of moe_decode, separately (benchmarks; a caller that wants work between them).
// moe_decode == moe_decode_gate_up then moe_decode_down on the same workspace.
// PRECOND (down): the launch before it on the stream is moe_decode_gate_up of the same routing
// (it reads topk_idx / topk_w before waiting on its predecessor: kernels/launch.cuh, "two kernels
// back"); the benchmark's repeated down launches reread a routing written long before.
cudaError_t moe_decode_gate_up(const uint16_t* x, int64_t ldx, const int32_t* topk_idx,
                               const MoeDeviceWeights& w, void* workspace, int T, int dim,
                               int n_experts, int top_k, int moe_inter, int shared_inter,
                               cudaStream_t stream);
cudaError_t moe_decode_down(const int32_t* topk_idx, const float* topk_w, const MoeDeviceWeights& w,
                            void* y, int64_t ldy, GemvEpilogue ep, const void* workspace, int T,
                            int dim, int n_experts, int top_k, int moe_inter, int shared_inter,
                            cudaStream_t stream);

}  // namespace dsocr

// =================================================================================================
// CUDA launchers (kernels/moe_prefill.cu): the MoE for a prefill chunk (any T), grouped GEMMs on
// tensor cores; routing on the device as in moe_decode (no host sync, graph-capturable).
// =================================================================================================
namespace dsocr {

// Bytes of scratch moe_prefill needs for T tokens (routing, expert-sorted activations, FP32
// per-(token, k) expert outputs).
size_t moe_prefill_workspace_bytes(int T, int top_k, int n_experts, int64_t dim, int64_t moe_inter,
                                   int64_t shared_inter);

// Prefill MoE, four launches: (1) route: rows per expert, an expert-sorted list of (token, k)
// slots (ascending token within an expert) and the GEMM tile lists; (2) grouped GEMM gate+up over
// every (expert, token group) and the shared experts (a group of all T tokens, weight 1):
// act = bf16(silu(x·gateᵀ)·(x·upᵀ)); (3) grouped GEMM down -> FP32 per (token, k); (4) combine:
// per token Σ_k w_k·out_k (k = 0..top_k-1) + out_shared in FP32, then the epilogue as moe_decode
// (kAddBf16 adds into y, the BF16 residual stream, with one rounding; kStoreF32 / kStoreBf16).
// PRECOND: T >= 1; 1 <= n_experts <= kMoeMaxExperts; 1 <= top_k <= min(n_experts, kMoeMaxTopK);
// topk_idx values in [0, n_experts) (ids out of range are skipped: they add nothing); dim,
// moe_inter, shared_inter multiples of 32; ldx % 8 == 0, ldx >= dim, ldy >= dim; x, weights and
// workspace 16-byte aligned; workspace holds moe_prefill_workspace_bytes(...); y does not alias x.
// Quantized weights: moe_decode_supports(expert_format, shared_format); check_quant_shape ok for
// every gate/up [inter, dim] and down [dim, inter]; scales non-null. With quantized experts the
// result differs from moe_decode's by the BF16 rounding of each dequantized weight (moe_decode
// multiplies by the scale in FP32), ~2^-9 relative per weight.
// Optional launch shape (tests and benchmarks sweep it; null = the measured default: 128 rows,
// the wgmma tile on sm_90a).
constexpr int kMoePrefillDefaultBlockRows = 128;
struct MoePrefillTuning {
  int block_rows = 0;  // tokens per grouped-GEMM tile: 64 or 128 (0 = default)
};


// One pass of a prefill MoE split into several (offload streaming, runtime/expert_cache.h: the
// experts already on the GPU first, then the ones copied in while that pass runs): the grouped
// GEMMs run only the groups selected here, `route` runs launch 1, `combine` launch 4. The passes
// of one routing on one workspace, in stream order, give moe_prefill's result bit for bit when
// the first routes, the last combines, and every chosen expert and the shared MLP run in exactly
// one pass (each group's rows are computed by the same tiles in any pass). Weights are checked
// only for the groups a pass runs; the others may hold any pointer. null = everything.
struct MoePrefillPass {
  uint64_t experts = ~0ull;  // bit e: routed expert e
  bool shared = true;        // the shared MLP
  bool route = true;
  bool combine = true;
};

cudaError_t moe_prefill(const uint16_t* x,  // [T, ldx] BF16
                        int64_t ldx,
                        const int32_t* topk_idx,    // [T, top_k] device (moe_router output)
                        const float* topk_w,        // [T, top_k] device
                        const MoeDeviceWeights& w,  // device pointers
                        void* y,                    // [T, ldy]: float or BF16 per `ep`
                        int64_t ldy, GemvEpilogue ep,
                        void* workspace,  // [moe_prefill_workspace_bytes(...)]
                        int T, int dim, int n_experts, int top_k, int moe_inter, int shared_inter,
                        cudaStream_t stream, const MoePrefillTuning* tuning = nullptr,
                        const MoePrefillPass* pass = nullptr);

}  // namespace dsocr
