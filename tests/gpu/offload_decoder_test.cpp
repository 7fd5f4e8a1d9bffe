// Offload changes where bytes live, never the arithmetic (runtime/planner.h "Offload",
// runtime/expert_cache.h): the SYNTH-1 decoder run all on the GPU and under budgets that move the
// embedding table and then the routed experts to pinned host memory (6 and 32 of 64 expert slots
// per MoE layer; with 6, once more with the prefill reading uncached experts zero-copy instead of
// streaming them through the staging slots) must give bit-identical prefill logits, teacher-forced
// logits and generated ids,
// across expert-cache refills between the sequences (which change the decoder's expert table and
// make the decode graph be captured again). Once with BF16 weights, once with --quant mixed
// (INT4 routed experts, which then live in the host pool and the slots in their packed form with
// their scales, issue 10; INT8 attention, dense MLP and shared experts), each against the
// all-resident run of its own policy.
// Needs DSOCR_SYNTH1_DIR (the synth1 fixture) and a GPU.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gpu/gpu_test.h"
#include "loader/bf16.h"
#include "loader/schema.h"
#include "runtime/gpu_model.h"

namespace dsocr {
namespace {

constexpr int kNew = 24;     // generated tokens per free-running pass
constexpr int kForced = 12;  // teacher-forced steps

struct Outputs {
  std::vector<float> prefill[3];  // last-row logits of each pass's prefill
  std::vector<int32_t> gen[2];    // passes 1 and 3: free-running ids (graph path)
  std::vector<float> forced;      // pass 2: kForced teacher-forced steps' logits
  int refills = 0;
  int64_t moved = 0;
};

// BOS, 8 text ids, 73 image rows (Tiny's count) filled with fixed values, 20 text ids: 102 rows,
// enough for the prefill MoE path (T > kMoeDecodeMaxT).
std::vector<int32_t> prompt_ids(const ModelConfig& cfg) {
  std::vector<int32_t> ids = {cfg.bos_id};
  for (int i = 0; i < 8; ++i) ids.push_back(1000 + 997 * i);
  for (int i = 0; i < 73; ++i) ids.push_back(cfg.image_token_id);
  for (int i = 0; i < 20; ++i) ids.push_back(300 + 4111 * i % 120000);
  return ids;
}

std::vector<uint16_t> image_rows(const ModelConfig& cfg) {
  std::vector<uint16_t> rows(73 * static_cast<size_t>(cfg.dim));
  uint64_t s = 12345;
  for (uint16_t& v : rows) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v = f32_to_bf16((static_cast<float>(s >> 40) / static_cast<float>(1 << 24) - 0.5f) * 0.1f);
  }
  return rows;
}

// Three sequences on one model with GpuModel::between_pages() (the expert-cache refill) after the
// first two: prefill + generate, prefill + teacher forcing on pass 1's ids, prefill + generate.
void run_passes(GpuModel& m, Outputs& out) {
  const ModelConfig& cfg = m.cfg();
  GpuDecoder& dec = m.decoder();
  const std::vector<int32_t> prompt = prompt_ids(cfg);
  const std::vector<uint16_t> img = image_rows(cfg);
  NGramBan ban;
  ban.mode = NGramBan::kHF, ban.n = 20;
  auto start = [&](int pass) {
    Status s = dec.begin(prompt, kNew, ban, /*stop_at_eos=*/false);
    ASSERT_TRUE(s.ok()) << s.message();
    // On the decoder's stream: a pageable cudaMemcpy is not ordered with it (it raced prefill).
    s = dec.write_rows(9, img.data(), static_cast<int64_t>(img.size()) / cfg.dim);
    ASSERT_TRUE(s.ok()) << s.message();
    out.prefill[pass].assign(cfg.vocab, 0.f);
    s = dec.prefill(out.prefill[pass].data());
    ASSERT_TRUE(s.ok()) << s.message();
  };
  auto between = [&]() {
    ASSERT_TRUE(dec.end().ok());
    const Status s = m.between_pages();
    ASSERT_TRUE(s.ok()) << s.message();
  };
  auto generate = [&](std::vector<int32_t>& ids) {
    Expected<GpuGeneration> g = dec.generate();
    ASSERT_TRUE(g.ok()) << g.message();
    ASSERT_EQ(g->ids.size(), static_cast<size_t>(kNew));
    ids = g->ids;
  };
  // Pass 1: prefill + generate (the decode graph is captured here).
  start(0);
  if (::testing::Test::HasFatalFailure()) return;
  generate(out.gen[0]);
  between();
  if (::testing::Test::HasFatalFailure()) return;
  // Pass 2: teacher forcing on pass 1's ids (forced_step runs the layers outside the graph).
  start(1);
  if (::testing::Test::HasFatalFailure()) return;
  std::vector<float> logits(cfg.vocab);
  for (int st = 0; st < kForced; ++st) {
    const Status s = dec.forced_step(out.gen[0][st], logits.data());
    ASSERT_TRUE(s.ok()) << s.message();
    out.forced.insert(out.forced.end(), logits.begin(), logits.end());
  }
  between();
  if (::testing::Test::HasFatalFailure()) return;
  // Pass 3: prefill + generate after two refills (the graph is captured again).
  start(2);
  if (::testing::Test::HasFatalFailure()) return;
  generate(out.gen[1]);
  if (::testing::Test::HasFatalFailure()) return;
  ASSERT_TRUE(dec.end().ok());
  if (ExpertCache* c = m.expert_cache()) {
    out.refills = c->refills();
    out.moved = c->experts_moved();
  }
}

// Bitwise equality of two float arrays; the message names the first difference and the count.
::testing::AssertionResult same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes " << a.size() << " vs " << b.size();
  size_t first = a.size(), n = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], 4) != 0) {
      if (first == a.size()) first = i;
      ++n;
    }
  if (n == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << n << " of " << a.size() << " values differ; first at "
                                       << first << ": " << a[first] << " vs " << b[first];
}

