// The one translation unit that compiles the vendored stb_image / stb_image_write implementations.
//
// stb_image is limited to the formats dsocr accepts (loader/image.h): PNG, JPEG, BMP, TGA, PNM.
// GIF, PSD, HDR and PIC are compiled out, so stb cannot silently decode a format whose PIL
// conversion we do not reproduce. stb keeps its failure reason in a thread-local (C++11), so
// decoding is safe from several threads.
//
// JPEG: the official code decodes with PIL, i.e. libjpeg-turbo with its defaults (ISLOW integer
// IDCT, "fancy" chroma upsampling, table-driven YCbCr->RGB). stb_image's versions of those three
// stages round differently (and its 2h1v upsampler weights the last column towards the wrong
// chroma sample: errors above 100 on that column). They are replaced here by implementations of
// libjpeg-turbo's arithmetic (jidctint.c jpeg_idct_islow, jdsample.c h2v1/h1v2/h2v2 fancy
// upsampling, jdcolor.c ycc_rgb_convert), written from the published algorithms; stb keeps the
// entropy decoding, which is lossless. stb selects these stages through function pointers
// assigned by name (`kernel = stbi__idct_block;`), so a function-like macro renames stb's own
// definitions (a name followed by `(`) while the bare names in the assignments bind to the
// functions declared below. STBI_NO_SIMD leaves only those scalar names in use.

#include <cstdint>

// Replacements, declared before stb so that stb's assignments refer to them.
static void stbi__idct_block(unsigned char* out, int out_stride, short data[64]);
static void stbi__YCbCr_to_RGB_row(unsigned char* out, const unsigned char* y,
                                   const unsigned char* pcb, const unsigned char* pcr, int count,
                                   int step);
static unsigned char* stbi__resample_row_h_2(unsigned char* out, unsigned char* in_near,
                                             unsigned char* in_far, int w, int hs);
static unsigned char* stbi__resample_row_v_2(unsigned char* out, unsigned char* in_near,
                                             unsigned char* in_far, int w, int hs);
static unsigned char* stbi__resample_row_hv_2(unsigned char* out, unsigned char* in_near,
                                              unsigned char* in_far, int w, int hs);

#define stbi__idct_block(a, b, c) stb_original_idct_block(a, b, c)
#define stbi__YCbCr_to_RGB_row(a, b, c, d, e, f) stb_original_YCbCr_to_RGB_row(a, b, c, d, e, f)
#define stbi__resample_row_h_2(a, b, c, d, e) stb_original_resample_row_h_2(a, b, c, d, e)
#define stbi__resample_row_v_2(a, b, c, d, e) stb_original_resample_row_v_2(a, b, c, d, e)
#define stbi__resample_row_hv_2(a, b, c, d, e) stb_original_resample_row_hv_2(a, b, c, d, e)

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#endif

#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_TGA
#define STBI_ONLY_PNM
#define STBI_NO_LINEAR
#define STBI_NO_SIMD
#include "stb/stb_image.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "stb/stb_image_write.h"

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#undef stbi__idct_block
#undef stbi__YCbCr_to_RGB_row
#undef stbi__resample_row_h_2
#undef stbi__resample_row_v_2
#undef stbi__resample_row_hv_2

