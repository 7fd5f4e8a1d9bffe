// The routed experts of an offload plan (runtime/planner.h "Offload", DESIGN.md §8): every expert
// in the pinned, mapped host pool, and the hottest ones also in the device pool's "expert_cache"
// region, N slots per MoE layer.
//
// Scheme: the decoder's per-layer expert table (MoeDeviceWeights, GpuDecoder::set_expert) points a
// cached expert at its slot and every other one at its mapped host copy. The MoE kernels read
// either address the same way (zero-copy over PCIe for the host ones), so the arithmetic is the
// same byte for byte wherever an expert lives: offload changes speed, never the output.
// Quantized experts (issue 10) live and move in their stored form: each part's packed values then
// its BF16 scales (kernels/quant.h qweight_in_slot), in the host pool (runtime/weights_quant.h
// quantizes them there at load) and in a slot part alike, and set_expert gets the scale pointers
// beside the weight pointers.
//
// Refill (refill(), between pages, outside any graph): every forward counts its router's choices
// into a device histogram (kernels/expert_cache.h; the decode graph includes the counting launch);
// refill() reads and clears it, keeps a decayed score per expert (score = score / 2 + count), and
// gives the slots to the highest scores (choose_cached_experts). Copies run on a copy stream that
// first waits for everything already enqueued on the model's stream (a slot is only overwritten
// once no queued kernel can read it); the model's stream then waits for the copies, and the new
// pointers are set in the decoder's table, which makes the next generate() capture its graph again
// (the graph holds MoeDeviceWeights by value). Refill copies already run beside the next page's
// host preprocessing (~11 ms for a Gundam page); making them wait for the next forward instead of
// blocking the model's stream at once gave nothing (measured, bench/RESULTS.md session 6).
//
// Prefill streaming (MoeStreamer, on unless DSOCR_PREFILL_STREAM=0): in a prefill (T > 8 rows)
// each MoE layer's router ids come to the host (one sync per MoE layer); the chosen experts that
// are not cached are copied into the plan's 4 staging slots, two at a time, double-buffered: while
// the model's stream multiplies one pair, the copy engine fills the other half; and the layer's MoE
// runs as passes (kernels/moe.h MoePrefillPass): first the cached experts and the shared MLP,
// overlapping the first copies, then each staged pair as it lands, the last pass combining. Each
// uncached expert crosses PCIe once per layer, by the copy engine, where the zero-copy GEMM
// re-read it for every 128-row tile. The decode step (T <= 8, a CUDA graph) still reads uncached
// experts zero-copy: its choices are known only on the device, one layer ahead of their use.
// stream_stats() reports the copy time and how much of it ran while a pass was computing, from
// CUDA events around every copy and pass.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "loader/config.h"
#include "loader/status.h"
#include "runtime/decoder_gpu.h"
#include "runtime/planner.h"
#include "runtime/pool.h"

namespace dsocr {

// The experts the slots hold after a refill. current[s]: the expert in slot s, or -1 (empty).
// The `current.size()` experts with the highest score win; equal scores go to an expert already
// cached, then to the lower id. A winner already cached keeps its slot; the others take the freed
// slots in slot order. PRECOND: current's experts distinct and in [0, score.size()).
std::vector<int> choose_cached_experts(const std::vector<int>& current,
                                       const std::vector<double>& score);

class ExpertCache : public MoeStreamer {
 public:
  // region: the pool's "expert_cache" region (plan.expert_cache's layout); host: the host pool
  // holding every routed expert of plan.expert_cache.layers; stream: the model's stream. Fills
  // the slots with the lowest expert ids of each layer (no counts yet), points the decoder at them
  // and turns its counting on.
  static Expected<std::unique_ptr<ExpertCache>> create(const ModelConfig& cfg,
                                                       const MemoryPlan& plan, uint8_t* region,
                                                       const HostPool& host, GpuDecoder& decoder,
                                                       cudaStream_t stream);
  ~ExpertCache() override;

  Status refill();

  // MoeStreamer (decoder_gpu.h): a prefill MoE layer, its uncached experts streamed (above).
  Status prefill_moe(int layer, const int32_t* topk_idx, int64_t T, const MoeDeviceWeights& w,
                     const RunPass& run) override;
  bool streaming() const { return streaming_; }
  // Streaming on (the default unless DSOCR_PREFILL_STREAM=0) or off (zero-copy prefill reads):
  // the same bits either way, only the speed differs.
  void set_streaming(bool on) { streaming_ = on && plan_.stage_slots >= 2; }

  // Prefill streaming since creation.
  struct StreamStats {
    int layers = 0;        // MoE layers that streamed (had chosen experts not cached)
    int passes = 0;        // moe_prefill passes of those layers
    int64_t experts = 0;   // experts copied into staging slots
    uint64_t bytes = 0;    // their bytes
    double copy_ms = 0;    // copy engine busy: sum of the copy intervals
    double hidden_ms = 0;  // of that, while the model's stream ran a pass of the same layer
  };
  // Waits for the work enqueued so far on the model's stream (and thus every copy it consumed).
  Expected<StreamStats> stream_stats();

  const ExpertCachePlan& plan() const { return plan_; }
  // The expert in each slot of MoE layer `layer` (model layer number), -1 for an empty slot.
  const std::vector<int>& slot_experts(int layer) const;
  // Device address of a slot.
  uint8_t* slot(int layer, int s) const;
  int refills() const { return refills_; }          // refill() calls so far
  int64_t experts_moved() const { return moved_; }  // experts copied into slots, creation included
  uint64_t bytes_moved() const { return bytes_moved_; }

  struct Layer;

 private:
  ExpertCache() = default;
  const Layer* find_layer(int layer) const;  // model layer number -> its cached layer, or null
  Status assign(const std::vector<std::vector<int>>& next);  // per cached layer: slot -> expert
  Status harvest();                    // folds the timed intervals of finished layers into stats_
  Expected<size_t> mark(cudaStream_t s);  // records a timing event (marks_[index]) on s

  ModelConfig cfg_;
  ExpertCachePlan plan_;
  uint8_t* region_ = nullptr;
  int32_t* counts_ = nullptr;       // device [n_layers, n_experts]
  int32_t* host_counts_ = nullptr;  // pinned copy
  GpuDecoder* decoder_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t queued_ = nullptr, copied_ = nullptr;
  std::vector<Layer> layers_;
  // Prefill streaming: the router ids on the host, a staging half's events, the timing marks of
  // the layers streamed since the last harvest (pairs of indices into marks_: copy and pass
  // intervals) and the folded totals.
  bool streaming_ = true;
  int32_t* host_ids_ = nullptr;
  int64_t host_ids_cap_ = 0;
  cudaEvent_t stage_copied_[2] = {nullptr, nullptr}, stage_free_[2] = {nullptr, nullptr};
  std::vector<cudaEvent_t> marks_;
  size_t marks_used_ = 0;
  struct Timed {
    std::vector<std::pair<size_t, size_t>> copies, passes;
  };
  std::vector<Timed> pending_;
  StreamStats stats_;
  int refills_ = 0;
  int64_t moved_ = 0;
  uint64_t bytes_moved_ = 0;
};

}  // namespace dsocr
