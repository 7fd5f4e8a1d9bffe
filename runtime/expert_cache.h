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
// (the graph holds MoeDeviceWeights by value). Not yet: refills inside a page (every K tokens),
// overlap of the copies with the next page's vision pass, copying the chosen experts after the
// router within a step.
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

class ExpertCache {
 public:
  // region: the pool's "expert_cache" region (plan.expert_cache's layout); host: the host pool
  // holding every routed expert of plan.expert_cache.layers; stream: the model's stream. Fills
  // the slots with the lowest expert ids of each layer (no counts yet), points the decoder at them
  // and turns its counting on.
  static Expected<std::unique_ptr<ExpertCache>> create(const ModelConfig& cfg,
                                                       const MemoryPlan& plan, uint8_t* region,
                                                       const HostPool& host, GpuDecoder& decoder,
                                                       cudaStream_t stream);
  ~ExpertCache();

  Status refill();

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
  Status assign(const std::vector<std::vector<int>>& next);  // per cached layer: slot -> expert

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
  int refills_ = 0;
  int64_t moved_ = 0;
  uint64_t bytes_moved_ = 0;
};

}  // namespace dsocr
