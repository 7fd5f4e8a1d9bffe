#include "runtime/expert_cache.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
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

namespace {

// Enqueues expert e of layer L on `copy` into the slot at dst, each part as stored (values, then
// scales when quantized) at its plan offset; adds its bytes to *bytes and returns its slot view.
Expected<ExpertView> copy_expert(const ExpertCache::Layer& L, int e, uint8_t* dst,
                                 const ExpertCachePlan& plan, cudaStream_t copy,
                                 uint64_t* bytes) {
  std::array<const uint8_t*, 3> part{};
  for (int k = 0; k < 3; ++k) {
    DSOCR_CUDA_TRY(cudaMemcpyAsync(dst + plan.part_offset[k], L.host[e][k], L.nbytes[e][k],
                                   cudaMemcpyHostToDevice, copy));
    part[k] = dst + plan.part_offset[k];
    *bytes += L.nbytes[e][k];
  }
  return expert_view(part, L.scale_at);
}

}  // namespace

ExpertCache::~ExpertCache() {
  if (copy_) cudaStreamSynchronize(copy_);  // nothing to report to from a destructor
  if (decoder_) decoder_->set_expert_counts(nullptr), decoder_->set_moe_streamer(nullptr);
  if (host_counts_) cudaFreeHost(host_counts_);
  if (host_ids_) cudaFreeHost(host_ids_);
  for (cudaEvent_t e : marks_) cudaEventDestroy(e);
  for (int h = 0; h < 2; ++h) {
    if (stage_copied_[h]) cudaEventDestroy(stage_copied_[h]);
    if (stage_free_[h]) cudaEventDestroy(stage_free_[h]);
  }
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
      ep.slots < 0 || ep.slots > cfg.n_experts || ep.stage_slots < 0 ||
      ep.stage_offset + ep.stage_slots * ep.slot_bytes > ep.counts_offset ||
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
  for (int h = 0; h < 2; ++h) {
    DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&c->stage_copied_[h], cudaEventDisableTiming));
    DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&c->stage_free_[h], cudaEventDisableTiming));
  }
  const char* env = std::getenv("DSOCR_PREFILL_STREAM");  // A/B timing against zero-copy
  c->streaming_ = ep.stage_slots >= 2 && !(env && std::strcmp(env, "0") == 0);
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
  decoder.set_moe_streamer(c.get());
  DSOCR_CUDA_TRY(cudaStreamSynchronize(stream));
  return c;
}

const ExpertCache::Layer* ExpertCache::find_layer(int layer) const {
  for (const Layer& L : layers_)
    if (L.layer == layer) return &L;
  return nullptr;
}

