// Validated safetensors reader (memory-mapped) and sharded checkpoint set.
//
// Format (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes
// of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
// data region. Offsets are relative to the data region. Nothing is trusted before it is checked
// against the file: header length within the file and <= kMaxHeaderBytes, known dtypes,
// non-negative dims, product(shape) * dtype size == end - begin (overflow-checked), begin <= end <=
// data size, no two tensors overlapping, and (as the format requires) the tensors cover the data
// region with no holes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loader/status.h"

namespace dsocr {

enum class DType : uint8_t { BF16, F16, F32, F64, I8, U8, I16, U16, I32, U32, I64, U64, BOOL };

size_t dtype_size(DType t);       // bytes per element
const char* dtype_name(DType t);  // "BF16", ...
Expected<DType> parse_dtype(std::string_view name);

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // 100 MB

struct TensorInfo {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute byte offset in its file (header + 8 + begin)
  uint64_t nbytes = 0;
  int shard = 0;  // index into Checkpoint::files()
  int64_t numel() const;
  std::string shape_str() const;  // "[1280,1280]"
};

// Read-only memory mapping of a whole file (RAII).
class MappedFile {
 public:
  static Expected<MappedFile> open(const std::string& path);
  MappedFile() = default;
  MappedFile(MappedFile&&) noexcept;
  MappedFile& operator=(MappedFile&&) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// One .safetensors file.
class SafetensorsFile {
 public:
  // Map and validate a file. Errors name the file (and the tensor, where one is at fault).
  static Expected<SafetensorsFile> open(const std::string& path);
  // Validate an in-memory image of a file (what the fuzzer and the tests drive). `bytes` must
  // outlive the returned object. `display_name` is used in messages.
  static Expected<SafetensorsFile> parse(std::span<const uint8_t> bytes,
                                         const std::string& display_name);

  const std::string& path() const { return name_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file-offset order
  const TensorInfo* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const uint8_t* bytes(const TensorInfo& t) const { return base_ + t.offset; }
  uint64_t data_begin() const { return data_begin_; }  // 8 + header length
  uint64_t file_size() const { return size_; }

 private:
  std::shared_ptr<MappedFile> map_;  // null when parsed from caller-owned bytes
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_begin_ = 0;
  std::string name_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: either one *.safetensors file, or shards listed by
// model.safetensors.index.json ({"weight_map": {tensor: file}}). Every shard is validated, every
// tensor of the index must be in the shard it names, no tensor may appear twice.
class Checkpoint {
 public:
  static Expected<Checkpoint> open_dir(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  const std::vector<TensorInfo>& tensors() const { return all_; }  // shard-major, file order
  const TensorInfo* find(std::string_view name) const;
  const uint8_t* bytes(const TensorInfo& t) const { return files_[t.shard].bytes(t); }
  uint64_t total_bytes() const;  // sum of tensor payloads

 private:
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::vector<TensorInfo> all_;
  std::unordered_map<std::string, size_t> index_;
};

// Serialise a safetensors header for the given tensors (offsets assigned in order, no padding
// beyond 8-byte alignment of the header). Returns the header bytes including the u64 length
// prefix; each tensor's `offset` is set to its absolute file offset. Used by dsocr-synth, the
// golden dump writer and the tests that build crafted files.
// A tensor whose `nbytes` is 0 gets numel * dtype size; a nonzero `nbytes` must equal it. On a bad
// tensor (negative dim, size overflow, nbytes mismatch, empty/duplicate/reserved name) it returns
// an empty string; try_build_safetensors_header says why.
std::string build_safetensors_header(std::vector<TensorInfo>& tensors,
                                     const std::map<std::string, std::string>& metadata = {});
Expected<std::string> try_build_safetensors_header(
    std::vector<TensorInfo>& tensors, const std::map<std::string, std::string>& metadata = {});

// Parse JSON text without trusting it: duplicate keys (which nlohmann would silently resolve to
// the last one) and nesting deeper than `max_depth` are errors, as is invalid JSON. `what` names
// the text in messages ("model.safetensors.index.json"). Shared by the safetensors header, the
// shard index and config.json readers.
Expected<nlohmann::json> parse_json_strict(std::string_view text, const std::string& what,
                                           int max_depth = 16);

}  // namespace dsocr
