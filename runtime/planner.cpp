#include "runtime/planner.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "runtime/cuda_check.h"
#include "runtime/decoder_gpu.h"
#include "runtime/kv_cache.h"
#include "runtime/vision_gpu.h"

namespace dsocr {
namespace {

uint64_t align_up(uint64_t x) {
  return (x + kPoolAlign - 1) / kPoolAlign * kPoolAlign;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

const char* kSizeForms =
    "use a number of bytes with an optional unit, e.g. 6G, 2500M, 512MiB, 1.5GB";

// Side of the square views the mode encodes, and how many of each at most (one page).

}  // namespace

Expected<uint64_t> parse_size(std::string_view text) {
  auto bad = [&](const char* why) {
    return Status::Error(
        strfmt("size '%.*s': %s; %s", static_cast<int>(text.size()), text.data(), why, kSizeForms));
  };
  if (text.empty()) return bad("empty");
  // Number part: digits with at most one '.', no sign, no exponent.
  size_t i = 0;
  bool dot = false, digit = false;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  if (!digit) return bad("no number");
  const std::string number(text.substr(0, i));
  std::string unit = lower(text.substr(i));
  if (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  struct Unit {
    const char* name;
    double mult;
  };
  static const Unit kUnits[] = {
      {"", 1},       {"b", 1},        {"k", 0x1p10},   {"kib", 0x1p10}, {"kb", 1e3},
      {"m", 0x1p20}, {"mib", 0x1p20}, {"mb", 1e6},     {"g", 0x1p30},   {"gib", 0x1p30},
      {"gb", 1e9},   {"t", 0x1p40},   {"tib", 0x1p40}, {"tb", 1e12},
  };
  const Unit* u = nullptr;
  for (const Unit& k : kUnits)
    if (unit == k.name) u = &k;
  if (!u) return bad("unknown unit (K, M, G, T, KiB..TiB are binary; KB..TB decimal; B bytes)");
  const double value = std::strtod(number.c_str(), nullptr) * u->mult;
  if (!(value < 0x1p63)) return bad("too large");
  const double rounded = std::floor(value);
  if (rounded < 1) return bad("must be at least 1 byte");
  return static_cast<uint64_t>(rounded);
}

std::string format_bytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 999.5 && u < 5) {
    v /= 1000;
    ++u;
  }
  if (u == 0) return strfmt("%llu B", static_cast<unsigned long long>(bytes));
  if (v >= 99.95) return strfmt("%.0f %s", v, kUnits[u]);
  if (v >= 9.995) return strfmt("%.1f %s", v, kUnits[u]);
  return strfmt("%.2f %s", v, kUnits[u]);
}

int max_prompt_tokens(Mode mode) {
  const ModeSpec& spec = mode_spec(mode);
  int image = image_token_count(spec, TileGrid{1, 1});
  if (spec.crop) {
    // Every grid dynamic_preprocess can choose: w*h in [kMinCrops, kMaxCropsHF].
    for (int w = 1; w <= kMaxCropsHF; ++w)
      for (int h = 1; w * h <= kMaxCropsHF; ++h)
        if (w * h >= kMinCrops) image = std::max(image, image_token_count(spec, TileGrid{w, h}));
  }
  return 1 + image + kPromptTextTokens;  // BOS + image + text
}

WeightEntry weight_entry(const TensorSpec& spec, uint64_t nbytes) {
  WeightEntry e{spec.name, nbytes, spec.cls};
  if (spec.linear && spec.shape.size() == 2) {
    e.out = spec.shape[0];
    e.in = spec.shape[1];
  }
  return e;
}

Expected<std::vector<WeightEntry>> weight_entries(const Checkpoint& ckpt,
                                                  const std::vector<TensorSpec>& schema) {
  std::unordered_map<std::string_view, const TensorSpec*> spec;
  spec.reserve(schema.size());
  for (const TensorSpec& s : schema) spec.emplace(s.name, &s);
  std::vector<WeightEntry> out;
  out.reserve(ckpt.tensors().size());
  for (const TensorInfo& t : ckpt.tensors()) {
    auto it = spec.find(t.name);
    if (it == spec.end())
      return Status::Error(
          strfmt("%s: tensor %s is not part of DeepSeek-OCR; validate the "
                 "checkpoint (dsocr-run --inspect) for the full list",
                 ckpt.dir().c_str(), t.name.c_str()));
    out.push_back(weight_entry(*it->second, t.nbytes));
  }
  return out;
}

// KV cache, BF16: K and V for every layer, dim = n_heads * head_dim values each (MHA, no MLA).
// 12 x 2 x 1280 x 2 B = 61,440 B per token (DESIGN.md §4).
uint64_t kv_cache_bytes(const ModelConfig& cfg, int kv_tokens) {
  return static_cast<uint64_t>(kv_tokens) * cfg.n_layers * 2 * cfg.dim * 2;
}

// DeepEncoder workspace for one page: exactly what VisionGpu carves (runtime/vision_gpu.h):
// the GemmRunner workspace (32 MiB), the FP32 position / rel-pos tables of every view side of the
// mode, and the activations of its largest group of equal-size views (groups run one after the
// other and reuse them; the projector rows go straight into the decoder's input rows, so nothing
// here outlives a group). Per mode:
//   tiny 53 MB, small 59 MB, base 98 MB, large 133 MB,
//   gundam (1 x 1024 global + up to 9 x 640 tiles; the tile group is the largest) 227 MB; with
//   two lanes (the global view's activations and a second GEMM workspace beside) 312 MB.
uint64_t vision_workspace_bytes(const ModelConfig& cfg, Mode mode, bool two_lanes) {
  return vision_gpu_region_bytes(cfg, vision_groups(mode), two_lanes);
}

// Decoder activations: the GPU decoder's own carving of its region (runtime/decoder_gpu.cpp) for
// a prefill of max_batch x prompt_tokens rows (input rows, FP32 residual, normed, q|k|v, attention,
// sublayer outputs, dense gate|up, MoE scratch, router outputs; ~106 KB per row, half of it MoE
// scratch) + the row-independent buffers: FP32 logits, decode-attention partials for 8192 keys,
// argmax scratch, cuBLASLt's 32 MiB workspace. Gundam (1,128 rows) ~155 MB.
uint64_t decoder_activation_bytes(const ModelConfig& cfg, int prompt_tokens, int max_batch) {
  return GpuDecoder::workspace_bytes(cfg, static_cast<int64_t>(prompt_tokens) * max_batch) +
         static_cast<uint64_t>(max_batch - 1) * cfg.vocab * 4;
}

// Per sequence (runtime/decoder_gpu.cpp): token history and banned-id list (int32 x max_pos
// each), page table, decode state = 2 x 32 KB + 1 KB.
uint64_t sampling_state_bytes(const ModelConfig& cfg, int max_batch) {
  return GpuDecoder::sampling_bytes(cfg) * static_cast<uint64_t>(max_batch);
}

const Region* MemoryPlan::find_region(std::string_view name) const {
  for (const Region& r : regions)
    if (r.name == name) return &r;
  return nullptr;
}

const TensorSlot* MemoryPlan::find_tensor(std::string_view name) const {
  auto it = tensor_index.find(std::string(name));
  return it == tensor_index.end() ? nullptr : &tensors[it->second];
}

uint64_t MemoryPlan::kind_bytes(RegionKind kind) const {
  uint64_t sum = 0;
  for (const Region& r : regions)
    if (r.kind == kind) sum += r.bytes;
  return sum;
}

std::string MemoryPlan::describe() const {
  std::string s = strfmt(
      "memory plan: mode %s, prompt <= %d tokens, max new tokens %d, kv cache "
      "%d tokens, batch %d\n",
      mode_spec(mode).name, prompt_tokens, max_new_tokens, kv_tokens, max_batch);
  s += strfmt("  weights: --quant %s: %s\n", quant.name.c_str(), quant.describe().c_str());
  s += strfmt("  %-24s %14s %10s  %s\n", "region", "offset", "size", "");
  for (const Region& r : regions)
    s += strfmt("  %-24s %14llu %10s  %s\n", r.name.c_str(),
                static_cast<unsigned long long>(r.offset), format_bytes(r.bytes).c_str(),
                r.note.c_str());
  const struct {
    RegionKind kind;
    const char* name;
  } kinds[] = {{RegionKind::kWeights, "weights"},
               {RegionKind::kActivations, "activations"},
               {RegionKind::kKvCache, "kv_cache"},
               {RegionKind::kSampling, "sampling"}};
  for (const auto& k : kinds)
    s += strfmt("  %-24s %14s %10s  (%llu bytes)\n", (std::string("all ") + k.name).c_str(), "",
                format_bytes(kind_bytes(k.kind)).c_str(),
                static_cast<unsigned long long>(kind_bytes(k.kind)));
  s += strfmt("  %-24s %14s %10s  (%llu bytes)\n", "total", "", format_bytes(total).c_str(),
              static_cast<unsigned long long>(total));
  if (budget)
    s += strfmt("  %-24s %14s %10s  %s, %.1f%% used\n", "budget", "", format_bytes(budget).c_str(),
                budget_source.c_str(),
                100.0 * static_cast<double>(total) / static_cast<double>(budget));
  else
    s += strfmt("  %-24s %14s %10s  %s\n", "budget", "", "-", budget_source.c_str());

  // Residency per class: the classes with host tensors, then the rest.
  std::string residency;
  for (const Region& r : host_regions) {
    const std::string cls = r.name.substr(r.name.find('.') + 1);
    residency += (residency.empty() ? "" : "; ") + cls + " host";
    if (cls == tensor_class_name(TensorClass::kRoutedExpert) && expert_cache.active())
      residency += strfmt(" + expert cache %d slots per layer", expert_cache.slots);
  }
  s += strfmt(
      "  %-24s %s\n", "residency",
      residency.empty() ? "all on the GPU" : (residency + "; everything else on the GPU").c_str());
  if (!host_regions.empty()) {
    s += "  host pool (pinned, mapped into the GPU's address space)\n";
    for (const Region& r : host_regions)
      s += strfmt("  %-24s %14llu %10s  %s\n", r.name.c_str(),
                  static_cast<unsigned long long>(r.offset), format_bytes(r.bytes).c_str(),
                  r.note.c_str());
    s += strfmt("  %-24s %14s %10s  (%llu bytes)\n", "all host", "",
                format_bytes(host_total).c_str(), static_cast<unsigned long long>(host_total));
  }
  if (expert_cache.active())
    s += strfmt(
        "  %-24s %14s %10s  %d of %d experts in %zu MoE layers, %s per slot, + %d staging "
        "slots (a prefill's uncached experts)\n",
        "expert cache", "", format_bytes(expert_cache.counts_offset).c_str(), expert_cache.slots,
        expert_cache.n_experts, expert_cache.layers.size(),
        format_bytes(expert_cache.slot_bytes).c_str(), expert_cache.stage_slots);
  if (minimum)
    s += strfmt(
        "  %-24s %14s %10s  (%llu bytes) mode %s, --quant %s: embedding and routed "
        "experts in host memory, the fewest expert slots; on the GPU: %s, ...\n",
        "minimum budget", "", format_bytes(minimum).c_str(),
        static_cast<unsigned long long>(minimum), mode_spec(mode).name, quant.name.c_str(),
        minimum_consumers.c_str());
  return s;
}

bool parse_expert_name(std::string_view name, int* layer, int* expert, int* part) {
  auto eat = [&](std::string_view lit) {
    if (name.substr(0, lit.size()) != lit) return false;
    name.remove_prefix(lit.size());
    return true;
  };
  auto number = [&](int* v) {
    size_t i = 0;
    int x = 0;
    for (; i < name.size() && i < 6 && name[i] >= '0' && name[i] <= '9'; ++i)
      x = x * 10 + (name[i] - '0');
    if (i == 0) return false;
    name.remove_prefix(i);
    *v = x;
    return true;
  };
  int l = 0, e = 0;
  if (!eat("model.layers.") || !number(&l) || !eat(".mlp.experts.") || !number(&e) || !eat("."))
    return false;
  static const char* kParts[] = {"gate_proj.weight", "up_proj.weight", "down_proj.weight"};
  for (int k = 0; k < 3; ++k)
    if (name == kParts[k]) {
      *layer = l, *expert = e, *part = k;
      return true;
    }
  return false;
}

int min_expert_slots(const ModelConfig& cfg) {
  return std::max(0, std::min(cfg.top_k, cfg.n_experts - 1));
}

namespace {

// What a layout moves to the host pool (planner.h, "Offload").
struct Offload {
  bool embed = false;
  int expert_slots = -1;  // -1: routed experts on the GPU; else device slots per MoE layer
};

// True when the tensor goes to the host pool under `off`; routed experts also report where.
bool to_host(const ModelConfig& cfg, const WeightEntry& w, const Offload& off, int* layer,
             int* part) {
  if (w.cls == TensorClass::kEmbed) return off.embed;
  if (w.cls != TensorClass::kRoutedExpert || off.expert_slots < 0) return false;
  int expert = 0;
  return parse_expert_name(w.name, layer, &expert, part) && *layer < cfg.n_layers &&
         expert < cfg.n_experts;
}

// Lays out the regions of `p` (whose resolved options are set) under `off`: the device weight
// regions per class, the expert cache, KV cache, activations and sampling state; the host pool.
// The order slots are laid out in: checkpoint order, except that a decoder layer's self_attn
// k_proj and v_proj follow its q_proj (the checkpoint sorts them k, o, q, v). Adjacent BF16 q|k|v
// slots let the prefill compute them as one [3 dim, dim] GEMM (GpuDecoder checks adjacency).
std::vector<size_t> slot_order(const std::vector<WeightEntry>& weights) {
  static const std::string kQ = "self_attn.q_proj.weight";
  static const char* const kFollow[2] = {"self_attn.k_proj.weight", "self_attn.v_proj.weight"};
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < weights.size(); ++i) by_name.emplace(weights[i].name, i);
  std::vector<std::vector<size_t>> followers(weights.size());  // of each q_proj: its k, v
  std::vector<bool> follows(weights.size(), false);
  for (size_t i = 0; i < weights.size(); ++i) {
    const std::string& n = weights[i].name;
    if (n.size() < kQ.size() || n.compare(n.size() - kQ.size(), kQ.size(), kQ) != 0) continue;
    for (const char* f : kFollow) {
      const auto it = by_name.find(n.substr(0, n.size() - kQ.size()) + f);
      if (it != by_name.end()) followers[i].push_back(it->second), follows[it->second] = true;
    }
  }
  std::vector<size_t> order;
  order.reserve(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    if (follows[i]) continue;
    order.push_back(i);
    order.insert(order.end(), followers[i].begin(), followers[i].end());
  }
  return order;
}

Status lay_out(const ModelConfig& cfg, const std::vector<WeightEntry>& weights, const Offload& off,
               MemoryPlan& p) {
  p.regions.clear();
  p.host_regions.clear();
  p.tensor_index.clear();
  p.expert_cache = ExpertCachePlan{};
  uint64_t cursor = 0;
  auto add_region = [&](std::string name, RegionKind kind, uint64_t bytes, std::string note) {
    p.regions.push_back(Region{std::move(name), kind, cursor, bytes, std::move(note)});
    cursor = align_up(cursor + bytes);
  };

  // Weights, one region per class in TensorClass order (per pool: [0] device, [1] host); tensors
  // in slot_order inside, each slot sized for its stored format.
  constexpr int kClasses = kTensorClassCount;
  std::vector<uint64_t> class_bytes[2] = {std::vector<uint64_t>(kClasses, 0),
                                          std::vector<uint64_t>(kClasses, 0)};
  std::vector<int> class_count[2] = {std::vector<int>(kClasses, 0), std::vector<int>(kClasses, 0)};
  std::vector<std::vector<StoredFormat>> class_formats[2] = {
      std::vector<std::vector<StoredFormat>>(kClasses),
      std::vector<std::vector<StoredFormat>>(kClasses)};  // distinct, first seen first
  std::vector<TensorSlot> slots(weights.size());
  std::vector<bool> cache_layer(cfg.n_layers, false);
  ExpertCachePlan& ec = p.expert_cache;
  for (const size_t i : slot_order(weights)) {
    const WeightEntry& w = weights[i];
    const int c = static_cast<int>(w.cls);
    if (c < 0 || c >= kClasses)
      return Status::Error(
          strfmt("tensor %s: unknown tensor class %d (internal error)", w.name.c_str(), c));
    TensorSlot& slot = slots[i];
    slot.name = w.name;
    slot.stored = stored_format(p.quant, w.cls, w.out, w.in);
    slot.nbytes = stored_bytes(slot.stored, w.out, w.in, w.nbytes);
    int layer = -1, part = -1;
    const int h = to_host(cfg, w, off, &layer, &part) ? 1 : 0;
    slot.where = h ? Residency::kHost : Residency::kDevice;
    if (part >= 0) {
      cache_layer[layer] = true;
      ec.part_bytes[part] = std::max(ec.part_bytes[part], slot.nbytes);
    }
    slot.offset = class_bytes[h][c];
    class_bytes[h][c] = align_up(class_bytes[h][c] + slot.nbytes);
    ++class_count[h][c];
    std::vector<StoredFormat>& f = class_formats[h][c];
    if (std::find(f.begin(), f.end(), slot.stored) == f.end()) f.push_back(slot.stored);
  }
  auto note = [&](int h, int c) {
    std::string formats;
    for (StoredFormat f : class_formats[h][c])
      formats += (formats.empty() ? "" : " + ") + stored_format_name(f);
    return strfmt("%d tensors, %s", class_count[h][c], formats.c_str());
  };
  std::vector<int> class_region[2] = {std::vector<int>(kClasses, -1),
                                      std::vector<int>(kClasses, -1)};
  for (int c = 0; c < kClasses; ++c) {
    if (class_count[0][c] == 0) continue;
    class_region[0][c] = static_cast<int>(p.regions.size());
    add_region(std::string("weights.") + tensor_class_name(static_cast<TensorClass>(c)),
               RegionKind::kWeights, class_bytes[0][c], note(0, c));
  }
  uint64_t host_cursor = 0;
  for (int c = 0; c < kClasses; ++c) {
    if (class_count[1][c] == 0) continue;
    class_region[1][c] = static_cast<int>(p.host_regions.size());
    p.host_regions.push_back(
        Region{std::string("weights.") + tensor_class_name(static_cast<TensorClass>(c)),
               RegionKind::kWeights, host_cursor, class_bytes[1][c],
               note(1, c) + (c == static_cast<int>(TensorClass::kEmbed)
                                 ? ", rows gathered over PCIe"
                                 : ", read over PCIe unless cached")});
    host_cursor = align_up(host_cursor + class_bytes[1][c]);
  }
  p.host_total = host_cursor;
  p.tensors = std::move(slots);
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    TensorSlot& t = p.tensors[i];
    t.region = class_region[t.where == Residency::kHost][static_cast<int>(weights[i].cls)];
    if (!p.tensor_index.emplace(t.name, i).second)
      return Status::Error(strfmt("tensor %s listed twice (internal error)", t.name.c_str()));
  }

