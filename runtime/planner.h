// The memory planner: every byte the GPU will hold, computed before anything is allocated.
//
// A plan is a list of named regions of one device pool (DESIGN.md §4), each 256-byte aligned:
//   weights.<class>   one region per TensorClass; every checkpoint tensor gets an offset inside its
//                     class's region, so the model binds tensors by name (runtime/weights.h),
//                     and a slot sized for the format the quantization policy stores it in
//                     (runtime/quant_policy.h: BF16 as in the checkpoint, or values + scales)
//   kv_cache          kv_tokens x n_layers x {K,V} x dim x 2 B
//   vision            DeepEncoder workspace for the largest group of equal-size views of the mode
//   decoder           decoder activations for max_batch prompts of the mode
//   sampling          per-sequence sampling state (token history, n-gram table, banned mask)
// The activation formulas are estimates from the model's shapes, written out (with their
// arithmetic) in planner.cpp; the kernels that use the regions will tighten them.
//
// Offload (DESIGN.md §8). When the all-resident plan exceeds the budget, plan_memory() moves bytes
// to pinned, mapped host memory (the "host pool", MemoryPlan::host_regions) instead of refusing,
// in this order, stopping at the first plan that fits:
//   1. the token-embedding table (kernels gather its rows straight from the mapped host copy:
//      1280 x 2 B per token);
//   2. the routed experts of every MoE layer: all of them in host memory, plus an "expert_cache"
//      device region of N slots per MoE layer, N as large as the budget allows (at least
//      min_expert_slots() = top_k, at most n_experts - 1). The runtime (runtime/expert_cache.h)
//      points the MoE kernels at a slot for a cached expert and at the mapped host copy for the
//      others, so where an expert lives never changes the arithmetic. Quantized experts are
//      sized, kept and cached as stored (packed values + BF16 scales, kernels/quant.h
//      quant_bytes): a slot is the stored bytes of one expert's gate, up and down.
// Everything else (attention, norms, router, shared experts, dense MLP, lm_head, the vision
// towers, KV cache, activations) stays on the GPU. The smallest budget any plan of the options fits
// (step 2 with min_expert_slots()) is MemoryPlan::minimum; a budget below it is refused with one
// line naming the minimum and the largest regions that must stay on the GPU. Vision weights are
// not offloaded yet (they would stream once per page through a staging region).
// With PlanOptions::offload = false a plan larger than the budget is refused, naming the budget,
// the total and the largest regions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loader/config.h"
#include "loader/safetensors.h"
#include "loader/schema.h"
#include "loader/status.h"
#include "runtime/preprocess.h"  // Mode
#include "runtime/quant_policy.h"

