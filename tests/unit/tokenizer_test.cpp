// Tokenizer against Hugging Face tokenizers 0.23.2 (fixtures from bench/tokenizer_fixtures.py:
// two trained byte-level BPEs, DeepSeek-V3 and GPT-2 pre-tokenizers, ~300 strings), plus the
// regex engine, the Unicode tables, bad files and a speed check.
#include "loader/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "loader/tokenizer_regex.h"
#include "loader/unicode.h"

namespace dsocr {
namespace {

using json = nlohmann::json;

const std::string kDir = std::string(DSOCR_SOURCE_DIR) + "/tests/data/tokenizer/";
const char* kNames[] = {"deepseek_v3", "gpt2"};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const json& expected() {
  static const json e = json::parse(read_file(kDir + "expected.json"));
  return e;
}

const Tokenizer& fixture(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    std::string file = expected()["tokenizers"][name]["file"];
    Expected<Tokenizer> t = Tokenizer::load(kDir + file);
    if (!t.ok()) {
      ADD_FAILURE() << t.message();
      std::abort();
    }
    it = cache.emplace(name, std::move(*t)).first;
  }
  return it->second;
}

// Strict UTF-8 check: every sequence complete, no overlongs, surrogates or values > U+10FFFF.
bool valid_utf8(std::string_view s) {
  std::string repaired;
  size_t used = unicode::append_utf8_lossy(s, /*final=*/true, repaired);
  return used == s.size() && repaired == s;
}

std::string show(std::string_view s) {
  return json(std::string(s)).dump();
}

// ---------------------------------------------------------------------------------------------
// Against tokenizers

TEST(Tokenizer, FixtureMetadata) {
  ASSERT_EQ(expected()["tokenizers_version"], "0.23.2");
  for (const char* name : kNames) {
    const Tokenizer& tok = fixture(name);
    const json& meta = expected()["tokenizers"][name];
    EXPECT_EQ(tok.vocab_size(), meta["vocab_size"].get<size_t>()) << name;
    for (const auto& [content, info] : meta["tokens"].items()) {
      EXPECT_EQ(tok.token_id(content), info["id"].get<int32_t>()) << name << " " << content;
    }
    EXPECT_EQ(tok.token_id("no such token, surely"), -1);
  }
  // The DeepSeek fixture carries OCR's specials after its trained vocab; the real ids are
  // recorded next to them and must never be assumed by the code.
  const json& ds = expected()["tokenizers"]["deepseek_v3"]["tokens"];
  EXPECT_EQ(ds["<image>"]["deepseek_ocr_id"], 128815);
  EXPECT_NE(ds["<image>"]["id"], 128815);
  EXPECT_TRUE(fixture("deepseek_v3").is_special(fixture("deepseek_v3").token_id("<image>")));
  EXPECT_FALSE(fixture("deepseek_v3").is_special(fixture("deepseek_v3").token_id("<｜User｜>")));
}

TEST(Tokenizer, EncodeMatchesHuggingFace) {
  size_t checked = 0;
  for (const char* name : kNames) {
    const Tokenizer& tok = fixture(name);
    for (const json& c : expected()["cases"]) {
      const std::string text = c["text"];
      const auto want = c[name]["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(tok.encode(text), want) << name << " text=" << show(text);
      ++checked;
    }
  }
  EXPECT_GE(checked, 2u * 250u);
}

TEST(Tokenizer, PreTokenizerPiecesMatchHuggingFace) {
  for (const char* name : kNames) {
    const Tokenizer& tok = fixture(name);
    for (const json& c : expected()["cases"]) {
      const std::string text = c["text"];
      if (text.empty()) continue;  // tokenizers' pre_tokenize_str("") is an artefact
      EXPECT_EQ(tok.pre_tokenize(text), c[name]["pieces"].get<std::vector<std::string>>())
          << name << " text=" << show(text);
    }
  }
}

// More pre-tokenizers (every Split behavior, invert, String patterns, Llama-3's (?i:...)
// pattern, a prefix space inside a Sequence), swapped into the GPT-2 fixture's file.
TEST(Tokenizer, PreTokenizerVariantsMatchHuggingFace) {
  const json base = json::parse(read_file(kDir + "gpt2.tokenizer.json"));
  size_t variants = 0;
  for (const json& v : expected()["pre_tokenizer_variants"]) {
    json file = base;
    file["pre_tokenizer"] = v["pre_tokenizer"];
    const std::string name = v["name"];
    Expected<Tokenizer> tok = Tokenizer::load_from_string(file.dump(), name + ".json");
    ASSERT_TRUE(tok.ok()) << tok.message();
    for (const json& c : v["cases"]) {
      const std::string text = c["text"];
      EXPECT_EQ(tok->pre_tokenize(text), c["pieces"].get<std::vector<std::string>>())
          << name << " text=" << show(text);
    }
    ++variants;
  }
  EXPECT_EQ(variants, 9u);
}

TEST(Tokenizer, DecodeMatchesHuggingFace) {
  for (const char* name : kNames) {
    const Tokenizer& tok = fixture(name);
    for (const json& c : expected()["cases"]) {
      const auto ids = c[name]["ids"].get<std::vector<int32_t>>();
      const std::string decoded = c[name]["decoded"];
      EXPECT_EQ(tok.decode(ids), decoded) << name << " text=" << show(c["text"].get<std::string>());
    }
  }
  // Random id lists: characters split across tokens, lone bytes, unknown ids (skipped).
  size_t with_replacement = 0;
  for (const json& c : expected()["decode_cases"]) {
    const Tokenizer& tok = fixture(c["tokenizer"]);
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const std::string want = c["text"];
    EXPECT_EQ(tok.decode(ids), want) << c.dump();
    with_replacement += want.find("\xEF\xBF\xBD") != std::string::npos;
  }
  EXPECT_GT(with_replacement, 10u) << "the random cases should exercise the lossy repair";
}

TEST(Tokenizer, DeepSeekRoundTripIsExact) {
  // No prefix space and no normalizer: decode(encode(x)) == x for any valid UTF-8.
  const Tokenizer& tok = fixture("deepseek_v3");
  for (const json& c : expected()["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(tok.decode(tok.encode(text)), text) << show(text);
  }
}

TEST(Tokenizer, StreamingDecodeEqualsWholeDecode) {
  auto check = [](const Tokenizer& tok, const std::vector<int32_t>& ids, const std::string& what) {
    TokenStreamDecoder stream(tok);
    std::string all;
    for (int32_t id : ids) {
      std::string piece = stream.push(id);
      ASSERT_TRUE(valid_utf8(piece)) << what << " emitted a partial character: " << show(piece);
      all += piece;
    }
    std::string tail = stream.flush();
    ASSERT_TRUE(valid_utf8(tail)) << what;
    all += tail;
    EXPECT_EQ(all, tok.decode(ids)) << what;
    EXPECT_EQ(stream.flush(), "");  // flushed state is empty
  };
  for (const char* name : kNames) {
    for (const json& c : expected()["cases"])
      check(fixture(name), c[name]["ids"].get<std::vector<int32_t>>(),
            show(c["text"].get<std::string>()));
  }
  for (const json& c : expected()["decode_cases"])
    check(fixture(c["tokenizer"]), c["ids"].get<std::vector<int32_t>>(), c.dump());

  // One character split over byte tokens is held back until complete.
  const Tokenizer& tok = fixture("deepseek_v3");
  auto byte_token = [&](char b) {
    for (int32_t id = 0; id < static_cast<int32_t>(tok.vocab_size()); ++id)
      if (tok.token_bytes(id) == std::string(1, b)) return id;
    return -1;
  };
  const std::string zhong = "\xE4\xB8\xAD";  // 中
  std::vector<int32_t> single;
  for (char b : zhong) {
    single.push_back(byte_token(b));
    ASSERT_GE(single.back(), 0);
  }
  TokenStreamDecoder s(tok);
  EXPECT_EQ(s.push(single[0]), "");
  EXPECT_EQ(s.push(single[1]), "");
  EXPECT_EQ(s.push(single[2]), zhong);
  EXPECT_EQ(s.push(single[0]), "");
  EXPECT_EQ(s.flush(), "\xEF\xBF\xBD");  // an unfinished character at the end
}

TEST(Tokenizer, SpecialTokensAreMatchedInsideText) {
  for (const char* name : kNames) {
    const Tokenizer& tok = fixture(name);
    const int32_t image = tok.token_id("<image>");
    const int32_t ref = tok.token_id("<|ref|>"), ref_end = tok.token_id("<|/ref|>");
    ASSERT_GE(image, 0);
    ASSERT_GE(ref, 0);
    // The official prompt: <image> first, then exactly the ids of the rest of the text.
    std::vector<int32_t> ids = tok.encode("<image>\nFree OCR.");
    std::vector<int32_t> rest = tok.encode("\nFree OCR.");
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], image) << name;
    if (std::string(name) == "deepseek_v3") {
      EXPECT_EQ(std::vector<int32_t>(ids.begin() + 1, ids.end()), rest);
    }
    // Inside words, repeated, adjacent.
    ids = tok.encode("a<|ref|>x<|/ref|>b<image><image>");
    EXPECT_EQ(std::count(ids.begin(), ids.end(), image), 2) << name;
    EXPECT_EQ(std::count(ids.begin(), ids.end(), ref), 1) << name;
    EXPECT_EQ(std::count(ids.begin(), ids.end(), ref_end), 1) << name;
    // Near misses are plain text.
    for (const char* miss : {"<image", "image>", "<Image>", "< image>", "<|ref|"}) {
      ids = tok.encode(miss);
      EXPECT_EQ(std::count(ids.begin(), ids.end(), image), 0) << name << " " << miss;
      EXPECT_EQ(std::count(ids.begin(), ids.end(), ref), 0) << name << " " << miss;
    }
  }
  // Longest match wins among overlapping added tokens (<tr> over <tr>).
  const Tokenizer& g = fixture("gpt2");
  EXPECT_EQ(g.encode("<tr>"), std::vector<int32_t>{g.token_id("<tr>")});
  EXPECT_EQ(g.encode("<tr")[0], g.token_id("<tr"));
  // single_word: only as a whole word.
  EXPECT_EQ(g.encode("hello world"), std::vector<int32_t>{g.token_id("hello world")});
  std::vector<int32_t> ids = g.encode("hello worlds");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), g.token_id("hello world")), 0);
}

