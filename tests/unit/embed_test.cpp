#include "kernels/embed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "ref_test_util.h"

namespace dsocr {
namespace {

using test::nan_filled;
using test::random_bf16;
using test::Rng;

// A reduced vocabulary (the full [129280, 1280] table is 330 MB); the row width is the model's.
constexpr int64_t kVocab = 3001;
constexpr int64_t kDim = 1280;

TEST(Embed, GathersExactRows) {
  Rng rng(21);
  const std::vector<uint16_t> table = random_bf16(rng, kVocab * kDim, -1.f, 1.f);
  for (int64_t T : {1, 7, 82, 282}) {
    std::vector<int32_t> ids(T);
    for (auto& id : ids) id = static_cast<int32_t>(rng.below(kVocab));
    ids[0] = kVocab - 1;         // last row
    if (T > 2) ids[T - 1] = 0;   // first row
    if (T > 3) ids[1] = ids[2];  // repeated id
    std::vector<float> out = nan_filled(T * kDim);
    embed_ref(ids.data(), table.data(), out.data(), T, kDim);
    // Widening BF16 is exact: the float64 value of each row is bits << 16; compare bit for bit.
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < kDim; ++i) {
        const uint32_t want = uint32_t(table[ids[t] * kDim + i]) << 16;
        uint32_t got;
        std::memcpy(&got, &out[t * kDim + i], 4);
        ASSERT_EQ(got, want) << "T=" << T << " t=" << t << " i=" << i;
      }
  }
}

TEST(Embed, HandMadeValues) {
  const uint16_t table[2 * 3] = {0x3f80, 0xc000, 0x0000,   // 1, -2, 0
                                 0x3e80, 0x4049, 0x8000};  // 0.25, 3.140625, -0
  const int32_t ids[3] = {1, 0, 1};
  float out[9];
  embed_ref(ids, table, out, 3, 3);
  const float want[9] = {0.25f, 3.140625f, -0.f, 1.f, -2.f, 0.f, 0.25f, 3.140625f, -0.f};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(out[i], want[i]) << i;
  EXPECT_TRUE(std::signbit(out[2]));
}

}  // namespace
}  // namespace dsocr
