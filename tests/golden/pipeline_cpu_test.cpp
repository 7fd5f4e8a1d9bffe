// The CPU float32 backend against the official code's float32 run (fp32ref_*) on SYNTH-1.
// Thresholds are the CPU-reference issue's: image_embeds rel-L2 <= 2e-4, prefill_hidden <= 5e-4
// at every layer, prefill_logits_last <= 1e-3, teacher-forced top-1 equal wherever fp32ref's
// top-1/top-2 margin exceeds 1e-3, top-64 values within 1e-3, free-running ids equal to the golden
// ones up to the first step where fp32ref (with the same no-repeat-ngram ban) would choose another.
//
// show1_tiny runs in CI; the other cases are long on 2 cores and run under `ctest -L long`
// (DSOCR_GOLDEN_LONG=1).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <set>

#include "golden/golden_case.h"
#include "runtime/golden.h"
#include "runtime/sampling.h"

namespace dsocr {
namespace {

using golden::as_f64;
using golden::dump_f64;
using golden::rel_l2;



void run_case(const std::string& name) {
  const char* model = std::getenv("DSOCR_SYNTH1_DIR");
  if (!model) GTEST_SKIP() << "DSOCR_SYNTH1_DIR is not set (ctest sets it via the synth1 fixture)";
  auto meta = golden::case_meta(name);
  auto gf = SafetensorsFile::open(golden::case_path(name));
  ASSERT_TRUE(gf.ok()) << gf.message();

  GoldenOptions opt;
  opt.model_dir = model;
  opt.pixels_from_golden = golden::case_path(name);
  opt.mode = meta["mode"].get<std::string>();
  opt.prompt_ids = meta["prompt_text_ids"].get<std::vector<int32_t>>();
  opt.max_tokens = meta["steps"].get<int>();
  opt.ngram = meta["ngram"].get<int>();
  std::vector<double> gold_gen = as_f64(*gf, "gen_ids");
  for (double id : gold_gen) opt.teacher_force.push_back(static_cast<int32_t>(id));

  auto res = run_golden(opt, [&](const std::string& line) {
    std::printf("  [%s] %s\n", name.c_str(), line.c_str());
  });
  ASSERT_TRUE(res.ok()) << res.message();
  const TensorDump& d = *res;

  // Input ids identical to the golden prompt.
  EXPECT_EQ(dump_f64(d, "input_ids"), as_f64(*gf, "input_ids"));

  // Image embeddings.
  double e_img = rel_l2(dump_f64(d, "image_embeds"), as_f64(*gf, "fp32ref_image_embeds"));
  double e_img_bf16 = rel_l2(as_f64(*gf, "image_embeds"), as_f64(*gf, "fp32ref_image_embeds"));
  std::printf("  [%s] image_embeds rel-L2 vs fp32ref %.3g (official BF16: %.3g)\n", name.c_str(),
              e_img, e_img_bf16);
  EXPECT_LE(e_img, 2e-4);

  // Prefill hidden states, layer by layer.
  std::vector<double> hid = dump_f64(d, "prefill_hidden"), ref = as_f64(*gf, "fp32ref_prefill_hidden");
  ASSERT_EQ(hid.size(), ref.size());
  EXPECT_EQ(dump_f64(d, "prefill_hidden_positions"), as_f64(*gf, "prefill_hidden_positions"));
  const size_t per_layer = ref.size() / 13;
  double worst = 0;
  for (int l = 0; l < 13; ++l) {
    double e = rel_l2(hid, ref, l * per_layer, (l + 1) * per_layer);
    worst = std::max(worst, e);
    EXPECT_LE(e, 5e-4) << "prefill_hidden entering layer " << l;
  }
  std::printf("  [%s] prefill_hidden worst layer rel-L2 %.3g\n", name.c_str(), worst);

  double e_logit = rel_l2(dump_f64(d, "prefill_logits_last"), as_f64(*gf, "fp32ref_prefill_logits_last"));
  std::printf("  [%s] prefill_logits_last rel-L2 %.3g\n", name.c_str(), e_logit);
  EXPECT_LE(e_logit, 1e-3);

  // Teacher-forced top-64.
  std::vector<double> tv = dump_f64(d, "tf_top64_vals"), ti = dump_f64(d, "tf_top64_ids");
  std::vector<double> rv = as_f64(*gf, "fp32ref_tf_top64_vals"), ri = as_f64(*gf, "fp32ref_tf_top64_ids");
  const size_t steps = gold_gen.size();
  ASSERT_EQ(tv.size(), steps * 64);
  int checked = 0, agree = 0;
  double worst_top = 0;
  for (size_t s = 0; s < steps; ++s) {
    const double margin = rv[s * 64] - rv[s * 64 + 1];
    if (ti[s * 64] == ri[s * 64]) ++agree;
    if (margin > 1e-3) {
      ++checked;
      EXPECT_EQ(ti[s * 64], ri[s * 64]) << "teacher-forced step " << s << " margin " << margin;
    }
    double e = rel_l2(tv, rv, s * 64, (s + 1) * 64);
    worst_top = std::max(worst_top, e);
    EXPECT_LE(e, 1e-3) << "top-64 values at step " << s;
  }
  std::printf("  [%s] teacher-forced top-1 agreement %d/%zu (%d steps with margin > 1e-3), "
              "worst top-64 rel-L2 %.3g\n", name.c_str(), agree, steps, checked, worst_top);

  // Free-running ids: equal to the golden ones up to the first step where fp32ref, with the same
  // ban applied to its top-64, would pick another token.
  std::vector<int32_t> prefix;
  for (double id : as_f64(*gf, "input_ids")) prefix.push_back(static_cast<int32_t>(id));
  size_t cut = steps;
  for (size_t s = 0; s < steps && cut == steps; ++s) {
    std::vector<int32_t> banned = hf_banned_scan(prefix, opt.ngram);
    std::set<int32_t> ban(banned.begin(), banned.end());
    int32_t choice = -1;
    for (int k = 0; k < 64 && choice < 0; ++k)
      if (!ban.count(static_cast<int32_t>(ri[s * 64 + k]))) choice = static_cast<int32_t>(ri[s * 64 + k]);
    if (choice != static_cast<int32_t>(gold_gen[s])) cut = s;
    prefix.push_back(static_cast<int32_t>(gold_gen[s]));
  }
  std::vector<double> gen = dump_f64(d, "gen_ids");
  size_t same = 0;
  while (same < std::min(gen.size(), gold_gen.size()) && gen[same] == gold_gen[same]) ++same;
  std::printf("  [%s] free-running ids equal to golden for %zu/%zu steps (fp32ref departs at %zu)\n",
              name.c_str(), same, steps, cut);
  EXPECT_GE(same, cut);
}

bool long_enabled() {
  const char* e = std::getenv("DSOCR_GOLDEN_LONG");
  return e && *e == '1';
}

#define DSOCR_LONG_CASE()                                                              \
  if (!long_enabled())                                                                 \
  GTEST_SKIP() << "long golden case: run `ctest --preset release -L long` (sets DSOCR_GOLDEN_LONG=1)"

TEST(PipelineCpu, show1_tiny) { run_case("show1_tiny"); }
TEST(PipelineCpuLong, fig1_small) { DSOCR_LONG_CASE(); run_case("fig1_small"); }
TEST(PipelineCpuLong, page_base) { DSOCR_LONG_CASE(); run_case("page_base"); }
TEST(PipelineCpuLong, show2_large) { DSOCR_LONG_CASE(); run_case("show2_large"); }
TEST(PipelineCpuLong, page_gundam) { DSOCR_LONG_CASE(); run_case("page_gundam"); }
TEST(PipelineCpuLong, small_gundam) { DSOCR_LONG_CASE(); run_case("small_gundam"); }

}  // namespace
}  // namespace dsocr
