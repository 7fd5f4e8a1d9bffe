// dsocr-run as a user meets it: the built binary run with good and bad arguments. Every error must
// be exactly one line "dsocr-run: <what>; <what to do>" on stderr, with exit code 2 for usage
// errors and 1 for runtime errors. (tests/cli.cmake makes this test depend on the tool.)
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "loader/config.h"
#include "loader/safetensors.h"
#include "loader/schema.h"
#include "runtime/cuda_check.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class Cli : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ =
        new fs::path(fs::temp_directory_path() / ("dsocr_cli_test_" + std::to_string(::getpid())));
    fs::create_directories(*tmp_);
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*tmp_, ec);
    delete tmp_;
  }

  // Run dsocr-run with `args` (already shell-quoted where needed), DSOCR_MODEL unset unless `env`
  // sets it.
  static Result run(const std::string& args, const std::string& env = "") {
    const fs::path exe = fs::path(DSOCR_BINARY_DIR) / "bin" / "dsocr-run";
    EXPECT_TRUE(fs::exists(exe)) << exe << " not built";
    const fs::path out = *tmp_ / "stdout", err = *tmp_ / "stderr";
    const std::string cmd = "env -u DSOCR_MODEL " + env + " '" + exe.string() + "' " + args +
                            " >'" + out.string() + "' 2>'" + err.string() + "'";
    const int status = std::system(cmd.c_str());
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

  // A checkpoint directory with config.json and one safetensors file holding `tensors` (data left
  // as a sparse hole of zeros, so a full-size checkpoint costs no disk).
  static fs::path make_checkpoint(const std::string& name, std::vector<TensorInfo> tensors,
                                  bool with_config = true) {
    const fs::path dir = *tmp_ / name;
    fs::create_directories(dir);
    if (with_config) std::ofstream(dir / "config.json") << official_config_json();
    const std::string header = build_safetensors_header(tensors);
    EXPECT_FALSE(header.empty());
    uint64_t data = 0;
    for (const TensorInfo& t : tensors)
      data += static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype);
    const fs::path file = dir / "model-00001-of-000001.safetensors";
    std::ofstream(file, std::ios::binary) << header;
    fs::resize_file(file, header.size() + data);
    return dir;
  }

  static fs::path full_checkpoint() {
    static fs::path dir;
    if (dir.empty()) {
      std::vector<TensorInfo> ts;
      for (const TensorSpec& s : checkpoint_schema(ModelConfig{})) {
        TensorInfo t;
        t.name = s.name;
        t.shape = s.shape;
        t.dtype = s.dtype;
        ts.push_back(t);
      }
      dir = make_checkpoint("full", ts);
    }
    return dir;
  }

  static fs::path* tmp_;
};
fs::path* Cli::tmp_ = nullptr;

