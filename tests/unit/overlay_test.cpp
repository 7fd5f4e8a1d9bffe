// Box overlay (runtime/overlay.h): outline pixels carry the label colour, the fill is PIL's
// alpha-20 paste, pixels away from boxes and labels are untouched, labels sit on a white box
// 15 px above the box, colours are a fixed function of the label, and the PNG round-trips.
#include "runtime/overlay.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <string>

#include "runtime/font5x8.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;

// A gradient, so that a wrong blend or a shifted rectangle shows.
Image gradient(int w, int h) {
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.rgb.data() + (static_cast<size_t>(y) * w + x) * 3;
      p[0] = static_cast<uint8_t>(x * 255 / (w - 1));
      p[1] = static_cast<uint8_t>(y * 255 / (h - 1));
      p[2] = static_cast<uint8_t>((x + y) % 256);
    }
  }
  return img;
}

Rgb at(const Image& img, int x, int y) {
  const uint8_t* p = img.rgb.data() + (static_cast<size_t>(y) * img.width + x) * 3;
  return Rgb{p[0], p[1], p[2]};
}

// One block with the given pixel boxes (norm is not used by the overlay).
Grounding grounding_of(std::string label, std::vector<std::array<int, 4>> px_boxes) {
  Grounding g;
  Block b;
  b.label = std::move(label);
  for (const auto& px : px_boxes) {
    Box box;
    box.px = px;
    b.boxes.push_back(box);
  }
  g.blocks.push_back(std::move(b));
  return g;
}

// The float blend the official RGBA paste approximates.
double blended(uint8_t dst, uint8_t src) {
  return dst + (static_cast<double>(src) - dst) * 20.0 / 255.0;
}

void expect_blended(const Image& out, const Image& in, int x, int y, Rgb c) {
  const Rgb o = at(out, x, y), i = at(in, x, y);
  EXPECT_NEAR(o.r, blended(i.r, c.r), 1.0) << x << "," << y;
  EXPECT_NEAR(o.g, blended(i.g, c.g), 1.0) << x << "," << y;
  EXPECT_NEAR(o.b, blended(i.b, c.b), 1.0) << x << "," << y;
}

TEST(Overlay, OneBoxOutlineFillLabelAndUntouchedPixels) {
  const Image in = gradient(200, 150);
  const Grounding g = grounding_of("text", {{20, 30, 80, 90}});
  const Image out = render_overlay(in, g);
  const Rgb c = label_colour("text");
  ASSERT_EQ(out.width, 200);
  ASSERT_EQ(out.height, 150);
  // Outline, 2 px wide, inclusive corners: exactly the colour.
  for (auto [x, y] : std::vector<std::pair<int, int>>{{20, 30},
                                                      {80, 90},
                                                      {20, 60},
                                                      {21, 60},
                                                      {80, 60},
                                                      {79, 60},
                                                      {50, 30},
                                                      {50, 31},
                                                      {50, 90},
                                                      {50, 89}}) {
    EXPECT_EQ(at(out, x, y), c) << x << "," << y;
  }
  // Interior: alpha 20 of the colour over the image.
  for (auto [x, y] :
       std::vector<std::pair<int, int>>{{22, 60}, {78, 60}, {50, 32}, {50, 60}, {79 - 1, 88}}) {
    expect_blended(out, in, x, y, c);
  }
  // Label: white box from (x1, y1 - 15) = (20, 15), 6 px per letter + 1, 10 rows; the first
  // glyph ('t', row 0 = .#...) has ink at (20 + 1 + 1, 15 + 1).
  EXPECT_EQ(at(out, 20, 15), (Rgb{255, 255, 255}));
  EXPECT_EQ(at(out, 20 + 4 * 6, 15 + 9), (Rgb{255, 255, 255}));
  EXPECT_EQ(at(out, 22, 16), c);
  // Everything else is the input, bit for bit.
  int changed_outside = 0;
  for (int y = 0; y < 150; ++y) {
    for (int x = 0; x < 200; ++x) {
      const bool in_box = x >= 20 && x <= 80 && y >= 30 && y <= 90;
      const bool in_label = x >= 20 && x <= 20 + 4 * 6 && y >= 15 && y <= 15 + 9;
      if (!in_box && !in_label) changed_outside += !(at(out, x, y) == at(in, x, y));
    }
  }
  EXPECT_EQ(changed_outside, 0);
}

