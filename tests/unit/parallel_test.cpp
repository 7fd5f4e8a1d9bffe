#include "kernels/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace dsocr {
namespace {

TEST(Parallel, CoversEveryIndexExactlyOnce) {
  for (int64_t n : {1, 7, 1000, 100003}) {
    std::vector<std::atomic<int>> hits(n);
    parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    }, 3);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(Parallel, NestedCallsRunSerially) {
  std::atomic<int64_t> total{0};
  parallel_for(8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_for(100, [&](int64_t b2, int64_t e2) { total += e2 - b2; });
  });
  EXPECT_EQ(total.load(), 800);
}

TEST(Parallel, ResizeKeepsWorking) {
  set_cpu_threads(3);
  EXPECT_EQ(cpu_threads(), 3);
  std::atomic<int64_t> sum{0};
  parallel_for(1000, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum.load(), 999 * 1000 / 2);
  set_cpu_threads(0);
}

}  // namespace
}  // namespace dsocr
