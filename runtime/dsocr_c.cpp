// The C API (runtime/dsocr.h) over dsocr::Engine and runtime/postprocess. Every entry point
// catches everything: no C++ exception crosses the C boundary. Messages name the C struct
// fields (dsocr_options.max_crops), not the dsocr-run flags.
#include <algorithm>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "loader/image.h"
#include "runtime/cuda_check.h"
#include "runtime/dsocr.h"
#include "runtime/engine.h"
#include "runtime/postprocess.h"
#include "runtime/quant_policy.h"

struct dsocr_engine {
  std::unique_ptr<dsocr::Engine> engine;
};

namespace {

namespace fs = std::filesystem;
using dsocr::strfmt;

thread_local std::string t_last_error;

dsocr_status fail(dsocr_status code, std::string message) {
  t_last_error = std::move(message);
  return code;
}

dsocr_status succeed() {
  t_last_error.clear();
  return DSOCR_OK;
}

// Runs `body`, turning any exception into a status and a message.
template <class F>
dsocr_status guarded(F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(DSOCR_E_OOM, "out of host memory; close other programs or use a smaller mode");
  } catch (const std::exception& e) {
    return fail(DSOCR_E_INTERNAL,
                std::string("internal error: ") + e.what() + "; please report this message");
  } catch (...) {
    return fail(DSOCR_E_INTERNAL, "internal error: unknown exception; please report it");
  }
}

// Copy a caller's struct that starts with struct_size: the first version is the smallest one
// there is, so anything shorter is an uninitialised struct; a longer one comes from a newer
// header and its extra fields are ignored.
template <class T>
dsocr_status copy_sized(const T* in, T* out, const char* type, const char* fill_with) {
  if (in->struct_size < sizeof(T))
    return fail(DSOCR_E_INVALID,
                strfmt("%s.struct_size is %zu, expected at least %zu; fill the struct with %s "
                       "before setting fields",
                       type, in->struct_size, sizeof(T), fill_with));
  std::memcpy(out, in, sizeof(T));
  return DSOCR_OK;
}

// A dsocr_options value -> EngineOptions, every field checked.
dsocr_status engine_options(const dsocr_options& o, dsocr::EngineOptions* eo) {
  if (!o.model_dir || !*o.model_dir)
    return fail(DSOCR_E_INVALID,
                "dsocr_options.model_dir is not set; set it to the DeepSeek-OCR checkpoint "
                "directory (config.json + *.safetensors + tokenizer.json)");
  const std::string device = o.device ? o.device : "cuda";
  if (device != "cuda" && device != "cpu")
    return fail(DSOCR_E_INVALID,
                "dsocr_options.device \"" + device + "\" is unknown; use \"cuda\" or \"cpu\"");
  const std::string quant = o.quant ? o.quant : "bf16";
  dsocr::Expected<dsocr::QuantPolicy> policy = dsocr::parse_quant_policy(quant);
  if (!policy.ok())
    return fail(DSOCR_E_INVALID, "dsocr_options.quant: " + policy.message());
  if (device == "cpu" && !policy->all_bf16())
    return fail(DSOCR_E_UNSUPPORTED, "dsocr_options.quant \"" + quant +
                                         "\": the CPU backend runs bf16 weights only; set device "
                                         "to \"cuda\" or quant to \"bf16\"");
  if (o.gpu < 0)
    return fail(
        DSOCR_E_INVALID,
        strfmt("dsocr_options.gpu %d is negative; use a CUDA device index (0 = first)", o.gpu));
  if (o.mode < DSOCR_MODE_TINY || o.mode > DSOCR_MODE_GUNDAM)
    return fail(DSOCR_E_INVALID, strfmt("dsocr_options.mode %d is not a dsocr_mode; use "
                                        "DSOCR_MODE_TINY .. DSOCR_MODE_GUNDAM",
                                        o.mode));
  if (o.max_crops < dsocr::kMinCrops || o.max_crops > dsocr::kMaxCropsHF)
    return fail(DSOCR_E_INVALID,
                strfmt("dsocr_options.max_crops %d is outside %d..%d; the default is %d",
                       o.max_crops, dsocr::kMinCrops, dsocr::kMaxCropsHF, dsocr::kMaxCropsHF));
  if (o.max_tokens < 0)
    return fail(DSOCR_E_INVALID, strfmt("dsocr_options.max_tokens %d is negative; use 0 to fill "
                                        "the context or a positive limit",
                                        o.max_tokens));
  if (o.ngram < 0)
    return fail(
        DSOCR_E_INVALID,
        strfmt("dsocr_options.ngram %d is negative; use 0 (off) or the n-gram size", o.ngram));
  if (device == "cuda" && o.gpu != 0)
    return fail(DSOCR_E_UNSUPPORTED,
                strfmt("dsocr_options.gpu %d: this version runs on GPU 0 only; set gpu to 0 (or "
                       "select the GPU with CUDA_VISIBLE_DEVICES)",
                       o.gpu));
  eo->cuda = device == "cuda";
  eo->quant = *policy;
  eo->gpu_mem = o.gpu_mem;
  eo->model_dir = o.model_dir;
  eo->tokenizer_path = o.tokenizer_path ? o.tokenizer_path : "";
  eo->mode = static_cast<dsocr::Mode>(o.mode);
  eo->max_crops = o.max_crops;
  eo->max_tokens = o.max_tokens > 0 ? o.max_tokens : 8192;
  eo->ngram = o.ngram;
  return DSOCR_OK;
}