namespace {

// --- ISLOW inverse DCT (libjpeg jidctint.c): Loeffler-Ligtenberg-Moschytz with 13-bit constants,
// 2 extra bits kept between the passes. `data` is dequantized, in natural (row-major) order.
constexpr int kConstBits = 13;
constexpr int kPass1Bits = 2;
constexpr int32_t fix(double x) {
  return static_cast<int32_t>(x * (1 << kConstBits) + 0.5);
}
constexpr int32_t kF0298631336 = fix(0.298631336), kF0390180644 = fix(0.390180644);
constexpr int32_t kF0541196100 = fix(0.541196100), kF0765366865 = fix(0.765366865);
constexpr int32_t kF0899976223 = fix(0.899976223), kF1175875602 = fix(1.175875602);
constexpr int32_t kF1501321110 = fix(1.501321110), kF1847759065 = fix(1.847759065);
constexpr int32_t kF1961570560 = fix(1.961570560), kF2053119869 = fix(2.053119869);
constexpr int32_t kF2562915447 = fix(2.562915447), kF3072711026 = fix(3.072711026);

inline int32_t descale(int64_t x, int n) {
  return static_cast<int32_t>((x + (int64_t{1} << (n - 1))) >> n);  // (int)DESCALE(x, n)
}

// One 1-D 8-point IDCT: inputs in order 0..7 -> o[0..7] before descaling, LL&M as in
// jidctint.c, in 64-bit like libjpeg's JLONG on LP64 (no overflow on hostile coefficients).
struct Idct1d {
  int64_t o[8];
  Idct1d(int64_t i0, int64_t i1, int64_t i2, int64_t i3, int64_t i4, int64_t i5, int64_t i6,
         int64_t i7) {
    // Even part.
    int64_t z1 = (i2 + i6) * kF0541196100;
    const int64_t tmp2 = z1 + i6 * -kF1847759065;
    const int64_t tmp3 = z1 + i2 * kF0765366865;
    const int64_t t0 = (i0 + i4) * (1 << kConstBits);
    const int64_t t1 = (i0 - i4) * (1 << kConstBits);
    const int64_t tmp10 = t0 + tmp3, tmp13 = t0 - tmp3, tmp11 = t1 + tmp2, tmp12 = t1 - tmp2;
    // Odd part.
    int64_t a0 = i7, a1 = i5, a2 = i3, a3 = i1;
    z1 = a0 + a3;
    int64_t z2 = a1 + a2, z3 = a0 + a2, z4 = a1 + a3;
    const int64_t z5 = (z3 + z4) * kF1175875602;
    a0 *= kF0298631336;
    a1 *= kF2053119869;
    a2 *= kF3072711026;
    a3 *= kF1501321110;
    z1 *= -kF0899976223;
    z2 *= -kF2562915447;
    z3 *= -kF1961570560;
    z4 *= -kF0390180644;
    z3 += z5;
    z4 += z5;
    a0 += z1 + z3;
    a1 += z2 + z4;
    a2 += z2 + z3;
    a3 += z1 + z4;
    o[0] = tmp10 + a3;
    o[7] = tmp10 - a3;
    o[1] = tmp11 + a2;
    o[6] = tmp11 - a2;
    o[2] = tmp12 + a1;
    o[5] = tmp12 - a1;
    o[3] = tmp13 + a0;
    o[4] = tmp13 - a0;
  }
};

// libjpeg's post-IDCT range limit: the value, centred on 0, is masked to 10 bits and mapped
// through a table that clamps [-512, 511] to [0, 255] (and wraps beyond, as libjpeg does).
inline unsigned char idct_range_limit(int32_t x) {
  const int32_t i = x & 1023;
  if (i < 128) return static_cast<unsigned char>(i + 128);
  if (i < 512) return 255;
  if (i < 896) return 0;
  return static_cast<unsigned char>(i - 896);
}

// YCbCr -> RGB tables (jdcolor.c build_ycc_rgb_table), 16 fractional bits.
struct YccTables {
  int32_t cr_r[256], cb_b[256], cr_g[256], cb_g[256];
  YccTables() {
    constexpr int kScale = 16;
    constexpr int32_t kHalf = 1 << (kScale - 1);
    auto f = [](double x) { return static_cast<int32_t>(x * (1 << kScale) + 0.5); };
    for (int i = 0; i < 256; ++i) {
      const int32_t x = i - 128;
      cr_r[i] = (f(1.40200) * x + kHalf) >> kScale;
      cb_b[i] = (f(1.77200) * x + kHalf) >> kScale;
      cr_g[i] = -f(0.71414) * x;
      cb_g[i] = -f(0.34414) * x + kHalf;
    }
  }
};

inline unsigned char clamp255(int32_t v) {
  return static_cast<unsigned char>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

}  // namespace

static void stbi__idct_block(unsigned char* out, int out_stride, short data[64]) {
  int32_t ws[64];
  for (int c = 0; c < 8; ++c) {  // pass 1: columns, keep kPass1Bits extra bits
    const short* d = data + c;
    const Idct1d t(d[0], d[8], d[16], d[24], d[32], d[40], d[48], d[56]);
    for (int k = 0; k < 8; ++k) ws[k * 8 + c] = descale(t.o[k], kConstBits - kPass1Bits);
  }
  for (int r = 0; r < 8; ++r) {  // pass 2: rows, remove the scaling (incl. the 8 of the 2-D IDCT)
    const int32_t* w = ws + r * 8;
    const Idct1d t(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]);
    unsigned char* o = out + r * out_stride;
    for (int k = 0; k < 8; ++k)
      o[k] = idct_range_limit(descale(t.o[k], kConstBits + kPass1Bits + 3));
  }
}