TEST(Tokenizer, InvalidUtf8InputIsByteEncoded) {
  const Tokenizer& tok = fixture("deepseek_v3");
  const std::string bad[] = {"\xFF",
                             "abc\xE4\xB8",
                             "\xC0\x80 x",
                             "\xED\xA0\x80",
                             "a\x80\x80 b",
                             std::string("nul\0byte", 8),
                             "\xF4\x90\x80\x80",
                             "12\xE4"
                             "34"};
  for (const std::string& text : bad) {
    std::vector<int32_t> ids = tok.encode(text);
    std::string bytes;
    for (int32_t id : ids) bytes += tok.token_bytes(id);
    EXPECT_EQ(bytes, text) << show(text);
    std::string lossy;
    unicode::append_utf8_lossy(text, true, lossy);
    EXPECT_EQ(tok.decode(ids), lossy);
  }
}

// ---------------------------------------------------------------------------------------------
// Bad files: one line naming the file and what is wrong.

json gpt2_json() {
  return json::parse(read_file(kDir + "gpt2.tokenizer.json"));
}

void expect_error(const std::string& text, const std::string& needle) {
  Expected<Tokenizer> t = Tokenizer::load_from_string(text, "bad.json");
  ASSERT_FALSE(t.ok()) << "accepted; wanted an error with " << needle;
  const std::string& m = t.message();
  EXPECT_EQ(m.rfind("bad.json: ", 0), 0u) << m;
  EXPECT_NE(m.find(needle), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << "multi-line message: " << m;
}

TEST(TokenizerLoad, MalformedFilesAreRefused) {
  EXPECT_TRUE(Tokenizer::load_from_string(gpt2_json().dump(), "ok.json").ok());

  expect_error("{\"model\": ", "invalid JSON");
  expect_error("[1, 2]", "expected a JSON object");
  json j = gpt2_json();
  j.erase("model");
  expect_error(j.dump(), "model: missing");
  j = gpt2_json();
  j["model"]["type"] = "WordPiece";
  expect_error(j.dump(), "only BPE");
  j = gpt2_json();
  j["model"].erase("vocab");
  expect_error(j.dump(), "model.vocab");
  j = gpt2_json();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_error(j.dump(), "pre-tokenizer type \"Whitespace\" is unsupported");
  j = gpt2_json();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"},
                           {"pattern", {{"Regex", "(?<=a)b"}}},
                           {"behavior", "Isolated"},
                           {"invert", false}},
                          j["pre_tokenizer"]}}};
  expect_error(j.dump(), "pre_tokenizer.pretokenizers[0].pattern: regex \"(?<=a)b\"");
  j = gpt2_json();
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "a"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  expect_error(j.dump(), "no ByteLevel step");
  j = gpt2_json();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {j["pre_tokenizer"],
                          {{"type", "Split"},
                           {"pattern", {{"String", "x"}}},
                           {"behavior", "Weird"},
                           {"invert", false}}}}};
  expect_error(j.dump(), "after ByteLevel");
  j = gpt2_json();
  j["model"]["merges"][5] = "Ġ zzzz-not-a-token";
  expect_error(j.dump(), "model.merges[5]: \"zzzz-not-a-token\" is not in the vocab");
  j = gpt2_json();
  j["model"]["merges"][3] = "no-space";
  expect_error(j.dump(), "model.merges[3]");
  j = gpt2_json();
  ASSERT_EQ(j["model"]["merges"][0], "Ġ |");
  j["model"]["vocab"].erase("Ġ|");
  expect_error(j.dump(), "model.merges[0]: merged token \"Ġ|\" is not in the vocab");
  j = gpt2_json();
  j["model"]["byte_fallback"] = true;
  expect_error(j.dump(), "model.byte_fallback");
  j = gpt2_json();
  j["model"]["dropout"] = 0.1;
  expect_error(j.dump(), "model.dropout");
  j = gpt2_json();
  j["model"]["vocab"]["a-duplicate-id"] = 7;
  expect_error(j.dump(), "id 7 is given to two tokens");
  j = gpt2_json();
  j["normalizer"] = {{"type", "NFC"}};
  expect_error(j.dump(), "normalizer: \"NFC\" is unsupported");
  j = gpt2_json();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j.dump(), "decoder: \"WordPiece\" is unsupported");
  j = gpt2_json();
  j["added_tokens"].back()["id"] = j["added_tokens"].back()["id"].get<int>() + 5;
  expect_error(j.dump(), "but tokenizers would assign");
  j = gpt2_json();
  j["added_tokens"][0]["lstrip"] = "yes";
  expect_error(j.dump(), "added_tokens[0]");
  j = gpt2_json();
  j["version"] = "2.0";
  expect_error(j.dump(), "version");

  // An empty normalizer Sequence is a no-op and accepted.
  j = gpt2_json();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array()}};
  EXPECT_TRUE(Tokenizer::load_from_string(j.dump(), "ok.json").ok());
}

