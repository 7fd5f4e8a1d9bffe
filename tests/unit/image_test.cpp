// Image loading (loader/image.h): formats, PIL's convert("RGB") rules, 16-bit PNG, EXIF
// orientation, JPEG pixels identical to PIL/libjpeg-turbo, and every kind of bad input refused
// with a one-line message naming the file. Test images are made here: 8-bit ones with
// stb_image_write, the rest (16-bit PNG, EXIF segments, lying headers) byte by byte.
#include "loader/image.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "stb/stb_image_write.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// --- encoders
// -------------------------------------------------------------------------------------

void append_to(void* ctx, void* data, int size) {
  auto* out = static_cast<Bytes*>(ctx);
  const auto* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

Bytes encode_png(int w, int h, int comp, const Bytes& px) {
  Bytes out;
  EXPECT_TRUE(stbi_write_png_to_func(append_to, &out, w, h, comp, px.data(), w * comp));
  return out;
}
Bytes encode_jpg(int w, int h, int comp, const Bytes& px, int quality) {
  Bytes out;
  EXPECT_TRUE(stbi_write_jpg_to_func(append_to, &out, w, h, comp, px.data(), quality));
  return out;
}
Bytes encode_bmp(int w, int h, int comp, const Bytes& px) {
  Bytes out;
  EXPECT_TRUE(stbi_write_bmp_to_func(append_to, &out, w, h, comp, px.data()));
  return out;
}
Bytes encode_tga(int w, int h, int comp, const Bytes& px) {
  Bytes out;
  EXPECT_TRUE(stbi_write_tga_to_func(append_to, &out, w, h, comp, px.data()));
  return out;
}

void put_be16(Bytes& b, uint32_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put_be32(Bytes& b, uint32_t v) {
  put_be16(b, v >> 16);
  put_be16(b, v & 0xffff);
}
void put_le16(Bytes& b, uint32_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void put_le32(Bytes& b, uint32_t v) {
  put_le16(b, v & 0xffff);
  put_le16(b, v >> 16);
}

uint32_t crc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

// A PNG chunk: length, type, data, CRC of type + data.
Bytes png_chunk(const char* type, const Bytes& data) {
  Bytes c;
  put_be32(c, static_cast<uint32_t>(data.size()));
  c.insert(c.end(), type, type + 4);
  c.insert(c.end(), data.begin(), data.end());
  put_be32(c, crc32(c.data() + 4, c.size() - 4));
  return c;
}

// A PNG written by hand: `rows` is the filtered scanline data (a filter byte 0 then the row),
// wrapped in a zlib stream of stored (uncompressed) deflate blocks.
Bytes make_png(uint32_t w, uint32_t h, int bit_depth, int color_type, const Bytes& rows) {
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes ihdr;
  put_be32(ihdr, w);
  put_be32(ihdr, h);
  ihdr.insert(ihdr.end(),
              {static_cast<uint8_t>(bit_depth), static_cast<uint8_t>(color_type), 0, 0, 0});
  Bytes png_ihdr = png_chunk("IHDR", ihdr);
  png.insert(png.end(), png_ihdr.begin(), png_ihdr.end());
  Bytes z = {0x78, 0x01};
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, rows.size() - pos);
    z.push_back(pos + n == rows.size() ? 1 : 0);
    put_le16(z, static_cast<uint32_t>(n));
    put_le16(z, static_cast<uint32_t>(~n & 0xffff));
    z.insert(z.end(), rows.begin() + pos, rows.begin() + pos + n);
    pos += n;
  } while (pos < rows.size());
  uint32_t a = 1, b = 0;
  for (uint8_t v : rows) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  put_be32(z, (b << 16) | a);
  Bytes idat = png_chunk("IDAT", z), iend = png_chunk("IEND", {});
  png.insert(png.end(), idat.begin(), idat.end());
  png.insert(png.end(), iend.begin(), iend.end());
  return png;
}

// 16-bit PNG, one row: samples given per pixel and channel, big-endian.
Bytes make_png16(int color_type, int channels, const std::vector<uint16_t>& samples) {
  Bytes rows = {0};
  for (uint16_t s : samples) put_be16(rows, s);
  return make_png(static_cast<uint32_t>(samples.size() / channels), 1, 16, color_type, rows);
}

// A TIFF structure with one IFD0 entry for tag 0x0112 (Orientation).
Bytes tiff_orientation(bool little_endian, uint32_t value, uint16_t type = 3, uint32_t count = 1) {
  Bytes t;
  auto u16 = [&](uint32_t v) { little_endian ? put_le16(t, v) : put_be16(t, v); };
  auto u32 = [&](uint32_t v) { little_endian ? put_le32(t, v) : put_be32(t, v); };
  if (little_endian) {
    t.insert(t.end(), {'I', 'I', 42, 0});
  } else {
    t.insert(t.end(), {'M', 'M', 0, 42});
  }
  u32(8);  // IFD0 offset
  u16(1);  // one entry
  u16(0x0112);
  u16(type);
  u32(count);
  if (type == 3) {  // SHORT, left-justified in the 4-byte value field
    u16(value);
    u16(0);
  } else {
    u32(value);
  }
  u32(0);  // no next IFD
  return t;
}

// Insert an APP1 "Exif\0\0" segment right after the JPEG's SOI marker.
Bytes with_exif(const Bytes& jpeg, const Bytes& tiff) {
  Bytes seg = {0xff, 0xe1};
  put_be16(seg, static_cast<uint32_t>(2 + 6 + tiff.size()));
  seg.insert(seg.end(), {'E', 'x', 'i', 'f', 0, 0});
  seg.insert(seg.end(), tiff.begin(), tiff.end());
  Bytes out = jpeg;
  out.insert(out.begin() + 2, seg.begin(), seg.end());
  return out;
}

// Insert an eXIf chunk right after a PNG's IHDR.
Bytes with_png_exif(const Bytes& png, const Bytes& tiff) {
  Bytes chunk = png_chunk("eXIf", tiff);
  Bytes out = png;
  out.insert(out.begin() + 33, chunk.begin(), chunk.end());
  return out;
}

Bytes random_pixels(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  return b;
}

// 24x16 RGB: a 3x2 grid of flat 8x8 blocks, every block a different colour (JPEG-friendly and
// asymmetric under every flip and rotation).
Bytes block_pattern() {
  Bytes px(24 * 16 * 3);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 24; ++x) {
      const int b = (y / 8) * 3 + x / 8;
      uint8_t* p = &px[(y * 24 + x) * 3];
      p[0] = static_cast<uint8_t>(30 + 40 * b);
      p[1] = static_cast<uint8_t>(220 - 35 * b);
      p[2] = static_cast<uint8_t>(b % 2 ? 200 : 60);
    }
  }
  return px;
}