struct Synth {
  std::string dir;
  ModelConfig cfg;
  std::vector<WeightEntry> entries;
};

PlanOptions plan_options(uint64_t gpu_mem, const QuantPolicy& quant) {
  PlanOptions po;
  po.mode = Mode::kTiny;
  po.max_new_tokens = 64;
  po.device = 0;
  po.gpu_mem = gpu_mem;
  po.quant = quant;
  po.budget_name = "test budget";
  return po;
}

// The stored bytes (values + scales when quantized) of a few routed experts, read through the
// pointers the model bound (a device slot, or the mapped host copy), and whether each is in host
// memory.
struct ExpertBytes {
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<bool> on_host;
};

void read_experts(const GpuModel& m, ExpertBytes& out) {
  const ModelConfig& cfg = m.cfg();
  static const char* kParts[3] = {"gate_proj", "up_proj", "down_proj"};
  for (int l : {1, cfg.n_layers - 1})
    for (int e : {0, 17, cfg.n_experts - 1}) {
      const MlpWeights& w = m.weights().dec.layers[l].experts[e];
      const uint16_t* part[3] = {w.gate, w.up, w.down};
      for (int k = 0; k < 3; ++k) {
        const std::string name = "model.layers." + std::to_string(l) + ".mlp.experts." +
                                 std::to_string(e) + "." + kParts[k] + ".weight";
        const TensorSlot* t = m.plan().find_tensor(name);
        ASSERT_NE(t, nullptr) << name;
        std::vector<uint8_t> b(t->nbytes);
        ASSERT_EQ(cudaMemcpy(b.data(), part[k], b.size(), cudaMemcpyDefault), cudaSuccess) << name;
        cudaPointerAttributes attr{};
        ASSERT_EQ(cudaPointerGetAttributes(&attr, part[k]), cudaSuccess) << name;
        out.bytes.push_back(std::move(b));
        out.on_host.push_back(attr.type == cudaMemoryTypeHost);
      }
    }
}

