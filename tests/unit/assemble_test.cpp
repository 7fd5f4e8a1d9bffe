#include "runtime/assemble.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "loader/bf16.h"

namespace dsocr {
namespace {

// Every feature row encodes (view, cell) in its first element so the layout can be read back.
std::vector<float> tagged(int views, int cells, int dim, float base) {
  std::vector<float> v(static_cast<size_t>(views) * cells * dim);
  for (int i = 0; i < views; ++i)
    for (int c = 0; c < cells; ++c)
      for (int d = 0; d < dim; ++d)
        v[(static_cast<size_t>(i) * cells + c) * dim + d] = base + i * 1000 + c + 0.001f * d;
  return v;
}

TEST(Assemble, RowCountsMatchModelTable) {
  EXPECT_EQ(image_embed_rows(8, 10, 1, 1), 73);     // tiny
  EXPECT_EQ(image_embed_rows(10, 10, 1, 1), 111);   // small
  EXPECT_EQ(image_embed_rows(16, 10, 1, 1), 273);   // base / gundam without tiles
  EXPECT_EQ(image_embed_rows(20, 10, 1, 1), 421);   // large
  EXPECT_EQ(image_embed_rows(16, 10, 2, 3), 903);   // gundam 2x3
  EXPECT_EQ(image_embed_rows(16, 10, 3, 2), 893);   // gundam 3x2
}

TEST(Assemble, TilesThenGlobalThenSeparator) {
  const int g = 3, t = 2, w_t = 3, h_t = 2, dim = 4;
  std::vector<float> global = tagged(1, g * g, dim, -500.f);
  std::vector<float> tiles = tagged(w_t * h_t, t * t, dim, 0.f);
  std::vector<uint16_t> nl(dim), sep(dim);
  for (int d = 0; d < dim; ++d) {
    nl[d] = f32_to_bf16(77.f + d);
    sep[d] = f32_to_bf16(-88.f - d);
  }
  const int64_t rows = image_embed_rows(g, t, w_t, h_t);
  std::vector<float> out(rows * dim, std::nanf(""));
  assemble_image_embeds(global.data(), g, tiles.data(), t, w_t, h_t, nl.data(), sep.data(),
                        out.data(), dim);
  for (float v : out) ASSERT_FALSE(std::isnan(v));

  int64_t r = 0;
  for (int R = 0; R < h_t * t; ++R) {
    for (int C = 0; C < w_t * t; ++C, ++r) {
      const int tile = (R / t) * w_t + C / t, cell = (R % t) * t + C % t;
      EXPECT_FLOAT_EQ(out[r * dim], tile * 1000 + cell) << "stitched row " << R << " col " << C;
    }
    EXPECT_FLOAT_EQ(out[r * dim + 1], 78.f) << "newline after stitched row " << R;
    ++r;
  }
  for (int y = 0; y < g; ++y) {
    for (int x = 0; x < g; ++x, ++r) EXPECT_FLOAT_EQ(out[r * dim], -500.f + y * g + x);
    EXPECT_FLOAT_EQ(out[r * dim], 77.f);
    ++r;
  }
  EXPECT_FLOAT_EQ(out[r * dim + 2], -90.f);
  EXPECT_EQ(r + 1, rows);
}

TEST(Assemble, NoTilesIsGlobalOnly) {
  const int g = 2, dim = 3;
  std::vector<float> global = tagged(1, g * g, dim, 5.f);
  std::vector<uint16_t> nl(dim, f32_to_bf16(1.5f)), sep(dim, f32_to_bf16(-2.5f));
  std::vector<float> out(image_embed_rows(g, 10, 1, 1) * dim, std::nanf(""));
  assemble_image_embeds(global.data(), g, nullptr, 10, 1, 1, nl.data(), sep.data(), out.data(),
                        dim);
  const float expect[] = {5, 6, 1.5f, 7, 8, 1.5f, -2.5f};
  for (int i = 0; i < 7; ++i) EXPECT_FLOAT_EQ(out[i * dim], expect[i]) << i;
}

}  // namespace
}  // namespace dsocr