Image decode_ok(const Bytes& b, const std::string& name = "mem.img") {
  auto r = decode_image(b, name);
  EXPECT_TRUE(r.ok()) << r.message();
  return r.ok() ? std::move(r).value() : Image{};
}

uint64_t fnv1a(const Bytes& b) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t v : b) h = (h ^ v) * 0x100000001b3ull;
  return h;
}

// Where source pixel (x, y) of a w x h image lands after EXIF orientation `o` (the display
// transform each value asks for, EXIF 2.32 §4.6.4 / PIL exif_transpose).
std::pair<int, int> oriented_position(int o, int x, int y, int w, int h) {
  switch (o) {
    case 2:
      return {w - 1 - x, y};  // mirrored
    case 3:
      return {w - 1 - x, h - 1 - y};  // rotated 180
    case 4:
      return {x, h - 1 - y};  // flipped vertically
    case 5:
      return {y, x};  // transposed
    case 6:
      return {h - 1 - y, x};  // rotated 90 clockwise
    case 7:
      return {h - 1 - y, w - 1 - x};  // transversed
    case 8:
      return {y, w - 1 - x};  // rotated 90 counter-clockwise
    default:
      return {x, y};
  }
}

void expect_oriented(const Image& src, const Image& out, int o) {
  const bool swap = o >= 5;
  ASSERT_EQ(out.width, swap ? src.height : src.width) << "orientation " << o;
  ASSERT_EQ(out.height, swap ? src.width : src.height) << "orientation " << o;
  int bad = 0;
  for (int y = 0; y < src.height; ++y) {
    for (int x = 0; x < src.width; ++x) {
      const auto [ox, oy] = oriented_position(o, x, y, src.width, src.height);
      bad += std::memcmp(&src.rgb[(y * src.width + x) * 3], &out.rgb[(oy * out.width + ox) * 3],
                         3) != 0;
    }
  }
  EXPECT_EQ(bad, 0) << "orientation " << o;
}

