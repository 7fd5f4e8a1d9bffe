// The paged KV cache as the decoder's CUDA kernels see it (prefill_attention; the decode kernels).
// Header-only, plain data: the runtime owns the pools and the page tables (DESIGN.md §4).
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define DSOCR_HOST_DEVICE __host__ __device__
#else
#define DSOCR_HOST_DEVICE
#endif

namespace dsocr {

// One layer's paged KV cache as the kernels see it: pages of page_size tokens, each token row
// n_heads*head_dim BF16 (K and V in separate page pools); a sequence's token at position p lives in
// page page_table[p / page_size], row p % page_size.
struct PagedKv {
  uint16_t* k;                // [n_pages, page_size, n_heads * head_dim] BF16
  uint16_t* v;                // [n_pages, page_size, n_heads * head_dim] BF16
  const int32_t* page_table;  // [max_pages] device: the sequence's pages in position order
  int page_size;              // tokens per page: 16, 32 or 64
  int64_t n_pages;            // pages in the pool
};

// Pool row (page * page_size + pos % page_size) of the token at position pos: K at
// kv.k + kv_row(kv, pos) * n_heads * head_dim. Reads page_table (device memory in device code).
inline DSOCR_HOST_DEVICE int64_t kv_row(const PagedKv& kv, int64_t pos) {
  return static_cast<int64_t>(kv.page_table[pos / kv.page_size]) * kv.page_size +
         pos % kv.page_size;
}

}  // namespace dsocr
