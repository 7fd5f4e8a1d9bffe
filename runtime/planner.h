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
// plan_memory() refuses a plan larger than the budget (--gpu-mem, or the device's free memory),
// naming the budget, the total and the largest regions.
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

struct TensorSlot {
  std::string name;
  int region = 0;       // index into MemoryPlan::regions
  uint64_t offset = 0;  // inside the region, multiple of kPoolAlign
  uint64_t nbytes = 0;  // as stored: the checkpoint's bytes (BF16), or values + scales
  StoredFormat stored;
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

  const Region* find_region(std::string_view name) const;
  const TensorSlot* find_tensor(std::string_view name) const;  // checkpoint tensor
  // Byte offset of a tensor from the pool base.
  uint64_t tensor_offset(const TensorSlot& t) const { return regions[t.region].offset + t.offset; }
  // Sum of the region sizes of one kind (weights, KV cache, activations, sampling).
  uint64_t kind_bytes(RegionKind kind) const;
  // Table for --inspect: the quantization policy, one row per region (offset, size, note), the
  // bytes per region kind, the total and the budget.
  std::string describe() const;

  std::unordered_map<std::string, size_t> tensor_index;  // name -> tensors[i]
};

// The activation estimates, exposed for tests and for describe().
uint64_t kv_cache_bytes(const ModelConfig& cfg, int kv_tokens);
uint64_t vision_workspace_bytes(const ModelConfig& cfg, Mode mode);
uint64_t decoder_activation_bytes(const ModelConfig& cfg, int prompt_tokens, int max_batch);
uint64_t sampling_state_bytes(const ModelConfig& cfg, int max_batch);

// Build the plan. Fails (one line) on bad options (max_new_tokens outside 1..max_pos-prompt,
// kv_tokens too small for one prompt, ...), when the budget cannot be read (no GPU for device >=
// 0 without gpu_mem), or when the total exceeds the budget.
Expected<MemoryPlan> plan_memory(const ModelConfig& cfg, const std::vector<WeightEntry>& weights,
                                 const PlanOptions& options);

}  // namespace dsocr
