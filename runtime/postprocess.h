// Model text -> the outputs people use: grounding blocks, Markdown (.mmd), plain text, JSON and
// figure crops (MODEL.md §8, §11). The box overlay lives in runtime/overlay.h.
//
// What the official code does, and what dsocr does (HF `infer(save_results=True)`,
// modeling_deepseekocr.py `re_match` / `draw_bounding_boxes`; vLLM run_dpsk_ocr_{image,pdf}.py):
//  * Text: decode with special tokens kept; drop one trailing EOS text `<｜end▁of▁sentence｜>`;
//    Python `str.strip()` (finish_decoded_text).
//  * Matches: `re.findall(r'(<\|ref\|>(.*?)<\|/ref\|><\|det\|>(.*?)<\|/det\|>)', text, re.DOTALL)`.
//    parse_grounding reproduces exactly that scan without a regex engine: a match starts at a
//    `<|ref|>`, its label runs to the first `<|/ref|><|det|>` after it, its coordinates to the
//    first `<|/det|>` after that; the scan resumes after the match. So a stray `<|ref|>` swallows
//    everything up to the next complete match (its label then contains tags), as in Python.
//    When no `<|/ref|><|det|>` or no `<|/det|>` follows, no later match exists either: the output
//    was cut off (max tokens); dsocr reports it (Grounding::truncation) and the tail stays text.
//  * Coordinates: the official code `eval`s them. dsocr parses only `[[i, i, i, i], ...]` (`[]`
//    too) with optional `-` and ASCII whitespace anywhere between tokens; anything else (floats,
//    expressions, wrong arity, trailing commas) invalidates the whole list: the block keeps its
//    label and text and has no boxes (Python would draw the boxes before the first bad one).
//    Values are clamped to 0..999 (saturating, no overflow), then corners with x2 < x1 or
//    y2 < y1 are swapped; both are recorded. Pixels of the original (EXIF-transposed) image:
//    x = int(x_norm / 999 * W), float64 divide, multiply, truncate, as Python (999 -> W).
//  * Image match: a match whose full text contains `<|ref|>image<|/ref|>` (Python's test);
//    every other match is "other". Crops are taken for blocks whose label is exactly `image`.
//  * Markdown: for the k-th image match, every occurrence of its text is replaced by
//    `![](images/<k>.jpg)\n` (str.replace, so a duplicate match keeps the first k and its own k
//    is spent); then for each other match, its occurrences are removed and `\coloneqq` -> `:=`,
//    `\eqqcolon` -> `=:` (and, with collapse_newlines, the PDF script's `\n\n\n\n` -> `\n\n`,
//    `\n\n\n` -> `\n\n`) are applied to the whole text — once per other match, as the official
//    loop does, so a text without other matches keeps `\coloneqq`. This is the official result,
//    byte for byte.
//  * Crops: one per box of each `image` block, numbered by a counter over those boxes (the
//    official `img_idx`). The Markdown numbers image MATCHES, so when an image match has several
//    boxes the Markdown links and the crop files disagree — as in the official code; JSON lists
//    each box's crop file. Zero-area boxes are skipped (no file; the number is still used, as
//    PIL's failed save is). dsocr writes JPEG quality 95.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loader/image.h"
#include "loader/status.h"

