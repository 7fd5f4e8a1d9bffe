// DeepSeek-OCR weights bound by name into plain structs (one field per checkpoint tensor).
//
// The same structs serve every backend: the CPU backend binds pointers into the mapped checkpoint,
// the CUDA backend binds pointers into the device pool. All tensors are BF16 (uint16_t bit
// patterns). Shapes in the comments use the checkpoint's (PyTorch) order; ../shared/MODEL.md §2.2.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "loader/config.h"
#include "kernels/swiglu.h"  // MlpWeights {gate, up, down}
#include "loader/status.h"

namespace dsocr {

using bf16_t = uint16_t;  // BF16 bit pattern

struct SamBlockWeights {
  const bf16_t* norm1_w;  // [768]
  const bf16_t* norm1_b;  // [768]
  const bf16_t* qkv_w;    // [2304, 768]
  const bf16_t* qkv_b;    // [2304]
  const bf16_t* proj_w;   // [768, 768]
  const bf16_t* proj_b;   // [768]
  const bf16_t* rel_h;    // [rel_len, 64]
  const bf16_t* rel_w;    // [rel_len, 64]
  int rel_len;            // 27 (window blocks) or 127 (global blocks)
  bool global;            // blocks 2, 5, 8, 11
  const bf16_t* norm2_w;  // [768]
  const bf16_t* norm2_b;  // [768]
  const bf16_t* lin1_w;   // [3072, 768]
  const bf16_t* lin1_b;   // [3072]
  const bf16_t* lin2_w;   // [768, 3072]
  const bf16_t* lin2_b;   // [768]
};

struct SamWeights {
  const bf16_t* patch_w;    // [768, 3, 16, 16]
  const bf16_t* patch_b;    // [768]
  const bf16_t* pos_embed;  // [1, 64, 64, 768] NHWC
  std::vector<SamBlockWeights> blocks;  // 12
  const bf16_t* neck0_w;    // [256, 768, 1, 1]
  const bf16_t* neck1_w;    // [256] LayerNorm2d
  const bf16_t* neck1_b;    // [256]
  const bf16_t* neck2_w;    // [256, 256, 3, 3]
  const bf16_t* neck3_w;    // [256] LayerNorm2d
  const bf16_t* neck3_b;    // [256]
  const bf16_t* net2_w;     // [512, 256, 3, 3]
  const bf16_t* net3_w;     // [1024, 512, 3, 3]
};

struct ClipLayerWeights {
  const bf16_t* ln1_w;  // [1024]
  const bf16_t* ln1_b;  // [1024]
  const bf16_t* qkv_w;  // [3072, 1024]
  const bf16_t* qkv_b;  // [3072]
  const bf16_t* out_w;  // [1024, 1024]
  const bf16_t* out_b;  // [1024]
  const bf16_t* ln2_w;  // [1024]
  const bf16_t* ln2_b;  // [1024]
  const bf16_t* fc1_w;  // [4096, 1024]
  const bf16_t* fc1_b;  // [4096]
  const bf16_t* fc2_w;  // [1024, 4096]
  const bf16_t* fc2_b;  // [1024]
};

struct ClipWeights {
  const bf16_t* class_emb;  // [1024]
  const bf16_t* pos_emb;    // [257, 1024]
  const bf16_t* pre_ln_w;   // [1024]
  const bf16_t* pre_ln_b;   // [1024]
  std::vector<ClipLayerWeights> layers;  // 24
};

struct ProjectorWeights {
  const bf16_t* w;              // [1280, 2048]
  const bf16_t* b;              // [1280]
  const bf16_t* image_newline;  // [1280]
  const bf16_t* view_sep;       // [1280]
};

struct DecoderLayerWeights {
  const bf16_t* in_norm;    // [1280]
  const bf16_t* post_norm;  // [1280]
  const bf16_t* q;          // [1280, 1280]
  const bf16_t* k;          // [1280, 1280]
  const bf16_t* v;          // [1280, 1280]
  const bf16_t* o;          // [1280, 1280]
  bool moe;                 // layers >= first_dense
  MlpWeights dense;         // layer 0: gate/up [6848, 1280], down [1280, 6848]; unset for MoE
  const bf16_t* router;     // [64, 1280] MoE layers
  std::vector<MlpWeights> experts;  // 64 routed: gate/up [896, 1280], down [1280, 896]
  MlpWeights shared;        // the 2 shared experts fused: gate/up [1792, 1280], down [1280, 1792]
};

struct DecoderWeights {
  const bf16_t* embed;       // [129280, 1280]
  const bf16_t* final_norm;  // [1280]
  const bf16_t* lm_head;     // [129280, 1280]
  std::vector<DecoderLayerWeights> layers;  // 12
};

struct ModelWeights {
  SamWeights sam;
  ClipWeights clip;
  ProjectorWeights proj;
  DecoderWeights dec;
};

// Binds every field through `lookup(name)`, which returns the tensor's data (host or device) or
// null when absent. Fails with one message naming every tensor the lookup did not find.
// Shapes and dtypes are the schema's job (validate_checkpoint) and are not rechecked here.
Expected<ModelWeights> bind_weights(const ModelConfig& cfg,
                                    const std::function<const void*(const std::string&)>& lookup);

}  // namespace dsocr