// The result and the storage its pointers point into. dsocr_result_free deletes it.
struct Result : dsocr_result {
  std::string text_s, markdown_s, plain_s;
  std::vector<std::string> labels, texts;
  std::vector<std::vector<dsocr_box>> boxes;
  std::vector<dsocr_block> block_v;
};

std::unique_ptr<Result> make_result(const dsocr::PageOutput& page) {
  auto r = std::make_unique<Result>();
  dsocr_result& c = *r;
  c = dsocr_result{};
  c.struct_size = sizeof(dsocr_result);
  const dsocr::PageResult post = dsocr::postprocess_page(page.raw_text, page.image_w, page.image_h);
  r->text_s = page.raw_text;
  r->markdown_s = dsocr::to_markdown(post.text, post.grounding);
  r->plain_s = dsocr::to_plain_text(post.text, post.grounding);
  for (const dsocr::Block& b : post.grounding.blocks) {
    r->labels.push_back(b.label);
    r->texts.push_back(b.text);
    std::vector<dsocr_box> bx;
    for (const dsocr::Box& box : b.boxes)
      bx.push_back({box.px[0], box.px[1], box.px[2], box.px[3]});
    r->boxes.push_back(std::move(bx));
  }
  for (size_t i = 0; i < r->labels.size(); ++i)
    r->block_v.push_back({r->labels[i].c_str(), r->texts[i].c_str(),
                          static_cast<int>(r->boxes[i].size()),
                          r->boxes[i].empty() ? nullptr : r->boxes[i].data()});
  c.text = r->text_s.c_str();
  c.markdown = r->markdown_s.c_str();
  c.plain = r->plain_s.c_str();
  c.n_blocks = static_cast<int>(r->block_v.size());
  c.blocks = r->block_v.empty() ? nullptr : r->block_v.data();
  c.prompt_tokens = page.prompt_tokens;
  c.image_tokens = page.image_tokens;
  c.generated_tokens = static_cast<int>(page.ids.size());
  c.eos = page.eos ? 1 : 0;
  c.stopped = page.stopped ? 1 : 0;
  c.page_width = page.image_w;
  c.page_height = page.image_h;
  auto ms = [&](const char* stage) {
    auto it = page.ms.find(stage);
    return it == page.ms.end() ? 0.0 : it->second;
  };
  c.ms_preprocess = ms("preprocess");
  c.ms_vision = ms("vision");
  c.ms_prefill = ms("prefill");
  c.ms_decode = ms("decode");
  return r;
}

// The engine and result pointers of dsocr_run / dsocr_run_rgb; *out is NULL from here on.
dsocr_status check_run_args(const char* fn, const dsocr_engine* engine, dsocr_result** out) {
  if (!out)
    return fail(DSOCR_E_INVALID, std::string(fn) +
                                     ": out is NULL; pass the address of a "
                                     "dsocr_result* to receive the result");
  *out = nullptr;
  if (!engine)
    return fail(DSOCR_E_INVALID, std::string(fn) + ": engine is NULL; open one with dsocr_open");
  return DSOCR_OK;
}

