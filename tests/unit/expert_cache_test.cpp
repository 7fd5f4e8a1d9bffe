// The expert cache's slot choice (runtime/expert_cache.h choose_cached_experts) and the counting
// reference (kernels/expert_cache.h expert_count_ref), on the CPU.
#include "runtime/expert_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "kernels/expert_cache.h"

namespace dsocr {
namespace {

TEST(ChooseCachedExperts, EmptyCacheTakesTheLowestIdsOnEqualScores) {
  EXPECT_EQ(choose_cached_experts({-1, -1, -1}, std::vector<double>(8, 0.0)),
            (std::vector<int>{0, 1, 2}));
}

TEST(ChooseCachedExperts, HighestScoresWinAndKeepTheirSlots) {
  //                     expert  0  1  2  3  4  5
  const std::vector<double> score = {5, 0, 9, 1, 7, 0};
  // Slots hold 3, 2, 1: 2 stays in slot 1; 4 and 0 take the freed slots in slot order.
  EXPECT_EQ(choose_cached_experts({3, 2, 1}, score), (std::vector<int>{4, 2, 0}));
  // Already the best three: nothing moves, whatever the slot order.
  EXPECT_EQ(choose_cached_experts({0, 4, 2}, score), (std::vector<int>{0, 4, 2}));
}

TEST(ChooseCachedExperts, TiesGoToTheCachedExpertThenTheLowerId) {
  const std::vector<double> score = {1, 1, 1, 1, 3};
  // 4 wins outright; one more slot among the tied 0..3: the cached 3 keeps it.
  EXPECT_EQ(choose_cached_experts({3, -1}, score), (std::vector<int>{3, 4}));
  // Nothing tied is cached: the lowest id.
  EXPECT_EQ(choose_cached_experts({4, -1}, score), (std::vector<int>{4, 0}));
}

TEST(ChooseCachedExperts, MoreSlotsThanExperts) {
  // Winners by score 1, 2, 0; 1 keeps its slot, 2 and 0 fill slots 0 and 2, slot 3 stays empty.
  EXPECT_EQ(choose_cached_experts({-1, 1, -1, -1}, {0, 2, 1}), (std::vector<int>{2, 1, 0, -1}));
}

// Random cases against the definition: the chosen set is a top-`slots` set under the tie rule,
// kept experts stay in place, and every expert appears once.
TEST(ChooseCachedExperts, RandomAgainstTheDefinition) {
  std::mt19937 rng(11);
  for (int it = 0; it < 500; ++it) {
    const int n = 1 + static_cast<int>(rng() % 70), slots = 1 + static_cast<int>(rng() % n);
    std::vector<double> score(n);
    for (double& s : score) s = static_cast<double>(rng() % 5);  // many ties
    std::vector<int> perm(n);
    for (int i = 0; i < n; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int> current(slots, -1);
    for (int s = 0; s < slots; ++s)
      if (rng() % 3) current[s] = perm[s];
    const std::vector<int> next = choose_cached_experts(current, score);
    ASSERT_EQ(next.size(), current.size());
    std::set<int> chosen(next.begin(), next.end());
    ASSERT_EQ(chosen.size(), next.size()) << "an expert twice, or an empty slot left";
    ASSERT_EQ(*chosen.begin() >= 0, true);
    const std::set<int> was(current.begin(), current.end());
    auto better = [&](int a, int b) {  // a ranks before b
      if (score[a] != score[b]) return score[a] > score[b];
      if (was.count(a) != was.count(b)) return was.count(a) > was.count(b);
      return a < b;
    };
    for (int a : chosen)
      for (int b = 0; b < n; ++b) {
        if (!chosen.count(b)) {
          ASSERT_TRUE(better(a, b)) << a << " chosen over " << b;
        }
      }
    for (int s = 0; s < slots; ++s) {
      if (current[s] >= 0 && chosen.count(current[s])) {
        ASSERT_EQ(next[s], current[s]);
      }
    }
  }
}

TEST(ExpertCountRef, CountsInRangeIdsOnto) {
  const std::vector<int32_t> ids = {0, 3, 3, -1, 64, 63, 3, 100000};
  std::vector<int32_t> counts(65, 10);  // [64] is a sentinel past the histogram
  expert_count_ref(ids.data(), static_cast<int64_t>(ids.size()), 64, counts.data());
  EXPECT_EQ(counts[64], 10) << "id 64 counted past n_experts";
  EXPECT_EQ(counts[0], 11);
  EXPECT_EQ(counts[3], 13);
  EXPECT_EQ(counts[63], 11);
  EXPECT_EQ(counts[1], 10);
}

}  // namespace
}  // namespace dsocr