TEST(TokenizerLoad, MissingFileIsNamed) {
  Expected<Tokenizer> t = Tokenizer::load("/nonexistent/dir/tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.message().find("/nonexistent/dir/tokenizer.json"), std::string::npos) << t.message();
  t = Tokenizer::load(kDir);  // a directory
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.message().find(kDir), std::string::npos) << t.message();
}

// ---------------------------------------------------------------------------------------------
// Regex engine

std::vector<std::string> matches(const std::string& pattern, const std::string& text) {
  Expected<SplitRegex> re = SplitRegex::compile(pattern);
  EXPECT_TRUE(re.ok()) << re.message();
  if (!re.ok()) return {};
  std::vector<uint32_t> cps, off;
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    off.push_back(static_cast<uint32_t>(i));
    i += unicode::decode_utf8(text, i, &cp);
    cps.push_back(cp);
  }
  off.push_back(static_cast<uint32_t>(text.size()));
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  SplitRegex::Scratch scratch;
  re->find_all(cps.data(), cps.size(), spans, scratch);
  std::vector<std::string> out;
  for (auto [b, e] : spans) out.push_back(text.substr(off[b], off[e] - off[b]));
  return out;
}

using V = std::vector<std::string>;

TEST(SplitRegex, Semantics) {
  EXPECT_EQ(matches(R"(\p{N}{1,3})", "a12345b6"), (V{"123", "45", "6"}));
  EXPECT_EQ(matches("ab|abc", "abc"), (V{"ab"}));  // leftmost-first, not longest
  EXPECT_EQ(matches("abc|ab", "abc"), (V{"abc"}));
  // \s+(?!\S) leaves the last space for the next word.
  EXPECT_EQ(matches(R"( ?\p{L}+|\s+(?!\S)|\s+)", "a   b  "), (V{"a", "  ", " b", "  "}));
  // Backtracking into an optional: a mark is taken as the leading char only if letters follow.
  EXPECT_EQ(matches(R"([^\r\n\p{L}]?[\p{L}\p{M}]+)", "\u0301!"), (V{"\u0301"}));
  EXPECT_EQ(matches(R"(\s*[\r\n]+)", "  \n \n  x"), (V{"  \n \n"}));
  EXPECT_EQ(matches("[一-龥぀-ゟ゠-ヿ]+", "ab中文カナ𠀀x"), (V{"中文カナ"}));
  EXPECT_EQ(matches("(?i:'s|'t)", "'S 'T 's \u2019s '\u017F"), (V{"'S", "'T", "'s", "'\u017F"}));
  EXPECT_EQ(matches(R"([^\s\p{L}])", "a1 \u00a0b."), (V{"1", "."}));
  EXPECT_EQ(matches(R"(x{2}|y{2,}|wz{,2})", "xxx yyyy wzzz w"), (V{"xx", "yyyy", "wzz", "w"}));
  EXPECT_EQ(matches(R"(\x41\x{4E2D}\u00e9)", "A中é"), (V{"A中é"}));
  EXPECT_EQ(matches(R"(a.c)", "abc a\nc"), (V{"abc"}));
  EXPECT_EQ(matches(R"(\P{L}+)", "ab12cd"), (V{"12"}));
  EXPECT_EQ(matches(R"(\p{^L}+)", "ab12cd"), (V{"12"}));
  EXPECT_EQ(matches(R"([\]a-]+)", "x]a-x"), (V{"]a-"}));
  EXPECT_EQ(matches(R"(x(?=y))", "xz xy"), (V{"x"}));
  EXPECT_EQ(matches(R"(\p{Letter}+)", "éa1"), (V{"éa"}));
  EXPECT_EQ(matches("a{", "a{"), (V{"a{"}));  // not an interval: a literal brace
  EXPECT_EQ(matches("😀+", "😀😀x😀"), (V{"😀😀", "😀"}));
}

