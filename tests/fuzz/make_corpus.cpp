// Writes the fuzzer's seed corpus into the directory given as argv[1]: small valid .safetensors
// files (every dtype, zero-byte and scalar tensors, metadata), bare headers, and config.json
// variants. Built and run by tests/fuzz.cmake; nothing is committed.
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "loader/config.h"
#include "loader/safetensors.h"

namespace {

using dsocr::DType;
using dsocr::TensorInfo;

TensorInfo tensor(const char* name, DType dt, std::vector<int64_t> shape) {
  TensorInfo t;
  t.name = name;
  t.dtype = dt;
  t.shape = std::move(shape);
  return t;
}

bool write(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
  return static_cast<bool>(f);
}

// Header + payload from a fixed seed; returns "" if the header was refused.
std::string file(std::vector<TensorInfo> ts, const std::map<std::string, std::string>& meta,
                 uint32_t seed) {
  std::string h = dsocr::build_safetensors_header(ts, meta);
  if (h.empty()) return h;
  std::mt19937 rng(seed);
  for (const auto& t : ts)
    for (uint64_t i = 0; i < t.nbytes; ++i) h.push_back(static_cast<char>(rng()));
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  std::vector<std::pair<std::string, std::string>> seeds;
  seeds.emplace_back("one_bf16.safetensors",
                     file({tensor("model.norm.weight", DType::BF16, {4})}, {}, 1));
  seeds.emplace_back("all_dtypes.safetensors",
                     file({tensor("a", DType::BF16, {2, 2}), tensor("b", DType::F16, {1}),
                           tensor("c", DType::F32, {}), tensor("d", DType::F64, {1, 1}),
                           tensor("e", DType::I8, {3}), tensor("f", DType::U8, {2, 2, 3}),
                           tensor("g", DType::I16, {1}), tensor("h", DType::U16, {2}),
                           tensor("i", DType::I32, {1}), tensor("j", DType::U32, {1}),
                           tensor("k", DType::I64, {2}), tensor("l", DType::U64, {1}),
                           tensor("m", DType::BOOL, {5}), tensor("z", DType::F32, {0, 7})},
                          {{"format", "pt"}}, 2));
  seeds.emplace_back("metadata_only.safetensors", file({}, {{"meta", "{\"mode\": \"tiny\"}"}}, 3));
  seeds.emplace_back("empty.safetensors", file({}, {}, 4));
  seeds.emplace_back("header_only.json",
                     R"({"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[0],)"
                     R"("data_offsets":[0,0]}})");
  seeds.emplace_back("config_official.json", dsocr::official_config_json());
  seeds.emplace_back("config_min.json", R"({"hidden_size":1280,"rope_theta":10000.0,)"
                                        R"("language_config":{"hidden_size":1280}})");
  int n = 0;
  for (const auto& [name, bytes] : seeds) {
    if (bytes.empty() && name != "empty.safetensors") {
      std::fprintf(stderr, "make_corpus: could not build %s\n", name.c_str());
      return 1;
    }
    if (!write(out + "/" + name, bytes)) {
      std::fprintf(stderr, "make_corpus: cannot write %s/%s\n", out.c_str(), name.c_str());
      return 1;
    }
    ++n;
  }
  std::printf("make_corpus: %d seeds in %s\n", n, out.c_str());
  return 0;
}
