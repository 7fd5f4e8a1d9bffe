// Image preprocessing (see preprocess.h). Reproduces, bit for bit:
//   * Pillow's ImagingResample for 8-bit images (src/libImaging/Resample.c: precompute_coeffs,
//     normalize_coeffs_8bpc, ImagingResampleHorizontal_8bpc / Vertical_8bpc, ImagingResampleInner)
//     with the BICUBIC filter, which is what `Image.resize(size)` uses for RGB images;
//   * ImageOps.contain / ImageOps.pad (Pillow ImageOps.py);
//   * dynamic_preprocess / find_closest_aspect_ratio of the official deepseek_ocr code;
//   * torchvision ToTensor + Normalize followed by the BF16 cast.
// Checked against the official outputs in ../shared/golden (tests/golden/preprocess_golden_test).
#include "runtime/preprocess.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "kernels/parallel.h"
#include "loader/bf16.h"

namespace dsocr {
namespace {

constexpr ModeSpec kModes[] = {
    {Mode::kTiny, "tiny", 512, 512, false},           {Mode::kSmall, "small", 640, 640, false},
    {Mode::kBase, "base", 1024, 1024, false},         {Mode::kLarge, "large", 1280, 1280, false},
    {Mode::kGundam, "gundam", 1024, kTileSize, true},
};

// Largest output side resize_bicubic accepts (a 9x1 tile grid is 5760 px; views are <= 1280).
constexpr int kMaxResizeSide = 1 << 15;

// Python's round() on a float: round half to even (exact: x - floor(x) is exact here).
int64_t py_round(double x) {
  const double f = std::floor(x);
  const double d = x - f;
  if (d > 0.5) return static_cast<int64_t>(f) + 1;
  if (d < 0.5) return static_cast<int64_t>(f);
  return std::fmod(f, 2.0) == 0.0 ? static_cast<int64_t>(f) : static_cast<int64_t>(f) + 1;
}

// --- Pillow BICUBIC resampling ------------------------------------------------------------------

// Keys cubic convolution, a = -0.5, support 2 (Resample.c bicubic_filter; same expression order).
double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// 8 bits of result, 2 bits of headroom for filters whose weights sum above 1 or go negative.
constexpr int kPrecisionBits = 32 - 8 - 2;

// Fixed-point filter taps for one axis: output pixel i reads `count[i]` input pixels from
// `first[i]` with weights k[i * ksize ...].
struct Coeffs {
  int ksize = 0;
  std::vector<int> first;  // [out_size]
  std::vector<int> count;  // [out_size]
  std::vector<int32_t> k;  // [out_size, ksize]
};

// precompute_coeffs + normalize_coeffs_8bpc for box (0, in_size) and the BICUBIC filter. The double
// arithmetic follows Pillow's expressions term by term (box edges are C floats there).
Coeffs precompute_coeffs(int in_size, int out_size) {
  constexpr double kFilterSupport = 2.0;
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  const double scale = static_cast<double>(in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;  // widen the kernel when downscaling
  const double support = kFilterSupport * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // C truncation, as Pillow
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = bicubic_filter((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    int32_t* k = &c.k[static_cast<size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      // normalize_coeffs_8bpc: round half away from zero to 22 fractional bits.
      k[x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                   : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

// Pillow's clip8: arithmetic shift out the fraction, clamp to [0, 255].
inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// ImagingResampleHorizontal_8bpc, RGB: rows [y0, y0 + rows) of src -> dst [rows, out_w, 3].
void resample_horizontal(const uint8_t* src,  // [*, src_w, 3]
                         int src_w, int y0, int rows, const Coeffs& c, int out_w,
                         uint8_t* dst) {  // [rows, out_w, 3]
  parallel_for(
      rows,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const uint8_t* in = src + static_cast<size_t>(y0 + r) * src_w * 3;
          uint8_t* out = dst + static_cast<size_t>(r) * out_w * 3;
          for (int xx = 0; xx < out_w; ++xx) {
            const int32_t* k = &c.k[static_cast<size_t>(xx) * c.ksize];
            const uint8_t* p = in + static_cast<size_t>(c.first[xx]) * 3;
            const int n = c.count[xx];
            int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < n; ++x) {
              s0 += p[3 * x + 0] * k[x];
              s1 += p[3 * x + 1] * k[x];
              s2 += p[3 * x + 2] * k[x];
            }
            out[3 * xx + 0] = clip8(s0);
            out[3 * xx + 1] = clip8(s1);
            out[3 * xx + 2] = clip8(s2);
          }
        }
      },
      8);
}

// ImagingResampleVertical_8bpc, RGB: src [*, w, 3] -> dst [out_h, w, 3]; output row yy reads
// src rows first[yy] - y_offset ... (the horizontal pass produced only the rows in use). The
// integer sums are exact (no overflow), so the loop order does not change the result.
void resample_vertical(const uint8_t* src,  // [*, w, 3]
                       int w, int y_offset, const Coeffs& c, int out_h,
                       uint8_t* dst) {  // [out_h, w, 3]
  const size_t row = static_cast<size_t>(w) * 3;
  parallel_for(
      out_h,
      [&](int64_t begin, int64_t end) {
        std::vector<int32_t> acc(row);
        for (int64_t yy = begin; yy < end; ++yy) {
          const int32_t* k = &c.k[static_cast<size_t>(yy) * c.ksize];
          std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
          for (int y = 0; y < c.count[yy]; ++y) {
            const uint8_t* p = src + static_cast<size_t>(c.first[yy] - y_offset + y) * row;
            const int32_t ky = k[y];
            for (size_t i = 0; i < row; ++i) acc[i] += p[i] * ky;
          }
          uint8_t* out = dst + static_cast<size_t>(yy) * row;
          for (size_t i = 0; i < row; ++i) out[i] = clip8(acc[i]);
        }
      },
      4);
}

Status check_image(const Image& im, const char* what) {
  if (im.width < 1 || im.height < 1 ||
      im.rgb.size() != static_cast<size_t>(im.width) * im.height * 3) {
    return Status::Error(strfmt("%s: image is %dx%d with %zu bytes; expected width*height*3 bytes",
                                what, im.width, im.height, im.rgb.size()));
  }
  return Status::Ok();
}

// Copy a [size, size] window at (x0, y0) of an RGB image.
void crop_into(const Image& src, int x0, int y0, int size, uint8_t* dst) {
  for (int y = 0; y < size; ++y) {
    std::memcpy(dst + static_cast<size_t>(y) * size * 3,
                &src.rgb[(static_cast<size_t>(y0 + y) * src.width + x0) * 3],
                static_cast<size_t>(size) * 3);
  }
}

// (w_t, h_t) candidates in the order the official code walks them: the CPython set
//   {(i, j) for n in range(2, max+1) for i in range(1, n+1) for j in range(1, n+1)
//    if 2 <= i*j <= max}
// sorted by i*j (a stable sort, so equal products keep the set's iteration order). The set order
// depends on CPython's tuple hash (xxHash-based, unchanged since 3.8) and set table layout; these
// lists were printed by CPython 3.11.7 (MODEL.md §5.4 lists the same for 6 and 9). Other maxima
// are refused rather than guessed. The order within a product matters only on exact ties: for
// every image up to 4000x4000 and every max in 2..9 these lists choose the same grid as a
// lexicographic order would (checked exhaustively with the Python logic), but not as the reverse
// one (max 2 and 3: (1,2) vs (2,1) at aspect 1.25).
using Ratio = std::pair<int, int>;
constexpr Ratio kOrder2[] = {{1, 2}, {2, 1}};
constexpr Ratio kOrder3[] = {{1, 2}, {2, 1}, {3, 1}, {1, 3}};
constexpr Ratio kOrder4[] = {{1, 2}, {2, 1}, {3, 1}, {1, 3}, {4, 1}, {1, 4}, {2, 2}};
constexpr Ratio kOrder5[] = {{1, 2}, {2, 1}, {3, 1}, {1, 3}, {4, 1},
                             {1, 4}, {2, 2}, {1, 5}, {5, 1}};
constexpr Ratio kOrder6[] = {{1, 2}, {2, 1}, {3, 1}, {1, 3}, {4, 1}, {1, 4}, {2, 2},
                             {1, 5}, {5, 1}, {6, 1}, {2, 3}, {1, 6}, {3, 2}};
constexpr Ratio kOrder7[] = {{1, 2}, {2, 1}, {3, 1}, {1, 3}, {4, 1}, {1, 4}, {2, 2}, {1, 5},
                             {5, 1}, {6, 1}, {2, 3}, {1, 6}, {3, 2}, {7, 1}, {1, 7}};
constexpr Ratio kOrder8[] = {{1, 2}, {2, 1}, {3, 1}, {1, 3}, {2, 2}, {4, 1}, {1, 4},
                             {5, 1}, {1, 5}, {1, 6}, {6, 1}, {3, 2}, {2, 3}, {7, 1},
                             {1, 7}, {4, 2}, {2, 4}, {1, 8}, {8, 1}};
constexpr Ratio kOrder9[] = {{1, 2}, {2, 1}, {3, 1}, {1, 3}, {2, 2}, {4, 1}, {1, 4}, {5, 1},
                             {1, 5}, {1, 6}, {6, 1}, {3, 2}, {2, 3}, {7, 1}, {1, 7}, {4, 2},
                             {2, 4}, {1, 8}, {8, 1}, {1, 9}, {3, 3}, {9, 1}};

std::span<const Ratio> candidate_order(int max_crops) {
  switch (max_crops) {
    case 2:
      return kOrder2;
    case 3:
      return kOrder3;
    case 4:
      return kOrder4;
    case 5:
      return kOrder5;
    case 6:
      return kOrder6;
    case 7:
      return kOrder7;
    case 8:
      return kOrder8;
    case 9:
      return kOrder9;
  }
  return {};
}

const std::array<float, 256>& normalize_lut() {
  static const std::array<float, 256> lut = [] {
    std::array<float, 256> t{};
    for (int v = 0; v < 256; ++v) {
      // ToTensor: float32(v).div(255), an IEEE division on the CPU (PyTorch's CUDA kernel would
      // multiply by the reciprocal instead, which changes the BF16 of v = 127, the padding
      // colour); Normalize: (x - 0.5) / 0.5 in float32; then the BF16 cast (round to nearest
      // even).
      const float x = static_cast<float>(v) / 255.0f;
      t[v] = round_bf16((x - 0.5f) / 0.5f);
    }
    return t;
  }();
  return lut;
}

}  // namespace

const ModeSpec& mode_spec(Mode mode) {
  for (const ModeSpec& s : kModes) {
    if (s.mode == mode) return s;
  }
  return kModes[4];
}

Expected<Mode> parse_mode(std::string_view name) {
  for (const ModeSpec& s : kModes) {
    if (name == s.name) return s.mode;
  }
  return Status::Error(strfmt("unknown mode '%.*s'; expected tiny, small, base, large or gundam",
                              static_cast<int>(name.size()), name.data()));
}

Expected<TileGrid> choose_tile_grid(int width, int height, int max_crops) {
  if (width < 1 || height < 1) {
    return Status::Error(
        strfmt("choose_tile_grid: image is %dx%d; expected at least 1x1", width, height));
  }
  const std::span<const Ratio> order = candidate_order(max_crops);
  if (order.empty()) {
    return Status::Error(strfmt("max crops %d is not supported; use a value from %d to %d",
                                max_crops, kMinCrops, kMaxCropsHF));
  }
  if (width <= kTileSize && height <= kTileSize) return TileGrid{1, 1};
  // find_closest_aspect_ratio, in double exactly as Python evaluates it.
  const double aspect = static_cast<double>(width) / height;
  const double area = static_cast<double>(static_cast<int64_t>(width) * height);  // exact
  double best_diff = std::numeric_limits<double>::infinity();
  TileGrid best{1, 1};
  for (const auto& [i, j] : order) {
    const double diff = std::fabs(aspect - static_cast<double>(i) / j);
    if (diff < best_diff) {
      best_diff = diff;
      best = {i, j};
    } else if (diff == best_diff) {
      if (area > 0.5 * kTileSize * kTileSize * i * j) best = {i, j};
    }
  }
  return best;
}

int image_token_count(const ModeSpec& spec, TileGrid grid) {
  // num_queries = ceil((size // 16) / 4): 16 px patches, then 4x4 compression by SAM's convs.
  auto queries = [](int size) { return (size / 16 + 3) / 4; };
  const int g = queries(spec.crop ? spec.base_size : spec.image_size);
  int total = g * (g + 1) + 1;  // rows of g tokens + newline each, + view separator
  if (spec.crop && grid.tiled()) {
    const int q = queries(spec.image_size);
    total += (q * grid.h) * (q * grid.w + 1);
  }
  return total;
}

Expected<Image> resize_bicubic(const Image& src, int out_w, int out_h) {
  DSOCR_TRY(check_image(src, "resize"));
  if (out_w < 1 || out_h < 1 || out_w > kMaxResizeSide || out_h > kMaxResizeSide) {
    return Status::Error(
        strfmt("resize: target %dx%d from %dx%d is outside 1..%d px per side (the image's aspect "
               "ratio is too extreme for this view)",
               out_w, out_h, src.width, src.height, kMaxResizeSide));
  }
  if (out_w == src.width && out_h == src.height) return src;  // Image.resize returns a copy

  // ImagingResampleInner: horizontal pass first, into a u8 image holding only the source rows
  // the vertical pass will read; a pass is skipped when its axis keeps its size.
  const bool need_h = out_w != src.width;
  const bool need_v = out_h != src.height;
  const Coeffs cv = precompute_coeffs(src.height, out_h);
  const int y_first = cv.first[0];
  const int y_last = cv.first[out_h - 1] + cv.count[out_h - 1];

  Image tmp;
  const Image* v_in = &src;
  int y_offset = 0;
  if (need_h) {
    const Coeffs ch = precompute_coeffs(src.width, out_w);
    tmp.width = out_w;
    tmp.height = y_last - y_first;
    tmp.rgb.resize(static_cast<size_t>(tmp.width) * tmp.height * 3);
    resample_horizontal(src.rgb.data(), src.width, y_first, tmp.height, ch, out_w, tmp.rgb.data());
    if (!need_v) return tmp;  // y_first = 0 and all rows used when the height is unchanged
    v_in = &tmp;
    y_offset = y_first;
  }
  Image out;
  out.width = v_in->width;
  out.height = out_h;
  out.rgb.resize(static_cast<size_t>(out.width) * out_h * 3);
  resample_vertical(v_in->rgb.data(), v_in->width, y_offset, cv, out_h, out.rgb.data());
  return out;
}

Expected<Image> pad_image(const Image& src, int out_w, int out_h, uint8_t fill) {
  DSOCR_TRY(check_image(src, "pad"));
  // ImageOps.contain: fit inside (out_w, out_h) keeping the aspect ratio.
  const double im_ratio = static_cast<double>(src.width) / src.height;
  const double dest_ratio = static_cast<double>(out_w) / out_h;
  int64_t rw = out_w, rh = out_h;
  if (im_ratio != dest_ratio) {
    if (im_ratio > dest_ratio) {
      rh = py_round(static_cast<double>(src.height) / src.width * out_w);
    } else {
      rw = py_round(static_cast<double>(src.width) / src.height * out_h);
    }
  }
  if (rw < 1 || rh < 1) {
    return Status::Error(
        strfmt("pad: a %dx%d image scaled to fit %dx%d would be %lldx%lld px; the aspect ratio is "
               "too extreme, crop the image first",
               src.width, src.height, out_w, out_h, static_cast<long long>(rw),
               static_cast<long long>(rh)));
  }
  DSOCR_ASSIGN_OR_RETURN(Image resized,
                         resize_bicubic(src, static_cast<int>(rw), static_cast<int>(rh)));
  if (rw == out_w && rh == out_h) return resized;

  // ImageOps.pad: paste centred (centering 0.5, Python round) on a canvas of the fill colour.
  int x0 = 0, y0 = 0;
  if (rw != out_w) {
    x0 = static_cast<int>(py_round((out_w - rw) * 0.5));
  } else {
    y0 = static_cast<int>(py_round((out_h - rh) * 0.5));
  }
  Image out;
  out.width = out_w;
  out.height = out_h;
  out.rgb.assign(static_cast<size_t>(out_w) * out_h * 3, fill);
  for (int y = 0; y < resized.height; ++y) {
    std::memcpy(&out.rgb[(static_cast<size_t>(y + y0) * out_w + x0) * 3],
                &resized.rgb[static_cast<size_t>(y) * resized.width * 3],
                static_cast<size_t>(resized.width) * 3);
  }
  return out;
}

Expected<Preprocessed> preprocess_image(const Image& image, const PreprocessOptions& options) {
  DSOCR_TRY(check_image(image, "preprocess"));
  const ModeSpec& spec = mode_spec(options.mode);
  Preprocessed p;
  if (!spec.crop) {
    // HF non-crop: Tiny/Small stretch to a square first (no aspect kept), then pad (a copy).
    p.global_size = spec.image_size;
    Image view;
    const Image* src = &image;
    if (spec.image_size <= kTileSize) {
      DSOCR_ASSIGN_OR_RETURN(view, resize_bicubic(image, spec.image_size, spec.image_size));
      src = &view;
    }
    DSOCR_ASSIGN_OR_RETURN(Image g, pad_image(*src, spec.image_size, spec.image_size));
    p.global = std::move(g.rgb);
  } else {
    // Gundam: the global view pads the original; tiles come from a stretch to the grid.
    p.global_size = spec.base_size;
    DSOCR_ASSIGN_OR_RETURN(p.grid, choose_tile_grid(image.width, image.height, options.max_crops));
    if (p.grid.tiled()) {
      DSOCR_ASSIGN_OR_RETURN(Image r,
                             resize_bicubic(image, kTileSize * p.grid.w, kTileSize * p.grid.h));
      p.n_tiles = p.grid.w * p.grid.h;
      const size_t tile_bytes = static_cast<size_t>(kTileSize) * kTileSize * 3;
      p.tiles.resize(tile_bytes * p.n_tiles);
      for (int i = 0; i < p.n_tiles; ++i) {
        crop_into(r, (i % p.grid.w) * kTileSize, (i / p.grid.w) * kTileSize, kTileSize,
                  p.tiles.data() + tile_bytes * i);
      }
    }
    DSOCR_ASSIGN_OR_RETURN(Image g, pad_image(image, spec.base_size, spec.base_size));
    p.global = std::move(g.rgb);
  }
  p.n_image_tokens = image_token_count(spec, p.grid);
  return p;
}

float normalize_pixel(uint8_t v) {
  return normalize_lut()[v];
}

void normalize_images(const uint8_t* u8, int n, int h, int w, float* out) {
  const auto& lut = normalize_lut();
  const size_t plane = static_cast<size_t>(h) * w;
  parallel_for(static_cast<int64_t>(n) * h, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t img = r / h, y = r % h;
      const uint8_t* in = u8 + (img * plane + y * w) * 3;
      float* o = out + img * 3 * plane + y * w;
      for (int x = 0; x < w; ++x) {
        for (int c = 0; c < 3; ++c) o[c * plane + x] = lut[in[3 * x + c]];
      }
    }
  });
}

void normalize_images_bf16(const uint8_t* u8, int n, int h, int w, uint16_t* out) {
  std::array<uint16_t, 256> lut;
  for (int v = 0; v < 256; ++v) lut[v] = f32_to_bf16(normalize_lut()[v]);
  const size_t plane = static_cast<size_t>(h) * w;
  parallel_for(static_cast<int64_t>(n) * h, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t img = r / h, y = r % h;
      const uint8_t* in = u8 + (img * plane + y * w) * 3;
      uint16_t* o = out + img * 3 * plane + y * w;
      for (int x = 0; x < w; ++x) {
        for (int c = 0; c < 3; ++c) o[c * plane + x] = lut[in[3 * x + c]];
      }
    }
  });
}

}  // namespace dsocr