// --- formats and colour conversion
// ------------------------------------------------------------------

TEST(Image, PngRgbRoundTripsExactly) {
  const Bytes px = random_pixels(13 * 7 * 3, 1);
  const Image im = decode_ok(encode_png(13, 7, 3, px));
  EXPECT_EQ(im.width, 13);
  EXPECT_EQ(im.height, 7);
  EXPECT_EQ(im.rgb, px);
}

TEST(Image, GreyIsReplicated) {
  const Bytes g = random_pixels(9 * 4, 2);
  const Image im = decode_ok(encode_png(9, 4, 1, g));
  ASSERT_EQ(im.rgb.size(), g.size() * 3);
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_EQ(im.rgb[3 * i], g[i]);
    EXPECT_EQ(im.rgb[3 * i + 1], g[i]);
    EXPECT_EQ(im.rgb[3 * i + 2], g[i]);
  }
}

// convert("RGB") drops alpha: a fully transparent pixel keeps its colour (no white compositing).
TEST(Image, AlphaIsDroppedNotComposited) {
  Bytes la = random_pixels(6 * 5 * 2, 3), rgba = random_pixels(6 * 5 * 4, 4);
  for (size_t i = 0; i < 30; i += 2) la[2 * i + 1] = 0, rgba[4 * i + 3] = 0;
  const Image a = decode_ok(encode_png(6, 5, 2, la));
  const Image b = decode_ok(encode_png(6, 5, 4, rgba));
  for (size_t i = 0; i < 30; ++i) {
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(a.rgb[3 * i + c], la[2 * i]) << i;
      EXPECT_EQ(b.rgb[3 * i + c], rgba[4 * i + c]) << i;
    }
  }
}

// PIL: RGB/RGBA/LA 16-bit keep the high byte; 16-bit grey ("I" / "I;16") converts by clipping.
TEST(Image, Png16BitFollowsPil) {
  const std::vector<uint16_t> v = {0, 1, 127, 255, 256, 300, 0x7fff, 0x8000, 0xff00, 0xffff};
  const std::vector<uint8_t> high = {0, 0, 0, 0, 1, 1, 0x7f, 0x80, 0xff, 0xff};
  const std::vector<uint8_t> clip = {0, 1, 127, 255, 255, 255, 255, 255, 255, 255};
  std::vector<uint16_t> rgb, rgba, la;
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t g = static_cast<uint16_t>(0xffff - v[i]);
    rgb.insert(rgb.end(), {v[i], v[i], g});
    rgba.insert(rgba.end(), {v[i], g, v[i], 0x1234});
    la.insert(la.end(), {v[i], 0});
  }
  const Image grey = decode_ok(make_png16(0, 1, v));
  const Image c3 = decode_ok(make_png16(2, 3, rgb));
  const Image c4 = decode_ok(make_png16(6, 4, rgba));
  const Image c2 = decode_ok(make_png16(4, 2, la));
  ASSERT_EQ(grey.width, static_cast<int>(v.size()));
  for (size_t i = 0; i < v.size(); ++i) {
    const uint8_t hg = static_cast<uint8_t>((0xffff - v[i]) >> 8);
    EXPECT_EQ(grey.rgb[3 * i], clip[i]) << v[i];
    EXPECT_EQ(grey.rgb[3 * i + 2], clip[i]) << v[i];
    EXPECT_EQ(c3.rgb[3 * i], high[i]) << v[i];
    EXPECT_EQ(c3.rgb[3 * i + 2], hg) << v[i];
    EXPECT_EQ(c4.rgb[3 * i + 1], hg) << v[i];
    EXPECT_EQ(c4.rgb[3 * i + 2], high[i]) << v[i];
    EXPECT_EQ(c2.rgb[3 * i + 1], high[i]) << v[i];
  }
}

