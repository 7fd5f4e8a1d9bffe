// Native reader of a Hugging Face tokenizer.json holding a byte-level BPE (GPT-2 family; what
// DeepSeek-V3 and DeepSeek-OCR ship, ../shared/MODEL.md §9). encode() reproduces
// `tokenizers.Tokenizer.encode(text, add_special_tokens=False).ids` and decode() reproduces
// `decode(ids, skip_special_tokens=False)` of tokenizers 0.23 for the configurations below; any
// other configuration is refused at load time with a one-line error naming the file and field.
//
// Pipeline, as in tokenizers:
//   1. added tokens are cut out of the text first, longest match at the leftmost position:
//      those with normalized=false on the raw text, then those with normalized=true on what is
//      left; single_word / lstrip / rstrip behave as in AddedVocabulary::find_matches;
//   2. normalizer: null (or an empty Sequence);
//   3. pre_tokenizer: Split (Regex or String pattern; behaviors Isolated, Removed,
//      MergedWithPrevious, MergedWithNext, Contiguous; invert) and ByteLevel (add_prefix_space,
//      use_regex = the GPT-2 pattern), alone or in a Sequence with ByteLevel last;
//      regexes run on tokenizer_regex.h's engine;
//   4. model: BPE with merges in "a b" or ["a", "b"] form, ignore_merges, unk_token;
//      no dropout, byte_fallback, continuing_subword_prefix or end_of_word_suffix;
//   5. decoder: ByteLevel (bytes joined, then Rust's lossy UTF-8 repair).
// post_processor, truncation and padding are ignored: encode() adds no BOS (the runtime adds it,
// MODEL.md §6.2).
//
// Ids are never assumed: look special tokens up with token_id("<image>").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loader/status.h"

namespace dsocr {

struct TokenizerData;  // tokenizer.cpp

class Tokenizer {
 public:
  // Reads and validates tokenizer.json. Errors read "<path>: <field>: <what is wrong>".
  static Expected<Tokenizer> load(const std::string& path);
  // Same, from the JSON text; `name` stands for the file in messages.
  static Expected<Tokenizer> load_from_string(std::string_view json, const std::string& name);

  // add_special_tokens=false semantics. Invalid UTF-8 in `text` is tolerated: each bad byte is
  // treated as an unassigned character and still byte-encoded, so decode(encode(x)) == x.
  std::vector<int32_t> encode(std::string_view text) const;
  // skip_special_tokens=false semantics; unknown ids are skipped (as tokenizers does).
  std::string decode(std::span<const int32_t> ids) const;

  int32_t token_id(
      std::string_view token) const;  // added tokens first, then the vocab; -1 if absent
  bool is_special(int32_t id) const;  // an added token with special=true
  size_t vocab_size() const;          // largest id + 1 (model and added tokens)

  // The pre-tokenizer's pieces for `text`, byte-level mapped (what tokenizers'
  // pre_tokenizer.pre_tokenize_str returns), without the added-token pass. For tests and debugging.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  // Raw bytes of one token as the ByteLevel decoder renders it (empty for an unknown id).
  std::string_view token_bytes(int32_t id) const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  Tokenizer();
  std::unique_ptr<TokenizerData> d_;
};

// Incremental decode for streaming generation: push ids as they are sampled and print what
// comes back. Never returns part of a UTF-8 character: bytes of an unfinished character (byte-level
// BPE splits characters across tokens) are held until the character completes or turns out
// invalid. The concatenation of every push() and the final flush() equals
// Tokenizer::decode(all ids).
class TokenStreamDecoder {
 public:
  explicit TokenStreamDecoder(const Tokenizer& tok) : tok_(&tok) {}
  std::string push(int32_t id);
  std::string flush();  // emits what is held (an unfinished character as U+FFFD) and resets

 private:
  const Tokenizer* tok_;
  std::string pending_;
};

}  // namespace dsocr
