// The model on one GPU: the planned pool with every checkpoint tensor uploaded, the weights bound
// to their device addresses, one stream, and the encoder and decoder over the pool's regions.
// Opened once per process; the engine, dsocr-run's golden interface and the GPU golden tests all
// start here. Under an offload plan (runtime/planner.h) the tensors the plan keeps on the host go
// to a pinned, mapped host pool instead and are bound to their mapped addresses; the routed experts
// of such a plan are served through an ExpertCache (runtime/expert_cache.h).
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <memory>
#include <string>

#include "loader/config.h"
#include "loader/safetensors.h"
#include "loader/status.h"
#include "runtime/cpu_model.h"  // PageViews
#include "runtime/decoder_gpu.h"
#include "runtime/expert_cache.h"
#include "runtime/model_weights.h"
#include "runtime/planner.h"
#include "runtime/pool.h"
#include "runtime/vision_gpu.h"
#include "runtime/weights.h"

namespace dsocr {

// A preprocessed page (host pixels) as the GPU encoder takes it.
PageViewsRef views_ref(const PageViews& page);

class GpuModel {
 public:
  // Allocates plan's pool on plan's device (poisoned with NaN when `poison`), uploads ckpt into
  // it, binds the weights and creates the encoder (for plan.mode) and the decoder. `stats` (optional) receives the upload figures.
  static Expected<std::unique_ptr<GpuModel>> load(const ModelConfig& cfg, const Checkpoint& ckpt,
                                                  const MemoryPlan& plan, bool poison = false,
                                                  UploadStats* stats = nullptr);
  // Convenience: config + checkpoint of a model directory, validated, planned with `po`, loaded.
  static Expected<std::unique_ptr<GpuModel>> open(const std::string& model_dir,
                                                  const PlanOptions& po, bool poison = false);
  ~GpuModel();

  const ModelConfig& cfg() const { return cfg_; }
  const ModelWeights& weights() const { return w_; }  // device pointers
  const DevicePool& pool() const { return *pool_; }
  GpuDecoder& decoder() { return *decoder_; }
  VisionGpu& vision() { return *vision_; }
  cudaStream_t stream() const { return stream_; }
  const MemoryPlan& plan() const { return pool_->plan(); }
  // The routed-expert cache of an offload plan; null when the experts are on the GPU.
  ExpertCache* expert_cache() { return experts_.get(); }
  // Call between two pages (after GpuDecoder::end()): refills the expert cache from the router
  // choices counted since the last call; nothing when the experts are on the GPU.
  Status between_pages();

 private:
  GpuModel() = default;
  ModelConfig cfg_;
  std::unique_ptr<DevicePool> pool_;
  std::unique_ptr<HostPool> host_;  // empty unless the plan offloads
  WeightTable table_;
  ModelWeights w_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<GpuDecoder> decoder_;
  std::unique_ptr<VisionGpu> vision_;
  std::unique_ptr<ExpertCache> experts_;
};

}  // namespace dsocr
