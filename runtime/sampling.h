// Greedy decoding with the no-repeat-n-gram rules of the two reference pipelines
// (../shared/MODEL.md §7.2, ../shared/golden/README.md):
//  * HF `NoRepeatNGramLogitsProcessor` (transformers generation/logits_process.py,
//    `_calc_banned_ngram_tokens`): over the WHOLE sequence (prompt + generated), a token t is
//    banned when ids[L-n+1 .. L-1] + [t] is an n-gram already present in ids. No ban while
//    L + 1 < n (HF's early return; with L <= n-1 no complete n-gram could match anyway). n = 1 bans
//    every token already present. n must be >= 1 (HF raises otherwise).
//  * DeepSeek-OCR vLLM `NoRepeatNGramLogitsProcessor(ngram_size, window_size, whitelist)`
//    (DeepSeek-OCR-vllm/process/ngram_norepeat.py): over the GENERATED ids only, and only
//    n-grams starting at i in [max(0, L - window), L - n]; whitelisted tokens are never banned;
//    nothing when L < n. Python quirk reproduced: for n = 1, `ids[-(n-1):]` is the whole list,
//    so nothing is ever banned.
// Token ids are int32 (vocab 129280).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace dsocr {

// Index of the largest logit; ties -> the first (torch.argmax). A NaN counts as the maximum
// (torch propagates NaN): the first NaN wins. All -inf -> 0.
// PRECOND: n >= 1.
int32_t argmax_ref(const float* logits,  // [n]
                   int64_t n);

// HF rule by a plain scan of the whole sequence, O(L·n). Returns banned ids sorted, unique.
// PRECOND: n >= 1.
std::vector<int32_t> hf_banned_scan(std::span<const int32_t> ids, int n);

// vLLM windowed rule by its plain scan, O(window·n). `generated` = generated ids only.
// Returns banned ids sorted, unique, whitelist removed.
// PRECOND: n >= 1, window >= 1.
std::vector<int32_t> windowed_banned_scan(std::span<const int32_t> generated, int n, int window,
                                          std::span<const int32_t> whitelist);

// Incremental HF rule: an index (n-1)-gram -> positions, updated by push(); banned() costs
// O(n + matches) per step instead of a rescan of the sequence. Hashes are verified token by
// token, so collisions cannot change the answer.
class NGramIndex {
 public:
  explicit NGramIndex(int n);  // PRECOND: n >= 1
  void push(int32_t id);       // append one id (prompt or generated)
  void push(std::span<const int32_t> ids);
  // Banned next ids for the current sequence, sorted, unique (== hf_banned_scan(ids(), n)).
  std::vector<int32_t> banned() const;
  const std::vector<int32_t>& ids() const { return ids_; }
  int n() const { return n_; }

 private:
  uint64_t hash_at(int64_t start) const;  // hash of ids_[start .. start+n-2]
  int n_;
  std::vector<int32_t> ids_;
  // hash of the (n-1)-gram starting at p -> all p such that ids_[p + n - 1] exists.
  std::unordered_map<uint64_t, std::vector<int64_t>> index_;
};

struct GenerationConfig {
  enum class NGram { kNone, kHF, kWindowed };
  int max_new_tokens = 8192;  // counts the EOS token if one is emitted
  int32_t eos_id = 1;
  NGram ngram_mode = NGram::kHF;
  int ngram = 20;                  // HF infer: 20 (35 in eval_mode); vLLM: 30
  int window = 90;                 // kWindowed only
  std::vector<int32_t> whitelist;  // kWindowed only (vLLM ref: {128821, 128822})
};

enum class StopReason { kNone, kEos, kMaxTokens };

// Greedy decoding state: prompt + generated ids, the n-gram ban, the stop rule.
// Per step: the model produces logits for the next position, then step() bans, argmaxes,
// appends, and updates done(). GPU paths can use banned_next() to mask on the device and
// accept() the token they chose.
class GenerationState {
 public:
  // PRECOND: cfg.ngram >= 1 when ngram_mode != kNone; cfg.window >= 1 for kWindowed.
  GenerationState(GenerationConfig cfg, std::span<const int32_t> prompt);

  // Ids banned for the next token under the configured rule (sorted, unique).
  std::vector<int32_t> banned_next() const;

  // Sets logits[banned] = -inf (in place), picks argmax_ref, accept()s it and returns it.
  // PRECOND: !done(); every banned id < vocab.
  int32_t step(float* logits,  // [vocab], modified in place
               int64_t vocab);

  // Appends a chosen token; stops on eos_id or max_new_tokens. PRECOND: !done().
  void accept(int32_t id);

  bool done() const { return stop_ != StopReason::kNone; }
  StopReason stop_reason() const { return stop_; }
  const std::vector<int32_t>& ids() const { return ids_; }  // prompt + generated
  std::span<const int32_t> generated() const {
    return std::span<const int32_t>(ids()).subspan(prompt_len_);
  }
  int64_t prompt_len() const { return prompt_len_; }

 private:
  GenerationConfig cfg_;
  int64_t prompt_len_;
  std::vector<int32_t> ids_;  // prompt + generated
  NGramIndex index_;          // fed only in kHF mode
  StopReason stop_ = StopReason::kNone;
};

}  // namespace dsocr
