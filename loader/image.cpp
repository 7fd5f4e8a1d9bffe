// Image decoding: stb_image for the pixels, our own code for the header checks, the EXIF
// orientation and PIL's colour conversions (see image.h).
#include "loader/image.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>
#include <utility>

#include "stb/stb_image.h"

namespace dsocr {
namespace {

constexpr const char* kSupported = "supported: PNG, JPEG, BMP, TGA, binary PNM (P5/P6)";

enum class Format { kPng, kJpeg, kBmp, kTga, kPnm };

// The usual extensions of the formats in kSupported.
constexpr std::string_view kExtensions[] = {".png", ".jpg", ".jpeg", ".bmp",
                                            ".tga", ".pnm", ".ppm",  ".pgm"};

const char* format_name(Format f) {
  switch (f) {
    case Format::kPng:
      return "PNG";
    case Format::kJpeg:
      return "JPEG";
    case Format::kBmp:
      return "BMP";
    case Format::kTga:
      return "TGA";
    case Format::kPnm:
      return "PNM";
  }
  return "?";
}

struct Header {
  Format format = Format::kPng;
  int64_t width = 0;
  int64_t height = 0;
  int png_bit_depth = 8;
  int png_color_type = 2;  // 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
  int pnm_maxval = 255;
};

uint32_t be16(const uint8_t* p) {
  return (uint32_t{p[0]} << 8) | p[1];
}
uint32_t be32(const uint8_t* p) {
  return (be16(p) << 16) | be16(p + 2);
}
uint32_t le16(const uint8_t* p) {
  return (uint32_t{p[1]} << 8) | p[0];
}
uint32_t le32(const uint8_t* p) {
  return (le16(p + 2) << 16) | le16(p);
}

bool starts_with(std::span<const uint8_t> b, std::string_view magic, size_t at = 0) {
  return b.size() >= at + magic.size() &&
         std::memcmp(b.data() + at, magic.data(), magic.size()) == 0;
}

// Formats we recognise but do not decode (so the message can name them).
const char* unsupported_format(std::span<const uint8_t> b) {
  if (starts_with(b, "GIF87a") || starts_with(b, "GIF89a")) return "GIF";
  if (starts_with(b, "RIFF") && starts_with(b, "WEBP", 8)) return "WebP";
  if (starts_with(b, std::string_view("II*\0", 4)) || starts_with(b, std::string_view("MM\0*", 4)))
    return "TIFF";
  if (starts_with(b, "8BPS")) return "PSD";
  if (starts_with(b, "#?RADIANCE") || starts_with(b, "#?RGBE")) return "HDR";
  if (starts_with(b, "%PDF")) return "PDF (render the pages to PNG first)";
  if (starts_with(b, "ftyp", 4)) return "HEIF/AVIF";
  if (starts_with(b, std::string_view("\0\0\0\x0cjP  ", 8))) return "JPEG 2000";
  if (starts_with(b, "\xff\x0a") || starts_with(b, std::string_view("\0\0\0\x0cJXL ", 8)))
    return "JPEG XL";
  if (starts_with(b, "qoif")) return "QOI";
  if (b.size() >= 2 && b[0] == 'P' &&
      (b[1] == '1' || b[1] == '2' || b[1] == '3' || b[1] == '4' || b[1] == '7'))
    return "ASCII/bitmap PNM (P1-P4, P7)";
  return nullptr;
}

// JPEG: walk the markers up to the first SOFn (baseline, progressive, lossless, arithmetic...).
Expected<Header> jpeg_header(std::span<const uint8_t> b) {
  size_t pos = 2;
  while (pos + 4 <= b.size()) {
    if (b[pos] != 0xFF) return Status::Error("JPEG marker expected");
    const uint8_t m = b[pos + 1];
    if (m == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    pos += 2;
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;  // standalone markers
    if (m == 0xD9 || m == 0xDA) break;                    // EOI / SOS before any frame header
    const uint32_t len = be16(&b[pos]);
    if (len < 2 || pos + len > b.size()) return Status::Error("truncated JPEG header");
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (len < 8) return Status::Error("truncated JPEG frame header");
      Header h;
      h.format = Format::kJpeg;
      h.height = be16(&b[pos + 3]);
      h.width = be16(&b[pos + 5]);
      return h;
    }
    pos += len;
  }
  return Status::Error("no JPEG frame header (SOF) found");
}

// Walk every JPEG segment (skipping entropy-coded data after each SOS) and check each Huffman
// table's code count. stb_image 2.27 trusts the 16 DHT counts and builds its tables in fixed
// 257-entry arrays, so a crafted file with more than 256 codes writes out of bounds; stb 2.28+
// refuses it, and so do we, before stb sees the file.
Status check_jpeg_segments(std::span<const uint8_t> b) {
  size_t pos = 2;
  while (pos + 4 <= b.size()) {
    if (b[pos] != 0xFF) return Status::Error("corrupt JPEG: marker expected");
    const uint8_t m = b[pos + 1];
    if (m == 0xFF) {
      ++pos;
      continue;
    }
    pos += 2;
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;
    if (m == 0xD9) break;
    const size_t len = be16(&b[pos]);
    if (len < 2 || pos + len > b.size()) break;  // truncated: stb reports it
    if (m == 0xC4) {
      size_t p = pos + 2;
      const size_t end = pos + len;
      while (p < end) {
        if (end - p < 17) return Status::Error("corrupt JPEG: truncated Huffman table");
        size_t n = 0;
        for (int i = 1; i <= 16; ++i) n += b[p + i];
        if (n > 256) {
          return Status::Error(strfmt("corrupt JPEG: Huffman table with %zu codes (max 256)", n));
        }
        p += 17 + n;
      }
    }
    pos += len;
    if (m == 0xDA) {  // entropy-coded data runs to the next marker (not a stuffed 0xFF00 or RSTn)
      while (pos + 1 < b.size() &&
             !(b[pos] == 0xFF && b[pos + 1] != 0 && (b[pos + 1] < 0xD0 || b[pos + 1] > 0xD7))) {
        ++pos;
      }
    }
  }
  return Status::Ok();
}

// PNM: "P5"/"P6", whitespace and #-comments, width, height, maxval.
Expected<Header> pnm_header(std::span<const uint8_t> b) {
  size_t pos = 2;
  int64_t v[3] = {0, 0, 0};
  for (int i = 0; i < 3; ++i) {
    while (pos < b.size()) {
      if (b[pos] == '#') {
        while (pos < b.size() && b[pos] != '\n' && b[pos] != '\r') ++pos;
      } else if (b[pos] == ' ' || (b[pos] >= '\t' && b[pos] <= '\r')) {
        ++pos;
      } else {
        break;
      }
    }
    if (pos >= b.size() || b[pos] < '0' || b[pos] > '9') return Status::Error("bad PNM header");
    while (pos < b.size() && b[pos] >= '0' && b[pos] <= '9') {
      v[i] = v[i] * 10 + (b[pos++] - '0');
      if (v[i] > INT_MAX) return Status::Error("bad PNM header (number too large)");
    }
  }
  Header h;
  h.format = Format::kPnm;
  h.width = v[0];
  h.height = v[1];
  h.pnm_maxval = static_cast<int>(v[2]);
  return h;
}

// Identify the format from the magic bytes and read the declared size, without decoding pixels.
Expected<Header> read_header(std::span<const uint8_t> b) {
  Header h;
  if (starts_with(b, "\x89PNG\r\n\x1a\n")) {
    if (b.size() < 33 || !starts_with(b, "IHDR", 12)) return Status::Error("truncated PNG header");
    h.format = Format::kPng;
    h.width = be32(&b[16]);
    h.height = be32(&b[20]);
    h.png_bit_depth = b[24];
    h.png_color_type = b[25];
    return h;
  }
  if (starts_with(b, "\xff\xd8\xff")) return jpeg_header(b);
  if (starts_with(b, "BM")) {
    if (b.size() < 26) return Status::Error("truncated BMP header");
    h.format = Format::kBmp;
    if (le32(&b[14]) == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
      h.width = le16(&b[18]);
      h.height = le16(&b[20]);
    } else {
      h.width = static_cast<int32_t>(le32(&b[18]));
      const int64_t y = static_cast<int32_t>(le32(&b[22]));
      h.height = y < 0 ? -y : y;  // negative height = top-down rows
    }
    return h;
  }
  if (starts_with(b, "P5") || starts_with(b, "P6")) return pnm_header(b);
  if (const char* other = unsupported_format(b)) {
    return Status::Error(
        strfmt("%s images are not supported (%s); convert the image to PNG", other, kSupported));
  }
  // TGA has no magic number: accept it when stb's TGA header check passes (as PIL, which also
  // tries its TGA parser on files no other plugin claims).
  int w = 0, hh = 0, comp = 0;
  if (b.size() >= 18 && b.size() <= INT_MAX &&
      stbi_info_from_memory(b.data(), static_cast<int>(b.size()), &w, &hh, &comp)) {
    h.format = Format::kTga;
    h.width = le16(&b[12]);
    h.height = le16(&b[14]);
    return h;
  }
  return Status::Error(
      strfmt("not a recognised image format (%s); convert the image to PNG", kSupported));
}

struct StbFree {
  void operator()(void* p) const { stbi_image_free(p); }
};

// --- EXIF --------------------------------------------------------------------------------------

// Orientation from a TIFF structure ("II*\0" or "MM\0*", IFD0 offset, 12-byte entries), read the
// way PIL's ImageFileDirectory_v2.load does: entries are read in order until the data runs out
// (what was read before stays valid); a later entry with the same tag replaces an earlier one;
// integer types with count 1 give the value; any other count gives no orientation.
int tiff_orientation(std::span<const uint8_t> t) {
  if (t.size() < 8) return 1;
  bool le;
  if (t[0] == 'I' && t[1] == 'I' && t[2] == 42 && t[3] == 0) {
    le = true;
  } else if (t[0] == 'M' && t[1] == 'M' && t[2] == 0 && t[3] == 42) {
    le = false;
  } else {
    return 1;
  }
  auto u16 = [&](size_t off) { return le ? le16(&t[off]) : be16(&t[off]); };
  auto u32 = [&](size_t off) { return le ? le32(&t[off]) : be32(&t[off]); };
  const uint64_t ifd = u32(4);
  if (ifd + 2 > t.size()) return 1;
  const uint32_t n = u16(ifd);
  int64_t orientation = 1;
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t e = ifd + 2 + 12ull * i;
    if (e + 12 > t.size()) break;
    if (u16(e) != 0x0112) continue;
    const uint32_t type = u16(e + 2), count = u32(e + 4);
    int64_t v;
    if (type == 1) {  // BYTE
      v = t[e + 8];
    } else if (type == 6) {  // SBYTE
      v = static_cast<int8_t>(t[e + 8]);
    } else if (type == 3) {  // SHORT (the normal case)
      v = u16(e + 8);
    } else if (type == 8) {  // SSHORT
      v = static_cast<int16_t>(u16(e + 8));
    } else if (type == 4) {  // LONG
      v = u32(e + 8);
    } else if (type == 9) {  // SLONG
      v = static_cast<int32_t>(u32(e + 8));
    } else {
      continue;  // other types: PIL ignores unknown ones; the rest are not plain integers
    }
    orientation = count == 1 ? v : 0;
  }
  return orientation >= 1 && orientation <= 8 ? static_cast<int>(orientation) : 1;
}

int jpeg_exif_orientation(std::span<const uint8_t> b) {
  size_t pos = 2;
  while (pos + 4 <= b.size()) {
    if (b[pos] != 0xFF) return 1;
    const uint8_t m = b[pos + 1];
    if (m == 0xFF) {
      ++pos;
      continue;
    }
    pos += 2;
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;
    if (m == 0xD9 || m == 0xDA) return 1;
    const uint32_t len = be16(&b[pos]);
    if (len < 2 || pos + len > b.size()) return 1;
    // PIL keeps the first APP1 segment that starts with "Exif\0\0".
    if (m == 0xE1 && len >= 8 && std::memcmp(&b[pos + 2], "Exif\0\0", 6) == 0) {
      return tiff_orientation(b.subspan(pos + 8, len - 8));
    }
    pos += len;
  }
  return 1;
}

int png_exif_orientation(std::span<const uint8_t> b) {
  size_t pos = 8;
  while (pos + 12 <= b.size()) {
    const uint64_t len = be32(&b[pos]);
    if (len > b.size() - pos - 12) return 1;
    if (std::memcmp(&b[pos + 4], "eXIf", 4) == 0) return tiff_orientation(b.subspan(pos + 8, len));
    if (std::memcmp(&b[pos + 4], "IEND", 4) == 0) return 1;
    pos += 12 + len;
  }
  return 1;
}

}  // namespace

