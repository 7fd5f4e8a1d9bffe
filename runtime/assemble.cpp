#include "runtime/assemble.h"

#include <cstring>

#include "loader/bf16.h"

namespace dsocr {

int64_t image_embed_rows(int g, int t, int w_t, int h_t) {
  int64_t rows = static_cast<int64_t>(g) * (g + 1) + 1;
  if (w_t > 1 || h_t > 1) rows += static_cast<int64_t>(h_t) * t * (static_cast<int64_t>(w_t) * t + 1);
  return rows;
}

void assemble_image_embeds(const float* global, int g, const float* tiles, int t, int w_t, int h_t,
                           const uint16_t* newline, const uint16_t* separator, float* out,
                           int dim) {
  const size_t row_bytes = sizeof(float) * dim;
  auto put_bf16 = [&](const uint16_t* v) {
    for (int c = 0; c < dim; ++c) out[c] = bf16_to_f32(v[c]);
    out += dim;
  };
  if (w_t > 1 || h_t > 1) {
    // Stitched grid of (h_t*t) rows x (w_t*t) columns: grid row R = tile row R/t, row R%t inside
    // the tile; grid column C = tile column C/t, column C%t inside the tile.
    for (int R = 0; R < h_t * t; ++R) {
      for (int C = 0; C < w_t * t; ++C) {
        const int tile = (R / t) * w_t + (C / t);
        const float* src = tiles + (static_cast<size_t>(tile) * t * t + (R % t) * t + (C % t)) * dim;
        std::memcpy(out, src, row_bytes);
        out += dim;
      }
      put_bf16(newline);
    }
  }
  for (int r = 0; r < g; ++r) {
    std::memcpy(out, global + static_cast<size_t>(r) * g * dim, row_bytes * g);
    out += static_cast<size_t>(g) * dim;
    put_bf16(newline);
  }
  put_bf16(separator);
}

}  // namespace dsocr
