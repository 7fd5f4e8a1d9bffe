// tokenizer.json reader and byte-level BPE (see tokenizer.h). Each step cites the tokenizers
// (Rust, 0.23) function whose behaviour it reproduces.
#include "loader/tokenizer.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>
#include <utility>

#include "loader/safetensors.h"  // MappedFile, parse_json_strict
#include "loader/tokenizer_regex.h"
#include "loader/unicode.h"

namespace dsocr {

namespace u = unicode;
using json = nlohmann::json;

namespace {

// GPT-2's split pattern, what ByteLevel(use_regex=true) applies (pre_tokenizers/byte_level.rs).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ByteLevel's byte <-> character table (unicode::byte_level_chars) and its inverse.
struct ByteTable {
  const std::array<uint32_t, 256>& to_char = unicode::byte_level_chars();
  std::array<int16_t, 512> to_byte{};  // -1: not a ByteLevel character
  ByteTable() {
    to_byte.fill(-1);
    for (uint32_t b = 0; b < 256; ++b) to_byte[to_char[b]] = static_cast<int16_t>(b);
  }
};
const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}

// ByteLevel decoder's view of one token (decode_chain in byte_level.rs): each character mapped
// back to its byte, or, if any character is not a ByteLevel one, the token's UTF-8 as it is.
std::string byte_level_bytes(std::string_view token) {
  const ByteTable& t = byte_table();
  std::string out;
  for (size_t i = 0; i < token.size();) {
    uint32_t cp = 0;
    i += u::decode_utf8(token, i, &cp);
    if (cp >= t.to_byte.size() || t.to_byte[cp] < 0) return std::string(token);
    out += static_cast<char>(t.to_byte[cp]);
  }
  return out;
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, normalized = true, lstrip = false, rstrip = false, single_word = false;
};

// Leftmost-longest matcher over bytes (the daachorse automaton of AddedVocabulary).
class TokenTrie {
 public:
  bool empty() const { return terminal_.size() <= 1; }
  void add(std::string_view s, int32_t value) {
    uint32_t node = 0;
    first_[static_cast<uint8_t>(s[0])] = true;
    for (char c : s) {
      uint64_t key = (uint64_t{node} << 8) | static_cast<uint8_t>(c);
      auto it = next_.find(key);
      if (it == next_.end()) {
        it = next_.emplace(key, static_cast<uint32_t>(terminal_.size())).first;
        terminal_.push_back(-1);
      }
      node = it->second;
    }
    terminal_[node] = value;
  }
  // Successive non-overlapping matches: the leftmost start, the longest token there.
  template <class F>
  void for_each_match(std::string_view s, F&& f) const {
    if (empty()) return;
    for (size_t i = 0; i < s.size();) {
      if (!first_[static_cast<uint8_t>(s[i])]) {
        ++i;
        continue;
      }
      size_t best = 0;
      int32_t value = -1;
      uint32_t node = 0;
      for (size_t j = i; j < s.size(); ++j) {
        auto it = next_.find((uint64_t{node} << 8) | static_cast<uint8_t>(s[j]));
        if (it == next_.end()) break;
        node = it->second;
        if (terminal_[node] >= 0) best = j - i + 1, value = terminal_[node];
      }
      if (best == 0) {
        ++i;
        continue;
      }
      f(i, i + best, value);
      i += best;
    }
  }