int read_exif_orientation(std::span<const uint8_t> bytes) {
  if (starts_with(bytes, "\xff\xd8\xff")) return jpeg_exif_orientation(bytes);
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n")) return png_exif_orientation(bytes);
  return 1;
}

// Source pixel of output pixel (ox, oy) of a w x h image, per PIL Image.transpose method.
static std::pair<int, int> transposed_source(int orientation, int ox, int oy, int w, int h) {
  switch (orientation) {
    case 2:  // FLIP_LEFT_RIGHT
      return {w - 1 - ox, oy};
    case 3:  // ROTATE_180
      return {w - 1 - ox, h - 1 - oy};
    case 4:  // FLIP_TOP_BOTTOM
      return {ox, h - 1 - oy};
    case 5:  // TRANSPOSE
      return {oy, ox};
    case 6:  // ROTATE_270 (90 degrees clockwise)
      return {oy, h - 1 - ox};
    case 7:  // TRANSVERSE
      return {w - 1 - oy, h - 1 - ox};
    case 8:  // ROTATE_90 (counter-clockwise)
      return {w - 1 - oy, ox};
    default:
      return {ox, oy};
  }
}

Image apply_exif_orientation(const Image& in, int orientation) {
  if (orientation < 2 || orientation > 8) return in;
  const int w = in.width, h = in.height;
  const bool swap = orientation >= 5;  // 5..8 exchange width and height
  Image out;
  out.width = swap ? h : w;
  out.height = swap ? w : h;
  out.rgb.resize(in.rgb.size());
  for (int oy = 0; oy < out.height; ++oy) {
    for (int ox = 0; ox < out.width; ++ox) {
      const auto [sx, sy] = transposed_source(orientation, ox, oy, w, h);
      const size_t o = (static_cast<size_t>(oy) * out.width + ox) * 3;
      const size_t s = (static_cast<size_t>(sy) * w + sx) * 3;
      std::memcpy(&out.rgb[o], &in.rgb[s], 3);
    }
  }
  return out;
}