TEST(SplitRegex, UnsupportedSyntaxIsRefused) {
  struct Case {
    const char* pattern;
    const char* needle;
  };
  const Case cases[] = {
      {"^a", "anchors"},
      {"a$", "anchors"},
      {R"(\bx)", "escape \\b"},
      {R"(\d+)", "escape \\d"},
      {R"(\w)", "escape \\w"},
      {"a*?", "lazy"},
      {"a++", "possessive"},
      {"(?<=x)y", "lookbehind"},
      {"(?!ab)c", "lookahead must hold exactly one"},
      {"(?=a)*b", "quantified lookahead"},
      {"[[:alpha:]]", "nested classes"},
      {"[a&&b]", "intersection"},
      {"a{2,1}", "m < n"},
      {"a{1001}", "repetition count"},
      {"(a", "missing ')'"},
      {"a)", "unmatched ')'"},
      {"", "empty string"},
      {"a*", "empty string"},
      {"a|", "empty string"},
      {"*a", "nothing to repeat"},
      {R"(\p{Han})", "\\p{han} is unsupported"},
      {"[a-\\s]", "range ends in a set"},
      {"[z-a]", "out of order"},
      {"[abc", "unterminated"},
      {"(?x)a", "group syntax"},
      {"(?i:é)", "non-ASCII"},
      {R"((?i:\p{Lu}))", "\\p{Lu}"},
      {"\\", "ends with"},
      {R"(\1)", "escape \\1"},
  };
  for (const Case& c : cases) {
    Expected<SplitRegex> re = SplitRegex::compile(c.pattern);
    ASSERT_FALSE(re.ok()) << "accepted " << c.pattern;
    EXPECT_NE(re.message().find(c.needle), std::string::npos) << re.message();
    EXPECT_NE(re.message().find(std::string("regex \"") + c.pattern), std::string::npos)
        << re.message();
  }
  // Deep nesting is refused, not a stack overflow.
  std::string deep(5000, '(');
  deep += "a" + std::string(5000, ')');
  EXPECT_FALSE(SplitRegex::compile(deep).ok());
}

