// Model text -> grounding blocks, Markdown, plain text, JSON and figure crops. The semantics,
// and where they follow or leave the official code, are described in postprocess.h.
#include "runtime/postprocess.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/overlay.h"
#include "stb/stb_image_write.h"

namespace dsocr {

namespace {

constexpr std::string_view kRefOpen = "<|ref|>";
constexpr std::string_view kRefCloseDetOpen = "<|/ref|><|det|>";
constexpr std::string_view kDetClose = "<|/det|>";
constexpr std::string_view kImageRef = "<|ref|>image<|/ref|>";
constexpr int64_t kCoordSaturation = 1'000'000'000;

// Decode one UTF-8 code point starting at s[i]. Returns its length in bytes, 0 when invalid
// (overlong forms, surrogates and values above U+10FFFF count as invalid, as in Python).
size_t decode_utf8(std::string_view s, size_t i, uint32_t* cp) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  size_t n = 0;
  uint32_t v = 0;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  } else if ((b0 & 0xe0) == 0xc0) {
    n = 2;
    v = b0 & 0x1f;
  } else if ((b0 & 0xf0) == 0xe0) {
    n = 3;
    v = b0 & 0x0f;
  } else if ((b0 & 0xf8) == 0xf0) {
    n = 4;
    v = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<uint8_t>(s[i + k]);
    if ((b & 0xc0) != 0x80) return 0;
    v = (v << 6) | (b & 0x3f);
  }
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < kMin[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return n;
}

// CPython's _PyUnicode_IsWhitespace (str.isspace).
bool is_python_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

// Python str.replace(from, to): every non-overlapping occurrence, left to right.
// PRECOND: !from.empty().
std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  size_t hit = s.find(from);
  if (hit == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (hit != std::string_view::npos) {
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
    hit = s.find(from, pos);
  }
  out.append(s.substr(pos));
  return out;
}

std::string fix_latex(std::string_view s) {
  return replace_all(replace_all(s, "\\coloneqq", ":="), "\\eqqcolon", "=:");
}

// Cursor over the coordinate text for parse_coord_list.
class CoordParser {
 public:
  explicit CoordParser(std::string_view s) : s_(s) {}

  Expected<std::vector<std::array<int64_t, 4>>> parse() {
    std::vector<std::array<int64_t, 4>> boxes;
    DSOCR_TRY(expect('['));
    if (!peek(']')) {
      while (true) {
        std::array<int64_t, 4> box{};
        DSOCR_TRY(expect('['));
        for (int k = 0; k < 4; ++k) {
          if (k > 0) DSOCR_TRY(expect(','));
          DSOCR_ASSIGN_OR_RETURN(box[k], integer());
        }
        DSOCR_TRY(expect(']'));
        boxes.push_back(box);
        if (peek(']')) break;
        DSOCR_TRY(expect(','));
      }
    }
    DSOCR_TRY(expect(']'));
    skip_space();
    if (i_ != s_.size()) return error("end of the list");
    return boxes;
  }

 private:
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r' ||
                              s_[i_] == '\f' || s_[i_] == '\v')) {
      ++i_;
    }
  }
  bool peek(char c) {
    skip_space();
    return i_ < s_.size() && s_[i_] == c;
  }
  Status expect(char c) {
    if (!peek(c)) return error(strfmt("'%c'", c));
    ++i_;
    return Status::Ok();
  }
  Expected<int64_t> integer() {
    skip_space();
    bool negative = false;
    if (i_ < s_.size() && s_[i_] == '-') {
      negative = true;
      ++i_;
    }
    if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') return error("an integer");
    int64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      v = std::min(v * 10 + (s_[i_] - '0'), kCoordSaturation);
      ++i_;
    }
    return negative ? -v : v;
  }
  Status error(const std::string& expected) const {
    if (i_ >= s_.size())
      return Status::Error(strfmt("coordinates end early, expected %s", expected.c_str()));
    return Status::Error(
        strfmt("coordinates: byte %zu: expected %s, got '%c'", i_, expected.c_str(), s_[i_]));
  }

  std::string_view s_;
  size_t i_ = 0;
};