namespace dsocr {

// The EOS token's text (id 1), as the tokenizer decodes it.
inline constexpr std::string_view kEosText = "<｜end▁of▁sentence｜>";

constexpr int kNormMax = 999;  // grounding coordinates are integers in 0..kNormMax

// Python `str.strip()` on UTF-8 text: removes leading/trailing code points for which
// `str.isspace()` is true (ASCII \t\n\v\f\r, \x1c-\x1f, space, U+0085, U+00A0, U+1680,
// U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). Invalid UTF-8 is never stripped.
std::string python_strip(std::string_view s);

struct FinishedText {
  std::string text;             // decoded minus one trailing kEosText, then python_strip
  bool eos_text_found = false;  // the decoded text ended with kEosText
};
// HF: `if outputs.endswith(stop_str): outputs = outputs[:-len(stop_str)]; outputs.strip()`.
FinishedText finish_decoded_text(std::string_view decoded);

// int(norm / 999 * size) with Python's float64 arithmetic. norm in 0..999 -> 0..size.
int norm_to_pixel(int norm, int size);

// Strict parser of a coordinate list `[[x1, y1, x2, y2], ...]`. Values saturate at ±1e9.
// The error names the byte offset and what was expected.
Expected<std::vector<std::array<int64_t, 4>>> parse_coord_list(std::string_view s);

struct Box {
  std::array<int, 4> norm{};  // x1, y1, x2, y2 in 0..999 after clamping and swapping
  std::array<int, 4> px{};    // the same corners in pixels: norm_to_pixel(norm, W or H)
  bool clamped = false;       // a coordinate was outside 0..999 in the model's output
  bool swapped = false;       // x2 < x1 or y2 < y1 in the model's output
};

struct Block {
  std::string label;         // text between <|ref|> and <|/ref|>, as written (may be empty)
  std::string text;          // the content the model wrote for this region: the text after this
                             // match up to the next match (or the cut-off tail, or the end),
                             // with \coloneqq/\eqqcolon replaced, python_strip()ed
  std::vector<Box> boxes;    // empty when the coordinates did not parse
  bool image_match = false;  // the official "image match" test (see top of file)
  bool coords_valid = true;
  std::string coords_error;  // why the coordinates were rejected
  size_t begin = 0;          // byte span [begin, end) of the whole match in the parsed text
  size_t end = 0;
};

enum class Truncation {
  kNone,
  kRef,  // a <|ref|> with no <|/ref|><|det|> after it
  kDet,  // <|ref|>...<|/ref|><|det|> with no <|/det|> after it
};

struct Grounding {
  std::vector<Block> blocks;
  std::string preamble;  // text before the first match (stripped, LaTeX fixed)
  Truncation truncation = Truncation::kNone;
  size_t truncated_at = 0;  // byte offset of the unterminated <|ref|> (when truncation != kNone)
};

// Find the grounding matches of `text` (already finished) with boxes for a width x height image.
// PRECOND: width > 0, height > 0.
Grounding parse_grounding(std::string_view text, int width, int height);

struct MarkdownOptions {
  bool collapse_newlines = false;  // the PDF script's \n\n\n(\n) -> \n\n (see top of file)
  std::string image_prefix;        // "" -> images/3.jpg; "2_" -> images/2_3.jpg (PDF pages)
};
// The official result.mmd of `text` (finished, and parsed into `g`).
std::string to_markdown(std::string_view text, const Grounding& g,
                        const MarkdownOptions& options = {});

// Plain text: every match and any cut-off tail removed, stray grounding tags (<|ref|>, <|/ref|>,
// <|det|>, <|/det|>, <|grounding|>) removed, \coloneqq/\eqqcolon replaced, runs of 3+ newlines
// collapsed to 2, python_strip()ed. Labels and image placeholders are dropped.
std::string to_plain_text(std::string_view text, const Grounding& g);

struct Crop {
  size_t block = 0;           // index into Grounding::blocks
  size_t box = 0;             // index into that block's boxes
  int index = 0;              // the official img_idx
  std::string file;           // relative to the output directory: images/<prefix><index>.jpg
  std::array<int, 4> rect{};  // x1, y1, x2, y2 pixels, clamped to the image; x2, y2 exclusive
  bool skipped = false;       // zero area: no file is written
};
// The crops of the `image` blocks of g, for a width x height image.
std::vector<Crop> plan_crops(const Grounding& g, int width, int height,
                             std::string_view image_prefix = "");
// Write each non-skipped crop of `image` as JPEG (quality 95) to <out_dir>/<crop.file>, creating
// <out_dir>/images. Errors name the file.
Status write_crops(const Image& image, const std::vector<Crop>& crops, const std::string& out_dir);

// One page's output, derived from the decoded text.
struct PageResult {
  std::string raw_text;         // as decoded, special tokens kept (EOS text included if emitted)
  std::string text;             // finish_decoded_text(raw_text).text: what is parsed
  bool eos_text_found = false;  // raw_text ended with kEosText
  Grounding grounding;          // of `text`
  std::vector<Crop> crops;      // plan_crops(grounding, ...)
  std::string image_prefix;     // crop/Markdown file-name prefix
};
PageResult postprocess_page(std::string_view decoded, int width, int height,
                            std::string_view image_prefix = "");

// What the pipeline knows about the page besides the text; all of it goes into the JSON.
struct PageMeta {
  std::string name;  // page / file stem
  int width = 0;     // original image size (after EXIF transpose)
  int height = 0;
  std::string mode;  // "tiny", "small", "base", "large", "gundam"
  std::string prompt;
  int64_t prompt_tokens = 0;  // whole prompt incl. BOS and image tokens
  int64_t image_tokens = 0;
  int64_t generated_tokens = 0;  // incl. the EOS token when emitted
  bool eos_reached = false;      // generation stopped on EOS (not on the token limit)
  std::vector<std::pair<std::string, double>> timings_ms;  // stage -> ms, kept in this order
};

// <name>.json: keys in a fixed order; invalid UTF-8 in any string becomes U+FFFD.
std::string page_json(const PageMeta& meta, const PageResult& page);

// Write a whole file (binary). Errors name the path.
Status write_file(const std::string& path, std::string_view bytes);

struct PageOutputOptions {
  MarkdownOptions markdown;      // image_prefix is taken from the PageResult
  bool write_markdown = true;    // <name>.mmd
  bool write_json = true;        // <name>.json
  bool write_crop_files = true;  // images/<prefix><idx>.jpg
  bool write_overlay = true;     // <name>_boxes.png
};
// Everything for one page in out_dir (which must exist). `image` is the original image.
Status write_page_outputs(const std::string& out_dir, const Image& image, const PageMeta& meta,
                          const PageResult& page, const PageOutputOptions& options = {});

}  // namespace dsocr
