// Paged KV cache bookkeeping (runtime/kv_cache.h): page allocation, reserve/release, the capacity
// error, and the per-layer pool addresses.
#include "runtime/kv_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace dsocr {
namespace {

TEST(PageAllocator, AllocatesDistinctPagesAndRefusesOverdraw) {
  PageAllocator a(10);
  auto x = a.allocate(4);
  ASSERT_TRUE(x.ok());
  auto y = a.allocate(6);
  ASSERT_TRUE(y.ok());
  std::set<int32_t> all(x->begin(), x->end());
  all.insert(y->begin(), y->end());
  EXPECT_EQ(all.size(), 10u);
  EXPECT_EQ(*all.begin(), 0);
  EXPECT_EQ(*all.rbegin(), 9);
  EXPECT_EQ(a.free_pages(), 0);
  auto z = a.allocate(1);
  ASSERT_FALSE(z.ok());
  EXPECT_NE(z.status().message().find("1 KV pages requested, 0 free of 10"), std::string::npos)
      << z.status().message();
  ASSERT_TRUE(a.release(*x).ok());
  EXPECT_EQ(a.free_pages(), 4);
  EXPECT_FALSE(a.release(*x).ok());  // twice
  EXPECT_FALSE(a.release({42}).ok());
  auto w = a.allocate(4);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(std::set<int32_t>(w->begin(), w->end()), std::set<int32_t>(x->begin(), x->end()));
  EXPECT_TRUE(a.allocate(0).ok());
  EXPECT_FALSE(a.allocate(-1).ok());
}

TEST(KvCache, ReserveGrowsByPagesAndNamesTheFix) {
  const KvGeometry g = KvGeometry::fit(12, 1280, 32, uint64_t{12} * 2 * 5 * 32 * 1280 * 2 + 100);
  EXPECT_EQ(g.n_pages, 5);
  EXPECT_EQ(g.bytes(), uint64_t{12} * 2 * 5 * 32 * 1280 * 2);
  KvCache cache(nullptr, g);
  KvSequence a, b;
  ASSERT_TRUE(cache.reserve(a, 1, "fix it").ok());
  EXPECT_EQ(a.pages.size(), 1u);
  EXPECT_EQ(a.capacity(), 32);
  ASSERT_TRUE(cache.reserve(a, 32, "fix it").ok());
  EXPECT_EQ(a.pages.size(), 1u);
  ASSERT_TRUE(cache.reserve(a, 33, "fix it").ok());
  EXPECT_EQ(a.pages.size(), 2u);
  ASSERT_TRUE(cache.reserve(b, 96, "fix it").ok());
  EXPECT_EQ(cache.free_tokens(), 0);
  const Status s = cache.reserve(a, 65, "lower --max-tokens");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("KV cache full: a sequence of 65 tokens needs 1 more pages of 32 "
                             "tokens, 0 of 5 are free; lower --max-tokens"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(a.pages.size(), 2u);  // unchanged on failure
  ASSERT_TRUE(cache.release(b).ok());
  EXPECT_TRUE(b.pages.empty());
  EXPECT_EQ(cache.free_tokens(), 96);
  ASSERT_TRUE(cache.reserve(a, 65, "x").ok());
}

TEST(KvCache, LayerPoolsAreDisjointAndOrdered) {
  const KvGeometry g = KvGeometry::fit(3, 16, 16, uint64_t{3} * 2 * 4 * 16 * 16 * 2);
  ASSERT_EQ(g.n_pages, 4);
  std::vector<uint16_t> region(g.bytes() / 2);
  KvCache cache(region.data(), g);
  const int32_t table[2] = {3, 1};
  const int64_t pool = 4 * 16 * 16;
  for (int l = 0; l < 3; ++l) {
    const PagedKv kv = cache.layer(l, table);
    EXPECT_EQ(kv.k, region.data() + l * 2 * pool);
    EXPECT_EQ(kv.v, kv.k + pool);
    EXPECT_EQ(kv.page_size, 16);
    EXPECT_EQ(kv.n_pages, 4);
    EXPECT_EQ(kv_row(kv, 0), 3 * 16);
    EXPECT_EQ(kv_row(kv, 17), 1 * 16 + 1);
  }
  EXPECT_EQ(cache.layer(2, table).v + pool, region.data() + region.size());
}

}  // namespace
}  // namespace dsocr
