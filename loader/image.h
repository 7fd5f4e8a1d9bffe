// Image input: file bytes -> RGB8 pixels, the way the official code opens an image.
//
// The official HF/vLLM code does `ImageOps.exif_transpose(Image.open(path)).convert("RGB")`
// (MODEL.md §5.1; when exif_transpose raises, it keeps the image as opened). dsocr reproduces
// that with stb_image plus the conversions PIL applies:
//   * formats: PNG, JPEG, BMP, TGA, binary PNM (P5/P6, maxval 255). Anything else is refused with
//     a message naming the file and the supported formats.
//   * size: read from the header first; a side of 0 or > kMaxImageSide, or more than
//     kMaxImagePixels pixels, is refused before any pixel is decoded.
//   * orientation: the EXIF Orientation tag (IFD0, 0x0112) of a JPEG's first APP1 "Exif" segment
//     or of a PNG eXIf chunk is applied like ImageOps.exif_transpose. Malformed EXIF is ignored.
//   * colour: convert("RGB") — grey is replicated; alpha is dropped, never composited.
//     16-bit PNG: see decode_image in image.cpp for PIL's rule.
// PNG, BMP, TGA and PNM pixels are lossless and match PIL exactly. JPEG pixels depend on the
// decoder (PIL uses libjpeg-turbo; stb_image has its own IDCT, chroma upsampling and colour
// conversion), so they differ from PIL by a few units.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loader/status.h"

namespace dsocr {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // [height, width, 3] RGB8, row-major
};

constexpr int kMaxImageSide = 40000;               // px per side
constexpr int64_t kMaxImagePixels = 200'000'000;   // width * height
constexpr int64_t kMaxImageFileBytes = 1ll << 30;  // 1 GiB (a 200 MP BMP is 600 MB)

// The file-name extensions of the formats above: .png .jpg .jpeg .bmp .tga .pnm .ppm .pgm.
// dsocr-run takes these files from a directory; the format itself is still read from the bytes.
bool has_image_extension(std::string_view path);  // case-insensitive
// The same list as text, for messages: ".png, .jpg, .jpeg, .bmp, .tga, .pnm, .ppm, .pgm".
std::string image_extensions_text();

// Read and decode an image file. Errors name the path.
Expected<Image> load_image(const std::string& path);

// Decode an in-memory image; `name` is used in error messages.
Expected<Image> decode_image(std::span<const uint8_t> bytes, const std::string& name);

// EXIF orientation (1..8) of a JPEG (first APP1 "Exif\0\0" segment) or PNG (eXIf chunk); 1 when
// there is none, or when the EXIF data is malformed.
int read_exif_orientation(std::span<const uint8_t> bytes);

// Apply an EXIF orientation like PIL's ImageOps.exif_transpose: 2 mirror, 3 rotate 180,
// 4 flip vertically, 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 90°
// counter-clockwise. Any other value returns the image unchanged.
Image apply_exif_orientation(const Image& image, int orientation);

}  // namespace dsocr
