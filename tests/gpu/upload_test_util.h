// Helpers shared by the upload tests: checksums of every checkpoint tensor on the host (CPU
// reference, from the mapping) and on the device (from the uploaded slots), and their comparison.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gpu/gpu_test.h"
#include "kernels/checksum.h"
#include "kernels/parallel.h"
#include "loader/safetensors.h"
#include "runtime/cuda_check.h"
#include "runtime/weights.h"

namespace dsocr {

inline std::vector<Checksum> host_checksums(const Checkpoint& ck) {
  std::vector<Checksum> out(ck.tensors().size());
  parallel_for(static_cast<int64_t>(out.size()), [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      const TensorInfo& t = ck.tensors()[i];
      out[i] = checksum_ref(ck.bytes(t), t.nbytes, t.dtype == DType::BF16);
    }
  });
  return out;
}

// Device checksums of every uploaded tensor (one launch each, one copy back).
inline std::vector<Checksum> device_checksums(const Checkpoint& ck, const WeightTable& table) {
  const size_t n = ck.tensors().size();
  Checksum* dev = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&dev), n * sizeof(Checksum)), cudaSuccess);
  EXPECT_EQ(fill_u32_device(dev, kPoison32, n * sizeof(Checksum), nullptr), cudaSuccess);
  for (size_t i = 0; i < n; ++i) {
    const DeviceTensor* t = table.find(ck.tensors()[i].name);
    EXPECT_NE(t, nullptr) << ck.tensors()[i].name;
    if (!t) continue;
    EXPECT_EQ(checksum_device(t->data, t->nbytes, t->dtype == DType::BF16, dev + i, nullptr),
              cudaSuccess);
  }
  std::vector<Checksum> out(n);
  EXPECT_EQ(cudaMemcpy(out.data(), dev, n * sizeof(Checksum), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dev);
  return out;
}

inline void expect_same_checksums(const Checkpoint& ck, const std::vector<Checksum>& want,
                                  const std::vector<Checksum>& got) {
  ASSERT_EQ(want.size(), got.size());
  int bad = 0;
  for (size_t i = 0; i < want.size() && bad < 10; ++i) {
    const TensorInfo& t = ck.tensors()[i];
    const bool same_sum =
        std::fabs(want[i].sum - got[i].sum) <= 1e-9 * (1 + std::fabs(want[i].sum)) ||
        (std::isnan(want[i].sum) && std::isnan(got[i].sum));
    const bool ok = want[i].hash == got[i].hash && got[i].nbytes == t.nbytes &&
                    std::memcmp(want[i].first4, got[i].first4, 8) == 0 && same_sum;
    EXPECT_TRUE(ok) << t.name << ": device hash " << got[i].hash << " sum " << got[i].sum
                    << ", host hash " << want[i].hash << " sum " << want[i].sum;
    bad += !ok;
  }
}

}  // namespace dsocr
