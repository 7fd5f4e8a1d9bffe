// Router-choice counting (kernels/expert_cache.cu) against expert_count_ref: ids from a router-like
// distribution plus junk (negative, >= n_experts), at decode, prefill and odd sizes, added onto
// counts that already hold values (the histogram accumulates across forwards).
#include <gtest/gtest.h>

#include "gpu/decoder_test_util.h"
#include "kernels/expert_cache.h"

namespace dsocr::test {
namespace {

void run_case(int64_t n, int n_experts, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "n " << n << ", n_experts " << n_experts << ", seed " << seed);
  Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& id : ids) {
    const uint32_t r = static_cast<uint32_t>(rng.next() % 1000);
    if (r < 10)
      id = -1 - static_cast<int32_t>(r);  // junk below
    else if (r < 20)
      id = n_experts + static_cast<int32_t>(r);  // junk above
    else if (r < 500)
      id = static_cast<int32_t>(r) % std::min(n_experts, 5);  // hot experts
    else
      id = static_cast<int32_t>(r * 7919u % static_cast<uint32_t>(n_experts));
  }
  std::vector<int32_t> counts(n_experts);
  for (int e = 0; e < n_experts; ++e) counts[e] = 1000 * e + 7;  // earlier forwards
  DevBuf<int32_t> d_ids(std::max<int64_t>(n, 1));
  if (n > 0) d_ids.upload(ids);
  DevBuf<int32_t> d_counts(counts);
  LAUNCH_OK(expert_count(d_ids.get(), n, n_experts, d_counts.get(), nullptr));
  std::vector<int32_t> want = counts;
  expert_count_ref(ids.data(), n, n_experts, want.data());
  const std::vector<int32_t> got = d_counts.download();
  int64_t counted = 0;
  for (int e = 0; e < n_experts; ++e) {
    ASSERT_EQ(got[e], want[e]) << "expert " << e;
    counted += want[e] - counts[e];
  }
  // The reference itself: every in-range id counted once.
  int64_t in_range = 0;
  for (int32_t id : ids) in_range += id >= 0 && id < n_experts;
  EXPECT_EQ(counted, in_range);
}

TEST(ExpertCount, MatchesReference) {
  DSOCR_SKIP_WITHOUT_GPU();
  // Decode step (top_k 6), prefill chunks (Gundam's 1,128 rows x 6), block edges (1024 ids per
  // block), and a large one that makes blocks collide on the global atomics.
  for (int64_t n : {0, 1, 6, 48, 1023, 1024, 1025, 6768, 200000})
    for (int n_experts : {64, 1, 7, kExpertCountMaxExperts})
      run_case(n, n_experts, static_cast<uint64_t>(n) * 31 + n_experts);
}

TEST(ExpertCount, RejectsBadArguments) {
  DSOCR_SKIP_WITHOUT_GPU();
  DevBuf<int32_t> ids(8), counts(64);
  EXPECT_EQ(expert_count(ids.get(), 8, 0, counts.get(), nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(expert_count(ids.get(), 8, kExpertCountMaxExperts + 1, counts.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(expert_count(ids.get(), -1, 64, counts.get(), nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(expert_count(nullptr, 8, 64, counts.get(), nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(expert_count(ids.get(), 8, 64, nullptr, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace dsocr::test
