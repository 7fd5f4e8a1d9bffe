// The C API (runtime/dsocr.h) through libdsocr.so (tests/install.cmake links it): refused options
// and inputs give the right status and a one-line message naming the field or file and the fix;
// a tiny-mode page on the SYNTH-1 checkpoint (DSOCR_SYNTH1_DIR) streams text to a callback that
// can stop it; the result's fields agree with each other; the C++ wrapper (runtime/dsocr.hpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "loader/config.h"
#include "loader/image.h"
#include "runtime/dsocr.h"
#include "runtime/dsocr.hpp"

namespace {

namespace fs = std::filesystem;

const std::string kSamplePage = std::string(DSOCR_SOURCE_DIR) + "/tests/data/sample_page.png";

// A status with a one-line "...; <fix>" message containing `what`.
void expect_error(dsocr_status got, dsocr_status want, const std::string& what) {
  const std::string msg = dsocr_last_error();
  EXPECT_EQ(got, want) << dsocr_status_name(got) << ": " << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
  EXPECT_NE(msg.find("; "), std::string::npos) << "no advice: " << msg;
}

dsocr_options cpu_options(const char* model_dir) {
  dsocr_options o;
  dsocr_options_default(&o);
  o.model_dir = model_dir;
  o.device = "cpu";
  return o;
}

TEST(CApi, VersionAndNames) {
  EXPECT_EQ(std::string(dsocr_version()), std::to_string(DSOCR_VERSION_MAJOR) + "." +
                                              std::to_string(DSOCR_VERSION_MINOR) + "." +
                                              std::to_string(DSOCR_VERSION_PATCH));
  EXPECT_STREQ(dsocr_status_name(DSOCR_E_IO), "DSOCR_E_IO");
  EXPECT_STREQ(dsocr_status_name(static_cast<dsocr_status>(99)), "DSOCR_E_UNKNOWN");
  dsocr_options o;
  dsocr_options_default(&o);
  EXPECT_EQ(o.struct_size, sizeof(dsocr_options));
  EXPECT_STREQ(o.device, "cuda");
  EXPECT_STREQ(o.quant, "bf16");
  EXPECT_EQ(o.mode, DSOCR_MODE_GUNDAM);
  EXPECT_EQ(o.max_crops, 9);
  EXPECT_EQ(o.ngram, 20);
  EXPECT_EQ(o.tokenizer_path, nullptr);
}

TEST(CApi, OpenRefusesBadOptions) {
  dsocr_engine* e = reinterpret_cast<dsocr_engine*>(0x1);  // must be reset to NULL
  expect_error(dsocr_open(nullptr, &e), DSOCR_E_INVALID, "options is NULL");
  EXPECT_EQ(e, nullptr);
  dsocr_options o = cpu_options("/nonexistent/dsocr-model");
  expect_error(dsocr_open(&o, nullptr), DSOCR_E_INVALID, "out is NULL");

  dsocr_options zero;
  std::memset(&zero, 0, sizeof(zero));
  expect_error(dsocr_open(&zero, &e), DSOCR_E_INVALID, "dsocr_options_default");

  dsocr_options bad = o;
  bad.model_dir = nullptr;
  expect_error(dsocr_open(&bad, &e), DSOCR_E_INVALID, "dsocr_options.model_dir");
  expect_error(dsocr_open(&o, &e), DSOCR_E_IO, "/nonexistent/dsocr-model: no such directory");
  bad = o;
  bad.device = "tpu";
  expect_error(dsocr_open(&bad, &e), DSOCR_E_INVALID, "dsocr_options.device \"tpu\" is unknown");
  bad.device = "cuda";
  bad.gpu = 1;
  expect_error(dsocr_open(&bad, &e), DSOCR_E_UNSUPPORTED, "GPU 0 only");
  bad.gpu = 0;  // accepted: the missing directory is the error
  expect_error(dsocr_open(&bad, &e), DSOCR_E_IO, "no such directory");
  bad = o;
  for (const char* policy : {"int8", "int4", "mixed"}) {  // quantized kernels: GPU only
    bad.quant = policy;
    bad.device = "cpu";
    expect_error(dsocr_open(&bad, &e), DSOCR_E_UNSUPPORTED, "CPU backend runs bf16 weights only");
    bad.device = "cuda";  // accepted: the missing directory is the error
    expect_error(dsocr_open(&bad, &e), DSOCR_E_IO, "no such directory");
  }
  bad.quant = "fp3";
  expect_error(dsocr_open(&bad, &e), DSOCR_E_INVALID,
               "dsocr_options.quant: quantization policy 'fp3' unknown");
  bad = o;
  bad.max_crops = 10;
  expect_error(dsocr_open(&bad, &e), DSOCR_E_INVALID, "dsocr_options.max_crops 10");
  bad = o;
  bad.mode = 5;
  expect_error(dsocr_open(&bad, &e), DSOCR_E_INVALID, "dsocr_options.mode 5");
  bad = o;
  bad.max_tokens = -1;
  expect_error(dsocr_open(&bad, &e), DSOCR_E_INVALID, "dsocr_options.max_tokens -1");
  bad = o;
  bad.gpu = -2;
  expect_error(dsocr_open(&bad, &e), DSOCR_E_INVALID, "dsocr_options.gpu -2");
  EXPECT_EQ(e, nullptr);

  // A directory with config.json but no tokenizer.json: a missing file, named.
  const fs::path dir = fs::temp_directory_path() / ("dsocr_c_api_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << dsocr::official_config_json();
  const std::string d = dir.string();
  o.model_dir = d.c_str();
  expect_error(dsocr_open(&o, &e), DSOCR_E_IO, "tokenizer.json");
  fs::remove_all(dir);

  dsocr_close(nullptr);        // no-op
  dsocr_result_free(nullptr);  // no-op
}

TEST(CApi, WrapperThrowsError) {
  dsocr::Options o("/nonexistent/dsocr-model");
  o.device = "cpu";
  try {
    dsocr::Model m(o);
    FAIL() << "opened a missing model";
  } catch (const dsocr::Error& e) {
    EXPECT_EQ(e.code(), DSOCR_E_IO);
    EXPECT_NE(std::string(e.what()).find("no such directory"), std::string::npos) << e.what();
  }
}

// Pages on SYNTH-1: one engine for the suite (opening reads the 6.7 GB checkpoint).
class CApiPage : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* dir = std::getenv("DSOCR_SYNTH1_DIR");
    if (!dir || !fs::exists(fs::path(dir) / "tokenizer.json")) return;
    model_dir_ = dir;
    dsocr_options o = cpu_options(model_dir_.c_str());
    o.mode = DSOCR_MODE_TINY;
    o.max_tokens = 6;
    ASSERT_EQ(dsocr_open(&o, &engine_), DSOCR_OK) << dsocr_last_error();
    EXPECT_STREQ(dsocr_last_error(), "");
  }
  static void TearDownTestSuite() {
    dsocr_close(engine_);
    engine_ = nullptr;
  }
  void SetUp() override {
    if (!engine_) GTEST_SKIP() << "DSOCR_SYNTH1_DIR is not set (run through ctest)";
  }
  static std::string model_dir_;
  static dsocr_engine* engine_;
};
std::string CApiPage::model_dir_;
dsocr_engine* CApiPage::engine_ = nullptr;

