// runtime/batch.h: directory and list-file expansion, unique output names, and the progress and
// summary lines dsocr-run prints for many images.
#include "runtime/batch.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "loader/image.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;

class BatchFiles : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsocr_batch_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "scans" / "sub");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void touch(const fs::path& p) { std::ofstream(dir_ / p) << "x"; }
  std::string at(const std::string& rel) const { return (dir_ / rel).string(); }
  fs::path dir_;
};

TEST(ImageExtensions, CaseInsensitiveKnownFormatsOnly) {
  for (const char* p :
       {"a.png", "a.PNG", "dir.x/a.Jpg", "a.jpeg", "a.bmp", "a.tga", "a.pnm", "a.ppm", "a.pgm"})
    EXPECT_TRUE(has_image_extension(p)) << p;
  for (const char* p : {"a.gif", "a.pdf", "a.txt", "png", "a.png/", "dir.png/a", "a.", "", ".x"})
    EXPECT_FALSE(has_image_extension(p)) << p;
  EXPECT_EQ(image_extensions_text(), ".png, .jpg, .jpeg, .bmp, .tga, .pnm, .ppm, .pgm");
}

TEST_F(BatchFiles, DirectoryIsSortedFilteredAndFlat) {
  for (const char* f : {"scans/page_10.png", "scans/page_02.JPG", "scans/Page_01.png",
                        "scans/notes.txt", "scans/sub/page_00.png"})
    touch(f);
  fs::create_directories(dir_ / "scans" / "folder.png");  // a directory with an image name
  Expected<std::vector<std::string>> got = images_in_directory(at("scans"));
  ASSERT_TRUE(got.ok()) << got.message();
  // Byte order: upper case sorts first; subdirectories and other files are left out.
  EXPECT_EQ(*got, (std::vector<std::string>{at("scans/Page_01.png"), at("scans/page_02.JPG"),
                                            at("scans/page_10.png")}));
  // A trailing slash does not double.
  EXPECT_EQ(images_in_directory(at("scans") + "/")->front(), at("scans/Page_01.png"));
  // expand_image_arg: directories expand, anything else passes through (even if missing).
  EXPECT_EQ(expand_image_arg(at("scans"))->size(), 3u);
  EXPECT_EQ(*expand_image_arg("missing.png"), std::vector<std::string>{"missing.png"});
  // No images: an error naming the directory and the extensions.
  Expected<std::vector<std::string>> none = images_in_directory(at("scans/folder.png"));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.message().find("folder.png: no image files (.png, .jpg"), std::string::npos)
      << none.message();
  EXPECT_FALSE(images_in_directory(at("nope")).ok());
}

TEST(ImageList, ParsesLinesCommentsAndRelativePaths) {
  const std::string text =
      "# pages to do\n"
      "a.png\n"
      "\n"
      "  sub/b.png  \r\n"
      "   # indented comment\n"
      "/abs/c.png\r\n"
      "\t\n"
      "last.png";  // no final newline
  EXPECT_EQ(parse_image_list(text, "/lists"),
            (std::vector<std::string>{"/lists/a.png", "/lists/sub/b.png", "/abs/c.png",
                                      "/lists/last.png"}));
  EXPECT_EQ(parse_image_list(text, ""),
            (std::vector<std::string>{"a.png", "sub/b.png", "/abs/c.png", "last.png"}));
  EXPECT_TRUE(parse_image_list("\n\n# only comments\n", "/x").empty());
}