// ---------------------------------------------------------------------------------------------
// Unicode tables and UTF-8

TEST(Unicode, TablesAgreeWithTheDatabase) {
  using namespace unicode;
  EXPECT_STREQ(kUnicodeVersion, "15.0.0");
  EXPECT_EQ(category('A'), kLu);
  EXPECT_EQ(category('z'), kLl);
  EXPECT_EQ(category('7'), kNd);
  EXPECT_EQ(category(0x4E00), kLo);  // CJK (range entry in UnicodeData.txt)
  EXPECT_EQ(category(0x9FFF), kLo);
  EXPECT_EQ(category(0x20000), kLo);  // CJK Extension B (astral, binary search path)
  EXPECT_EQ(category(0x0301), kMn);
  EXPECT_EQ(category(0x20E3), kMe);
  EXPECT_EQ(category(0x2167), kNl);  // Roman numeral
  EXPECT_EQ(category(0x00B2), kNo);
  EXPECT_EQ(category(0x1F600), kSo);
  EXPECT_EQ(category(0x0378), kCn);
  EXPECT_EQ(category(0xE000), kCo);
  EXPECT_EQ(category(0xD800), kCs);
  EXPECT_EQ(category(0x10FFFF), kCn);
  EXPECT_EQ(category(kInvalidBase + 0xFF), kCn);
  for (uint32_t ws : {0x9u, 0xDu, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u, 0x200Au, 0x2028u, 0x2029u,
                      0x202Fu, 0x205Fu, 0x3000u})
    EXPECT_TRUE(is_white_space(ws)) << std::hex << ws;
  for (uint32_t no : {0x8u, 0x1Cu, 0x200Bu, 0xFEFFu, 0x180Eu}) EXPECT_FALSE(is_white_space(no));
  EXPECT_TRUE(is_word('_'));
  EXPECT_TRUE(is_word(0x4E2D));
  EXPECT_TRUE(is_word(0x0301));
  EXPECT_TRUE(is_word(0x200D));  // Join_Control
  EXPECT_FALSE(is_word('-'));
  EXPECT_FALSE(is_word(0x00B2));  // No is not \w in Rust's regex
}