 private:
  std::array<bool, 256> first_{};
  std::unordered_map<uint64_t, uint32_t> next_;
  std::vector<int32_t> terminal_ = {-1};  // per node: index of the token ending there
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct SplitStep {
  SplitRegex re;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

struct Merge {
  int32_t rank;
  int32_t id;
};

using Span = std::pair<uint32_t, uint32_t>;

// Per-call working memory of encode().
struct EncodeScratch {
  std::vector<uint32_t> cps, off;  // current segment: code points and their byte offsets
  std::vector<Span> pieces, next, matches;
  struct Mark {
    uint32_t b, e;
    bool is_match;
  };
  std::vector<Mark> marks;
  std::vector<std::pair<Span, bool>> kept;  // (range, remove)
  SplitRegex::Scratch rx;
  std::vector<uint32_t> tmp_cps, tmp_off;
  std::string tmp_bytes;
  struct Symbol {
    int32_t id, prev, next;
    bool dead;
  };
  std::vector<Symbol> syms;
  struct Candidate {
    int32_t rank, pos, id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Candidate> heap;
  std::string mapped;
};

// Rust regex crate's \w and \s, as AddedVocabulary's single_word / lstrip / rstrip use them.
bool first_is_word(std::string_view s) {
  if (s.empty()) return false;
  uint32_t cp = 0;
  u::decode_utf8(s, 0, &cp);
  return u::is_word(cp);
}
bool last_is_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80 && s.size() - i < 4) --i;
  uint32_t cp = 0;
  size_t n = u::decode_utf8(s, i, &cp);
  if (i + n != s.size()) u::decode_utf8(s, s.size() - 1, &cp);  // ended in a broken sequence
  return u::is_word(cp);
}
size_t leading_space(std::string_view s) {  // end of ^\s*
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    size_t n = u::decode_utf8(s, i, &cp);
    if (!u::is_white_space(cp)) break;
    i += n;
  }
  return i;
}
size_t trailing_space_start(std::string_view s) {  // start of \s*$
  size_t start = s.size();
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    size_t n = u::decode_utf8(s, i, &cp);
    if (!u::is_white_space(cp)) start = i + n;
    i += n;
  }
  return start;
}

}  // namespace

struct TokenizerData {
  std::string name;

  // Added tokens, in file order; tries hold indices into `added`.
  std::vector<AddedToken> added;
  TokenTrie trie_raw, trie_normalized;

  // Pre-tokenizer.
  std::vector<SplitStep> splits;
  bool prefix_space = false;
  std::optional<SplitRegex> byte_level_regex;

  // BPE model.
  StringMap vocab;
  std::unordered_map<uint64_t, Merge> merges;  // (left id << 32 | right id) -> rank, result
  std::array<int32_t, 256> byte_id{};          // vocab id of each byte's character, -1 if none
  bool ignore_merges = false;
  int32_t unk_id = -1;
  bool fuse_unk = false;

  // Ids.
  StringMap added_ids;
  std::vector<std::string> id_bytes;  // ByteLevel-decoded bytes per id
  std::vector<uint8_t> id_known;      // 1: id exists
  std::vector<uint8_t> id_special;

  void split_added(std::string_view sentence, const TokenTrie& trie, size_t base,
                   std::vector<std::pair<Span, int32_t>>& out) const;
  template <class F>
  void pretokenize(std::string_view seg, EncodeScratch& s, F&& on_piece) const;
  void bpe(std::string_view bytes, EncodeScratch& s, std::vector<int32_t>& out) const;
};

Tokenizer::Tokenizer() : d_(std::make_unique<TokenizerData>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

// ---------------------------------------------------------------------------------------------
// Loading

namespace {

class Reader {
 public:
  explicit Reader(const std::string& name) : name_(name) {}

  Status err(const std::string& field, const std::string& what) const {
    return Status::Error(name_ + ": " + field + ": " + what);
  }

  // Optional boolean (absent or null -> default).
  Status get_bool(const json& obj, const char* key, const std::string& field, bool def,
                  bool* out) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      *out = def;
      return Status::Ok();
    }
    if (!it->is_boolean()) return err(field + "." + key, "expected true or false");
    *out = it->get<bool>();
    return Status::Ok();
  }

  Status get_type(const json& obj, const std::string& field, std::string* type) const {
    if (!obj.is_object()) return err(field, "expected an object");
    auto it = obj.find("type");
    if (it == obj.end() || !it->is_string()) return err(field, "missing \"type\"");
    *type = it->get<std::string>();
    return Status::Ok();
  }

 private:
  std::string name_;
};

Status load_pre_tokenizer(const Reader& r, const json& pt, const std::string& field,
                          TokenizerData& d, bool* seen_byte_level) {
  std::string type;
  DSOCR_TRY(r.get_type(pt, field, &type));
  if (*seen_byte_level)
    return r.err(field, "a step after ByteLevel is unsupported (ByteLevel must come last)");
  if (type == "Sequence") {
    auto it = pt.find("pretokenizers");
    if (it == pt.end() || !it->is_array()) return r.err(field, "missing \"pretokenizers\" array");
    for (size_t i = 0; i < it->size(); ++i)
      DSOCR_TRY(load_pre_tokenizer(r, (*it)[i], strfmt("%s.pretokenizers[%zu]", field.c_str(), i),
                                   d, seen_byte_level));
    return Status::Ok();
  }
  if (type == "Split") {
    SplitStep step;
    auto pat = pt.find("pattern");
    if (pat == pt.end() || !pat->is_object() || pat->size() != 1)
      return r.err(field + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    auto kv = pat->begin();
    if (!kv.value().is_string()) return r.err(field + ".pattern", "pattern must be a string");
    const std::string text = kv.value().get<std::string>();
    Expected<SplitRegex> re = Status::Error("");
    if (kv.key() == "Regex") {
      re = SplitRegex::compile(text);
    } else if (kv.key() == "String") {
      re = SplitRegex::literal(text);
    } else {
      return r.err(field + ".pattern", "unknown pattern kind \"" + kv.key() + "\"");
    }
    if (!re.ok()) return r.err(field + ".pattern", re.message());
    step.re = std::move(*re);
    auto beh = pt.find("behavior");
    if (beh == pt.end() || !beh->is_string()) return r.err(field, "missing \"behavior\"");
    static const std::pair<const char*, SplitBehavior> kBehaviors[] = {
        {"Removed", SplitBehavior::kRemoved},
        {"Isolated", SplitBehavior::kIsolated},
        {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
        {"MergedWithNext", SplitBehavior::kMergedWithNext},
        {"Contiguous", SplitBehavior::kContiguous}};
    bool found = false;
    for (const auto& [name, b] : kBehaviors) {
      if (*beh == name) step.behavior = b, found = true;
    }
    if (!found) return r.err(field + ".behavior", "unknown behavior " + beh->dump());
    auto inv = pt.find("invert");
    if (inv == pt.end() || !inv->is_boolean()) return r.err(field, "missing \"invert\" (boolean)");
    step.invert = inv->get<bool>();
    d.splits.push_back(std::move(step));
    return Status::Ok();
  }
  if (type == "ByteLevel") {
    bool use_regex = true;
    DSOCR_TRY(r.get_bool(pt, "add_prefix_space", field, true, &d.prefix_space));
    DSOCR_TRY(r.get_bool(pt, "use_regex", field, true, &use_regex));
    if (use_regex) {
      Expected<SplitRegex> re = SplitRegex::compile(kGpt2Pattern);
      if (!re.ok()) return r.err(field, re.message());  // cannot happen: a fixed pattern
      d.byte_level_regex = std::move(*re);
    }
    *seen_byte_level = true;
    return Status::Ok();
  }
  return r.err(field, "pre-tokenizer type \"" + type +
                          "\" is unsupported (supported: Sequence, Split, ByteLevel)");
}

Status load_model(const Reader& r, const json& m, TokenizerData& d) {
  std::string type;
  DSOCR_TRY(r.get_type(m, "model", &type));
  if (type != "BPE") return r.err("model.type", "\"" + type + "\" is unsupported (only BPE)");

  auto need_null_or_empty = [&](const char* key) -> Status {
    auto it = m.find(key);
    if (it == m.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty()))
      return Status::Ok();
    return r.err(std::string("model.") + key, "must be null (unsupported)");
  };
  DSOCR_TRY(need_null_or_empty("continuing_subword_prefix"));
  DSOCR_TRY(need_null_or_empty("end_of_word_suffix"));
  if (auto it = m.find("dropout"); it != m.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() != 0.0)
      return r.err("model.dropout", "must be null or 0 (dropout is unsupported)");
  }
  bool byte_fallback = false;
  DSOCR_TRY(r.get_bool(m, "byte_fallback", "model", false, &byte_fallback));
  if (byte_fallback) return r.err("model.byte_fallback", "true is unsupported");
  DSOCR_TRY(r.get_bool(m, "fuse_unk", "model", false, &d.fuse_unk));
  DSOCR_TRY(r.get_bool(m, "ignore_merges", "model", false, &d.ignore_merges));

  auto vit = m.find("vocab");
  if (vit == m.end() || !vit->is_object()) return r.err("model.vocab", "missing or not an object");
  d.vocab.reserve(vit->size());
  int64_t max_id = -1;
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > INT32_MAX)
      return r.err("model.vocab[" + json(it.key()).dump() + "]", "id must be an integer >= 0");
    int32_t id = static_cast<int32_t>(it.value().get<int64_t>());
    d.vocab.emplace(it.key(), id);
    max_id = std::max<int64_t>(max_id, id);
  }
  if (max_id >= (int64_t{1} << 24))
    return r.err("model.vocab", strfmt("id %lld is implausibly large", (long long)max_id));
  d.id_bytes.assign(static_cast<size_t>(max_id + 1), {});
  d.id_known.assign(static_cast<size_t>(max_id + 1), 0);
  for (const auto& [tok, id] : d.vocab) {
    if (d.id_known[id])
      return r.err("model.vocab", strfmt("id %d is given to two tokens", id) + " (one is " +
                                      json(tok).dump() + ")");
    d.id_known[id] = 1;
    d.id_bytes[id] = byte_level_bytes(tok);
  }

  const ByteTable& bt = byte_table();
  for (int b = 0; b < 256; ++b) {
    std::string c;
    u::append_utf8(bt.to_char[b], c);
    auto it = d.vocab.find(c);
    d.byte_id[b] = it == d.vocab.end() ? -1 : it->second;
  }

  if (auto it = m.find("unk_token"); it != m.end() && !it->is_null()) {
    if (!it->is_string()) return r.err("model.unk_token", "expected a string or null");
    auto v = d.vocab.find(it->get<std::string>());
    if (v == d.vocab.end()) return r.err("model.unk_token", it->dump() + " is not in the vocab");
    d.unk_id = v->second;
  }

  auto mit = m.find("merges");
  if (mit == m.end() || !mit->is_array()) return r.err("model.merges", "missing or not an array");
  d.merges.reserve(mit->size());
  std::string left, right;
  for (size_t i = 0; i < mit->size(); ++i) {
    const json& e = (*mit)[i];
    std::string field = strfmt("model.merges[%zu]", i);
    if (e.is_string()) {  // legacy "a b"
      const std::string& s = e.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        return r.err(field, "expected \"left right\" with one space, got " + e.dump());
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      left = e[0].get<std::string>();
      right = e[1].get<std::string>();
    } else {
      return r.err(field, "expected \"left right\" or [\"left\", \"right\"]");
    }
    auto a = d.vocab.find(left), b = d.vocab.find(right), c = d.vocab.find(left + right);
    if (a == d.vocab.end()) return r.err(field, json(left).dump() + " is not in the vocab");
    if (b == d.vocab.end()) return r.err(field, json(right).dump() + " is not in the vocab");
    if (c == d.vocab.end())
      return r.err(field, "merged token " + json(left + right).dump() + " is not in the vocab");
    uint64_t key = (uint64_t(uint32_t(a->second)) << 32) | uint32_t(b->second);
    d.merges[key] = Merge{static_cast<int32_t>(i), c->second};  // a repeated pair: last wins
  }
  return Status::Ok();
}

