#include "runtime/expert_cache.h"

#include <algorithm>
#include <array>
#include <numeric>

#include "kernels/quant.h"
#include "runtime/cuda_check.h"

namespace dsocr {

std::vector<int> choose_cached_experts(const std::vector<int>& current,
                                       const std::vector<double>& score) {
  const int n = static_cast<int>(score.size());
  const int slots = std::min(static_cast<int>(current.size()), n);
  std::vector<char> cached(n, 0);
  for (int e : current)
    if (e >= 0 && e < n) cached[e] = 1;
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    if (score[a] != score[b]) return score[a] > score[b];
    return cached[a] > cached[b];  // then the lower id (stable over an ascending order)
  });
  std::vector<char> win(n, 0);
  for (int i = 0; i < slots; ++i) win[order[i]] = 1;
  std::vector<int> next(current.size(), -1);
  std::vector<char> placed(n, 0);
  for (size_t s = 0; s < current.size(); ++s) {
    const int e = current[s];
    if (e >= 0 && e < n && win[e]) next[s] = e, placed[e] = 1;
  }
  size_t s = 0;
  for (int i = 0; i < slots; ++i) {
    const int e = order[i];
    if (placed[e]) continue;
    while (next[s] >= 0) ++s;
    next[s] = e;
  }
  return next;
}

namespace {

// One expert as the MoE kernels see it: the three parts' addresses and, when quantized, their
// scales (kernels/quant.h qweight_in_slot: values, then scales at byte scale_at[k]).
struct ExpertView {
  MlpWeights w;
  MlpScales scales;
};

ExpertView expert_view(const std::array<const uint8_t*, 3>& part,
                       const std::array<uint64_t, 3>& scale_at) {
  std::array<const uint16_t*, 3> sc{};
  for (int k = 0; k < 3; ++k)
    if (scale_at[k]) sc[k] = reinterpret_cast<const uint16_t*>(part[k] + scale_at[k]);
  auto p = [](const uint8_t* a) { return reinterpret_cast<const uint16_t*>(a); };
  return {MlpWeights{p(part[0]), p(part[1]), p(part[2])}, MlpScales{sc[0], sc[1], sc[2]}};
}

}  // namespace

struct ExpertCache::Layer {
  int layer = 0;
  std::vector<int> slot_expert;                     // [slots] expert or -1
  std::vector<double> score;                        // [n_experts]
  std::vector<std::array<const uint8_t*, 3>> host;  // [n_experts] gate, up, down (CPU view)
  std::vector<ExpertView> mapped;                   // [n_experts] the same, as kernels see them
  std::vector<std::array<uint64_t, 3>> nbytes;      // [n_experts] as stored (values + scales)
  std::array<uint64_t, 3> scale_at{};  // scales' offset in each part (0: BF16, no scales)
};

ExpertCache::~ExpertCache() {
  if (copy_) cudaStreamSynchronize(copy_);  // nothing to report to from a destructor
  if (decoder_) decoder_->set_expert_counts(nullptr);
  if (host_counts_) cudaFreeHost(host_counts_);
  if (queued_) cudaEventDestroy(queued_);
  if (copied_) cudaEventDestroy(copied_);
  if (copy_) cudaStreamDestroy(copy_);
}

Expected<std::unique_ptr<ExpertCache>> ExpertCache::create(const ModelConfig& cfg,
                                                           const MemoryPlan& plan, uint8_t* region,
                                                           const HostPool& host,
                                                           GpuDecoder& decoder,
                                                           cudaStream_t stream) {
  const ExpertCachePlan& ep = plan.expert_cache;
  const Region* r = plan.find_region("expert_cache");
  if (!ep.active() || !region || !r || r->bytes < ep.counts_offset + ep.counts_bytes ||
      ep.slots < 0 || ep.slots > cfg.n_experts ||
      ep.counts_bytes < static_cast<uint64_t>(cfg.n_layers) * cfg.n_experts * 4)
    return Status::Error(
        "expert cache: the plan has no expert_cache region of its layout "
        "(planner bug, please report it)");
  std::unique_ptr<ExpertCache> c(new ExpertCache);
  c->cfg_ = cfg;
  c->plan_ = ep;
  c->region_ = region;
  c->counts_ = reinterpret_cast<int32_t*>(region + ep.counts_offset);
  c->stream_ = stream;
  static const char* kParts[3] = {"gate_proj", "up_proj", "down_proj"};
  // [out, in] of gate, up, down: where a quantized part's scales start (the routed experts'
  // policy is one format and group for the class, so every expert of a layer has the same).
  const int64_t shape[3][2] = {
      {cfg.moe_inter, cfg.dim}, {cfg.moe_inter, cfg.dim}, {cfg.dim, cfg.moe_inter}};
  for (int l : ep.layers) {
    Layer L;
    L.layer = l;
    L.slot_expert.assign(ep.slots, -1);
    L.score.assign(cfg.n_experts, 0.0);
    for (int e = 0; e < cfg.n_experts; ++e) {
      std::array<const uint8_t*, 3> h{}, d{};
      std::array<uint64_t, 3> nb{}, scale_at{};
      for (int k = 0; k < 3; ++k) {
        const std::string name =
            strfmt("model.layers.%d.mlp.experts.%d.%s.weight", l, e, kParts[k]);
        const TensorSlot* t = plan.find_tensor(name);
        h[k] = host.host_address(name);
        d[k] = host.device_address(name);
        if (!t || !h[k] || !d[k] || t->nbytes > ep.part_bytes[k])
          return Status::Error(
              strfmt("expert cache: %s is not in the host pool or larger than "
                     "its slot part (planner bug, please report it)",
                     name.c_str()));
        nb[k] = t->nbytes;
        const WeightFormat f = t->stored.format;
        scale_at[k] = f == WeightFormat::kBf16 ? 0 : quant_value_bytes(f, shape[k][0], shape[k][1]);
      }
      if (e > 0 && scale_at != L.scale_at)
        return Status::Error(
            strfmt("expert cache: layer %d stores expert %d in another format "
                   "than expert 0 (planner bug, please report it)",
                   l, e));
      L.scale_at = scale_at;
      L.host.push_back(h);
      L.mapped.push_back(expert_view(d, scale_at));
      L.nbytes.push_back(nb);
    }
    c->layers_.push_back(std::move(L));
  }
  const uint64_t counts_bytes = static_cast<uint64_t>(cfg.n_layers) * cfg.n_experts * 4;
  DSOCR_CUDA_TRY(cudaHostAlloc(reinterpret_cast<void**>(&c->host_counts_), counts_bytes, 0));
  DSOCR_CUDA_TRY(cudaStreamCreateWithFlags(&c->copy_, cudaStreamNonBlocking));
  DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&c->queued_, cudaEventDisableTiming));
  DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&c->copied_, cudaEventDisableTiming));
  DSOCR_CUDA_TRY(cudaMemsetAsync(c->counts_, 0, counts_bytes, stream));
  c->decoder_ = &decoder;
  // Every expert at its host copy first (bind_weights already did that; set it explicitly so the
  // table never depends on how the decoder was created), then the first fill.
  for (const Layer& L : c->layers_)
    for (int e = 0; e < cfg.n_experts; ++e)
      DSOCR_TRY(decoder.set_expert(L.layer, e, L.mapped[e].w, L.mapped[e].scales));
  std::vector<std::vector<int>> next;
  for (const Layer& L : c->layers_) next.push_back(choose_cached_experts(L.slot_expert, L.score));
  DSOCR_TRY(c->assign(next));
  decoder.set_expert_counts(c->counts_);
  DSOCR_CUDA_TRY(cudaStreamSynchronize(stream));
  return c;
}