namespace dsocr {

constexpr uint64_t kPoolAlign = 256;  // every region and every tensor inside one

// Sizes as users write them: "3G", "2500M", "512MiB", "1.5GB", "1073741824", "64k".
// K/M/G/T and KiB/MiB/GiB/TiB are binary (1024^n); KB/MB/GB/TB are decimal (1000^n); a bare
// number or a trailing "B" is bytes. Case-insensitive. Fractions are allowed ("1.5G"). The error
// names the text and shows valid forms.
Expected<uint64_t> parse_size(std::string_view text);
// 1234567890 -> "1.23 GB", 330956800 -> "331 MB", 512 -> "512 B" (decimal, 3 significant digits).
std::string format_bytes(uint64_t bytes);

// The most tokens a prompt of `mode` can take: BOS + the mode's largest image (Gundam: the tile
// grid with the most tokens, max 9 tiles) + kPromptTextTokens of text.
constexpr int kPromptTextTokens = 64;  // the task prompts are < 20 tokens; room for --prompt
int max_prompt_tokens(Mode mode);

// One checkpoint tensor as the planner sees it.
struct WeightEntry {
  std::string name;
  uint64_t nbytes = 0;  // in the checkpoint
  TensorClass cls = TensorClass::kSam;
  int64_t out = 0, in = 0;  // [out, in] of an nn.Linear weight (quantizable); 0, 0 otherwise
};
// The entry of a schema tensor that takes `nbytes` in the checkpoint.
WeightEntry weight_entry(const TensorSpec& spec, uint64_t nbytes);
// Each checkpoint tensor with its class from the schema. A tensor the schema does not know is an
// error (validate_checkpoint() first for the full report).
Expected<std::vector<WeightEntry>> weight_entries(const Checkpoint& ckpt,
                                                  const std::vector<TensorSpec>& schema);

struct PlanOptions {
  Mode mode = Mode::kGundam;
  int max_new_tokens = 0;  // 0: fill the context (max_pos - max_prompt_tokens(mode))
  int kv_tokens = 0;       // 0: max_batch * min(prompt + max_new_tokens, max_pos)
  int max_batch = 1;       // sequences decoded together
  uint64_t gpu_mem = 0;    // budget in bytes; 0: the free memory of `device`
  int device = 0;          // CUDA device index; -1: no GPU (no budget unless gpu_mem is set)
  QuantPolicy quant;       // stored format per tensor class (default: everything BF16)
  bool offload = true;     // false: all on the GPU or refused (never host memory)
  // How the budget and the fix are named in the over-budget message (tools put their flags here).
  std::string budget_name = "gpu_mem";
  std::string fix = "raise gpu_mem, lower max_new_tokens or use a smaller mode";
};

enum class RegionKind : uint8_t { kWeights, kKvCache, kActivations, kSampling };

struct Region {
  std::string name;  // "weights.routed_expert", "kv_cache", "vision", ...
  RegionKind kind = RegionKind::kWeights;
  uint64_t offset = 0;  // from the pool base, multiple of kPoolAlign
  uint64_t bytes = 0;   // payload (the next region starts at the next aligned offset)
  std::string note;     // how the size was computed, for describe()
};

// Where a tensor's bytes live.
enum class Residency : uint8_t {
  kDevice,  // its slot in the device pool
  kHost,    // its slot in the pinned, mapped host pool; kernels read it over PCIe (a routed
            // expert is also copied into an expert-cache slot while it is hot)
};

struct TensorSlot {
  std::string name;
  int region = 0;       // index into MemoryPlan::regions (kDevice) or host_regions (kHost)
  uint64_t offset = 0;  // inside the region, multiple of kPoolAlign
  uint64_t nbytes = 0;  // as stored: the checkpoint's bytes (BF16), or values + scales
  StoredFormat stored;
  Residency where = Residency::kDevice;
};

// A routed expert's tensor name:
// model.layers.<layer>.mlp.experts.<expert>.<gate|up|down>_proj.weight
// -> layer, expert and part (0 gate, 1 up, 2 down); false for any other name.
bool parse_expert_name(std::string_view name, int* layer, int* expert, int* part);

// The device expert cache of an offload plan (region "expert_cache"): for each MoE layer whose
// routed experts live on the host, `slots` slots of slot_bytes, each holding one expert's gate,
// up and down as stored (at part_offset[0..2]); then stage_slots staging slots of the same size
// (a prefill's uncached experts stream through them, double-buffered: runtime/expert_cache.h);
// then the router-choice counters.
//   region = (layers.size() x slots + stage_slots) x slot_bytes, then counts_bytes (int32
//   [n_layers, n_experts]: the runtime's histogram of router choices, indexed by layer number)
// Two halves of two staging slots, whatever the format: more (8 INT4 experts per half) made a
// prefill under --gpu-mem 2G 10 % faster but cost a cache slot per layer there, and decode 17 %
// (bench/RESULTS.md, session 7).
constexpr int kExpertStageSlots = 4;
struct ExpertCachePlan {
  std::vector<int> layers;              // model layer numbers, ascending; empty: experts on the GPU
  int slots = 0;                        // per layer, min_expert_slots() .. n_experts - 1
  int n_experts = 0;                    // routed experts per layer (the model's)
  uint64_t slot_bytes = 0;              // multiple of kPoolAlign
  uint64_t part_offset[3] = {0, 0, 0};  // gate, up, down inside a slot
  uint64_t part_bytes[3] = {0, 0, 0};   // the largest of each part
  int stage_slots = 0;                  // kExpertStageSlots when active
  uint64_t stage_offset = 0;            // inside the region: after the layers' slots
  uint64_t counts_offset = 0;           // inside the region: after the staging slots
  uint64_t counts_bytes = 0;
  bool active() const { return !layers.empty(); }
};

struct MemoryPlan {
  std::vector<Region> regions;      // in pool order
  std::vector<TensorSlot> tensors;  // checkpoint order
  uint64_t total = 0;               // pool size: end of the last region, aligned
  // The options as resolved (defaults filled in).
  Mode mode = Mode::kGundam;
  int prompt_tokens = 0;
  int max_new_tokens = 0;
  int kv_tokens = 0;
  int max_batch = 1;
  QuantPolicy quant;
  uint64_t budget = 0;        // 0: none (no GPU and no gpu_mem)
  std::string budget_source;  // "gpu_mem 6 GiB", "free memory of GPU 0", "none"
  // Offload: the host pool (pinned, mapped; same layout rules as the device pool), its size, and
  // the expert cache. Empty / 0 / inactive when everything is on the GPU.
  std::vector<Region> host_regions;
  uint64_t host_total = 0;
  ExpertCachePlan expert_cache;
  // The smallest budget a plan of these options fits with every offload step taken, and the
  // largest device regions of that plan ("weights.clip 606 MB, kv_cache 503 MB, ...").
  uint64_t minimum = 0;
  std::string minimum_consumers;
  // The vision region has two lanes (crop modes, everything resident and within the budget): the
  // encoder runs a page's tiles beside its global view. Offload plans and the minimum use one.
  bool vision_two_lanes = false;

