// dsocr-run: open a DeepSeek-OCR checkpoint, plan GPU memory, load the weights (and, as the runtime
// grows, run pages). Every error is one line on stderr, "dsocr-run: <what>; <what to do>", with
// exit code 2 for usage errors and 1 for everything else.
//
// The options live in RunOptions and are parsed from a table of Flag entries: adding an option is
// one field and one table row, and --help is generated from the same table, so it lists exactly
// what works.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "loader/config.h"
#include "loader/image.h"
#include "loader/safetensors.h"
#include "loader/schema.h"
#include "runtime/batch.h"
#include "runtime/cuda_check.h"
#include "runtime/engine.h"
#include "runtime/golden.h"
#include "runtime/planner.h"
#include "runtime/pool.h"
#include "runtime/postprocess.h"
#include "runtime/preprocess.h"
#include "runtime/quant_policy.h"
#include "runtime/weights.h"

namespace dsocr {
namespace {

constexpr const char* kTool = "dsocr-run";

enum class Device { kCuda, kCpu };

struct RunOptions {
  std::string model;              // --model DIR; default $DSOCR_MODEL
  bool inspect = false;           // --inspect
  Mode mode = Mode::kGundam;      // --mode
  int max_tokens = 0;             // --max-tokens; 0: fill the context (8192 minus the prompt)
  uint64_t gpu_mem = 0;           // --gpu-mem; 0: the GPU's free memory
  std::string gpu_mem_text;       // as written, for messages
  Device device = Device::kCuda;  // --device
  // Weight formats: --quant, then the overrides and --quant-group (in any order), resolved into
  // `quant` after parsing.
  QuantFlags quant_flags;
  QuantPolicy quant;
  int verbose = 0;                // -v, -vv
  bool help = false;              // -h, --help
  // Pages.
  struct ImageArg {
    std::string value;
    bool list = false;  // --images-from FILE (else --image PATH|DIR)
  };
  std::vector<ImageArg> image_args;  // --image, --images-from (repeatable, in order)
  std::vector<std::string> images;   // the image files, expanded from image_args
  std::string task = "markdown";    // --task
  std::string prompt;               // --prompt (overrides --task)
  std::string ref;                  // --ref (task locate)
  int max_crops = kMaxCropsHF;      // --max-crops
  int ngram = 20;                   // --ngram (0: off)
  std::string out_dir;              // --out DIR: <name>.mmd, .json, _boxes.png, images/
  std::string format = "text";      // --format text|md|json (stdout)
  // The golden interface (../shared/golden/README.md).
  bool golden = false;                // set by --prompt-ids
  std::vector<int32_t> prompt_ids;    // --prompt-ids
  std::vector<int32_t> teacher_force; // --teacher-force
  std::string dump;                   // --dump OUT.safetensors
  std::string pixels_from_golden;     // --pixels-from-golden CASE.safetensors
};

// A usage error (exit 2) or a runtime error (exit 1), carrying the one-line message (empty when
// the lines printed already say what failed).
struct Failure {
  int code;
  std::string message;
};

struct Flag {
  const char* names;  // "--mode" or "-v" or "-h, --help"
  const char* value;  // value placeholder, or nullptr for a switch
  const char* help;
  std::function<Status(RunOptions&, std::string_view)> apply;
};

Status parse_int(std::string_view flag, std::string_view text, int* out) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != text.npos)
    return Status::Error(strfmt("%.*s '%.*s' is not a positive whole number",
                                static_cast<int>(flag.size()), flag.data(),
                                static_cast<int>(text.size()), text.data()));
  *out = std::atoi(std::string(text).c_str());
  return Status::Ok();
}

