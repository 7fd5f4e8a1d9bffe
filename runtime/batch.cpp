#include "runtime/batch.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "loader/image.h"

namespace dsocr {

namespace fs = std::filesystem;

Expected<std::vector<std::string>> images_in_directory(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code file_ec;
    if (has_image_extension(name) && it->is_regular_file(file_ec)) names.push_back(name);
  }
  if (ec)
    return Status::Error(dir + ": cannot list the directory (" + ec.message() +
                         "); check the path and its permissions");
  if (names.empty())
    return Status::Error(dir + ": no image files (" + image_extensions_text() +
                         ") in this directory; check the path (subdirectories are not searched)");
  std::sort(names.begin(), names.end());
  std::vector<std::string> paths;
  const std::string prefix = dir.ends_with('/') ? dir : dir + "/";
  for (const std::string& n : names) paths.push_back(prefix + n);
  return paths;
}

Expected<std::vector<std::string>> expand_image_arg(const std::string& arg) {
  std::error_code ec;
  if (fs::is_directory(arg, ec)) return images_in_directory(arg);
  return std::vector<std::string>{arg};
}

std::vector<std::string> parse_image_list(std::string_view text, const std::string& base_dir) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  std::vector<std::string> paths;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == text.npos ? text.size() : nl + 1);
    const size_t first = line.find_first_not_of(kSpace);
    if (first == line.npos) continue;
    line = line.substr(first, line.find_last_not_of(kSpace) - first + 1);
    if (line.starts_with('#')) continue;
    const fs::path p(line);
    paths.push_back(p.is_relative() && !base_dir.empty() ? (fs::path(base_dir) / p).string()
                                                         : p.string());
  }
  return paths;
}

Expected<std::vector<std::string>> read_image_list(const std::string& list_path) {
  std::error_code ec;
  if (!fs::is_regular_file(list_path, ec))
    return Status::Error(list_path +
                         ": list file not found; --images-from needs a text file "
                         "with one image path per line");
  std::ifstream f(list_path, std::ios::binary);
  std::stringstream text;
  text << f.rdbuf();
  if (!f && !f.eof())
    return Status::Error(list_path + ": cannot read the list file; check its permissions");
  std::vector<std::string> paths;
  for (const std::string& entry :
       parse_image_list(text.str(), fs::path(list_path).parent_path().string())) {
    Expected<std::vector<std::string>> expanded = expand_image_arg(entry);
    if (!expanded.ok()) return Status::Error(list_path + ": " + expanded.message());
    paths.insert(paths.end(), expanded->begin(), expanded->end());
  }
  if (paths.empty())
    return Status::Error(list_path + ": the list names no images; write one image path per line");
  return paths;
}

std::vector<std::string> unique_output_names(const std::vector<std::string>& paths) {
  std::vector<std::string> stems;
  for (const std::string& p : paths) stems.push_back(fs::path(p).stem().string());
  const std::set<std::string> own(stems.begin(), stems.end());
  std::set<std::string> taken;
  std::vector<std::string> names;
  for (const std::string& stem : stems) {
    std::string name = stem;
    for (int k = 2; taken.count(name) || (name != stem && own.count(name)); ++k)
      name = stem + "_" + std::to_string(k);
    taken.insert(name);
    names.push_back(name);
  }
  return names;
}

std::string format_ms(double ms) {
  if (ms < 100) return strfmt("%.1f ms", ms);
  if (ms < 10000) return strfmt("%.0f ms", ms);
  return strfmt("%.1f s", ms / 1000);
}

std::string format_eta(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(std::max(seconds, 0.0)));
  if (s < 60) return strfmt("%llds", static_cast<long long>(s));
  if (s < 3600)
    return strfmt("%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return strfmt("%lldh%02lldm", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60));
}

namespace {

// " (2467 tok/s)", " (3.5 tok/s)"; "" when no time passed.
std::string rate(double tokens, double seconds) {
  if (seconds <= 0) return "";
  const double r = tokens / seconds;
  return strfmt(r >= 100 ? " (%.0f tok/s)" : " (%.1f tok/s)", r);
}

// Number of code points of UTF-8 text (continuation bytes not counted).
size_t utf8_length(std::string_view s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// The last `n` code points of s.
std::string_view utf8_tail(std::string_view s, size_t n) {
  size_t pos = s.size();
  while (n > 0 && pos > 0) {
    --pos;
    if ((s[pos] & 0xC0) != 0x80) --n;
  }
  return s.substr(pos);
}

}  // namespace

std::string progress_line(int index, int total, int done, double elapsed_s, std::string_view name,
                          int bar_width, int name_width) {
  std::string shown(name);
  if (name_width > 1 && utf8_length(name) > static_cast<size_t>(name_width))
    shown = "…" + std::string(utf8_tail(name, static_cast<size_t>(name_width - 1)));
  const int d = std::clamp(done, 0, std::max(total, 0));
  const int full = total > 0 ? d * bar_width / total : 0;
  const int percent = total > 0 ? d * 100 / total : 0;
  std::string bar;
  for (int i = 0; i < bar_width; ++i) bar += i < full ? "█" : "░";
  const std::string eta =
      done > 0 ? format_eta(elapsed_s / done * (total - done)) : std::string("--");
  return strfmt("[%d/%d] %s  %s %d%%  eta %s", index + 1, total, shown.c_str(), bar.c_str(),
                percent, eta.c_str());
}

std::string page_summary(std::string_view name, std::string_view mode, const PageOutput& page) {
  std::string s = std::string(name) + ": " + std::string(mode);
  if (page.tiles > 0) s += strfmt(" %d tiles", page.tiles);
  s += strfmt(", %d image tokens, %zu tokens", page.image_tokens, page.ids.size());
  for (const char* stage : {"vision", "prefill", "decode"}) {
    auto it = page.ms.find(stage);
    if (it == page.ms.end()) continue;
    s += strfmt(", %s %s", stage, format_ms(it->second).c_str());
    if (std::string_view(stage) == "decode")
      s += rate(static_cast<double>(page.ids.size()), it->second / 1000);
  }
  s += page.eos ? ", EOS" : page.stopped ? ", stopped" : ", token limit";
  return s;
}

std::string batch_summary(const BatchTotals& t, int max_names) {
  const int failed = static_cast<int>(t.failed.size());
  std::string s = strfmt("%d image%s, %d ok, %d failed", t.images, t.images == 1 ? "" : "s",
                         t.images - failed, failed);
  if (failed > 0) {
    std::string names;
    for (int i = 0; i < std::min(failed, max_names); ++i)
      names += (i ? ", " : "") + t.failed[static_cast<size_t>(i)];
    if (failed > max_names) names += strfmt(", +%d more", failed - max_names);
    s += " (" + names + ")";
  }
  s += strfmt(", %lld tokens in %.1f s", static_cast<long long>(t.tokens), t.seconds);
  s += rate(static_cast<double>(t.tokens), t.seconds);
  return s;
}

}  // namespace dsocr
