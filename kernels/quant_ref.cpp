// CPU float32 references of the weight-only quantization formats (see quant.h for the formats,
// the rounding rules and the INT4 nibble layout). Written for clarity: one row at a time, each
// step exactly as quant.h states it, so the CUDA quantizer (load-time, on the GPU) can be checked
// bit for bit against quantize_*_ref, and the GEMV kernels against gemv_*_ref.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/parallel.h"
#include "kernels/quant.h"
#include "loader/bf16.h"

namespace dsocr {
namespace {

// The scale of a block whose largest magnitude is amax, as stored (BF16 bits), for the grid
// [-qmax, qmax]: FP32 division, then round to nearest even BF16.
uint16_t block_scale(float amax, int qmax) {
  return f32_to_bf16(amax / static_cast<float>(qmax));
}

float max_abs(const float* w, int64_t n) {
  float m = 0.f;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, std::fabs(w[j]));
  return m;
}

// q = clamp(rint(w / scale), -qmax, qmax); rint rounds half to even in the default rounding mode
// (what __float2int_rn does on the GPU). A zero scale gives q = 0.
int quantize_one(float w, float scale, int qmax) {
  if (scale == 0.f) return 0;
  const float r = std::nearbyint(w / scale);
  return static_cast<int>(std::clamp(r, static_cast<float>(-qmax), static_cast<float>(qmax)));
}

// Byte index (within a row) and shift of column j in the INT4 layout: column c + kInt4Perm[nib]
// sits in nibble nib of word c/8, i.e. byte 4·(c/8) + nib/2, bits 4·(nib % 2).
struct NibblePos {
  int64_t byte;
  int shift;
};
NibblePos nibble_pos(int64_t j) {
  static const int kNibbleOf[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // inverse of kInt4Perm
  const int nib = kNibbleOf[j % 8];
  return {j / 8 * 4 + nib / 2, 4 * (nib % 2)};
}

// One dequantized row of an INT4 weight into out[k].
void dequant_int4_row(const uint8_t* row, const uint16_t* scales, float* out, int64_t k,
                      int group) {
  for (int64_t j = 0; j < k; ++j) {
    const NibblePos p = nibble_pos(j);
    const int q = ((row[p.byte] >> p.shift) & 0xF) - kInt4Offset;
    out[j] = static_cast<float>(q) * bf16_to_f32(scales[j / group]);
  }
}

void dequant_int8_row(const int8_t* row, uint16_t scale, float* out, int64_t k) {
  const float s = bf16_to_f32(scale);
  for (int64_t j = 0; j < k; ++j) out[j] = static_cast<float>(row[j]) * s;
}

// y[:, r] for rows [r0, r1) of W: dequantize each row once, then one FP32 dot per row of x.
template <typename DequantRow>
void gemv_rows(const float* x, float* y, int64_t m, int64_t n, int64_t k, int64_t r0, int64_t r1,
               const DequantRow& dequant_row) {
  std::vector<float> w(static_cast<size_t>(k));
  for (int64_t r = r0; r < r1; ++r) {
    dequant_row(r, w.data());
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x + i * k;
      float acc = 0.f;
      for (int64_t j = 0; j < k; ++j) acc += xi[j] * w[j];
      y[i * n + r] = acc;
    }
  }
}

}  // namespace

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::kBf16:
      return "bf16";
    case WeightFormat::kInt8:
      return "int8";
    case WeightFormat::kInt4:
      return "int4";
  }
  return "?";
}

Status check_quant_shape(WeightFormat f, int64_t n, int64_t k, int group) {
  const char* name = weight_format_name(f);
  if (n < 1 || k < 1)
    return Status::Error(strfmt("%s weight [%lld, %lld]: empty shape; quantize only linear weights",
                                name, static_cast<long long>(n), static_cast<long long>(k)));
  if (f == WeightFormat::kInt8 && k % 16 != 0)
    return Status::Error(strfmt(
        "int8 weight [%lld, %lld]: k %% 16 != 0 (rows must start 16-byte aligned); keep it bf16",
        static_cast<long long>(n), static_cast<long long>(k)));
  if (f == WeightFormat::kInt4) {
    if (group != kInt4GroupDefault && group != kInt4GroupSmall)
      return Status::Error(strfmt("int4 group %d: unsupported; use %d or %d", group,
                                  kInt4GroupDefault, kInt4GroupSmall));
    if (k % group != 0)
      return Status::Error(strfmt(
          "int4 weight [%lld, %lld]: k is not a multiple of the group %d; use group %d or int8",
          static_cast<long long>(n), static_cast<long long>(k), group, kInt4GroupSmall));
  }
  return Status::Ok();
}

void quantize_int8_ref(const float* w, int8_t* q, uint16_t* scale, int64_t n, int64_t k) {
  parallel_for(n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* wr = w + r * k;
      scale[r] = block_scale(max_abs(wr, k), kInt8Max);
      const float s = bf16_to_f32(scale[r]);
      for (int64_t j = 0; j < k; ++j)
        q[r * k + j] = static_cast<int8_t>(quantize_one(wr[j], s, kInt8Max));
    }
  });
}

void dequantize_int8_ref(const int8_t* q, const uint16_t* scale, float* w, int64_t n, int64_t k) {
  parallel_for(n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) dequant_int8_row(q + r * k, scale[r], w + r * k, k);
  });
}

void quantize_int4_ref(const float* w, uint8_t* packed, uint16_t* scale, int64_t n, int64_t k,
                       int group) {
  const int64_t groups = k / group;
  parallel_for(n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* wr = w + r * k;
      uint8_t* row = packed + r * (k / 2);
      std::fill(row, row + k / 2, uint8_t{0});
      for (int64_t g = 0; g < groups; ++g) {
        uint16_t& sb = scale[r * groups + g];
        sb = block_scale(max_abs(wr + g * group, group), kInt4Max);
        const float s = bf16_to_f32(sb);
        for (int64_t j = g * group; j < (g + 1) * group; ++j) {
          const int u = quantize_one(wr[j], s, kInt4Max) + kInt4Offset;
          const NibblePos p = nibble_pos(j);
          row[p.byte] = static_cast<uint8_t>(row[p.byte] | (u << p.shift));
        }
      }
    }
  });
}

void dequantize_int4_ref(const uint8_t* packed, const uint16_t* scale, float* w, int64_t n,
                         int64_t k, int group) {
  parallel_for(n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      dequant_int4_row(packed + r * (k / 2), scale + r * (k / group), w + r * k, k, group);
  });
}

void gemv_int8_ref(const float* x, const int8_t* q, const uint16_t* scale, float* y, int64_t m,
                   int64_t n, int64_t k) {
  parallel_for(n, [&](int64_t r0, int64_t r1) {
    gemv_rows(x, y, m, n, k, r0, r1,
              [&](int64_t r, float* out) { dequant_int8_row(q + r * k, scale[r], out, k); });
  });
}

void gemv_int4_ref(const float* x, const uint8_t* packed, const uint16_t* scale, float* y,
                   int64_t m, int64_t n, int64_t k, int group) {
  parallel_for(n, [&](int64_t r0, int64_t r1) {
    gemv_rows(x, y, m, n, k, r0, r1, [&](int64_t r, float* out) {
      dequant_int4_row(packed + r * (k / 2), scale + r * (k / group), out, k, group);
    });
  });
}

}  // namespace dsocr
