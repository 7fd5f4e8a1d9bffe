// dsocr-synth: write the SYNTH-1 synthetic DeepSeek-OCR checkpoint (config.json +
// model-00001-of-000001.safetensors, 6.67 GB) that the golden data was computed on, plus a
// synthetic tokenizer.json with DeepSeek-OCR's special-token ids (loader/synth_tokenizer.h).
#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "loader/synth.h"
#include "loader/synth_tokenizer.h"

namespace {

constexpr const char* kUsage =
    "usage: dsocr-synth --out DIR [--seed S] [--force] [--quiet]\n"
    "\n"
    "Write the SYNTH-1 synthetic DeepSeek-OCR checkpoint into DIR: config.json and\n"
    "model-00001-of-000001.safetensors (2710 BF16 tensors, 6.67 GB). Every value is a pure\n"
    "function of (seed, tensor name, index); seed 1 is the checkpoint of ../shared/golden.\n"
    "Then write DIR/tokenizer.json: a synthetic byte-level BPE (the real one is not bundled)\n"
    "with the official special-token ids (<image> = 128815, 128827 tokens); the same for\n"
    "every seed. Text ids of ordinary words differ from the real tokenizer's.\n"
    "\n"
    "  --out DIR   output directory (created if needed)\n"
    "  --seed S    unsigned 64-bit seed (default 1)\n"
    "  --force     replace an existing model file in DIR\n"
    "  --quiet     print nothing but errors\n"
    "  --help      this text\n";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "dsocr-synth: %s; see dsocr-synth --help\n", msg.c_str());
  return 2;
}

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, 10);
  return ec == std::errc() && p == s.data() + s.size();
}

// Progress on stderr: one rewritten line on a terminal, otherwise a line per 10 %.
class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet), tty_(::isatty(2) == 1) {}
  void operator()(uint64_t done, uint64_t total) {
    if (quiet_ || total == 0) return;
    const double secs = elapsed();
    const int pct =
        static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total));
    const double mbps = secs > 0 ? static_cast<double>(done) / 1e6 / secs : 0;
    if (tty_) {
      if (done < total && secs - last_print_ < 0.2) return;
      last_print_ = secs;
      std::fprintf(stderr, "\rdsocr-synth: %3d%%  %.2f / %.2f GB  %.0f MB/s ", pct,
                   static_cast<double>(done) / 1e9, static_cast<double>(total) / 1e9, mbps);
      if (done == total) std::fputc('\n', stderr);
    } else {
      if (pct / 10 <= last_decile_) return;
      last_decile_ = pct / 10;
      std::fprintf(stderr, "dsocr-synth: %d%% (%.2f / %.2f GB, %.0f MB/s)\n", pct,
                   static_cast<double>(done) / 1e9, static_cast<double>(total) / 1e9, mbps);
    }
    std::fflush(stderr);
  }
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  const bool quiet_, tty_;
  const std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
  double last_print_ = -1;
  int last_decile_ = 0;
};

// Ctrl-C / kill: remove the partial model file (6.67 GB of reserved disk), then die of the signal.
char g_temp_path[4096];
void on_signal(int sig) {
  ::unlink(g_temp_path);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = dsocr::kSynthDefaultSeed;
  std::string out;
  bool force = false, quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    std::string_view value;
    bool has_value = false;
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    auto take_value = [&](std::string_view* v) {
      if (has_value) {
        *v = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *v = argv[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--seed") {
      std::string_view v;
      if (!take_value(&v)) return usage_error("--seed needs a value");
      if (!parse_u64(v, &seed))
        return usage_error("bad seed '" + std::string(v) +
                           "': expected an unsigned 64-bit decimal integer");
    } else if (a == "--out") {
      std::string_view v;
      if (!take_value(&v) || v.empty()) return usage_error("--out needs a directory");
      out = v;
    } else if ((a == "--force" || a == "--quiet") && !has_value) {
      (a == "--force" ? force : quiet) = true;
    } else {
      return usage_error("unknown argument '" + std::string(argv[i]) + "'");
    }
  }
  if (out.empty()) return usage_error("--out DIR is required");

  const std::string model = (std::filesystem::path(out) / dsocr::kSynthModelFile).string();
  std::error_code ec;
  if (!force && std::filesystem::exists(model, ec)) {
    std::fprintf(stderr, "dsocr-synth: %s already exists; pass --force to overwrite it\n",
                 model.c_str());
    return 1;
  }

  const std::string temp = model + dsocr::kSynthTempSuffix;
  if (temp.size() < sizeof g_temp_path) {
    std::memcpy(g_temp_path, temp.c_str(), temp.size() + 1);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, on_signal);
  }

  Progress progress(quiet);
  uint64_t bytes = 0;
  dsocr::Status s = dsocr::write_synth_checkpoint(out, seed, [&](uint64_t done, uint64_t total) {
    bytes = done;
    progress(done, total);
  });
  if (!s.ok()) {
    std::fprintf(stderr, "dsocr-synth: %s\n", s.message().c_str());
    return 1;
  }
  const double secs = progress.elapsed();
  std::string tokenizer;
  s = dsocr::write_synth_tokenizer(out, &tokenizer);
  if (!s.ok()) {
    std::fprintf(stderr, "dsocr-synth: %s\n", s.message().c_str());
    return 1;
  }
  if (!quiet)
    std::printf("%s: %llu bytes in %.1f s (%.2f GB/s), seed %llu; tokenizer: %s\n", model.c_str(),
                static_cast<unsigned long long>(bytes), secs,
                secs > 0 ? static_cast<double>(bytes) / 1e9 / secs : 0.0,
                static_cast<unsigned long long>(seed), tokenizer.c_str());
  return 0;
}