// added_tokens: ids are checked against what tokenizers would assign on load
// (AddedVocabulary::add_tokens: the vocab's id if the content is in it, else the next id from
// the vocab's size on), so that a file whose ids tokenizers would silently change is refused.
Status load_added_tokens(const Reader& r, const json& root, TokenizerData& d) {
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return Status::Ok();
  if (!it->is_array()) return r.err("added_tokens", "expected an array");
  int64_t next_id = static_cast<int64_t>(d.vocab.size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& t = (*it)[i];
    std::string field = strfmt("added_tokens[%zu]", i);
    if (!t.is_object()) return r.err(field, "expected an object");
    auto c = t.find("content");
    if (c == t.end() || !c->is_string()) return r.err(field, "missing \"content\"");
    auto idj = t.find("id");
    if (idj == t.end() || !idj->is_number_integer() || idj->get<int64_t>() < 0 ||
        idj->get<int64_t>() >= (int64_t{1} << 24))
      return r.err(field, "missing or bad \"id\"");
    AddedToken a;
    a.content = c->get<std::string>();
    a.id = static_cast<int32_t>(idj->get<int64_t>());
    field += ' ';
    field += c->dump();
    DSOCR_TRY(r.get_bool(t, "special", field, false, &a.special));
    DSOCR_TRY(r.get_bool(t, "normalized", field, !a.special, &a.normalized));
    DSOCR_TRY(r.get_bool(t, "lstrip", field, false, &a.lstrip));
    DSOCR_TRY(r.get_bool(t, "rstrip", field, false, &a.rstrip));
    DSOCR_TRY(r.get_bool(t, "single_word", field, false, &a.single_word));
    if (a.content.empty()) continue;  // tokenizers ignores empty tokens
    if (d.added_ids.count(a.content)) return r.err(field, "duplicate added token");
    auto v = d.vocab.find(a.content);
    int64_t expect = v != d.vocab.end() ? v->second : next_id++;
    if (a.id != expect)
      return r.err(field, strfmt("id %d, but tokenizers would assign %lld", a.id,
                                 static_cast<long long>(expect)));
    if (static_cast<size_t>(a.id) >= d.id_known.size()) {
      d.id_known.resize(a.id + 1, 0);
      d.id_bytes.resize(a.id + 1);
    }
    d.id_known[a.id] = 1;
    d.id_bytes[a.id] = byte_level_bytes(a.content);
    d.added_ids.emplace(a.content, a.id);
    (a.normalized ? d.trie_normalized : d.trie_raw)
        .add(a.content, static_cast<int32_t>(d.added.size()));
    d.added.push_back(std::move(a));
  }
  d.id_special.assign(d.id_known.size(), 0);
  for (const AddedToken& a : d.added)
    if (a.special) d.id_special[a.id] = 1;
  return Status::Ok();
}