static void stbi__YCbCr_to_RGB_row(unsigned char* out, const unsigned char* y,
                                   const unsigned char* pcb, const unsigned char* pcr, int count,
                                   int step) {
  static const YccTables t;
  for (int i = 0; i < count; ++i) {
    const int32_t yy = y[i], cb = pcb[i], cr = pcr[i];
    out[0] = clamp255(yy + t.cr_r[cr]);
    out[1] = clamp255(yy + ((t.cb_g[cb] + t.cr_g[cr]) >> 16));
    out[2] = clamp255(yy + t.cb_b[cb]);
    if (step == 4) out[3] = 255;
    out += step;
  }
}

// 2h1v (jdsample.c h2v1_fancy_upsample): 3/4 nearer + 1/4 further sample, biases 1 and 2
// alternating; libjpeg replicates instead when the component is at most 2 samples wide.
static unsigned char* stbi__resample_row_h_2(unsigned char* out, unsigned char* in_near,
                                             unsigned char* in_far, int w, int hs) {
  (void)in_far;
  (void)hs;
  const unsigned char* in = in_near;
  if (w <= 2) {
    for (int i = 0; i < w; ++i) out[2 * i] = out[2 * i + 1] = in[i];
    return out;
  }
  out[0] = in[0];
  out[1] = static_cast<unsigned char>((in[0] * 3 + in[1] + 2) >> 2);
  for (int i = 1; i < w - 1; ++i) {
    const int v = in[i] * 3;
    out[2 * i] = static_cast<unsigned char>((v + in[i - 1] + 1) >> 2);
    out[2 * i + 1] = static_cast<unsigned char>((v + in[i + 1] + 2) >> 2);
  }
  out[2 * w - 2] = static_cast<unsigned char>((in[w - 1] * 3 + in[w - 2] + 1) >> 2);
  out[2 * w - 1] = in[w - 1];
  return out;
}

// 1h2v (jdsample.c h1v2_fancy_upsample): bias 1 for the upper output row (whose further row is
// the one above), 2 for the lower. stb passes the rows but not which output row this is; its
// row buffers are consecutive in memory, so the further row lies below `in_near` in memory exactly
// for the upper row (at the image edges both rows are the same and the bias cannot matter).
static unsigned char* stbi__resample_row_v_2(unsigned char* out, unsigned char* in_near,
                                             unsigned char* in_far, int w, int hs) {
  (void)hs;
  const int bias = in_far < in_near ? 1 : 2;
  for (int i = 0; i < w; ++i)
    out[i] = static_cast<unsigned char>((in_near[i] * 3 + in_far[i] + bias) >> 2);
  return out;
}

// 2h2v (jdsample.c h2v2_fancy_upsample): vertical 3:1 column sums, then horizontal 3:1 with
// biases 8 and 7; replication when the component is at most 2 samples wide (h2v2_upsample).
static unsigned char* stbi__resample_row_hv_2(unsigned char* out, unsigned char* in_near,
                                              unsigned char* in_far, int w, int hs) {
  (void)hs;
  if (w <= 2) {
    for (int i = 0; i < w; ++i) out[2 * i] = out[2 * i + 1] = in_near[i];
    return out;
  }
  int32_t this_sum = in_near[0] * 3 + in_far[0];
  int32_t next_sum = in_near[1] * 3 + in_far[1];
  out[0] = static_cast<unsigned char>((this_sum * 4 + 8) >> 4);
  out[1] = static_cast<unsigned char>((this_sum * 3 + next_sum + 7) >> 4);
  int32_t last_sum = this_sum;
  this_sum = next_sum;
  for (int i = 1; i < w - 1; ++i) {
    next_sum = in_near[i + 1] * 3 + in_far[i + 1];
    out[2 * i] = static_cast<unsigned char>((this_sum * 3 + last_sum + 8) >> 4);
    out[2 * i + 1] = static_cast<unsigned char>((this_sum * 3 + next_sum + 7) >> 4);
    last_sum = this_sum;
    this_sum = next_sum;
  }
  out[2 * w - 2] = static_cast<unsigned char>((this_sum * 3 + last_sum + 8) >> 4);
  out[2 * w - 1] = static_cast<unsigned char>((this_sum * 4 + 7) >> 4);
  return out;
}