Box make_box(const std::array<int64_t, 4>& raw, int width, int height) {
  Box b;
  for (int k = 0; k < 4; ++k) {
    const int64_t v = std::clamp<int64_t>(raw[k], 0, kNormMax);
    b.clamped |= v != raw[k];
    b.norm[k] = static_cast<int>(v);
  }
  if (b.norm[2] < b.norm[0]) {
    std::swap(b.norm[0], b.norm[2]);
    b.swapped = true;
  }
  if (b.norm[3] < b.norm[1]) {
    std::swap(b.norm[1], b.norm[3]);
    b.swapped = true;
  }
  b.px = {norm_to_pixel(b.norm[0], width), norm_to_pixel(b.norm[1], height),
          norm_to_pixel(b.norm[2], width), norm_to_pixel(b.norm[3], height)};
  return b;
}

// Where the text after the last match ends: the cut-off tail or the end of the text.
size_t text_end(std::string_view text, const Grounding& g) {
  return g.truncation == Truncation::kNone ? text.size() : g.truncated_at;
}

}  // namespace

std::string python_strip(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    uint32_t cp = 0;
    const size_t n = decode_utf8(s, begin, &cp);
    if (n == 0 || !is_python_space(cp)) break;
    begin += n;
  }
  size_t end = s.size();
  while (end > begin) {
    // Find the start of the last code point (at most 3 continuation bytes back).
    size_t start = end - 1;
    while (start > begin && end - start < 4 && (static_cast<uint8_t>(s[start]) & 0xc0) == 0x80) {
      --start;
    }
    uint32_t cp = 0;
    const size_t n = decode_utf8(s, start, &cp);
    if (n == 0 || start + n != end || !is_python_space(cp)) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

FinishedText finish_decoded_text(std::string_view decoded) {
  FinishedText out;
  if (decoded.ends_with(kEosText)) {
    decoded.remove_suffix(kEosText.size());
    out.eos_text_found = true;
  }
  out.text = python_strip(decoded);
  return out;
}

int norm_to_pixel(int norm, int size) {
  return static_cast<int>(static_cast<double>(norm) / 999.0 * static_cast<double>(size));
}

Expected<std::vector<std::array<int64_t, 4>>> parse_coord_list(std::string_view s) {
  return CoordParser(s).parse();
}

Grounding parse_grounding(std::string_view text, int width, int height) {
  Grounding g;
  size_t pos = 0;
  while (true) {
    const size_t ref = text.find(kRefOpen, pos);
    if (ref == std::string_view::npos) break;
    const size_t label_begin = ref + kRefOpen.size();
    const size_t det = text.find(kRefCloseDetOpen, label_begin);
    if (det == std::string_view::npos) {
      g.truncation = Truncation::kRef;
      g.truncated_at = ref;
      break;
    }
    const size_t coords_begin = det + kRefCloseDetOpen.size();
    const size_t close = text.find(kDetClose, coords_begin);
    if (close == std::string_view::npos) {
      g.truncation = Truncation::kDet;
      g.truncated_at = ref;
      break;
    }
    Block b;
    b.begin = ref;
    b.end = close + kDetClose.size();
    b.label = std::string(text.substr(label_begin, det - label_begin));
    b.image_match = text.substr(b.begin, b.end - b.begin).find(kImageRef) != std::string_view::npos;
    auto coords = parse_coord_list(text.substr(coords_begin, close - coords_begin));
    if (coords.ok()) {
      b.boxes.reserve(coords->size());
      for (const auto& raw : *coords) b.boxes.push_back(make_box(raw, width, height));
    } else {
      b.coords_valid = false;
      b.coords_error = coords.message();
    }
    g.blocks.push_back(std::move(b));
    pos = g.blocks.back().end;
  }
  const size_t tail_end = text_end(text, g);
  for (size_t i = 0; i < g.blocks.size(); ++i) {
    const size_t from = g.blocks[i].end;
    const size_t to = i + 1 < g.blocks.size() ? g.blocks[i + 1].begin : tail_end;
    g.blocks[i].text = python_strip(fix_latex(text.substr(from, to - from)));
  }
  const size_t first = g.blocks.empty() ? tail_end : g.blocks.front().begin;
  g.preamble = python_strip(fix_latex(text.substr(0, first)));
  return g;
}

std::string to_markdown(std::string_view text, const Grounding& g, const MarkdownOptions& options) {
  std::string out(text);
  int image_idx = 0;
  for (const Block& b : g.blocks) {
    if (!b.image_match) continue;
    const std::string link =
        "![](images/" + options.image_prefix + std::to_string(image_idx) + ".jpg)\n";
    out = replace_all(out, text.substr(b.begin, b.end - b.begin), link);
    ++image_idx;
  }
  for (const Block& b : g.blocks) {
    if (b.image_match) continue;
    out = fix_latex(replace_all(out, text.substr(b.begin, b.end - b.begin), ""));
    if (options.collapse_newlines) {
      out = replace_all(replace_all(out, "\n\n\n\n", "\n\n"), "\n\n\n", "\n\n");
    }
  }
  return out;
}

std::string to_plain_text(std::string_view text, const Grounding& g) {
  std::string kept;
  kept.reserve(text.size());
  size_t pos = 0;
  for (const Block& b : g.blocks) {
    kept.append(text.substr(pos, b.begin - pos));
    pos = b.end;
  }
  kept.append(text.substr(pos, text_end(text, g) - pos));
  for (std::string_view tag : {"<|grounding|>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>"}) {
    kept = replace_all(kept, tag, "");
  }
  kept = fix_latex(kept);
  std::string out;
  out.reserve(kept.size());
  size_t newlines = 0;
  for (char c : kept) {
    newlines = c == '\n' ? newlines + 1 : 0;
    if (newlines <= 2) out.push_back(c);
  }
  return python_strip(out);
}

std::vector<Crop> plan_crops(const Grounding& g, int width, int height,
                             std::string_view image_prefix) {
  std::vector<Crop> crops;
  int idx = 0;
  for (size_t bi = 0; bi < g.blocks.size(); ++bi) {
    const Block& b = g.blocks[bi];
    if (b.label != "image" || !b.coords_valid) continue;
    for (size_t k = 0; k < b.boxes.size(); ++k) {
      const auto& px = b.boxes[k].px;
      Crop c;
      c.block = bi;
      c.box = k;
      c.index = idx++;
      c.file = "images/" + std::string(image_prefix) + std::to_string(c.index) + ".jpg";
      c.rect = {std::clamp(px[0], 0, width), std::clamp(px[1], 0, height),
                std::clamp(px[2], 0, width), std::clamp(px[3], 0, height)};
      c.skipped = c.rect[2] <= c.rect[0] || c.rect[3] <= c.rect[1];
      crops.push_back(std::move(c));
    }
  }
  return crops;
}

Status write_crops(const Image& image, const std::vector<Crop>& crops, const std::string& out_dir) {
  if (crops.empty()) return Status::Ok();
  const std::filesystem::path images_dir = std::filesystem::path(out_dir) / "images";
  std::error_code ec;
  std::filesystem::create_directories(images_dir, ec);
  if (ec) {
    return Status::Error(
        strfmt("%s: cannot create the directory: %s", images_dir.c_str(), ec.message().c_str()));
  }
  std::vector<uint8_t> buf;
  for (const Crop& c : crops) {
    if (c.skipped) continue;
    const int x1 = std::clamp(c.rect[0], 0, image.width);
    const int y1 = std::clamp(c.rect[1], 0, image.height);
    const int w = std::clamp(c.rect[2], 0, image.width) - x1;
    const int h = std::clamp(c.rect[3], 0, image.height) - y1;
    const std::string path = (std::filesystem::path(out_dir) / c.file).string();
    if (w <= 0 || h <= 0) {
      return Status::Error(strfmt("%s: crop [%d, %d, %d, %d] is outside the %dx%d image",
                                  path.c_str(), c.rect[0], c.rect[1], c.rect[2], c.rect[3],
                                  image.width, image.height));
    }
    buf.resize(static_cast<size_t>(w) * h * 3);
    for (int y = 0; y < h; ++y) {
      const uint8_t* src = image.rgb.data() + (static_cast<size_t>(y1 + y) * image.width + x1) * 3;
      std::copy(src, src + static_cast<size_t>(w) * 3, buf.data() + static_cast<size_t>(y) * w * 3);
    }
    if (stbi_write_jpg(path.c_str(), w, h, 3, buf.data(), 95) == 0) {
      return Status::Error(path + ": cannot write the JPEG crop");
    }
  }
  return Status::Ok();
}

PageResult postprocess_page(std::string_view decoded, int width, int height,
                            std::string_view image_prefix) {
  PageResult page;
  page.raw_text = std::string(decoded);
  FinishedText finished = finish_decoded_text(decoded);
  page.text = std::move(finished.text);
  page.eos_text_found = finished.eos_text_found;
  page.grounding = parse_grounding(page.text, width, height);
  page.crops = plan_crops(page.grounding, width, height, image_prefix);
  page.image_prefix = std::string(image_prefix);
  return page;
}

std::string page_json(const PageMeta& meta, const PageResult& page) {
  using Json = nlohmann::ordered_json;
  // Crop file of each (block, box), for the blocks' box entries.
  std::vector<std::vector<const Crop*>> crop_of(page.grounding.blocks.size());
  for (size_t i = 0; i < page.grounding.blocks.size(); ++i) {
    crop_of[i].assign(page.grounding.blocks[i].boxes.size(), nullptr);
  }
  for (const Crop& c : page.crops) {
    if (c.block < crop_of.size() && c.box < crop_of[c.block].size()) crop_of[c.block][c.box] = &c;
  }

  Json j;
  j["name"] = meta.name;
  j["page"] = {{"width", meta.width}, {"height", meta.height}};
  j["mode"] = meta.mode;
  j["prompt"] = meta.prompt;
  j["tokens"] = {{"prompt", meta.prompt_tokens},
                 {"image", meta.image_tokens},
                 {"generated", meta.generated_tokens}};
  j["eos_reached"] = meta.eos_reached;
  Json timings = Json::object();
  for (const auto& [stage, ms] : meta.timings_ms) timings[stage] = ms;
  j["timings_ms"] = std::move(timings);
  const Grounding& g = page.grounding;
  if (g.truncation == Truncation::kNone) {
    j["truncated"] = nullptr;
  } else {
    j["truncated"] = {{"kind", g.truncation == Truncation::kRef ? "ref" : "det"},
                      {"offset", g.truncated_at},
                      {"text", page.text.substr(g.truncated_at)}};
  }
  j["preamble"] = g.preamble;
  Json blocks = Json::array();
  for (size_t i = 0; i < g.blocks.size(); ++i) {
    const Block& b = g.blocks[i];
    Json jb;
    jb["label"] = b.label;
    jb["image_match"] = b.image_match;
    jb["text"] = b.text;
    jb["coords_valid"] = b.coords_valid;
    if (!b.coords_valid) jb["coords_error"] = b.coords_error;
    Json boxes = Json::array();
    for (size_t k = 0; k < b.boxes.size(); ++k) {
      const Box& box = b.boxes[k];
      Json jx;
      jx["px"] = box.px;
      jx["norm"] = box.norm;
      jx["clamped"] = box.clamped;
      jx["swapped"] = box.swapped;
      if (const Crop* c = crop_of[i][k]) {
        jx["crop"] = c->skipped ? Json(nullptr) : Json(c->file);
      }
      boxes.push_back(std::move(jx));
    }
    jb["boxes"] = std::move(boxes);
    blocks.push_back(std::move(jb));
  }
  j["blocks"] = std::move(blocks);
  j["raw_text"] = page.raw_text;
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

Status write_file(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Status::Error(path + ": cannot open for writing");
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) return Status::Error(path + ": write failed (disk full?)");
  return Status::Ok();
}

Status write_page_outputs(const std::string& out_dir, const Image& image, const PageMeta& meta,
                          const PageResult& page, const PageOutputOptions& options) {
  const std::filesystem::path dir(out_dir);
  if (options.write_markdown) {
    MarkdownOptions md = options.markdown;
    md.image_prefix = page.image_prefix;
    DSOCR_TRY(write_file((dir / (meta.name + ".mmd")).string(),
                         to_markdown(page.text, page.grounding, md)));
  }
  if (options.write_json) {
    DSOCR_TRY(write_file((dir / (meta.name + ".json")).string(), page_json(meta, page)));
  }
  if (options.write_crop_files) DSOCR_TRY(write_crops(image, page.crops, out_dir));
  if (options.write_overlay) {
    DSOCR_TRY(write_png(render_overlay(image, page.grounding),
                        (dir / (meta.name + "_boxes.png")).string()));
  }
  return Status::Ok();
}

}  // namespace dsocr
