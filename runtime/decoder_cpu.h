// The DeepSeek-3B-MoE decoder on the CPU in float32 (the reference backend; ../shared/MODEL.md §7).
//
// Weights are read as BF16 from the mapped checkpoint and widened inside each op; activations, the
// residual stream and the KV cache are float32. One object holds one sequence's KV cache.
#pragma once

#include <cstdint>
#include <vector>

#include "loader/config.h"
#include "loader/status.h"
#include "runtime/model_weights.h"

namespace dsocr {

// Where to copy the residual stream during a forward: entering layer 0..n_layers-1 and leaving
// the last layer (before the final norm), at the given absolute positions (golden
// `prefill_hidden`). Positions outside the forward's range are left untouched.
struct HiddenTap {
  std::vector<int64_t> positions;
  std::vector<float> out;  // [n_layers + 1, positions.size(), dim], filled by forward()
};

class CpuDecoder {
 public:
  // max_tokens: KV cache capacity (prompt + generated), at most cfg.max_pos.
  CpuDecoder(const ModelConfig& cfg, const DecoderWeights& w, int64_t max_tokens);

  // Token embeddings (BF16 rows widened). PRECOND: ids in [0, vocab) (checked by callers).
  void embed(const int32_t* ids,  // [T]
             int64_t T,
             float* out) const;   // [T, dim]

  // Runs T tokens at positions pos() .. pos()+T-1, appending their K/V to the cache; writes the
  // logits of the last of them. Fails (without running) when the cache would overflow.
  Status forward(const float* embeds,  // [T, dim]
                 int64_t T,
                 float* logits_last,   // [vocab]
                 HiddenTap* tap = nullptr);

  int64_t pos() const { return pos_; }
  int64_t capacity() const { return max_tokens_; }
  void reset() { pos_ = 0; }
  // Forget every position >= pos (e.g. to teacher-force from the end of the prompt).
  void truncate(int64_t pos) { pos_ = pos < pos_ ? pos : pos_; }

 private:
  void layer(int l, int64_t T, HiddenTap* tap);

  const ModelConfig& cfg_;
  const DecoderWeights& w_;
  int64_t max_tokens_;
  int64_t pos_ = 0;
  std::vector<float> k_cache_, v_cache_;  // [n_layers, max_tokens, dim] each
  // Per-forward activations, grown on demand.
  std::vector<float> h_, x_, q_, k_, v_, att_, delta_, scratch_, probs_, topk_w_;
  std::vector<int32_t> pos_ids_, topk_idx_;
};

}  // namespace dsocr
