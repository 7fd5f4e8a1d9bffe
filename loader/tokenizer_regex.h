// The regex engine behind the tokenizer's Split pre-tokenizers: exactly the subset that
// tokenizer.json split patterns use (GPT-2, DeepSeek-V3, Llama-3/Qwen style), compiled from the
// pattern text and run as a Pike VM (Thompson NFA simulation), so matching is linear in the
// text and a pattern cannot blow up.
//
// Semantics are Oniguruma's (what Hugging Face tokenizers uses), leftmost-first like a
// backtracking engine: the first alternative that can match wins, quantifiers are greedy.
// Supported syntax:
//   literals, escapes \t \n \r \f \v \a \e \xHH \x{H..} \uHHHH and escaped punctuation;
//   classes [...] and [^...] with ranges; \s \S; \p{..} \P{..} \p{^..} with General_Category
//   names (L, Lu, ..., N, Nd, ..., long names too) and Any; '.' (anything but \n);
//   alternation |; groups (...) (?:...) (?i:...) (ASCII case folding, plus U+017F and U+212A);
//   quantifiers ? * + {n} {n,} {n,m} {,m} (greedy only);
//   lookahead (?=X) (?!X) where X is one character or one class.
// Anything else (anchors, lookbehind, backreferences, lazy or possessive quantifiers, \b \d \w,
// nested classes, patterns that can match the empty string) is refused at compile time with a
// one-line message naming the construct and its offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loader/status.h"

namespace dsocr {

class SplitRegex {
 public:
  // Compiles an Oniguruma-syntax pattern. Errors read "regex \"...\": <what> at offset N".
  static Expected<SplitRegex> compile(std::string_view pattern);
  // A pattern that matches `text` literally (Split's {"String": ...} form).
  static Expected<SplitRegex> literal(std::string_view text);

  // Reusable matcher state (thread lists); one per thread of execution.
  struct Scratch {
    struct List {
      std::vector<uint32_t> sparse, pc, start;  // sparse set of instruction indices
      uint32_t n = 0;
    };
    List a, b;
    std::vector<uint32_t> stack;
  };

  // Appends [start, end) of each successive leftmost-first, non-overlapping match in
  // cps[0, n) to `out` (positions relative to cps), as Oniguruma's find_iter does. The text
  // ends at n: a lookahead at the end sees no character.
  void find_all(const uint32_t* cps, size_t n, std::vector<std::pair<uint32_t, uint32_t>>& out,
                Scratch& scratch) const;

  const std::string& pattern() const { return pattern_; }

  // Compiled form; public so the parser/compiler in the .cpp can build it.
  struct Inst {
    enum Op : uint8_t { kChar, kClass, kSplit, kJmp, kLook, kLookNot, kMatch };
    Op op;
    uint32_t x = 0, y = 0;  // kChar: code point; kClass/kLook*: class; kSplit: x preferred
  };
  struct CharClass;

  SplitRegex();
  ~SplitRegex();
  SplitRegex(SplitRegex&&) noexcept;
  SplitRegex& operator=(SplitRegex&&) noexcept;

 private:
  bool search(const uint32_t* cps, size_t n, size_t from, Scratch& s, uint32_t* ms,
              uint32_t* me) const;
  bool consumes(const Inst& in, uint32_t cp) const;

  std::string pattern_;
  std::vector<Inst> prog_;
  std::vector<CharClass> classes_;
  std::vector<uint64_t> first_bits_;  // BMP bitmap: code points that can start a match
  std::vector<uint32_t> first_pcs_;   // consuming instructions reachable from the start
};

}  // namespace dsocr
