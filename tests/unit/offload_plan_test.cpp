// Offload plans (runtime/planner.h "Offload"): what moves to the host pool at which budget, the
// expert cache's slot count and layout, the minimum budget and the one-line refusal below it, on
// the official checkpoint's 2710 tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "loader/schema.h"
#include "runtime/planner.h"

namespace dsocr {
namespace {

uint64_t align(uint64_t x) {
  return (x + kPoolAlign - 1) / kPoolAlign * kPoolAlign;
}

std::vector<WeightEntry> official_weights() {
  std::vector<WeightEntry> w;
  for (const TensorSpec& s : checkpoint_schema(ModelConfig{}))
    w.push_back(weight_entry(s, static_cast<uint64_t>(s.numel()) * 2));
  return w;
}

PlanOptions budget(uint64_t bytes, Mode mode = Mode::kGundam) {
  PlanOptions o;
  o.mode = mode;
  o.device = -1;
  o.gpu_mem = bytes;
  o.budget_name = "--gpu-mem X";
  o.fix = "raise --gpu-mem";
  return o;
}

MemoryPlan plan(const std::vector<WeightEntry>& w, const PlanOptions& o) {
  Expected<MemoryPlan> p = plan_memory(ModelConfig{}, w, o);
  EXPECT_TRUE(p.ok()) << p.message();
  return p.ok() ? *p : MemoryPlan{};
}

// The all-resident plan with one vision lane: what a budget one byte below the unbounded plan
// gets in the crop modes (whose unbounded plan gives the encoder two lanes), before any offload.
MemoryPlan one_lane(const std::vector<WeightEntry>& w, PlanOptions o) {
  o.gpu_mem = 0;
  const MemoryPlan two = plan(w, o);
  if (!two.vision_two_lanes) return two;
  o.gpu_mem = two.total - 1;
  MemoryPlan one = plan(w, o);
  EXPECT_FALSE(one.offloaded());
  EXPECT_FALSE(one.vision_two_lanes);
  EXPECT_EQ(two.total - one.total, align(vision_workspace_bytes(ModelConfig{}, o.mode, true)) -
                                       align(vision_workspace_bytes(ModelConfig{}, o.mode)));
  return one;
}

const std::string kRouted = std::string("weights.") + tensor_class_name(TensorClass::kRoutedExpert);
const std::string kEmbedRegion = std::string("weights.") + tensor_class_name(TensorClass::kEmbed);

// Every tensor in exactly one pool, inside its region; regions of each pool in order, aligned,
// not overlapping; the totals cover them.
void expect_layout(const MemoryPlan& p, const std::vector<WeightEntry>& w) {
  for (const std::vector<Region>* rs : {&p.regions, &p.host_regions}) {
    uint64_t end = 0;
    for (const Region& r : *rs) {
      EXPECT_EQ(r.offset % kPoolAlign, 0u) << r.name;
      EXPECT_GE(r.offset, end) << r.name;
      end = r.offset + r.bytes;
    }
    EXPECT_GE(rs == &p.regions ? p.total : p.host_total, end);
  }
  ASSERT_EQ(p.tensors.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const TensorSlot& t = p.tensors[i];
    const std::vector<Region>& rs = t.where == Residency::kHost ? p.host_regions : p.regions;
    ASSERT_GE(t.region, 0) << t.name;
    ASSERT_LT(t.region, static_cast<int>(rs.size())) << t.name;
    EXPECT_EQ(rs[t.region].name, std::string("weights.") + tensor_class_name(w[i].cls));
    EXPECT_LE(t.offset + t.nbytes, rs[t.region].bytes) << t.name;
    EXPECT_EQ(p.tensor_offset(t), rs[t.region].offset + t.offset);
  }
}

TEST(ExpertNames, Parse) {
  int l = -1, e = -1, k = -1;
  EXPECT_TRUE(parse_expert_name("model.layers.3.mlp.experts.17.up_proj.weight", &l, &e, &k));
  EXPECT_EQ(l, 3);
  EXPECT_EQ(e, 17);
  EXPECT_EQ(k, 1);
  EXPECT_TRUE(parse_expert_name("model.layers.11.mlp.experts.63.down_proj.weight", &l, &e, &k));
  EXPECT_EQ(l, 11);
  EXPECT_EQ(e, 63);
  EXPECT_EQ(k, 2);
  EXPECT_TRUE(parse_expert_name("model.layers.1.mlp.experts.0.gate_proj.weight", &l, &e, &k));
  EXPECT_EQ(k, 0);
  for (const char* bad :
       {"model.layers.3.mlp.shared_experts.up_proj.weight", "model.layers.0.mlp.up_proj.weight",
        "model.layers.3.mlp.experts.17.up_proj.bias", "model.layers.x.mlp.experts.1.up_proj.weight",
        "model.layers.3.mlp.experts..up_proj.weight", "layers.3.mlp.experts.1.up_proj.weight",
        "model.layers.3.mlp.experts.1.up_proj.weight.x", "model.layers.3.mlp.gate.weight"})
    EXPECT_FALSE(parse_expert_name(bad, &l, &e, &k)) << bad;
}

// The all-resident Gundam plan, and the budgets one byte either side of each step. (The first
// step, from two vision lanes to one, is one_lane's.)
TEST(OffloadPlan, StepsAndMinimum) {
  const ModelConfig cfg;
  const std::vector<WeightEntry> w = official_weights();
  EXPECT_TRUE(plan(w, budget(0)).vision_two_lanes);
  const MemoryPlan all = one_lane(w, budget(0));
  ASSERT_GT(all.total, 0u);
  EXPECT_FALSE(all.offloaded());
  EXPECT_FALSE(all.expert_cache.active());
  const uint64_t embed = all.find_region(kEmbedRegion)->bytes;
  const uint64_t routed = all.find_region(kRouted)->bytes;
  EXPECT_EQ(embed, 129280ull * 1280 * 2);
  EXPECT_EQ(routed, 4844421120ull);

  // The expert cache of the smallest plan: top_k = 6 slots x 11 MoE layers, a slot = gate, up,
  // down of [896, 1280] BF16 (2,293,760 B each, already 256-aligned), then the 4 staging slots,
  // then 12 x 64 int32 counters.
  const uint64_t part = 896ull * 1280 * 2, slot = 3 * part;
  const uint64_t cache_min = align((11 * 6 + 4) * slot + 12 * 64 * 4);
  const uint64_t minimum = all.total - align(embed) - align(routed) + cache_min;
  EXPECT_EQ(all.minimum, minimum);
  EXPECT_EQ(min_expert_slots(cfg), 6);
  std::printf("gundam bf16: all-resident %s, minimum %s (%s)\n", format_bytes(all.total).c_str(),
              format_bytes(minimum).c_str(), all.minimum_consumers.c_str());

  // Budget = the all-resident total: nothing moves.
  MemoryPlan p = plan(w, budget(all.total));
  EXPECT_FALSE(p.offloaded());
  EXPECT_EQ(p.total, all.total);
  EXPECT_EQ(p.minimum, minimum);

  // One byte less: the embedding table goes to the host, nothing else.
  p = plan(w, budget(all.total - 1));
  expect_layout(p, w);
  EXPECT_TRUE(p.offloaded());
  EXPECT_FALSE(p.expert_cache.active());
  ASSERT_EQ(p.host_regions.size(), 1u);
  EXPECT_EQ(p.host_regions[0].name, kEmbedRegion);
  EXPECT_EQ(p.host_total, align(embed));
  EXPECT_EQ(p.find_region(kEmbedRegion), nullptr);
  EXPECT_EQ(p.total, all.total - align(embed));
  EXPECT_EQ(p.find_tensor("model.embed_tokens.weight")->where, Residency::kHost);
  EXPECT_EQ(p.find_tensor("lm_head.weight")->where, Residency::kDevice);
  EXPECT_EQ(p.find_tensor("model.layers.1.mlp.experts.0.gate_proj.weight")->where,
            Residency::kDevice);

  // Just below that: the routed experts too, with the largest cache that fits.
  p = plan(w, budget(all.total - align(embed) - 1));
  expect_layout(p, w);
  ASSERT_TRUE(p.expert_cache.active());
  EXPECT_LE(p.total, all.total - align(embed) - 1);
  EXPECT_LE(p.expert_cache.slots, 63);
  EXPECT_GE(p.expert_cache.slots, 60);  // the counters and alignment cost less than 4 slots

  // Exactly the minimum: 6 slots; one byte less is refused.
  p = plan(w, budget(minimum));
  expect_layout(p, w);
  EXPECT_EQ(p.total, minimum);
  ASSERT_TRUE(p.expert_cache.active());
  const ExpertCachePlan& ec = p.expert_cache;
  EXPECT_EQ(ec.slots, 6);
  EXPECT_EQ(ec.n_experts, 64);
  EXPECT_EQ(ec.layers, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(ec.slot_bytes, slot);
  EXPECT_EQ(ec.part_offset[0], 0u);
  EXPECT_EQ(ec.part_offset[1], part);
  EXPECT_EQ(ec.part_offset[2], 2 * part);
  EXPECT_EQ(ec.stage_slots, 4);
  EXPECT_EQ(ec.stage_offset, 66 * slot);
  EXPECT_EQ(ec.counts_offset, 70 * slot);
  EXPECT_EQ(ec.counts_bytes, 12u * 64 * 4);
  ASSERT_NE(p.find_region("expert_cache"), nullptr);
  EXPECT_EQ(p.find_region("expert_cache")->bytes, 70 * slot + 3072);
  EXPECT_EQ(p.find_region(kRouted), nullptr);
  ASSERT_EQ(p.host_regions.size(), 2u);
  EXPECT_EQ(p.host_regions[1].name, kRouted);
  EXPECT_EQ(p.host_regions[1].bytes, routed);
  EXPECT_EQ(p.host_total, align(embed) + align(routed));
  for (const TensorSlot& t : p.tensors) {
    int l, e, k;
    const bool expert = parse_expert_name(t.name, &l, &e, &k);
    EXPECT_EQ(t.where == Residency::kHost, expert || t.name == "model.embed_tokens.weight")
        << t.name;
  }
  // Everything else keeps its all-resident region.
  for (const Region& r : all.regions)
    if (r.name != kEmbedRegion && r.name != kRouted) {
      ASSERT_NE(p.find_region(r.name), nullptr) << r.name;
      EXPECT_EQ(p.find_region(r.name)->bytes, r.bytes) << r.name;
    }

  // Each extra slot costs 11 slots' bytes, to the byte.
  for (int extra : {1, 10, 26}) {
    p = plan(w, budget(minimum + extra * 11 * slot));
    EXPECT_EQ(p.expert_cache.slots, 6 + extra);
    EXPECT_EQ(p.total, minimum + extra * 11 * slot);
    p = plan(w, budget(minimum + extra * 11 * slot - 1));
    EXPECT_EQ(p.expert_cache.slots, 6 + extra - 1);
  }

  // Below the minimum: one line naming the budget, the minimum, the mode and the largest regions
  // that stay on the GPU, then the fix.
  Expected<MemoryPlan> r = plan_memory(cfg, w, budget(minimum - 1));
  ASSERT_FALSE(r.ok());
  const std::string& m = r.message();
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_EQ(m.find("--gpu-mem X (" + format_bytes(minimum - 1) + ") is below the minimum " +
                   format_bytes(minimum) + " for mode gundam, --quant bf16"),
            0u)
      << m;
  EXPECT_NE(m.find("weights.clip 606 MB, kv_cache 503 MB, expert_cache 482 MB"), std::string::npos)
      << m;
  EXPECT_NE(m.find("; raise --gpu-mem"), std::string::npos) << m;
  EXPECT_FALSE(plan_memory(cfg, w, budget(1ull << 30)).ok());

  // Without offload the same budgets are refused as before, naming the total.
  PlanOptions strict = budget(all.total - 1);
  strict.offload = false;
  r = plan_memory(cfg, w, strict);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message().find("plan needs " + format_bytes(all.total)), 0u) << r.message();
}

// Smaller modes and fewer new tokens lower the minimum by exactly their activation and KV bytes.
TEST(OffloadPlan, MinimumFollowsModeAndTokens) {
  const std::vector<WeightEntry> w = official_weights();
  const MemoryPlan gundam = one_lane(w, budget(0));
  const MemoryPlan all_tiny = plan(w, budget(0, Mode::kTiny));
  EXPECT_LT(all_tiny.minimum, gundam.minimum);
  EXPECT_EQ(gundam.total - gundam.minimum, all_tiny.total - all_tiny.minimum);
  PlanOptions o = budget(0, Mode::kTiny);
  o.max_new_tokens = 64;
  const MemoryPlan short_tiny = plan(w, o);
  EXPECT_EQ(all_tiny.minimum - short_tiny.minimum, all_tiny.total - short_tiny.total);
  // The short plan fits its own minimum.
  o.gpu_mem = short_tiny.minimum;
  const MemoryPlan fit = plan(w, o);
  EXPECT_EQ(fit.total, short_tiny.minimum);
  EXPECT_EQ(fit.expert_cache.slots, 6);
}

// Quantized experts: the cache slots and the host pool hold the stored (packed) bytes, and the
// minimum, the slot count and the refusal follow from them.
TEST(OffloadPlan, QuantizedExpertsKeepTheirPackedSize) {
  const std::vector<WeightEntry> w = official_weights();
  PlanOptions o = budget(0);
  Expected<QuantPolicy> q = parse_quant_policy("mixed");
  ASSERT_TRUE(q.ok());
  o.quant = *q;
  const MemoryPlan all = one_lane(w, o);
  // INT4 g128: gate/up [896, 1280] = 896 x 640 B of nibbles + 896 x 10 BF16 scales; down
  // [1280, 896] = 1280 x 448 B + 1280 x 7 scales. Both 591,360 B, a multiple of 256.
  const uint64_t gate = 896ull * 1280 / 2 + 896ull * (1280 / 128) * 2;
  const uint64_t down = 1280ull * 896 / 2 + 1280ull * (896 / 128) * 2;
  ASSERT_EQ(gate, 591360u);
  ASSERT_EQ(down, gate);
  const uint64_t part = gate, slot = 3 * part;
  const uint64_t routed = 11ull * 64 * slot;    // 704 experts, each part 256-aligned already
  const uint64_t embed = 129280ull * 1280 * 2;  // never quantized
  EXPECT_EQ(all.find_region(kRouted)->bytes, routed);
  EXPECT_EQ(all.find_region(kEmbedRegion)->bytes, embed);
  // 6 slots per layer, then the 4 staging slots.
  const uint64_t minimum =
      all.total - align(embed) - align(routed) + align(70 * slot + 12 * 64 * 4);
  EXPECT_EQ(all.minimum, minimum);
  o.gpu_mem = minimum;
  MemoryPlan p = plan(w, o);
  expect_layout(p, w);
  EXPECT_EQ(p.total, minimum);
  ASSERT_TRUE(p.expert_cache.active());
  const ExpertCachePlan& ec = p.expert_cache;
  EXPECT_EQ(ec.slots, 6);
  EXPECT_EQ(ec.slot_bytes, slot);
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(ec.part_bytes[k], part) << k;
    EXPECT_EQ(ec.part_offset[k], k * part) << k;
  }
  EXPECT_EQ(p.find_region("expert_cache")->bytes, 70 * slot + 3072);
  ASSERT_EQ(p.host_regions.size(), 2u);
  EXPECT_EQ(p.host_regions[1].name, kRouted);
  EXPECT_EQ(p.host_regions[1].bytes, routed);
  EXPECT_EQ(routed, 1248952320ull);
  EXPECT_EQ(p.host_total, align(embed) + routed);
  const TensorSlot* t = p.find_tensor("model.layers.5.mlp.experts.9.down_proj.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->where, Residency::kHost);
  EXPECT_EQ(t->nbytes, down);
  EXPECT_EQ(stored_format_name(t->stored), "int4 g128");
  // The shared experts stay on the GPU, as INT8.
  t = p.find_tensor("model.layers.5.mlp.shared_experts.up_proj.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->where, Residency::kDevice);
  EXPECT_EQ(t->nbytes, 1792ull * 1280 + 1792 * 2);
  // Each extra slot costs 11 packed slots, to the byte.
  for (int extra : {1, 14, 57}) {
    o.gpu_mem = minimum + extra * 11 * slot;
    p = plan(w, o);
    EXPECT_EQ(p.expert_cache.slots, 6 + extra);
    EXPECT_EQ(p.total, minimum + extra * 11 * slot);
    o.gpu_mem -= 1;
    EXPECT_EQ(plan(w, o).expert_cache.slots, 6 + extra - 1);
  }
  // One byte below the minimum: refused, naming the policy.
  o.gpu_mem = minimum - 1;
  Expected<MemoryPlan> r = plan_memory(ModelConfig{}, w, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(
      r.message().find("--gpu-mem X (" + format_bytes(minimum - 1) + ") is below the minimum " +
                       format_bytes(minimum) + " for mode gundam, --quant mixed"),
      0u)
      << r.message();
  std::printf("gundam mixed: all-resident %s, minimum %s\n", format_bytes(all.total).c_str(),
              format_bytes(minimum).c_str());
}

// INT8 routed experts: per-channel scales make the parts unequal (gate/up 896 scales, down 1280),
// so the slot's part offsets differ from the BF16 and INT4 ones.
TEST(OffloadPlan, Int8ExpertsPartsAndMinimum) {
  const std::vector<WeightEntry> w = official_weights();
  PlanOptions o = budget(0);
  apply_quant_override(o.quant, QuantOverride::kExperts, WeightFormat::kInt8);
  const MemoryPlan all = one_lane(w, o);
  const uint64_t gate = 896ull * 1280 + 896 * 2, down = 1280ull * 896 + 1280 * 2;
  ASSERT_EQ(gate % kPoolAlign, 0u);
  ASSERT_EQ(down % kPoolAlign, 0u);
  const uint64_t slot = 2 * gate + down;
  const uint64_t routed = 704 * slot;
  EXPECT_EQ(all.find_region(kRouted)->bytes, routed);
  const uint64_t embed = 129280ull * 1280 * 2;
  const uint64_t minimum = all.total - align(embed) - align(routed) + align(70 * slot + 3072);
  EXPECT_EQ(all.minimum, minimum);
  o.gpu_mem = minimum + 3 * 11 * slot;
  const MemoryPlan p = plan(w, o);
  expect_layout(p, w);
  ASSERT_TRUE(p.expert_cache.active());
  const ExpertCachePlan& ec = p.expert_cache;
  EXPECT_EQ(ec.slots, 9);
  EXPECT_EQ(p.total, o.gpu_mem);
  EXPECT_EQ(ec.slot_bytes, 3446784u);
  EXPECT_EQ(ec.slot_bytes, slot);
  EXPECT_EQ(ec.part_bytes[0], gate);
  EXPECT_EQ(ec.part_bytes[1], gate);
  EXPECT_EQ(ec.part_bytes[2], down);
  EXPECT_EQ(ec.part_offset[1], gate);
  EXPECT_EQ(ec.part_offset[2], 2 * gate);
  EXPECT_EQ(p.host_regions.back().bytes, routed);
  EXPECT_EQ(p.host_total, align(embed) + routed);
  EXPECT_EQ(p.find_region("expert_cache")->bytes, (99 + 4) * slot + 3072);
}

TEST(OffloadPlan, Describe) {
  const std::vector<WeightEntry> w = official_weights();
  const MemoryPlan all = one_lane(w, budget(0));
  const std::string a = all.describe();
  EXPECT_NE(a.find("residency                all on the GPU"), std::string::npos) << a;
  EXPECT_NE(a.find("minimum budget"), std::string::npos) << a;
  EXPECT_NE(a.find(std::to_string(all.minimum)), std::string::npos) << a;
  EXPECT_EQ(a.find("host pool"), std::string::npos) << a;

  const MemoryPlan p = plan(w, budget(all.minimum + 4 * 11 * 6881280ull));
  const std::string d = p.describe();
  for (const char* want :
       {"residency                embed host; routed_expert host + expert cache 10 slots per "
        "layer; everything else on the GPU",
        "host pool (pinned, mapped", "weights.embed", "weights.routed_expert", "all host",
        "expert cache", "10 of 64 experts in 11 MoE layers, 6.88 MB per slot", "expert_cache",
        "minimum budget"})
    EXPECT_NE(d.find(want), std::string::npos) << want << " missing from:\n" << d;
  EXPECT_NE(d.find(std::to_string(p.host_total)), std::string::npos) << d;
}

}  // namespace
}  // namespace dsocr
