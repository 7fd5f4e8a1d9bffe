// checkpoint_schema against the golden checksum file (names, order, shapes), its totals and
// per-class counts, its dependence on the config, and validate_checkpoint on crafted checkpoints.
#include "loader/schema.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "loader/config.h"
#include "loader/safetensors.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

ModelConfig official_config() {
  auto cfg = parse_config(official_config_json(), "config.json");
  EXPECT_TRUE(cfg.ok()) << cfg.message();
  return cfg.ok() ? *cfg : ModelConfig{};
}

TEST(Schema, EqualsGoldenChecksumFile) {
  std::ifstream f(std::string(DSOCR_GOLDEN_DIR) + "/synth1_seed1_checksums.json");
  ASSERT_TRUE(f) << "cannot read " DSOCR_GOLDEN_DIR "/synth1_seed1_checksums.json";
  std::stringstream ss;
  ss << f.rdbuf();
  // ordered_json keeps the file's order, which is the official state_dict order.
  const nlohmann::ordered_json golden = nlohmann::ordered_json::parse(ss.str())["tensors"];
  const std::vector<TensorSpec> schema = checkpoint_schema(official_config());
  ASSERT_EQ(schema.size(), 2710u);
  ASSERT_EQ(golden.size(), schema.size());
  size_t k = 0;
  for (auto it = golden.begin(); it != golden.end(); ++it, ++k) {
    EXPECT_EQ(schema[k].name, it.key()) << "position " << k;
    EXPECT_EQ(schema[k].shape, (*it)["shape"].get<std::vector<int64_t>>()) << it.key();
    EXPECT_EQ(schema[k].dtype, DType::BF16) << it.key();
  }
}

TEST(Schema, TotalsAndClasses) {
  const std::vector<TensorSpec> schema = checkpoint_schema(official_config());
  std::map<TensorClass, int> count;
  std::map<TensorClass, int64_t> params;
  int64_t total = 0;
  for (const TensorSpec& s : schema) {
    ++count[s.cls];
    params[s.cls] += s.numel();
    total += s.numel();
  }
  EXPECT_EQ(total, 3336106240);  // 6,672,212,480 bytes of BF16 (golden README)
  EXPECT_EQ(count[TensorClass::kRoutedExpert], 11 * 64 * 3);
  EXPECT_EQ(count[TensorClass::kSharedExpert], 11 * 3);
  EXPECT_EQ(count[TensorClass::kRouter], 11);
  EXPECT_EQ(count[TensorClass::kDenseMlp], 3);
  EXPECT_EQ(count[TensorClass::kAttn], 12 * 4);
  EXPECT_EQ(count[TensorClass::kNorm], 12 * 2 + 1);
  EXPECT_EQ(count[TensorClass::kEmbed], 1);
  EXPECT_EQ(count[TensorClass::kLmHead], 1);
  EXPECT_EQ(count[TensorClass::kSam], 3 + 12 * 14 + 8);
  EXPECT_EQ(count[TensorClass::kClip], 3 + 24 * 12 + 2);
  EXPECT_EQ(count[TensorClass::kProjector], 4);
  // Parameter split of MODEL.md §2.2.
  EXPECT_EQ(params[TensorClass::kSam], 95569152);
  EXPECT_EQ(params[TensorClass::kClip], 303177728);
  EXPECT_EQ(params[TensorClass::kProjector], 2625280);
  int64_t lm = 0;
  for (TensorClass c : {TensorClass::kEmbed, TensorClass::kLmHead, TensorClass::kNorm,
                        TensorClass::kAttn, TensorClass::kDenseMlp, TensorClass::kRouter,
                        TensorClass::kSharedExpert, TensorClass::kRoutedExpert})
    lm += params[c];
  EXPECT_EQ(lm, 2934734080);
  for (const TensorSpec& s : schema) EXPECT_STRNE(tensor_class_name(s.cls), "?");
}

