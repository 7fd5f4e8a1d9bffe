// One layer's paged KV cache as the kernels see it: pages of page_size tokens, each token row
// n_heads·head_dim BF16 (K and V in separate page pools); a sequence's token at position p lives in
// page page_table[p / page_size], row p % page_size. The runtime's KvCache (runtime/kv_cache.h)
// owns the pages and the tables; kernels only read the table.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dsocr {

struct PagedKv {
  uint16_t* k = nullptr;                // [n_pages, page_size, n_heads * head_dim] BF16
  uint16_t* v = nullptr;                // [n_pages, page_size, n_heads * head_dim] BF16
  const int32_t* page_table = nullptr;  // [max_pages] device: the sequence's pages in order
  int page_size = 0;                    // tokens per page: 16, 32 or 64
  int64_t n_pages = 0;                  // pages in the pool
};

// Row index (page · page_size + offset) of position pos. PRECOND: page_size a power of two.
__host__ __device__ inline int64_t kv_row(const PagedKv& kv, int64_t pos) {
  return static_cast<int64_t>(kv.page_table[pos / kv.page_size]) * kv.page_size +
         pos % kv.page_size;
}

}  // namespace dsocr