// "201,128820,16054" -> ids.
Status parse_id_list(std::string_view flag, std::string_view text, std::vector<int32_t>* out) {
  out->clear();
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view one = text.substr(0, comma);
    int id = 0;
    DSOCR_TRY(parse_int(flag, one, &id));
    out->push_back(id);
    if (comma == text.npos) break;
    text.remove_prefix(comma + 1);
  }
  if (out->empty())
    return Status::Error(std::string(flag) + " needs comma-separated token ids, e.g. 201,128820");
  return Status::Ok();
}

// `f` with the --quant flags (shared with dsocr-bench: runtime/quant_policy.h) after --gpu-mem.
std::vector<Flag> with_quant_flags(std::vector<Flag> f) {
  std::vector<Flag> quant;
  for (const QuantFlags::Flag& q : QuantFlags::all())
    quant.push_back({q.name, q.value, q.help, [name = q.name](RunOptions& o, std::string_view v) {
                       return o.quant_flags.take(name, v);
                     }});
  auto at = std::find_if(f.begin(), f.end(),
                         [](const Flag& x) { return std::string_view(x.names) == "--gpu-mem"; });
  f.insert(at + 1, quant.begin(), quant.end());
  return f;
}

const std::vector<Flag>& flags() {
  static const std::vector<Flag> kFlags = with_quant_flags({
      {"--model", "DIR",
       "checkpoint directory (config.json + *.safetensors); default: $DSOCR_MODEL",
       [](RunOptions& o, std::string_view v) {
         o.model = std::string(v);
         return Status::Ok();
       }},
      {"--inspect", nullptr,
       "validate the checkpoint, print its files, tensors, bytes per class and the memory plan",
       [](RunOptions& o, std::string_view) {
         o.inspect = true;
         return Status::Ok();
       }},
      {"--mode", "MODE", "tiny|small|base|large|gundam (default gundam): sizes the memory plan",
       [](RunOptions& o, std::string_view v) -> Status {
         Expected<Mode> m = parse_mode(v);
         if (!m.ok()) return m.status();
         o.mode = *m;
         return Status::Ok();
       }},
      {"--max-tokens", "N",
       "most new tokens per page, 1..8192 minus the mode's prompt (default: all of that)",
       [](RunOptions& o, std::string_view v) {
         DSOCR_TRY(parse_int("--max-tokens", v, &o.max_tokens));
         if (o.max_tokens < 1) return Status::Error("--max-tokens must be at least 1");
         return Status::Ok();
       }},
      {"--gpu-mem", "SIZE",
       "GPU memory budget, e.g. 6G, 2500M, 1.5GB (default: the GPU's free memory); below the "
       "all-resident plan the embedding and routed experts go to host memory, below the minimum "
       "(--inspect prints it) it is refused",
       [](RunOptions& o, std::string_view v) -> Status {
         Expected<uint64_t> s = parse_size(v);
         if (!s.ok()) return Status::Error("--gpu-mem: " + s.message());
         o.gpu_mem = *s;
         o.gpu_mem_text = std::string(v);
         return Status::Ok();
       }},
      {"--device", "cuda|cpu",
       "where to run (default cuda); cpu: the float32 reference backend (pages, golden, inspect)",
       [](RunOptions& o, std::string_view v) {
         if (v == "cuda") {
           o.device = Device::kCuda;
         } else if (v == "cpu") {
           o.device = Device::kCpu;
         } else {
           return Status::Error(strfmt("--device '%.*s' unknown; use cuda or cpu",
                                       static_cast<int>(v.size()), v.data()));
         }
         return Status::Ok();
       }},
      {"--image", "PATH",
       "image to OCR (PNG, JPEG, BMP, TGA, PNM), or a directory of them (sorted by name, not "
       "recursive); repeat for several; text goes to stdout",
       [](RunOptions& o, std::string_view v) {
         o.image_args.push_back({std::string(v), false});
         return Status::Ok();
       }},
      {"--images-from", "FILE",
       "OCR the images listed in FILE: one path per line (relative to FILE's directory), "
       "blank lines and # comments skipped; repeatable",
       [](RunOptions& o, std::string_view v) {
         o.image_args.push_back({std::string(v), true});
         return Status::Ok();
       }},
      {"--task", "TASK",
       "markdown (default: layout + grounding boxes), ocr (plain text), figure, describe, locate",
       [](RunOptions& o, std::string_view v) -> Status {
         DSOCR_TRY(parse_task(v).status());
         o.task = std::string(v);
         return Status::Ok();
       }},
      {"--ref", "TEXT", "the phrase to find with --task locate",
       [](RunOptions& o, std::string_view v) {
         o.ref = std::string(v);
         return Status::Ok();
       }},
      {"--prompt", "TEXT", "a raw prompt with one <image> placeholder (overrides --task)",
       [](RunOptions& o, std::string_view v) {
         o.prompt = std::string(v);
         return Status::Ok();
       }},
      {"--out", "DIR",
       "write <name>.mmd, <name>.json, <name>_boxes.png and images/ (figure crops) per image",
       [](RunOptions& o, std::string_view v) {
         o.out_dir = std::string(v);
         return Status::Ok();
       }},
      {"--format", "F",
       "stdout: text (streamed as generated, default), md (markdown) or json, per image",
       [](RunOptions& o, std::string_view v) {
         if (v != "text" && v != "md" && v != "json")
           return Status::Error(strfmt("--format '%.*s' unknown; use text, md or json",
                                       static_cast<int>(v.size()), v.data()));
         o.format = std::string(v);
         return Status::Ok();
       }},
      {"--max-crops", "N", "Gundam mode: at most N tiles, 2..9 (default 9, as the HF code)",
       [](RunOptions& o, std::string_view v) {
         DSOCR_TRY(parse_int("--max-crops", v, &o.max_crops));
         if (o.max_crops < kMinCrops || o.max_crops > kMaxCropsHF)
           return Status::Error(strfmt("--max-crops %d is outside 2..9", o.max_crops));
         return Status::Ok();
       }},
      {"--ngram", "N", "no-repeat n-gram size over prompt + output (default 20 as HF; 0: off)",
       [](RunOptions& o, std::string_view v) {
         if (v == "0") return o.ngram = 0, Status::Ok();
         return parse_int("--ngram", v, &o.ngram);
       }},
      {"--prompt-ids", "IDS",
       "golden interface: BOS + image tokens + these text ids (comma-separated); needs --dump",
       [](RunOptions& o, std::string_view v) {
         o.golden = true;
         return parse_id_list("--prompt-ids", v, &o.prompt_ids);
       }},
      {"--teacher-force", "IDS", "golden interface: top-64 logits teacher-forced on these ids",
       [](RunOptions& o, std::string_view v) {
         return parse_id_list("--teacher-force", v, &o.teacher_force);
       }},
      {"--dump", "FILE", "golden interface: write the golden tensors to FILE (safetensors)",
       [](RunOptions& o, std::string_view v) {
         o.dump = std::string(v);
         return Status::Ok();
       }},
      {"--pixels-from-golden", "CASE",
       "golden interface: take global_u8/crops_u8 from a golden CASE.safetensors, not --image",
       [](RunOptions& o, std::string_view v) {
         o.pixels_from_golden = std::string(v);
         return Status::Ok();
       }},
      {"-v", nullptr, "verbose: stage timings (-vv: more)",
       [](RunOptions& o, std::string_view) {
         ++o.verbose;
         return Status::Ok();
       }},
      {"-h, --help", nullptr, "print this help and exit",
       [](RunOptions& o, std::string_view) {
         o.help = true;
         return Status::Ok();
       }},
  });
  return kFlags;
}