TEST(Image, BmpTgaPnmAreLossless) {
  const Bytes px = random_pixels(11 * 6 * 3, 5);
  EXPECT_EQ(decode_ok(encode_bmp(11, 6, 3, px)).rgb, px);
  EXPECT_EQ(decode_ok(encode_tga(11, 6, 3, px)).rgb, px);
  std::string head = "P6\n# comment\n11 6\n255\n";
  Bytes ppm(head.begin(), head.end());
  ppm.insert(ppm.end(), px.begin(), px.end());
  EXPECT_EQ(decode_ok(ppm).rgb, px);
}

// JPEG pixels must be those of PIL (libjpeg-turbo ISLOW IDCT, fancy upsampling, table colour
// conversion). Files made by Pillow 9.4; hashes of its convert("RGB") output.
constexpr uint8_t kJpeg422[] = {  // 17x6, 4:2:2 (odd width: stb's own 2h1v upsampler is off there)
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x05, 0x03, 0x04, 0x04, 0x04, 0x03, 0x05,
    0x04, 0x04, 0x04, 0x05, 0x05, 0x05, 0x06, 0x07, 0x0c, 0x08, 0x07, 0x07, 0x07, 0x07, 0x0f, 0x0b,
    0x0b, 0x09, 0x0c, 0x11, 0x0f, 0x12, 0x12, 0x11, 0x0f, 0x11, 0x11, 0x13, 0x16, 0x1c, 0x17, 0x13,
    0x14, 0x1a, 0x15, 0x11, 0x11, 0x18, 0x21, 0x18, 0x1a, 0x1d, 0x1d, 0x1f, 0x1f, 0x1f, 0x13, 0x17,
    0x22, 0x24, 0x22, 0x1e, 0x24, 0x1c, 0x1e, 0x1f, 0x1e, 0xff, 0xdb, 0x00, 0x43, 0x01, 0x05, 0x05,
    0x05, 0x07, 0x06, 0x07, 0x0e, 0x08, 0x08, 0x0e, 0x1e, 0x14, 0x11, 0x14, 0x1e, 0x1e, 0x1e, 0x1e,
    0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e,
    0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e,
    0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0xff, 0xc0,
    0x00, 0x11, 0x08, 0x00, 0x06, 0x00, 0x11, 0x03, 0x01, 0x21, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11,
    0x01, 0xff, 0xc4, 0x00, 0x16, 0x00, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x02, 0xff, 0xc4, 0x00, 0x27, 0x10, 0x00, 0x01,
    0x02, 0x04, 0x02, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02,
    0x03, 0x00, 0x04, 0x11, 0x31, 0x05, 0x06, 0x13, 0x16, 0x42, 0x51, 0x55, 0x61, 0x71, 0x81, 0x91,
    0x92, 0xd1, 0xff, 0xc4, 0x00, 0x17, 0x01, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x06, 0x07, 0x08, 0xff, 0xc4, 0x00, 0x27, 0x11,
    0x00, 0x01, 0x01, 0x06, 0x03, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x02, 0x00, 0x03, 0x05, 0x11, 0x51, 0x91, 0x21, 0x41, 0x61, 0x04, 0x06, 0x07, 0x15, 0x17,
    0x31, 0x53, 0xc1, 0xe1, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00,
    0x3f, 0x00, 0x67, 0x30, 0xd9, 0x69, 0xa7, 0xda, 0x75, 0x69, 0x04, 0xcd, 0x20, 0x96, 0xea, 0x90,
    0x69, 0xb2, 0x2b, 0x6e, 0x7b, 0xee, 0x0d, 0xc4, 0x1c, 0xd6, 0x5c, 0x4b, 0x7a, 0x29, 0x57, 0x9d,
    0x4a, 0xaa, 0x14, 0xa5, 0x24, 0x0a, 0xa4, 0x91, 0x5e, 0xf7, 0xf2, 0x00, 0xe8, 0x13, 0xf7, 0x5a,
    0x0e, 0x88, 0x8b, 0xb4, 0x85, 0x1c, 0x4e, 0x02, 0xf2, 0x15, 0xcf, 0xbe, 0x8c, 0x1e, 0x1c, 0xa4,
    0xbb, 0x53, 0xb9, 0x93, 0x73, 0x49, 0xfb, 0xbe, 0x55, 0xde, 0xa8, 0x37, 0xc3, 0xf0, 0x8f, 0x45,
    0x7c, 0x8a, 0x29, 0x3d, 0x3f, 0xd8, 0x3c, 0x8a, 0x6d, 0x07, 0xcc, 0x34, 0x37, 0xf8, 0xdf, 0xff,
    0xd9};
