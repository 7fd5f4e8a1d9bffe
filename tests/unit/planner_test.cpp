// The memory planner: size parsing, the plan's layout invariants, the formulas, the defaults per
// mode, and the one-line errors (bad options, over budget).
#include "runtime/planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "runtime/cuda_check.h"
#include "runtime/decoder_gpu.h"
#include "runtime/vision_gpu.h"

namespace dsocr {
namespace {

TEST(ParseSize, AcceptsUnits) {
  struct Case {
    const char* text;
    uint64_t bytes;
  };
  const Case cases[] = {
      {"3G", 3ull << 30},
      {"3g", 3ull << 30},
      {"2500M", 2500ull << 20},
      {"512MiB", 512ull << 20},
      {"512mib", 512ull << 20},
      {"1.5GB", 1500000000ull},
      {"1.5G", 3ull << 29},
      {"1073741824", 1073741824},
      {"64k", 64ull << 10},
      {"64KB", 64000},
      {"100B", 100},
      {"2T", 2ull << 40},
      {"2TB", 2000000000000ull},
      {"1 GiB", 1ull << 30},
      {".5K", 512},
  };
  for (const Case& c : cases) {
    Expected<uint64_t> r = parse_size(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.message();
    EXPECT_EQ(*r, c.bytes) << c.text;
  }
}

TEST(ParseSize, RejectsGarbageWithOneLine) {
  for (const char* bad :
       {"", "G", "-1G", "3X", "1e9", "0", "0.1", "3GG", "1.2.3G", "abc", "99999999999T", "6 G B"}) {
    Expected<uint64_t> r = parse_size(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' parsed as " << (r.ok() ? *r : 0);
    if (!r.ok()) {
      EXPECT_NE(r.message().find(std::string("'") + bad + "'"), std::string::npos) << r.message();
      EXPECT_NE(r.message().find("e.g. 6G"), std::string::npos) << r.message();
      EXPECT_EQ(r.message().find('\n'), std::string::npos);
    }
  }
}

TEST(FormatBytes, ThreeSignificantDigits) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(330956800), "331 MB");
  EXPECT_EQ(format_bytes(6672212480ull), "6.67 GB");
  EXPECT_EQ(format_bytes(12345678), "12.3 MB");
  EXPECT_EQ(format_bytes(999499), "999 kB");
  EXPECT_EQ(format_bytes(999500), "1.00 MB");
}

TEST(Planner, MaxPromptTokensPerMode) {
  // BOS + image tokens (MODEL.md table; Gundam's largest grid is 1x9 tiles: 273 + 90*11) + text.
  EXPECT_EQ(max_prompt_tokens(Mode::kTiny), 1 + 73 + kPromptTextTokens);
  EXPECT_EQ(max_prompt_tokens(Mode::kSmall), 1 + 111 + kPromptTextTokens);
  EXPECT_EQ(max_prompt_tokens(Mode::kBase), 1 + 273 + kPromptTextTokens);
  EXPECT_EQ(max_prompt_tokens(Mode::kLarge), 1 + 421 + kPromptTextTokens);
  EXPECT_EQ(max_prompt_tokens(Mode::kGundam), 1 + 1263 + kPromptTextTokens);
}

TEST(Planner, Formulas) {
  const ModelConfig cfg;
  EXPECT_EQ(kv_cache_bytes(cfg, 1), 61440u);  // DESIGN.md §4: 60 KB per token
  EXPECT_EQ(kv_cache_bytes(cfg, 8192), 8192ull * 61440);
  // Vision grows with the view size; Gundam's 9 tiles of 640 outweigh one 1024 view.
  EXPECT_LT(vision_workspace_bytes(cfg, Mode::kTiny), vision_workspace_bytes(cfg, Mode::kSmall));
  EXPECT_LT(vision_workspace_bytes(cfg, Mode::kSmall), vision_workspace_bytes(cfg, Mode::kBase));
  EXPECT_LT(vision_workspace_bytes(cfg, Mode::kBase), vision_workspace_bytes(cfg, Mode::kLarge));
  EXPECT_GT(vision_workspace_bytes(cfg, Mode::kGundam), vision_workspace_bytes(cfg, Mode::kBase));
  // The GPU encoder's own carving (runtime/vision_gpu.h lists the figures): base 98 MB, Gundam
  // (1 x 1024 + 9 x 640) 227 MB.
  for (Mode m : {Mode::kTiny, Mode::kBase, Mode::kGundam})
    EXPECT_EQ(vision_workspace_bytes(cfg, m), vision_gpu_region_bytes(cfg, vision_groups(m)));
  EXPECT_EQ(vision_workspace_bytes(cfg, Mode::kBase), 98'265'088u);
  EXPECT_EQ(vision_workspace_bytes(cfg, Mode::kGundam), 227'270'656u);
  // Two lanes: + the 1024² group's activations and a second 32 MiB GEMM workspace; the one-view
  // modes have one group, so the flag changes nothing.
  EXPECT_EQ(vision_workspace_bytes(cfg, Mode::kGundam, true),
            227'270'656u + 33'554'432 + 50'704'384);
  EXPECT_EQ(vision_workspace_bytes(cfg, Mode::kBase, true),
            vision_workspace_bytes(cfg, Mode::kBase));
  // Decoder: the GPU decoder's carving; per row ~106 KB (MoE prefill scratch half of it), plus
  // fixed buffers (logits, attention partials, cuBLASLt's 32 MiB) and FP32 logits per extra
  // sequence.
  const uint64_t fixed = decoder_activation_bytes(cfg, 0, 1);
  const uint64_t one = decoder_activation_bytes(cfg, 1000, 1);
  EXPECT_EQ(one, GpuDecoder::workspace_bytes(cfg, 1000));
  EXPECT_GT(fixed, 32ull << 20);
  EXPECT_LT(fixed, 40ull << 20);
  EXPECT_GT(one - fixed, 1000ull * 90000);
  EXPECT_LT(one - fixed, 1000ull * 130000);
  EXPECT_EQ(decoder_activation_bytes(cfg, 500, 2) - GpuDecoder::workspace_bytes(cfg, 1000),
            129280u * 4);
  EXPECT_EQ(sampling_state_bytes(cfg, 3), 3 * sampling_state_bytes(cfg, 1));
}

// Random weight list: sizes 1..3 MB (odd ones too) spread over all classes.
std::vector<WeightEntry> random_weights(uint32_t seed, int n) {
  std::mt19937 rng(seed);
  std::vector<WeightEntry> w;
  for (int i = 0; i < n; ++i) {
    WeightEntry e;
    e.name = "t" + std::to_string(i);
    e.nbytes = 1 + rng() % 3000000;
    e.cls = static_cast<TensorClass>(rng() % (static_cast<int>(TensorClass::kRoutedExpert) + 1));
    w.push_back(e);
  }
  return w;
}

PlanOptions no_gpu(Mode mode = Mode::kGundam) {
  PlanOptions o;
  o.mode = mode;
  o.device = -1;
  return o;
}

TEST(Planner, LayoutInvariants) {
  const ModelConfig cfg;
  for (uint32_t seed : {1u, 2u, 3u}) {
    const std::vector<WeightEntry> weights = random_weights(seed, 300);
    Expected<MemoryPlan> p = plan_memory(cfg, weights, no_gpu());
    ASSERT_TRUE(p.ok()) << p.message();
    // Regions: aligned, in order, not overlapping, inside the total.
    uint64_t end = 0;
    for (const Region& r : p->regions) {
      EXPECT_EQ(r.offset % kPoolAlign, 0u) << r.name;
      EXPECT_GE(r.offset, end) << r.name;
      end = r.offset + r.bytes;
      EXPECT_EQ(p->find_region(r.name), &r);
    }
    EXPECT_GE(p->total, end);
    EXPECT_EQ(p->total % kPoolAlign, 0u);
    EXPECT_LT(p->total - end, kPoolAlign);
    // Tensors: one slot each, aligned, inside its weights region of the right class, no overlap.
    ASSERT_EQ(p->tensors.size(), weights.size());
    std::vector<std::pair<uint64_t, uint64_t>> spans;
    for (size_t i = 0; i < weights.size(); ++i) {
      const TensorSlot* s = p->find_tensor(weights[i].name);
      ASSERT_NE(s, nullptr) << weights[i].name;
      EXPECT_EQ(s->nbytes, weights[i].nbytes);
      const Region& r = p->regions[s->region];
      EXPECT_EQ(r.kind, RegionKind::kWeights);
      EXPECT_EQ(r.name, std::string("weights.") + tensor_class_name(weights[i].cls));
      EXPECT_EQ(s->offset % kPoolAlign, 0u);
      EXPECT_LE(s->offset + s->nbytes, r.bytes) << s->name;
      spans.emplace_back(p->tensor_offset(*s), p->tensor_offset(*s) + s->nbytes);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) EXPECT_LE(spans[i - 1].second, spans[i].first);
    // Per-class region sizes: the sum of the class's tensors, each padded to the alignment.
    for (const Region& r : p->regions) {
      if (r.kind != RegionKind::kWeights) continue;
      uint64_t sum = 0;
      for (const WeightEntry& w : weights)
        if (r.name == std::string("weights.") + tensor_class_name(w.cls))
          sum += (w.nbytes + kPoolAlign - 1) / kPoolAlign * kPoolAlign;
      EXPECT_EQ(r.bytes, sum) << r.name;
    }
    EXPECT_EQ(p->find_tensor("nope"), nullptr);
    EXPECT_EQ(p->find_region("nope"), nullptr);
  }
}

TEST(Planner, DefaultsPerMode) {
  const ModelConfig cfg;
  const std::vector<WeightEntry> weights = random_weights(7, 20);
  for (Mode m : {Mode::kTiny, Mode::kSmall, Mode::kBase, Mode::kLarge, Mode::kGundam}) {
    Expected<MemoryPlan> p = plan_memory(cfg, weights, no_gpu(m));
    ASSERT_TRUE(p.ok()) << p.message();
    EXPECT_EQ(p->prompt_tokens, max_prompt_tokens(m));
    EXPECT_EQ(p->max_new_tokens, 8192 - max_prompt_tokens(m));  // fill the context
    EXPECT_EQ(p->kv_tokens, 8192);
    ASSERT_NE(p->find_region("kv_cache"), nullptr);
    EXPECT_EQ(p->find_region("kv_cache")->bytes, 8192ull * 61440);
    const bool lanes = m == Mode::kGundam;  // the crop mode: tiles beside the global view
    EXPECT_EQ(p->vision_two_lanes, lanes);
    EXPECT_EQ(p->find_region("vision")->bytes, vision_workspace_bytes(cfg, m, lanes));
    EXPECT_EQ(p->find_region("decoder")->bytes,
              decoder_activation_bytes(cfg, max_prompt_tokens(m), 1));
    EXPECT_EQ(p->find_region("sampling")->bytes, sampling_state_bytes(cfg, 1));
    EXPECT_EQ(p->budget, 0u);
  }
  // Fewer new tokens: the KV cache holds prompt + new tokens, times the batch.
  PlanOptions o = no_gpu(Mode::kTiny);
  o.max_new_tokens = 100;
  o.max_batch = 4;
  Expected<MemoryPlan> p = plan_memory(cfg, weights, o);
  ASSERT_TRUE(p.ok()) << p.message();
  EXPECT_EQ(p->kv_tokens, 4 * ((max_prompt_tokens(Mode::kTiny) + 100 + 31) / 32 * 32));
  EXPECT_EQ(p->find_region("kv_cache")->bytes, kv_cache_bytes(cfg, p->kv_tokens));
  EXPECT_EQ(p->find_region("decoder")->bytes,
            decoder_activation_bytes(cfg, max_prompt_tokens(Mode::kTiny), 4));
  // Explicit kv tokens win.
  o.kv_tokens = 5000;
  p = plan_memory(cfg, weights, o);
  ASSERT_TRUE(p.ok()) << p.message();
  EXPECT_EQ(p->kv_tokens, 5000);
}

TEST(Planner, BadOptionsAreOneLineErrors) {
  const ModelConfig cfg;
  const std::vector<WeightEntry> weights = random_weights(8, 10);
  PlanOptions o = no_gpu(Mode::kGundam);
  o.max_new_tokens = 8192 - max_prompt_tokens(Mode::kGundam) + 1;
  Expected<MemoryPlan> p = plan_memory(cfg, weights, o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.message().find(strfmt("1..%d", 8192 - max_prompt_tokens(Mode::kGundam))),
            std::string::npos)
      << p.message();
  o.max_new_tokens = 8192 - max_prompt_tokens(Mode::kGundam);  // the largest that fits
  EXPECT_TRUE(plan_memory(cfg, weights, o).ok());
  o.max_new_tokens = -1;
  EXPECT_FALSE(plan_memory(cfg, weights, o).ok());
  o = no_gpu(Mode::kTiny);
  o.kv_tokens = 10;  // less than one prompt
  p = plan_memory(cfg, weights, o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.message().find("kv tokens 10"), std::string::npos) << p.message();
  o.kv_tokens = 8193;  // more than max_pos x batch 1
  EXPECT_FALSE(plan_memory(cfg, weights, o).ok());
  o = no_gpu();
  o.max_batch = 0;
  EXPECT_FALSE(plan_memory(cfg, weights, o).ok());
}

// Without offload (PlanOptions::offload = false); tests/unit/offload_plan_test.cpp covers the
// offload plans and their minimum.
TEST(Planner, OverBudgetNamesTotalBudgetAndBiggestRegions) {
  const ModelConfig cfg;
  std::vector<WeightEntry> weights = {
      {"a", 5'200'000'000, TensorClass::kRoutedExpert},
      {"b", 330'956'800, TensorClass::kLmHead},
      {"c", 100'000'000, TensorClass::kAttn},
      {"d", 1000, TensorClass::kNorm},
  };
  PlanOptions o = no_gpu(Mode::kGundam);
  o.offload = false;
  o.gpu_mem = 6ull << 30;
  o.budget_name = "--gpu-mem 6G";
  o.fix = "raise --gpu-mem or use a smaller --mode";
  Expected<MemoryPlan> p = plan_memory(cfg, weights, o);
  ASSERT_FALSE(p.ok());
  const std::string& m = p.message();
  EXPECT_EQ(m.find('\n'), std::string::npos);
  EXPECT_EQ(m.find("plan needs "), 0u) << m;
  EXPECT_NE(m.find("> --gpu-mem 6G (6.44 GB)"), std::string::npos) << m;
  // The three biggest, largest first: routed experts, the KV cache (503 MB), lm_head (331 MB).
  const size_t a = m.find("weights.routed_expert 5.20 GB");
  const size_t b = m.find("kv_cache 503 MB");
  const size_t c = m.find("weights.lm_head 331 MB");
  EXPECT_NE(a, std::string::npos) << m;
  EXPECT_NE(b, std::string::npos) << m;
  EXPECT_NE(c, std::string::npos) << m;
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(m.find("weights.norm"), std::string::npos) << m;
  EXPECT_NE(m.find("; raise --gpu-mem or use a smaller --mode"), std::string::npos) << m;

  // The same plan fits a budget one byte above its total; one byte below, the vision encoder
  // gets one lane instead of two (Gundam), and one byte below that plan is refused.
  o.gpu_mem = 0;
  Expected<MemoryPlan> unbounded = plan_memory(cfg, weights, o);
  ASSERT_TRUE(unbounded.ok());
  EXPECT_TRUE(unbounded->vision_two_lanes);
  o.gpu_mem = unbounded->total;
  EXPECT_TRUE(plan_memory(cfg, weights, o).ok());
  o.gpu_mem = unbounded->total - 1;
  Expected<MemoryPlan> one = plan_memory(cfg, weights, o);
  ASSERT_TRUE(one.ok()) << one.message();
  EXPECT_FALSE(one->vision_two_lanes);
  EXPECT_EQ(one->find_region("vision")->bytes, vision_workspace_bytes(cfg, Mode::kGundam));
  o.gpu_mem = one->total - 1;
  EXPECT_FALSE(plan_memory(cfg, weights, o).ok());
}

TEST(Planner, BudgetFromTheDevice) {
  const ModelConfig cfg;
  PlanOptions o;  // device 0, no gpu_mem: the free memory of GPU 0
  o.mode = Mode::kTiny;
  Expected<MemoryPlan> p = plan_memory(cfg, random_weights(9, 5), o);
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) {
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.message().find("cannot size the memory budget"), std::string::npos) << p.message();
  } else {
    ASSERT_TRUE(p.ok()) << p.message();
    EXPECT_GT(p->budget, 0u);
    EXPECT_NE(p->budget_source.find("free memory of GPU 0"), std::string::npos);
  }
}

TEST(Planner, OfficialSchemaPlan) {
  // The whole official checkpoint: 2710 tensors, 6,672,212,480 bytes (golden/README.md).
  const ModelConfig cfg;
  std::vector<WeightEntry> weights;
  uint64_t sum = 0;
  for (const TensorSpec& s : checkpoint_schema(cfg)) {
    weights.push_back(weight_entry(s, static_cast<uint64_t>(s.numel()) * dtype_size(s.dtype)));
    sum += weights.back().nbytes;
  }
  EXPECT_EQ(weights.size(), 2710u);
  EXPECT_EQ(sum, 6672212480ull);
  Expected<MemoryPlan> p = plan_memory(cfg, weights, no_gpu());
  ASSERT_TRUE(p.ok()) << p.message();
  uint64_t weight_bytes = 0;
  for (const Region& r : p->regions)
    if (r.kind == RegionKind::kWeights) weight_bytes += r.bytes;
  EXPECT_GE(weight_bytes, sum);
  EXPECT_LT(weight_bytes, sum + 2710 * kPoolAlign);
  // lm_head is [129280, 1280] BF16 in a class of its own.
  const Region* lm =
      p->find_region(std::string("weights.") + tensor_class_name(TensorClass::kLmHead));
  ASSERT_NE(lm, nullptr);
  EXPECT_EQ(lm->bytes, 129280ull * 1280 * 2);
  const std::string d = p->describe();
  for (const Region& r : p->regions) EXPECT_NE(d.find(r.name), std::string::npos) << d;
  EXPECT_NE(d.find("total"), std::string::npos);
  EXPECT_NE(d.find(std::to_string(p->total)), std::string::npos) << d;
}

// The official checkpoint's weight entries (2710 tensors, BF16).
std::vector<WeightEntry> official_weights() {
  std::vector<WeightEntry> w;
  for (const TensorSpec& s : checkpoint_schema(ModelConfig{}))
    w.push_back(weight_entry(s, static_cast<uint64_t>(s.numel()) * 2));
  return w;
}

QuantPolicy quant(const char* name, int group = 128) {
  Expected<QuantPolicy> p = parse_quant_policy(name);
  EXPECT_TRUE(p.ok()) << p.message();
  EXPECT_TRUE(set_quant_group(*p, group).ok());
  return *p;
}

// slot_order: each decoder layer's q_proj, k_proj and v_proj slots back to back in that order
// (the checkpoint sorts them k, o, q, v), so the BF16 prefill runs q|k|v as one GEMM; o_proj and
// every other tensor keep a slot of their own.
TEST(Planner, QkvSlotsAdjacent) {
  const ModelConfig cfg;
  std::vector<WeightEntry> weights = official_weights();
  // In name order, as a safetensors header lists them (k_proj, o_proj, q_proj, v_proj).
  std::sort(weights.begin(), weights.end(),
            [](const WeightEntry& a, const WeightEntry& b) { return a.name < b.name; });
  Expected<MemoryPlan> p = plan_memory(cfg, weights, no_gpu());
  ASSERT_TRUE(p.ok()) << p.message();
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".self_attn.";
    const TensorSlot* q = p->find_tensor(pre + "q_proj.weight");
    const TensorSlot* k = p->find_tensor(pre + "k_proj.weight");
    const TensorSlot* v = p->find_tensor(pre + "v_proj.weight");
    ASSERT_TRUE(q && k && v) << pre;
    EXPECT_EQ(q->nbytes, 1280u * 1280 * 2);
    EXPECT_EQ(p->tensor_offset(*k), p->tensor_offset(*q) + q->nbytes) << pre;
    EXPECT_EQ(p->tensor_offset(*v), p->tensor_offset(*k) + k->nbytes) << pre;
  }
}

