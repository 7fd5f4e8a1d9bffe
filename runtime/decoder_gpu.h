// The DeepSeek-3B-MoE decoder on the GPU (../shared/MODEL.md §7, DESIGN.md §3, §5, §6).
//
// One object serves one sequence at a time (batch 1) over the paged KV cache:
//   begin(prompt ids)      reserve KV pages, load the id history, embed the text rows
//   input_rows()           the prompt's embedding rows; the vision pass writes the image rows here
//   prefill(T)             12 layers over rows 0..T-1 (GEMMs, causal flash attention, grouped MoE),
//                          K/V into the pages, logits of the last row
//   generate(on_token)     greedy decoding: each step is one replayed CUDA graph (embed, 12 layers,
//                          lm_head GEMV, n-gram ban, argmax, accept); the host only reads the new
//                          token, one step behind the device
//   forced_step(id)        one step on a given token (teacher forcing for the golden checks)
//   end()                  return the pages
// Numerics: BF16 weights and activations with FP32 accumulation, FP32 router logits and softmax,
// and an FP32 residual stream (the official model rounds it to BF16 after every sublayer; keeping
// it in FP32 is what puts this path reliably below the official BF16 error on the goldens).
// Every buffer comes from three pool regions given at creation ("decoder" activations, "kv_cache",
// "sampling"); nothing is allocated afterwards except the graph itself.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/moe.h"  // MlpScales
#include "kernels/ngram.h"
#include "loader/config.h"
#include "loader/status.h"
#include "runtime/decoder_cpu.h"  // HiddenTap
#include "runtime/kv_cache.h"
#include "runtime/model_weights.h"
#include "runtime/quant_policy.h"

namespace dsocr {

struct GpuGeneration {
  std::vector<int32_t> ids;  // generated ids (EOS included when emitted)
  DecodeStop stop = kRunning;  // kRunning: on_token asked to stop
  double decode_ms = 0;      // wall time of the decode loop (after the first token)
};

// Offload streaming (runtime/expert_cache.h): a prefill's MoE layer (T > kMoeDecodeMaxT rows) goes
// through the streamer once its router has run. prefill_moe may read topk_idx (device, [T, top_k],
// written on the decoder's stream) and must enqueue the layer's MoE through `run`, as one call with
// MoePrefillPass{} or as passes that together run every group once (kernels/moe.h MoePrefillPass),
// with `w` or a copy whose routed experts point elsewhere (bytes equal to those `w` points at).
class MoeStreamer {
 public:
  using RunPass = std::function<Status(const MoeDeviceWeights& w, const MoePrefillPass& pass)>;
  virtual ~MoeStreamer() = default;
  virtual Status prefill_moe(int layer, const int32_t* topk_idx, int64_t T,
                             const MoeDeviceWeights& w, const RunPass& run) = 0;
};

class GpuDecoder {
 public:
  // Bytes of the "decoder" region for prefills of up to max_rows rows; of the "sampling" region.
  static uint64_t workspace_bytes(const ModelConfig& cfg, int64_t max_rows);
  static uint64_t sampling_bytes(const ModelConfig& cfg);

  // w: device pointers (bind_weights over the pool). Regions: device memory of the sizes above;
  // kv: the "kv_cache" region (KvGeometry::fit decides the pages). The stream is used for all work.
  // quant: the policy the weights were stored with (runtime/quant_policy.h; each decoder linear
  // weight's slot holds values + scales for its stored_format): quantized weights run the
  // kernels/quant.h GEMVs and the quantized moe_decode; prefill dequantizes attention / dense
  // weights into the MoE scratch block by block for cuBLASLt and runs a quantized MoE through
  // moe_prefill (its grouped GEMMs dequantize weight tiles in shared memory). A combination the
  // kernels lack is a one-line error.
  static Expected<std::unique_ptr<GpuDecoder>> create(const ModelConfig& cfg,
                                                      const DecoderWeights& w, int64_t max_rows,
                                                      uint8_t* work, uint64_t work_bytes,
                                                      uint8_t* kv, uint64_t kv_bytes,
                                                      uint8_t* sampling, uint64_t sampling_bytes,
                                                      cudaStream_t stream,
                                                      const QuantPolicy& quant = {});
  ~GpuDecoder();

  // Starts a sequence: checks the ids, reserves KV pages for prompt + max_new tokens (one-line
  // error naming the limit otherwise), uploads the history and page table, and embeds every
  // prompt row from the token table (image rows included: overwrite them afterwards).
  // `ban`: the n-gram rule for generate(); stop_at_eos = false runs to max_new (benchmarks).
  Status begin(const std::vector<int32_t>& prompt, int max_new, const NGramBan& ban,
               bool stop_at_eos = true);
  // [max_rows, dim] BF16 device rows of the prompt's input embeddings. Device code writing them
  // must run on the decoder's stream (the encoder does); host data goes through write_rows.
  uint16_t* input_rows() const;
  // Copies n host BF16 rows into input rows row0..row0+n-1, ordered on the decoder's stream and
  // complete on return. (A plain cudaMemcpy from pageable memory may return before its DMA lands,
  // and is not ordered with the decoder's non-blocking stream: prefill would race it.)
  Status write_rows(int64_t row0, const uint16_t* host, int64_t n);
  int64_t max_rows() const;

  // Runs the prompt (rows 0..T-1 of input_rows(), T = prompt length). logits_last (host, [vocab])
  // and tap are optional (tap positions index the prompt).
  Status prefill(float* logits_last = nullptr, HiddenTap* tap = nullptr);

  // Greedy generation from the prefill's logits until EOS, max_new or the capacity. on_token gets
  // each id as the host learns it; returning false stops early.
  Expected<GpuGeneration> generate(const std::function<bool(int32_t)>& on_token = {});

  // Teacher forcing after prefill: feeds `token` at the next position and writes the logits
  // (host, [vocab]). Not mixed with generate() in one sequence.
  Status forced_step(int32_t token, float* logits);

  Status end();

  // Offload hooks (runtime/expert_cache.h). set_expert points routed expert `expert` of MoE layer
  // `layer` at `w` and, for quantized experts, its scales at `scales` (an expert-cache slot, or
  // the mapped host copy; null scales for BF16 experts) for every launch from now on;
  // launches already enqueued keep the pointers they were given, so the caller orders its copies
  // after them on the stream. The decode graph holds the pointers by value (MoeDeviceWeights is a
  // kernel argument) and is captured again at the next generate() after any change.
  Status set_expert(int layer, int expert, const MlpWeights& w, const MlpScales& scales = {});
  // From the next forward on, every MoE layer l adds its router's top-k ids to
  // counts[l * n_experts + e] (device int32, [n_layers, n_experts]); null turns counting off.
  void set_expert_counts(int32_t* counts);
  // From the next prefill on, its MoE layers go through `streamer` (null: moe_prefill directly).
  void set_moe_streamer(MoeStreamer* streamer);

  struct Impl;

 private:
  explicit GpuDecoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsocr
