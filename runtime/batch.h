// Many images in one run: which files (directories, list files), what their outputs are called,
// and the text of the progress bar and of the summary lines. Only text is built here; dsocr-run
// prints it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "loader/status.h"
#include "runtime/engine.h"

namespace dsocr {

// The image files of a directory: regular files (or links to them) whose extension
// has_image_extension accepts, sorted by file name (byte order), not recursive. Each path is
// dir + "/" + name. No such files is an error naming the directory and the extensions.
Expected<std::vector<std::string>> images_in_directory(const std::string& dir);

// One --image argument: a directory expands to images_in_directory, anything else is taken as
// an image file as is (a missing file fails later, when it is run, like any unreadable image).
Expected<std::vector<std::string>> expand_image_arg(const std::string& arg);

// The entries of a list file's text: one path per line; lines are trimmed of ASCII whitespace
// (so CRLF files work); blank lines and lines starting with '#' are skipped; a relative path is
// taken relative to `base_dir` (the list file's directory; "" = as written).
std::vector<std::string> parse_image_list(std::string_view text, const std::string& base_dir);

// --images-from FILE: read the list, then expand each entry like an --image argument.
// Errors name the list file (and the line of a bad entry).
Expected<std::vector<std::string>> read_image_list(const std::string& list_path);

// Output names (the <name> of <name>.mmd, .json, _boxes.png) for the images in order: the file
// stem, and when an earlier image already took it, stem_2, stem_3, ... (skipping names that
// another image takes as its own stem), so no output overwrites another.
std::vector<std::string> unique_output_names(const std::vector<std::string>& paths);

// "850 ms"-style stage time: one decimal below 100 ms, none below 10 s, then seconds "12.3 s".
std::string format_ms(double ms);
// An estimated time left: "45s", "1m12s", "2h05m".
std::string format_eta(double seconds);

// The one-line progress bar shown while image `index` (0-based) of `total` runs, `done` images
// having finished in `elapsed_s`: "[12/40] page_012.png  ██████░░░░ 30%  eta 1m12s". The bar is
// `bar_width` cells; the ETA is "--" until an image has finished. `name` is shortened with a
// leading "…" to at most `name_width` columns.
std::string progress_line(int index, int total, int done, double elapsed_s, std::string_view name,
                          int bar_width = 20, int name_width = 32);

// One page's summary: "page_012.png: gundam 6 tiles, 912 image tokens, 523 tokens, vision
// 4.1 ms, prefill 3.2 ms, decode 212 ms (2467 tok/s), EOS". The end is "EOS", "token limit" or
// "stopped".
std::string page_summary(std::string_view name, std::string_view mode, const PageOutput& page);

struct BatchTotals {
  int images = 0;
  std::vector<std::string> failed;  // names of the images that failed, in order
  int64_t tokens = 0;               // generated tokens over the pages that succeeded
  double seconds = 0;               // wall time of the whole batch
};
// "40 images, 39 ok, 1 failed (page_7.png), 20931 tokens in 12.3 s (1702 tok/s)"; at most
// `max_names` failed names are listed, then "+N more".
std::string batch_summary(const BatchTotals& totals, int max_names = 5);

}  // namespace dsocr
