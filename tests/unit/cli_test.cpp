// dsocr-run as a user meets it: the built binary run with good and bad arguments. Every error must
// be exactly one line "dsocr-run: <what>; <what to do>" on stderr, with exit code 2 for usage
// errors and 1 for runtime errors. (tests/cli.cmake makes this test depend on the tool.)
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
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
    return run_tool("dsocr-run", args, env);
  }
  static Result run_tool(const std::string& tool, const std::string& args,
                         const std::string& env = "") {
    const fs::path exe = fs::path(DSOCR_BINARY_DIR) / "bin" / tool;
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

// One line, "<tool>: ...; ...", containing `what`.
void expect_one_line_error(const Result& r, int code, const std::string& what,
                           const std::string& tool = "dsocr-run") {
  EXPECT_EQ(r.code, code) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.rfind(tool + ": ", 0), 0u) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
  EXPECT_NE(r.err.find("; "), std::string::npos) << "no advice: " << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << "expected '" << what << "' in: " << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(Cli, HelpListsEveryOption) {
  Result r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* flag : {"--model DIR",
                           "--inspect",
                           "--mode MODE",
                           "--max-tokens N",
                           "--gpu-mem SIZE",
                           "--device cuda|cpu",
                           "-v",
                           "--help",
                           "--image PATH",
                           "--task TASK",
                           "--prompt TEXT",
                           "--ref TEXT",
                           "--max-crops N",
                           "--ngram N",
                           "--prompt-ids IDS",
                           "--teacher-force IDS",
                           "--dump FILE",
                           "--pixels-from-golden CASE",
                           "--out DIR",
                           "--format F",
                           "--images-from FILE",
                           "--quant P",
                           "--quant-experts F",
                           "--quant-dense F",
                           "--quant-attn F",
                           "--quant-vision F",
                           "--quant-lm-head F",
                           "--quant-group N"})
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
  expect_one_line_error(run("--model x --device cpu"), 2, "nothing to do");
  expect_one_line_error(run("--model x --max-crops 0"), 2, "--max-crops");
  expect_one_line_error(run("--model x --max-crops 10"), 2, "outside 2..9");
  expect_one_line_error(run("--model x --task poem"), 2, "unknown task 'poem'");
  expect_one_line_error(run("--model x --ngram x"), 2, "--ngram");
  expect_one_line_error(run("--model x --format xml"), 2, "--format 'xml' unknown");
  // The golden interface's own rules.
  expect_one_line_error(run("--model x --prompt-ids 1,2 --device cpu --image a.png"), 2,
                        "add --dump FILE");
  expect_one_line_error(run("--model x --dump d.safetensors"), 2, "need --prompt-ids");
  expect_one_line_error(run("--model x --prompt-ids 1,,2"), 2, "--prompt-ids");
  expect_one_line_error(run("--model x --prompt-ids 1 --dump d --device cpu"), 2,
                        "exactly one --image or --pixels-from-golden");
  // Quantization: bad values, and what has no quantized kernels (the CPU backend, the GPU
  // encoder) refused rather than silently run BF16.
  expect_one_line_error(
      run("--model x --quant fp8"), 2,
      "--quant: quantization policy 'fp8' unknown; use bf16, int8, int4 or mixed");
  expect_one_line_error(run("--model x --quant"), 2, "--quant needs a value");
  expect_one_line_error(run("--model x --quant-attn int2"), 2,
                        "--quant-attn: weight format 'int2' unknown; use bf16, int8 or int4");
  expect_one_line_error(run("--model x --quant-experts=mixed"), 2, "--quant-experts: ");
  expect_one_line_error(run("--model x --quant-group 32"), 2, "--quant-group: int4 group 32");
  expect_one_line_error(run("--model x --quant-group x"), 2, "--quant-group 'x'");
  const char* cpu_only_bf16 = "the CPU backend runs BF16 weights only";
  expect_one_line_error(run("--model x --quant mixed --device cpu --image a.png"), 2,
                        cpu_only_bf16);
  expect_one_line_error(run("--model x --quant-experts int4 --device cpu --image a.png"), 2,
                        "quantized weights (routed_expert int4 (group 128); the rest bf16)");
  const char* no_vision = "the GPU encoder has no quantized kernels yet";
  expect_one_line_error(
      run("--model x --quant int8 --quant-vision int8 --prompt-ids 1 --dump d --image a.png"), 2,
      no_vision);
  expect_one_line_error(run("--model x --quant int4 --quant-vision int4"), 2, no_vision);
  // A supported policy on cuda gets as far as the model directory.
  expect_one_line_error(run("--model /nonexistent/q --quant mixed"), 1,
                        "/nonexistent/q: no such directory");
  // Overrides that bring everything back to BF16 are plain BF16 (refused for other reasons).
  expect_one_line_error(run("--model x --quant int8 --quant-experts bf16 --quant-attn bf16 "
                            "--quant-dense bf16 --device cpu"),
                        2, "nothing to do");
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
  // --gpu-mem is checked even without a GPU, so a plan can be checked for another card; below
  // the smallest offload plan it is refused (tests below).
  expect_one_line_error(run("--model '" + dir.string() + "' --inspect --device cpu --gpu-mem 1G"),
                        1, "is below the minimum");
  Result big = run("--model '" + dir.string() + "' --inspect --device cpu --gpu-mem 80G");
  EXPECT_EQ(big.code, 0) << big.err;
  EXPECT_NE(big.out.find("--gpu-mem 80G"), std::string::npos) << big.out;
  // BF16 by default: the stored column equals the checkpoint's.
  for (const char* want : {"weights: --quant bf16: all bf16", "stored as",
                           "(6672215552 bytes)"})  // all weights: the tensors + 3 kB of alignment
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " missing from:\n" << r.out;
}

