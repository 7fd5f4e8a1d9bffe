// Preprocessing against the official code: for every case of ../shared/golden/cases/cases.json,
// load the image, preprocess it in the case's mode and compare with the `global_u8` / `crops_u8`
// tensors the official DeepSeek-OCR code produced (PIL decode, exif_transpose, convert("RGB"),
// resize / ImageOps.pad, dynamic_preprocess). Also checks the tile grid and the token count.
//
// Acceptance (golden/README.md): PNG inputs within 1 unit on >= 99.9 % of values and 2 everywhere
// (measured: exact). JPEG inputs depend on the decoder; the README only asks for the difference to
// be reported, which this test prints. dsocr's JPEG path reproduces libjpeg-turbo's arithmetic
// (loader/stb_impl.cpp), so the same tolerance is asserted for JPEG too: a regression there (an
// stb update, a changed override) shows up here rather than as a silent accuracy loss.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "loader/image.h"
#include "loader/safetensors.h"
#include "runtime/preprocess.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;

struct Diff {
  int max_abs = 0;
  double frac_exact = 1.0;
  double frac_over1 = 0.0;
  double mean_abs = 0.0;
};

Diff compare(const uint8_t* a, const uint8_t* b, size_t n) {
  Diff d;
  size_t exact = 0, over1 = 0;
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const int e = std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
    d.max_abs = std::max(d.max_abs, e);
    exact += e == 0;
    over1 += e > 1;
    sum += static_cast<uint64_t>(e);
  }
  d.frac_exact = n ? static_cast<double>(exact) / n : 1.0;
  d.frac_over1 = n ? static_cast<double>(over1) / n : 0.0;
  d.mean_abs = n ? static_cast<double>(sum) / n : 0.0;
  return d;
}

// Checks one u8 tensor of the case file against `ours` and prints the report line.
void check_tensor(const SafetensorsFile& f, const std::string& name, const std::string& label,
                  const std::vector<int64_t>& want_shape, const std::vector<uint8_t>& ours) {
  const TensorInfo* t = f.find(name);
  ASSERT_NE(t, nullptr) << f.path() << ": no tensor " << name;
  ASSERT_EQ(t->dtype, DType::U8) << name;
  ASSERT_EQ(t->shape, want_shape) << name << " " << t->shape_str();
  ASSERT_EQ(t->nbytes, ours.size()) << name;
  const Diff d = compare(f.bytes(*t), ours.data(), ours.size());
  std::printf("  %-26s %-10s max |diff| %d  exact %.5f %%  >1: %.5f %%  mean %.5f\n", label.c_str(),
              name.c_str(), d.max_abs, 100 * d.frac_exact, 100 * d.frac_over1, d.mean_abs);
  EXPECT_LE(d.max_abs, 2) << label << " " << name;
  EXPECT_LE(d.frac_over1, 0.001) << label << " " << name;
}

TEST(PreprocessGolden, MatchesOfficialViews) {
  const fs::path golden = DSOCR_GOLDEN_DIR;
  const fs::path cases_path = golden / "cases" / "cases.json";
  if (!fs::exists(cases_path)) GTEST_SKIP() << cases_path << " not found (no golden data)";
  nlohmann::json cases;
  {
    std::ifstream in(cases_path);
    ASSERT_NO_THROW(in >> cases) << cases_path;
  }
  ASSERT_FALSE(cases.empty());
  std::printf("preprocess vs official (per tensor: max |diff|, %% exact, %% off by > 1)\n");
  for (const auto& [case_name, c] : cases.items()) {
    SCOPED_TRACE(case_name);
    const std::string image_name = c.at("image").get<std::string>();
    auto image = load_image((golden / "images" / image_name).string());
    ASSERT_TRUE(image.ok()) << image.message();
    const auto wh = c.at("image_wh").get<std::vector<int>>();
    EXPECT_EQ(image->width, wh.at(0));
    EXPECT_EQ(image->height, wh.at(1));

    auto mode = parse_mode(c.at("mode").get<std::string>());
    ASSERT_TRUE(mode.ok()) << mode.message();
    const ModeSpec& spec = mode_spec(*mode);
    EXPECT_EQ(spec.base_size, c.at("base_size").get<int>());
    EXPECT_EQ(spec.image_size, c.at("image_size").get<int>());
    EXPECT_EQ(spec.crop, c.at("crop_mode").get<bool>());

    const auto t0 = std::chrono::steady_clock::now();
    auto p = preprocess_image(*image, {*mode});
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(p.ok()) << p.message();

    const auto grid = c.at("crop_grid_wh").get<std::vector<int>>();
    EXPECT_EQ(p->grid.w, grid.at(0));
    EXPECT_EQ(p->grid.h, grid.at(1));
    EXPECT_EQ(p->n_image_tokens, c.at("n_image_tokens").get<int>());

    auto file = SafetensorsFile::open((golden / "cases" / (case_name + ".safetensors")).string());
    ASSERT_TRUE(file.ok()) << file.message();
    const std::string label = case_name + " (" + image_name + ")";
    std::printf("%s: %s, %dx%d, grid %dx%d, %d tokens, preprocess %.1f ms\n", case_name.c_str(),
                image_name.c_str(), image->width, image->height, p->grid.w, p->grid.h,
                p->n_image_tokens, ms);
    const int64_t s = p->global_size;
    check_tensor(*file, "global_u8", label, {s, s, 3}, p->global);
    if (p->n_tiles > 0) {
      check_tensor(*file, "crops_u8", label, {p->n_tiles, kTileSize, kTileSize, 3}, p->tiles);
    } else {
      EXPECT_EQ(file->find("crops_u8"), nullptr) << "golden has tiles, we made none";
    }
  }
}

}  // namespace
}  // namespace dsocr