std::string usage() {
  std::string s = strfmt(
      "usage: %s --model DIR [--image PATH ...] [options]\n"
      "OCR images with DeepSeek-OCR (text to stdout), or inspect a checkpoint and its memory plan.\n"
      "  pages:   --image PATH [--task T | --prompt TEXT] --device cpu   (the CUDA path is being\n"
      "           built: without --image, --device cuda plans, loads the weights and exits)\n"
      "  many:    --image DIR and --images-from FILE add images; equal output names get _2, _3;\n"
      "           a failed image is reported and skipped (exit status 1)\n"
      "  golden:  --image PATH | --pixels-from-golden CASE, --prompt-ids IDS --dump FILE\n\n"
      "options:\n",
      kTool);
  for (const Flag& f : flags()) {
    std::string left = f.names;
    if (f.value) left += std::string(" ") + f.value;
    s += strfmt("  %-20s %s\n", left.c_str(), f.help);
  }
  s += "\nexit status: 0 ok, 1 runtime error or an image failed, 2 usage error\n";
  return s;
}

const Flag* find_flag(std::string_view name) {
  for (const Flag& f : flags()) {
    std::string_view names = f.names;
    while (!names.empty()) {
      size_t comma = names.find(", ");
      std::string_view one = names.substr(0, comma);
      if (one == name) return &f;
      if (comma == names.npos) break;
      names.remove_prefix(comma + 2);
    }
  }
  return nullptr;
}

Expected<RunOptions> parse_args(int argc, char** argv) {
  RunOptions o;
  if (const char* env = std::getenv("DSOCR_MODEL")) o.model = env;
  const std::string see = std::string("; see ") + kTool + " --help";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-vv") arg = "-v", ++o.verbose;  // -vv = -v -v
    std::string_view name = arg, value;
    bool inline_value = false;
    if (arg.starts_with("--")) {
      size_t eq = arg.find('=');
      if (eq != arg.npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        inline_value = true;
      }
    }
    if (!arg.starts_with("-") || arg == "-")
      return Status::Error(strfmt("unexpected argument '%.*s' (options start with --)%s",
                                  static_cast<int>(arg.size()), arg.data(), see.c_str()));
    const Flag* f = find_flag(name);
    if (!f)
      return Status::Error(strfmt("unknown option '%.*s'%s", static_cast<int>(name.size()),
                                  name.data(), see.c_str()));
    if (f->value && !inline_value) {
      if (i + 1 >= argc)
        return Status::Error(strfmt("%.*s needs a value (%s)%s", static_cast<int>(name.size()),
                                    name.data(), f->value, see.c_str()));
      value = argv[++i];
    } else if (!f->value && inline_value) {
      return Status::Error(
          strfmt("%.*s takes no value%s", static_cast<int>(name.size()), name.data(), see.c_str()));
    }
    Status s = f->apply(o, value);
    if (!s.ok()) return Status::Error(s.message() + see);
  }
  // Every value was checked by its flag; the policy is the --quant table with the overrides on top.
  o.quant = o.quant_flags.resolve();
  return o;
}

// --image DIR and --images-from FILE -> o.images, in the order given.
Status expand_image_args(RunOptions& o) {
  for (const RunOptions::ImageArg& a : o.image_args) {
    DSOCR_ASSIGN_OR_RETURN(std::vector<std::string> paths,
                           a.list ? read_image_list(a.value) : expand_image_arg(a.value));
    o.images.insert(o.images.end(), paths.begin(), paths.end());
  }
  return Status::Ok();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The golden recipe (CPU backend, or the GPU decoder with --device cuda), tensors to --dump.
Status run_golden_interface(const RunOptions& o) {
  GoldenOptions g;
  g.model_dir = o.model;
  g.image_path = o.images.empty() ? "" : o.images[0];
  g.pixels_from_golden = o.pixels_from_golden;
  g.mode = mode_spec(o.mode).name;
  g.max_crops = o.max_crops;
  g.prompt_ids = o.prompt_ids;
  g.max_tokens = o.max_tokens > 0 ? o.max_tokens : 32;
  g.ngram = o.ngram;
  g.quant = o.quant;
  g.cuda = o.device == Device::kCuda;
  g.teacher_force = o.teacher_force;
  auto log = [&](const std::string& line) {
    if (o.verbose >= 1) std::fprintf(stderr, "%s: %s\n", kTool, line.c_str());
  };
  DSOCR_ASSIGN_OR_RETURN(TensorDump dump, run_golden(g, log));
  DSOCR_TRY(write_tensor_dump(o.dump, dump, {{"producer", g.cuda ? "dsocr-run --device cuda" : "dsocr-run --device cpu"}}));
  if (o.verbose >= 1) std::fprintf(stderr, "%s: wrote %s\n", kTool, o.dump.c_str());
  return Status::Ok();
}

// The one-line progress bar on stderr (only on a terminal): drawn before each image, erased
// before anything else is printed to the terminal.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled)
      : enabled_(enabled), stdout_tty_(enabled && ::isatty(STDOUT_FILENO)) {}
  void show(const std::string& line) {
    if (!enabled_) return;
    std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void clear() {
    if (!shown_) return;
    std::fputs("\r\x1b[K", stderr);
    std::fflush(stderr);
    shown_ = false;
  }
  // Text is about to go to stdout: erase the bar if stdout is the same terminal.
  void before_stdout() {
    if (stdout_tty_) clear();
  }

 private:
  bool enabled_, stdout_tty_, shown_ = false;
};

// OCR every image; a failed image is reported and skipped, the exit code says whether any
// failed. With several images: a progress bar (on a terminal), a summary line per image and one
// for the batch on stderr; the outputs are named uniquely (unique_output_names) and their figure
// crops get the name as prefix (images/<name>_<i>.jpg) so that pages do not overwrite each other.
Status run_pages(const RunOptions& o, Failure* failure) {
  using Clock = std::chrono::steady_clock;
  std::string prompt = o.prompt;
  if (prompt.empty()) {
    DSOCR_ASSIGN_OR_RETURN(Task task, parse_task(o.task));
    DSOCR_ASSIGN_OR_RETURN(prompt, task_prompt(task, o.ref));
  }
  EngineOptions eo;
  eo.model_dir = o.model;
  eo.mode = o.mode;
  eo.max_crops = o.max_crops;
  eo.max_tokens = o.max_tokens > 0 ? o.max_tokens : 8192;
  eo.ngram = o.ngram;
  eo.cuda = o.device == Device::kCuda;
  eo.gpu_mem = o.gpu_mem;
  eo.quant = o.quant;
  if (!o.out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.out_dir, ec);
    if (ec || !std::filesystem::is_directory(o.out_dir))
      return Status::Error(o.out_dir + ": cannot create the output directory (" + ec.message() +
                           "); choose another --out");
  }
  DSOCR_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::open(eo));
  const bool stream = o.format == "text";
  const bool several = o.images.size() > 1;
  const std::vector<std::string> names = unique_output_names(o.images);
  const char* mode_name = mode_spec(o.mode).name;
  ProgressBar bar(several && ::isatty(STDERR_FILENO));
  BatchTotals totals;
  totals.images = static_cast<int>(o.images.size());
  const auto t_batch = Clock::now();
  for (size_t i = 0; i < o.images.size(); ++i) {
    const std::string& path = o.images[i];
    const std::string file = std::filesystem::path(path).filename().string();
    bar.show(progress_line(static_cast<int>(i), totals.images, static_cast<int>(i),
                           seconds_since(t_batch), file));
    auto fail = [&](const std::string& why) {
      bar.clear();
      totals.failed.push_back(file);
      // Image errors already name the file; engine errors do not.
      if (why.find(path) == std::string::npos)
        std::fprintf(stderr, "%s: %s: %s; skipped\n", kTool, path.c_str(), why.c_str());
      else
        std::fprintf(stderr, "%s: %s; skipped\n", kTool, why.c_str());
    };
    auto print_text = [&](std::string_view piece) {
      if (!stream) return true;
      bar.before_stdout();
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
    Expected<Image> img = load_image(path);
    Expected<PageOutput> page =
        img.ok() ? engine->run(*img, prompt, print_text) : Expected<PageOutput>(img.status());
    if (!page.ok()) {
      fail(page.message());
      continue;
    }
    // Grounding boxes, markdown, JSON, crops and the overlay (../shared/MODEL.md §8).
    const PageResult post = postprocess_page(page->raw_text, page->image_w, page->image_h,
                                             several ? names[i] + "_" : "");
    PageMeta meta;
    meta.name = names[i];
    meta.width = page->image_w;
    meta.height = page->image_h;
    meta.mode = mode_name;
    meta.prompt = prompt;
    meta.prompt_tokens = page->prompt_tokens;
    meta.image_tokens = page->image_tokens;
    meta.generated_tokens = static_cast<int64_t>(page->ids.size());
    meta.eos_reached = page->eos;
    for (const auto& [stage, ms] : page->ms) meta.timings_ms.emplace_back(stage, ms);
    bar.before_stdout();
    if (o.format == "text") {
      std::fputc('\n', stdout);
    } else if (o.format == "md") {
      MarkdownOptions md;
      md.image_prefix = post.image_prefix;
      std::string text = to_markdown(post.text, post.grounding, md);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fputc('\n', stdout);
    } else {
      std::string js = page_json(meta, post);
      std::fwrite(js.data(), 1, js.size(), stdout);
      std::fputc('\n', stdout);
    }
    std::fflush(stdout);
    if (!o.out_dir.empty()) {
      Status w = write_page_outputs(o.out_dir, *img, meta, post);
      if (!w.ok()) {
        fail(w.message());
        continue;
      }
    }
    totals.tokens += static_cast<int64_t>(page->ids.size());
    if (several || o.verbose >= 1) {
      bar.clear();
      std::fprintf(stderr, "%s\n", page_summary(file, mode_name, *page).c_str());
    }
  }
  totals.seconds = seconds_since(t_batch);
  bar.clear();
  if (several) std::fprintf(stderr, "%s\n", batch_summary(totals).c_str());
  // The lines above say which images failed; the exit code says that some did.
  if (!totals.failed.empty()) *failure = {1, ""};
  return Status::Ok();
}