// The words of the first line of `out` that starts with "  <first> ", joined by single spaces.
std::string table_row(const std::string& out, const std::string& first) {
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string w, row;
    if (!(words >> w) || w != first || line.rfind("  " + first + " ", 0) != 0) continue;
    row = w;
    while (words >> w) row += " " + w;
    return row;
  }
  return "";
}

// Offload under --gpu-mem (runtime/planner.h "Offload"), without a GPU: below the minimum one
// line naming it; between the minimum and the all-resident total an offload plan; above it none.
TEST_F(Cli, InspectOffloadPlan) {
  const fs::path dir = full_checkpoint();
  const std::string inspect = "--model '" + dir.string() + "' --inspect --device cpu ";
  // Gundam, BF16, the full context: 7.66 GB all on the GPU (two vision lanes); the smallest
  // offload plan 2.88 GB (tests/unit/offload_plan_test.cpp has the arithmetic).
  Result all = run(inspect);
  ASSERT_EQ(all.code, 0) << all.err;
  for (const char* want : {"residency                all on the GPU", "minimum budget",
                           "2.88 GB  (2884", "weights.clip 606 MB, kv_cache 503 MB"})
    EXPECT_NE(all.out.find(want), std::string::npos) << want << " missing from:\n" << all.out;
  EXPECT_EQ(all.out.find("host pool"), std::string::npos) << all.out;

  Result low = run(inspect + "--gpu-mem 2500M");
  expect_one_line_error(low, 1,
                        "--gpu-mem 2500M (2.62 GB) is below the minimum 2.88 GB for mode gundam, "
                        "--quant bf16");
  EXPECT_NE(low.err.find("weights.clip 606 MB, kv_cache 503 MB, expert_cache 482 MB, ...); raise "
                         "--gpu-mem, lower --max-tokens or use a smaller --mode"),
            std::string::npos)
      << low.err;
  // A smaller mode and fewer tokens lower the minimum below the same budget.
  Result tiny = run(inspect + "--gpu-mem 2500M --mode tiny --max-tokens 256");
  EXPECT_EQ(tiny.code, 0) << tiny.err;
  EXPECT_NE(tiny.out.find("routed_expert host + expert cache"), std::string::npos) << tiny.out;
  // So does --quant mixed: the INT4 experts move packed, a slot is 3 x 591,360 B (1.77 MB), and
  // the minimum drops by about 0.52 GB (66 slots at 5.11 MB less each, INT8 attention, dense MLP
  // and shared experts; tests/unit/offload_plan_test.cpp has the exact figure).
  Result mixed = run(inspect + "--gpu-mem 2500M --quant mixed");
  ASSERT_EQ(mixed.code, 0) << mixed.err;
  for (const char* want : {"routed_expert host + expert cache", "1.77 MB per slot",
                           "int4 g128, read over PCIe unless cached"})
    EXPECT_NE(mixed.out.find(want), std::string::npos) << want << " missing from:\n" << mixed.out;
  // In the host pool after the embedding table (129280 x 1280 x 2 B): 704 experts x 3 x 591,360 B.
  EXPECT_EQ(table_row(mixed.out, "weights.routed_expert"),
            "weights.routed_expert 330956800 1.25 GB 2112 tensors, int4 g128, read over PCIe "
            "unless cached")
      << mixed.out;

  // 4 GiB: embedding and routed experts on the host, 24 cache slots per MoE layer (a slot is
  // 11 x 6.88 MB; 25 until the decoder carved its prefill router logits, 1328 x 64 FP32 = 340 kB).
  Result mid = run(inspect + "--gpu-mem 4G");
  ASSERT_EQ(mid.code, 0) << mid.err;
  for (const char* want :
       {"residency                embed host; routed_expert host + expert cache 24 slots per "
        "layer; everything else on the GPU",
        "host pool (pinned, mapped", "weights.embed", "weights.routed_expert", "all host",
        "24 of 64 experts in 11 MoE layers, 6.88 MB per slot", "expert_cache", "--gpu-mem 4G"})
    EXPECT_NE(mid.out.find(want), std::string::npos) << want << " missing from:\n" << mid.out;
  // 7.5 GB: only the embedding table moves.
  Result high = run(inspect + "--gpu-mem 7.5GB");
  ASSERT_EQ(high.code, 0) << high.err;
  EXPECT_NE(high.out.find("residency                embed host; everything else on the GPU"),
            std::string::npos)
      << high.out;
  EXPECT_EQ(high.out.find("expert cache"), std::string::npos) << high.out;
}

