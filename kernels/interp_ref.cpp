// Float32 reproductions of PyTorch's F.interpolate paths used by the vision encoders
// (see interp.h). Source read: ATen/native/cuda/UpSampleBilinear2d.cu
// (upsample_gen2d_aa_out_frame, the CUDA path the goldens ran) and ATen/native/cuda/UpSample.cuh
// (upsample_antialias::_compute_weights_span / _compute_weights / interpolate_aa_single_dim,
// BicubicFilterFunctor), ATen/native/UpSample.h (area_pixel_compute_scale,
// area_pixel_compute_source_index). All index and weight arithmetic is float32 like the CUDA
// kernel's accscalar_t; per output pixel the rows of the window are first summed along x, then
// those row sums along y, in the same order as the CUDA kernel.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/interp.h"
#include "kernels/parallel.h"

namespace dsocr {
namespace {

// Keys cubic convolution with a = -0.5 (PIL's bicubic, PyTorch's antialias filter).
float cubic_aa(float x) {
  const float a = -0.5f;
  x = std::fabs(x);
  if (x < 1.f) return ((a + 2.f) * x - (a + 3.f)) * x * x + 1.f;
  if (x < 2.f) return (((x - 5.f) * x + 8.f) * x - 4.f) * a;
  return 0.f;
}

// Per output index: the input window [start, start + size) and its normalised weights.
struct AxisWeights {
  std::vector<int64_t> start, size;
  std::vector<float> w;  // [out, max_size]
  int64_t max_size = 0;
};

AxisWeights axis_weights(int64_t in, int64_t out) {
  AxisWeights a;
  const float scale = static_cast<float>(in) / static_cast<float>(out);  // area_pixel_compute_scale
  const float support = scale >= 1.f ? 2.f * scale : 2.f;  // (filter size 4 / 2) · max(scale, 1)
  const float invscale = scale >= 1.f ? 1.f / scale : 1.f;
  a.max_size = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  a.start.resize(out);
  a.size.resize(out);
  a.w.assign(out * a.max_size, 0.f);
  for (int64_t i = 0; i < out; ++i) {
    const float center = scale * (static_cast<float>(i) + 0.5f);
    // static_cast<int> truncates toward zero, as in the CUDA code.
    const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5f), 0);
    const int64_t xsize =
        std::min<int64_t>(static_cast<int64_t>(center + support + 0.5f), in) - xmin;
    float* w = &a.w[i * a.max_size];
    float total = 0.f;
    for (int64_t j = 0; j < xsize; ++j) {
      w[j] =
          cubic_aa((static_cast<float>(j) + (static_cast<float>(xmin) - center) + 0.5f) * invscale);
      total += w[j];
    }
    if (total != 0.f)
      for (int64_t j = 0; j < xsize; ++j) w[j] /= total;
    a.start[i] = xmin;
    a.size[i] = xsize;
  }
  return a;
}

// One output pixel (oy, ox) of an [in_h, in_w, channels] map (channels contiguous), channels
// [c0, c0 + nc), nc <= kBlock.
constexpr int64_t kBlock = 256;
void aa_pixel(const float* in, float* out, int64_t channels, int64_t in_w, const AxisWeights& ay,
              const AxisWeights& ax, int64_t oy, int64_t ox, int64_t c0, int64_t nc) {
  float row[kBlock], acc[kBlock] = {};
  const float* wy = &ay.w[oy * ay.max_size];
  const float* wx = &ax.w[ox * ax.max_size];
  const int64_t y0 = ay.start[oy], x0 = ax.start[ox];
  for (int64_t i = 0; i < ay.size[oy]; ++i) {
    const float* src = in + ((y0 + i) * in_w + x0) * channels + c0;
    for (int64_t c = 0; c < nc; ++c) row[c] = src[c] * wx[0];
    for (int64_t j = 1; j < ax.size[ox]; ++j)
      for (int64_t c = 0; c < nc; ++c) row[c] += src[j * channels + c] * wx[j];
    if (i == 0) {
      for (int64_t c = 0; c < nc; ++c) acc[c] = row[c] * wy[0];
    } else {
      for (int64_t c = 0; c < nc; ++c) acc[c] += row[c] * wy[i];
    }
  }
  for (int64_t c = 0; c < nc; ++c) out[c] = acc[c];
}

}  // namespace

void interp_bicubic_aa_hwc_ref(const float* in, float* out, int64_t channels, int64_t in_h,
                               int64_t in_w, int64_t out_h, int64_t out_w) {
  const AxisWeights ay = axis_weights(in_h, out_h), ax = axis_weights(in_w, out_w);
  parallel_for(out_h * out_w, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t oy = p / out_w, ox = p % out_w;
      for (int64_t c0 = 0; c0 < channels; c0 += kBlock)
        aa_pixel(in, out + p * channels + c0, channels, in_w, ay, ax, oy, ox, c0,
                 std::min(kBlock, channels - c0));
    }
  });
}

void interp_bicubic_aa_chw_ref(const float* in, float* out, int64_t channels, int64_t in_h,
                               int64_t in_w, int64_t out_h, int64_t out_w) {
  const AxisWeights ay = axis_weights(in_h, out_h), ax = axis_weights(in_w, out_w);
  // A channel plane is an [in_h, in_w, 1] channels-last map.
  parallel_for(channels, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t oy = 0; oy < out_h; ++oy)
        for (int64_t ox = 0; ox < out_w; ++ox)
          aa_pixel(in + c * in_h * in_w, out + (c * out_h + oy) * out_w + ox, 1, in_w, ay, ax, oy,
                   ox, 0, 1);
  });
}

void interp_linear_rows_ref(const float* in, float* out, int64_t in_len, int64_t out_len,
                            int64_t channels) {
  const float scale = static_cast<float>(in_len) / static_cast<float>(out_len);
  for (int64_t i = 0; i < out_len; ++i) {
    // area_pixel_compute_source_index(scale, i, align_corners=false, cubic=false)
    const float src = std::max(scale * (static_cast<float>(i) + 0.5f) - 0.5f, 0.f);
    const int64_t i0 = static_cast<int64_t>(src);
    const int64_t i1 = i0 + (i0 < in_len - 1 ? 1 : 0);
    const float l1 = src - static_cast<float>(i0), l0 = 1.f - l1;
    for (int64_t c = 0; c < channels; ++c)
      out[i * channels + c] = l0 * in[i0 * channels + c] + l1 * in[i1 * channels + c];
  }
}

}  // namespace dsocr
