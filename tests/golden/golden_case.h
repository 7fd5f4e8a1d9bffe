// Reading ../shared/golden cases in tests: a case's tensors as float / int64 vectors, its
// cases.json entry, and the error metrics the golden README uses.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "loader/bf16.h"
#include "loader/safetensors.h"
#include "runtime/golden.h"
#include "runtime/sampling.h"

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

// A tensor of a run_golden dump (runtime/golden.h) widened to double (F32 or I64); {} if absent.
inline std::vector<double> dump_f64(const TensorDump& d, const std::string& name) {
  for (const DumpTensor& t : d) {
    if (t.name != name) continue;
    std::vector<double> v;
    if (t.dtype == DType::F32) {
      const float* p = reinterpret_cast<const float*>(t.data.data());
      v.assign(p, p + t.data.size() / 4);
    } else if (t.dtype == DType::I64) {
      const int64_t* p = reinterpret_cast<const int64_t*>(t.data.data());
      for (size_t i = 0; i < t.data.size() / 8; ++i) v.push_back(static_cast<double>(p[i]));
    }
    return v;
  }
  return {};
}

// A top-2 margin (official BF16 logits) below this is a near-tie: BF16 noise (the README measures
// up to 0.05 between two passes of the official run) can flip the choice.
constexpr double kNearTie = 0.125;

// The first step where the official BF16 run was itself at a near-tie: its top-2 margin among
// the ids the no-repeat-ngram ban allows (tf_top64_* of the case, prompt + gen_ids as history).
// gen.size() when there is none. Free-running ids must match the official ones before it.
inline size_t official_near_tie(const SafetensorsFile& f, int ngram) {
  const std::vector<double> bv = as_f64(f, "tf_top64_vals"), bi = as_f64(f, "tf_top64_ids");
  const std::vector<double> in = as_f64(f, "input_ids"), gen = as_f64(f, "gen_ids");
  std::vector<int32_t> prefix(in.begin(), in.end());
  for (size_t st = 0; st < gen.size(); ++st) {
    const std::vector<int32_t> banned = hf_banned_scan(prefix, ngram);
    const std::set<int32_t> bs(banned.begin(), banned.end());
    std::vector<double> allowed;
    for (size_t k = 0; k < 64 && allowed.size() < 2; ++k)
      if (!bs.count(static_cast<int32_t>(bi[st * 64 + k]))) allowed.push_back(bv[st * 64 + k]);
    if (allowed.size() == 2 && allowed[0] - allowed[1] < kNearTie) return st;
    prefix.push_back(static_cast<int32_t>(gen[st]));
  }
  return gen.size();
}

// Equal leading ids of two sequences.
inline size_t same_prefix(const std::vector<double>& a, const std::vector<double>& b) {
  size_t n = 0;
  while (n < std::min(a.size(), b.size()) && a[n] == b[n]) ++n;
  return n;
}

}  // namespace dsocr::golden