struct Pieces {
  std::vector<std::string> got;
  size_t stop_after = 0;  // 0: never stop
};

int collect(const char* piece, size_t len, void* user) {
  auto* p = static_cast<Pieces*>(user);
  EXPECT_EQ(std::strlen(piece), len) << "piece not NUL-terminated at len";
  p->got.emplace_back(piece, len);
  return p->stop_after != 0 && p->got.size() >= p->stop_after;
}

TEST_F(CApiPage, RunStreamsAndStops) {
  // The full run (the engine's max_tokens 6), with every piece collected.
  Pieces all;
  dsocr_result* r = nullptr;
  ASSERT_EQ(dsocr_run(engine_, kSamplePage.c_str(), nullptr, nullptr, collect, &all, &r), DSOCR_OK)
      << dsocr_last_error();
  ASSERT_NE(r, nullptr);
  std::string joined;
  for (const std::string& p : all.got) joined += p;
  EXPECT_EQ(joined, r->text);
  EXPECT_EQ(r->struct_size, sizeof(dsocr_result));
  EXPECT_EQ(r->page_width, 800);
  EXPECT_EQ(r->page_height, 1000);
  EXPECT_EQ(r->image_tokens, 73);  // tiny
  EXPECT_GT(r->prompt_tokens, r->image_tokens);
  EXPECT_GE(r->generated_tokens, 1);
  EXPECT_LE(r->generated_tokens, 6);
  EXPECT_EQ(r->stopped, 0);
  EXPECT_TRUE(r->eos || r->generated_tokens == 6);
  EXPECT_GT(r->ms_vision, 0);
  EXPECT_GT(r->ms_prefill, 0);
  EXPECT_GT(r->ms_decode, 0);
  ASSERT_NE(r->markdown, nullptr);
  ASSERT_NE(r->plain, nullptr);
  EXPECT_GE(r->n_blocks, 0);
  for (int i = 0; i < r->n_blocks; ++i) {
    const dsocr_block& b = r->blocks[i];
    ASSERT_NE(b.label, nullptr);
    ASSERT_NE(b.text, nullptr);
    for (int k = 0; k < b.n_boxes; ++k) {
      EXPECT_LE(b.boxes[k].x1, b.boxes[k].x2);
      EXPECT_LE(b.boxes[k].x2, r->page_width);
    }
  }
  const std::string text = r->text;
  const int generated = r->generated_tokens;
  dsocr_result_free(r);

  // A callback that stops after 3 pieces gets exactly 3, and the result says it stopped.
  if (all.got.size() > 3) {
    Pieces three{{}, 3};
    ASSERT_EQ(dsocr_run(engine_, kSamplePage.c_str(), nullptr, nullptr, collect, &three, &r),
              DSOCR_OK)
        << dsocr_last_error();
    EXPECT_EQ(three.got.size(), 3u);
    EXPECT_EQ(r->stopped, 1);
    EXPECT_EQ(r->eos, 0);
    EXPECT_EQ(std::string(r->text), three.got[0] + three.got[1] + three.got[2]);
    EXPECT_EQ(text.rfind(r->text, 0), 0u) << "not a prefix of the full run";
    dsocr_result_free(r);
  } else {
    ADD_FAILURE() << "the full run gave only " << all.got.size() << " pieces: '" << text << "'";
  }

  // The same pixels from memory (stride with padding), with a per-run token limit of 2 and the
  // task and prompt spelled out: the same tokens as the file run, cut at 2.
  dsocr::Expected<dsocr::Image> img = dsocr::load_image(kSamplePage);
  ASSERT_TRUE(img.ok()) << img.message();
  const size_t stride = static_cast<size_t>(img->width) * 3 + 5;
  std::vector<uint8_t> padded(stride * img->height, 0xAB);
  for (int y = 0; y < img->height; ++y)
    std::memcpy(padded.data() + stride * y, img->rgb.data() + img->width * 3 * y, img->width * 3);
  dsocr_run_params params;
  dsocr_run_params_default(&params);
  params.max_tokens = 2;
  ASSERT_EQ(dsocr_run_rgb(engine_, padded.data(), img->width, img->height, stride,
                          "<image>\n<|grounding|>Convert the document to markdown.", &params,
                          nullptr, nullptr, &r),
            DSOCR_OK)
      << dsocr_last_error();
  EXPECT_EQ(r->generated_tokens, std::min(generated, 2));
  EXPECT_EQ(text.rfind(r->text, 0), 0u) << "'" << r->text << "' is not a prefix of '" << text;
  dsocr_result_free(r);
}