// One line, "dsocr-run: ...; ...", containing `what`.
void expect_one_line_error(const Result& r, int code, const std::string& what) {
  EXPECT_EQ(r.code, code) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.rfind("dsocr-run: ", 0), 0u) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
  EXPECT_NE(r.err.find("; "), std::string::npos) << "no advice: " << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << "expected '" << what << "' in: " << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(Cli, HelpListsEveryOption) {
  Result r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* flag : {"--model DIR", "--inspect", "--mode MODE", "--max-tokens N",
                           "--gpu-mem SIZE", "--device cuda|cpu", "-v", "--help"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag << " missing from:\n" << r.out;
  EXPECT_EQ(r.out.find("not yet implemented"), std::string::npos);
  EXPECT_TRUE(r.err.empty());
  EXPECT_EQ(run("-h").out, r.out);
}

TEST_F(Cli, UsageErrorsExitTwo) {
  expect_one_line_error(run("--bogus"), 2, "unknown option '--bogus'");
  expect_one_line_error(run("--model"), 2, "--model needs a value");
  expect_one_line_error(run("--model x --mode"), 2, "--mode needs a value");
  expect_one_line_error(run("--model x --mode huge"), 2, "huge");
  expect_one_line_error(run("--model x --gpu-mem 3X"), 2, "--gpu-mem");
  expect_one_line_error(run("--model x --gpu-mem=-1G"), 2, "--gpu-mem");
  expect_one_line_error(run("--model x --max-tokens 0"), 2, "--max-tokens");
  expect_one_line_error(run("--model x --max-tokens abc"), 2, "--max-tokens 'abc'");
  expect_one_line_error(run("--model x --max-tokens 8192"), 2, "--max-tokens 8192 is too many");
  expect_one_line_error(run("--model x --device tpu"), 2, "--device 'tpu'");
  expect_one_line_error(run("--model x --inspect=yes"), 2, "--inspect takes no value");
  expect_one_line_error(run("--model x page.png"), 2, "unexpected argument 'page.png'");
  expect_one_line_error(run(""), 2, "no model given");
  expect_one_line_error(run("--model x --device cpu"), 2, "--device cpu supports --inspect only");
  // Tiny mode leaves more room: 8192 - 138 new tokens is the limit there.
  expect_one_line_error(run("--model x --mode tiny --max-tokens 8055"), 2, "at most 8054");
}

TEST_F(Cli, ModelErrorsExitOne) {
  expect_one_line_error(run("--model /nonexistent/dsocr --inspect --device cpu"), 1,
                        "/nonexistent/dsocr: no such directory");
  expect_one_line_error(run("--inspect --device cpu", "DSOCR_MODEL=/nonexistent/env"), 1,
                        "/nonexistent/env: no such directory");
  // No config.json.
  std::vector<TensorInfo> one(1);
  one[0].name = "model.norm.weight";
  one[0].shape = {1280};
  const fs::path no_config = make_checkpoint("no_config", one, false);
  expect_one_line_error(run("--model '" + no_config.string() + "' --inspect --device cpu"), 1,
                        "config.json: not found");
  // A valid safetensors file that is not DeepSeek-OCR: the validator's message.
  const fs::path partial = make_checkpoint("partial", one);
  Result r = run("--model '" + partial.string() + "' --inspect --device cpu");
  expect_one_line_error(r, 1, "missing model.");
  // A corrupt file: the safetensors reader's message.
  const fs::path corrupt = *tmp_ / "corrupt";
  fs::create_directories(corrupt);
  std::ofstream(corrupt / "config.json") << official_config_json();
  std::ofstream(corrupt / "model.safetensors") << "this is not a safetensors file at all";
  expect_one_line_error(run("--model '" + corrupt.string() + "' --inspect --device cpu"), 1,
                        "model.safetensors");
}

TEST_F(Cli, InspectPrintsCheckpointAndPlan) {
  const fs::path dir = full_checkpoint();
  Result r = run("--model '" + dir.string() + "' --inspect --device cpu --mode base");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  for (const char* want :
       {"model-00001-of-000001.safetensors", "2710 tensors", "6672212480 bytes", "routed_expert",
        "lm_head", "kv_cache", "vision", "decoder", "sampling", "total", "mode base"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " missing from:\n" << r.out;
  // -v adds stage timings on stderr, and nothing else changes.
  Result v = run("--model '" + dir.string() + "' --inspect --device cpu --mode base -v");
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(v.out, r.out);
  EXPECT_NE(v.err.find("validated"), std::string::npos) << v.err;
  // --gpu-mem is checked even without a GPU, so a plan can be checked for another card.
  expect_one_line_error(run("--model '" + dir.string() + "' --inspect --device cpu --gpu-mem 1G"),
                        1, "plan needs ");
  Result big = run("--model '" + dir.string() + "' --inspect --device cpu --gpu-mem 80G");
  EXPECT_EQ(big.code, 0) << big.err;
  EXPECT_NE(big.out.find("--gpu-mem 80G"), std::string::npos) << big.out;
}

TEST_F(Cli, CudaDeviceNeedsAGpu) {
  const fs::path dir = full_checkpoint();
  Result r = run("--model '" + dir.string() + "' --inspect");
  if (cuda_unavailable_reason().empty()) {
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("free memory of GPU 0"), std::string::npos) << r.out;
  } else {
    expect_one_line_error(r, 1, "no GPU for --device cuda");
  }
}

}  // namespace
}  // namespace dsocr