// --inspect under a quantization policy: bytes per class as stored, beside the BF16 bytes, and
// the plan with quantized weight slots (runtime/planner_test.cpp checks the arithmetic).
TEST_F(Cli, InspectQuantizedPlan) {
  const fs::path dir = full_checkpoint();
  const std::string inspect = "--model '" + dir.string() + "' --inspect --device cpu ";
  Result r = run(inspect + "--quant mixed");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  for (const char* want :
       {"weights: --quant mixed: routed_expert int4 (group 128); attn, dense_mlp, shared_expert "
        "int8; the rest bf16",
        "weights.routed_expert", "(2896373248 bytes)"})  // all weights, mixed: 2.90 GB
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " missing from:\n" << r.out;
  // class, tensors, BF16 size and bytes, stored as, stored size and bytes (values + scales).
  // Routed experts: 2112 matrices of 573,440 B of nibbles + 17,920 B of scales.
  EXPECT_EQ(table_row(r.out, "routed_expert"),
            "routed_expert 2112 4.84 GB 4844421120 int4 g128 1.25 GB 1248952320");
  EXPECT_EQ(table_row(r.out, "attn"), "attn 48 157 MB 157286400 int8 78.8 MB 78766080");
  EXPECT_EQ(table_row(r.out, "router"), "router 11 1.80 MB 1802240 bf16 1.80 MB 1802240");
  EXPECT_EQ(table_row(r.out, "all"), "all 2710 6.67 GB 6672212480 2.90 GB 2896369920");
  // Overrides and the group, in any order around --quant.
  Result o = run(inspect + "--quant-lm-head int8 --quant int4 --quant-group 64");
  ASSERT_EQ(o.code, 0) << o.err;
  for (const char* want : {"lm_head int8", "int4 (group 64)"})
    EXPECT_NE(o.out.find(want), std::string::npos) << want << " missing from:\n" << o.out;
  EXPECT_EQ(table_row(o.out, "lm_head"),
            "lm_head 1 331 MB 330956800 int8 166 MB 165736960");  // 129280 x (1280 + 2)
  EXPECT_EQ(table_row(o.out, "dense_mlp"),
            "dense_mlp 3 52.6 MB 52592640 int4 g64 14.0 MB 13969920");
  EXPECT_EQ(o.out.find("int4 g128"), std::string::npos) << o.out;
}