// `linear` marks exactly the nn.Linear weights (what quantization may touch): 2-D [out, in],
// named *.weight; never a bias, norm, embedding table, positional table or convolution.
TEST(Schema, LinearWeights) {
  const std::vector<TensorSpec> schema = checkpoint_schema(official_config());
  std::map<TensorClass, int> count;
  for (const TensorSpec& s : schema) {
    if (!s.linear) continue;
    ++count[s.cls];
    EXPECT_EQ(s.shape.size(), 2u) << s.name;
    EXPECT_TRUE(s.name.ends_with(".weight")) << s.name;
  }
  EXPECT_EQ(count[TensorClass::kSam], 12 * 4);   // qkv, proj, lin1, lin2
  EXPECT_EQ(count[TensorClass::kClip], 24 * 4);  // qkv_proj, out_proj, fc1, fc2
  EXPECT_EQ(count[TensorClass::kProjector], 1);
  EXPECT_EQ(count[TensorClass::kAttn], 12 * 4);
  EXPECT_EQ(count[TensorClass::kDenseMlp], 3);
  EXPECT_EQ(count[TensorClass::kRoutedExpert], 11 * 64 * 3);
  EXPECT_EQ(count[TensorClass::kSharedExpert], 11 * 3);
  EXPECT_EQ(count[TensorClass::kRouter], 11);
  EXPECT_EQ(count[TensorClass::kLmHead], 1);
  EXPECT_EQ(count[TensorClass::kEmbed], 0);
  EXPECT_EQ(count[TensorClass::kNorm], 0);
  for (const TensorSpec& s : schema) {
    const bool table = s.name.find("pos") != std::string::npos ||
                       s.name.find("embed") != std::string::npos || s.shape.size() != 2;
    if (table) {
      EXPECT_FALSE(s.linear) << s.name;
    }
  }
}

// The list follows the config: a smaller model gives a smaller list, by the same rules.
TEST(Schema, DerivedFromConfig) {
  ModelConfig cfg = official_config();
  cfg.n_layers = 3;
  cfg.first_dense = 1;
  cfg.n_experts = 4;
  cfg.moe_inter = 32;
  cfg.n_shared = 1;
  cfg.sam.depth = 4;
  cfg.sam.global_blocks = {1, 3, 99, 99};
  cfg.clip.depth = 2;
  const std::vector<TensorSpec> schema = checkpoint_schema(cfg);
  std::map<std::string, std::vector<int64_t>> by_name;
  std::map<TensorClass, int> count;
  for (const TensorSpec& s : schema) {
    by_name[s.name] = s.shape;
    ++count[s.cls];
  }
  EXPECT_EQ(count[TensorClass::kRoutedExpert], 2 * 4 * 3);
  EXPECT_EQ(count[TensorClass::kSam], 3 + 4 * 14 + 8);
  EXPECT_EQ(count[TensorClass::kClip], 3 + 2 * 12 + 2);
  EXPECT_EQ(by_name.count("model.layers.3.input_layernorm.weight"), 0u);
  EXPECT_EQ(by_name.count("model.layers.1.mlp.experts.4.up_proj.weight"), 0u);
  EXPECT_EQ(by_name["model.layers.2.mlp.experts.3.down_proj.weight"],
            (std::vector<int64_t>{1280, 32}));
  EXPECT_EQ(by_name["model.layers.2.mlp.shared_experts.up_proj.weight"],
            (std::vector<int64_t>{32, 1280}));
  EXPECT_EQ(by_name["model.layers.0.mlp.down_proj.weight"], (std::vector<int64_t>{1280, 6848}));
  EXPECT_EQ(by_name["model.sam_model.blocks.0.attn.rel_pos_h"], (std::vector<int64_t>{27, 64}));
  EXPECT_EQ(by_name["model.sam_model.blocks.1.attn.rel_pos_w"], (std::vector<int64_t>{127, 64}));
  EXPECT_EQ(by_name["model.sam_model.blocks.2.attn.rel_pos_w"], (std::vector<int64_t>{27, 64}));
}

// ---------------------------------------------------------------------------------------------
// validate_checkpoint on crafted checkpoint directories.