constexpr uint8_t kJpeg420Progressive[] = {  // 13x9, 4:2:0, progressive
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06, 0x05, 0x08,
    0x07, 0x07, 0x07, 0x09, 0x09, 0x08, 0x0a, 0x0c, 0x14, 0x0d, 0x0c, 0x0b, 0x0b, 0x0c, 0x19, 0x12,
    0x13, 0x0f, 0x14, 0x1d, 0x1a, 0x1f, 0x1e, 0x1d, 0x1a, 0x1c, 0x1c, 0x20, 0x24, 0x2e, 0x27, 0x20,
    0x22, 0x2c, 0x23, 0x1c, 0x1c, 0x28, 0x37, 0x29, 0x2c, 0x30, 0x31, 0x34, 0x34, 0x34, 0x1f, 0x27,
    0x39, 0x3d, 0x38, 0x32, 0x3c, 0x2e, 0x33, 0x34, 0x32, 0xff, 0xdb, 0x00, 0x43, 0x01, 0x09, 0x09,
    0x09, 0x0c, 0x0b, 0x0c, 0x18, 0x0d, 0x0d, 0x18, 0x32, 0x21, 0x1c, 0x21, 0x32, 0x32, 0x32, 0x32,
    0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32,
    0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32,
    0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0x32, 0xff, 0xc2,
    0x00, 0x11, 0x08, 0x00, 0x09, 0x00, 0x0d, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11,
    0x01, 0xff, 0xc4, 0x00, 0x17, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x05, 0xff, 0xc4, 0x00, 0x15, 0x01, 0x01,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03,
    0x05, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x10, 0x03, 0x10, 0x00, 0x00, 0x01, 0xb5,
    0xa2, 0x4d, 0x2f, 0xff, 0xc4, 0x00, 0x19, 0x10, 0x00, 0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x13, 0x41, 0xff, 0xda,
    0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x05, 0x02, 0x48, 0xca, 0x46, 0x9b, 0xff, 0xc4, 0x00, 0x17,
    0x11, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x05, 0x11, 0x31, 0xff, 0xda, 0x00, 0x08, 0x01, 0x03, 0x01, 0x01, 0x3f, 0x01, 0x5f,
    0x90, 0xff, 0xc4, 0x00, 0x19, 0x11, 0x01, 0x00, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x03, 0x01, 0x11, 0x13, 0xff, 0xda, 0x00, 0x08,
    0x01, 0x02, 0x01, 0x01, 0x3f, 0x01, 0xad, 0x11, 0x4f, 0x55, 0x8d, 0xcf, 0xff, 0xc4, 0x00, 0x1a,
    0x10, 0x00, 0x02, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x10, 0x31, 0x71, 0x72, 0x81, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x06,
    0x3f, 0x02, 0xae, 0xc2, 0xc8, 0xb5, 0x47, 0xff, 0xc4, 0x00, 0x1b, 0x10, 0x00, 0x02, 0x01, 0x05,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x21, 0x00, 0x10,
    0x61, 0x71, 0xd1, 0xf0, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x3f, 0x21, 0x33, 0x63,
    0x70, 0x83, 0x77, 0x39, 0xe6, 0x81, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03,
    0x00, 0x00, 0x00, 0x10, 0x47, 0xff, 0xc4, 0x00, 0x17, 0x11, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x11, 0x41, 0xff, 0xda,
    0x00, 0x08, 0x01, 0x03, 0x01, 0x01, 0x3f, 0x10, 0x14, 0x06, 0xcf, 0xff, 0xc4, 0x00, 0x18, 0x11,
    0x01, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x11, 0x00, 0x21, 0xa1, 0xff, 0xda, 0x00, 0x08, 0x01, 0x02, 0x01, 0x01, 0x3f, 0x10, 0x6b,
    0xaa, 0x42, 0x59, 0xd8, 0xe7, 0xff, 0xc4, 0x00, 0x1d, 0x10, 0x01, 0x00, 0x02, 0x02, 0x03, 0x01,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x21, 0x31, 0x00, 0x11, 0x71,
    0x91, 0xf0, 0x61, 0xe1, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x3f, 0x10, 0x87, 0x51,
    0x24, 0x84, 0xa1, 0xba, 0xa7, 0xae, 0xd0, 0xd9, 0x02, 0xbb, 0x1f, 0x75, 0x0e, 0xf4, 0xfe, 0x67,
    0xa7, 0x1c, 0xf1, 0xf3, 0x9f, 0xff, 0xd9};

