// Shared helpers of the decoder-kernel GPU tests: device buffers poisoned with NaN, the launch
// check, and the 2×-naive rule (flash-attention's hopper/test_flash_attn.py): a low-precision
// kernel passes when its error against a float64 evaluation is at most twice the error of a naive
// implementation in the same precision (BF16 inputs, FP32 arithmetic, BF16 rounding at the points
// where the kernel stores BF16).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu/gpu_test.h"
#include "kernels/checksum.h"
#include "loader/bf16.h"
#include "runtime/cuda_check.h"
#include "unit/ref_test_util.h"

namespace dsocr::test {

// A launcher's return value, then the last error, then the kernel's own completion.
#define LAUNCH_OK(expr)                                                  \
  do {                                                                   \
    ASSERT_EQ((expr), cudaSuccess) << #expr;                             \
    ASSERT_EQ(cudaGetLastError(), cudaSuccess) << "after " #expr;        \
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << "running " #expr; \
  } while (0)

// Device array of T owned by a test. Fresh buffers are poisoned (kPoison32: NaN as FP32 and BF16).
template <typename T>
class DevBuf {
 public:
  explicit DevBuf(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&p_, bytes() ? bytes() : 16), cudaSuccess);
    poison();
  }
  explicit DevBuf(const std::vector<T>& h) : DevBuf(h.size()) { upload(h); }
  ~DevBuf() { cudaFree(p_); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  T* get() const { return static_cast<T*>(p_); }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  void poison() {
    EXPECT_EQ(fill_u32_device(p_, kPoison32, bytes(), nullptr), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  void upload(const std::vector<T>& h) {
    ASSERT_LE(h.size(), n_);
    EXPECT_EQ(cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    EXPECT_EQ(cudaMemcpy(h.data(), p_, bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

 private:
  void* p_ = nullptr;
  size_t n_;
};

inline std::vector<float> widen(const std::vector<uint16_t>& b) {
  std::vector<float> f(b.size());
  for (size_t i = 0; i < b.size(); ++i) f[i] = bf16_to_f32(b[i]);
  return f;
}

// ‖out − ref‖₂ / ‖ref‖₂; NaN anywhere in out -> NaN.
inline double rel_err(const std::vector<double>& out, const std::vector<double>& ref) {
  if (out.size() != ref.size()) return NAN;
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double d = out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// The 2×-naive rule. A floor of one float32 unit roundoff (2^-24) keeps an exactly-rounded naive
// result (error 0) from demanding a bit-exact kernel. Prints the figures (the report quotes them).
inline void expect_2x_naive(const std::string& what, const std::vector<double>& kernel,
                            const std::vector<double>& naive, const std::vector<double>& ref64) {
  const double ek = rel_err(kernel, ref64), en = rel_err(naive, ref64);
  std::printf("  %-58s kernel %.3e  naive %.3e  ratio %.2f\n", what.c_str(), ek, en,
              en > 0 ? ek / en : 0.0);
  EXPECT_TRUE(std::isfinite(ek)) << what << ": non-finite output (unwritten element?)";
  EXPECT_LE(ek, 2.0 * en + 0x1.0p-24) << what;
}

template <typename T>
std::vector<double> to_f64(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}
inline std::vector<double> bf16_to_f64(const std::vector<uint16_t>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) d[i] = bf16_to_f32(v[i]);
  return d;
}

}  // namespace dsocr::test

namespace dsocr::test {

// A paged KV layout for kernel tests: `capacity` token rows of one sequence spread over pages of
// page_size rows, the pages in a shuffled order inside a pool with `spare` extra pages (never
// used, so a kernel that ignores the table reads or writes the wrong rows).
struct TestPages {
  int page_size = 16;
  std::vector<int32_t> table;  // [ceil(capacity / page_size)]
  int64_t n_pages = 0;
  TestPages(int64_t capacity, int page_size_, uint64_t seed, int spare = 3)
      : page_size(page_size_) {
    const int64_t used = (capacity + page_size - 1) / page_size;
    n_pages = used + spare;
    std::vector<int32_t> all(n_pages);
    for (int64_t i = 0; i < n_pages; ++i) all[i] = static_cast<int32_t>(i);
    Rng rng(seed);
    for (int64_t i = n_pages - 1; i > 0; --i)
      std::swap(all[i], all[static_cast<int64_t>(rng.next() % static_cast<uint64_t>(i + 1))]);
    table.assign(all.begin(), all.begin() + used);
  }
  int64_t rows() const { return n_pages * page_size; }
  int64_t row_of(int64_t pos) const { return int64_t{table[pos / page_size]} * page_size + pos % page_size; }
};

}  // namespace dsocr::test