// The shared part of dsocr_run and dsocr_run_rgb, once the image is decoded.
dsocr_status run_image(dsocr_engine* engine, const dsocr::Image& image, const char* prompt_in,
                       const dsocr_run_params* params_in, dsocr_token_cb cb, void* user,
                       dsocr_result** out) {
  dsocr_run_params params;
  dsocr_run_params_default(&params);
  if (params_in) {
    if (dsocr_status s =
            copy_sized(params_in, &params, "dsocr_run_params", "dsocr_run_params_default");
        s != DSOCR_OK)
      return s;
  }
  if (params.max_tokens < 0)
    return fail(DSOCR_E_INVALID, strfmt("dsocr_run_params.max_tokens %d is negative; use 0 for "
                                        "the engine's limit or a positive limit",
                                        params.max_tokens));
  std::string prompt;
  if (prompt_in) {
    prompt = prompt_in;
  } else {
    if (params.task < DSOCR_TASK_MARKDOWN || params.task > DSOCR_TASK_LOCATE)
      return fail(DSOCR_E_INVALID, strfmt("dsocr_run_params.task %d is not a dsocr_task; use "
                                          "DSOCR_TASK_MARKDOWN .. DSOCR_TASK_LOCATE",
                                          params.task));
    if (params.task == DSOCR_TASK_LOCATE && (!params.ref || !*params.ref))
      return fail(DSOCR_E_INVALID,
                  "dsocr_run_params.ref is not set; DSOCR_TASK_LOCATE needs the "
                  "phrase to find");
    dsocr::Expected<std::string> p =
        dsocr::task_prompt(static_cast<dsocr::Task>(params.task), params.ref ? params.ref : "");
    if (!p.ok()) return fail(DSOCR_E_INVALID, p.message());
    prompt = std::move(*p);
  }
  std::function<bool(std::string_view)> on_text;
  if (cb)
    on_text = [&](std::string_view piece) {
      const std::string z(piece);  // NUL-terminated for the callback
      return cb(z.c_str(), z.size(), user) == 0;
    };
  dsocr::Expected<dsocr::PageOutput> page =
      engine->engine->run(image, prompt, on_text, params.max_tokens);
  if (!page.ok()) return fail(DSOCR_E_INVALID, page.message());
  *out = make_result(*page).release();
  return succeed();
}

}  // namespace

extern "C" {

const char* dsocr_version(void) {
#define DSOCR_STR_(x) #x
#define DSOCR_STR(x) DSOCR_STR_(x)
  return DSOCR_STR(DSOCR_VERSION_MAJOR) "." DSOCR_STR(DSOCR_VERSION_MINOR) "." DSOCR_STR(
      DSOCR_VERSION_PATCH);
}

const char* dsocr_status_name(dsocr_status status) {
  switch (status) {
    case DSOCR_OK:
      return "DSOCR_OK";
    case DSOCR_E_INVALID:
      return "DSOCR_E_INVALID";
    case DSOCR_E_IO:
      return "DSOCR_E_IO";
    case DSOCR_E_MODEL:
      return "DSOCR_E_MODEL";
    case DSOCR_E_IMAGE:
      return "DSOCR_E_IMAGE";
    case DSOCR_E_CUDA:
      return "DSOCR_E_CUDA";
    case DSOCR_E_OOM:
      return "DSOCR_E_OOM";
    case DSOCR_E_UNSUPPORTED:
      return "DSOCR_E_UNSUPPORTED";
    case DSOCR_E_INTERNAL:
      return "DSOCR_E_INTERNAL";
  }
  return "DSOCR_E_UNKNOWN";
}

const char* dsocr_last_error(void) {
  return t_last_error.c_str();
}

void dsocr_options_default(dsocr_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof(*o));
  o->struct_size = sizeof(*o);
  o->device = "cuda";
  o->mode = DSOCR_MODE_GUNDAM;
  o->max_crops = dsocr::kMaxCropsHF;
  o->ngram = 20;
  o->quant = "bf16";
}

void dsocr_run_params_default(dsocr_run_params* p) {
  if (!p) return;
  std::memset(p, 0, sizeof(*p));
  p->struct_size = sizeof(*p);
  p->task = DSOCR_TASK_MARKDOWN;
}

