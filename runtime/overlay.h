// The box overlay (<name>_boxes.png): the original image with every grounding box drawn the way
// the official `draw_bounding_boxes` draws it (modeling_deepseekocr.py; MODEL.md §8):
//  * per match, per box, in order: a rectangle outline in the label's colour, PIL-style
//    inclusive corners, width 4 for label `title` and 2 otherwise, drawn inwards; then the label
//    on a white box at (x1, max(0, y1 - 15)).
//  * a translucent fill: an RGBA layer where each box's pixels are set (not blended) to
//    (colour, 20) and its 1-px border back to (0, 0, 0, 0) — PIL's `fill=color_a,
//    outline=(0,0,0,0)` — composited over everything at the end with PIL's paste arithmetic
//    out = (dst*(255-a) + src*a + 128 + ((dst*(255-a) + src*a + 128) >> 8)) >> 8.
// Differences, on purpose: colours are a fixed function of the label (official: random per
// match), so two runs give the same picture and all `text` boxes share a colour; labels use
// dsocr's 5x8 font (runtime/font5x8.h; non-ASCII code points drawn as '?') instead of PIL's
// default font; boxes are the normalised ones (corners swapped when the model wrote x2 < x1,
// where PIL would raise and skip the box); the file is PNG, not JPEG.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "loader/image.h"
#include "loader/status.h"
#include "runtime/postprocess.h"

namespace dsocr {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

constexpr int kOverlayAlpha = 20;  // fill alpha of the official RGBA overlay

// Deterministic colour of a label, in the official ranges R, G in 0..200, B in 0..255.
Rgb label_colour(std::string_view label);

// Outline width the official code uses for a label: 4 for "title", else 2.
int outline_width(std::string_view label);

// PIL's paste-with-mask blend of one channel: dst under src with alpha a (0..255).
inline uint8_t blend_channel(uint8_t dst, uint8_t src, int a) {
  const int t = dst * (255 - a) + src * a + 128;
  return static_cast<uint8_t>((t + (t >> 8)) >> 8);
}

// Label text in the overlay font: draws `text` (UTF-8) with its top-left glyph pixel at (x, y),
// clipped to the image. Returns the width in pixels of the drawn string (6 px per code point
// minus the last gap; 0 for an empty string).
int draw_label_text(Image& image, int x, int y, std::string_view text, Rgb colour);

// The overlay of g's boxes on `image` (the original image g's pixel boxes refer to).
Image render_overlay(const Image& image, const Grounding& g);

// Write an RGB image as PNG. Errors name the path.
Status write_png(const Image& image, const std::string& path);

}  // namespace dsocr