  // The expert cache: whole slots, each part aligned; the counters after the slots.
  for (int l = 0; l < cfg.n_layers; ++l)
    if (cache_layer[l]) ec.layers.push_back(l);
  if (ec.active()) {
    ec.slots = off.expert_slots;
    ec.n_experts = cfg.n_experts;
    ec.part_offset[0] = 0;
    ec.part_offset[1] = align_up(ec.part_bytes[0]);
    ec.part_offset[2] = ec.part_offset[1] + align_up(ec.part_bytes[1]);
    ec.slot_bytes = align_up(ec.part_offset[2] + ec.part_bytes[2]);
    ec.stage_slots = kExpertStageSlots;
    ec.stage_offset = static_cast<uint64_t>(ec.layers.size()) * ec.slots * ec.slot_bytes;
    ec.counts_offset = ec.stage_offset + static_cast<uint64_t>(ec.stage_slots) * ec.slot_bytes;
    ec.counts_bytes = static_cast<uint64_t>(cfg.n_layers) * cfg.n_experts * 4;
    add_region(
        "expert_cache", RegionKind::kWeights, ec.counts_offset + ec.counts_bytes,
        strfmt("%d slots x %zu layers x %s, + %d staging slots, router-choice counters", ec.slots,
               ec.layers.size(), format_bytes(ec.slot_bytes).c_str(), ec.stage_slots));
  }

