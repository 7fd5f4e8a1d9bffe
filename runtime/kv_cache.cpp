#include "runtime/kv_cache.h"

namespace dsocr {

PageAllocator::PageAllocator(int64_t n_pages)
    : n_pages_(n_pages < 0 ? 0 : n_pages), used_(static_cast<size_t>(n_pages_), 0) {
  free_.reserve(static_cast<size_t>(n_pages_));
  for (int64_t p = n_pages_ - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));
}

Expected<std::vector<int32_t>> PageAllocator::allocate(int64_t n) {
  if (n < 0 || n > free_pages())
    return Status::Error(strfmt("%lld KV pages requested, %lld free of %lld",
                                static_cast<long long>(n), static_cast<long long>(free_pages()),
                                static_cast<long long>(n_pages_)));
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (auto& p : out) {
    p = free_.back();
    free_.pop_back();
    used_[p] = 1;
  }
  return out;
}

Status PageAllocator::release(const std::vector<int32_t>& pages) {
  for (int32_t p : pages)
    if (p < 0 || p >= n_pages_ || !used_[p])
      return Status::Error(strfmt("KV page %d released but not allocated", p));
  for (int32_t p : pages) used_[p] = 0, free_.push_back(p);
  return Status::Ok();
}

uint64_t KvGeometry::page_bytes() const {
  return static_cast<uint64_t>(page_size) * static_cast<uint64_t>(dim) * 2;
}
uint64_t KvGeometry::bytes() const {
  return static_cast<uint64_t>(n_layers) * 2 * static_cast<uint64_t>(n_pages) * page_bytes();
}
KvGeometry KvGeometry::fit(int n_layers, int64_t dim, int page_size, uint64_t bytes) {
  KvGeometry g;
  g.n_layers = n_layers, g.dim = dim, g.page_size = page_size;
  const uint64_t per_page_all = static_cast<uint64_t>(n_layers) * 2 * g.page_bytes();
  g.n_pages = per_page_all ? static_cast<int64_t>(bytes / per_page_all) : 0;
  return g;
}

KvCache::KvCache(uint16_t* region, const KvGeometry& geometry)
    : region_(region), geo_(geometry), alloc_(geometry.n_pages) {}

Status KvCache::reserve(KvSequence& seq, int64_t tokens, const std::string& fix) {
  seq.page_size = geo_.page_size;
  const int64_t need = (tokens + geo_.page_size - 1) / geo_.page_size -
                       static_cast<int64_t>(seq.pages.size());
  if (need <= 0) return Status::Ok();
  auto more = alloc_.allocate(need);
  if (!more.ok())
    return Status::Error(strfmt(
        "KV cache full: a sequence of %lld tokens needs %lld more pages of %d tokens, %lld of "
        "%lld are free; %s",
        static_cast<long long>(tokens), static_cast<long long>(need), geo_.page_size,
        static_cast<long long>(alloc_.free_pages()), static_cast<long long>(geo_.n_pages),
        fix.c_str()));
  seq.pages.insert(seq.pages.end(), more->begin(), more->end());
  return Status::Ok();
}

Status KvCache::release(KvSequence& seq) {
  DSOCR_TRY(alloc_.release(seq.pages));
  seq.pages.clear();
  return Status::Ok();
}

PagedKv KvCache::layer(int l, const int32_t* device_table) const {
  const uint64_t pool = static_cast<uint64_t>(geo_.n_pages) * geo_.page_size * geo_.dim;  // elems
  PagedKv kv;
  kv.k = region_ + static_cast<uint64_t>(l) * 2 * pool;
  kv.v = kv.k + pool;
  kv.page_table = device_table;
  kv.page_size = geo_.page_size;
  kv.n_pages = geo_.n_pages;
  return kv;
}

}  // namespace dsocr
