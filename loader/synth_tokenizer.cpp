// Synthetic DeepSeek-OCR tokenizer.json (see synth_tokenizer.h).
//
// How the BPE vocab is built (ranks = order of addition; every merge joins two tokens already in
// the vocab into a new one, so merges[i] = (a, b) has id(a), id(b) < id(a + b)):
//   ids 0..2     BOS / EOS / PAD strings, as in DeepSeek-V3's and DeepSeek-OCR's model.vocab;
//   ids 3..258   the 256 ByteLevel symbols (GPT-2 bytes_to_unicode), in code point order;
//   then words, each made a single token by VocabBuilder::add_word (BPE-encode it with the merges
//   so far, then merge adjacent pieces until one is left):
//     1. whitespace runs (2..16 spaces, 2..4 newlines, 2..4 tabs, " \n");
//     2. every 2- and 3-digit string (the pre-tokenizer cuts digits into runs of 1..3);
//     3. kWords (English, markdown, LaTeX, HTML, code), each as w, " w", W, " W"; kSymbols
//        (markup and punctuation runs) as w, " w";
//     4. letter pairs [a-z][a-z] in the same four forms, and " "[A-Z];
//     5. CJK: U+3000..U+30FF (punctuation, kana), U+4E00..U+9FA5, U+FF01..U+FF5E, one token per
//        character;
//     6. pseudo-words of 1..3 syllables from splitmix64 (fixed seed), variants as in 3, until
//        the vocab holds exactly kSynthBpeVocab entries.
// A token whose ByteLevel string equals an added token's content is never added (tokenizers would
// otherwise give the added token the vocab's id).
#include "loader/synth_tokenizer.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "loader/synth.h"  // splitmix64
#include "loader/unicode.h"

namespace dsocr {
namespace {

constexpr const char* kWords =
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "what can more out up other into could time these two may then do first any my now such like "
    "our over man me even most made after also did many before must through back years where much "
    "your way well down should because each just those people how too little state good very make "
    "world still own see men work long get here between both life being under never day same "
    "another know while last might us great old year off come since against go came right used "
    "take three table figure section chapter page total data result results value method model "
    "document text image number name date report analysis system information example however "
    "abstract introduction conclusion references appendix equation proof theorem lemma note "
    "summary description amount price quantity item account invoice address phone email "
    "january february march april june july august september october november december "
    "markdown convert locate free ocr describe detail parse figure caption title header footer "
    "return function class struct const void int float double char bool true false null none "
    "import include define public private static self def print string vector std size auto "
    "while for else elif begin end frac sum int left right mathbf mathrm cdot times alpha beta "
    "gamma delta lambda sigma theta omega infty partial nabla sqrt http https www com org html "
    "div span href src img body head table thead tbody";
// Punctuation and markup runs, added as w and " w" (pre-tokenizer: " ?[\p{P}\p{S}]+[\r\n]*").
constexpr const char* kSymbols[] = {
    "##", "###", "####", "**",  "__",  "--",   "---", "```", "|",   "||",  "|-",  "-|",
    ":-", "-:",  "==",   "!=",  "<=",  ">=",   "->",  "=>",  "::",  "();", "()",  "{}",
    "[]", "\\(", "\\)",  "\\[", "\\]", "$$",   "...", ".\n", ",\n", ":\n", ";\n", "|\n",
    ").", "),",  "\",",  "\".", "');", "\");", "</",  "/>",  "={",  "};",  "//",  "/*",
    "*/", "#[",  "<!--", "-->", "&&",  "||",   "+=",  "-=",  "*=",  "%)",  "),\n"};

// The added tokens of ../shared/MODEL.md §6.3 (all lstrip = rstrip = single_word = false).
struct AddedTokenSpec {
  int id;
  std::string content;
  bool special;
  bool normalized;
};

std::vector<AddedTokenSpec> added_tokens() {
  std::vector<AddedTokenSpec> v;
  v.push_back({0, "<｜begin▁of▁sentence｜>", true, false});
  v.push_back({1, "<｜end▁of▁sentence｜>", true, false});
  v.push_back({2, "<｜▁pad▁｜>", true, false});
  for (int i = 0; i < 800; ++i)
    v.push_back({128000 + i, "<｜place▁holder▁no▁" + std::to_string(i) + "｜>", true, false});
  int id = 128800;
  for (const char* c :
       {"<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<｜User｜>", "<｜Assistant｜>"})
    v.push_back({id++, c, false, true});
  v.push_back({id++, "<|EOT|>", true, true});
  for (const char* c : {"<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
                        "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>",
                        "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>"})
    v.push_back({id++, c, false, true});
  for (const char* c : {"<image>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>",
                        "<td>", "</td>", "<tr>", "</tr>", "<|User|>", "<|Assistant|>"})
    v.push_back({id++, c, true, false});
  return v;  // id == 128827 here
}

class VocabBuilder {
 public:
  explicit VocabBuilder(const std::vector<AddedTokenSpec>& added)
      : cp_(unicode::byte_level_chars()) {
    for (const AddedTokenSpec& a : added) forbidden_.insert(a.content);
    for (int i = 0; i < 3; ++i) {  // BOS/EOS/PAD, ids 0..2 (no raw bytes: never merged)
      tokens_.push_back(added[i].content);
      raw_.emplace_back();
    }
    std::vector<std::pair<uint32_t, int>> by_cp;
    for (int b = 0; b < 256; ++b) by_cp.push_back({cp_[b], b});
    std::sort(by_cp.begin(), by_cp.end());
    for (const auto& [cp, b] : by_cp) {
      byte_id_[b] = static_cast<int>(tokens_.size());
      push(std::string(1, static_cast<char>(b)));
    }
  }