  add_region("kv_cache", RegionKind::kKvCache, kv_cache_bytes(cfg, p.kv_tokens),
             strfmt("%d tokens x %d layers x K,V x %d x 2 B", p.kv_tokens, cfg.n_layers, cfg.dim));
  add_region("vision", RegionKind::kActivations,
             vision_workspace_bytes(cfg, p.mode, p.vision_two_lanes),
             strfmt("the GPU encoder's carving for mode %s%s", mode_spec(p.mode).name,
                    p.vision_two_lanes ? ", tiles and global view side by side" : ""));
  add_region("decoder", RegionKind::kActivations,
             decoder_activation_bytes(cfg, p.prompt_tokens, p.max_batch),
             strfmt("the GPU decoder's carving: prefill of %d x %d rows + logits", p.max_batch,
                    p.prompt_tokens));
  add_region("sampling", RegionKind::kSampling, sampling_state_bytes(cfg, p.max_batch),
             strfmt("%d sequence(s): history, n-gram table, banned mask", p.max_batch));
  p.total = cursor;
  return Status::Ok();
}

// "a 5.20 GB, b 503 MB, c 331 MB": the n largest device regions, largest first.
std::string largest_regions(const MemoryPlan& p, size_t n) {
  std::vector<const Region*> order;
  for (const Region& r : p.regions) order.push_back(&r);
  std::stable_sort(order.begin(), order.end(),
                   [](const Region* a, const Region* b) { return a->bytes > b->bytes; });
  std::string s;
  for (size_t i = 0; i < order.size() && i < n; ++i)
    s += strfmt("%s%s %s", i ? ", " : "", order[i]->name.c_str(),
                format_bytes(order[i]->bytes).c_str());
  return s;
}

}  // namespace

