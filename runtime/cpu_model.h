// The CPU float32 backend as reusable steps: an opened and validated checkpoint with its weights
// bound, a page's views (from an image, or from a golden case), their encoding into the image
// embedding sequence, the prompt, and greedy generation. The golden recipe (golden.h) and the OCR
// engine are both built from these.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loader/config.h"
#include "loader/safetensors.h"
#include "loader/status.h"
#include "runtime/decoder_cpu.h"
#include "runtime/model_weights.h"
#include "runtime/preprocess.h"
#include "runtime/sampling.h"
#include "runtime/vision_cpu.h"

namespace dsocr {

struct CpuModel {
  Checkpoint ckpt;
  ModelConfig cfg;
  ModelWeights w;  // pointers into ckpt's mappings

  // Opens DIR (config.json + safetensors), validates every tensor against the schema, binds.
  static Expected<std::unique_ptr<CpuModel>> open(const std::string& dir);
};

// The u8 views of one page, as the encoder takes them.
struct PageViews {
  Mode mode = Mode::kGundam;
  int S = 0;                    // global view side
  std::vector<uint8_t> global;  // [S, S, 3]
  TileGrid grid;                // (1,1): no tiles
  int n_tiles = 0;
  std::vector<uint8_t> tiles;   // [n_tiles, 640, 640, 3]
  int image_w = 0, image_h = 0; // the original image (after EXIF), 0 when from a golden case
};

Expected<PageViews> page_views_from_image(const Image& image, Mode mode, int max_crops);
// global_u8 / crops_u8 of a golden case file (the grid from its "meta" metadata).
Expected<PageViews> page_views_from_golden(const std::string& case_path, Mode mode);

struct PageEmbeds {
  VisionOutput global;              // SAM / CLIP / projector outputs of the global view
  VisionOutput tiles;               // the same for the tiles (n = 0 without tiles)
  std::vector<float> image_embeds;  // [rows, dim], the assembled image sequence
  int64_t rows = 0;
};
Expected<PageEmbeds> encode_page_cpu(const CpuModel& m, const PageViews& page);

// BOS + image tokens (one per image-embedding row) + text ids. Ids are checked against the
// vocabulary (one-line error naming the id).
Expected<std::vector<int32_t>> build_prompt(const ModelConfig& cfg, int64_t image_rows,
                                            const std::vector<int32_t>& text_ids);

// Token embeddings of `ids` with the image rows written over the image-token positions, in order.
std::vector<float> prompt_embeddings(const CpuModel& m, const CpuDecoder& dec,
                                     const std::vector<int32_t>& ids,
                                     const std::vector<float>& image_embeds);

// Greedy generation after a prefill whose last logits are `logits0`. `on_token` sees each new
// id (return false to stop). When `top_k` > 0 the raw (pre-ban) top-k logits of every step are
// recorded, descending, equal values by lower id.
struct Generation {
  std::vector<int32_t> ids;  // generated ids (an emitted EOS included)
  StopReason stop = StopReason::kNone;
  std::vector<float> top_vals;   // [steps, top_k]
  std::vector<int64_t> top_ids;  // [steps, top_k]
};
Expected<Generation> generate_cpu(const CpuModel& m, CpuDecoder& dec,
                                  const std::vector<int32_t>& prompt, std::vector<float> logits0,
                                  const GenerationConfig& gc, int top_k = 0,
                                  const std::function<bool(int32_t)>& on_token = {});

// Top-k of raw logits, descending; equal values keep the lower id first.
void top_k_logits(const float* logits, int64_t vocab, int k, float* vals, int64_t* ids);

}  // namespace dsocr