void check_offload(const QuantPolicy& quant) {
  const char* synth = std::getenv("DSOCR_SYNTH1_DIR");
  if (!synth || !*synth)
    GTEST_SKIP() << "DSOCR_SYNTH1_DIR is not set (ctest sets it via the synth1 fixture)";
  DSOCR_SKIP_WITHOUT_GPU();
  Synth s;
  s.dir = synth;
  auto cfg = load_config((std::filesystem::path(s.dir) / "config.json").string());
  ASSERT_TRUE(cfg.ok()) << cfg.message();
  s.cfg = *cfg;
  auto ckpt = Checkpoint::open_dir(s.dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.message();
  auto entries = weight_entries(*ckpt, checkpoint_schema(s.cfg));
  ASSERT_TRUE(entries.ok()) << entries.message();
  // The plan sizes, without a device: the all-resident total and the minimum.
  PlanOptions probe = plan_options(0, quant);
  probe.device = -1;
  auto all = plan_memory(s.cfg, *entries, probe);
  ASSERT_TRUE(all.ok()) << all.message();
  probe.gpu_mem = all->minimum;
  auto least = plan_memory(s.cfg, *entries, probe);
  ASSERT_TRUE(least.ok()) << least.message();
  ASSERT_TRUE(least->expert_cache.active()) << "the minimum plan has no expert cache";
  const uint64_t per_slot = least->expert_cache.layers.size() * least->expert_cache.slot_bytes;

  struct Variant {
    const char* name;
    uint64_t budget;
    bool embed_host;
    int slots;  // -1: experts on the GPU
    bool stream = true;  // prefill streaming (ExpertCache::set_streaming)
  };
  const Variant variants[] = {
      {"all resident", all->total, false, -1},
      {"embedding on the host", all->total - 1, true, -1},
      {"experts on the host, 6 slots per layer", all->minimum, true, 6},
      {"experts on the host, 6 slots, prefill zero-copy", all->minimum, true, 6, false},
      {"experts on the host, 32 slots per layer", all->minimum + 26 * per_slot, true, 32},
  };
  Outputs ref;
  ExpertBytes ref_experts;
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name);
    std::printf("  [%s] budget %s\n", v.name, format_bytes(v.budget).c_str());
    auto m = GpuModel::open(s.dir, plan_options(v.budget, quant), /*poison=*/true);
    ASSERT_TRUE(m.ok()) << m.message();
    const MemoryPlan& plan = (*m)->plan();
    // The plan and the model are what the variant claims.
    ASSERT_EQ(plan.find_tensor("model.embed_tokens.weight")->where == Residency::kHost,
              v.embed_host);
    cudaPointerAttributes attr{};
    ASSERT_EQ(cudaPointerGetAttributes(&attr, (*m)->weights().dec.embed), cudaSuccess);
    ASSERT_EQ(attr.type == cudaMemoryTypeHost, v.embed_host)
        << "the embedding table is not where the plan puts it";
    ASSERT_EQ(plan.expert_cache.active() ? plan.expert_cache.slots : -1, v.slots);
    ASSERT_EQ((*m)->expert_cache() != nullptr, v.slots >= 0);
    // The routed experts are stored as the policy says, and in the host pool hold the very bytes
    // the all-resident run has on the GPU (for quantized experts: quantized at load into the
    // host pool by the same kernels).
    EXPECT_EQ(plan.find_tensor("model.layers.1.mlp.experts.0.gate_proj.weight")->stored.format,
              quant.of(TensorClass::kRoutedExpert));
    ExpertBytes eb;
    read_experts(**m, eb);
    if (::testing::Test::HasFatalFailure()) return;
    for (size_t i = 0; i < eb.on_host.size(); ++i)
      ASSERT_EQ(eb.on_host[i], v.slots >= 0) << "expert part " << i << " is not where the plan "
                                             << "puts it";
    if (v.budget == all->total)
      ref_experts = eb;
    else
      for (size_t i = 0; i < eb.bytes.size(); ++i)
        ASSERT_TRUE(eb.bytes[i] == ref_experts.bytes[i])
            << "expert part " << i << ": stored bytes differ from the all-resident run's";
    if (v.slots >= 0) {
      // Before any count, slot s of each layer holds expert s.
      ExpertCache& c = *(*m)->expert_cache();
      for (int l : plan.expert_cache.layers)
        for (int sl = 0; sl < v.slots; ++sl) ASSERT_EQ(c.slot_experts(l)[sl], sl);
      c.set_streaming(v.stream);
    }
    Outputs out;
    run_passes(**m, out);
    if (::testing::Test::HasFatalFailure()) return;
    std::printf("  [%s] refills %d, experts copied into slots %lld\n", v.name, out.refills,
                static_cast<long long>(out.moved));
    if (v.slots >= 0) {  // the prefills' uncached experts went through the staging slots, or not
      auto st = (*m)->expert_cache()->stream_stats();
      ASSERT_TRUE(st.ok()) << st.message();
      std::printf("  [%s] prefill streaming: %d layers, %lld experts, %.1f MB, %d passes, copy "
                  "%.2f ms, %.0f%% hidden\n",
                  v.name, st->layers, static_cast<long long>(st->experts), st->bytes * 1e-6,
                  st->passes, st->copy_ms, st->copy_ms > 0 ? 100 * st->hidden_ms / st->copy_ms : 0);
      if (v.stream) {
        EXPECT_GT(st->experts, 0) << "no prefill streamed an expert: the test missed the path";
        EXPECT_GT(st->passes, st->layers) << "a streamed layer runs at least two passes";
      } else {
        EXPECT_EQ(st->experts, 0) << "streaming was off";
      }
    }
    if (v.slots < 0) {
      // Determinism first: without it bit-identity across placements means nothing.
      for (int p = 1; p < 3; ++p)
        ASSERT_TRUE(same_bits(out.prefill[p], out.prefill[0]))
            << "the decoder's prefill is not deterministic across sequences (pass " << p << ")";
      ASSERT_EQ(out.gen[1], out.gen[0]) << "free-running ids differ between sequences";
    } else {
      ASSERT_EQ(out.refills, 2);
      EXPECT_GT(out.moved, static_cast<int64_t>(v.slots) * 11)
          << "the refills copied no expert: the test did not exercise a table change";
    }
    if (v.budget == all->total) {
      ref = std::move(out);
      continue;
    }
    for (int p = 0; p < 3; ++p)
      EXPECT_TRUE(same_bits(out.prefill[p], ref.prefill[p])) << "prefill logits of pass " << p;
    EXPECT_TRUE(same_bits(out.forced, ref.forced)) << "teacher-forced logits";
    EXPECT_EQ(out.gen[0], ref.gen[0]) << "generated ids, pass 1";
    EXPECT_EQ(out.gen[1], ref.gen[1]) << "generated ids, pass 3 (after two refills)";
  }
}

TEST(OffloadDecoder, BitIdenticalToAllResident) {
  check_offload(QuantPolicy{});
}

// --quant mixed: the packed INT4 experts and their scales in the host pool and the cache slots.
TEST(OffloadDecoder, MixedBitIdenticalToAllResident) {
  Expected<QuantPolicy> q = parse_quant_policy("mixed");
  ASSERT_TRUE(q.ok()) << q.message();
  ASSERT_EQ(q->of(TensorClass::kRoutedExpert), WeightFormat::kInt4);
  ASSERT_EQ(q->of(TensorClass::kSharedExpert), WeightFormat::kInt8);
  check_offload(*q);
}

}  // namespace
}  // namespace dsocr