const std::vector<int>& ExpertCache::slot_experts(int layer) const {
  for (const Layer& L : layers_)
    if (L.layer == layer) return L.slot_expert;
  static const std::vector<int> kNone;
  return kNone;
}

uint8_t* ExpertCache::slot(int layer, int s) const {
  for (size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i].layer == layer && s >= 0 && s < plan_.slots)
      return region_ + (i * plan_.slots + s) * plan_.slot_bytes;
  return nullptr;
}

Status ExpertCache::assign(const std::vector<std::vector<int>>& next) {
  // The copies overwrite slots that kernels already enqueued on the model's stream may read: they
  // start after those kernels, and the model's stream waits for them before anything else.
  DSOCR_CUDA_TRY(cudaEventRecord(queued_, stream_));
  DSOCR_CUDA_TRY(cudaStreamWaitEvent(copy_, queued_, 0));
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& L = layers_[i];
    for (int s = 0; s < plan_.slots; ++s) {
      const int old = L.slot_expert[s], e = next[i][s];
      if (old == e) continue;
      if (old >= 0)
        DSOCR_TRY(decoder_->set_expert(L.layer, old, L.mapped[old].w, L.mapped[old].scales));
      L.slot_expert[s] = e;
      if (e < 0) continue;
      // Each part as stored (values, then scales when quantized) into its place in the slot.
      uint8_t* dst = slot(L.layer, s);
      std::array<const uint8_t*, 3> part{};
      for (int k = 0; k < 3; ++k) {
        DSOCR_CUDA_TRY(cudaMemcpyAsync(dst + plan_.part_offset[k], L.host[e][k], L.nbytes[e][k],
                                       cudaMemcpyHostToDevice, copy_));
        part[k] = dst + plan_.part_offset[k];
        bytes_moved_ += L.nbytes[e][k];
      }
      const ExpertView v = expert_view(part, L.scale_at);
      DSOCR_TRY(decoder_->set_expert(L.layer, e, v.w, v.scales));
      ++moved_;
    }
  }
  DSOCR_CUDA_TRY(cudaEventRecord(copied_, copy_));
  DSOCR_CUDA_TRY(cudaStreamWaitEvent(stream_, copied_, 0));
  return Status::Ok();
}

Status ExpertCache::refill() {
  // Read and clear the histogram after every forward enqueued so far.
  const uint64_t counts_bytes = static_cast<uint64_t>(cfg_.n_layers) * cfg_.n_experts * 4;
  DSOCR_CUDA_TRY(
      cudaMemcpyAsync(host_counts_, counts_, counts_bytes, cudaMemcpyDeviceToHost, stream_));
  DSOCR_CUDA_TRY(cudaMemsetAsync(counts_, 0, counts_bytes, stream_));
  DSOCR_CUDA_TRY(cudaStreamSynchronize(stream_));
  std::vector<std::vector<int>> next;
  for (Layer& L : layers_) {
    const int32_t* c = host_counts_ + static_cast<int64_t>(L.layer) * cfg_.n_experts;
    for (int e = 0; e < cfg_.n_experts; ++e) L.score[e] = L.score[e] / 2 + c[e];
    next.push_back(choose_cached_experts(L.slot_expert, L.score));
  }
  DSOCR_TRY(assign(next));
  ++refills_;
  return Status::Ok();
}

}  // namespace dsocr