TEST(Overlay, TitleOutlineIsFourPixels) {
  const Image in = gradient(120, 100);
  const Image out = render_overlay(in, grounding_of("title", {{10, 40, 100, 90}}));
  const Rgb c = label_colour("title");
  for (int x = 10; x <= 13; ++x) EXPECT_EQ(at(out, x, 60), c) << x;
  for (int x = 97; x <= 100; ++x) EXPECT_EQ(at(out, x, 60), c) << x;
  for (int y = 40; y <= 43; ++y) EXPECT_EQ(at(out, 50, y), c) << y;
  expect_blended(out, in, 14, 60, c);
  expect_blended(out, in, 96, 60, c);
  expect_blended(out, in, 50, 44, c);
  EXPECT_EQ(outline_width("title"), 4);
  EXPECT_EQ(outline_width("text"), 2);
  EXPECT_EQ(outline_width("Title"), 2);
}

TEST(Overlay, OverlappingFillsAreSetNotStacked) {
  // Like PIL drawing on the RGBA layer: the later box's fill replaces the earlier one's, and its
  // transparent 1-px border punches through; the composite blends each pixel once.
  const Image in = gradient(200, 200);
  Grounding g = grounding_of("a", {{10, 10, 150, 150}});
  Grounding g2 = grounding_of("b", {{60, 60, 190, 190}});
  g.blocks.push_back(g2.blocks[0]);
  const Image out = render_overlay(in, g);
  const Rgb ca = label_colour("a"), cb = label_colour("b");
  ASSERT_FALSE(ca == cb);
  expect_blended(out, in, 30, 100, ca);   // only a
  expect_blended(out, in, 100, 100, cb);  // both: b only, once
  expect_blended(out, in, 170, 100, cb);  // only b
  // a's outline under b's fill is tinted by b.
  const Rgb under = at(out, 150, 100);
  EXPECT_NEAR(under.r, blended(ca.r, cb.r), 1.0);
  EXPECT_NEAR(under.g, blended(ca.g, cb.g), 1.0);
  EXPECT_NEAR(under.b, blended(ca.b, cb.b), 1.0);
}

TEST(Overlay, BoxBordersAreNotTinted) {
  // PIL's outline=(0,0,0,0) on the RGBA layer: a box's 1-px border gets no fill. Visible where a
  // later label's white box covers an earlier box's border: it stays pure white there.
  const Image in = gradient(200, 200);
  Grounding g = grounding_of("a", {{62, 20, 150, 150}});
  g.blocks.push_back(grounding_of("b", {{60, 70, 100, 100}}).blocks[0]);
  const Image out = render_overlay(in, g);
  // b's label box spans x 60..66, y 55..64; a's left border is x = 62.
  EXPECT_EQ(at(out, 62, 58), (Rgb{255, 255, 255}));
  // x = 66 is the label box's last column (no glyph): white under a's fill.
  const Rgb ca = label_colour("a"), w = at(out, 66, 58);
  EXPECT_NEAR(w.r, blended(255, ca.r), 1.0);
  EXPECT_NEAR(w.g, blended(255, ca.g), 1.0);
  EXPECT_NEAR(w.b, blended(255, ca.b), 1.0);
}

TEST(Overlay, LabelClampsToTheTopAndBoxesClipToTheImage) {
  const Image in = gradient(100, 80);
  // y1 = 5: label at y = 0; x2 = W and y2 = H (the 999 -> W mapping) lie outside the image.
  const Image out = render_overlay(in, grounding_of("text", {{40, 5, 100, 80}}));
  EXPECT_EQ(at(out, 40, 0), (Rgb{255, 255, 255}));
  EXPECT_EQ(at(out, 40, 40), label_colour("text"));
  // x2 = 100, y2 = 80: the outer ring is off the image, the inner one (x = 99, y = 79) is not.
  EXPECT_EQ(at(out, 99, 40), label_colour("text"));
  EXPECT_EQ(at(out, 60, 79), label_colour("text"));
  expect_blended(out, in, 98, 78, label_colour("text"));
}

TEST(Overlay, InvalidOrEmptyGroundingLeavesTheImage) {
  const Image in = gradient(64, 64);
  EXPECT_EQ(render_overlay(in, Grounding{}).rgb, in.rgb);
  Grounding g = grounding_of("text", {{1, 1, 30, 30}});
  g.blocks[0].coords_valid = false;
  EXPECT_EQ(render_overlay(in, g).rgb, in.rgb);
}

