// The whole GPU path of the golden interface (run_golden with cuda: the BF16 encoder writes the
// decoder's input rows, then prefill, free-running generation and teacher forcing), fed the
// golden pixels, against the official code's numbers (../shared/golden/README.md). Unlike
// golden_decoder_gpu_test (official image_embeds in), the decoder here reads our own encoder's
// rows, so this is the check of `dsocr-run --dump --device cuda`. Each figure must be no further
// from fp32ref_* than the official BF16 run is:
//   image_embeds, prefill_logits_last     rel-L2 vs fp32ref <= official BF16
//   teacher-forced top-64 (on gen_ids)    rel-L2 <= official; top-1 agreement >= official
//   free-running gen_ids                  equal to the official ids up to the first near-tie
// Needs DSOCR_SYNTH1_DIR and a GPU; DSOCR_GOLDEN_DIR may point to a copy of the cases.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "golden/golden_case.h"
#include "gpu/gpu_test.h"
#include "runtime/golden.h"

namespace dsocr {
namespace {

using golden::as_f64;
using golden::dump_f64;
using golden::rel_l2;


void run_case(const std::string& name) {
  const char* model = std::getenv("DSOCR_SYNTH1_DIR");
  if (!model || !*model) GTEST_SKIP() << "DSOCR_SYNTH1_DIR is not set (ctest sets it via the synth1 fixture)";
  DSOCR_SKIP_WITHOUT_GPU();
  const nlohmann::json meta = golden::case_meta(name);
  auto gf = SafetensorsFile::open(golden::case_path(name));
  ASSERT_TRUE(gf.ok()) << gf.message();

  GoldenOptions opt;
  opt.cuda = true;
  opt.model_dir = model;
  opt.pixels_from_golden = golden::case_path(name);
  opt.mode = meta.at("mode").get<std::string>();
  opt.prompt_ids = meta.at("prompt_text_ids").get<std::vector<int32_t>>();
  opt.max_tokens = meta.at("steps").get<int>();
  opt.ngram = meta.at("ngram").get<int>();
  const std::vector<double> gold_gen = as_f64(*gf, "gen_ids");
  for (double id : gold_gen) opt.teacher_force.push_back(static_cast<int32_t>(id));

  auto res = run_golden(opt, [&](const std::string& line) {
    std::printf("  [%s] %s\n", name.c_str(), line.c_str());
  });
  ASSERT_TRUE(res.ok()) << res.message();
  const TensorDump& d = *res;
  EXPECT_EQ(dump_f64(d, "input_ids"), as_f64(*gf, "input_ids"));

  auto check = [&](const char* ours, const char* official, const char* ref) {
    const double e = rel_l2(dump_f64(d, ours), as_f64(*gf, ref));
    const double e_off = rel_l2(as_f64(*gf, official), as_f64(*gf, ref));
    std::printf("  [%s] %s rel-L2 vs %s: gpu %.3e  official bf16 %.3e\n", name.c_str(), ours, ref,
                e, e_off);
    EXPECT_LE(e, e_off) << ours;
  };
  check("image_embeds", "image_embeds", "fp32ref_image_embeds");
  check("prefill_logits_last", "prefill_logits_last", "fp32ref_prefill_logits_last");
  check("tf_top64_vals", "tf_top64_vals", "fp32ref_tf_top64_vals");

  const std::vector<double> ti = dump_f64(d, "tf_top64_ids"), bi = as_f64(*gf, "tf_top64_ids"),
                            ri = as_f64(*gf, "fp32ref_tf_top64_ids");
  const size_t steps = gold_gen.size();
  ASSERT_EQ(ti.size(), steps * 64);
  int agree = 0, agree_off = 0;
  for (size_t s = 0; s < steps; ++s) {
    agree += ti[s * 64] == ri[s * 64];
    agree_off += bi[s * 64] == ri[s * 64];
  }
  std::printf("  [%s] teacher-forced top-1 agreement with fp32ref: gpu %d/%zu  official %d/%zu\n",
              name.c_str(), agree, steps, agree_off, steps);
  EXPECT_GE(agree, agree_off);

  const size_t same = golden::same_prefix(dump_f64(d, "gen_ids"), gold_gen);
  const size_t tie = golden::official_near_tie(*gf, opt.ngram);
  std::printf("  [%s] free-running ids equal to the official BF16 ids for %zu/%zu steps (first "
              "official near-tie at step %zu)\n", name.c_str(), same, steps, tie);
  EXPECT_GE(same, std::min(tie, steps));
}

TEST(PipelineGpuGolden, show1_tiny) { run_case("show1_tiny"); }
TEST(PipelineGpuGolden, fig1_small) { run_case("fig1_small"); }
TEST(PipelineGpuGolden, page_base) { run_case("page_base"); }
TEST(PipelineGpuGolden, show2_large) { run_case("show2_large"); }
TEST(PipelineGpuGolden, page_gundam) { run_case("page_gundam"); }
TEST(PipelineGpuGolden, small_gundam) { run_case("small_gundam"); }

}  // namespace
}  // namespace dsocr
