#include "runtime/engine.h"

#include <chrono>
#include <filesystem>
#include <optional>

#include "loader/tokenizer.h"
#include "runtime/assemble.h"
#include "runtime/cpu_model.h"
#include "runtime/cuda_check.h"
#include "runtime/gpu_model.h"
#include "runtime/postprocess.h"

namespace dsocr {

Expected<Task> parse_task(std::string_view name) {
  static const std::pair<const char*, Task> kTasks[] = {{"markdown", Task::kMarkdown},
                                                        {"ocr", Task::kOcr},
                                                        {"figure", Task::kFigure},
                                                        {"describe", Task::kDescribe},
                                                        {"locate", Task::kLocate}};
  for (const auto& [n, t] : kTasks)
    if (name == n) return t;
  return Status::Error("unknown task '" + std::string(name) +
                       "'; use one of markdown, ocr, figure, describe, locate");
}

Expected<std::string> task_prompt(Task task, std::string_view ref) {
  switch (task) {
    case Task::kMarkdown:
      return std::string("<image>\n<|grounding|>Convert the document to markdown.");
    case Task::kOcr:
      return std::string("<image>\nFree OCR.");
    case Task::kFigure:
      return std::string("<image>\nParse the figure.");
    case Task::kDescribe:
      return std::string("<image>\nDescribe this image in detail.");
    case Task::kLocate:
      if (ref.empty()) return Status::Error("task locate needs the phrase to find (--ref TEXT)");
      return "<image>\nLocate <|ref|>" + std::string(ref) + "<|/ref|> in the image.";
  }
  return Status::Error("unknown task");
}

struct Engine::Impl {
  EngineOptions opt;
  std::unique_ptr<CpuModel> model;    // weights mapped on the host (CPU backend; the encoder)
  std::unique_ptr<GpuModel> gpu;      // with opt.cuda
  std::optional<Tokenizer> tok;
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;
const EngineOptions& Engine::options() const {
  return impl_->opt;
}

const MemoryPlan* Engine::gpu_plan() const {
  return impl_->gpu ? &impl_->gpu->plan() : nullptr;
}

GpuModel* Engine::gpu_model() const {
  return impl_->gpu.get();
}

Expected<std::unique_ptr<Engine>> Engine::open(const EngineOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  if (impl->opt.tokenizer_path.empty())
    impl->opt.tokenizer_path = options.model_dir + "/tokenizer.json";
  if (options.max_crops < kMinCrops || options.max_crops > kMaxCropsHF)
    return Status::Error(strfmt("--max-crops %d is outside 2..9", options.max_crops));
  if (options.max_tokens < 1)
    return Status::Error(strfmt("--max-tokens %d must be at least 1", options.max_tokens));
  if (!std::filesystem::exists(impl->opt.tokenizer_path))
    return Status::Error(impl->opt.tokenizer_path +
                         ": no tokenizer.json; copy the one shipped with the model into the model "
                         "directory (dsocr-synth writes a synthetic one)");
  if (!options.cuda && !options.quant.all_bf16())
    return Status::Error("quantized weights (" + options.quant.describe() +
                         ") run on the GPU only; use the cuda device or bf16");
  DSOCR_ASSIGN_OR_RETURN(impl->model, CpuModel::open(options.model_dir));
  if (options.cuda) {
    DSOCR_TRY(cuda_device_available());
    PlanOptions po;
    po.mode = options.mode;
    po.max_new_tokens =
        std::min(options.max_tokens, impl->model->cfg.max_pos - max_prompt_tokens(options.mode));
    po.gpu_mem = options.gpu_mem;
    po.device = 0;
    po.quant = options.quant;
    po.budget_name = "--gpu-mem";
    po.fix = "raise --gpu-mem, lower --max-tokens or use a smaller --mode";
    DSOCR_ASSIGN_OR_RETURN(impl->gpu, GpuModel::open(options.model_dir, po));
  }
  DSOCR_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::load(impl->opt.tokenizer_path));
  impl->tok.emplace(std::move(tok));
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Expected<PageOutput> Engine::run(const Image& image, std::string_view prompt_in,
                                 const std::function<bool(std::string_view)>& on_text,
                                 int max_tokens) {
  using clock = std::chrono::steady_clock;
  const CpuModel& m = *impl_->model;
  const ModelConfig& cfg = m.cfg;
  PageOutput out;
  auto t0 = clock::now();
  auto lap = [&](const char* stage) {
    auto now = clock::now();
    out.ms[stage] = std::chrono::duration<double, std::milli>(now - t0).count();
    t0 = now;
  };

  // The HF path strips the prompt (Python str.strip()); the text around the single <image> is
  // tokenized as is.
  const std::string stripped = python_strip(prompt_in);
  std::string_view prompt = stripped;
  const size_t at = prompt.find("<image>");
  if (at == std::string_view::npos || prompt.find("<image>", at + 1) != std::string_view::npos)
    return Status::Error(
        "the prompt must contain exactly one <image> placeholder; put <image> where the page goes");

  DSOCR_ASSIGN_OR_RETURN(PageViews page,
                         page_views_from_image(image, impl_->opt.mode, impl_->opt.max_crops));
  out.image_w = image.width;
  out.image_h = image.height;
  out.tiles = page.n_tiles;
  lap("preprocess");
  const int64_t image_rows =
      image_embed_rows(page.S / 64, kTileSize / 64, page.grid.w, page.grid.h);
  PageEmbeds pe;  // the CPU backend's encoder output (the GPU encoder writes the decoder rows)
  if (!impl_->gpu) {
    DSOCR_ASSIGN_OR_RETURN(pe, encode_page_cpu(m, page));
    lap("vision");
  }

  std::vector<int32_t> ids = {cfg.bos_id};
  std::vector<int32_t> before = impl_->tok->encode(prompt.substr(0, at));
  std::vector<int32_t> after = impl_->tok->encode(prompt.substr(at + 7));
  ids.insert(ids.end(), before.begin(), before.end());
  ids.insert(ids.end(), image_rows, cfg.image_token_id);
  ids.insert(ids.end(), after.begin(), after.end());
  out.prompt_tokens = static_cast<int>(ids.size());
  out.image_tokens = static_cast<int>(image_rows);
  const int64_t room = cfg.max_pos - static_cast<int64_t>(ids.size());
  if (room < 1)
    return Status::Error(
        strfmt("the prompt takes %zu tokens, the whole %d-token context; use a "
               "smaller --mode or a shorter prompt",
               ids.size(), cfg.max_pos));
  const int max_new = static_cast<int>(
      std::min<int64_t>(max_tokens > 0 ? max_tokens : impl_->opt.max_tokens, room));

  TokenStreamDecoder stream(*impl_->tok);
  auto on_token = [&](int32_t id) {
    if (id == cfg.eos_id) return true;  // the official streamer prints EOS as nothing here
    std::string piece = stream.push(id);
    out.raw_text += piece;
    return !on_text || piece.empty() || on_text(piece);
  };
  auto finish = [&]() {  // after out.stopped is set
    std::string tail = stream.flush();
    out.raw_text += tail;
    if (on_text && !tail.empty() && !out.stopped) on_text(tail);
    lap("decode");
  };

  if (impl_->gpu) {
    GpuDecoder& dec = impl_->gpu->decoder();
    NGramBan ban;
    ban.mode = impl_->opt.ngram > 0 ? NGramBan::kHF : NGramBan::kNone;
    ban.n = std::max(impl_->opt.ngram, 1);
    DSOCR_TRY(dec.begin(ids, max_new, ban, /*stop_at_eos=*/!impl_->opt.ignore_eos));
    // The encoder writes the image rows (after BOS and the text before <image>) in place.
    const int64_t first = 1 + static_cast<int64_t>(before.size());
    DSOCR_TRY(impl_->gpu->vision().encode_page(
        views_ref(page), dec.input_rows() + first * cfg.dim, impl_->gpu->stream()));
    DSOCR_CUDA_TRY(cudaStreamSynchronize(impl_->gpu->stream()));
    lap("vision");
    DSOCR_TRY(dec.prefill());
    lap("prefill");
    DSOCR_ASSIGN_OR_RETURN(GpuGeneration gen, dec.generate(on_token));
    DSOCR_TRY(dec.end());
    DSOCR_TRY(impl_->gpu->between_pages());  // the expert cache's refill under offload
    out.stopped = gen.stop == kRunning;  // the callback asked to stop
    out.ids = std::move(gen.ids);
    out.eos = gen.stop == kStopEos;
    finish();
    return out;
  }

  CpuDecoder dec(cfg, m.w.dec, static_cast<int64_t>(ids.size()) + max_new);
  std::vector<float> embeds = prompt_embeddings(m, dec, ids, pe.image_embeds);
  std::vector<float> logits(cfg.vocab);
  DSOCR_TRY(dec.forward(embeds.data(), static_cast<int64_t>(ids.size()), logits.data()));
  lap("prefill");

  GenerationConfig gc;
  gc.max_new_tokens = max_new;
  gc.eos_id = cfg.eos_id;
  gc.ngram_mode =
      impl_->opt.ngram > 0 ? GenerationConfig::NGram::kHF : GenerationConfig::NGram::kNone;
  gc.ngram = std::max(impl_->opt.ngram, 1);
  DSOCR_ASSIGN_OR_RETURN(Generation gen,
                         generate_cpu(m, dec, ids, std::move(logits), gc, 0, on_token));
  out.stopped = gen.stop == StopReason::kNone;
  out.ids = std::move(gen.ids);
  out.eos = gen.stop == StopReason::kEos;
  finish();
  return out;
}

}  // namespace dsocr