TEST(Overlay, BlendIsPilPasteArithmetic) {
  // PIL's BLEND/DIV255 at alpha 20 equals the float blend rounded to nearest for every input
  // pair (checked in CPython), so the overlay is exact, not just within one.
  for (int d = 0; d < 256; ++d) {
    for (int s = 0; s < 256; ++s) {
      const int got = blend_channel(static_cast<uint8_t>(d), static_cast<uint8_t>(s), 20);
      ASSERT_EQ(got, std::lround(d + (s - d) * 20.0 / 255.0)) << d << " " << s;
    }
  }
  EXPECT_EQ(blend_channel(10, 250, 255), 250);
  EXPECT_EQ(blend_channel(10, 250, 0), 10);
  EXPECT_EQ(blend_channel(0, 255, 128), 128);  // t = 255*128 + 128 = 32768; (t + 128) >> 8
}

TEST(LabelColour, DeterministicAndInTheOfficialRanges) {
  std::set<std::tuple<int, int, int>> seen;
  const char* labels[] = {"text",           "title",         "image",    "image_caption",
                          "table",          "table_caption", "equation", "sub_title",
                          "table_footnote", "标题",          ""};
  for (const char* l : labels) {
    const Rgb c = label_colour(l);
    EXPECT_EQ(c, label_colour(std::string(l)));
    EXPECT_LE(c.r, 200);
    EXPECT_LE(c.g, 200);
    seen.insert({c.r, c.g, c.b});
  }
  EXPECT_EQ(seen.size(), std::size(labels));
  int max_r = 0, max_g = 0, max_b = 0;
  for (int i = 0; i < 2000; ++i) {
    const Rgb c = label_colour("label" + std::to_string(i));
    ASSERT_LE(c.r, 200);
    ASSERT_LE(c.g, 200);
    max_r = std::max<int>(max_r, c.r);
    max_g = std::max<int>(max_g, c.g);
    max_b = std::max<int>(max_b, c.b);
  }
  EXPECT_GE(max_r, 195);  // the whole range is used
  EXPECT_GE(max_g, 195);
  EXPECT_GE(max_b, 250);
}

TEST(Font, GlyphsAndWidths) {
  for (int c = kFontFirst; c <= kFontLast; ++c) {
    const uint8_t* g = font_glyph(static_cast<uint32_t>(c));
    int ink = 0;
    for (int row = 0; row < kFontHeight; ++row) {
      ASSERT_EQ(g[row] & ~0x1f, 0) << "glyph " << c << " wider than 5 px";
      ink += __builtin_popcount(g[row]);
    }
    if (c == ' ') {
      EXPECT_EQ(ink, 0);
    } else {
      EXPECT_GT(ink, 0) << "glyph " << static_cast<char>(c) << " is empty";
    }
  }
  // Glyphs are distinct (a copy-paste slip would show here).
  std::set<std::array<uint8_t, kFontHeight>> distinct;
  for (int c = kFontFirst; c <= kFontLast; ++c) {
    std::array<uint8_t, kFontHeight> rows;
    std::copy_n(font_glyph(static_cast<uint32_t>(c)), kFontHeight, rows.begin());
    distinct.insert(rows);
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kFontLast - kFontFirst + 1));
  EXPECT_EQ(font_glyph(0x7f), font_glyph('?'));
  EXPECT_EQ(font_glyph(31), font_glyph('?'));

  Image a = gradient(40, 12), b = gradient(40, 12);
  EXPECT_EQ(draw_label_text(a, 1, 1, "é中", Rgb{1, 2, 3}), 11);  // two code points
  EXPECT_EQ(draw_label_text(b, 1, 1, "??", Rgb{1, 2, 3}), 11);
  EXPECT_EQ(a.rgb, b.rgb);
  EXPECT_EQ(draw_label_text(a, 1, 1, "", Rgb{1, 2, 3}), 0);
  // Drawing off the image is clipped, not a crash.
  EXPECT_EQ(draw_label_text(a, -3, 8, "clip", Rgb{1, 2, 3}), 23);
}

TEST(WritePng, RoundTripAndErrors) {
  const Image in = render_overlay(gradient(33, 17), grounding_of("text", {{2, 3, 30, 15}}));
  const fs::path path =
      fs::temp_directory_path() / ("dsocr_overlay_test_" + std::to_string(getpid()) + ".png");
  ASSERT_TRUE(write_png(in, path.string()).ok());
  auto back = load_image(path.string());
  fs::remove(path);
  ASSERT_TRUE(back.ok()) << back.message();
  EXPECT_EQ(back->width, 33);
  EXPECT_EQ(back->height, 17);
  EXPECT_EQ(back->rgb, in.rgb);
  Status s = write_png(in, "/nonexistent-dir/x.png");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent-dir/x.png"), std::string::npos);
  Image bad = in;
  bad.rgb.pop_back();
  EXPECT_FALSE(write_png(bad, path.string()).ok());
}

}  // namespace
}  // namespace dsocr
