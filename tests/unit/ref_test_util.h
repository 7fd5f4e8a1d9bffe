// Shared helpers of the CPU reference-op tests: seeded random data, NaN poisoning, the
// normalised error ‖out − ref‖ / ‖ref‖ against a float64 evaluation.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "loader/bf16.h"

namespace dsocr::test {

// splitmix64 stream: deterministic across platforms (unlike std::uniform_*_distribution).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi).
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>((next() >> 40) * 0x1.0p-24);
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t s_;
};

inline std::vector<float> random_f32(Rng& rng, size_t n, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

// BF16 bit patterns of uniform values in [lo, hi).
inline std::vector<uint16_t> random_bf16(Rng& rng, size_t n, float lo = -1.f, float hi = 1.f) {
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f32_to_bf16(rng.uniform(lo, hi));
  return v;
}

inline std::vector<float> nan_filled(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// ‖out − ref‖₂ / ‖ref‖₂ in float64; NaN anywhere in out gives NaN (fails every < threshold).
inline double rel_l2(const float* out, const double* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}
inline double rel_l2(const std::vector<float>& out, const std::vector<double>& ref) {
  return out.size() == ref.size() ? rel_l2(out.data(), ref.data(), out.size())
                                  : std::numeric_limits<double>::quiet_NaN();
}
inline double rel_l2(const std::vector<float>& out, const std::vector<float>& ref) {
  return rel_l2(out, std::vector<double>(ref.begin(), ref.end()));
}

// Prints a measured error when DSOCR_TEST_VERBOSE is set; returns it for the EXPECT.
inline double report(const std::string& what, double err) {
  if (std::getenv("DSOCR_TEST_VERBOSE")) std::printf("  %-40s %.3g\n", what.c_str(), err);
  return err;
}

}  // namespace dsocr::test