Expected<Image> decode_image(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.empty()) return Status::Error(name + ": empty file; expected an image");
  if (bytes.size() > static_cast<size_t>(std::min<int64_t>(kMaxImageFileBytes, INT_MAX))) {
    return Status::Error(strfmt("%s: %zu bytes is over the %lld-byte image file limit",
                                name.c_str(), bytes.size(),
                                static_cast<long long>(kMaxImageFileBytes)));
  }
  auto header = read_header(bytes);
  if (!header.ok()) {
    // Header problems that carry no advice of their own (e.g. "truncated PNG header").
    const std::string& why = header.message();
    return Status::Error(
        name + ": " + why +
        (why.find("; ") == std::string::npos ? "; the file is corrupt or truncated" : ""));
  }
  const Header& h = *header;
  const char* fmt = format_name(h.format);

  if (h.width <= 0 || h.height <= 0) {
    return Status::Error(strfmt(
        "%s: %s header declares a %lldx%lld image; an image needs at least one pixel", name.c_str(),
        fmt, static_cast<long long>(h.width), static_cast<long long>(h.height)));
  }
  if (h.width > kMaxImageSide || h.height > kMaxImageSide) {
    return Status::Error(strfmt(
        "%s: %s is %lldx%lld, over the %d px per side limit; downscale it first", name.c_str(), fmt,
        static_cast<long long>(h.width), static_cast<long long>(h.height), kMaxImageSide));
  }
  if (h.width * h.height > kMaxImagePixels) {
    return Status::Error(strfmt(
        "%s: %s is %lldx%lld (%.1f megapixels), over the %lld megapixel limit; downscale it first",
        name.c_str(), fmt, static_cast<long long>(h.width), static_cast<long long>(h.height),
        h.width * h.height / 1e6, static_cast<long long>(kMaxImagePixels / 1'000'000)));
  }
  if (h.format == Format::kJpeg) {
    if (Status st = check_jpeg_segments(bytes); !st.ok()) {
      return Status::Error(name + ": " + st.message() + "; the file is corrupt");
    }
  }
  if (h.format == Format::kPnm && h.pnm_maxval != 255) {
    // PIL rescales other maxvals to 0..255 (and maps 16-bit grey to mode I); stb does not.
    return Status::Error(
        strfmt("%s: PNM with maxval %d is not supported (only 255); convert the image to PNG",
               name.c_str(), h.pnm_maxval));
  }

  const auto* data = bytes.data();
  const int len = static_cast<int>(bytes.size());
  int w = 0, hh = 0, comp = 0;
  Image img;
  if (h.format == Format::kPng && h.png_bit_depth == 16) {
    // 16-bit PNG, the way PIL opens and converts it (PngImagePlugin modes, then convert("RGB")):
    //   RGB / RGBA (colour types 2, 6) open as "RGB"/"RGBA" through the "RGB;16B"/"RGBA;16B"
    //   unpackers, which keep the high byte: v8 = v16 >> 8. Grey+alpha (type 4) opens as "RGBA"
    //   via "LA;16B", also the high byte. Grey (type 0) opens as "I" (Pillow < 11) or "I;16"
    //   (newer); both convert to RGB by clipping, not scaling: v8 = min(v16, 255), so a typical
    //   16-bit grey scan becomes almost white. Checked against Pillow 9.4 and Pillow's I16_RGB.
    std::unique_ptr<uint16_t, StbFree> px(stbi_load_16_from_memory(data, len, &w, &hh, &comp, 4));
    if (!px) {
      return Status::Error(
          strfmt("%s: cannot decode 16-bit PNG: %s; the file is corrupt or truncated", name.c_str(),
                 stbi_failure_reason()));
    }
    if (w != h.width || hh != h.height) return Status::Error(name + ": PNG size changed in decode");
    img.width = w;
    img.height = hh;
    img.rgb.resize(static_cast<size_t>(w) * hh * 3);
    const size_t n = static_cast<size_t>(w) * hh;
    const uint16_t* p = px.get();
    if (h.png_color_type == 0) {
      for (size_t i = 0; i < n; ++i) {
        const uint8_t v = static_cast<uint8_t>(std::min<uint16_t>(p[i * 4], 255));
        img.rgb[i * 3 + 0] = img.rgb[i * 3 + 1] = img.rgb[i * 3 + 2] = v;
      }
    } else {
      for (size_t i = 0; i < n; ++i) {
        for (int c = 0; c < 3; ++c) img.rgb[i * 3 + c] = static_cast<uint8_t>(p[i * 4 + c] >> 8);
      }
    }
  } else {
    // 8-bit (and 1/2/4-bit PNG, scaled to 0..255 like PIL's "1"/"L;2"/"L;4" unpackers). With 3
    // requested channels stb replicates grey, drops alpha and expands palettes: exactly
    // convert("RGB") for L, LA, RGBA, P and RGB.
    std::unique_ptr<uint8_t, StbFree> px(stbi_load_from_memory(data, len, &w, &hh, &comp, 3));
    if (!px) {
      return Status::Error(strfmt("%s: cannot decode %s: %s; the file is corrupt or truncated",
                                  name.c_str(), fmt, stbi_failure_reason()));
    }
    if (w != h.width || hh != h.height) {
      return Status::Error(strfmt("%s: %s header says %lldx%lld but the decoder read %dx%d",
                                  name.c_str(), fmt, static_cast<long long>(h.width),
                                  static_cast<long long>(h.height), w, hh));
    }
    img.width = w;
    img.height = hh;
    img.rgb.assign(px.get(), px.get() + static_cast<size_t>(w) * hh * 3);
  }
  const int orientation = read_exif_orientation(bytes);
  if (orientation >= 2 && orientation <= 8) img = apply_exif_orientation(img, orientation);
  return img;
}