TEST_F(CApiPage, RunRefusesBadInputs) {
  dsocr_result* r = reinterpret_cast<dsocr_result*>(0x1);  // must be reset to NULL
  expect_error(dsocr_run(nullptr, kSamplePage.c_str(), nullptr, nullptr, nullptr, nullptr, &r),
               DSOCR_E_INVALID, "engine is NULL");
  EXPECT_EQ(r, nullptr);
  expect_error(dsocr_run(engine_, "/nonexistent/page.png", nullptr, nullptr, nullptr, nullptr, &r),
               DSOCR_E_IO, "/nonexistent/page.png");
  const fs::path bad =
      fs::temp_directory_path() / ("dsocr_c_api_" + std::to_string(::getpid()) + ".png");
  std::ofstream(bad, std::ios::binary) << "\x89PNG\r\n\x1a\n truncated";
  expect_error(dsocr_run(engine_, bad.c_str(), nullptr, nullptr, nullptr, nullptr, &r),
               DSOCR_E_IMAGE, bad.string());
  fs::remove(bad);
  expect_error(
      dsocr_run(engine_, kSamplePage.c_str(), "no placeholder", nullptr, nullptr, nullptr, &r),
      DSOCR_E_INVALID, "<image>");
  dsocr_run_params p;
  dsocr_run_params_default(&p);
  p.task = DSOCR_TASK_LOCATE;
  expect_error(dsocr_run(engine_, kSamplePage.c_str(), nullptr, &p, nullptr, nullptr, &r),
               DSOCR_E_INVALID, "dsocr_run_params.ref");
  p.task = 42;
  expect_error(dsocr_run(engine_, kSamplePage.c_str(), nullptr, &p, nullptr, nullptr, &r),
               DSOCR_E_INVALID, "dsocr_run_params.task 42");
  p.struct_size = 4;
  expect_error(dsocr_run(engine_, kSamplePage.c_str(), nullptr, &p, nullptr, nullptr, &r),
               DSOCR_E_INVALID, "dsocr_run_params.struct_size is 4");
  const uint8_t px[12] = {};
  expect_error(dsocr_run_rgb(engine_, px, 2, 2, 5, nullptr, nullptr, nullptr, nullptr, &r),
               DSOCR_E_INVALID, "stride 5");
  expect_error(dsocr_run_rgb(engine_, px, 0, 2, 6, nullptr, nullptr, nullptr, nullptr, &r),
               DSOCR_E_IMAGE, "0x2");
  EXPECT_EQ(r, nullptr);
}

TEST_F(CApiPage, WrapperStreamsAndRethrows) {
  dsocr::Options o(model_dir_.c_str());
  o.device = "cpu";
  o.mode = DSOCR_MODE_TINY;
  o.max_tokens = 3;
  dsocr::Model model(o);
  std::string streamed;
  dsocr::Result r = model.run(kSamplePage, {}, [&](std::string_view piece) {
    streamed += piece;
    return true;
  });
  EXPECT_EQ(r.text(), streamed);
  EXPECT_EQ(r->image_tokens, 73);
  EXPECT_EQ(std::distance(r.begin(), r.end()), r->n_blocks);
  // An exception in the callback stops generation and comes out of run().
  EXPECT_THROW(
      model.run(kSamplePage, {},
                [](std::string_view) -> bool { throw std::runtime_error("from callback"); }),
      std::runtime_error);
}

}  // namespace