TEST_F(BatchFiles, ListFileRelativeToItsDirectoryAndExpandsDirectories) {
  touch("scans/a.png");
  touch("scans/b.png");
  std::ofstream(dir_ / "list.txt")
      << "# two from the folder, one missing file\nscans\nmissing.png\n";
  Expected<std::vector<std::string>> got = read_image_list(at("list.txt"));
  ASSERT_TRUE(got.ok()) << got.message();
  EXPECT_EQ(*got,
            (std::vector<std::string>{at("scans/a.png"), at("scans/b.png"), at("missing.png")}));
  Expected<std::vector<std::string>> missing = read_image_list(at("nope.txt"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("nope.txt: list file not found"), std::string::npos);
  std::ofstream(dir_ / "empty.txt") << "# nothing\n";
  Expected<std::vector<std::string>> empty = read_image_list(at("empty.txt"));
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.message().find("names no images"), std::string::npos) << empty.message();
  std::ofstream(dir_ / "bad.txt") << "scans/sub\n";  // a directory without images
  Expected<std::vector<std::string>> bad = read_image_list(at("bad.txt"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("bad.txt: "), std::string::npos) << bad.message();
}

TEST(OutputNames, DuplicatesGetSuffixesThatCollideWithNothing) {
  EXPECT_EQ(unique_output_names({"a/page.png", "b/page.png", "c/page.jpg", "x.png"}),
            (std::vector<std::string>{"page", "page_2", "page_3", "x"}));
  // page_2 is another image's own name: the duplicate skips it.
  EXPECT_EQ(unique_output_names({"a/page.png", "b/page.png", "page_2.png"}),
            (std::vector<std::string>{"page", "page_3", "page_2"}));
  EXPECT_TRUE(unique_output_names({}).empty());
}

TEST(Formatting, DurationsAndEta) {
  EXPECT_EQ(format_ms(4.14), "4.1 ms");
  EXPECT_EQ(format_ms(212.4), "212 ms");
  EXPECT_EQ(format_ms(12345), "12.3 s");
  EXPECT_EQ(format_eta(0), "0s");
  EXPECT_EQ(format_eta(44.6), "45s");
  EXPECT_EQ(format_eta(72), "1m12s");
  EXPECT_EQ(format_eta(3599.4), "59m59s");
  EXPECT_EQ(format_eta(7500), "2h05m");
  EXPECT_EQ(format_eta(-3), "0s");
}

TEST(Formatting, ProgressLine) {
  // Image 13 of 40 starts, 12 done in 36 s: 3 s each, 28 left -> 84 s.
  EXPECT_EQ(progress_line(12, 40, 12, 36, "page_013.png", 10),
            "[13/40] page_013.png  ███░░░░░░░ 30%  eta 1m24s");
  EXPECT_EQ(progress_line(0, 3, 0, 0, "a.png", 4), "[1/3] a.png  ░░░░ 0%  eta --");
  EXPECT_EQ(progress_line(1, 2, 2, 10, "b.png", 4), "[2/2] b.png  ████ 100%  eta 0s");
  EXPECT_EQ(progress_line(0, 3, 1, 10, "a.png", 4), "[1/3] a.png  █░░░ 33%  eta 20s");
  // Long names keep their end, in whole UTF-8 characters.
  EXPECT_EQ(progress_line(0, 1, 0, 0, "très_long_nom_é.png", 2, 8),
            "[1/1] …m_é.png  ░░ 0%  eta --");
}

TEST(Formatting, PageSummary) {
  PageOutput p;
  p.tiles = 6;
  p.image_tokens = 912;
  p.ids.assign(523, 7);
  p.ms = {{"preprocess", 9.0}, {"vision", 4.1}, {"prefill", 3.2}, {"decode", 212.0}};
  p.eos = true;
  EXPECT_EQ(page_summary("page_012.png", "gundam", p),
            "page_012.png: gundam 6 tiles, 912 image tokens, 523 tokens, vision 4.1 ms, prefill "
            "3.2 ms, decode 212 ms (2467 tok/s), EOS");
  p.tiles = 0;
  p.eos = false;
  p.ms.erase("decode");
  EXPECT_EQ(
      page_summary("a.png", "tiny", p),
      "a.png: tiny, 912 image tokens, 523 tokens, vision 4.1 ms, prefill 3.2 ms, token limit");
  p.stopped = true;
  EXPECT_NE(page_summary("a.png", "tiny", p).find(", stopped"), std::string::npos);
}

TEST(Formatting, BatchSummary) {
  BatchTotals t;
  t.images = 40;
  t.failed = {"page_7.png"};
  t.tokens = 20931;
  t.seconds = 12.3;
  EXPECT_EQ(batch_summary(t),
            "40 images, 39 ok, 1 failed (page_7.png), 20931 tokens in 12.3 s (1702 tok/s)");
  t.failed = {"a.png", "b.png", "c.png"};
  EXPECT_EQ(
      batch_summary(t, 2),
      "40 images, 37 ok, 3 failed (a.png, b.png, +1 more), 20931 tokens in 12.3 s (1702 tok/s)");
  BatchTotals one;
  one.images = 1;
  EXPECT_EQ(batch_summary(one), "1 image, 1 ok, 0 failed, 0 tokens in 0.0 s");
  one.tokens = 6;
  one.seconds = 15.5;
  EXPECT_EQ(batch_summary(one), "1 image, 1 ok, 0 failed, 6 tokens in 15.5 s (0.4 tok/s)");
}

}  // namespace
}  // namespace dsocr
