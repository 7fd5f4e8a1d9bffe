// The expected tensor list of a DeepSeek-OCR checkpoint, derived from the config (patterns for
// SAM blocks, CLIP layers, decoder layers and experts; ../shared/MODEL.md §2.2), and validation of
// a checkpoint against it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loader/config.h"
#include "loader/safetensors.h"

namespace dsocr {

// Which part of the model a tensor belongs to (for byte accounting, quantization policy, offload).
enum class TensorClass : uint8_t {
  kSam,           // SAM-B encoder, neck, net_2, net_3
  kClip,          // CLIP-L encoder
  kProjector,     // projector, image_newline, view_seperator
  kEmbed,         // token embedding
  kLmHead,        // lm_head
  kNorm,          // all decoder RMSNorm gains
  kAttn,          // q, k, v, o projections
  kDenseMlp,      // layer 0 SwiGLU
  kRouter,        // MoE gate
  kSharedExpert,  // fused shared experts of the MoE layers
  kRoutedExpert,  // the 64 routed experts of each MoE layer
};
constexpr int kTensorClassCount = static_cast<int>(TensorClass::kRoutedExpert) + 1;
const char* tensor_class_name(TensorClass c);

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::BF16;
  TensorClass cls = TensorClass::kSam;
  // An nn.Linear weight [out, in] (decoder projections, experts, router, lm_head, the vision
  // towers' linear layers): what weight-only quantization can apply to (runtime/quant_policy.h).
  // Not: biases, norms, embeddings (rows are gathered), positional tables, convolutions.
  bool linear = false;
  int64_t numel() const;
};

// All 2710 tensors of the official checkpoint, in a fixed order: the order of the official
// model's state_dict (image_newline, view_seperator, SAM, CLIP, projector, embed_tokens, decoder
// layers, norm, lm_head), which is also the order of the golden checksum file.
std::vector<TensorSpec> checkpoint_schema(const ModelConfig& cfg);

// The schema as TensorInfos (name, dtype, shape; offsets unset), ready for
// build_safetensors_header.
std::vector<TensorInfo> schema_tensor_infos(const std::vector<TensorSpec>& schema);

// Check a checkpoint against the schema. On failure the message lists every missing, unexpected,
// mis-shaped and mis-typed tensor by name (expected vs actual), capped at a readable length with
// a count of the rest, and says what to do.
Status validate_checkpoint(const Checkpoint& ckpt, const std::vector<TensorSpec>& schema);

}  // namespace dsocr