Expected<MemoryPlan> plan_memory(const ModelConfig& cfg, const std::vector<WeightEntry>& weights,
                                 const PlanOptions& opt) {
  MemoryPlan p;
  p.mode = opt.mode;
  p.quant = opt.quant;
  p.prompt_tokens = max_prompt_tokens(opt.mode);
  const int room = cfg.max_pos - p.prompt_tokens;  // positions left for new tokens
  if (room < 1)
    return Status::Error(
        strfmt("mode %s: a prompt can take %d tokens, more than the model's %d "
               "positions; use a smaller mode",
               mode_spec(opt.mode).name, p.prompt_tokens, cfg.max_pos));
  if (opt.max_batch < 1 || opt.max_batch > 4096)
    return Status::Error(strfmt("max batch %d: must be 1..4096", opt.max_batch));
  p.max_batch = opt.max_batch;
  p.max_new_tokens = opt.max_new_tokens == 0 ? room : opt.max_new_tokens;
  if (p.max_new_tokens < 1 || p.max_new_tokens > room)
    return Status::Error(
        strfmt("max new tokens %d: must be 1..%d with mode %s (%d positions minus "
               "a prompt of up to %d tokens)",
               p.max_new_tokens, room, mode_spec(opt.mode).name, cfg.max_pos, p.prompt_tokens));
  // Whole KV pages per sequence (runtime/kv_cache.h).
  const int per_seq =
      (std::min(cfg.max_pos, p.prompt_tokens + p.max_new_tokens) + kKvPageSize - 1) / kKvPageSize *
      kKvPageSize;
  const int64_t kv_max = static_cast<int64_t>(cfg.max_pos) * p.max_batch;
  p.kv_tokens = opt.kv_tokens == 0 ? per_seq * p.max_batch : opt.kv_tokens;
  if (p.kv_tokens < p.prompt_tokens + 1 || p.kv_tokens > kv_max)
    return Status::Error(
        strfmt("kv tokens %d: must be %d..%lld (one prompt of mode %s plus one "
               "new token, up to %d positions x batch %d)",
               p.kv_tokens, p.prompt_tokens + 1, static_cast<long long>(kv_max),
               mode_spec(opt.mode).name, cfg.max_pos, p.max_batch));

  // Budget.
  if (opt.gpu_mem > 0) {
    p.budget = opt.gpu_mem;
    p.budget_source = opt.budget_name;
  } else if (opt.device >= 0) {
    uint64_t free_bytes = 0, total_bytes = 0;
    Status s = cuda_mem_info(opt.device, &free_bytes, &total_bytes);
    if (!s.ok())
      return Status::Error("cannot size the memory budget: " + s.message() + "; set " +
                           opt.budget_name + " or run on a machine with a GPU");
    p.budget = free_bytes;
    p.budget_source =
        strfmt("free memory of GPU %d (of %s)", opt.device, format_bytes(total_bytes).c_str());
  } else {
    p.budget_source = "none (no GPU)";
  }

  // The all-resident plan, and the smallest one (every offload step, the fewest expert slots).
  const MemoryPlan options = p;
  MemoryPlan serial = p;  // one vision lane
  DSOCR_TRY(lay_out(cfg, weights, Offload{}, serial));
  if (vision_groups_concurrent(vision_groups(opt.mode))) {
    p.vision_two_lanes = true;
    DSOCR_TRY(lay_out(cfg, weights, Offload{}, p));
  } else {
    p = serial;
  }
  const int min_slots = min_expert_slots(cfg);
  MemoryPlan least = options;
  DSOCR_TRY(lay_out(cfg, weights, Offload{true, min_slots}, least));
  const MemoryPlan& smallest = least.total < serial.total ? least : serial;
  p.minimum = smallest.total;
  p.minimum_consumers = largest_regions(smallest, 3);
  auto with_minimum = [&](MemoryPlan q) {
    q.minimum = p.minimum;
    q.minimum_consumers = p.minimum_consumers;
    return q;
  };
  if (p.budget == 0 || p.total <= p.budget) return p;
  if (serial.total <= p.budget) return with_minimum(std::move(serial));
  p = with_minimum(std::move(serial));  // the refusals below name the one-lane plan

  if (!opt.offload)
    return Status::Error(strfmt("plan needs %s > %s (%s): %s, ...; %s",
                                format_bytes(p.total).c_str(), p.budget_source.c_str(),
                                format_bytes(p.budget).c_str(), largest_regions(p, 3).c_str(),
                                opt.fix.c_str()));
  if (p.minimum > p.budget)
    return Status::Error(strfmt(
        "%s (%s) is below the minimum %s for mode %s, --quant %s, %d new tokens (on the GPU even "
        "with the embedding and routed experts in host memory: %s, ...); %s",
        p.budget_source.c_str(), format_bytes(p.budget).c_str(), format_bytes(p.minimum).c_str(),
        mode_spec(p.mode).name, p.quant.name.c_str(), p.max_new_tokens, p.minimum_consumers.c_str(),
        opt.fix.c_str()));

  // Step 1: the embedding table to the host.
  MemoryPlan q = options;
  DSOCR_TRY(lay_out(cfg, weights, Offload{true, -1}, q));
  if (q.total <= p.budget || !least.expert_cache.active()) return with_minimum(std::move(q));

  // Step 2: the routed experts too, with as many cache slots as the budget holds. Each slot adds
  // exactly layers x slot_bytes (a multiple of kPoolAlign) to the total.
  const ExpertCachePlan& ec = least.expert_cache;
  const uint64_t per_slot = static_cast<uint64_t>(ec.layers.size()) * ec.slot_bytes;
  int slots = static_cast<int>(
      std::min<uint64_t>(static_cast<uint64_t>(std::max(cfg.n_experts - 1, min_slots)),
                         min_slots + (p.budget - least.total) / per_slot));
  for (;; --slots) {
    q = options;
    DSOCR_TRY(lay_out(cfg, weights, Offload{true, slots}, q));
    if (q.total <= p.budget || slots <= min_slots) break;
  }
  if (q.total > p.budget)
    return Status::Error(
        strfmt("offload plan of %s exceeds %s (%s) (planner bug, please report "
               "it); %s",
               format_bytes(q.total).c_str(), p.budget_source.c_str(),
               format_bytes(p.budget).c_str(), opt.fix.c_str()));
  return with_minimum(std::move(q));
}

}  // namespace dsocr