  const Region* find_region(std::string_view name) const;
  const TensorSlot* find_tensor(std::string_view name) const;  // checkpoint tensor
  // Byte offset of a tensor from the base of its pool (the device pool, or the host pool for a
  // kHost tensor).
  uint64_t tensor_offset(const TensorSlot& t) const {
    return (t.where == Residency::kHost ? host_regions : regions)[t.region].offset + t.offset;
  }
  bool offloaded() const { return host_total > 0; }
  // Sum of the region sizes of one kind (weights, KV cache, activations, sampling).
  uint64_t kind_bytes(RegionKind kind) const;
  // Table for --inspect: the quantization policy, one row per region (offset, size, note), the
  // bytes per region kind, the total and the budget; the residency per class, the host pool, the
  // expert cache and the minimum budget.
  std::string describe() const;

  std::unordered_map<std::string, size_t> tensor_index;  // name -> tensors[i]
};

// The activation estimates, exposed for tests and for describe().
uint64_t kv_cache_bytes(const ModelConfig& cfg, int kv_tokens);
// two_lanes: room for a crop mode's tiles and global view at once (vision_gpu.h "concurrent").
uint64_t vision_workspace_bytes(const ModelConfig& cfg, Mode mode, bool two_lanes = false);
uint64_t decoder_activation_bytes(const ModelConfig& cfg, int prompt_tokens, int max_batch);
uint64_t sampling_state_bytes(const ModelConfig& cfg, int max_batch);

// Routed-expert slots per MoE layer an offload plan keeps at least: one token's choice (top_k).
int min_expert_slots(const ModelConfig& cfg);

// Build the plan. Fails (one line) on bad options (max_new_tokens outside 1..max_pos-prompt,
// kv_tokens too small for one prompt, ...), when the budget cannot be read (no GPU for device >=
// 0 without gpu_mem), or when even the smallest offload plan exceeds the budget ("... is below
// the minimum ..."; with offload = false: when the all-resident total exceeds it).
Expected<MemoryPlan> plan_memory(const ModelConfig& cfg, const std::vector<WeightEntry>& weights,
                                 const PlanOptions& options);

}  // namespace dsocr
