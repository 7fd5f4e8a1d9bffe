// The DeepEncoder (SAM-B -> CLIP-L -> projector) on the CPU in float32 (the reference backend;
// ../shared/MODEL.md §3, §4). BF16 weights are widened inside each op.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "loader/config.h"
#include "loader/status.h"
#include "runtime/model_weights.h"

namespace dsocr {

struct VisionOutput {
  int n = 0;                // views
  int q = 0;                // SAM output grid side (S / 64)
  std::vector<float> sam;   // [n, 1024, q, q] NCHW, SAM-B output after net_3
  std::vector<float> clip;  // [n, 1 + q*q, 1024], CLIP-L output including the class token
  std::vector<float> proj;  // [n, q*q, 1280], projector output
};

// Encodes n views of side S (S in {512, 640, 1024, 1280}; any multiple of 64 works).
Expected<VisionOutput> encode_views_cpu(const ModelConfig& cfg, const ModelWeights& w,
                                        const float* pixels,  // [n, S, S, 3] HWC, normalised
                                        int n, int S);

// u8 RGB views [n, S, S, 3] -> normalised float32 HWC (ToTensor + Normalize(0.5, 0.5) + BF16
// rounding, preprocess.h normalize_pixel), the layout encode_views_cpu takes.
void normalize_views_hwc(const uint8_t* u8,  // [n, S, S, 3]
                         size_t count,        // n * S * S * 3
                         float* out);         // [n, S, S, 3]

}  // namespace dsocr