const std::vector<int>& ExpertCache::slot_experts(int layer) const {
  static const std::vector<int> kNone;
  const Layer* L = find_layer(layer);
  return L ? L->slot_expert : kNone;
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
      DSOCR_ASSIGN_OR_RETURN(const ExpertView v,
                             copy_expert(L, e, slot(L.layer, s), plan_, copy_, &bytes_moved_));
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

Expected<size_t> ExpertCache::mark(cudaStream_t s) {
  if (marks_used_ == marks_.size()) {
    cudaEvent_t e = nullptr;
    DSOCR_CUDA_TRY(cudaEventCreate(&e));
    marks_.push_back(e);
  }
  DSOCR_CUDA_TRY(cudaEventRecord(marks_[marks_used_], s));
  return marks_used_++;
}

Status ExpertCache::harvest() {
  for (const Timed& t : pending_) {
    if (t.passes.empty()) continue;
    const cudaEvent_t base = marks_[t.passes.front().first];
    auto at = [&](size_t i, float* ms) { return cudaEventElapsedTime(ms, base, marks_[i]); };
    std::vector<std::pair<float, float>> busy;  // the passes: disjoint, in order (one stream)
    for (const auto& p : t.passes) {
      float a = 0, b = 0;
      DSOCR_CUDA_TRY(at(p.first, &a));
      DSOCR_CUDA_TRY(at(p.second, &b));
      busy.emplace_back(a, b);
    }
    for (const auto& c : t.copies) {
      float a = 0, b = 0;
      DSOCR_CUDA_TRY(at(c.first, &a));
      DSOCR_CUDA_TRY(at(c.second, &b));
      stats_.copy_ms += b - a;
      for (const auto& p : busy)
        stats_.hidden_ms += std::max(0.f, std::min(b, p.second) - std::max(a, p.first));
    }
    ++stats_.layers;
    stats_.passes += static_cast<int>(t.passes.size());
  }
  pending_.clear();
  marks_used_ = 0;
  return Status::Ok();
}

Expected<ExpertCache::StreamStats> ExpertCache::stream_stats() {
  DSOCR_CUDA_TRY(cudaStreamSynchronize(stream_));
  DSOCR_TRY(harvest());
  return stats_;
}

Status ExpertCache::prefill_moe(int layer, const int32_t* topk_idx, int64_t T,
                                const MoeDeviceWeights& w, const RunPass& run) {
  const Layer* L = find_layer(layer);
  if (!L || !streaming_) return run(w, MoePrefillPass{});
  // The layer's choices on the host. The sync also finishes every earlier layer: its marks fold.
  const int64_t n = T * cfg_.top_k;
  if (n > host_ids_cap_) {
    if (host_ids_) DSOCR_CUDA_TRY(cudaFreeHost(host_ids_));
    host_ids_ = nullptr, host_ids_cap_ = 0;
    DSOCR_CUDA_TRY(cudaHostAlloc(reinterpret_cast<void**>(&host_ids_), n * sizeof(int32_t), 0));
    host_ids_cap_ = n;
  }
  DSOCR_CUDA_TRY(cudaMemcpyAsync(host_ids_, topk_idx, n * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                 stream_));
  DSOCR_CUDA_TRY(cudaStreamSynchronize(stream_));
  DSOCR_TRY(harvest());
  uint64_t used = 0, cached = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int e = host_ids_[i];
    if (e >= 0 && e < cfg_.n_experts) used |= 1ull << e;
  }
  for (int e : L->slot_expert)
    if (e >= 0) cached |= 1ull << e;
  std::vector<int> fetch;  // chosen, not cached: ascending id
  for (int e = 0; e < cfg_.n_experts; ++e)
    if ((used >> e) & (~cached >> e) & 1u) fetch.push_back(e);
  if (fetch.empty()) return run(w, MoePrefillPass{});

  // Pass 0: the cached experts and the shared MLP, while the first copies run. The staging slots
  // were last read by the previous layer's passes, all enqueued before this point.
  Timed t;
  DSOCR_CUDA_TRY(cudaEventRecord(queued_, stream_));
  DSOCR_CUDA_TRY(cudaStreamWaitEvent(copy_, queued_, 0));
  auto timed_pass = [&](const MoeDeviceWeights& mw, const MoePrefillPass& pass) -> Status {
    DSOCR_ASSIGN_OR_RETURN(const size_t a, mark(stream_));
    DSOCR_TRY(run(mw, pass));
    DSOCR_ASSIGN_OR_RETURN(const size_t b, mark(stream_));
    t.passes.emplace_back(a, b);
    return Status::Ok();
  };
  DSOCR_TRY(timed_pass(w, MoePrefillPass{used & cached, true, true, false}));

  // Then the fetched experts, `half` at a time, alternating between the two staging halves.
  const int half = plan_.stage_slots / 2;
  const int chunks = static_cast<int>((fetch.size() + half - 1) / half);
  MoeDeviceWeights sw = w;
  for (int c = 0; c < chunks; ++c) {
    const int h = c % 2;
    if (c >= 2) DSOCR_CUDA_TRY(cudaStreamWaitEvent(copy_, stage_free_[h], 0));
    DSOCR_ASSIGN_OR_RETURN(const size_t cs, mark(copy_));
    uint64_t mask = 0;
    for (int j = 0; j < half && c * half + j < static_cast<int>(fetch.size()); ++j) {
      const int e = fetch[c * half + j];
      uint8_t* dst = region_ + plan_.stage_offset + (h * half + j) * plan_.slot_bytes;
      DSOCR_ASSIGN_OR_RETURN(const ExpertView v,
                             copy_expert(*L, e, dst, plan_, copy_, &stats_.bytes));
      sw.experts[e] = v.w, sw.expert_scales[e] = v.scales;
      mask |= 1ull << e;
      ++stats_.experts;
    }
    DSOCR_ASSIGN_OR_RETURN(const size_t ce, mark(copy_));
    t.copies.emplace_back(cs, ce);
    DSOCR_CUDA_TRY(cudaEventRecord(stage_copied_[h], copy_));
    DSOCR_CUDA_TRY(cudaStreamWaitEvent(stream_, stage_copied_[h], 0));
    DSOCR_TRY(timed_pass(sw, MoePrefillPass{mask, false, false, c == chunks - 1}));
    DSOCR_CUDA_TRY(cudaEventRecord(stage_free_[h], stream_));
  }
  pending_.push_back(std::move(t));
  return Status::Ok();
}

}  // namespace dsocr
