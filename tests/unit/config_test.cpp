// config.json: official values and defaults, and every way a config can contradict what dsocr
// runs (a different architecture, MLA, another router, wrong JSON types).
#include "loader/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace dsocr {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kPath = "some/dir/config.json";

void expect_official(const ModelConfig& c) {
  EXPECT_EQ(c.dim, 1280);
  EXPECT_EQ(c.n_layers, 12);
  EXPECT_EQ(c.n_heads, 10);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.dense_inter, 6848);
  EXPECT_EQ(c.moe_inter, 896);
  EXPECT_EQ(c.n_experts, 64);
  EXPECT_EQ(c.top_k, 6);
  EXPECT_EQ(c.n_shared, 2);
  EXPECT_EQ(c.shared_inter(), 1792);
  EXPECT_EQ(c.first_dense, 1);
  EXPECT_EQ(c.vocab, 129280);
  EXPECT_EQ(c.max_pos, 8192);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.f);
  EXPECT_FLOAT_EQ(c.routed_scale, 1.f);
  EXPECT_EQ(c.bos_id, 0);
  EXPECT_EQ(c.eos_id, 1);
  EXPECT_EQ(c.proj_in, 2048);
  EXPECT_EQ(c.proj_out, 1280);
}

// The official config with `key` (top level, and in language_config when it is there) set.
std::string official_with(const std::string& key, const json& value) {
  json j = json::parse(official_config_json());
  j[key] = value;
  if (j["language_config"].contains(key)) j["language_config"][key] = value;
  return j.dump();
}

// parse_config fails with a one-line message holding the path and every one of `parts`.
void expect_error(const std::string& text, std::initializer_list<std::string> parts) {
  auto r = parse_config(text, kPath);
  ASSERT_FALSE(r.ok()) << "accepted: " << text.substr(0, 200);
  EXPECT_NE(r.message().find(kPath), std::string::npos) << r.message();
  for (const auto& p : parts) EXPECT_NE(r.message().find(p), std::string::npos) << r.message();
  EXPECT_EQ(r.message().find('\n'), std::string::npos) << r.message();
}

TEST(Config, Defaults) {
  auto r = parse_config("{}", kPath);
  ASSERT_TRUE(r.ok()) << r.message();
  expect_official(*r);
}

TEST(Config, OfficialJson) {
  std::string text = official_config_json();
  EXPECT_EQ(text.size(), 2666u);  // MODEL.md §1.1
  auto r = parse_config(text, kPath);
  ASSERT_TRUE(r.ok()) << r.message();
  expect_official(*r);
  json j = json::parse(text);
  ASSERT_TRUE(j.contains("language_config"));
  EXPECT_EQ(j["language_config"]["hidden_size"], 1280);
  EXPECT_EQ(j["model_type"], "deepseek_vl_v2");
  EXPECT_EQ(j["vision_config"]["width"]["sam_vit_b"]["global_attn_indexes"],
            json::parse("[2,5,8,11]"));
  EXPECT_TRUE(j["kv_lora_rank"].is_null());
  // Re-serialised, it still parses to the same config.
  auto again = parse_config(j.dump(2), kPath);
  ASSERT_TRUE(again.ok()) << again.message();
  expect_official(*again);
}

TEST(Config, LoadFromFile) {
  fs::path dir = fs::temp_directory_path() / ("dsocr_cfg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string p = (dir / "config.json").string();
  std::ofstream(p) << official_with("rope_theta", 1000000.0);
  auto r = load_config(p);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_FLOAT_EQ(r->rope_theta, 1e6f);
  auto missing = load_config((dir / "absent.json").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("absent.json: no such file"), std::string::npos)
      << missing.message();
  auto isdir = load_config(dir.string());
  ASSERT_FALSE(isdir.ok());
  EXPECT_NE(isdir.message().find("is a directory"), std::string::npos) << isdir.message();
  std::ofstream(p) << "{\"hidden_size\": 1024}";
  auto bad = load_config(p);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find(p + ": hidden_size = 1024"), std::string::npos) << bad.message();
  fs::remove_all(dir);
}

TEST(Config, InvalidJson) {
  expect_error("{\"hidden_size\": ", {"invalid JSON"});
  expect_error("", {"invalid JSON"});
  expect_error("[1280]", {"expected a JSON object"});
  expect_error("{\"hidden_size\":1280,\"hidden_size\":1280}", {"duplicate key", "hidden_size"});
}

TEST(Config, WrongHiddenSize) {
  expect_error(R"({"hidden_size": 2048})", {"hidden_size", "2048", "1280", "DeepSeek-OCR v1 only"});
}

// Every architecture number: the official value plus one is refused, naming key and both values.
TEST(Config, EveryFixedNumber) {
  const std::pair<const char*, int> fixed[] = {{"hidden_size", 1280},
                                               {"num_hidden_layers", 12},
                                               {"num_attention_heads", 10},
                                               {"num_key_value_heads", 10},
                                               {"intermediate_size", 6848},
                                               {"moe_intermediate_size", 896},
                                               {"n_routed_experts", 64},
                                               {"num_experts_per_tok", 6},
                                               {"n_shared_experts", 2},
                                               {"first_k_dense_replace", 1},
                                               {"vocab_size", 129280},
                                               {"moe_layer_freq", 1},
                                               {"head_dim", 128}};
  for (const auto& [key, value] : fixed) {
    EXPECT_TRUE(parse_config(official_with(key, value), kPath).ok()) << key;
    expect_error(official_with(key, value + 1),
                 {key, std::to_string(value), std::to_string(value + 1), "v1 only"});
  }
}