Status run(const RunOptions& o, Failure* usage_failure) {
  using Clock = std::chrono::steady_clock;
  auto say = [&](int level, const std::string& s) {
    if (o.verbose >= level) std::fprintf(stderr, "%s: %s\n", kTool, s.c_str());
  };
  if (o.model.empty()) {
    *usage_failure = {2, "no model given; pass --model DIR or set DSOCR_MODEL"};
    return Status::Ok();
  }
  // Never run BF16 kernels on a request for quantized weights: what has no quantized kernels
  // (the CPU backend, the GPU encoder) is refused.
  if (!o.quant.all_bf16() && !o.inspect) {
    std::string why;
    if (o.device == Device::kCpu)
      why = "): the CPU backend runs BF16 weights only; use --device cuda, or drop the --quant flags";
    else if (o.quant.of(TensorClass::kSam) != WeightFormat::kBf16 ||
             o.quant.of(TensorClass::kClip) != WeightFormat::kBf16 ||
             o.quant.of(TensorClass::kProjector) != WeightFormat::kBf16)
      why = "): the GPU encoder has no quantized kernels yet; use --quant-vision bf16 (or add "
            "--inspect to see the memory plan)";
    if (!why.empty()) {
      *usage_failure = {2, "quantized weights (" + o.quant.describe() + why};
      return Status::Ok();
    }
  }
  if (o.golden || !o.dump.empty() || !o.pixels_from_golden.empty() || !o.teacher_force.empty()) {
    std::string why;
    if (!o.golden) why = "--dump, --teacher-force and --pixels-from-golden need --prompt-ids; add the prompt's text ids";
    else if (o.dump.empty()) why = "--prompt-ids needs somewhere to write the tensors; add --dump FILE";
    else if (o.images.size() + !o.pixels_from_golden.empty() != 1)
      why = "the golden interface takes exactly one --image or --pixels-from-golden; pass one of them";
    if (!why.empty()) {
      *usage_failure = {2, why};
      return Status::Ok();
    }
    return run_golden_interface(o);
  }
  if (!o.images.empty() && !o.inspect) {
    if (o.device == Device::kCuda) {
      Status gpu = cuda_device_available();
      if (!gpu.ok())
        return Status::Error("no GPU for --device cuda: " + gpu.message() +
                             "; run on a machine with an NVIDIA GPU, or add --device cpu");
    }
    return run_pages(o, usage_failure);
  }
  if (o.device == Device::kCpu && !o.inspect) {
    *usage_failure = {2, "nothing to do with --device cpu; give --image PATH (pages) or --inspect"};
    return Status::Ok();
  }
  const ModelConfig defaults;
  const int room = defaults.max_pos - max_prompt_tokens(o.mode);
  if (o.max_tokens > room) {
    *usage_failure = {2, strfmt("--max-tokens %d is too many for --mode %s: at most %d (%d "
                                "positions minus a prompt of up to %d tokens); lower --max-tokens",
                                o.max_tokens, mode_spec(o.mode).name, room, defaults.max_pos,
                                max_prompt_tokens(o.mode))};
    return Status::Ok();
  }

  // Open and validate.
  auto t0 = Clock::now();
  const std::string config_path = (std::filesystem::path(o.model) / "config.json").string();
  std::error_code ec;
  if (!std::filesystem::is_directory(o.model, ec))
    return Status::Error(o.model +
                         ": no such directory; --model must name a DeepSeek-OCR "
                         "checkpoint directory");
  if (!std::filesystem::exists(config_path, ec))
    return Status::Error(config_path +
                         ": not found; --model must name a DeepSeek-OCR "
                         "checkpoint directory (config.json + *.safetensors)");
  DSOCR_ASSIGN_OR_RETURN(ModelConfig cfg, load_config(config_path));
  DSOCR_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::open_dir(o.model));
  const std::vector<TensorSpec> schema = checkpoint_schema(cfg);
  DSOCR_TRY(validate_checkpoint(ckpt, schema));
  DSOCR_ASSIGN_OR_RETURN(std::vector<WeightEntry> entries, weight_entries(ckpt, schema));
  say(1, strfmt("opened and validated %s in %.3f s", o.model.c_str(), seconds_since(t0)));

  // Plan.
  if (o.device == Device::kCuda) {
    Status gpu = cuda_device_available();
    if (!gpu.ok())
      return Status::Error("no GPU for --device cuda: " + gpu.message() +
                           "; run on a machine with an NVIDIA GPU, or use --device cpu --inspect");
  }
  PlanOptions po;
  po.mode = o.mode;
  po.max_new_tokens = o.max_tokens;
  po.gpu_mem = o.gpu_mem;
  po.device = o.device == Device::kCuda ? 0 : -1;
  po.quant = o.quant;
  po.budget_name = "--gpu-mem " + o.gpu_mem_text;
  po.fix = "raise --gpu-mem, lower --max-tokens or use a smaller --mode";
  t0 = Clock::now();
  DSOCR_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory(cfg, entries, po));
  say(1, strfmt("planned %s in %.3f s", format_bytes(plan.total).c_str(), seconds_since(t0)));

  if (o.inspect) {
    std::printf("checkpoint %s\n", o.model.c_str());
    for (const SafetensorsFile& f : ckpt.files())
      std::printf("  file %s  %s (%llu bytes), %zu tensors\n", f.path().c_str(),
                  format_bytes(f.file_size()).c_str(),
                  static_cast<unsigned long long>(f.file_size()), f.tensors().size());
    std::printf(
        "  %zu tensors, %s of tensor data (%llu bytes), valid against the DeepSeek-OCR "
        "schema\n",
        ckpt.tensors().size(), format_bytes(ckpt.total_bytes()).c_str(),
        static_cast<unsigned long long>(ckpt.total_bytes()));
    // Per class: the checkpoint's BF16 bytes, and the bytes as stored under --quant (values +
    // scales, before the plan's 256-byte slot alignment).
    struct ClassRow {
      int count = 0;
      uint64_t bf16 = 0, stored = 0;
      std::string formats;
    };
    std::map<int, ClassRow> per_class;
    ClassRow all;
    for (size_t i = 0; i < entries.size(); ++i) {
      const TensorSlot& slot = plan.tensors[i];
      ClassRow& row = per_class[static_cast<int>(entries[i].cls)];
      for (ClassRow* r : {&row, &all}) {
        ++r->count;
        r->bf16 += entries[i].nbytes;
        r->stored += slot.nbytes;
      }
      const std::string f = stored_format_name(slot.stored);
      if (row.formats.find(f) == std::string::npos)
        row.formats += (row.formats.empty() ? "" : "+") + f;
    }
    std::printf("  %-16s %8s %10s %14s   %-14s %10s %14s\n", "class", "tensors", "bf16", "bytes",
                "stored as", "stored", "bytes");
    auto print_row = [](const char* name, const ClassRow& r) {
      std::printf("  %-16s %8d %10s %14llu   %-14s %10s %14llu\n", name, r.count,
                  format_bytes(r.bf16).c_str(), static_cast<unsigned long long>(r.bf16),
                  r.formats.c_str(), format_bytes(r.stored).c_str(),
                  static_cast<unsigned long long>(r.stored));
    };
    for (const auto& [c, row] : per_class)
      print_row(tensor_class_name(static_cast<TensorClass>(c)), row);
    print_row("all", all);
    std::printf("%s", plan.describe().c_str());
    return Status::Ok();
  }

  // Load.
  t0 = Clock::now();
  PoolOptions pool_options;
  pool_options.device = 0;
  DSOCR_ASSIGN_OR_RETURN(DevicePool pool, DevicePool::create(plan, pool_options));
  say(1, strfmt("allocated the %s device pool in %.3f s", format_bytes(pool.size()).c_str(),
                seconds_since(t0)));
  UploadStats st;
  DSOCR_ASSIGN_OR_RETURN(WeightTable table, upload_weights(ckpt, pool, UploadOptions{}, &st));
  say(1, strfmt("loaded %zu tensors, %s in %.3f s: %.2f GB/s (%s, %d chunks, read %.3f s, "
                "waited %.3f s for staging buffers)",
                table.size(), format_bytes(st.bytes).c_str(), st.seconds, st.gb_per_s(),
                read_method_name(st.method), st.chunks, st.read_seconds, st.wait_seconds));
  return Status::Ok();
}

}  // namespace
}  // namespace dsocr

int main(int argc, char** argv) {
  using namespace dsocr;
  Expected<RunOptions> opts = parse_args(argc, argv);
  if (!opts.ok()) {
    std::fprintf(stderr, "%s: %s\n", kTool, opts.message().c_str());
    return 2;
  }
  if (opts->help) {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  if (Status s = expand_image_args(*opts); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", kTool, s.message().c_str());
    return 2;
  }
  Failure usage_failure{0, ""};
  Status s = run(*opts, &usage_failure);
  if (usage_failure.code != 0) {
    if (!usage_failure.message.empty())
      std::fprintf(stderr, "%s: %s\n", kTool, usage_failure.message.c_str());
    return usage_failure.code;
  }
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", kTool, s.message().c_str());
    return 1;
  }
  return 0;
}