// Weight regions of the Gundam plan under each policy, from the formula (kernels/quant.h):
// INT8 [n, k] = n·k + 2n bytes, INT4 = n·k/2 + 2n·k/G, each slot rounded up to 256 B. Decoder
// linear classes, BF16 -> INT8 -> INT4 g128:
//   attn    48 x [1280,1280]                         157,286,400 ->    78,766,080 ->    40,550,400
//   dense   2 x [6848,1280] + [1280,6848] (g64)       52,592,640 ->    26,326,528 ->    13,696,000
//   shared  11 x (2 x [1792,1280] + [1280,1792])     151,388,160 ->    75,801,088 ->    39,029,760
//   routed  704 x (2 x [896,1280] + [1280,896])    4,844,421,120 -> 2,426,535,936 -> 1,248,952,320
//           (an expert matrix: 573,440 B of nibbles + 17,920 B of scales = 591,360 = 2310 x 256)
// Everything else (embed, lm_head, vision, norms, router: 1,466,524,160 B of tensors + 3,072 B of
// padding) keeps its BF16 region. mixed: INT4 routed + INT8 the rest = 1,429,846,016 B of decoder
// linears, so the weights fall from 6.67 GB to 2.90 GB (2,896,373,248 B).
TEST(PlannerQuant, GundamWeightsPerPolicy) {
  const ModelConfig cfg;
  const std::vector<WeightEntry> weights = official_weights();
  struct Case {
    const char* policy;
    int group;
    uint64_t attn, dense, shared, routed;
  };
  const Case cases[] = {
      {"bf16", 128, 157286400, 52592640, 151388160, 4844421120},
      {"int8", 128, 78766080, 26326528, 75801088, 2426535936},
      {"int4", 128, 40550400, 13696000, 39029760, 1248952320},
      {"int4", 64, 41779200, 13969920, 40212480, 1286799360},
      {"mixed", 128, 78766080, 26326528, 75801088, 1248952320},
      {"mixed", 64, 78766080, 26326528, 75801088, 1286799360},
  };
  Expected<MemoryPlan> bf16 = plan_memory(cfg, weights, no_gpu());
  ASSERT_TRUE(bf16.ok()) << bf16.message();
  const uint64_t bf16_weights = bf16->kind_bytes(RegionKind::kWeights);
  // The BF16 plan: the checkpoint's 6,672,212,480 bytes + 3,072 B of 256-alignment padding
  // (1-D tensors of odd sizes in the vision classes).
  EXPECT_EQ(bf16_weights, 6672212480ull + 3072);
  auto region = [](const MemoryPlan& p, TensorClass c) {
    const Region* r = p.find_region(std::string("weights.") + tensor_class_name(c));
    return r ? r->bytes : 0;
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(strfmt("%s group %d", c.policy, c.group));
    PlanOptions o = no_gpu();
    o.quant = quant(c.policy, c.group);
    Expected<MemoryPlan> p = plan_memory(cfg, weights, o);
    ASSERT_TRUE(p.ok()) << p.message();
    EXPECT_EQ(region(*p, TensorClass::kAttn), c.attn);
    EXPECT_EQ(region(*p, TensorClass::kDenseMlp), c.dense);
    EXPECT_EQ(region(*p, TensorClass::kSharedExpert), c.shared);
    EXPECT_EQ(region(*p, TensorClass::kRoutedExpert), c.routed);
    for (TensorClass k :
         {TensorClass::kSam, TensorClass::kClip, TensorClass::kProjector, TensorClass::kEmbed,
          TensorClass::kLmHead, TensorClass::kNorm, TensorClass::kRouter})
      EXPECT_EQ(region(*p, k), region(*bf16, k)) << tensor_class_name(k);
    const uint64_t decoder = c.attn + c.dense + c.shared + c.routed;
    EXPECT_EQ(p->kind_bytes(RegionKind::kWeights), 1466524160ull + 3072 + decoder);
    // Activations, KV cache and sampling do not depend on the weights' format.
    EXPECT_EQ(p->total - p->kind_bytes(RegionKind::kWeights),
              bf16->total - bf16->kind_bytes(RegionKind::kWeights));
    // Slots: the policy's format, sized by the formula, inside their region.
    for (size_t i = 0; i < weights.size(); ++i) {
      const TensorSlot& t = p->tensors[i];
      ASSERT_EQ(t.name, weights[i].name);
      EXPECT_EQ(t.stored, stored_format(o.quant, weights[i].cls, weights[i].out, weights[i].in));
      EXPECT_EQ(t.nbytes, stored_bytes(t.stored, weights[i].out, weights[i].in, weights[i].nbytes));
      EXPECT_LE(t.offset + t.nbytes, p->regions[t.region].bytes) << t.name;
    }
  }
  // The mixed Gundam figure of the README: 2.90 GB of weights.
  PlanOptions o = no_gpu();
  o.quant = quant("mixed");
  Expected<MemoryPlan> mixed = plan_memory(cfg, weights, o);
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ(mixed->kind_bytes(RegionKind::kWeights), 2896373248ull);
  EXPECT_EQ(format_bytes(mixed->kind_bytes(RegionKind::kWeights)), "2.90 GB");
  // Per tensor: layer 0's down_proj takes group 64 under int4; the router never changes.
  o.quant = quant("int4");
  Expected<MemoryPlan> int4 = plan_memory(cfg, weights, o);
  ASSERT_TRUE(int4.ok());
  EXPECT_EQ(int4->find_tensor("model.layers.0.mlp.down_proj.weight")->stored,
            (StoredFormat{WeightFormat::kInt4, 64}));
  EXPECT_EQ(int4->find_tensor("model.layers.0.mlp.up_proj.weight")->stored,
            (StoredFormat{WeightFormat::kInt4, 128}));
  EXPECT_EQ(int4->find_tensor("model.layers.3.mlp.gate.weight")->stored, StoredFormat{});
  EXPECT_NE(int4->find_region("weights.dense_mlp")->note.find("3 tensors, int4 g128 + int4 g64"),
            std::string::npos)
      << int4->find_region("weights.dense_mlp")->note;
}

