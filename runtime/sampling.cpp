#include "runtime/sampling.h"

#include <algorithm>
#include <cmath>

namespace dsocr {
namespace {

void sort_unique(std::vector<int32_t>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

int32_t argmax_ref(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(logits[i])) return static_cast<int32_t>(i);  // first NaN wins (torch)
    if (logits[i] > logits[best]) best = i;                     // strict: the first maximum stays
  }
  return static_cast<int32_t>(best);
}

std::vector<int32_t> hf_banned_scan(std::span<const int32_t> ids, int n) {
  std::vector<int32_t> banned;
  const int64_t L = static_cast<int64_t>(ids.size());
  if (L + 1 < n) return banned;  // HF early return
  // The current (n-1)-suffix ids[L-n+1 .. L-1] against every n-gram ids[i .. i+n-1].
  const int64_t s = L - (n - 1);
  for (int64_t i = 0; i + n <= L; ++i) {
    if (std::equal(ids.begin() + i, ids.begin() + i + n - 1, ids.begin() + s))
      banned.push_back(ids[i + n - 1]);
  }
  sort_unique(banned);
  return banned;
}

std::vector<int32_t> windowed_banned_scan(std::span<const int32_t> generated, int n, int window,
                                          std::span<const int32_t> whitelist) {
  std::vector<int32_t> banned;
  const int64_t L = static_cast<int64_t>(generated.size());
  if (L < n) return banned;
  // Python `ids[-(n-1):]`: for n = 1 that is ids[-0:] = the whole list, which never equals the
  // empty n-gram prefix (L >= 1 here), so nothing is banned.
  if (n == 1) return banned;
  const int64_t s = L - (n - 1);
  for (int64_t i = std::max<int64_t>(0, L - window); i < L - n + 1; ++i) {
    if (std::equal(generated.begin() + i, generated.begin() + i + n - 1, generated.begin() + s))
      banned.push_back(generated[i + n - 1]);
  }
  sort_unique(banned);
  std::erase_if(banned, [&](int32_t id) {
    return std::find(whitelist.begin(), whitelist.end(), id) != whitelist.end();
  });
  return banned;
}

NGramIndex::NGramIndex(int n) : n_(n) {}

uint64_t NGramIndex::hash_at(int64_t start) const {
  // FNV-1a over the 32-bit ids, finished by a splitmix64 mix.
  uint64_t h = 0xcbf29ce484222325ull;
  for (int64_t i = start; i < start + n_ - 1; ++i) {
    h ^= static_cast<uint32_t>(ids_[i]);
    h *= 0x100000001b3ull;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  return h;
}

void NGramIndex::push(int32_t id) {
  ids_.push_back(id);
  const int64_t L = static_cast<int64_t>(ids_.size());
  // The n-gram that just completed starts at L - n.
  if (L >= n_) index_[hash_at(L - n_)].push_back(L - n_);
}

void NGramIndex::push(std::span<const int32_t> ids) {
  for (int32_t id : ids) push(id);
}

std::vector<int32_t> NGramIndex::banned() const {
  std::vector<int32_t> out;
  const int64_t L = static_cast<int64_t>(ids_.size());
  if (L + 1 < n_) return out;  // HF early return
  const int64_t s = L - (n_ - 1);
  auto it = index_.find(hash_at(s));
  if (it == index_.end()) return out;
  for (int64_t p : it->second) {
    if (std::equal(ids_.begin() + p, ids_.begin() + p + n_ - 1, ids_.begin() + s))
      out.push_back(ids_[p + n_ - 1]);
  }
  sort_unique(out);
  return out;
}

GenerationState::GenerationState(GenerationConfig cfg, std::span<const int32_t> prompt)
    : cfg_(std::move(cfg)),
      prompt_len_(static_cast<int64_t>(prompt.size())),
      ids_(prompt.begin(), prompt.end()),
      index_(std::max(cfg_.ngram, 1)) {
  if (cfg_.ngram_mode == GenerationConfig::NGram::kHF) index_.push(prompt);
  if (cfg_.max_new_tokens <= 0) stop_ = StopReason::kMaxTokens;
}

std::vector<int32_t> GenerationState::banned_next() const {
  switch (cfg_.ngram_mode) {
    case GenerationConfig::NGram::kHF:
      return index_.banned();
    case GenerationConfig::NGram::kWindowed:
      return windowed_banned_scan(generated(), cfg_.ngram, cfg_.window, cfg_.whitelist);
    case GenerationConfig::NGram::kNone:
      break;
  }
  return {};
}

int32_t GenerationState::step(float* logits, int64_t vocab) {
  for (int32_t id : banned_next()) logits[id] = -INFINITY;
  const int32_t id = argmax_ref(logits, vocab);
  accept(id);
  return id;
}

void GenerationState::accept(int32_t id) {
  ids_.push_back(id);
  if (cfg_.ngram_mode == GenerationConfig::NGram::kHF) index_.push(id);
  if (id == cfg_.eos_id)
    stop_ = StopReason::kEos;
  else if (static_cast<int64_t>(ids_.size()) - prompt_len_ >= cfg_.max_new_tokens)
    stop_ = StopReason::kMaxTokens;
}

}  // namespace dsocr
