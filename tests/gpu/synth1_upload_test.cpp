// The whole SYNTH-1 checkpoint (dsocr-synth --seed 1; the directory in DSOCR_SYNTH1_DIR, set by
// the synth1 ctest fixture) uploaded into a planned pool: every tensor's device checksum against
// the host's, and the first words and sums against golden/synth1_seed1_checksums.json when that
// file is at hand. Skips with the reason when the variable is unset or there is no GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "loader/config.h"
#include "loader/schema.h"
#include "runtime/planner.h"
#include "runtime/pool.h"
#include "runtime/weights.h"
#include "upload_test_util.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;

constexpr int kClasses = static_cast<int>(TensorClass::kRoutedExpert) + 1;

// The real thing: SYNTH-1 (dsocr-synth --seed 1), every tensor device vs host, and the first
// words and sums against golden/synth1_seed1_checksums.json when that file is at hand.
TEST(Upload, Synth1Checkpoint) {
  const char* dir = std::getenv("DSOCR_SYNTH1_DIR");
  if (!dir || !*dir) GTEST_SKIP() << "DSOCR_SYNTH1_DIR is not set (dsocr-synth --seed 1 --out DIR)";
  DSOCR_SKIP_WITHOUT_GPU();
  Expected<ModelConfig> cfg = load_config((fs::path(dir) / "config.json").string());
  ASSERT_TRUE(cfg.ok()) << cfg.message();
  Expected<Checkpoint> ck = Checkpoint::open_dir(dir);
  ASSERT_TRUE(ck.ok()) << ck.message();
  const std::vector<TensorSpec> schema = checkpoint_schema(*cfg);
  ASSERT_TRUE(validate_checkpoint(*ck, schema).ok());
  Expected<std::vector<WeightEntry>> entries = weight_entries(*ck, schema);
  ASSERT_TRUE(entries.ok()) << entries.message();
  PlanOptions po;  // gundam, budget = free memory of GPU 0
  Expected<MemoryPlan> plan = plan_memory(*cfg, *entries, po);
  ASSERT_TRUE(plan.ok()) << plan.message();
  PoolOptions pool_options;
  pool_options.poison = true;
  Expected<DevicePool> pool = DevicePool::create(*plan, pool_options);
  ASSERT_TRUE(pool.ok()) << pool.message();
  ASSERT_EQ(fill_u32_device(pool->base(), kPoison32, pool->size(), nullptr), cudaSuccess);
  UploadStats st;
  Expected<WeightTable> table = upload_weights(*ck, *pool, UploadOptions{}, &st);
  ASSERT_TRUE(table.ok()) << table.message();
  std::printf("  SYNTH-1: %zu tensors, %s in %.3f s = %.2f GB/s (%s)\n", table->size(),
              format_bytes(st.bytes).c_str(), st.seconds, st.gb_per_s(),
              read_method_name(st.method));
  EXPECT_EQ(table->size(), 2710u);
  EXPECT_EQ(st.bytes, 6672212480ull);

  // Every class must be covered: count the tensors checked per class.
  const std::vector<Checksum> want = host_checksums(*ck);
  const std::vector<Checksum> got = device_checksums(*ck, *table);
  expect_same_checksums(*ck, want, got);
  std::vector<int> per_class(kClasses, 0);
  for (const WeightEntry& e : *entries) ++per_class[static_cast<int>(e.cls)];
  for (int c = 0; c < kClasses; ++c)
    EXPECT_GT(per_class[c], 0) << tensor_class_name(static_cast<TensorClass>(c));

  const fs::path golden = fs::path(DSOCR_GOLDEN_DIR) / "synth1_seed1_checksums.json";
  std::ifstream gf(golden);
  if (!gf) {
    std::printf("  (no %s: golden comparison skipped)\n", golden.string().c_str());
    return;
  }
  const nlohmann::json g = nlohmann::json::parse(gf);
  const auto& gt = g.at("tensors");
  int compared = 0;
  for (size_t i = 0; i < ck->tensors().size(); ++i) {
    const TensorInfo& t = ck->tensors()[i];
    ASSERT_TRUE(gt.contains(t.name)) << t.name;
    const auto& e = gt.at(t.name);
    for (int k = 0; k < 4 && k < t.numel(); ++k)
      EXPECT_EQ(got[i].first4[k], e.at("first4_bits")[k].get<int>()) << t.name << " word " << k;
    const double gs = e.at("sum").get<double>();
    EXPECT_NEAR(got[i].sum, gs, 1e-6 * (1 + std::fabs(gs))) << t.name;
    ++compared;
  }
  std::printf("  compared %d tensors against %s\n", compared, golden.string().c_str());
}

}  // namespace
}  // namespace dsocr