TEST(Image, JpegPixelsMatchPil) {
  const Image a = decode_ok(Bytes(std::begin(kJpeg422), std::end(kJpeg422)));
  EXPECT_EQ(a.width, 17);
  EXPECT_EQ(a.height, 6);
  EXPECT_EQ(fnv1a(a.rgb), 0x19cf09996ddf2097ull);
  const Image b = decode_ok(Bytes(std::begin(kJpeg420Progressive), std::end(kJpeg420Progressive)));
  EXPECT_EQ(b.width, 13);
  EXPECT_EQ(b.height, 9);
  EXPECT_EQ(fnv1a(b.rgb), 0xff4e3fce4b99a15full);
  // 1h2v ("4:4:0"): the 4:2:2 file with its frame transposed (same MCU count, still valid).
  Bytes c(std::begin(kJpeg422), std::end(kJpeg422));
  size_t sof = 0;
  while (!(c[sof] == 0xff && c[sof + 1] == 0xc0)) ++sof;
  std::swap(c[sof + 5], c[sof + 7]);
  std::swap(c[sof + 6], c[sof + 8]);
  ASSERT_EQ(c[sof + 11], 0x21);  // Y sampling 2x1
  c[sof + 11] = 0x12;
  const Image d = decode_ok(c);
  EXPECT_EQ(d.width, 6);
  EXPECT_EQ(d.height, 17);
  EXPECT_EQ(fnv1a(d.rgb), 0x1fcec04526db42b0ull);
}

// --- EXIF orientation ---------------------------------------------------------------------------

TEST(Image, JpegExifOrientationsBothByteOrders) {
  const Bytes jpeg = encode_jpg(24, 16, 3, block_pattern(), 95);
  const Image plain = decode_ok(jpeg);
  ASSERT_EQ(plain.width, 24);
  for (bool le : {true, false}) {
    for (int o = 1; o <= 8; ++o) {
      const Bytes b = with_exif(jpeg, tiff_orientation(le, o));
      EXPECT_EQ(read_exif_orientation(b), o);
      expect_oriented(plain, decode_ok(b), o);
    }
  }
  // Sanity of the mapping on the first block's colour: orientation 6 puts the top-left block
  // at the top-right, orientation 8 at the bottom-left.
  const Image r6 = decode_ok(with_exif(jpeg, tiff_orientation(true, 6)));
  const Image r8 = decode_ok(with_exif(jpeg, tiff_orientation(true, 8)));
  EXPECT_NEAR(r6.rgb[(0 * 16 + 15) * 3], 30, 3);
  EXPECT_NEAR(r8.rgb[(23 * 16 + 0) * 3], 30, 3);
}

TEST(Image, PngExifChunk) {
  const Bytes px = block_pattern();
  const Bytes png = encode_png(24, 16, 3, px);
  const Image plain = decode_ok(png);
  for (int o = 1; o <= 8; ++o)
    expect_oriented(plain, decode_ok(with_png_exif(png, tiff_orientation(false, o))), o);
}

