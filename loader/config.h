// config.json of a DeepSeek-OCR checkpoint: the fields dsocr needs, with the official defaults
// (../shared/MODEL.md §1). The HF code reads the top-level keys; "language_config" must agree with
// them where present. The vision tower is hard-coded in the official code, so its shape lives here
// as constants, not as config fields.
#pragma once

#include <array>
#include <string>

#include "loader/status.h"

namespace dsocr {

struct SamConfig {
  int img_size = 1024;  // size the pos_embed table was trained at (64x64 patches)
  int patch = 16;
  int dim = 768;
  int depth = 12;
  int n_heads = 12;  // head_dim 64
  int mlp_dim = 3072;
  int window = 14;
  std::array<int, 4> global_blocks = {2, 5, 8, 11};
  int neck_dim = 256;
  int net2_dim = 512;
  int net3_dim = 1024;
  float ln_eps = 1e-6f;
};

struct ClipConfig {
  int dim = 1024;
  int depth = 24;
  int n_heads = 16;  // head_dim 64
  int mlp_dim = 4096;
  int pos_grid = 16;  // 16x16 patch positions + CLS = 257
  int patch = 14;     // CLIP's own (unused) patch conv
  float ln_eps = 1e-5f;
};

struct ModelConfig {
  // Language model (DeepSeek-V2 MoE, MHA).
  int dim = 1280;          // hidden_size
  int n_layers = 12;       // num_hidden_layers
  int n_heads = 10;        // num_attention_heads (== num_key_value_heads)
  int head_dim = 128;      // dim / n_heads
  int dense_inter = 6848;  // intermediate_size (layer 0)
  int moe_inter = 896;     // moe_intermediate_size
  int n_experts = 64;      // n_routed_experts
  int top_k = 6;           // num_experts_per_tok
  int n_shared = 2;        // n_shared_experts (fused: shared inter = 2 * 896)
  int first_dense = 1;     // first_k_dense_replace
  int vocab = 129280;      // vocab_size
  int max_pos = 8192;      // max_position_embeddings
  float rms_eps = 1e-6f;
  float rope_theta = 10000.f;
  float routed_scale = 1.f;  // routed_scaling_factor
  int bos_id = 0;
  int eos_id = 1;
  int image_token_id = 128815;

  SamConfig sam;
  ClipConfig clip;
  int proj_in = 2048;   // projector_config.input_dim
  int proj_out = 1280;  // projector_config.n_embed

  int shared_inter() const { return moe_inter * n_shared; }
};

// Parse config.json text. Missing keys take the official defaults; a key that contradicts what
// dsocr supports (use_mla true, a different hidden size, rope scaling, norm_topk_prob true,
// topk_method other than greedy, ...) is an error naming the file, the key, its value and the
// supported value.
Expected<ModelConfig> parse_config(const std::string& json_text, const std::string& path);
Expected<ModelConfig> load_config(const std::string& path);

// The config.json dsocr-synth writes: the official keys, with the official values.
std::string official_config_json();

}  // namespace dsocr
