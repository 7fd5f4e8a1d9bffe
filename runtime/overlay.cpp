// The box overlay: see overlay.h for what is drawn and how it follows the official code.
#include "runtime/overlay.h"

#include <algorithm>
#include <vector>

#include "runtime/font5x8.h"
#include "stb/stb_image_write.h"

namespace dsocr {

namespace {

constexpr int kLabelRise = 15;  // the official text_y = max(0, y1 - 15)

void set_pixel(Image& image, int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height) return;
  uint8_t* p = image.rgb.data() + (static_cast<size_t>(y) * image.width + x) * 3;
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

// Fill the inclusive rectangle [x1, x2] x [y1, y2], clipped to the image.
void fill_rect(Image& image, int x1, int y1, int x2, int y2, Rgb c) {
  x1 = std::max(x1, 0);
  y1 = std::max(y1, 0);
  x2 = std::min(x2, image.width - 1);
  y2 = std::min(y2, image.height - 1);
  for (int y = y1; y <= y2; ++y) {
    for (int x = x1; x <= x2; ++x) set_pixel(image, x, y, c);
  }
}

// PIL ImageDraw.rectangle(outline=c, width=w) with inclusive corners: the pixels of the box
// closer than w to one of its sides.
void outline_rect(Image& image, int x1, int y1, int x2, int y2, int w, Rgb c) {
  for (int i = 0; i < w; ++i) {
    const int a = x1 + i, b = x2 - i, t = y1 + i, u = y2 - i;
    if (a > b || t > u) break;
    fill_rect(image, a, t, b, t, c);
    fill_rect(image, a, u, b, u, c);
    fill_rect(image, a, t, a, u, c);
    fill_rect(image, b, t, b, u, c);
  }
}

// Number of code points of UTF-8 text (bytes that do not continue a sequence).
int count_code_points(std::string_view s) {
  return static_cast<int>(std::count_if(
      s.begin(), s.end(), [](char ch) { return (static_cast<uint8_t>(ch) & 0xc0) != 0x80; }));
}

// splitmix64's finaliser: spreads FNV's low-entropy high bits over the word.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

Rgb label_colour(std::string_view label) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (char ch : label) {
    h ^= static_cast<uint8_t>(ch);
    h *= 0x100000001b3ull;
  }
  h = mix64(h);
  return Rgb{static_cast<uint8_t>(h % 201), static_cast<uint8_t>((h >> 16) % 201),
             static_cast<uint8_t>((h >> 32) % 256)};
}

int outline_width(std::string_view label) {
  return label == "title" ? 4 : 2;
}

int draw_label_text(Image& image, int x, int y, std::string_view text, Rgb colour) {
  int n = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<uint8_t>(text[i]);
    if ((byte & 0xc0) == 0x80) continue;  // continuation byte of a code point already drawn
    const uint8_t* glyph = font_glyph(byte < 0x80 ? byte : '?');
    const int gx = x + n * kFontAdvance;
    for (int row = 0; row < kFontHeight; ++row) {
      for (int col = 0; col < kFontWidth; ++col) {
        if (glyph[row] & (0x10 >> col)) set_pixel(image, gx + col, y + row, colour);
      }
    }
    ++n;
  }
  return n == 0 ? 0 : n * kFontAdvance - 1;
}

Image render_overlay(const Image& image, const Grounding& g) {
  Image out = image;
  const int W = image.width, H = image.height;
  // The RGBA fill layer; alpha is kOverlayAlpha wherever `set` is true.
  std::vector<Rgb> fill(static_cast<size_t>(W) * H);
  std::vector<uint8_t> set(static_cast<size_t>(W) * H, 0);

  for (const Block& b : g.blocks) {
    if (!b.coords_valid || b.boxes.empty()) continue;
    const Rgb colour = label_colour(b.label);
    const int width = outline_width(b.label);
    const int n_chars = count_code_points(b.label);
    for (const Box& box : b.boxes) {
      const auto [x1, y1, x2, y2] = box.px;
      outline_rect(out, x1, y1, x2, y2, width, colour);
      // Fill layer: the box's pixels get the colour, its 1-px border none.
      for (int y = std::max(y1, 0); y <= std::min(y2, H - 1); ++y) {
        for (int x = std::max(x1, 0); x <= std::min(x2, W - 1); ++x) {
          const size_t i = static_cast<size_t>(y) * W + x;
          const bool border = x == x1 || x == x2 || y == y1 || y == y2;
          set[i] = border ? 0 : 1;
          fill[i] = colour;
        }
      }
      if (n_chars > 0) {
        const int tx = x1, ty = std::max(0, y1 - kLabelRise);
        fill_rect(out, tx, ty, tx + n_chars * kFontAdvance, ty + kFontHeight + 1,
                  Rgb{255, 255, 255});
        draw_label_text(out, tx + 1, ty + 1, b.label, colour);
      }
    }
  }

  for (size_t i = 0; i < set.size(); ++i) {
    if (!set[i]) continue;
    uint8_t* p = out.rgb.data() + i * 3;
    p[0] = blend_channel(p[0], fill[i].r, kOverlayAlpha);
    p[1] = blend_channel(p[1], fill[i].g, kOverlayAlpha);
    p[2] = blend_channel(p[2], fill[i].b, kOverlayAlpha);
  }
  return out;
}

Status write_png(const Image& image, const std::string& path) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3) {
    return Status::Error(strfmt("%s: cannot write a %dx%d image with %zu bytes", path.c_str(),
                                image.width, image.height, image.rgb.size()));
  }
  if (stbi_write_png(path.c_str(), image.width, image.height, 3, image.rgb.data(),
                     image.width * 3) == 0) {
    return Status::Error(path + ": cannot write the PNG");
  }
  return Status::Ok();
}

}  // namespace dsocr
