// The golden interface (../shared/golden/README.md): run the official recipe — BOS + image tokens
// + given text ids, greedy decoding with the HF no-repeat-ngram rule — and return the tensors the
// official code dumped, under the same names, so the two can be compared.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "loader/safetensors.h"
#include "loader/status.h"
#include "runtime/quant_policy.h"

namespace dsocr {

struct GoldenOptions {
  std::string model_dir;
  std::string image_path;          // decoded and preprocessed unless pixels_from_golden is set
  std::string pixels_from_golden;  // a golden CASE.safetensors: take global_u8 / crops_u8 from it
  std::string mode = "gundam";
  int max_crops = 9;
  std::vector<int32_t> prompt_ids;     // text ids after the image tokens
  int max_tokens = 32;                 // new tokens
  int ngram = 20;                      // HF no-repeat-ngram size (0 = off)
  std::vector<int32_t> teacher_force;  // ids for tf_top64_*; empty = the run's own gen_ids
  bool cuda = false;                   // the encoder and decoder on GPU 0 (BF16)
  QuantPolicy quant;                   // with cuda: the decoder's weight formats (default BF16)
};

// One named tensor of a dump (little-endian bytes of `dtype`).
struct DumpTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};
using TensorDump = std::vector<DumpTensor>;

// Runs the recipe on the CPU float32 backend, or with opt.cuda on the GPU (BF16 encoder, decoder
// with the paged cache and the graph-captured decode step). `log` receives one line per stage (may be empty).
Expected<TensorDump> run_golden(const GoldenOptions& opt,
                                const std::function<void(const std::string&)>& log = {});

// Writes a dump as one safetensors file (written to a temporary name, then renamed).
Status write_tensor_dump(const std::string& path, const TensorDump& dump,
                         const std::map<std::string, std::string>& metadata = {});

// The golden rule for prefill_hidden_positions: 0..3, T/2 and the last 8 positions.
std::vector<int64_t> golden_hidden_positions(int64_t T);

}  // namespace dsocr