TEST(Config, UnsupportedVariants) {
  expect_error(R"({"use_mla": true})", {"use_mla", "true", "false"});
  expect_error(R"({"q_lora_rank": 1536})", {"q_lora_rank", "1536", "null"});
  expect_error(R"({"kv_lora_rank": 512})", {"kv_lora_rank", "512", "null"});
  expect_error(R"({"topk_method": "noaux_tc"})", {"topk_method", "noaux_tc", "greedy"});
  expect_error(R"({"scoring_func": "sigmoid"})", {"scoring_func", "sigmoid", "softmax"});
  expect_error(R"({"norm_topk_prob": true})", {"norm_topk_prob", "true"});
  expect_error(R"({"n_group": 8})", {"n_group", "8"});
  expect_error(R"({"topk_group": 4})", {"topk_group", "4"});
  expect_error(R"({"rope_scaling": {"type": "yarn", "factor": 40}})", {"rope_scaling", "null"});
  expect_error(R"({"hidden_act": "gelu"})", {"hidden_act", "gelu", "silu"});
  expect_error(R"({"attention_bias": true})", {"attention_bias"});
  expect_error(R"({"tie_word_embeddings": true})", {"tie_word_embeddings"});
  expect_error(R"({"projector_config": {"input_dim": 896}})",
               {"projector_config.input_dim", "896", "2048"});
  // Accepted spellings of the official values.
  EXPECT_TRUE(parse_config(R"({"n_group": null, "topk_group": null, "rope_scaling": null,
                               "use_mla": false, "norm_topk_prob": false})",
                           kPath)
                  .ok());
}

TEST(Config, WrongTypes) {
  expect_error(R"({"hidden_size": "1280"})", {"hidden_size", "a string", "expected an integer"});
  expect_error(R"({"hidden_size": 1280.0})", {"hidden_size", "non-integer"});
  expect_error(R"({"use_mla": 0})", {"use_mla", "expected a boolean"});
  expect_error(R"({"topk_method": 1})", {"topk_method", "expected a string"});
  expect_error(R"({"rope_theta": "1e4"})", {"rope_theta", "expected a number"});
  expect_error(R"({"n_group": "1"})", {"n_group", "null or an integer"});
  expect_error(R"({"language_config": [1]})", {"language_config", "expected an object"});
  expect_error(R"({"projector_config": 3})", {"projector_config", "expected an object"});
}

TEST(Config, FreeNumbersStoredAndRanged) {
  auto r = parse_config(R"({"rope_theta": 500000, "rms_norm_eps": 1e-5,
                            "max_position_embeddings": 32768, "routed_scaling_factor": 2.5,
                            "bos_token_id": 3, "eos_token_id": 4})",
                        kPath);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_FLOAT_EQ(r->rope_theta, 5e5f);
  EXPECT_FLOAT_EQ(r->rms_eps, 1e-5f);
  EXPECT_EQ(r->max_pos, 32768);
  EXPECT_FLOAT_EQ(r->routed_scale, 2.5f);
  EXPECT_EQ(r->bos_id, 3);
  EXPECT_EQ(r->eos_id, 4);
  expect_error(R"({"rope_theta": -1})", {"rope_theta", "-1", "range"});
  expect_error(R"({"rope_theta": 0})", {"rope_theta", "range"});
  expect_error(R"({"rms_norm_eps": 0.5})", {"rms_norm_eps", "range"});
  expect_error(R"({"max_position_embeddings": 0})", {"max_position_embeddings", "range"});
  expect_error(R"({"max_position_embeddings": 18446744073709551615})",
               {"max_position_embeddings", "range"});
  expect_error(R"({"eos_token_id": 129280})", {"eos_token_id", "129280", "range"});
  expect_error(R"({"bos_token_id": -1})", {"bos_token_id", "range"});
  expect_error(R"({"routed_scaling_factor": 1e300})", {"routed_scaling_factor", "range"});
}

TEST(Config, LanguageConfigMustAgree) {
  json j = json::parse(official_config_json());
  j["language_config"]["max_position_embeddings"] = 4096;
  expect_error(j.dump(), {"language_config.max_position_embeddings", "4096", "8192", "disagrees"});
  // Contradictions inside language_config alone are caught with its prefix.
  json k = json::parse(official_config_json());
  k["language_config"]["use_mla"] = true;
  k.erase("use_mla");
  expect_error(k.dump(), {"language_config.use_mla"});
  // 1 and 1.0 are the same number.
  json m = json::parse(official_config_json());
  m["rope_theta"] = 10000;
  m["language_config"]["rope_theta"] = 10000.0;
  EXPECT_TRUE(parse_config(m.dump(), kPath).ok());
}

}  // namespace
}  // namespace dsocr