TEST(Image, ApplyExifOrientationOnTinyImage) {
  // 3x2 image whose pixel values are their own index: orientation 6 (rotate clockwise) gives
  // 2x3 rows [3 0], [4 1], [5 2].
  Image im{3, 2, {}};
  for (uint8_t i = 0; i < 6; ++i) im.rgb.insert(im.rgb.end(), {i, i, i});
  const Image r = apply_exif_orientation(im, 6);
  ASSERT_EQ(r.width, 2);
  ASSERT_EQ(r.height, 3);
  const uint8_t expect[] = {3, 0, 4, 1, 5, 2};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(r.rgb[3 * i], expect[i]) << i;
  for (int o : {0, 1, 9, -3}) EXPECT_EQ(apply_exif_orientation(im, o).rgb, im.rgb) << o;
}

TEST(Image, MalformedExifIsIgnored) {
  const Bytes jpeg = encode_jpg(24, 16, 3, block_pattern(), 95);
  // Bad TIFF magic; IFD0 offset past the end; value out of range; count 2; entry cut short.
  Bytes bad_magic = tiff_orientation(true, 6);
  bad_magic[2] = 43;
  Bytes bad_offset = tiff_orientation(true, 6);
  bad_offset[4] = 200;
  Bytes cut = tiff_orientation(true, 6);
  cut.resize(14);  // header + count + 4 bytes of the entry
  for (const Bytes& t :
       {bad_magic, bad_offset, tiff_orientation(true, 9), tiff_orientation(true, 0),
        tiff_orientation(true, 6, 3, 2), tiff_orientation(true, 6, 2), cut}) {
    const Bytes b = with_exif(jpeg, t);
    EXPECT_EQ(read_exif_orientation(b), 1);
    EXPECT_EQ(decode_ok(b).width, 24);
  }
  // An APP1 segment whose length runs past the file: ignored, the JPEG still decodes... or not:
  // either way no crash and no orientation.
  Bytes lying = with_exif(jpeg, tiff_orientation(true, 6));
  lying[4] = 0xff;
  EXPECT_EQ(read_exif_orientation(lying), 1);
  // LONG and BYTE types are read like PIL; the first Exif segment wins.
  EXPECT_EQ(read_exif_orientation(with_exif(jpeg, tiff_orientation(false, 8, 4))), 8);
  EXPECT_EQ(read_exif_orientation(
                with_exif(with_exif(jpeg, tiff_orientation(true, 6)), tiff_orientation(true, 3))),
            3);
  EXPECT_EQ(read_exif_orientation(Bytes{0xff, 0xd8, 0xff}), 1);
  EXPECT_EQ(read_exif_orientation(Bytes{}), 1);
}

// --- bad inputs ----------------------------------------------------------------------------------

class ImageFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsocr_image_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const Bytes& b) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
    return path;
  }
  // Loading fails with one line that names the file and contains every one of `parts`.
  void expect_refused(const std::string& name, const Bytes& b,
                      std::initializer_list<std::string> parts) {
    const std::string path = write(name, b);
    auto r = load_image(path);
    ASSERT_FALSE(r.ok()) << name << " decoded";
    const std::string& m = r.message();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << m;
  }
  fs::path dir_;
};

TEST_F(ImageFiles, LoadsFromDisk) {
  const Bytes px = random_pixels(5 * 3 * 3, 6);
  auto r = load_image(write("ok.png", encode_png(5, 3, 3, px)));
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->rgb, px);
}

TEST_F(ImageFiles, MissingFileAndDirectory) {
  auto r = load_image((dir_ / "nope.png").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("nope.png"), std::string::npos);
  EXPECT_NE(r.message().find("not found"), std::string::npos);
  auto d = load_image(dir_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.message().find(dir_.string()), std::string::npos);
}