// Pages and the golden interface on a checkpoint whose weights are all zero (a sparse file):
// the plumbing, the bad inputs and the exit codes, not the numbers (tests/golden checks those).
TEST_F(Cli, PagesAndGoldenOnCpu) {
  const fs::path dir = full_checkpoint();
  const std::string model = "--model '" + dir.string() + "' --device cpu --mode tiny ";
  const std::string golden_case = std::string(DSOCR_GOLDEN_DIR) + "/cases/show1_tiny.safetensors";
  // Bad golden inputs fail before any compute, naming the id or the limit.
  expect_one_line_error(run(model + "--pixels-from-golden '" + golden_case +
                            "' --prompt-ids 201,999999 --dump " + (*tmp_ / "d").string()),
                        1, "prompt id 999999 is outside the vocabulary");
  expect_one_line_error(run(model + "--pixels-from-golden '" + golden_case +
                            "' --prompt-ids 201 --max-tokens 8150 --dump " + (*tmp_ / "d").string()),
                        1, "exceeds the 8192-token context");
  expect_one_line_error(run(model + "--mode base --pixels-from-golden '" + golden_case +
                            "' --prompt-ids 201 --dump " + (*tmp_ / "d").string()),
                        1, "global_u8 is 512x512 but --mode base needs 1024x1024");
  // An output directory that cannot be made is refused before any work.
  expect_one_line_error(run(model + "--image a.png --out /proc/dsocr-no-such-dir"), 1,
                        "cannot create the output directory");
  // Pages need a tokenizer.json beside the weights.
  const std::string png = std::string(DSOCR_GOLDEN_DIR) + "/images/show4_600.png";
  expect_one_line_error(run(model + "--image '" + png + "'"), 1, "no tokenizer.json");
  // With one, a bad image among good ones is reported and skipped; the exit code says so.
  fs::copy_file(fs::path(DSOCR_SOURCE_DIR) / "tests/data/tokenizer/deepseek_v3.tokenizer.json",
                dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  const fs::path bad = *tmp_ / "broken.png";
  std::ofstream(bad, std::ios::binary) << "\x89PNG\r\n\x1a\n truncated";
  Result r = run(model + "--max-tokens 2 --task ocr --image '" + png + "' --image '" +
                 bad.string() + "'");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("dsocr-run: " + bad.string() + ": truncated PNG header; the file is "
                       "corrupt or truncated; skipped\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("2 images, 1 ok, 1 failed (broken.png)"), std::string::npos) << r.err;
  EXPECT_FALSE(r.out.empty()) << "the good image printed nothing";
  // --out writes the page files; --format json prints the page JSON.
  const fs::path out = *tmp_ / "out";
  Result j = run(model + "--max-tokens 2 --format json --out '" + out.string() + "' --image '" +
                 png + "'");
  EXPECT_EQ(j.code, 0) << j.err;
  EXPECT_NE(j.out.find("\"eos_reached\""), std::string::npos) << j.out;
  for (const char* f : {"show4_600.json", "show4_600.mmd", "show4_600_boxes.png"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  // The golden dump is written and parses as safetensors with the golden names.
  const fs::path dump = *tmp_ / "show1.safetensors";
  Result g = run(model + "--pixels-from-golden '" + golden_case +
                 "' --prompt-ids 201,128820 --max-tokens 2 --ngram 3 --dump '" + dump.string() + "'");
  ASSERT_EQ(g.code, 0) << g.err;
  auto f = SafetensorsFile::open(dump.string());
  ASSERT_TRUE(f.ok()) << f.message();
  for (const char* name : {"global_u8", "image_embeds", "input_ids", "prefill_hidden",
                           "prefill_hidden_positions", "prefill_logits_last", "gen_ids",
                           "tf_top64_vals", "tf_top64_ids", "sam_global", "clip_global"})
    EXPECT_NE(f->find(name), nullptr) << name;
  EXPECT_EQ(f->find("input_ids")->shape, std::vector<int64_t>({1 + 73 + 2}));
  EXPECT_EQ(f->find("gen_ids")->shape, std::vector<int64_t>({2}));
  fs::remove(dir / "tokenizer.json");
}

// Many images: directories and list files expand in order, a missing image is reported and
// skipped (exit 1), duplicate names get suffixes, and stderr carries one summary line per image
// and one for the batch (no progress bar: stderr is not a terminal here).
TEST_F(Cli, ManyImagesFromDirectoriesAndLists) {
  const fs::path dir = full_checkpoint();
  fs::copy_file(fs::path(DSOCR_SOURCE_DIR) / "tests/data/tokenizer/deepseek_v3.tokenizer.json",
                dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  const std::string model = "--model '" + dir.string() + "' --device cpu --mode tiny ";
  const fs::path png = fs::path(DSOCR_GOLDEN_DIR) / "images/show4_600.png";
  const fs::path work = *tmp_ / "many";
  fs::create_directories(work / "scans");
  fs::create_directories(work / "more");
  fs::create_directories(work / "empty");
  fs::copy_file(png, work / "scans/page.png");
  std::ofstream(work / "scans/notes.txt") << "not an image";
  fs::copy_file(png, work / "more/page.png");
  // Relative entries are relative to the list file's directory, not the current directory.
  std::ofstream(work / "list.txt") << "# second batch\n\nmore/page.png\nmissing.png\n";
  const fs::path out = work / "out";
  Result r = run(model + "--max-tokens 1 --task ocr --image '" + (work / "scans").string() +
                 "' --images-from '" + (work / "list.txt").string() + "' --out '" + out.string() +
                 "'");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("dsocr-run: " + (work / "missing.png").string() +
                       ": image file not found; check the path; skipped\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("page.png: tiny, 73 image tokens, 1 tokens, vision "), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("3 images, 2 ok, 1 failed (missing.png), 2 tokens in "), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << "progress bar without a terminal";
  for (const char* f : {"page.mmd", "page.json", "page_2.mmd", "page_2.json", "page_2_boxes.png"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  EXPECT_NE(slurp(out / "page_2.json").find("\"page_2\""), std::string::npos);
  // One image, without -v: no summary lines.
  Result one = run(model + "--max-tokens 1 --task ocr --image '" + (work / "more").string() + "'");
  EXPECT_EQ(one.code, 0) << one.err;
  EXPECT_TRUE(one.err.empty()) << one.err;
  // Inputs that name no images are usage errors, before the model is opened.
  expect_one_line_error(run(model + "--images-from '" + (work / "nope.txt").string() + "'"), 2,
                        "nope.txt: list file not found");
  expect_one_line_error(run(model + "--image '" + (work / "empty").string() + "'"), 2,
                        "empty: no image files (.png, .jpg");
  fs::remove(dir / "tokenizer.json");
}

TEST_F(Cli, BenchErrorsAndCompare) {
  auto bench = [](const std::string& args) { return run_tool("dsocr-bench", args); };
  auto expect_one_line_bench = [](const Result& r, int code, const std::string& what) {
    expect_one_line_error(r, code, what, "dsocr-bench");
  };
  expect_one_line_bench(bench(""), 2, "no command");
  expect_one_line_bench(bench("warp"), 2, "unknown command 'warp'");
  expect_one_line_bench(bench("kernels --filter '('"), 2, "not a valid regular expression");
  expect_one_line_bench(bench("e2e"), 2, "e2e needs --model DIR");
  expect_one_line_bench(bench("e2e --model x --modes tiny,huge"), 2, "unknown mode 'huge'");
  expect_one_line_bench(bench("decode --model x --ctx 1"), 2, "--ctx 1");
  expect_one_line_bench(bench("decode --model x --gpu-mem 3X"), 2, "--gpu-mem: size '3X'");
  Result help = bench("--help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("dsocr-bench kernels"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--gpu-mem SIZE"), std::string::npos) << help.out;
  // compare: the baseline's stages beside ours, speed-up = theirs / ours.
  const fs::path base = *tmp_ / "torch.json", ours = *tmp_ / "ours.json", e2e = *tmp_ / "e2e.json";
  std::ofstream(base) << R"({"results": [
      {"name": "decoder.prefill_912", "mode": "eager", "ms_median": 20.0},
      {"name": "decoder.decode_ctx912_compiled", "mode": "compile", "ms_median": 2.4},
      {"name": "vision.base_view", "mode": "eager", "ms_median": 16.0},
      {"name": "decoder.decode_b32_step", "mode": "eager", "ms_median": 13.1}]})";
  std::ofstream(ours) << R"({"results": [{"ctx": 912, "prefill_ms": 5.0,
      "decode_ms_per_token": 0.6}]})";
  std::ofstream(e2e) << R"({"results": [{"mode": "base", "vision_ms": 4.0}]})";
  Result c = bench("compare --baseline '" + base.string() + "' --ours '" + ours.string() +
                   "' --ours '" + e2e.string() + "'");
  EXPECT_EQ(c.code, 0) << c.err;
  EXPECT_NE(c.out.find("decoder.prefill_912"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("4.00x"), std::string::npos) << c.out;  // 20 / 5 and 16 / 4
  EXPECT_NE(c.out.find("decoder.decode_ctx912_compiled"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("4.00x"), c.out.rfind("4.00x")) << c.out;  // both 4x rows
  EXPECT_EQ(c.out.find("decode_b32_step"), std::string::npos) << c.out;  // nothing to compare
  expect_one_line_bench(bench("compare --baseline '" + base.string() + "' --ours '" + e2e.string() +
                              "x'"),
                        1, "cannot read");
  std::ofstream(e2e) << R"({"results": []})";
  expect_one_line_bench(
      bench("compare --baseline '" + base.string() + "' --ours '" + e2e.string() + "'"), 1,
      "no stage of");
  if (!cuda_unavailable_reason().empty()) {
    const Result k = bench("kernels");
    expect_one_line_bench(k, 1, "no CUDA device was found");
    EXPECT_NE(k.err.find("--device cpu"), std::string::npos) << k.err;
  }
}

// The --quant flags parse as in dsocr-run (one shared parser) and only where they apply.
TEST_F(Cli, BenchQuantAndDeviceFlags) {
  auto bench = [](const std::string& args) { return run_tool("dsocr-bench", args); };
  auto expect_one_line_bench = [](const Result& r, int code, const std::string& what) {
    expect_one_line_error(r, code, what, "dsocr-bench");
  };
  expect_one_line_bench(
      bench("decode --model x --quant fp8"), 2,
      "--quant: quantization policy 'fp8' unknown; use bf16, int8, int4 or mixed");
  expect_one_line_bench(bench("e2e --model x --quant-experts int2"), 2,
                        "--quant-experts: weight format 'int2' unknown");
  expect_one_line_bench(bench("decode --model x --quant-group 32"), 2,
                        "--quant-group: int4 group 32");
  expect_one_line_bench(bench("kernels --quant mixed"), 2, "kernels takes no --quant flags");
  expect_one_line_bench(bench("kernels --device tpu"), 2, "--device 'tpu'");
  expect_one_line_bench(bench("decode --model x --device cpu"), 2, "--device cpu is for");
  expect_one_line_bench(bench("kernels --device cpu --filter '^nothing'"), 1,
                        "matches no CPU kernel row");
  const Result help = bench("--help");
  for (const char* want :
       {"--quant P", "--quant-experts F", "--quant-attn F", "--quant-lm-head F", "--device D"})
    EXPECT_NE(help.out.find(want), std::string::npos) << want << " not in " << help.out;
}

// kernels --device cpu: the CPU reference kernels, no GPU needed (small rows only: seconds).
TEST_F(Cli, BenchCpuKernels) {
  const fs::path json = *tmp_ / "cpu_kernels.json";
  const Result r = run_tool(
      "dsocr-bench",
      "kernels --device cpu --ctx 64 --filter "
      "'add_rmsnorm|rope|moe_router|linear o|prefill64\\.attention|decode\\.(moe 6|swiglu)' "
      "--json '" +
          json.string() + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* want :
       {"decode.add_rmsnorm", "decode.rope q", "decode.moe_router", "decode.linear o 1280x1280",
        "prefill64.add_rmsnorm", "prefill64.attention", "decode.moe 6 experts + shared",
        "decode.swiglu dense 6848", "GFLOP/s"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " not in " << r.out;
  EXPECT_EQ(r.out.find("lm_head"), std::string::npos) << r.out;    // filtered out
  EXPECT_NE(r.err.find("cpu [1/9]"), std::string::npos) << r.err;  // progress on stderr
  std::ifstream f(json);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"device\": \"cpu\""), std::string::npos) << text;
  EXPECT_NE(text.find("prefill64.rope q"), std::string::npos) << text;
}

TEST_F(Cli, CudaDeviceNeedsAGpu) {
  const fs::path dir = full_checkpoint();
  Result r = run("--model '" + dir.string() + "' --inspect");
  if (cuda_unavailable_reason().empty()) {
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("free memory of GPU 0"), std::string::npos) << r.out;
  } else {
    expect_one_line_error(r, 1, "no GPU for --device cuda");
    // Pages too (the default device is cuda).
    expect_one_line_error(run("--model '" + dir.string() + "' --image a.png"), 1,
                          "no GPU for --device cuda");
  }
}

}  // namespace
}  // namespace dsocr