dsocr_status dsocr_open(const dsocr_options* options, dsocr_engine** out) {
  return guarded([&]() -> dsocr_status {
    if (!out)
      return fail(DSOCR_E_INVALID,
                  "dsocr_open: out is NULL; pass the address of a "
                  "dsocr_engine* to receive the engine");
    *out = nullptr;
    if (!options)
      return fail(DSOCR_E_INVALID,
                  "dsocr_open: options is NULL; fill a dsocr_options with "
                  "dsocr_options_default and set model_dir");
    dsocr_options o;
    if (dsocr_status s = copy_sized(options, &o, "dsocr_options", "dsocr_options_default");
        s != DSOCR_OK)
      return s;
    dsocr::EngineOptions eo;
    if (dsocr_status s = engine_options(o, &eo); s != DSOCR_OK) return s;
    std::error_code ec;
    if (!fs::is_directory(eo.model_dir, ec))
      return fail(DSOCR_E_IO, eo.model_dir +
                                  ": no such directory; set dsocr_options.model_dir "
                                  "to a DeepSeek-OCR checkpoint directory");
    if (eo.cuda) {
      const std::string why = dsocr::cuda_unavailable_reason();
      if (!why.empty())
        return fail(DSOCR_E_CUDA, "dsocr_options.device \"cuda\": " + why +
                                      "; run on a machine with an NVIDIA GPU or set device to "
                                      "\"cpu\"");
    }
    dsocr::Expected<std::unique_ptr<dsocr::Engine>> engine = dsocr::Engine::open(eo);
    if (!engine.ok()) {
      // Over the memory budget (below the smallest offload plan): the planner names the minimum,
      // the largest regions and the fix.
      if (eo.cuda && (engine.message().rfind("plan needs ", 0) == 0 ||
                      engine.message().find(" is below the minimum ") != std::string::npos))
        return fail(DSOCR_E_OOM, engine.message());
      // Missing files are I/O errors; everything else the engine refuses is the model's fault.
      const std::string tokenizer = eo.tokenizer_path.empty()
                                        ? (fs::path(eo.model_dir) / "tokenizer.json").string()
                                        : eo.tokenizer_path;
      const bool missing =
          !fs::exists(fs::path(eo.model_dir) / "config.json", ec) || !fs::exists(tokenizer, ec);
      return fail(missing ? DSOCR_E_IO : DSOCR_E_MODEL, engine.message());
    }
    *out = new dsocr_engine{std::move(*engine)};
    return succeed();
  });
}

void dsocr_close(dsocr_engine* engine) {
  delete engine;  // ~Engine does not throw
}

dsocr_status dsocr_run(dsocr_engine* engine, const char* image_path, const char* prompt,
                       const dsocr_run_params* params, dsocr_token_cb cb, void* user,
                       dsocr_result** out) {
  return guarded([&]() -> dsocr_status {
    if (dsocr_status s = check_run_args("dsocr_run", engine, out); s != DSOCR_OK) return s;
    if (!image_path || !*image_path)
      return fail(DSOCR_E_INVALID, "dsocr_run: image_path is not set; pass an image file");
    dsocr::Expected<dsocr::Image> image = dsocr::load_image(image_path);
    if (!image.ok()) {
      std::error_code ec;
      return fail(fs::is_regular_file(image_path, ec) ? DSOCR_E_IMAGE : DSOCR_E_IO,
                  image.message());
    }
    return run_image(engine, *image, prompt, params, cb, user, out);
  });
}

dsocr_status dsocr_run_rgb(dsocr_engine* engine, const uint8_t* rgb, int w, int h, size_t stride,
                           const char* prompt, const dsocr_run_params* params, dsocr_token_cb cb,
                           void* user, dsocr_result** out) {
  return guarded([&]() -> dsocr_status {
    if (dsocr_status s = check_run_args("dsocr_run_rgb", engine, out); s != DSOCR_OK) return s;
    if (!rgb) return fail(DSOCR_E_INVALID, "dsocr_run_rgb: rgb is NULL; pass the pixels");
    if (w < 1 || h < 1 || w > dsocr::kMaxImageSide || h > dsocr::kMaxImageSide ||
        static_cast<int64_t>(w) * h > dsocr::kMaxImagePixels)
      return fail(
          DSOCR_E_IMAGE,
          strfmt("dsocr_run_rgb: %dx%d image; sides must be 1..%d and the image at most "
                 "%lld pixels; downscale it first",
                 w, h, dsocr::kMaxImageSide, static_cast<long long>(dsocr::kMaxImagePixels)));
    const size_t row = static_cast<size_t>(w) * 3;
    if (stride < row)
      return fail(DSOCR_E_INVALID, strfmt("dsocr_run_rgb: stride %zu is less than 3 * w = %zu; "
                                          "pass the distance between rows in bytes",
                                          stride, row));
    dsocr::Image image;
    image.width = w;
    image.height = h;
    image.rgb.resize(row * static_cast<size_t>(h));
    for (int y = 0; y < h; ++y) std::memcpy(image.rgb.data() + row * y, rgb + stride * y, row);
    return run_image(engine, image, prompt, params, cb, user, out);
  });
}

void dsocr_result_free(dsocr_result* result) {
  delete static_cast<Result*>(result);
}

}  // extern "C"