TEST(Unicode, LossyRepairMatchesRust) {
  auto lossy = [](std::string_view s, bool final, size_t* used = nullptr) {
    std::string out;
    size_t n = unicode::append_utf8_lossy(s, final, out);
    if (used) *used = n;
    return out;
  };
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(lossy("abc", true), "abc");
  EXPECT_EQ(lossy("\xE4\xB8", true), R);  // truncated: one replacement
  EXPECT_EQ(lossy("\xE4\xB8"
                  "A",
                  true),
            R + "A");
  EXPECT_EQ(lossy("\xC0\x80", true), R + R);                  // overlong lead: each byte
  EXPECT_EQ(lossy("\xED\xA0\x80", true), R + R + R);          // surrogate
  EXPECT_EQ(lossy("\xF4\x90\x80\x80", true), R + R + R + R);  // above U+10FFFF
  EXPECT_EQ(lossy("\xF0\x9F\x98\x80", true), "\xF0\x9F\x98\x80");
  EXPECT_EQ(lossy("\xF0\x9F\x98"
                  "x",
                  true),
            R + "x");
  size_t used = 0;
  EXPECT_EQ(lossy("ab\xF0\x9F\x98", false, &used), "ab");
  EXPECT_EQ(used, 2u);
  EXPECT_EQ(lossy("ab\xFF", false, &used), "ab" + R);  // never valid: no need to wait
  EXPECT_EQ(used, 3u);
}

// ---------------------------------------------------------------------------------------------
// Speed

// Throughput is printed, not asserted (performance belongs to benchmarks; a timed assertion is
// flaky on a busy machine): this test checks a megabyte of mixed text round-trips.
TEST(Tokenizer, EncodesAMegabyteOfMixedText) {
  const Tokenizer& tok = fixture("deepseek_v3");
  std::string text;
  const auto& cases = expected()["cases"];
  for (size_t i = 0; text.size() < (1u << 20); ++i)
    text += cases[i % cases.size()]["text"].get<std::string>() + "\n";
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = tok.encode(text);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("encode: %zu bytes -> %zu tokens in %.1f ms (%.1f MB/s)\n", text.size(), ids.size(),
              s * 1e3, text.size() / s / 1e6);
  EXPECT_EQ(tok.decode(ids), text);
}

}  // namespace
}  // namespace dsocr
