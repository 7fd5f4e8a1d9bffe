#include "runtime/gpu_model.h"

#include <filesystem>

#include "loader/schema.h"
#include "runtime/cuda_check.h"
#include "runtime/weights_quant.h"

namespace dsocr {

PageViewsRef views_ref(const PageViews& page) {
  PageViewsRef ref;
  ref.global = page.global.data(), ref.S = page.S;
  ref.tiles = page.n_tiles ? page.tiles.data() : nullptr;
  ref.w_t = page.grid.w, ref.h_t = page.grid.h;
  return ref;
}

GpuModel::~GpuModel() {
  experts_.reset();
  decoder_.reset();
  vision_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

Expected<std::unique_ptr<GpuModel>> GpuModel::load(const ModelConfig& cfg, const Checkpoint& ckpt,
                                                   const MemoryPlan& plan, bool poison,
                                                   UploadStats* stats) {
  std::unique_ptr<GpuModel> m(new GpuModel);
  m->cfg_ = cfg;
  PoolOptions po;
  po.poison = poison;
  DSOCR_ASSIGN_OR_RETURN(DevicePool pool, DevicePool::create(plan, po));
  m->pool_ = std::make_unique<DevicePool>(std::move(pool));
  for (TensorClass c : {TensorClass::kSam, TensorClass::kClip, TensorClass::kProjector})
    if (plan.quant.of(c) != WeightFormat::kBf16)
      return Status::Error(strfmt("%s weights as %s: the GPU encoder has no quantized kernels "
                                  "yet; use --quant-vision bf16",
                                  tensor_class_name(c), weight_format_name(plan.quant.of(c))));
  // The host pool first: a host that cannot pin it fails before the upload.
  DSOCR_ASSIGN_OR_RETURN(HostPool host, HostPool::create(plan));
  m->host_ = std::make_unique<HostPool>(std::move(host));
  DSOCR_ASSIGN_OR_RETURN(m->table_, upload_weights(ckpt, *m->pool_, UploadOptions{}, stats));
  if (m->host_->base()) DSOCR_TRY(upload_host_weights(ckpt, *m->host_, m->table_));
  DSOCR_ASSIGN_OR_RETURN(m->w_, bind_weights(m->cfg_, m->table_.lookup()));
  DSOCR_CUDA_TRY(cudaStreamCreateWithFlags(&m->stream_, cudaStreamNonBlocking));
  auto region = [&](const char* name) -> std::pair<uint8_t*, uint64_t> {
    const Region* r = plan.find_region(name);
    return r ? std::make_pair(m->pool_->region(name), r->bytes) : std::make_pair(nullptr, 0ull);
  };
  const auto [work, work_bytes] = region("decoder");
  const auto [kv, kv_bytes] = region("kv_cache");
  const auto [samp, samp_bytes] = region("sampling");
  const auto [vis, vis_bytes] = region("vision");
  if (!work || !kv || !samp || !vis)
    return Status::Error(
        "memory plan lacks a decoder, kv_cache, sampling or vision region (planner bug)");
  // Quantized slots, on the device and (offloaded experts, in their packed form) in the host pool:
  // BF16 rows staged through the vision region, idle until the encoder exists.
  if (!plan.quant.all_bf16())
    DSOCR_TRY(quantize_weights(ckpt, *m->pool_, m->host_.get(), vis, vis_bytes, m->stream_));
  DSOCR_ASSIGN_OR_RETURN(m->vision_, VisionGpu::create(m->cfg_, m->w_, vis, vis_bytes,
                                                       vision_groups(plan.mode)));
  DSOCR_ASSIGN_OR_RETURN(
      m->decoder_, GpuDecoder::create(m->cfg_, m->w_.dec, plan.prompt_tokens * plan.max_batch,
                                      work, work_bytes, kv, kv_bytes, samp, samp_bytes,
                                      m->stream_, plan.quant));
  if (plan.expert_cache.active()) {
    DSOCR_ASSIGN_OR_RETURN(
        m->experts_, ExpertCache::create(m->cfg_, plan, m->pool_->region("expert_cache"), *m->host_,
                                         *m->decoder_, m->stream_));
  }
  return m;
}

Status GpuModel::between_pages() {
  return experts_ ? experts_->refill() : Status::Ok();
}

Expected<std::unique_ptr<GpuModel>> GpuModel::open(const std::string& model_dir,
                                                   const PlanOptions& po, bool poison) {
  const std::string config_path = (std::filesystem::path(model_dir) / "config.json").string();
  DSOCR_ASSIGN_OR_RETURN(ModelConfig cfg, load_config(config_path));
  DSOCR_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::open_dir(model_dir));
  const std::vector<TensorSpec> schema = checkpoint_schema(cfg);
  DSOCR_TRY(validate_checkpoint(ckpt, schema));
  DSOCR_ASSIGN_OR_RETURN(std::vector<WeightEntry> entries, weight_entries(ckpt, schema));
  DSOCR_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory(cfg, entries, po));
  return load(cfg, ckpt, plan, poison);
}

}  // namespace dsocr