bool has_image_extension(std::string_view path) {
  const size_t dot = path.rfind('.');
  if (dot == std::string_view::npos || path.find('/', dot) != std::string_view::npos) return false;
  std::string ext(path.substr(dot));
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return std::find(std::begin(kExtensions), std::end(kExtensions), ext) != std::end(kExtensions);
}

std::string image_extensions_text() {
  std::string s;
  for (std::string_view e : kExtensions) s += (s.empty() ? "" : ", ") + std::string(e);
  return s;
}

Expected<Image> load_image(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return Status::Error(path + ": image file not found; check the path");
  }
  if (!std::filesystem::is_regular_file(status)) {
    return Status::Error(path + ": not a regular file; pass an image file");
  }
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f)
    return Status::Error(path + ": cannot open image: " + std::strerror(errno) +
                         "; check the file's permissions");
  if (std::fseek(f.get(), 0, SEEK_END) != 0) return Status::Error(path + ": cannot seek");
  const long size = std::ftell(f.get());
  if (size < 0) return Status::Error(path + ": cannot read the file size");
  if (size > kMaxImageFileBytes) {
    return Status::Error(strfmt("%s: %ld bytes is over the %lld-byte image file limit",
                                path.c_str(), size, static_cast<long long>(kMaxImageFileBytes)));
  }
  std::rewind(f.get());
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && std::fread(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
    return Status::Error(path + ": read error: " + std::strerror(errno));
  }
  return decode_image(bytes, path);
}

}  // namespace dsocr
