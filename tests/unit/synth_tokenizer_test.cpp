// The synthetic tokenizer.json (loader/synth_tokenizer.h): loads with our reader, has
// DeepSeek-OCR's special-token ids (../shared/MODEL.md §6.3) and sizes (§9), a well-formed BPE,
// byte-exact round trips, and is deterministic.
#include "loader/synth_tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "loader/tokenizer.h"

namespace dsocr {
namespace {

using json = nlohmann::json;

const std::string& text() {
  static const std::string s = synth_tokenizer_json();
  return s;
}

const Tokenizer& tok() {
  static Tokenizer* t = [] {
    Expected<Tokenizer> r = Tokenizer::load_from_string(text(), "synth tokenizer.json");
    if (!r.ok()) {
      ADD_FAILURE() << r.message();
      std::abort();
    }
    return new Tokenizer(std::move(*r));
  }();
  return *t;
}

// (Load time is a benchmark figure, not a unit test: a timed assertion failed on a busy 2-core
// machine.)
TEST(SynthTokenizer, LoadsAndIsSmall) {
  Expected<Tokenizer> t = Tokenizer::load_from_string(text(), "synth tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.message();
  EXPECT_EQ(t->vocab_size(), 128827u);
  EXPECT_EQ(t->vocab_size(), static_cast<size_t>(kSynthTokenizerSize));
  EXPECT_LT(text().size(), 12u << 20);
}

TEST(SynthTokenizer, Deterministic) {
  EXPECT_TRUE(synth_tokenizer_json() == text());
}

TEST(SynthTokenizer, OfficialSpecialTokenIds) {
  const std::vector<std::pair<const char*, int32_t>> want = {
      {"<｜begin▁of▁sentence｜>", 0},
      {"<｜end▁of▁sentence｜>", 1},
      {"<｜▁pad▁｜>", 2},
      {"<｜place▁holder▁no▁0｜>", 128000},
      {"<｜place▁holder▁no▁417｜>", 128417},
      {"<｜place▁holder▁no▁799｜>", 128799},
      {"<｜fim▁hole｜>", 128800},
      {"<｜fim▁begin｜>", 128801},
      {"<｜fim▁end｜>", 128802},
      {"<｜User｜>", 128803},
      {"<｜Assistant｜>", 128804},
      {"<|EOT|>", 128805},
      {"<｜tool▁calls▁begin｜>", 128806},
      {"<｜tool▁output▁end｜>", 128813},
      {"<｜tool▁sep｜>", 128814},
      {"<image>", 128815},
      {"<|ref|>", 128816},
      {"<|/ref|>", 128817},
      {"<|det|>", 128818},
      {"<|/det|>", 128819},
      {"<|grounding|>", 128820},
      {"<td>", 128821},
      {"</td>", 128822},
      {"<tr>", 128823},
      {"</tr>", 128824},
      {"<|User|>", 128825},
      {"<|Assistant|>", 128826},
  };
  for (const auto& [content, id] : want) {
    EXPECT_EQ(tok().token_id(content), id) << content;
    std::vector<int32_t> ids = tok().encode(content);
    EXPECT_EQ(ids, std::vector<int32_t>{id}) << content;
    EXPECT_EQ(tok().decode(ids), content);
  }
  // special / normalized flags of §6.3: the FIM/role/tool group is the one non-special group.
  EXPECT_TRUE(tok().is_special(0));
  EXPECT_TRUE(tok().is_special(128000));
  EXPECT_FALSE(tok().is_special(128800));
  EXPECT_FALSE(tok().is_special(128804));
  EXPECT_TRUE(tok().is_special(128805));
  EXPECT_FALSE(tok().is_special(128814));
  EXPECT_TRUE(tok().is_special(128815));
  EXPECT_TRUE(tok().is_special(128826));
  EXPECT_FALSE(tok().is_special(3));
}

// Structure of the file itself: ids 0..127999 exactly once, merges ordered so both parts and the
// result exist and the parts come first, 830 added tokens with the §6.3 flags.
TEST(SynthTokenizer, WellFormedBpe) {
  json j = json::parse(text());
  const json& vocab = j["model"]["vocab"];
  ASSERT_EQ(vocab.size(), static_cast<size_t>(kSynthBpeVocab));
  std::vector<char> seen(kSynthBpeVocab, 0);
  for (const auto& [k, v] : vocab.items()) {
    int64_t id = v.get<int64_t>();
    ASSERT_TRUE(id >= 0 && id < kSynthBpeVocab) << k;
    ASSERT_FALSE(seen[id]) << id;
    seen[id] = 1;
  }
  EXPECT_EQ(vocab["<｜begin▁of▁sentence｜>"], 0);
  EXPECT_EQ(vocab["<｜▁pad▁｜>"], 2);
  EXPECT_EQ(vocab["!"], 3);
  const json& merges = j["model"]["merges"];
  EXPECT_EQ(merges.size(), static_cast<size_t>(kSynthBpeVocab - 3 - 256));
  for (size_t i = 0; i < merges.size(); ++i) {
    std::string a = merges[i][0], b = merges[i][1];
    ASSERT_TRUE(vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) << i;
    int64_t ia = vocab[a], ib = vocab[b], ic = vocab[a + b];
    ASSERT_LT(ia, ic) << i;
    ASSERT_LT(ib, ic) << i;
  }
  const json& added = j["added_tokens"];
  ASSERT_EQ(added.size(), 830u);
  for (const json& a : added) {
    int id = a["id"];
    bool group_fim = id >= 128800 && id <= 128814;
    EXPECT_EQ(a["normalized"].get<bool>(), group_fim) << id;
    EXPECT_EQ(a["special"].get<bool>(), !group_fim || id == 128805) << id;
    EXPECT_FALSE(a["lstrip"].get<bool>() || a["rstrip"].get<bool>() ||
                 a["single_word"].get<bool>());
  }
}

TEST(SynthTokenizer, RoundTrip) {
  const std::vector<std::string> cases = {
      "Hello, world!",
      "The quick brown fox jumps over the lazy dog.",
      "  leading and trailing spaces  ",
      "Line one\nLine two\r\nLine three\n\n\n",
      "\ttabbed\tcolumns\t",
      "",
      " ",
      "a",
      "Introduction\n\nIn this paper we describe a method.",
      "Total: $1,234.56 (incl. 20% VAT) on 2024-03-15.",
      "3.14159265358979 2.71828 1000000 007",
      "中文文档识别测试。",
      "深度求索的光学字符识别模型，支持表格、公式和图片。",
      "日本語のテキスト：ひらがなとカタカナ。",
      "한국어 문장도 포함합니다.",
      "Ελληνικά και русский текст.",
      "مرحبا بالعالم",
      "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 ❤️",
      "Mixed 中英 text with numbers 12345 and 符号！？",
      "int main() { return 0; }",
      "def f(x):\n    return x ** 2  # square\n",
      "for (size_t i = 0; i < n; ++i) a[i] += b[i] * c;",
      "#include <vector>\nstd::vector<int> v{1, 2, 3};",
      "const json = {\"key\": \"value\", 'k2': [1, 2, null]};",
      "<html><body><div class=\"x\">Hi</div></body></html>",
      "# Title\n\n## Section 1.2\n\nSome **bold** and _italic_ text.",
      "| Name | Age |\n|------|----:|\n| Alice | 30 |\n| Bob | 25 |\n",
      "- item one\n- item two\n  - nested\n1. first\n2. second",
      "```python\nprint('hi')\n```",
      "> quoted line\n> another",
      "$$\\frac{a}{b} = \\sum_{i=1}^{n} x_i^2$$",
      "\\begin{equation} E = mc^2 \\end{equation}",
      "<table><tr><td>1</td><td>2</td></tr></table>",
      "<|ref|>title<|/ref|><|det|>[[12, 34, 567, 890]]<|/det|>",
      "<image>\n<|grounding|>Convert the document to markdown.",
      "<｜User｜>hi<｜Assistant｜>hello<｜end▁of▁sentence｜>",
      "https://www.example.com/path?q=1&r=two#frag",
      "user@example.org, +1 (555) 010-9999",
      "ALL CAPS HEADER AND lowercase",
      "CamelCaseIdentifier snake_case_name kebab-case-name",
      "naïve café résumé façade Ångström",
      "Tab\there, NBSP\u00a0there, ZWSP\u200bthere",
      "\u00ad soft hyphen and \u2028 line separator",
      "Fullwidth ＡＢＣ １２３ ｜ bars ▁ lower one eighth",
      "A\xe2\x80\x94"
      "dash\xe2\x80\x93"
      "and \xe2\x80\x9cquotes\xe2\x80\x9d",
      "!!!???...,,,;;;:::",
      "    indented four\n        indented eight",
      "x",
      "The end.\n",
      "零一二三四五六七八九十百千万亿",
  };
  ASSERT_EQ(cases.size(), 50u);
  for (const std::string& s : cases) {
    std::vector<int32_t> ids = tok().encode(s);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < 128827) << s;
    EXPECT_EQ(tok().decode(ids), s);
  }
  // The vocab is not just bytes: common pieces are single tokens.
  EXPECT_EQ(tok().encode("中文").size(), 2u);
  EXPECT_EQ(tok().encode(" the").size(), 1u);
  EXPECT_EQ(tok().encode("2024").size(), 2u);  // "202" "4": digits cut into runs of 3
  EXPECT_LT(tok().encode("The quick brown fox jumps over the lazy dog.").size(), 30u);
}

TEST(SynthTokenizer, OfficialPrompt) {
  std::vector<int32_t> ids = tok().encode("\n<|grounding|>Convert the document to markdown.");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 128820), 1);
  EXPECT_EQ(tok().decode(ids), "\n<|grounding|>Convert the document to markdown.");
}

