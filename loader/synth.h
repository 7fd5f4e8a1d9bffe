// SYNTH-1: the synthetic DeepSeek-OCR checkpoint the golden data was computed on. Every value is
// a pure function of (seed, tensor name, flat index); the exact rules are in
// ../shared/golden/README.md ("SYNTH-1") and are restated at each step of synth.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "loader/schema.h"
#include "loader/status.h"

namespace dsocr {

constexpr uint64_t kSynthDefaultSeed = 1;
// The one shard of the official checkpoint (name as in its model.safetensors.index.json).
constexpr const char* kSynthModelFile = "model-00001-of-000001.safetensors";
// The model is written as kSynthModelFile + kSynthTempSuffix, renamed when complete.
constexpr const char* kSynthTempSuffix = ".tmp";

// Per-tensor constants of the value function.
struct SynthTensor {
  uint64_t base = 0;   // FNV-1a-64(name) XOR seed
  float center = 0.f;  // added after scaling, only when nonzero
  float scale = 1.f;   // v = scale * r, r uniform in [-1, 1)
};

uint64_t fnv1a64(std::string_view s);

// splitmix64 (Steele, Lea, Flood 2014) with wrap-around arithmetic; inline for the fill loop.
inline uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The (center, scale) rule table and the per-tensor base for `seed`.
SynthTensor synth_tensor(const std::string& name, const std::vector<int64_t>& shape, uint64_t seed);

// BF16 bit patterns of flat elements [begin, end) of the tensor: out[k] = value(begin + k).
void synth_fill(const SynthTensor& t, int64_t begin, int64_t end,
                uint16_t* out);  // out: [end - begin]

// Write config.json (official_config_json()) and kSynthModelFile (all BF16 tensors of
// checkpoint_schema(official config), SYNTH-1 values) into `dir`, creating it if needed and
// replacing files of those names. The model is written under a temporary name (above) and renamed
// at the end, so an interrupted run never leaves a file that looks complete. Values are computed by
// worker threads into a bounded ring of chunk buffers (peak memory ~ 100 MB) and written in
// order. `progress(done, total)` (file bytes) is called on the calling thread after each chunk;
// it may be empty.
Status write_synth_checkpoint(const std::string& dir, uint64_t seed,
                              const std::function<void(uint64_t done, uint64_t total)>& progress);

}  // namespace dsocr
