// config.json reader: the official DeepSeek-OCR v1 values are the only architecture dsocr runs, so
// every architecture key is checked against them; the few free numbers (rope_theta, eps, ids) are
// range-checked and stored.
#include "loader/config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <string_view>

#include "loader/safetensors.h"

namespace dsocr {

namespace {

using json = nlohmann::json;

constexpr const char* kV1Only = "dsocr supports DeepSeek-OCR v1 only";
constexpr uint64_t kMaxConfigBytes = 16ull << 20;

std::string kind(const json& j) {
  if (j.is_number_float()) return "a non-integer number";
  if (j.is_number_integer()) return "an integer";
  if (j.is_string()) return "a string";
  if (j.is_boolean()) return "a boolean";
  if (j.is_null()) return "null";
  if (j.is_array()) return "an array";
  if (j.is_object()) return "an object";
  return j.type_name();
}

std::string show(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Reads the keys of one object ("" = top level, "language_config." = nested) into a ModelConfig.
class Reader {
 public:
  Reader(const std::string& path, const json& obj, std::string prefix)
      : path_(path), obj_(obj), prefix_(std::move(prefix)) {}

  const json* get(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }

  Status type_error(const char* key, const json& v, const char* expected) const {
    return Status::Error(strfmt("%s: %s%s is %s (%s), expected %s", path_.c_str(), prefix_.c_str(),
                                key, kind(v).c_str(), show(v).c_str(), expected));
  }

  Status unsupported(const char* key, const json& v, const std::string& supported) const {
    return Status::Error(strfmt("%s: %s%s = %s, but dsocr supports %s only (%s)", path_.c_str(),
                                prefix_.c_str(), key, show(v).c_str(), supported.c_str(), kV1Only));
  }

  // An architecture number that must equal the official one.
  Status fixed_int(const char* key, int64_t official, int* out = nullptr) const {
    const json* v = get(key);
    if (!v) return Status::Ok();
    if (!v->is_number_integer()) return type_error(key, *v, "an integer");
    if (v->get<int64_t>() != official) return unsupported(key, *v, std::to_string(official));
    if (out) *out = static_cast<int>(official);
    return Status::Ok();
  }

  // Either null or the official integer (n_group, topk_group).
  Status null_or_int(const char* key, int64_t official) const {
    const json* v = get(key);
    if (!v || v->is_null()) return Status::Ok();
    if (!v->is_number_integer()) return type_error(key, *v, "null or an integer");
    if (v->get<int64_t>() != official)
      return unsupported(key, *v, "null or " + std::to_string(official));
    return Status::Ok();
  }

  Status fixed_bool(const char* key, bool official) const {
    const json* v = get(key);
    if (!v) return Status::Ok();
    if (!v->is_boolean()) return type_error(key, *v, "a boolean");
    if (v->get<bool>() != official) return unsupported(key, *v, official ? "true" : "false");
    return Status::Ok();
  }

  Status must_be_null(const char* key) const {
    const json* v = get(key);
    if (!v || v->is_null()) return Status::Ok();
    return unsupported(key, *v, "null");
  }

  Status fixed_string(const char* key, const char* official) const {
    const json* v = get(key);
    if (!v) return Status::Ok();
    if (!v->is_string()) return type_error(key, *v, "a string");
    if (v->get_ref<const std::string&>() != official)
      return unsupported(key, *v, std::string("\"") + official + "\"");
    return Status::Ok();
  }

  // A free integer within [lo, hi].
  Status ranged_int(const char* key, int64_t lo, int64_t hi, int* out) const {
    const json* v = get(key);
    if (!v) return Status::Ok();
    if (!v->is_number_integer()) return type_error(key, *v, "an integer");
    int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)
                    ? hi + 1
                    : v->get<int64_t>();
    if (x < lo || x > hi)
      return Status::Error(strfmt("%s: %s%s = %s is outside the sane range [%lld, %lld]",
                                  path_.c_str(), prefix_.c_str(), key, show(*v).c_str(),
                                  static_cast<long long>(lo), static_cast<long long>(hi)));
    *out = static_cast<int>(x);
    return Status::Ok();
  }

  // A free number within (lo, hi].
  Status ranged_float(const char* key, double lo, double hi, float* out) const {
    const json* v = get(key);
    if (!v) return Status::Ok();
    if (!v->is_number()) return type_error(key, *v, "a number");
    double x = v->get<double>();
    if (!std::isfinite(x) || x <= lo || x > hi)
      return Status::Error(strfmt("%s: %s%s = %s is outside the sane range (%g, %g]", path_.c_str(),
                                  prefix_.c_str(), key, show(*v).c_str(), lo, hi));
    *out = static_cast<float>(x);
    return Status::Ok();
  }

  Status read(ModelConfig* c) const {
    // Architecture: fixed by the checkpoint layout (MODEL.md §1.2).
    DSOCR_TRY(fixed_int("hidden_size", 1280, &c->dim));
    DSOCR_TRY(fixed_int("num_hidden_layers", 12, &c->n_layers));
    DSOCR_TRY(fixed_int("num_attention_heads", 10, &c->n_heads));
    DSOCR_TRY(fixed_int("num_key_value_heads", 10));
    DSOCR_TRY(fixed_int("head_dim", 128, &c->head_dim));
    DSOCR_TRY(fixed_int("intermediate_size", 6848, &c->dense_inter));
    DSOCR_TRY(fixed_int("moe_intermediate_size", 896, &c->moe_inter));
    DSOCR_TRY(fixed_int("n_routed_experts", 64, &c->n_experts));
    DSOCR_TRY(fixed_int("num_experts_per_tok", 6, &c->top_k));
    DSOCR_TRY(fixed_int("n_shared_experts", 2, &c->n_shared));
    DSOCR_TRY(fixed_int("first_k_dense_replace", 1, &c->first_dense));
    DSOCR_TRY(fixed_int("moe_layer_freq", 1));
    DSOCR_TRY(fixed_int("vocab_size", 129280, &c->vocab));
    DSOCR_TRY(null_or_int("n_group", 1));
    DSOCR_TRY(null_or_int("topk_group", 1));
    // Plain MHA with RoPE, softmax top-k routing without renormalisation.
    DSOCR_TRY(fixed_bool("use_mla", false));
    DSOCR_TRY(must_be_null("q_lora_rank"));
    DSOCR_TRY(must_be_null("kv_lora_rank"));
    DSOCR_TRY(must_be_null("rope_scaling"));
    DSOCR_TRY(fixed_string("topk_method", "greedy"));
    DSOCR_TRY(fixed_string("scoring_func", "softmax"));
    DSOCR_TRY(fixed_string("hidden_act", "silu"));
    DSOCR_TRY(fixed_bool("norm_topk_prob", false));
    DSOCR_TRY(fixed_bool("attention_bias", false));
    DSOCR_TRY(fixed_bool("tie_word_embeddings", false));
    // Free numbers.
    DSOCR_TRY(ranged_float("rope_theta", 0.0, 1e9, &c->rope_theta));
    DSOCR_TRY(ranged_float("rms_norm_eps", 0.0, 1e-2, &c->rms_eps));
    DSOCR_TRY(ranged_float("routed_scaling_factor", 0.0, 1e3, &c->routed_scale));
    DSOCR_TRY(ranged_int("max_position_embeddings", 1, 1 << 20, &c->max_pos));
    DSOCR_TRY(ranged_int("bos_token_id", 0, c->vocab - 1, &c->bos_id));
    DSOCR_TRY(ranged_int("eos_token_id", 0, c->vocab - 1, &c->eos_id));
    return Status::Ok();
  }

 private:
  const std::string& path_;
  const json& obj_;
  std::string prefix_;
};

// Every key read above: "language_config" must agree with the top level on each of them.
constexpr const char* kCheckedKeys[] = {"hidden_size",
                                        "num_hidden_layers",
                                        "num_attention_heads",
                                        "num_key_value_heads",
                                        "head_dim",
                                        "intermediate_size",
                                        "moe_intermediate_size",
                                        "n_routed_experts",
                                        "num_experts_per_tok",
                                        "n_shared_experts",
                                        "first_k_dense_replace",
                                        "moe_layer_freq",
                                        "vocab_size",
                                        "n_group",
                                        "topk_group",
                                        "use_mla",
                                        "q_lora_rank",
                                        "kv_lora_rank",
                                        "rope_scaling",
                                        "topk_method",
                                        "scoring_func",
                                        "hidden_act",
                                        "norm_topk_prob",
                                        "attention_bias",
                                        "tie_word_embeddings",
                                        "rope_theta",
                                        "rms_norm_eps",
                                        "routed_scaling_factor",
                                        "max_position_embeddings",
                                        "bos_token_id",
                                        "eos_token_id"};

Status check_projector(const std::string& path, const json& root, ModelConfig* c) {
  auto it = root.find("projector_config");
  if (it == root.end()) return Status::Ok();
  if (!it->is_object())
    return Status::Error(
        strfmt("%s: projector_config is %s, expected an object", path.c_str(), kind(*it).c_str()));
  Reader r(path, *it, "projector_config.");
  DSOCR_TRY(r.fixed_int("input_dim", 2048, &c->proj_in));
  DSOCR_TRY(r.fixed_int("n_embed", 1280, &c->proj_out));
  DSOCR_TRY(r.fixed_string("projector_type", "linear"));
  return Status::Ok();
}

}  // namespace

Expected<ModelConfig> parse_config(const std::string& json_text, const std::string& path) {
  DSOCR_ASSIGN_OR_RETURN(json root, parse_json_strict(json_text, path, 16));
  if (!root.is_object())
    return Status::Error(path + ": top level is " + kind(root) + ", expected a JSON object");
  ModelConfig c;
  DSOCR_TRY(Reader(path, root, "").read(&c));
  DSOCR_TRY(check_projector(path, root, &c));

  auto lc = root.find("language_config");
  if (lc != root.end()) {
    if (!lc->is_object())
      return Status::Error(
          strfmt("%s: language_config is %s, expected an object", path.c_str(), kind(*lc).c_str()));
    ModelConfig nested;
    DSOCR_TRY(Reader(path, *lc, "language_config.").read(&nested));
    for (const char* key : kCheckedKeys) {
      auto a = root.find(key), b = lc->find(key);
      if (a != root.end() && b != lc->end() && *a != *b)
        return Status::Error(
            strfmt("%s: language_config.%s = %s disagrees with top-level %s = %s; "
                   "fix one of them",
                   path.c_str(), key, show(*b).c_str(), key, show(*a).c_str()));
    }
  }
  return c;
}

Expected<ModelConfig> load_config(const std::string& path) {
  DSOCR_ASSIGN_OR_RETURN(MappedFile m, MappedFile::open(path));
  if (m.size() > kMaxConfigBytes)
    return Status::Error(strfmt("%s: %zu bytes, larger than the %llu-byte limit for config.json",
                                path.c_str(), m.size(),
                                static_cast<unsigned long long>(kMaxConfigBytes)));
  return parse_config(std::string(reinterpret_cast<const char*>(m.data()), m.size()), path);
}

// The official config.json, byte for byte (2666 bytes, git blob
// 0bc764cb729cfad6649038ce3b5fa6c29e0c5b34; MODEL.md §1.1).
std::string official_config_json() {
  return R"JSON({
 "_name_or_path": "deepseek-ai/DeepSeek-OCR",
  "candidate_resolutions": [
  [
   1024,
   1024
  ]
 ],
 "global_view_pos": "head",
  "architectures": [
      "DeepseekOCRForCausalLM"
    ],
  "auto_map": {
    "AutoConfig": "modeling_deepseekocr.DeepseekOCRConfig",
    "AutoModel": "modeling_deepseekocr.DeepseekOCRForCausalLM"
  },
 "language_config": {
    "architectures": [
      "DeepseekV2ForCausalLM"
    ],
    "auto_map": {
      "AutoConfig": "configuration_deepseekv2.DeepseekV2Config",
      "AutoModel": "modeling_deepseek.DeepseekV2Model",
      "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"
    },
    "bos_token_id": 0,
    "eos_token_id": 1,
    "first_k_dense_replace": 1,
    "hidden_size": 1280,
    "intermediate_size": 6848,
    "kv_lora_rank": null,
    "lm_head": true,
    "max_position_embeddings": 8192,
    "moe_intermediate_size": 896,
    "n_group": 1,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_attention_heads": 10,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 12,
    "num_key_value_heads": 10,
    "q_lora_rank": null,
    "qk_nope_head_dim": 0,
    "qk_rope_head_dim": 0,
    "rm_head": false,
    "topk_group": 1,
    "topk_method": "greedy",
    "torch_dtype": "bfloat16",
    "use_mla": false,
    "v_head_dim": 0,
    "vocab_size": 129280
  },
 "model_type": "deepseek_vl_v2",
 "projector_config": {
  "input_dim": 2048,
  "model_type": "mlp_projector",
  "n_embed": 1280,
  "projector_type": "linear"
 },
 "tile_tag": "2D",
 "torch_dtype": "bfloat16",
 "transformers_version": "4.46.3",
 "vision_config": {
  "image_size": 1024,
  "mlp_ratio": 3.7362,
  "model_name": "deeplip_b_l",
  "model_type": "vision",
  "width": {
   "clip-l-14-224": {
    "heads": 16,
    "image_size": 224,
    "layers": 24,
    "patch_size": 14,
    "width": 1024
   },
   "sam_vit_b": {
    "downsample_channels": [
     512,
     1024
    ],
    "global_attn_indexes": [
     2,
     5,
     8,
     11
    ],
    "heads": 12,
    "layers": 12,
    "width": 768
   }
  }
 },
  "bos_token_id": 0,
  "eos_token_id": 1,
  "first_k_dense_replace": 1,
  "hidden_size": 1280,
  "intermediate_size": 6848,
  "kv_lora_rank": null,
  "lm_head": true,
  "max_position_embeddings": 8192,
  "moe_intermediate_size": 896,
  "n_group": 1,
  "n_routed_experts": 64,
  "n_shared_experts": 2,
  "num_attention_heads": 10,
  "num_experts_per_tok": 6,
  "num_hidden_layers": 12,
  "num_key_value_heads": 10,
  "q_lora_rank": null,
  "qk_nope_head_dim": 0,
  "qk_rope_head_dim": 0,
  "rm_head": false,
  "topk_group": 1,
  "topk_method": "greedy",
  "use_mla": false,
  "v_head_dim": 0,
  "vocab_size": 129280
})JSON";
}

}  // namespace dsocr