  bool full() const { return tokens_.size() >= static_cast<size_t>(kSynthBpeVocab); }

  // Makes `w` (raw bytes) a single token. With the merges so far, BPE turns w into pieces
  // p1..pk; each new merge joins two adjacent pieces whose concatenation is not yet a token. The
  // new merges outrank every earlier one, so BPE still reaches p1..pk first and then applies them
  // in order: w encodes as one token, now and after any later additions. Gives up (leaving w in
  // several tokens) when every adjacent concatenation is already a token or is an added token.
  void add_word(std::string_view w) {
    std::vector<int> pieces = bpe(w);
    while (pieces.size() > 1 && !full()) {
      size_t i = 0;
      std::string joined;
      for (; i + 1 < pieces.size(); ++i) {
        joined = raw_[pieces[i]] + raw_[pieces[i + 1]];
        if (!id_.count(joined) && !forbidden_.count(symbol(joined))) break;
      }
      if (i + 1 == pieces.size()) return;
      const int id = static_cast<int>(tokens_.size());
      merge_.emplace(pair_key(pieces[i], pieces[i + 1]),
                     Merge{static_cast<int>(merges_.size()), id});
      merges_.emplace_back(tokens_[pieces[i]], tokens_[pieces[i + 1]]);
      push(std::move(joined));
      pieces = bpe(w);
    }
  }

  // w, " w", and the same with the first letter upper-cased when it is a lower-case letter.
  void add_variants(std::string_view w) {
    std::string spaced = " ";  // append, not operator+: GCC 12 warns falsely (-Wrestrict)
    spaced.append(w);
    add_word(w);
    add_word(spaced);
    if (!w.empty() && w[0] >= 'a' && w[0] <= 'z') {
      spaced[1] = static_cast<char>(w[0] - 'a' + 'A');
      add_word(std::string_view(spaced).substr(1));
      add_word(spaced);
    }
  }

  const std::vector<std::string>& tokens() const { return tokens_; }  // ByteLevel strings by id
  const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }

 private:
  struct Merge {
    int rank;
    int id;  // of the result
  };
  static uint64_t pair_key(int a, int b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  // tokenizers' BPE on one pre-token (model.rs merge_all): repeatedly merge the lowest-ranked
  // adjacent pair, every non-overlapping occurrence left to right. Returns token ids.
  std::vector<int> bpe(std::string_view w) const {
    std::vector<int> p, q;
    for (unsigned char c : w) p.push_back(byte_id_[c]);
    for (;;) {
      const Merge* best = nullptr;
      for (size_t i = 0; i + 1 < p.size(); ++i) {
        auto it = merge_.find(pair_key(p[i], p[i + 1]));
        if (it != merge_.end() && (!best || it->second.rank < best->rank)) best = &it->second;
      }
      if (!best) return p;
      q.clear();
      for (size_t i = 0; i < p.size(); ++i) {
        if (i + 1 < p.size()) {
          auto it = merge_.find(pair_key(p[i], p[i + 1]));
          if (it != merge_.end() && it->second.rank == best->rank) {
            q.push_back(it->second.id);
            ++i;
            continue;
          }
        }
        q.push_back(p[i]);
      }
      std::swap(p, q);
    }
  }

  std::string symbol(std::string_view raw) const {
    std::string s;
    for (unsigned char c : raw) unicode::append_utf8(cp_[c], s);
    return s;
  }
  void push(std::string raw) {
    id_.emplace(raw, static_cast<int>(tokens_.size()));
    tokens_.push_back(symbol(raw));
    raw_.push_back(std::move(raw));
  }

  std::array<uint32_t, 256> cp_;
  std::array<int, 256> byte_id_{};
  std::unordered_set<std::string> forbidden_;
  std::unordered_map<std::string, int> id_;    // raw bytes -> id, tokens 3..
  std::unordered_map<uint64_t, Merge> merge_;  // pair_key(left id, right id)
  std::vector<std::string> raw_;               // raw bytes by id
  std::vector<std::string> tokens_;            // ByteLevel strings by id
  std::vector<std::pair<std::string, std::string>> merges_;
};

void build_vocab(VocabBuilder& vb) {
  // 1. whitespace runs
  for (int n = 2; n <= 16; ++n) vb.add_word(std::string(n, ' '));
  for (int n = 2; n <= 4; ++n) vb.add_word(std::string(n, '\n'));
  for (int n = 2; n <= 4; ++n) vb.add_word(std::string(n, '\t'));
  vb.add_word(" \n");
  // 2. digit runs
  for (int n = 0; n < 100; ++n) vb.add_word(std::string{char('0' + n / 10), char('0' + n % 10)});
  for (int n = 0; n < 1000; ++n)
    vb.add_word(std::string{char('0' + n / 100), char('0' + n / 10 % 10), char('0' + n % 10)});
  // 3. words and symbols
  std::string_view words = kWords;
  while (!words.empty()) {
    size_t sp = words.find(' ');
    vb.add_variants(words.substr(0, sp));
    words = sp == std::string_view::npos ? std::string_view() : words.substr(sp + 1);
  }
  for (const char* s : kSymbols) {
    vb.add_word(s);
    vb.add_word(std::string(" ") + s);
  }
  // 4. letter pairs
  for (char a = 'a'; a <= 'z'; ++a)
    for (char b = 'a'; b <= 'z'; ++b) vb.add_variants(std::string{a, b});
  for (char a = 'A'; a <= 'Z'; ++a) vb.add_word(std::string{' ', a});
  // 5. CJK punctuation, kana, unified ideographs, full-width forms
  auto add_range = [&](uint32_t lo, uint32_t hi) {
    for (uint32_t cp = lo; cp <= hi; ++cp) {
      std::string s;
      unicode::append_utf8(cp, s);
      vb.add_word(s);
    }
  };
  add_range(0x3000, 0x30FF);
  add_range(0x4E00, 0x9FA5);
  add_range(0xFF01, 0xFF5E);
  // 6. pseudo-words until full
  static constexpr const char* kOnsets[] = {
      "",  "b", "c", "d",  "f",  "g",  "h",  "j",  "k",  "l",  "m",  "n",  "p",  "r",  "s",  "t",
      "v", "w", "z", "st", "tr", "pr", "ch", "sh", "th", "bl", "cr", "gr", "pl", "sp", "qu", "wh"};
  static constexpr const char* kVowels[] = {"a", "e", "i", "o", "u", "y", "ea", "ou", "ai", "io"};
  static constexpr const char* kCodas[] = {"",  "",   "n",  "r",  "s",  "t",  "l",    "m",
                                           "d", "ng", "nt", "st", "rs", "ct", "tion", "ment"};
  uint64_t state = 0x5EED70CE11u;
  auto next = [&] { return splitmix64(state++); };
  // The space of words is ~1e10, so this ends long before the iteration cap.
  for (int iter = 0; iter < 10'000'000 && !vb.full(); ++iter) {
    uint64_t r = next();
    int syllables = 1 + static_cast<int>(r % 3);
    std::string w;
    for (int s = 0; s < syllables; ++s) {
      uint64_t q = next();
      w += kOnsets[q % std::size(kOnsets)];
      w += kVowels[(q >> 8) % std::size(kVowels)];
      w += kCodas[(q >> 16) % std::size(kCodas)];
    }
    switch ((r >> 8) % 4) {
      case 0:
        vb.add_word(w);
        break;
      case 1:
        vb.add_word(" " + w);
        break;
      case 2:
        w[0] = static_cast<char>(w[0] - 'a' + 'A');
        vb.add_word(w);
        break;
      default:
        w[0] = static_cast<char>(w[0] - 'a' + 'A');
        vb.add_word(" " + w);
        break;
    }
  }
}

void append_json_string(std::string_view s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// DeepSeek-V3's normalizer / pre_tokenizer / post_processor / decoder, as in
// tests/data/tokenizer/deepseek_v3.tokenizer.json (MODEL.md §9).
constexpr const char* kPipelineJson = R"json(  "normalizer": null,
  "pre_tokenizer": {
    "type": "Sequence",
    "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
      {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": false},
      {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
    ]
  },
  "post_processor": null,
  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
)json";

}  // namespace

std::string synth_tokenizer_json() {
  const std::vector<AddedTokenSpec> added = added_tokens();
  VocabBuilder vb(added);
  build_vocab(vb);

  std::string out;
  out.reserve(6 << 20);
  out += "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  out += "  \"added_tokens\": [\n";
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedTokenSpec& a = added[i];
    out += "    {\"id\": " + std::to_string(a.id) + ", \"content\": ";
    append_json_string(a.content, out);
    out += ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": ";
    out += a.normalized ? "true" : "false";
    out += ", \"special\": ";
    out += a.special ? "true" : "false";
    out += i + 1 < added.size() ? "},\n" : "}\n";
  }
  out += "  ],\n";
  out += kPipelineJson;
  out +=
      "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
      "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
      "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
      "    \"vocab\": {\n";
  const std::vector<std::string>& tokens = vb.tokens();
  for (size_t id = 0; id < tokens.size(); ++id) {
    out += "      ";
    append_json_string(tokens[id], out);
    out += ": " + std::to_string(id);
    out += id + 1 < tokens.size() ? ",\n" : "\n";
  }
  out += "    },\n    \"merges\": [\n";
  const auto& merges = vb.merges();
  for (size_t i = 0; i < merges.size(); ++i) {
    out += "      [";
    append_json_string(merges[i].first, out);
    out += ", ";
    append_json_string(merges[i].second, out);
    out += i + 1 < merges.size() ? "],\n" : "]\n";
  }
  out += "    ]\n  }\n}\n";
  return out;
}

Status write_synth_tokenizer(const std::string& dir, std::string* path) {
  const std::string final_path = (std::filesystem::path(dir) / kSynthTokenizerFile).string();
  const std::string tmp = final_path + ".tmp";
  const std::string text = synth_tokenizer_json();
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Status::Error(strfmt("%s: cannot create: %s", tmp.c_str(), std::strerror(errno)));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  int err = errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    return Status::Error(strfmt("%s: write failed: %s", tmp.c_str(), std::strerror(err)));
  }
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    return Status::Error(
        strfmt("%s: cannot rename to %s: %s", tmp.c_str(), final_path.c_str(), std::strerror(err)));
  }
  if (path) *path = final_path;
  return Status::Ok();
}

}  // namespace dsocr