TEST_F(ImageFiles, CorruptAndTruncated) {
  const Bytes px = random_pixels(64 * 48 * 3, 7);
  const Bytes png = encode_png(64, 48, 3, px);
  const Bytes jpg = encode_jpg(64, 48, 3, px, 90);
  expect_refused("empty.png", {}, {"empty"});
  expect_refused("text.png", Bytes{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l',
                                   'd', '!', '!', '!', '!', '!', '!', '!', '!', '!'},
                 {"not a recognised image format", "PNG"});
  Bytes garbage = png;
  for (size_t i = 41; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(i * 31);
  expect_refused("garbage.png", garbage, {"cannot decode PNG"});
  expect_refused("trunc.png", Bytes(png.begin(), png.begin() + png.size() * 6 / 10),
                 {"cannot decode PNG", "truncated"});
  expect_refused("trunc.jpg", Bytes(jpg.begin(), jpg.begin() + jpg.size() * 6 / 10),
                 {"cannot decode JPEG"});
  expect_refused("header_only.png", Bytes(png.begin(), png.begin() + 20), {"truncated PNG header"});
  expect_refused("no_sof.jpg", Bytes{0xff, 0xd8, 0xff, 0xd9}, {"no JPEG frame header"});
  // A Huffman table claiming more than 256 codes (stb 2.27 would write past its tables).
  Bytes dht = jpg;
  size_t p = 2;
  while (!(dht[p] == 0xff && dht[p + 1] == 0xc4)) ++p;
  dht[p + 5] = dht[p + 6] = 200;  // counts of code lengths 1 and 2 of the first table
  expect_refused("dht.jpg", dht, {"Huffman table with", "corrupt"});
}

TEST_F(ImageFiles, SizeLimitsBeforeDecoding) {
  // Headers that claim a size; the pixel data (one tiny row) could never satisfy them, so an
  // error about the limit proves the header was checked first.
  expect_refused("zero.png", make_png(0, 5, 8, 2, Bytes{0}), {"0x5", "at least one pixel"});
  expect_refused("huge.png", make_png(50000, 50000, 8, 2, Bytes{0, 1, 2, 3}),
                 {"50000x50000", "40000"});
  expect_refused("wide.png", make_png(40001, 1, 8, 0, Bytes{0, 1}), {"40001x1"});
  expect_refused("mp.png", make_png(15000, 15000, 8, 2, Bytes{0, 1, 2, 3}),
                 {"15000x15000", "megapixel"});
  Bytes jpg = encode_jpg(8, 8, 3, random_pixels(8 * 8 * 3, 8), 90);
  size_t sof = 0;
  while (!(jpg[sof] == 0xff && jpg[sof + 1] == 0xc0)) ++sof;
  jpg[sof + 5] = jpg[sof + 7] = 0xc3;  // 50000 = 0xc350
  jpg[sof + 6] = jpg[sof + 8] = 0x50;
  expect_refused("huge.jpg", jpg, {"JPEG", "50000x50000", "40000"});
  Bytes bmp = encode_bmp(4, 4, 3, random_pixels(48, 9));
  bmp[18] = 0x50, bmp[19] = 0xc3, bmp[20] = bmp[21] = 0;
  expect_refused("huge.bmp", bmp, {"BMP", "50000x4"});
}

TEST_F(ImageFiles, UnsupportedFormats) {
  expect_refused("a.gif", Bytes{'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0},
                 {"GIF", "not supported", "PNG, JPEG"});
  expect_refused("a.webp",
                 Bytes{'R', 'I', 'F', 'F', 30, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', ' '},
                 {"WebP"});
  expect_refused("a.tif", Bytes{'I', 'I', 42, 0, 8, 0, 0, 0}, {"TIFF"});
  expect_refused("a.pdf", Bytes{'%', 'P', 'D', 'F', '-', '1', '.', '7'}, {"PDF"});
  expect_refused("ascii.ppm", Bytes{'P', '3', '\n', '1', ' ', '1', '\n', '2', '5', '5', '\n'},
                 {"PNM"});
  const std::string p16 = "P5 2 1 65535\n";
  Bytes pgm(p16.begin(), p16.end());
  pgm.insert(pgm.end(), {0, 1, 2, 3});
  expect_refused("deep.pgm", pgm, {"maxval 65535"});
}

}  // namespace
}  // namespace dsocr