Status load_json(const json& root, TokenizerData& d) {
  Reader r(d.name);
  if (!root.is_object()) return r.err("(root)", "expected a JSON object");
  if (auto v = root.find("version"); v != root.end() && !v->is_null() && *v != "1.0")
    return r.err("version", v->dump() + " is unsupported (expected \"1.0\")");

  auto m = root.find("model");
  if (m == root.end() || m->is_null()) return r.err("model", "missing");
  DSOCR_TRY(load_model(r, *m, d));

  if (auto n = root.find("normalizer"); n != root.end() && !n->is_null()) {
    std::string type;
    DSOCR_TRY(r.get_type(*n, "normalizer", &type));
    auto list = n->find("normalizers");
    bool empty_sequence =
        type == "Sequence" && list != n->end() && list->is_array() && list->empty();
    if (!empty_sequence) return r.err("normalizer", "\"" + type + "\" is unsupported (only null)");
  }

  auto pt = root.find("pre_tokenizer");
  bool seen_byte_level = false;
  if (pt != root.end() && !pt->is_null())
    DSOCR_TRY(load_pre_tokenizer(r, *pt, "pre_tokenizer", d, &seen_byte_level));
  if (!seen_byte_level)
    return r.err("pre_tokenizer", "no ByteLevel step: only byte-level BPE is supported");

  auto dec = root.find("decoder");
  if (dec == root.end() || dec->is_null())
    return r.err("decoder", "missing (only ByteLevel is supported)");
  std::string type;
  DSOCR_TRY(r.get_type(*dec, "decoder", &type));
  if (type != "ByteLevel")
    return r.err("decoder", "\"" + type + "\" is unsupported (only ByteLevel)");

  DSOCR_TRY(load_added_tokens(r, root, d));
  if (d.id_special.size() != d.id_known.size()) d.id_special.assign(d.id_known.size(), 0);
  return Status::Ok();
}

}  // namespace

Expected<Tokenizer> Tokenizer::load_from_string(std::string_view text, const std::string& name) {
  // tokenizer.json nests pre_tokenizer.pretokenizers[i].pattern: 16 levels is ample.
  DSOCR_ASSIGN_OR_RETURN(json root, parse_json_strict(text, name, 16));
  Tokenizer t;
  t.d_->name = name;
  try {
    DSOCR_TRY(load_json(root, *t.d_));
  } catch (const std::exception& e) {  // nlohmann type errors we did not foresee
    return Status::Error(name + ": " + e.what());
  }
  return t;
}

Expected<Tokenizer> Tokenizer::load(const std::string& path) {
  DSOCR_ASSIGN_OR_RETURN(MappedFile f, MappedFile::open(path));
  return load_from_string(std::string_view(reinterpret_cast<const char*>(f.data()), f.size()),
                          path);
}

// ---------------------------------------------------------------------------------------------
// Encoding

// AddedVocabulary::find_matches over one sentence; appends (byte range + base, token id or -1).
void TokenizerData::split_added(std::string_view s, const TokenTrie& trie, size_t base,
                                std::vector<std::pair<Span, int32_t>>& out) const {
  size_t start_offset = 0;
  trie.for_each_match(s, [&](size_t start, size_t stop, int32_t index) {
    const AddedToken& t = added[index];
    if (t.single_word) {
      bool start_space = start == 0 || !last_is_word(s.substr(0, start));
      bool stop_space = stop == s.size() || !first_is_word(s.substr(stop));
      if (!start_space || !stop_space) return;
    }
    if (t.lstrip) start = std::max(trailing_space_start(s.substr(0, start)), start_offset);
    if (t.rstrip) stop += leading_space(s.substr(stop));
    if (start_offset < start)
      out.push_back({{uint32_t(base + start_offset), uint32_t(base + start)}, -1});
    out.push_back({{uint32_t(base + start), uint32_t(base + stop)}, t.id});
    start_offset = stop;
  });
  if (start_offset != s.size())
    out.push_back({{uint32_t(base + start_offset), uint32_t(base + s.size())}, -1});
}

// Runs the pre-tokenizer on one segment (text between added tokens) and calls on_piece with the
// raw bytes of each piece (before the ByteLevel mapping).
template <class F>
void TokenizerData::pretokenize(std::string_view seg, EncodeScratch& s, F&& on_piece) const {
  s.cps.clear();
  s.off.clear();
  for (size_t i = 0; i < seg.size();) {
    uint32_t cp = 0;
    s.off.push_back(static_cast<uint32_t>(i));
    i += u::decode_utf8(seg, i, &cp);
    s.cps.push_back(cp);
  }
  s.off.push_back(static_cast<uint32_t>(seg.size()));
  s.pieces.assign(1, Span{0, static_cast<uint32_t>(s.cps.size())});

  // Split steps (pre_tokenizers/split.rs -> NormalizedString::split).
  for (const SplitStep& step : splits) {
    s.next.clear();
    for (const Span& p : s.pieces) {
      s.matches.clear();
      step.re.find_all(s.cps.data() + p.first, p.second - p.first, s.matches, s.rx);
      s.marks.clear();
      uint32_t prev = p.first;
      for (const Span& m : s.matches) {
        uint32_t b = p.first + m.first, e = p.first + m.second;
        if (prev != b) s.marks.push_back({prev, b, false});
        s.marks.push_back({b, e, true});
        prev = e;
      }
      if (prev != p.second) s.marks.push_back({prev, p.second, false});
      if (step.invert)
        for (auto& mk : s.marks) mk.is_match = !mk.is_match;

      s.kept.clear();  // (range, remove)
      bool previous = false;
      switch (step.behavior) {
        case SplitBehavior::kIsolated:
          for (auto& mk : s.marks) s.kept.push_back({{mk.b, mk.e}, false});
          break;
        case SplitBehavior::kRemoved:
          for (auto& mk : s.marks) s.kept.push_back({{mk.b, mk.e}, mk.is_match});
          break;
        case SplitBehavior::kContiguous:
          for (auto& mk : s.marks) {
            if (mk.is_match == previous && !s.kept.empty()) {
              s.kept.back().first.second = mk.e;
            } else {
              s.kept.push_back({{mk.b, mk.e}, false});
            }
            previous = mk.is_match;
          }
          break;
        case SplitBehavior::kMergedWithPrevious:
          for (auto& mk : s.marks) {
            if (mk.is_match && !previous && !s.kept.empty()) {
              s.kept.back().first.second = mk.e;
            } else {
              s.kept.push_back({{mk.b, mk.e}, false});
            }
            previous = mk.is_match;
          }
          break;
        case SplitBehavior::kMergedWithNext:
          for (size_t k = s.marks.size(); k-- > 0;) {
            const auto& mk = s.marks[k];
            if (mk.is_match && !previous && !s.kept.empty()) {
              s.kept.back().first.first = mk.b;
            } else {
              s.kept.push_back({{mk.b, mk.e}, false});
            }
            previous = mk.is_match;
          }
          std::reverse(s.kept.begin(), s.kept.end());
          break;
      }
      for (const auto& [range, remove] : s.kept)
        if (!remove && range.second > range.first) s.next.push_back(range);
    }
    std::swap(s.pieces, s.next);
  }

  // ByteLevel (pre_tokenizers/byte_level.rs): optional prefix space, optional GPT-2 split.
  for (const Span& p : s.pieces) {
    const uint32_t* cps = s.cps.data() + p.first;
    const uint32_t* off = s.off.data() + p.first;
    const char* text = seg.data();
    size_t n = p.second - p.first;
    if (prefix_space && cps[0] != ' ') {
      s.tmp_cps.assign(1, ' ');
      s.tmp_cps.insert(s.tmp_cps.end(), cps, cps + n);
      s.tmp_bytes.assign(1, ' ');
      s.tmp_bytes.append(seg.data() + off[0], off[n] - off[0]);
      s.tmp_off.assign(1, 0);
      for (size_t k = 0; k <= n; ++k) s.tmp_off.push_back(off[k] - off[0] + 1);
      cps = s.tmp_cps.data();
      off = s.tmp_off.data();
      text = s.tmp_bytes.data();
      ++n;
    }
    if (!byte_level_regex) {
      on_piece(std::string_view(text + off[0], off[n] - off[0]));
      continue;
    }
    s.matches.clear();
    byte_level_regex->find_all(cps, n, s.matches, s.rx);
    uint32_t prev = 0;
    auto emit = [&](uint32_t b, uint32_t e) {
      on_piece(std::string_view(text + off[b], off[e] - off[b]));
    };
    for (const Span& m : s.matches) {
      if (prev != m.first) emit(prev, m.first);
      emit(m.first, m.second);
      prev = m.second;
    }
    if (prev != n) emit(prev, static_cast<uint32_t>(n));
  }
}

