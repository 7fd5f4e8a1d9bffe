// The paged KV cache (DESIGN.md §4): the pool's "kv_cache" region cut into pages of page_size
// tokens for every layer's K and V; sequences own lists of pages (their page tables), taken from
// and returned to one free list. The kernels see one layer at a time as a PagedKv
// (kernels/kv_pages.h).
//
// Region layout: [n_layers][K, V][n_pages][page_size][dim] BF16, so page p of every layer and of
// K and V belongs to the same sequence: one table serves all 24 pools.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kv_pages.h"
#include "loader/status.h"

namespace dsocr {

constexpr int kKvPageSize = 32;  // tokens per page (DESIGN.md: 16 or 32)

// Host bookkeeping of free pages (no device memory: unit-tested on the CPU).
class PageAllocator {
 public:
  explicit PageAllocator(int64_t n_pages);
  // n more pages for a sequence; fails (allocating nothing) when fewer than n are free.
  Expected<std::vector<int32_t>> allocate(int64_t n);
  // Returns pages (each must be one this allocator handed out and not yet returned).
  Status release(const std::vector<int32_t>& pages);
  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }
  int64_t n_pages() const { return n_pages_; }

 private:
  int64_t n_pages_;
  std::vector<int32_t> free_;  // a stack: the lowest ids come out first
  std::vector<uint8_t> used_;
};

// Geometry of the region.
struct KvGeometry {
  int n_layers = 0;
  int64_t dim = 0;  // n_heads * head_dim (1280)
  int page_size = kKvPageSize;
  int64_t n_pages = 0;
  uint64_t page_bytes() const;  // one page of one pool: page_size * dim * 2
  uint64_t bytes() const;       // the whole region: n_layers * 2 * n_pages * page_bytes()
  // Pages that fit in `bytes` of region for this model.
  static KvGeometry fit(int n_layers, int64_t dim, int page_size, uint64_t bytes);
};

// One sequence's pages in position order; capacity() tokens fit.
struct KvSequence {
  std::vector<int32_t> pages;
  int page_size = kKvPageSize;
  int64_t capacity() const { return static_cast<int64_t>(pages.size()) * page_size; }
};

class KvCache {
 public:
  KvCache(uint16_t* region, const KvGeometry& geometry);

  // Grows `seq` to hold at least `tokens` tokens. Fails with one line naming the need, what is
  // free, and the fix (`fix`: e.g. "lower --max-tokens or raise --gpu-mem").
  Status reserve(KvSequence& seq, int64_t tokens, const std::string& fix);
  Status release(KvSequence& seq);

  // Layer l's K/V pools with the given device copy of a sequence's page table.
  PagedKv layer(int l, const int32_t* device_table) const;
  const KvGeometry& geometry() const { return geo_; }
  int64_t free_tokens() const { return alloc_.free_pages() * geo_.page_size; }

 private:
  uint16_t* region_;
  KvGeometry geo_;
  PageAllocator alloc_;
};

}  // namespace dsocr
