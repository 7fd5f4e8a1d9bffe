#include "runtime/planner.h"

#include "runtime/decoder_gpu.h"
#include "runtime/kv_cache.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "runtime/cuda_check.h"
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
//   gundam (1 x 1024 global + up to 9 x 640 tiles; the tile group is the largest) 227 MB.
uint64_t vision_workspace_bytes(const ModelConfig& cfg, Mode mode) {
  return vision_gpu_region_bytes(cfg, vision_groups(mode));
}

// Decoder activations: the GPU decoder's own carving of its region (runtime/decoder_gpu.cpp) for
// a prefill of max_batch x prompt_tokens rows (input rows, FP32 residual, normed, q|k|v, attention,
// sublayer outputs, dense gate|up, MoE scratch, router outputs; ~106 KB per row, half of it MoE
// scratch) + the row-independent buffers: FP32 logits, decode-attention partials for 8192 keys, argmax scratch,
// cuBLASLt's 32 MiB workspace. Gundam (1,128 rows) ~155 MB.
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
  return s;
}

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
  const int per_seq = (std::min(cfg.max_pos, p.prompt_tokens + p.max_new_tokens) + kKvPageSize -
                       1) / kKvPageSize * kKvPageSize;
  const int64_t kv_max = static_cast<int64_t>(cfg.max_pos) * p.max_batch;
  p.kv_tokens = opt.kv_tokens == 0 ? per_seq * p.max_batch : opt.kv_tokens;
  if (p.kv_tokens < p.prompt_tokens + 1 || p.kv_tokens > kv_max)
    return Status::Error(
        strfmt("kv tokens %d: must be %d..%lld (one prompt of mode %s plus one "
               "new token, up to %d positions x batch %d)",
               p.kv_tokens, p.prompt_tokens + 1, static_cast<long long>(kv_max),
               mode_spec(opt.mode).name, cfg.max_pos, p.max_batch));

  uint64_t cursor = 0;
  auto add_region = [&](std::string name, RegionKind kind, uint64_t bytes, std::string note) {
    p.regions.push_back(Region{std::move(name), kind, cursor, bytes, std::move(note)});
    cursor = align_up(cursor + bytes);
  };

  // Weights, one region per class in TensorClass order; tensors in checkpoint order inside, each
  // slot sized for its stored format.
  constexpr int kClasses = kTensorClassCount;
  std::vector<uint64_t> class_bytes(kClasses, 0);
  std::vector<int> class_count(kClasses, 0);
  std::vector<std::vector<StoredFormat>> class_formats(kClasses);  // distinct, first seen first
  std::vector<TensorSlot> slots(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const WeightEntry& w = weights[i];
    const int c = static_cast<int>(w.cls);
    if (c < 0 || c >= kClasses)
      return Status::Error(
          strfmt("tensor %s: unknown tensor class %d (internal error)", w.name.c_str(), c));
    TensorSlot& slot = slots[i];
    slot.name = w.name;
    slot.stored = stored_format(opt.quant, w.cls, w.out, w.in);
    slot.nbytes = stored_bytes(slot.stored, w.out, w.in, w.nbytes);
    slot.offset = class_bytes[c];
    class_bytes[c] = align_up(class_bytes[c] + slot.nbytes);
    ++class_count[c];
    std::vector<StoredFormat>& f = class_formats[c];
    if (std::find(f.begin(), f.end(), slot.stored) == f.end()) f.push_back(slot.stored);
  }
  std::vector<int> class_region(kClasses, -1);
  for (int c = 0; c < kClasses; ++c) {
    if (class_count[c] == 0) continue;
    class_region[c] = static_cast<int>(p.regions.size());
    std::string formats;
    for (StoredFormat f : class_formats[c])
      formats += (formats.empty() ? "" : " + ") + stored_format_name(f);
    add_region(std::string("weights.") + tensor_class_name(static_cast<TensorClass>(c)),
               RegionKind::kWeights, class_bytes[c],
               strfmt("%d tensors, %s", class_count[c], formats.c_str()));
  }
  p.tensors = std::move(slots);
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    TensorSlot& t = p.tensors[i];
    t.region = class_region[static_cast<int>(weights[i].cls)];
    if (!p.tensor_index.emplace(t.name, i).second)
      return Status::Error(strfmt("tensor %s listed twice (internal error)", t.name.c_str()));
  }

  add_region("kv_cache", RegionKind::kKvCache, kv_cache_bytes(cfg, p.kv_tokens),
             strfmt("%d tokens x %d layers x K,V x %d x 2 B", p.kv_tokens, cfg.n_layers, cfg.dim));
  add_region("vision", RegionKind::kActivations, vision_workspace_bytes(cfg, opt.mode),
             strfmt("the GPU encoder's carving for mode %s", mode_spec(opt.mode).name));
  add_region("decoder", RegionKind::kActivations,
             decoder_activation_bytes(cfg, p.prompt_tokens, p.max_batch),
             strfmt("the GPU decoder's carving: prefill of %d x %d rows + logits",
                    p.max_batch, p.prompt_tokens));
  add_region("sampling", RegionKind::kSampling, sampling_state_bytes(cfg, p.max_batch),
             strfmt("%d sequence(s): history, n-gram table, banned mask", p.max_batch));
  p.total = cursor;

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
  if (p.budget > 0 && p.total > p.budget) {
    std::vector<const Region*> order;
    for (const Region& r : p.regions) order.push_back(&r);
    std::stable_sort(order.begin(), order.end(),
                     [](const Region* a, const Region* b) { return a->bytes > b->bytes; });
    std::string biggest;
    for (size_t i = 0; i < order.size() && i < 3; ++i)
      biggest += strfmt("%s%s %s", i ? ", " : "", order[i]->name.c_str(),
                        format_bytes(order[i]->bytes).c_str());
    return Status::Error(strfmt("plan needs %s > %s (%s): %s, ...; %s",
                                format_bytes(p.total).c_str(), p.budget_source.c_str(),
                                format_bytes(p.budget).c_str(), biggest.c_str(), opt.fix.c_str()));
  }
  return p;
}

}  // namespace dsocr