// Ids 128827..129279 have embedding rows but no token (MODEL.md §6.3): the model can sample them.
// Tokenizer::decode skips unknown ids (as tokenizers does) and must not crash.
TEST(SynthTokenizer, DecodeIdsWithoutToken) {
  const int32_t a = tok().token_id("a"), b = tok().token_id("b");
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_EQ(tok().decode(std::vector<int32_t>{128827, 129000, 129279}), "");
  EXPECT_EQ(tok().decode(std::vector<int32_t>{a, 129279, b, 1 << 30, -1}), "ab");
  EXPECT_TRUE(tok().token_bytes(128827).empty());
  TokenStreamDecoder stream(tok());
  std::string streamed = stream.push(a) + stream.push(129100) + stream.push(b) + stream.flush();
  EXPECT_EQ(streamed, "ab");
}

// What dsocr-synth calls: the file lands whole under its final name, and a bad DIR is an error.
TEST(SynthTokenizer, WriteFile) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() /
                       ("dsocr_synth_tokenizer_test_" +
                        std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                        std::to_string(reinterpret_cast<uintptr_t>(&text())));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string path;
  Status s = write_synth_tokenizer(dir.string(), &path);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(path, (dir / "tokenizer.json").string());
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_TRUE(ss.str() == text());
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  Expected<Tokenizer> t = Tokenizer::load(path);
  ASSERT_TRUE(t.ok()) << t.message();
  EXPECT_EQ(t->token_id("<image>"), 128815);
  fs::remove_all(dir);

  Status bad = write_synth_tokenizer((dir / "missing").string(), nullptr);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("cannot create"), std::string::npos) << bad.message();
}

}  // namespace
}  // namespace dsocr
