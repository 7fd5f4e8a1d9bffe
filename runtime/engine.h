// The OCR engine: image + prompt in, generated text out (streamed), with stage timings.
// Backends: the CPU float32 reference, or CUDA (EngineOptions::cuda) behind the same calls.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "loader/image.h"
#include "loader/status.h"
#include "runtime/preprocess.h"
#include "runtime/quant_policy.h"

namespace dsocr {

// The official prompts (../shared/MODEL.md §6.4).
enum class Task { kMarkdown, kOcr, kFigure, kDescribe, kLocate };
Expected<Task> parse_task(std::string_view name);  // markdown|ocr|figure|describe|locate
// The prompt text of a task; `ref` is the phrase for kLocate (must be non-empty there).
Expected<std::string> task_prompt(Task task, std::string_view ref = {});

struct MemoryPlan;  // runtime/planner.h
class GpuModel;     // runtime/gpu_model.h

struct EngineOptions {
  std::string model_dir;
  std::string tokenizer_path;  // default: <model_dir>/tokenizer.json
  Mode mode = Mode::kGundam;
  int max_crops = kMaxCropsHF;  // Gundam: 2..9
  int max_tokens = 8192;        // new tokens per page (capped by the 8192-token context)
  int ngram = 20;               // HF no-repeat-ngram size over prompt + output; 0 = off
  bool cuda = false;            // run on GPU 0 (BF16 encoder and decoder)
  bool ignore_eos = false;      // with cuda: decode exactly max_tokens tokens (benchmarks)
  uint64_t gpu_mem = 0;         // with cuda: the memory budget in bytes (0 = the free memory)
  QuantPolicy quant;            // with cuda: weight formats per class (quantized: cuda only)
};

struct PageOutput {
  std::string raw_text;              // decoded, special tokens kept (EOS text if emitted)
  std::vector<int32_t> ids;          // generated ids
  int prompt_tokens = 0;
  int image_tokens = 0;
  int tiles = 0;                     // Gundam tiles (local views); 0 when the page is not tiled
  bool eos = false;                  // generation ended with EOS (not the token limit)
  bool stopped = false;              // on_text asked to stop before EOS or the token limit
  int image_w = 0, image_h = 0;      // the image after EXIF orientation
  std::map<std::string, double> ms;  // stage -> milliseconds
};

class Engine {
 public:
  static Expected<std::unique_ptr<Engine>> open(const EngineOptions& options);
  ~Engine();

  // Runs one image with a prompt containing exactly one "<image>". `on_text` receives decoded
  // text as it is generated (never half a UTF-8 character); return false to stop early (it is
  // not called again). `max_tokens` > 0 overrides EngineOptions::max_tokens for this page.
  Expected<PageOutput> run(const Image& image, std::string_view prompt,
                           const std::function<bool(std::string_view)>& on_text = {},
                           int max_tokens = 0);

  const EngineOptions& options() const;
  // The GPU memory plan (residency, offload, expert cache); null on the CPU backend.
  const MemoryPlan* gpu_plan() const;
  // The CUDA backend's model (decoder, encoder, expert cache); null on the CPU backend.
  GpuModel* gpu_model() const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsocr
