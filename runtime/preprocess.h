// Image preprocessing, exactly as the official DeepSeek-OCR code (MODEL.md §4.7, §5.3–§5.5):
// the resolution modes, the Gundam tiling rule, PIL's BICUBIC resize and ImageOps.pad, and the
// ToTensor + Normalize + BF16 cast that turns the u8 views into encoder input.
//
// Semantics are those of the HF `infer()` path: non-crop modes pad to image_size (Tiny/Small
// first stretch to image_size x image_size); Gundam pads the original to base_size and, when the
// image is larger than 640 px on a side, stretches it to a grid of 640 px tiles.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "loader/image.h"
#include "loader/status.h"

namespace dsocr {

enum class Mode { kTiny, kSmall, kBase, kLarge, kGundam };

struct ModeSpec {
  Mode mode;
  const char* name;  // "tiny", "small", "base", "large", "gundam"
  int base_size;     // global view side in crop mode
  int image_size;    // global view side in non-crop modes; tile side in crop mode
  bool crop;
};

const ModeSpec& mode_spec(Mode mode);
Expected<Mode> parse_mode(std::string_view name);  // error lists the valid names

constexpr int kTileSize = 640;      // dynamic_preprocess's image_size (HF always passes 640)
constexpr int kMinCrops = 2;        // dynamic_preprocess min_num
constexpr int kMaxCropsHF = 9;      // HF default max_num
constexpr int kMaxCropsVllm = 6;    // official vLLM MAX_CROPS
constexpr uint8_t kPadValue = 127;  // int(0.5 * 255), the ImageOps.pad colour

struct TileGrid {
  int w = 1;  // tiles across (w_t)
  int h = 1;  // tiles down (h_t)
  bool tiled() const { return w > 1 || h > 1; }
};

// Gundam tiling (MODEL.md §5.4): (1,1) when width <= 640 and height <= 640; otherwise the
// (w_t, h_t) with w_t*h_t in [2, max_crops] whose ratio is closest to width/height, walked in
// CPython's order, ties (exact float equality) going to the later candidate when the image area
// exceeds half the grid's pixel area. max_crops must be in [2, 9] (the orders are CPython's; see
// preprocess.cpp).
Expected<TileGrid> choose_tile_grid(int width, int height, int max_crops = kMaxCropsHF);

// Number of <image> tokens (MODEL.md §4.7): the global view (rows of base_size/64 queries plus a
// newline, plus the view separator) and, when tiled, the stitched tile grid with newlines.
int image_token_count(const ModeSpec& spec, TileGrid grid);

struct PreprocessOptions {
  Mode mode = Mode::kGundam;
  int max_crops = kMaxCropsHF;  // Gundam only, 2..9
};

struct Preprocessed {
  int global_size = 0;          // S
  std::vector<uint8_t> global;  // [S, S, 3] u8 RGB, the padded/resized global view
  TileGrid grid;                // (1,1) when there are no tiles
  int n_tiles = 0;              // grid.w * grid.h when tiled, else 0
  std::vector<uint8_t> tiles;   // [n_tiles, 640, 640, 3] u8 RGB, row-major over the grid
  int n_image_tokens = 0;
};

// The whole preprocessing of one image for one mode.
Expected<Preprocessed> preprocess_image(const Image& image, const PreprocessOptions& options);

// PIL `image.resize((out_w, out_h))` for an RGB image (default filter BICUBIC, no box, no
// reducing_gap): Pillow's two-pass fixed-point resampler, bit for bit. Same size -> copy.
Expected<Image> resize_bicubic(const Image& src, int out_w, int out_h);

// PIL `ImageOps.pad(image, (out_w, out_h), method=BICUBIC, color=(fill,)*3)`: scale to fit
// (contain(), Python round-half-even), then centre on a filled canvas.
Expected<Image> pad_image(const Image& src, int out_w, int out_h, uint8_t fill = kPadValue);

// torchvision ToTensor + Normalize(0.5, 0.5) + `.to(torch.bfloat16)`, in float32 exactly as
// PyTorch computes it: x = bf16_round((float(u8) / 255 - 0.5) / 0.5). The result is exactly
// representable in BF16.
float normalize_pixel(uint8_t v);

// [n, h, w, 3] u8 (HWC) -> [n, 3, h, w] (NCHW) planar, normalised as normalize_pixel.
void normalize_images(const uint8_t* u8,  // [n, h, w, 3]
                      int n, int h, int w,
                      float* out);             // [n, 3, h, w], values exactly representable in BF16
void normalize_images_bf16(const uint8_t* u8,  // [n, h, w, 3]
                           int n, int h, int w,
                           uint16_t* out);  // [n, 3, h, w] BF16 bit patterns

}  // namespace dsocr
