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
  kSam, kClip, kProjector,   // vision + glue (projector, image_newline, view_seperator)
  kEmbed, kLmHead, kNorm,     // token embedding, lm_head, all decoder RMSNorm gains
  kAttn,                      // q,k,v,o projections
  kDenseMlp,                  // layer 0 SwiGLU
  kRouter,                    // MoE gate
  kSharedExpert, kRoutedExpert,
};
const char* tensor_class_name(TensorClass c);

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::BF16;
  TensorClass cls = TensorClass::kSam;
  int64_t numel() const;
};

// All 2710 tensors of the official checkpoint, in a fixed order (vision, projector, decoder).
std::vector<TensorSpec> checkpoint_schema(const ModelConfig& cfg);

// Check a checkpoint against the schema. On failure the message lists every missing, unexpected,
// mis-shaped and mis-typed tensor by name (expected vs actual), capped at a readable length with
// a count of the rest, and says what to do.
Status validate_checkpoint(const Checkpoint& ckpt, const std::vector<TensorSpec>& schema);

}  // namespace dsocr
