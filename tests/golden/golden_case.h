// Reading ../shared/golden cases in tests: a case's tensors as float / int64 vectors, its
// cases.json entry, and the error metrics the golden README uses.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loader/bf16.h"
#include "loader/safetensors.h"

namespace dsocr::golden {

// ../shared/golden, or $DSOCR_GOLDEN_DIR (the GPU machine gets a copy of the cases elsewhere).
inline std::string dir() {
  const char* e = std::getenv("DSOCR_GOLDEN_DIR");
  return e && *e ? e : DSOCR_GOLDEN_DIR;
}
inline std::string case_path(const std::string& name) {
  return dir() + "/cases/" + name + ".safetensors";
}

inline nlohmann::json case_meta(const std::string& name) {
  std::ifstream f(dir() + "/cases/cases.json");
  return nlohmann::json::parse(f).at(name);
}

// Any numeric tensor widened to double (BF16, F32, I64, U8).
inline std::vector<double> as_f64(const SafetensorsFile& f, const std::string& tensor) {
  const TensorInfo* t = f.find(tensor);
  if (!t) return {};
  const uint8_t* p = f.bytes(*t);
  std::vector<double> v(static_cast<size_t>(t->numel()));
  for (size_t i = 0; i < v.size(); ++i) {
    switch (t->dtype) {
      case DType::BF16: { uint16_t b; std::memcpy(&b, p + 2 * i, 2); v[i] = bf16_to_f32(b); break; }
      case DType::F32: { float x; std::memcpy(&x, p + 4 * i, 4); v[i] = x; break; }
      case DType::I64: { int64_t x; std::memcpy(&x, p + 8 * i, 8); v[i] = static_cast<double>(x); break; }
      case DType::U8: v[i] = p[i]; break;
      default: return {};
    }
  }
  return v;
}

// ‖a − b‖ / ‖b‖ over [begin, end) (the whole vectors by default).
inline double rel_l2(const std::vector<double>& a, const std::vector<double>& b, size_t begin = 0,
                     size_t end = SIZE_MAX) {
  end = std::min({end, a.size(), b.size()});
  double num = 0, den = 0;
  for (size_t i = begin; i < end; ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace dsocr::golden
