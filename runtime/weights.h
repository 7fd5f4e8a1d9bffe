// Checkpoint upload: every tensor's bytes go from the file straight into its slot of the device
// pool (DESIGN.md §4 "Loading"), through pinned staging buffers:
//
//   file --read (reader thread t)--> pinned buffer of t --cudaMemcpyAsync (copy stream)--> slots
//
// The file's data region is cut into chunks of chunk_bytes, dealt round-robin to read_threads
// reader threads. Each reader cycles through its own buffers_per_thread pinned buffers: it waits
// on the buffer's event (its previous copies are done), reads the next chunk into it, queues the
// copies of the tensor pieces inside the chunk, and records the event. So the copy of chunk i
// overlaps the reads of the following chunks, and no reader waits for another (no per-chunk
// barrier, which kept buffered reads of a cold file at 75% of the disk rate; bench/RESULTS.md
// "Loading"). No full-size host copy, no float32 staging: host memory is read_threads x
// buffers_per_thread x chunk_bytes of pinned staging, whatever the checkpoint.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loader/safetensors.h"
#include "loader/status.h"
#include "runtime/pool.h"

namespace dsocr {

enum class ReadMethod : uint8_t {
  kMmap,    // memcpy from the checkpoint's memory mapping (page faults, page cache)
  kPread,   // pread() into the pinned buffer (page cache, no faults)
  kDirect,  // pread() on an O_DIRECT descriptor: disk -> pinned buffer, page cache bypassed;
            // falls back to kPread where the file system refuses O_DIRECT (tmpfs)
};
const char* read_method_name(ReadMethod m);  // "mmap", "pread", "direct"
Expected<ReadMethod> parse_read_method(std::string_view name);

// Defaults measured on the device machines (bench/RESULTS.md "Loading", SYNTH-1, 6.67 GB): mmap
// with 8 readers of 2 x 8 MiB reached 96% of the cold disk rate and 76-85% of the pinned H2D rate
// from a warm page cache, and fills the page cache for the next run; kDirect is ~10% faster cold
// but never warms the cache; kPread was 79% of the disk rate cold.
struct UploadOptions {
  ReadMethod method = ReadMethod::kMmap;
  uint64_t chunk_bytes = 8ull << 20;  // per staging buffer; rounded up to 4 KiB
  int read_threads = 0;               // 0: min(8, cpu_threads())
  int buffers_per_thread = 2;         // 1..8
};

struct UploadStats {
  uint64_t bytes = 0;       // tensor bytes copied to the device
  uint64_t file_bytes = 0;  // bytes read from files (data regions, 4 KiB-aligned)
  int chunks = 0;
  int threads = 0;          // reader threads used
  double seconds = 0;       // wall time of upload_weights, from first read to last copy done
  double read_seconds = 0;  // per reader thread (mean): time spent reading chunks
  double wait_seconds = 0;  // per reader thread (mean): time waiting for a staging buffer
  ReadMethod method = ReadMethod::kPread;  // the method actually used
  double gb_per_s() const { return seconds > 0 ? bytes / seconds * 1e-9 : 0; }
};

struct DeviceTensor {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  void* data = nullptr;  // in the pool
  uint64_t nbytes = 0;
};

// Name -> device tensor, for every checkpoint tensor.
class WeightTable {
 public:
  const DeviceTensor* find(std::string_view name) const;
  const std::vector<DeviceTensor>& tensors() const { return tensors_; }
  size_t size() const { return tensors_.size(); }
  // For bind_weights(): the tensor's device pointer, or null.
  std::function<const void*(const std::string&)> lookup() const;
  Status add(DeviceTensor t);  // error on a duplicate name

 private:
  std::vector<DeviceTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

// Upload every tensor of `ckpt` into its slot of `pool` (the pool's plan must hold a slot of the
// same size for each; plan_memory() with weight_entries() of this checkpoint makes one). Tensors
// the plan stores quantized are only entered in the table (data = their slot, nbytes = the
// slot's): quantize_weights (runtime/weights_quant.h) fills them. Tensors the plan keeps in the
// host pool are left out of the upload and of the table: upload_host_weights() copies and adds
// them. Blocks until the last copy is done. Errors name the file, the offset and what to do.
Expected<WeightTable> upload_weights(const Checkpoint& ckpt, const DevicePool& pool,
                                     const UploadOptions& options = {},
                                     UploadStats* stats = nullptr);

// Copy every tensor the plan keeps in `host` from the checkpoint's mapping into its slot (on
// cpu_threads() threads) and add it to `table` with its device (mapped) address. Tensors the plan
// stores quantized are only entered in the table (nbytes = the slot's): quantize_weights fills
// them.
Status upload_host_weights(const Checkpoint& ckpt, const HostPool& host, WeightTable& table);

}  // namespace dsocr