// Overrides: lm_head INT8 and vision INT4 (its linear weights only: convolutions, norms, biases,
// positional tables stay BF16).
TEST(PlannerQuant, OverridesAndDescribe) {
  const ModelConfig cfg;
  const std::vector<WeightEntry> weights = official_weights();
  PlanOptions o = no_gpu();
  o.quant = quant("mixed");
  apply_quant_override(o.quant, QuantOverride::kLmHead, WeightFormat::kInt8);
  apply_quant_override(o.quant, QuantOverride::kVision, WeightFormat::kInt4);
  Expected<MemoryPlan> p = plan_memory(cfg, weights, o);
  ASSERT_TRUE(p.ok()) << p.message();
  EXPECT_EQ(p->find_region("weights.lm_head")->bytes, 129280ull * 1280 + 129280 * 2);
  EXPECT_EQ(p->find_tensor("model.sam_model.blocks.0.attn.qkv.weight")->stored,
            (StoredFormat{WeightFormat::kInt4, 128}));
  for (const char* bf16 :
       {"model.sam_model.blocks.0.attn.qkv.bias", "model.sam_model.pos_embed",
        "model.sam_model.neck.0.weight", "model.sam_model.blocks.2.attn.rel_pos_h",
        "model.vision_model.embeddings.position_embedding.weight", "model.embed_tokens.weight",
        "model.norm.weight"})
    EXPECT_EQ(p->find_tensor(bf16)->stored, StoredFormat{}) << bf16;
  EXPECT_NE(p->find_region("weights.sam")->note.find("bf16 + int4 g128"), std::string::npos)
      << p->find_region("weights.sam")->note;
  const std::string d = p->describe();
  for (const char* want :
       {"weights: --quant mixed: sam, clip, projector, routed_expert int4 (group 128); lm_head, "
        "attn, dense_mlp, shared_expert int8; the rest bf16",
        "all weights", "all activations", "all kv_cache", "all sampling"})
    EXPECT_NE(d.find(want), std::string::npos) << want << " missing from\n" << d;
  EXPECT_NE(d.find(strfmt("(%llu bytes)",
                          static_cast<unsigned long long>(p->kind_bytes(RegionKind::kWeights)))),
            std::string::npos)
      << d;
  EXPECT_EQ(p->kind_bytes(RegionKind::kWeights) + p->kind_bytes(RegionKind::kActivations) +
                p->kind_bytes(RegionKind::kKvCache) + p->kind_bytes(RegionKind::kSampling),
            [&] {
              uint64_t sum = 0;
              for (const Region& r : p->regions) sum += r.bytes;
              return sum;
            }());
}

TEST(Planner, WeightEntriesNeedSchemaNames) {
  // A tiny checkpoint: one official tensor and one stranger.
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("dsocr_planner_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::vector<TensorInfo> ts(2);
  ts[0].name = "model.norm.weight";
  ts[0].shape = {1280};
  ts[1].name = "model.stranger";
  ts[1].shape = {3};
  const std::string header = build_safetensors_header(ts);
  ASSERT_FALSE(header.empty());
  {
    std::ofstream f(dir / "model.safetensors", std::ios::binary);
    f << header << std::string(1280 * 2 + 3 * 2, '\0');
  }
  Expected<Checkpoint> ck = Checkpoint::open_dir(dir.string());
  ASSERT_TRUE(ck.ok()) << ck.message();
  const std::vector<TensorSpec> schema = checkpoint_schema(ModelConfig{});
  Expected<std::vector<WeightEntry>> e = weight_entries(*ck, schema);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.message().find("model.stranger"), std::string::npos) << e.message();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsocr
