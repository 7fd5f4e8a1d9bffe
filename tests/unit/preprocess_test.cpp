// Preprocessing (runtime/preprocess.h): the Gundam tiling rule and token counts of MODEL.md
// §4.7/§5.4, PIL-exact BICUBIC resize and ImageOps.pad (expected bytes produced by Pillow 9.4 from
// the same synthetic images), the per-mode views, and the ToTensor/Normalize/BF16 step.
#include "runtime/preprocess.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "loader/bf16.h"

namespace dsocr {
namespace {

// Deterministic RGB test image, the same formula as the Pillow script that produced the expected
// values: v(x, y, c) = (37x + 91y + 53c + 11 * ((x*y) mod 7)) mod 256.
Image pattern(int w, int h) {
  Image im{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3)};
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) {
        im.rgb[(static_cast<size_t>(y) * w + x) * 3 + c] =
            static_cast<uint8_t>((x * 37 + y * 91 + c * 53 + ((x * y) % 7) * 11) % 256);
      }
    }
  }
  return im;
}

uint64_t fnv1a(const std::vector<uint8_t>& b) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t v : b) h = (h ^ v) * 0x100000001b3ull;
  return h;
}

Image resize_ok(const Image& im, int w, int h) {
  auto r = resize_bicubic(im, w, h);
  EXPECT_TRUE(r.ok()) << r.message();
  return r.ok() ? std::move(r).value() : Image{};
}

Image pad_ok(const Image& im, int s) {
  auto r = pad_image(im, s, s);
  EXPECT_TRUE(r.ok()) << r.message();
  return r.ok() ? std::move(r).value() : Image{};
}

TileGrid grid(int w, int h, int max_crops = kMaxCropsHF) {
  auto g = choose_tile_grid(w, h, max_crops);
  EXPECT_TRUE(g.ok()) << g.message();
  return g.ok() ? *g : TileGrid{0, 0};
}

#define EXPECT_GRID(g, W, H)  \
  do {                        \
    const TileGrid g_ = (g);  \
    EXPECT_EQ(g_.w, W) << #g; \
    EXPECT_EQ(g_.h, H) << #g; \
  } while (0)

// --- tiling and token counts (MODEL.md §4.7, §5.4)
// -------------------------------------------------

TEST(Tiling, ModelMdExamples) {
  EXPECT_GRID(grid(1191, 1684), 2, 3);
  EXPECT_GRID(grid(800, 600), 3, 2);
  EXPECT_GRID(grid(1000, 800), 2, 2);
  EXPECT_GRID(grid(1400, 1400), 3, 3);
  EXPECT_GRID(grid(1400, 1400, kMaxCropsVllm), 2, 2);
  EXPECT_GRID(grid(1280, 720), 2, 1);
  EXPECT_GRID(grid(3000, 1000), 3, 1);
  EXPECT_GRID(grid(641, 480), 3, 2);
}

TEST(Tiling, SmallImagesGetNoTiles) {
  for (auto [w, h] : {std::pair{640, 640}, {600, 424}, {1, 1}, {640, 1}, {1, 640}}) {
    const TileGrid g = grid(w, h);
    EXPECT_FALSE(g.tiled()) << w << "x" << h;
  }
  EXPECT_TRUE(grid(641, 640).tiled());
  EXPECT_TRUE(grid(640, 641).tiled());
}

// Exact ties: at aspect 1.25, (2,2), (3,2) and (3,3) are all 0.25 away. A later candidate wins a
// tie only when the image area exceeds half the grid's pixel area (0.5 * 640^2 * i * j).
TEST(Tiling, TiesAndTheAreaRule) {
  EXPECT_GRID(grid(1000, 800), 2, 2);                  // area 0.8 MP: (2,2) keeps the tie
  EXPECT_GRID(grid(2500, 2000), 3, 3);                 // 5 MP: (3,2) then (3,3) take it
  EXPECT_GRID(grid(2500, 2000, kMaxCropsVllm), 3, 2);  // no (3,3) with max 6
  EXPECT_GRID(grid(1500, 1200, kMaxCropsVllm), 3, 2);  // 1.8 MP > 1.2288 MP
  EXPECT_GRID(grid(1100, 880, kMaxCropsVllm), 2, 2);   // 0.968 MP < 1.2288 MP
  // Aspect 2: (2,1) and (4,2) are both exact; (4,2) takes over above 1.6384 MP.
  EXPECT_GRID(grid(1280, 640), 2, 1);
  EXPECT_GRID(grid(2000, 1000), 4, 2);
  EXPECT_GRID(grid(1000, 2000), 2, 4);
  EXPECT_GRID(grid(2000, 1000, kMaxCropsVllm), 2, 1);
  // Where the order within one product decides: with max 2, (1,2) and (2,1) tie at aspect 1.25
  // and (1,2) comes first, so a small landscape image keeps the portrait grid (the official
  // behaviour, odd as it is); above 0.4096 MP (2,1) takes the tie.
  EXPECT_GRID(grid(700, 560, 2), 1, 2);
  EXPECT_GRID(grid(1000, 800, 2), 2, 1);
}

TEST(Tiling, EveryMaxCropsRespectsItsBounds) {
  std::mt19937 rng(3);
  for (int max_crops = kMinCrops; max_crops <= kMaxCropsHF; ++max_crops) {
    for (int k = 0; k < 200; ++k) {
      const int w = 641 + static_cast<int>(rng() % 5000), h = 100 + static_cast<int>(rng() % 5000);
      const TileGrid g = grid(w, h, max_crops);
      EXPECT_GE(g.w * g.h, kMinCrops);
      EXPECT_LE(g.w * g.h, max_crops) << w << "x" << h;
    }
  }
  EXPECT_GRID(grid(3000, 1000, 2), 2, 1);
  EXPECT_GRID(grid(3000, 1000, 3), 3, 1);
}

TEST(Tiling, RefusesUnsupportedMaxCrops) {
  for (int m : {0, 1, 10, 12}) {
    auto g = choose_tile_grid(2000, 1000, m);
    ASSERT_FALSE(g.ok()) << m;
    EXPECT_NE(g.message().find("max crops"), std::string::npos) << g.message();
  }
  EXPECT_FALSE(choose_tile_grid(0, 10).ok());
}

TEST(Tokens, PerModeAndGrid) {
  EXPECT_EQ(image_token_count(mode_spec(Mode::kTiny), {}), 73);
  EXPECT_EQ(image_token_count(mode_spec(Mode::kSmall), {}), 111);
  EXPECT_EQ(image_token_count(mode_spec(Mode::kBase), {}), 273);
  EXPECT_EQ(image_token_count(mode_spec(Mode::kLarge), {}), 421);
  const ModeSpec& g = mode_spec(Mode::kGundam);
  EXPECT_EQ(image_token_count(g, {1, 1}), 273);
  EXPECT_EQ(image_token_count(g, {2, 3}), 903);
  EXPECT_EQ(image_token_count(g, {3, 2}), 893);
  EXPECT_EQ(image_token_count(g, {2, 2}), 693);
  EXPECT_EQ(image_token_count(g, {3, 3}), 1203);
  EXPECT_EQ(image_token_count(g, {2, 1}), 483);
  EXPECT_EQ(image_token_count(g, {3, 1}), 583);
}

TEST(Modes, TableAndParsing) {
  const struct {
    const char* name;
    int base, image;
    bool crop;
  } want[] = {{"tiny", 512, 512, false},
              {"small", 640, 640, false},
              {"base", 1024, 1024, false},
              {"large", 1280, 1280, false},
              {"gundam", 1024, 640, true}};
  for (const auto& w : want) {
    auto m = parse_mode(w.name);
    ASSERT_TRUE(m.ok()) << m.message();
    const ModeSpec& s = mode_spec(*m);
    EXPECT_STREQ(s.name, w.name);
    EXPECT_EQ(s.base_size, w.base);
    EXPECT_EQ(s.image_size, w.image);
    EXPECT_EQ(s.crop, w.crop);
  }
  auto bad = parse_mode("huge");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("'huge'"), std::string::npos);
  EXPECT_NE(bad.message().find("gundam"), std::string::npos);
}

// --- resize -------------------------------------------------------------------------------------

TEST(Resize, SameSizeIsACopy) {
  const Image im = pattern(31, 17);
  EXPECT_EQ(resize_ok(im, 31, 17).rgb, im.rgb);
}

TEST(Resize, ConstantStaysConstant) {
  Image im{37, 23, std::vector<uint8_t>(37 * 23 * 3)};
  for (size_t i = 0; i < im.rgb.size(); ++i) im.rgb[i] = static_cast<uint8_t>(i % 3 == 0 ? 255 : 9);
  for (auto [w, h] : {std::pair{5, 3}, {100, 200}, {37, 1}, {1, 23}, {640, 640}}) {
    const Image r = resize_ok(im, w, h);
    for (size_t i = 0; i < r.rgb.size(); ++i) ASSERT_EQ(r.rgb[i], i % 3 == 0 ? 255 : 9) << i;
  }
}

// Halving 2 px to 1: both taps get weight 1/2 = 2^21 in 22-bit fixed point, and the accumulator
// starts at 2^21, so the result is (a + b + 1) >> 1: halves round up.
TEST(Resize, HalvingByHand) {
  Image im{2, 1, {10, 20, 0, 21, 20, 255}};
  const Image r = resize_ok(im, 1, 1);
  ASSERT_EQ(r.rgb.size(), 3u);
  EXPECT_EQ(r.rgb[0], 16);   // (10 + 21) / 2 = 15.5 -> 16
  EXPECT_EQ(r.rgb[1], 20);   // 20
  EXPECT_EQ(r.rgb[2], 128);  // 127.5 -> 128
}

TEST(Resize, MatchesPillowSmall) {
  const Image im = pattern(5, 4);
  const std::vector<uint8_t> want_3x7 = {
      5,   58,  111, 64,  122, 187, 137, 199, 252, 38,  98,  157, 115, 148, 151, 130,
      144, 197, 101, 165, 223, 194, 186, 93,  118, 58,  111, 176, 169, 137, 154, 135,
      123, 94,  97,  157, 207, 147, 53,  99,  92,  150, 92,  149, 197, 98,  112, 120,
      125, 165, 79,  160, 116, 89,  31,  93,  166, 144, 212, 35,  201, 92,  22};
  const std::vector<uint8_t> want_8x2 = {
      61,  115, 135, 80,  119, 159, 108, 130, 181, 113, 166, 133, 136, 155, 124, 166,
      102, 161, 118, 124, 186, 76,  148, 199, 98,  159, 86,  130, 131, 120, 166, 103,
      153, 127, 146, 93,  116, 172, 75,  139, 165, 97,  140, 108, 116, 138, 67,  128};
  EXPECT_EQ(resize_ok(im, 3, 7).rgb, want_3x7);
  EXPECT_EQ(resize_ok(im, 8, 2).rgb, want_8x2);
}

// Larger cases: FNV-1a-64 of Pillow's output bytes. Covers downscale, upscale, mixed, one axis only
// (the other pass skipped) and the 144-dpi page to the 1024 view.
TEST(Resize, MatchesPillowHashes) {
  const struct {
    int w, h, ow, oh;
    uint64_t hash;
  } cases[] = {
      {300, 200, 97, 131, 0x9eb8025d2779f07aull},     {300, 200, 640, 640, 0x45705c099d67d251ull},
      {300, 200, 300, 77, 0xf0387027dd12aa03ull},     {300, 200, 1000, 200, 0x484d275fd5fb8d12ull},
      {1191, 1684, 724, 1024, 0xf4ed01e1449fe422ull}, {123, 457, 640, 1920, 0x307da24645122da0ull},
  };
  for (const auto& c : cases) {
    const Image r = resize_ok(pattern(c.w, c.h), c.ow, c.oh);
    EXPECT_EQ(r.width, c.ow);
    EXPECT_EQ(r.height, c.oh);
    EXPECT_EQ(fnv1a(r.rgb), c.hash) << c.w << "x" << c.h << " -> " << c.ow << "x" << c.oh;
  }
}

TEST(Resize, RefusesBadSizes) {
  const Image im = pattern(4, 4);
  EXPECT_FALSE(resize_bicubic(im, 0, 4).ok());
  EXPECT_FALSE(resize_bicubic(im, 4, -1).ok());
  EXPECT_FALSE(resize_bicubic(im, 1 << 20, 4).ok());
  EXPECT_FALSE(resize_bicubic(Image{4, 4, {}}, 2, 2).ok());
}

// --- pad (ImageOps.pad)
// ----------------------------------------------------------------------------

// Rows [y0, y1) hold image content; every other pixel is the fill colour.
void expect_band(const Image& out, int x0, int x1, int y0, int y1) {
  int bad = 0;
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      const bool inside = x >= x0 && x < x1 && y >= y0 && y < y1;
      const uint8_t* p = &out.rgb[(static_cast<size_t>(y) * out.width + x) * 3];
      if (!inside) bad += p[0] != kPadValue || p[1] != kPadValue || p[2] != kPadValue;
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(Pad, Geometry) {
  // Landscape 200x100 -> 64: contain to 64x32, pasted at y = round(32 * 0.5) = 16.
  Image land{200, 100, std::vector<uint8_t>(200 * 100 * 3, 0)};
  const Image a = pad_ok(land, 64);
  expect_band(a, 0, 64, 16, 48);
  EXPECT_EQ(a.rgb[(16 * 64) * 3], 0);
  EXPECT_EQ(a.rgb[(47 * 64 + 63) * 3], 0);
  // Portrait 100x200 -> 64: 32x64 at x = 16.
  Image port{100, 200, std::vector<uint8_t>(100 * 200 * 3, 0)};
  const Image b = pad_ok(port, 64);
  expect_band(b, 16, 48, 0, 64);
  EXPECT_EQ(b.rgb[(5 * 64 + 16) * 3], 0);
  // Square: plain resize, no padding.
  const Image sq = pattern(50, 50);
  EXPECT_EQ(pad_ok(sq, 64).rgb, resize_ok(sq, 64, 64).rgb);
  // Python rounds half to even: 2x1 -> 5 is contain()ed to 5x2 (2.5 -> 2), pasted at
  // y = round(1.5) = 2; 4x1 -> 6 gives 6x2 (1.5 -> 2) at y = round(2.0) = 2.
  const Image c = pad_ok(Image{2, 1, std::vector<uint8_t>(6, 0)}, 5);
  expect_band(c, 0, 5, 2, 4);
  EXPECT_EQ(c.rgb[(2 * 5) * 3], 0);
  EXPECT_EQ(c.rgb[(3 * 5 + 4) * 3], 0);
  const Image d = pad_ok(Image{4, 1, std::vector<uint8_t>(12, 0)}, 6);
  expect_band(d, 0, 6, 2, 4);
  // 1x3 -> 7: contain to 2x7 (7/3 = 2.33), at x = round(2.5) = 2.
  const Image e = pad_ok(Image{1, 3, std::vector<uint8_t>(9, 0)}, 7);
  expect_band(e, 2, 4, 0, 7);
  EXPECT_EQ(e.rgb[(0 * 7 + 2) * 3], 0);
}

TEST(Pad, MatchesPillowHashes) {
  const struct {
    int w, h, s;
    uint64_t hash;
  } cases[] = {{300, 200, 1024, 0x68d92cb6fa30e29dull},
               {200, 300, 640, 0x1fc3e505eaea8cbcull},
               {301, 300, 512, 0x927de8cf979bbdc0ull},
               {5, 3, 7, 0x439b54166cd4e2daull}};
  for (const auto& c : cases) {
    EXPECT_EQ(fnv1a(pad_ok(pattern(c.w, c.h), c.s).rgb), c.hash) << c.w << "x" << c.h << " " << c.s;
  }
}

TEST(Pad, RefusesDegenerateAspect) {
  auto r = pad_image(Image{1, 200, std::vector<uint8_t>(600, 0)}, 64, 64);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("aspect ratio"), std::string::npos) << r.message();
}

// --- whole preprocessing
// --------------------------------------------------------------------------

TEST(Preprocess, NonCropModes) {
  const Image im = pattern(300, 200);
  for (Mode m : {Mode::kTiny, Mode::kSmall}) {  // stretched to a square, never padded
    auto p = preprocess_image(im, {m});
    ASSERT_TRUE(p.ok()) << p.message();
    const int s = mode_spec(m).image_size;
    EXPECT_EQ(p->global_size, s);
    EXPECT_EQ(p->global, resize_ok(im, s, s).rgb);
    EXPECT_EQ(p->n_tiles, 0);
    EXPECT_TRUE(p->tiles.empty());
    EXPECT_FALSE(p->grid.tiled());
  }
  for (Mode m : {Mode::kBase, Mode::kLarge}) {  // aspect kept, padded
    auto p = preprocess_image(im, {m});
    ASSERT_TRUE(p.ok()) << p.message();
    const int s = mode_spec(m).image_size;
    EXPECT_EQ(p->global, pad_ok(im, s).rgb);
    EXPECT_EQ(p->global[0], kPadValue);
  }
  EXPECT_EQ(preprocess_image(im, {Mode::kTiny})->n_image_tokens, 73);
  EXPECT_EQ(preprocess_image(im, {Mode::kLarge})->n_image_tokens, 421);
}

TEST(Preprocess, GundamTiles) {
  const Image im = pattern(1000, 700);  // aspect 1.43 -> (3,2)
  auto p = preprocess_image(im, {Mode::kGundam});
  ASSERT_TRUE(p.ok()) << p.message();
  EXPECT_EQ(p->grid.w, 3);
  EXPECT_EQ(p->grid.h, 2);
  EXPECT_EQ(p->n_tiles, 6);
  EXPECT_EQ(p->n_image_tokens, 893);
  EXPECT_EQ(p->global_size, 1024);
  EXPECT_EQ(p->global, pad_ok(im, 1024).rgb);
  ASSERT_EQ(p->tiles.size(), 6u * 640 * 640 * 3);
  // Tile i is the (i % 3, i / 3) window of the whole image stretched to 1920x1280.
  const Image r = resize_ok(im, 1920, 1280);
  for (int i = 0; i < 6; ++i) {
    for (int y = 0; y < 640; y += 71) {
      const size_t src = (static_cast<size_t>((i / 3) * 640 + y) * 1920 + (i % 3) * 640) * 3;
      const size_t dst = (static_cast<size_t>(i) * 640 * 640 + y * 640) * 3;
      ASSERT_EQ(std::memcmp(&r.rgb[src], &p->tiles[dst], 640 * 3), 0)
          << "tile " << i << " row " << y;
    }
  }
  // With max 6 the same image still gets (3,2); a small image gets no tiles.
  EXPECT_EQ(preprocess_image(im, {Mode::kGundam, 6})->n_tiles, 6);
  auto small = preprocess_image(pattern(600, 424), {Mode::kGundam});
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->n_tiles, 0);
  EXPECT_EQ(small->n_image_tokens, 273);
  EXPECT_FALSE(preprocess_image(im, {Mode::kGundam, 11}).ok());
}

// --- normalisation
// ---------------------------------------------------------------------------------

TEST(Normalize, ValuesAreBf16OfTheTorchFormula) {
  EXPECT_EQ(normalize_pixel(0), -1.0f);
  EXPECT_EQ(normalize_pixel(255), 1.0f);
  // The padding colour: (127/255 - 0.5) / 0.5 = -0.0039215..., stored as BF16. It is the one
  // value whose BF16 depends on the op order: ToTensor on the CPU divides by 255 (IEEE division)
  // and gives 0xBB81; multiplying by float32(1/255) would land on a tie and give 0xBB80.
  EXPECT_NEAR(normalize_pixel(127), -0.00392157f, 2e-5f);
  EXPECT_EQ(f32_to_bf16(normalize_pixel(127)), 0xBB81);
  EXPECT_EQ(f32_to_bf16(normalize_pixel(128)), 0x3B81);
  float prev = -2.0f;
  for (int v = 0; v < 256; ++v) {
    const float x = normalize_pixel(static_cast<uint8_t>(v));
    const double exact = (v / 255.0 - 0.5) / 0.5;
    EXPECT_EQ(round_bf16(x), x) << v;                                     // representable in BF16
    EXPECT_LE(std::fabs(x - exact), std::fabs(exact) / 256 + 1e-9) << v;  // within half a BF16 ulp
    EXPECT_GE(x, prev) << v;
    prev = x;
  }
}

TEST(Normalize, LayoutIsPlanarNchw) {
  const int n = 2, h = 3, w = 4;
  std::vector<uint8_t> u8(n * h * w * 3);
  for (size_t i = 0; i < u8.size(); ++i) u8[i] = static_cast<uint8_t>(i * 7);
  std::vector<float> f(u8.size());
  std::vector<uint16_t> b(u8.size());
  normalize_images(u8.data(), n, h, w, f.data());
  normalize_images_bf16(u8.data(), n, h, w, b.data());
  for (int i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
          const uint8_t v = u8[((i * h + y) * w + x) * 3 + c];
          const size_t o = ((static_cast<size_t>(i) * 3 + c) * h + y) * w + x;
          ASSERT_EQ(f[o], normalize_pixel(v));
          ASSERT_EQ(b[o], f32_to_bf16(normalize_pixel(v)));
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsocr
