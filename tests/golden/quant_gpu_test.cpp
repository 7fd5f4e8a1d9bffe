// Accuracy of quantized weights (issue 9) against the BF16 GPU path on every golden case: the GPU
// decoder under --quant int8 and mixed, fed the official run's image_embeds and prompt, teacher-
// forced on the official gen_ids. Per case: top-1 agreement with the BF16 GPU path over the
// prefill's last position and every forced step, and the prefill's last-position logits rel-L2 vs
// the BF16 path; a table line each. Asserted over all cases together (a 30-step case cannot
// express 97 %): top-1 agreement >= 99 % for int8, >= 97 % for mixed (the thresholds) over
// the positions where the BF16 path is not at a near-tie (golden::kNearTie); the rate over every
// position and each disagreement's BF16 margin are printed.
// Needs DSOCR_SYNTH1_DIR (the synth1 fixture) and a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

#include "golden/golden_case.h"
#include "gpu/gpu_test.h"
#include "loader/bf16.h"
#include "runtime/gpu_model.h"

namespace dsocr {
namespace {

using golden::as_f64;
using golden::rel_l2;

const char* const kCases[] = {"show1_tiny",  "fig1_small",  "page_base",
                              "show2_large", "page_gundam", "small_gundam"};

std::unique_ptr<GpuModel> open_model(const std::string& policy) {
  PlanOptions po;
  po.mode = Mode::kGundam;  // the largest prompt of every case
  po.max_new_tokens = 64;
  po.device = 0;
  auto q = parse_quant_policy(policy);
  EXPECT_TRUE(q.ok()) << q.message();
  if (!q.ok()) return nullptr;
  po.quant = *q;
  auto m = GpuModel::open(std::getenv("DSOCR_SYNTH1_DIR"), po, /*poison=*/true);
  EXPECT_TRUE(m.ok()) << policy << ": " << m.message();
  return m.ok() ? std::move(*m) : nullptr;
}

struct Run {
  std::vector<double> prefill_logits;
  std::vector<int32_t> top1;  // prefill's last position, then each forced step
  std::vector<float> margin;  // top-1 minus top-2 logit at each of those positions
};

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}
float top2_margin(const std::vector<float>& v) {
  float a = -INFINITY, b = -INFINITY;  // the largest two
  for (const float x : v) {
    if (x > a) b = a, a = x;
    else if (x > b) b = x;
  }
  return a - b;
}

// Prefill on the official prompt and image rows, then forced steps on the official gen_ids.
Run teacher_force(GpuModel& model, const std::string& name) {
  Run out;
  const ModelConfig& cfg = model.cfg();
  GpuDecoder& dec = model.decoder();
  auto gf = SafetensorsFile::open(golden::case_path(name));
  EXPECT_TRUE(gf.ok()) << gf.message();
  if (!gf.ok()) return out;
  const std::vector<double> ids = as_f64(*gf, "input_ids"), gen = as_f64(*gf, "gen_ids");
  const std::vector<double> img = as_f64(*gf, "image_embeds");
  const std::vector<int32_t> prompt(ids.begin(), ids.end());
  const int steps = static_cast<int>(gen.size());
  std::vector<uint16_t> img16(img.size());
  for (size_t i = 0; i < img.size(); ++i) img16[i] = f32_to_bf16(static_cast<float>(img[i]));
  NGramBan ban;
  ban.mode = NGramBan::kHF, ban.n = golden::case_meta(name).at("ngram").get<int>();
  Status s = dec.begin(prompt, steps, ban);
  EXPECT_TRUE(s.ok()) << s.message();
  if (!s.ok()) return out;
  // On the decoder's stream (a pageable cudaMemcpy may return before its DMA lands and is not
  // ordered with that stream: it raced the prefill, as in the decoder golden test before).
  s = dec.write_rows(1, img16.data(), static_cast<int64_t>(img16.size()) / cfg.dim);
  EXPECT_TRUE(s.ok()) << s.message();
  std::vector<float> logits(cfg.vocab);
  s = dec.prefill(logits.data());
  EXPECT_TRUE(s.ok()) << s.message();
  out.prefill_logits.assign(logits.begin(), logits.end());
  out.top1.push_back(argmax(logits));
  out.margin.push_back(top2_margin(logits));
  for (int st = 1; st < steps && s.ok(); ++st) {
    s = dec.forced_step(static_cast<int32_t>(gen[st - 1]), logits.data());
    EXPECT_TRUE(s.ok()) << s.message();
    out.top1.push_back(argmax(logits));
    out.margin.push_back(top2_margin(logits));
  }
  EXPECT_TRUE(dec.end().ok());
  return out;
}

// The BF16 path's runs, computed once.
const std::map<std::string, Run>& bf16_runs() {
  static std::map<std::string, Run> runs;
  if (runs.empty()) {
    std::unique_ptr<GpuModel> m = open_model("bf16");
    if (!m) return runs;
    for (const char* c : kCases) runs[c] = teacher_force(*m, c);
  }
  return runs;
}

void check_policy(const std::string& policy, double min_agreement) {
  const char* synth = std::getenv("DSOCR_SYNTH1_DIR");
  if (!synth || !*synth)
    GTEST_SKIP() << "DSOCR_SYNTH1_DIR is not set (ctest sets it via the synth1 fixture)";
  DSOCR_SKIP_WITHOUT_GPU();
  const std::map<std::string, Run>& ref = bf16_runs();
  ASSERT_EQ(ref.size(), std::size(kCases));
  std::unique_ptr<GpuModel> m = open_model(policy);
  ASSERT_NE(m, nullptr);
  std::printf("  %-6s %-13s %6s %10s %16s\n", "policy", "case", "steps", "top-1 agree",
              "prefill rel-L2");
  size_t agree_all = 0, steps_all = 0, decided_agree = 0, decided_all = 0;
  for (const char* c : kCases) {
    const Run q = teacher_force(*m, c);
    const Run& b = ref.at(c);
    ASSERT_EQ(q.top1.size(), b.top1.size()) << c;
    size_t agree = 0;
    for (size_t i = 0; i < q.top1.size(); ++i) {
      agree += q.top1[i] == b.top1[i];
      if (b.margin[i] >= golden::kNearTie) decided_all++, decided_agree += q.top1[i] == b.top1[i];
      if (q.top1[i] != b.top1[i])  // how close to a tie the BF16 path was there
        std::printf("  %-6s %-13s position %zu: %d instead of %d; BF16 top-2 margin %.4f\n",
                    policy.c_str(), c, i, q.top1[i], b.top1[i], b.margin[i]);
    }
    const double e = rel_l2(q.prefill_logits, b.prefill_logits);
    std::printf("  %-6s %-13s %6zu %5zu (%5.1f%%) %16.3e\n", policy.c_str(), c, q.top1.size(),
                agree, 100.0 * agree / q.top1.size(), e);
    EXPECT_TRUE(std::isfinite(e)) << c;
    agree_all += agree, steps_all += q.top1.size();
  }
  const double rate = static_cast<double>(agree_all) / static_cast<double>(steps_all);
  std::printf("  %-6s %-13s %6zu %5zu (%5.1f%%)\n", policy.c_str(), "all", steps_all, agree_all,
              100.0 * rate);
  // Positions where the BF16 path's own top-2 margin is below golden::kNearTie are coin flips at
  // BF16 precision (the golden README measures up to 0.05 logits between two passes of the
  // official BF16 run): the assertion counts the decided positions, the line above all of them.
  const double decided = static_cast<double>(decided_agree) / static_cast<double>(decided_all);
  std::printf("  %-6s %-13s %6zu %5zu (%5.1f%%)  positions with a BF16 top-2 margin >= %.3f\n",
              policy.c_str(), "decided", decided_all, decided_agree, 100.0 * decided,
              golden::kNearTie);
  EXPECT_GT(decided_all, steps_all / 2) << policy << ": most positions are decided";
  EXPECT_GE(decided, min_agreement) << policy << ": top-1 agreement with the BF16 path";
}

TEST(QuantGpuGolden, Int8) { check_policy("int8", 0.99); }
TEST(QuantGpuGolden, Mixed) { check_policy("mixed", 0.97); }

}  // namespace
}  // namespace dsocr