// BPE::tokenize on one piece (models/bpe/model.rs merge_word + word.rs merge_all): start from
// one symbol per byte, then repeatedly apply the lowest-ranked merge, leftmost first.
void TokenizerData::bpe(std::string_view bytes, EncodeScratch& s, std::vector<int32_t>& out) const {
  const ByteTable& bt = byte_table();
  if (ignore_merges) {
    s.mapped.clear();
    for (char c : bytes) u::append_utf8(bt.to_char[static_cast<uint8_t>(c)], s.mapped);
    auto it = vocab.find(std::string_view(s.mapped));
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  auto& syms = s.syms;
  syms.clear();
  bool last_unk = false;
  for (char c : bytes) {
    int32_t id = byte_id[static_cast<uint8_t>(c)];
    if (id < 0) {
      if (unk_id < 0) continue;  // no unk token: the character is dropped, as tokenizers does
      if (fuse_unk && last_unk) continue;
      id = unk_id;
      last_unk = true;
    } else {
      last_unk = false;
    }
    int32_t k = static_cast<int32_t>(syms.size());
    syms.push_back({id, k - 1, k + 1, false});
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  auto lookup = [&](int32_t a, int32_t b) -> const Merge* {
    auto it = merges.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  auto& heap = s.heap;
  heap.clear();
  auto push = [&](int32_t pos) {
    int32_t nx = syms[pos].next;
    if (nx < 0) return;
    if (const Merge* m = lookup(syms[pos].id, syms[nx].id)) {
      heap.push_back({m->rank, pos, m->id});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    EncodeScratch::Candidate top = heap.back();
    heap.pop_back();
    auto& sym = syms[top.pos];
    if (sym.dead || sym.next < 0) continue;
    const Merge* m = lookup(sym.id, syms[sym.next].id);
    if (m == nullptr || m->id != top.id) continue;  // stale: the pair changed since
    int32_t right = sym.next;
    sym.id = top.id;
    syms[right].dead = true;
    sym.next = syms[right].next;
    if (sym.next >= 0) syms[sym.next].prev = top.pos;
    if (sym.prev >= 0) push(sym.prev);
    push(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const TokenizerData& d = *d_;
  std::vector<int32_t> ids;
  EncodeScratch s;
  // Added tokens (AddedVocabulary::extract_and_normalize): normalized=false ones on the text,
  // then normalized=true ones on the gaps (no normalizer, so the gaps are unchanged).
  std::vector<std::pair<Span, int32_t>> pass1, segments;
  d.split_added(text, d.trie_raw, 0, pass1);
  for (const auto& [range, id] : pass1) {
    if (id >= 0 || d.trie_normalized.empty()) {
      segments.push_back({range, id});
    } else {
      d.split_added(text.substr(range.first, range.second - range.first), d.trie_normalized,
                    range.first, segments);
    }
  }
  for (const auto& [range, id] : segments) {
    if (id >= 0) {
      ids.push_back(id);
      continue;
    }
    if (range.second == range.first) continue;
    d.pretokenize(text.substr(range.first, range.second - range.first), s,
                  [&](std::string_view piece) { d.bpe(piece, s, ids); });
  }
  return ids;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string> out;
  if (text.empty()) return out;
  EncodeScratch s;
  const ByteTable& bt = byte_table();
  d_->pretokenize(text, s, [&](std::string_view piece) {
    std::string mapped;
    for (char c : piece) u::append_utf8(bt.to_char[static_cast<uint8_t>(c)], mapped);
    out.push_back(std::move(mapped));
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Ids and decoding

int32_t Tokenizer::token_id(std::string_view token) const {
  if (auto it = d_->added_ids.find(token); it != d_->added_ids.end()) return it->second;
  if (auto it = d_->vocab.find(token); it != d_->vocab.end()) return it->second;
  return -1;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < d_->id_special.size() && d_->id_special[id];
}

size_t Tokenizer::vocab_size() const {
  return d_->id_known.size();
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= d_->id_known.size() || !d_->id_known[id]) return {};
  return d_->id_bytes[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += token_bytes(id);
  std::string out;
  u::append_utf8_lossy(bytes, /*final=*/true, out);
  return out;
}

std::string TokenStreamDecoder::push(int32_t id) {
  pending_ += tok_->token_bytes(id);
  std::string out;
  size_t used = u::append_utf8_lossy(pending_, /*final=*/false, out);
  pending_.erase(0, used);
  return out;
}

std::string TokenStreamDecoder::flush() {
  std::string out;
  u::append_utf8_lossy(pending_, /*final=*/true, out);
  pending_.clear();
  return out;
}

}  // namespace dsocr