class Validate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("dsocr_schema_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A small schema in the official naming (first tensors of the real one, shapes cut down).
  static std::vector<TensorSpec> small_schema() {
    std::vector<TensorSpec> s;
    for (int i = 0; i < 4; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      s.push_back({p + "self_attn.q_proj.weight", {8, 8}, DType::BF16, TensorClass::kAttn});
      s.push_back({p + "input_layernorm.weight", {8}, DType::BF16, TensorClass::kNorm});
    }
    return s;
  }

  // Write `tensors` as the directory's one .safetensors file (data: zeros; a sparse file, so the
  // full 6.7 GB schema costs no disk). Returns false on failure.
  bool write(std::vector<TensorInfo> tensors) {
    auto header = try_build_safetensors_header(tensors);
    EXPECT_TRUE(header.ok()) << header.message();
    if (!header.ok()) return false;
    uint64_t size = header->size();
    for (const TensorInfo& t : tensors) size += t.nbytes;
    const std::string path = (dir_ / "model.safetensors").string();
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return false;
    bool ok = ::write(fd, header->data(), header->size()) == static_cast<ssize_t>(header->size()) &&
              ::ftruncate(fd, static_cast<off_t>(size)) == 0;
    ::close(fd);
    return ok;
  }

  Status validate(const std::vector<TensorSpec>& schema) {
    auto ckpt = Checkpoint::open_dir(dir_.string());
    if (!ckpt.ok()) return ckpt.status();
    return validate_checkpoint(*ckpt, schema);
  }

  fs::path dir_;
};

TEST_F(Validate, MatchingCheckpointPasses) {
  const auto schema = small_schema();
  ASSERT_TRUE(write(schema_tensor_infos(schema)));
  Status s = validate(schema);
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST_F(Validate, EveryProblemNamedInOneMessage) {
  const auto schema = small_schema();
  std::vector<TensorInfo> t = schema_tensor_infos(schema);
  t.erase(t.begin() + 1);   // missing: layers.0.input_layernorm
  t[1].shape = {8, 4};      // wrong shape: layers.1.q_proj
  t[2].dtype = DType::F32;  // wrong dtype: layers.1.input_layernorm
  t.push_back({"model.layers.0.mlp.gate.weight", DType::BF16, {4, 8}});  // unexpected
  ASSERT_TRUE(write(t));
  Status s = validate(schema);
  ASSERT_FALSE(s.ok());
  const std::string& m = s.message();
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_NE(m.find(dir_.string()), std::string::npos) << m;
  EXPECT_NE(m.find("missing model.layers.0.input_layernorm.weight (BF16 [8])"), std::string::npos)
      << m;
  EXPECT_NE(m.find("model.layers.1.self_attn.q_proj.weight: shape [8,4], expected [8,8]"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("model.layers.1.input_layernorm.weight: dtype F32, expected BF16"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("unexpected model.layers.0.mlp.gate.weight (BF16 [4,8])"), std::string::npos)
      << m;
  EXPECT_NE(m.find("1 missing, 1 unexpected, 1 with a wrong shape, 1 with a wrong dtype"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("re-download it or regenerate it with dsocr-synth"), std::string::npos) << m;
}

// The full official schema against a sparse file of the official layout: passes as is; with many
// problems the message lists the first 20 and counts the rest.
TEST_F(Validate, FullSchemaAndCap) {
  const auto schema = checkpoint_schema(official_config());
  std::vector<TensorInfo> t = schema_tensor_infos(schema);
  ASSERT_TRUE(write(t));
  Status ok = validate(schema);
  EXPECT_TRUE(ok.ok()) << ok.message();

  for (int i = 0; i < 30; ++i) t[t.size() - 1 - i].name += ".renamed";  // 30 missing + 30 extra
  ASSERT_TRUE(write(t));
  Status s = validate(schema);
  ASSERT_FALSE(s.ok());
  const std::string& m = s.message();
  EXPECT_NE(m.find("30 missing, 30 unexpected"), std::string::npos) << m;
  EXPECT_NE(m.find("missing " + schema[schema.size() - 30].name), std::string::npos) << m;
  EXPECT_EQ(m.find("missing lm_head.weight"), std::string::npos) << m;  // 30th problem: cut
  EXPECT_NE(m.find("; and 40 more."), std::string::npos) << m;
  EXPECT_LT(m.size(), 4000u) << m;
}

}  // namespace
}  // namespace dsocr
