// Post-processing (runtime/postprocess.h): the grounding scan against Python's regex results,
// the strict coordinate parser, box mapping with Python's float truncation, the official
// Markdown (expected strings produced by the official replace loop run in CPython 3), plain
// text, JSON read back with nlohmann, and figure crops decoded back from disk.
#include "runtime/postprocess.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dsocr {
namespace {

namespace fs = std::filesystem;

// A realistic grounding page (document prompt), already finished (no EOS, stripped).
constexpr std::string_view kPage =
    "<|ref|>title<|/ref|><|det|>[[62, 40, 937, 78]]<|/det|>\n"
    "# Attention Is All You Need\n"
    "\n"
    "<|ref|>text<|/ref|><|det|>[[62, 95, 937, 180]]<|/det|>\n"
    "The dominant sequence transduction models are based on complex recurrent networks. "
    "Let $f \\coloneqq g$ and $g \\eqqcolon h$.\n"
    "\n"
    "<|ref|>image<|/ref|><|det|>[[100, 200, 500, 450], [520, 200, 900, 450]]<|/det|>\n"
    "\n"
    "\n"
    "<|ref|>image_caption<|/ref|><|det|>[[100, 460, 900, 490]]<|/det|>\n"
    "<center>Figure 1: The Transformer.</center>\n"
    "\n"
    "<|ref|>table<|/ref|><|det|>[[62, 500, 937, 700]]<|/det|>\n"
    "<table><tr><td>a</td><td>b</td></tr></table>\n"
    "\n"
    "<|ref|>image<|/ref|><|det|>[[300, 720, 700, 900]]<|/det|>";

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("dsocr_postprocess_test_" + std::to_string(getpid()) + "_" + std::to_string(next_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int next_ = 0;
  fs::path path_;
};

std::vector<std::array<int64_t, 4>> coords(std::string_view s) {
  auto r = parse_coord_list(s);
  EXPECT_TRUE(r.ok()) << s << ": " << r.message();
  return r.ok() ? *r : std::vector<std::array<int64_t, 4>>{};
}

// --- text finishing -------------------------------------------------------------------------

TEST(FinishDecodedText, StripsOneTrailingEosAndWhitespace) {
  auto f = finish_decoded_text("\n  # Title\n\nbody  \n<｜end▁of▁sentence｜>");
  EXPECT_TRUE(f.eos_text_found);
  EXPECT_EQ(f.text, "# Title\n\nbody");
  // Only a trailing EOS is removed, and only one (Python endswith + slice).
  f = finish_decoded_text("a<｜end▁of▁sentence｜>b");
  EXPECT_FALSE(f.eos_text_found);
  EXPECT_EQ(f.text, "a<｜end▁of▁sentence｜>b");
  f = finish_decoded_text("a<｜end▁of▁sentence｜><｜end▁of▁sentence｜>");
  EXPECT_TRUE(f.eos_text_found);
  EXPECT_EQ(f.text, "a<｜end▁of▁sentence｜>");
  // The EOS is removed before strip(): whitespace after it keeps it.
  f = finish_decoded_text("a<｜end▁of▁sentence｜>\n");
  EXPECT_FALSE(f.eos_text_found);
  EXPECT_EQ(f.text, "a<｜end▁of▁sentence｜>");
}

TEST(PythonStrip, UnicodeWhitespaceLikeStrIsspace) {
  // U+3000, U+00A0, U+2028, \x1c are whitespace to Python; U+200B and U+FEFF are not.
  EXPECT_EQ(python_strip("\u3000\u00a0 x y\u2028\x1c"), "x y");
  EXPECT_EQ(python_strip("\u200bx\ufeff"), "\u200bx\ufeff");
  EXPECT_EQ(python_strip(" \t\n\r\v\f"), "");
  EXPECT_EQ(python_strip(""), "");
  // Invalid UTF-8 is content, never stripped, and never read past.
  EXPECT_EQ(python_strip(" \xe3\x80"), "\xe3\x80");
  EXPECT_EQ(python_strip("\x80 "), "\x80");
  EXPECT_EQ(python_strip(" \xc0\xa0 "), "\xc0\xa0");  // overlong space
}

// --- coordinates ------------------------------------------------------------------------------

TEST(NormToPixel, PythonFloatTruncation) {
  // Reference values: CPython int(x / 999 * W).
  EXPECT_EQ(norm_to_pixel(0, 1654), 0);
  EXPECT_EQ(norm_to_pixel(999, 1654), 1654);
  EXPECT_EQ(norm_to_pixel(999, 1), 1);
  EXPECT_EQ(norm_to_pixel(500, 1024), 512);
  EXPECT_EQ(norm_to_pixel(937, 2339), 2193);
  // Where float64 lands just below an integer and Python truncates down; exact integer
  // arithmetic (x * W / 999) would give one more.
  EXPECT_EQ(norm_to_pixel(63, 999), 62);
  EXPECT_EQ(norm_to_pixel(504, 1998), 1007);
  EXPECT_EQ(norm_to_pixel(509, 1998), 1017);
  EXPECT_EQ(norm_to_pixel(63, 333), 20);
  EXPECT_EQ(norm_to_pixel(711, 333), 236);
  // ... and where it does not.
  EXPECT_EQ(norm_to_pixel(64, 999), 64);
  EXPECT_EQ(norm_to_pixel(333, 333), 111);
}

TEST(ParseCoordList, AcceptsIntegerListsWithAnyWhitespace) {
  EXPECT_EQ(coords("[[1, 2, 3, 4]]"), (std::vector<std::array<int64_t, 4>>{{1, 2, 3, 4}}));
  EXPECT_EQ(coords(" [ [1,2,3,4] ,\n\t[ 5 , 6 ,7,\r\n 8 ] ] "),
            (std::vector<std::array<int64_t, 4>>{{1, 2, 3, 4}, {5, 6, 7, 8}}));
  EXPECT_TRUE(coords("[]").empty());
  EXPECT_TRUE(coords(" [ ] ").empty());
  EXPECT_EQ(coords("[[-5, 0, 1000, -0]]"), (std::vector<std::array<int64_t, 4>>{{-5, 0, 1000, 0}}));
  EXPECT_EQ(coords("[[99999999999999999999999, -99999999999999999999999, 007, 1]]"),
            (std::vector<std::array<int64_t, 4>>{{1'000'000'000, -1'000'000'000, 7, 1}}));
}

TEST(ParseCoordList, RejectsEverythingElse) {
  for (std::string_view bad : {"",
                               " ",
                               "[",
                               "[[1,2,3,4]",
                               "[[1,2,3]]",
                               "[[1,2,3,4,5]]",
                               "[[1.5,2,3,4]]",
                               "[[1,2,3,4e2]]",
                               "[[1,2,3,4],]",
                               "[[1,2,3,4]]x",
                               "[1,2,3,4]",
                               "[[1+1,2,3,4]]",
                               "[[- 1,2,3,4]]",
                               "[[+1,2,3,4]]",
                               "[[a,2,3,4]]",
                               "((1,2,3,4))",
                               "[[1,2,3,4]][[5,6,7,8]]",
                               "[[1,2,3,4] [5,6,7,8]]",
                               "[[1,,2,3,4]]",
                               "[[0x10,2,3,4]]",
                               "[[1_0,2,3,4]]",
                               "[[1,2,3,4]]<|det|>[[5,6,7,8]]",
                               "[[1,2,3,４]]",
                               "__import__('os')"}) {
    auto r = parse_coord_list(bad);
    EXPECT_FALSE(r.ok()) << "accepted: " << bad;
    if (!r.ok()) {
      EXPECT_NE(r.message().find("coordinates"), std::string::npos) << r.message();
    }
  }
  auto r = parse_coord_list("[[1, 2, x, 4]]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message(), "coordinates: byte 8: expected an integer, got 'x'");
}

// --- the grounding scan -----------------------------------------------------------------------

TEST(ParseGrounding, SingleMatchSingleBox) {
  const std::string_view t = "<|ref|>text<|/ref|><|det|>[[100, 200, 300, 400]]<|/det|>\nHello";
  Grounding g = parse_grounding(t, 999, 1998);
  ASSERT_EQ(g.blocks.size(), 1u);
  const Block& b = g.blocks[0];
  EXPECT_EQ(b.label, "text");
  EXPECT_EQ(b.text, "Hello");
  EXPECT_FALSE(b.image_match);
  EXPECT_TRUE(b.coords_valid);
  EXPECT_EQ(b.begin, 0u);
  EXPECT_EQ(b.end, t.find("\nHello"));
  ASSERT_EQ(b.boxes.size(), 1u);
  EXPECT_EQ(b.boxes[0].norm, (std::array<int, 4>{100, 200, 300, 400}));
  EXPECT_EQ(b.boxes[0].px, (std::array<int, 4>{100, 400, 300, 800}));
  EXPECT_FALSE(b.boxes[0].clamped);
  EXPECT_FALSE(b.boxes[0].swapped);
  EXPECT_EQ(g.truncation, Truncation::kNone);
  EXPECT_EQ(g.preamble, "");
}

TEST(ParseGrounding, RealisticPage) {
  Grounding g = parse_grounding(kPage, 1654, 2339);
  ASSERT_EQ(g.blocks.size(), 6u);
  const char* labels[] = {"title", "text", "image", "image_caption", "table", "image"};
  const bool images[] = {false, false, true, false, false, true};
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(g.blocks[i].label, labels[i]);
    EXPECT_EQ(g.blocks[i].image_match, images[i]);
    EXPECT_TRUE(g.blocks[i].coords_valid);
  }
  EXPECT_EQ(g.blocks[0].text, "# Attention Is All You Need");
  EXPECT_EQ(g.blocks[1].text,
            "The dominant sequence transduction models are based on complex recurrent networks. "
            "Let $f := g$ and $g =: h$.");
  EXPECT_EQ(g.blocks[2].text, "");
  EXPECT_EQ(g.blocks[3].text, "<center>Figure 1: The Transformer.</center>");
  EXPECT_EQ(g.blocks[4].text, "<table><tr><td>a</td><td>b</td></tr></table>");
  EXPECT_EQ(g.blocks[5].text, "");
  ASSERT_EQ(g.blocks[2].boxes.size(), 2u);
  // CPython: [int(v / 999 * s) for v, s in zip([520, 200, 900, 450], [1654, 2339] * 2)]
  EXPECT_EQ(g.blocks[2].boxes[1].px, (std::array<int, 4>{860, 468, 1490, 1053}));
  EXPECT_EQ(g.blocks[0].boxes[0].px, (std::array<int, 4>{102, 93, 1551, 182}));
}

// Labels and spans CPython's re.findall gives for hand-made malformed outputs.
TEST(ParseGrounding, MalformedTagsLikePythonRegex) {
  struct Case {
    std::string_view text;
    std::vector<std::string_view> labels;
    std::vector<bool> image;
  };
  const Case cases[] = {
      // A nested <|ref|>: the match starts at the first one.
      {"<|ref|>a<|ref|>b<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>tail", {"a<|ref|>b"}, {false}},
      // A <|ref|> without <|det|> swallows everything to the next <|/ref|><|det|>.
      {"<|ref|>x<|/ref|>junk<|ref|>y<|/ref|><|det|>[[1,2,3,4]]<|/det|>",
       {"x<|/ref|>junk<|ref|>y"},
       {false}},
      // A stray closing tag before a match is text.
      {"<|/ref|><|det|>[[1,2,3,4]]<|/det|><|ref|>b<|/ref|><|det|>[[0,0,9,9]]<|/det|>",
       {"b"},
       {false}},
      // Empty label and empty coordinates.
      {"<|ref|><|/ref|><|det|><|/det|>", {""}, {false}},
      // "<|ref|>image<|/ref|>" anywhere in the match text makes it an image match.
      {"<|ref|>caption<|/ref|><|det|>[[1,2,3,4]]<|/det|>see <|ref|>image<|/ref|> "
       "here<|ref|>text<|/ref|><|det|>[[5,6,7,8]]<|/det|>",
       {"caption", "image<|/ref|> here<|ref|>text"},
       {false, true}},
  };
  for (const Case& c : cases) {
    Grounding g = parse_grounding(c.text, 100, 100);
    ASSERT_EQ(g.blocks.size(), c.labels.size()) << c.text;
    for (size_t i = 0; i < c.labels.size(); ++i) {
      EXPECT_EQ(g.blocks[i].label, c.labels[i]) << c.text;
      EXPECT_EQ(g.blocks[i].image_match, c.image[i]) << c.text;
    }
    EXPECT_EQ(g.truncation, Truncation::kNone) << c.text;
  }
  // Second <|det|> inside the coordinates: the coordinate text is "[[1,2,3,4]]<|det|>[[5,6,7,8]]",
  // which the strict parser rejects: the block keeps its label and text, no boxes.
  Grounding g =
      parse_grounding("<|ref|>t<|/ref|><|det|>[[1,2,3,4]]<|det|>[[5,6,7,8]]<|/det|>rest", 10, 10);
  ASSERT_EQ(g.blocks.size(), 1u);
  EXPECT_FALSE(g.blocks[0].coords_valid);
  EXPECT_TRUE(g.blocks[0].boxes.empty());
  EXPECT_EQ(g.blocks[0].text, "rest");
  EXPECT_FALSE(g.blocks[0].coords_error.empty());
  // The crop of a block whose label is not exactly "image" is not taken.
  Grounding g2 = parse_grounding(cases[4].text, 100, 100);
  EXPECT_TRUE(plan_crops(g2, 100, 100).empty());
}

TEST(ParseGrounding, TruncatedOutput) {
  // Cut inside the coordinates.
  std::string_view t =
      "<|ref|>text<|/ref|><|det|>[[1,2,3,4]]<|/det|>\nabc\n<|ref|>title<|/ref|><|det|>[[1, 2";
  Grounding g = parse_grounding(t, 100, 100);
  ASSERT_EQ(g.blocks.size(), 1u);
  EXPECT_EQ(g.blocks[0].text, "abc");
  EXPECT_EQ(g.truncation, Truncation::kDet);
  EXPECT_EQ(g.truncated_at, t.find("<|ref|>title"));
  // Cut inside the label.
  t = "hello <|ref|>tit";
  g = parse_grounding(t, 100, 100);
  EXPECT_TRUE(g.blocks.empty());
  EXPECT_EQ(g.truncation, Truncation::kRef);
  EXPECT_EQ(g.truncated_at, 6u);
  EXPECT_EQ(g.preamble, "hello");
  // A lone <|ref|> before complete matches is not a truncation: it swallows the next match.
  g = parse_grounding("<|ref|>a\n<|ref|>b<|/ref|><|det|>[[1,2,3,4]]<|/det|>", 100, 100);
  ASSERT_EQ(g.blocks.size(), 1u);
  EXPECT_EQ(g.blocks[0].label, "a\n<|ref|>b");
  EXPECT_EQ(g.truncation, Truncation::kNone);
}

TEST(ParseGrounding, OutOfRangeNegativeAndSwappedCoordinates) {
  Grounding g = parse_grounding(
      "<|ref|>a<|/ref|><|det|>[[-20, 5, 1500, 999], [600, 700, 100, 200], [5, 5, 5, 5]]<|/det|>",
      640, 480);
  ASSERT_EQ(g.blocks.size(), 1u);
  const auto& boxes = g.blocks[0].boxes;
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(boxes[0].norm, (std::array<int, 4>{0, 5, 999, 999}));
  EXPECT_EQ(boxes[0].px, (std::array<int, 4>{0, 2, 640, 480}));
  EXPECT_TRUE(boxes[0].clamped);
  EXPECT_FALSE(boxes[0].swapped);
  EXPECT_EQ(boxes[1].norm, (std::array<int, 4>{100, 200, 600, 700}));
  EXPECT_FALSE(boxes[1].clamped);
  EXPECT_TRUE(boxes[1].swapped);
  EXPECT_EQ(boxes[2].px[0], boxes[2].px[2]);  // zero area, kept as a box
  // Clamping happens before swapping: [500, 0, -20, 10] -> x2 = 0 < 500 -> swapped.
  g = parse_grounding("<|ref|>a<|/ref|><|det|>[[500, 0, -20, 10]]<|/det|>", 999, 999);
  EXPECT_EQ(g.blocks[0].boxes[0].norm, (std::array<int, 4>{0, 0, 500, 10}));
  EXPECT_TRUE(g.blocks[0].boxes[0].clamped);
  EXPECT_TRUE(g.blocks[0].boxes[0].swapped);
}

TEST(ParseGrounding, NonIntegerCoordinatesKeepTheTextWithoutBoxes) {
  Grounding g = parse_grounding(
      "<|ref|>text<|/ref|><|det|>[[1.5, 2, 3, 4]]<|/det|>\nkept\n"
      "<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nnext",
      100, 100);
  ASSERT_EQ(g.blocks.size(), 2u);
  EXPECT_FALSE(g.blocks[0].coords_valid);
  EXPECT_TRUE(g.blocks[0].boxes.empty());
  EXPECT_EQ(g.blocks[0].text, "kept");
  EXPECT_TRUE(g.blocks[1].coords_valid);
  EXPECT_EQ(g.blocks[1].boxes.size(), 1u);
}

TEST(ParseGrounding, UnicodeLabelsAndGarbageBetweenTags) {
  const std::string_view t =
      "前言 <|ref|>标题<|/ref|><|det|>[[1,2,3,4]]<|/det|>第一章 \xff garbage <|det|> <|/ref|>\n"
      "<|ref|>ｔｅｘｔ ✓<|/ref|><|det|>[[5,6,7,8]]<|/det|>";
  Grounding g = parse_grounding(t, 100, 100);
  EXPECT_EQ(g.preamble, "前言");
  ASSERT_EQ(g.blocks.size(), 2u);
  EXPECT_EQ(g.blocks[0].label, "标题");
  EXPECT_EQ(g.blocks[0].text, "第一章 \xff garbage <|det|> <|/ref|>");
  EXPECT_EQ(g.blocks[1].label, "ｔｅｘｔ ✓");
  EXPECT_EQ(g.blocks[1].boxes[0].norm, (std::array<int, 4>{5, 6, 7, 8}));
  // The plain text drops the stray tags too.
  EXPECT_EQ(to_plain_text(t, g), "前言 第一章 \xff garbage");
}

TEST(ParseGrounding, StressTenThousandBoxesAndMatches) {
  std::string coords_text = "[";
  for (int i = 0; i < 10000; ++i) {
    coords_text += (i ? ", [" : "[") + std::to_string(i % 1000) + ", 1, " +
                   std::to_string(999 - i % 1000) + ", 998]";
  }
  coords_text += "]";
  std::string t = "<|ref|>text<|/ref|><|det|>" + coords_text + "<|/det|>\n";
  for (int i = 0; i < 10000; ++i) t += "<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nline\n";
  const auto start = std::chrono::steady_clock::now();
  Grounding g = parse_grounding(t, 1654, 2339);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(g.blocks.size(), 10001u);
  ASSERT_EQ(g.blocks[0].boxes.size(), 10000u);
  EXPECT_EQ(g.blocks[0].boxes[1234].norm, (std::array<int, 4>{234, 1, 765, 998}));
  EXPECT_TRUE(g.blocks[0].boxes[600].swapped);
  EXPECT_EQ(g.blocks[10000].text, "line");
  EXPECT_LT(s, 2.0) << "the scan must be linear";
  EXPECT_EQ(to_plain_text(t, g).size(), 10000 * 6 - 2);
}

// --- Markdown and plain text ------------------------------------------------------------------

TEST(Markdown, OfficialResultForARealisticPage) {
  Grounding g = parse_grounding(kPage, 1654, 2339);
  // CPython, the official loop of modeling_deepseekocr.py (HF result.mmd).
  EXPECT_EQ(to_markdown(kPage, g),
            "\n# Attention Is All You Need\n\n\nThe dominant sequence transduction models are "
            "based on complex recurrent networks. Let $f := g$ and $g =: h$.\n\n"
            "![](images/0.jpg)\n\n\n\n\n<center>Figure 1: The Transformer.</center>\n\n\n"
            "<table><tr><td>a</td><td>b</td></tr></table>\n\n![](images/1.jpg)\n");
  // The PDF script's newline collapse.
  MarkdownOptions pdf;
  pdf.collapse_newlines = true;
  pdf.image_prefix = "3_";
  EXPECT_EQ(to_markdown(kPage, g, pdf),
            "\n# Attention Is All You Need\n\nThe dominant sequence transduction models are based "
            "on complex recurrent networks. Let $f := g$ and $g =: h$.\n\n![](images/3_0.jpg)\n\n"
            "<center>Figure 1: The Transformer.</center>\n\n"
            "<table><tr><td>a</td><td>b</td></tr></table>\n\n![](images/3_1.jpg)\n");
}

TEST(Markdown, OfficialQuirks) {
  // Without any "other" match the official loop never runs the LaTeX replacement.
  std::string_view t = "$a \\coloneqq b$";
  EXPECT_EQ(to_markdown(t, parse_grounding(t, 10, 10)), t);
  t = "$a \\coloneqq b$<|ref|>x<|/ref|><|det|>[[1,2,3,4]]<|/det|>";
  EXPECT_EQ(to_markdown(t, parse_grounding(t, 10, 10)), "$a := b$");
  // A duplicate image match: str.replace put index 0 at both places; index 1 is spent.
  t = "<|ref|>image<|/ref|><|det|>[[1,2,3,4]]<|/det|>A"
      "<|ref|>image<|/ref|><|det|>[[5,6,7,8]]<|/det|>B"
      "<|ref|>image<|/ref|><|det|>[[1,2,3,4]]<|/det|>C"
      "<|ref|>image<|/ref|><|det|>[[2,2,3,4]]<|/det|>";
  EXPECT_EQ(to_markdown(t, parse_grounding(t, 10, 10)),
            "![](images/0.jpg)\nA![](images/1.jpg)\nB![](images/0.jpg)\nC![](images/3.jpg)\n");
  // A match whose coordinates do not parse is still removed.
  t = "a<|ref|>text<|/ref|><|det|>[[1.5,2,3,4]]<|/det|>b";
  EXPECT_EQ(to_markdown(t, parse_grounding(t, 10, 10)), "ab");
  // A cut-off tail stays.
  t = "a<|ref|>text<|/ref|><|det|>[[1,2";
  EXPECT_EQ(to_markdown(t, parse_grounding(t, 10, 10)), t);
}

TEST(PlainText, DropsTagsAndLabels) {
  Grounding g = parse_grounding(kPage, 1654, 2339);
  EXPECT_EQ(to_plain_text(kPage, g),
            "# Attention Is All You Need\n\nThe dominant sequence transduction models are based on "
            "complex recurrent networks. Let $f := g$ and $g =: h$.\n\n"
            "<center>Figure 1: The Transformer.</center>\n\n"
            "<table><tr><td>a</td><td>b</td></tr></table>");
  std::string_view t = "<|grounding|>x\n\n\n\n\ny<|ref|>text<|/ref|><|det|>[[1, 2";
  EXPECT_EQ(to_plain_text(t, parse_grounding(t, 10, 10)), "x\n\ny");
}

// --- crops ------------------------------------------------------------------------------------

TEST(Crops, NumberedPerBoxLikeTheOfficialImgIdx) {
  Grounding g = parse_grounding(kPage, 1654, 2339);
  std::vector<Crop> crops = plan_crops(g, 1654, 2339);
  // Image match 0 has two boxes -> crops 0 and 1; image match 1 -> crop 2 (the Markdown links
  // images/0.jpg and images/1.jpg, as the official code does).
  ASSERT_EQ(crops.size(), 3u);
  EXPECT_EQ(crops[0].block, 2u);
  EXPECT_EQ(crops[0].box, 0u);
  EXPECT_EQ(crops[1].block, 2u);
  EXPECT_EQ(crops[1].box, 1u);
  EXPECT_EQ(crops[2].block, 5u);
  EXPECT_EQ(crops[2].file, "images/2.jpg");
  EXPECT_EQ(crops[1].rect, (std::array<int, 4>{860, 468, 1490, 1053}));
  EXPECT_EQ(plan_crops(g, 1654, 2339, "7_")[2].file, "images/7_2.jpg");
}

TEST(Crops, WrittenWithTheRightSizesAndPixels) {
  // 200x100 image: left half red-ish, right half blue-ish, so the crop's content is checkable.
  Image img;
  img.width = 200;
  img.height = 100;
  img.rgb.resize(200 * 100 * 3);
  for (int y = 0; y < 100; ++y) {
    for (int x = 0; x < 200; ++x) {
      uint8_t* p = img.rgb.data() + (y * 200 + x) * 3;
      p[0] = x < 100 ? 220 : 20;
      p[1] = 40;
      p[2] = x < 100 ? 30 : 210;
    }
  }
  const std::string_view t =
      "<|ref|>image<|/ref|><|det|>[[0, 0, 499, 999], [600, 100, 999, 899], [300, 300, 300, 600]]"
      "<|/det|><|ref|>image<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>";
  Grounding g = parse_grounding(t, img.width, img.height);
  std::vector<Crop> crops = plan_crops(g, img.width, img.height);
  ASSERT_EQ(crops.size(), 4u);
  EXPECT_TRUE(crops[2].skipped);  // zero width
  TempDir dir;
  ASSERT_TRUE(write_crops(img, crops, dir.path().string()).ok());
  struct Expect {
    const char* file;
    int w, h;
    uint8_t r, b;
  };
  // CPython: int(499/999*200) = 99, int(600/999*200) = 120, int(100/999*100) = 10,
  // int(899/999*100) = 89.
  for (const Expect& e : {Expect{"0.jpg", 99, 100, 220, 30}, Expect{"1.jpg", 80, 79, 20, 210},
                          Expect{"3.jpg", 200, 100, 0, 0}}) {
    auto crop = load_image((dir.path() / "images" / e.file).string());
    ASSERT_TRUE(crop.ok()) << crop.message();
    EXPECT_EQ(crop->width, e.w) << e.file;
    EXPECT_EQ(crop->height, e.h) << e.file;
    if (e.r != 0 || e.b != 0) {
      const uint8_t* p =
          crop->rgb.data() + ((crop->height / 2) * crop->width + crop->width / 2) * 3;
      EXPECT_NEAR(p[0], e.r, 4) << e.file;
      EXPECT_NEAR(p[2], e.b, 4) << e.file;
    }
  }
  EXPECT_FALSE(fs::exists(dir.path() / "images" / "2.jpg"));
  // An unwritable directory is an error naming the path.
  Status s = write_crops(img, crops, (dir.path() / "images" / "0.jpg").string());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("0.jpg"), std::string::npos) << s.message();
}

// --- JSON -------------------------------------------------------------------------------------

TEST(PageJson, RoundTrip) {
  const std::string decoded = std::string(kPage) +
                              "\n<|ref|>text<|/ref|><|det|>[[1.5, 2, 3, 4]]<|/det|>\nbad \xff"
                              "<|ref|>text<|/ref|><|det|>[[1, 2<｜end▁of▁sentence｜>";
  PageResult page = postprocess_page(decoded, 1654, 2339, "p_");
  EXPECT_TRUE(page.eos_text_found);
  PageMeta meta;
  meta.name = "page-01";
  meta.width = 1654;
  meta.height = 2339;
  meta.mode = "gundam";
  meta.prompt = "<image>\n<|grounding|>Convert the document to markdown.";
  meta.prompt_tokens = 912;
  meta.image_tokens = 903;
  meta.generated_tokens = 321;
  meta.eos_reached = true;
  meta.timings_ms = {{"preprocess", 12.5}, {"encode", 40.25}, {"decode", 1234.0}};
  const std::string text = page_json(meta, page);
  EXPECT_EQ(text, page_json(meta, page));  // deterministic

  const nlohmann::json j = nlohmann::json::parse(text);
  EXPECT_EQ(j["name"], "page-01");
  EXPECT_EQ(j["page"]["width"], 1654);
  EXPECT_EQ(j["page"]["height"], 2339);
  EXPECT_EQ(j["mode"], "gundam");
  EXPECT_EQ(j["prompt"], meta.prompt);
  EXPECT_EQ(j["tokens"]["prompt"], 912);
  EXPECT_EQ(j["tokens"]["image"], 903);
  EXPECT_EQ(j["tokens"]["generated"], 321);
  EXPECT_EQ(j["eos_reached"], true);
  EXPECT_EQ(j["timings_ms"]["encode"], 40.25);
  EXPECT_EQ(j["timings_ms"].size(), 3u);
  EXPECT_EQ(j["truncated"]["kind"], "det");
  EXPECT_EQ(j["truncated"]["text"], "<|ref|>text<|/ref|><|det|>[[1, 2");
  const auto& blocks = j["blocks"];
  ASSERT_EQ(blocks.size(), 7u);
  EXPECT_EQ(blocks[0]["label"], "title");
  EXPECT_EQ(blocks[0]["text"], "# Attention Is All You Need");
  EXPECT_EQ(blocks[0]["boxes"][0]["norm"], nlohmann::json::parse("[62, 40, 937, 78]"));
  EXPECT_EQ(blocks[0]["boxes"][0]["px"], nlohmann::json::parse("[102, 93, 1551, 182]"));
  EXPECT_EQ(blocks[0]["boxes"][0]["swapped"], false);
  EXPECT_FALSE(blocks[0]["boxes"][0].contains("crop"));
  EXPECT_EQ(blocks[2]["image_match"], true);
  EXPECT_EQ(blocks[2]["boxes"][1]["crop"], "images/p_1.jpg");
  EXPECT_EQ(blocks[5]["boxes"][0]["crop"], "images/p_2.jpg");
  EXPECT_EQ(blocks[6]["coords_valid"], false);
  EXPECT_TRUE(blocks[6].contains("coords_error"));
  EXPECT_EQ(blocks[6]["boxes"].size(), 0u);
  EXPECT_EQ(blocks[6]["text"], "bad \xef\xbf\xbd");  // invalid UTF-8 -> U+FFFD
  // The raw text keeps the EOS text and the special tokens.
  EXPECT_EQ(j["raw_text"], "" + std::string(kPage) +
                               "\n<|ref|>text<|/ref|><|det|>[[1.5, 2, 3, 4]]<|/det|>\nbad "
                               "\xef\xbf\xbd<|ref|>text<|/ref|><|det|>[[1, 2<｜end▁of▁sentence｜>");
  // Keys come in a fixed order.
  EXPECT_LT(text.find("\"name\""), text.find("\"page\""));
  EXPECT_LT(text.find("\"timings_ms\""), text.find("\"blocks\""));
  EXPECT_LT(text.find("\"preprocess\""), text.find("\"encode\""));
}

TEST(PageOutputs, WritesAllFiles) {
  Image img;
  img.width = 64;
  img.height = 48;
  img.rgb.assign(64 * 48 * 3, 200);
  PageResult page = postprocess_page(kPage, img.width, img.height);
  PageMeta meta;
  meta.name = "doc";
  meta.width = img.width;
  meta.height = img.height;
  TempDir dir;
  ASSERT_TRUE(write_page_outputs(dir.path().string(), img, meta, page).ok());
  for (const char* f :
       {"doc.mmd", "doc.json", "doc_boxes.png", "images/0.jpg", "images/1.jpg", "images/2.jpg"}) {
    EXPECT_TRUE(fs::exists(dir.path() / f)) << f;
  }
  std::ifstream mmd(dir.path() / "doc.mmd", std::ios::binary);
  const std::string content((std::istreambuf_iterator<char>(mmd)), {});
  EXPECT_EQ(content, to_markdown(kPage, page.grounding));
  Status s = write_page_outputs((dir.path() / "missing").string(), img, meta, page);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace dsocr
