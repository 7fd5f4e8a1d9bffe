// SYNTH-1 value function and the streaming checkpoint writer (see synth.h and
// ../shared/golden/README.md "SYNTH-1: the synthetic checkpoint, exactly").
#include "loader/synth.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "loader/config.h"
#include "loader/safetensors.h"

namespace dsocr {

// Step 1: FNV-1a-64 over the UTF-8 bytes of the name.
uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool ends_with_any(std::string_view s, std::initializer_list<std::string_view> suffixes) {
  for (std::string_view x : suffixes)
    if (ends_with(s, x)) return true;
  return false;
}

// Steps 3-4: r = 2u - 1 with u = (z >> 40) * 2^-24. Both steps are exact in float32 (u has 24
// significant bits; r is a multiple of 2^-23 in [-1, 1)).
inline float synth_r(uint64_t base, int64_t i) {
  const uint64_t z = splitmix64(base + static_cast<uint64_t>(i));
  const float u = static_cast<float>(static_cast<uint32_t>(z >> 40)) * 0x1p-24f;
  return 2.f * u - 1.f;
}

// Step 7: round to nearest even, exactly the README's formula (no NaN/Inf can occur here).
inline uint16_t rne_bf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace

// Step 5: the first matching rule wins.
SynthTensor synth_tensor(const std::string& name, const std::vector<int64_t>& shape,
                         uint64_t seed) {
  SynthTensor t;
  t.base = fnv1a64(name) ^ seed;  // step 2
  if (ends_with_any(name, {"rel_pos_h", "rel_pos_w"})) {
    t.scale = 0.5f;
  } else if (ends_with_any(name, {"pos_embed", "position_embedding.weight", "class_embedding"})) {
    t.scale = 0.5f;
  } else if (ends_with_any(name, {"image_newline", "view_seperator", "embed_tokens.weight"})) {
    t.scale = 1.0f;
  } else if (shape.size() == 1 && ends_with(name, ".weight")) {
    t.center = 1.0f;
    t.scale = 0.1f;
  } else if (ends_with(name, ".bias")) {
    t.scale = 0.05f;
  } else {
    double fan_in = 1;
    for (size_t d = 1; d < shape.size(); ++d) fan_in *= static_cast<double>(shape[d]);
    t.scale = static_cast<float>(std::sqrt(3.0 / fan_in));
  }
  return t;
}

// The loop vectorises; splitmix64's 64-bit multiplies only run natively with AVX-512 (vpmullq),
// 7x faster than the SSE2 emulation (0.22 vs 1.6 ns/value), so x86-64 builds carry clones that
// are picked at load time by the CPU. All clones compute the same bits: integer ops and float32
// ops that are exact, except the one multiply by scale (an FMA-contracted 2u - 1 is still exact).
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define DSOCR_SYNTH_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DSOCR_SYNTH_CLONES
#endif

DSOCR_SYNTH_CLONES
void synth_fill(const SynthTensor& t, int64_t begin, int64_t end, uint16_t* out) {
  const uint64_t base = t.base;
  const float scale = t.scale;
  if (t.center == 0.f) {
    for (int64_t i = begin; i < end; ++i) out[i - begin] = rne_bf16(scale * synth_r(base, i));
    return;
  }
  // Step 6 with a center: v = float32(float32(scale * r) + center), two roundings. The volatile
  // keeps a compiler from fusing the multiply and add into one FMA (GCC contracts across
  // statements when the target has FMA). Only the 1-D norm gains take this path: ~100k values.
  const float center = t.center;
  for (int64_t i = begin; i < end; ++i) {
    volatile float p = scale * synth_r(base, i);
    out[i - begin] = rne_bf16(p + center);
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

namespace fs = std::filesystem;

constexpr uint64_t kChunkBytes = 16ull << 20;  // one work item
constexpr int kMaxWorkers = 16;                // ring = workers + 4 chunks <= 320 MB

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

std::string gb(uint64_t bytes) {
  return strfmt("%.2f GB", static_cast<double>(bytes) / 1e9);
}

Status write_error(const std::string& path, int err, uint64_t at, uint64_t total) {
  if (err == ENOSPC || err == EDQUOT)
    return Status::Error(
        strfmt("%s: disk full after %s of %s; free space or write to another "
               "directory",
               path.c_str(), gb(at).c_str(), gb(total).c_str()));
  return Status::Error(strfmt("%s: write failed at byte %llu: %s", path.c_str(),
                              static_cast<unsigned long long>(at), std::strerror(err)));
}

Status pwrite_all(int fd, const void* data, uint64_t n, uint64_t offset, const std::string& path,
                  uint64_t total) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return write_error(path, errno, offset, total);
    }
    if (w == 0) return write_error(path, EIO, offset, total);
    p += w;
    n -= static_cast<uint64_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

// Write a small file whole, via a temporary name.
Status write_small_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0)
    return Status::Error(strfmt("%s: cannot create: %s", tmp.c_str(), std::strerror(errno)));
  Status s = pwrite_all(fd.get(), text.data(), text.size(), 0, tmp, text.size());
  if (s.ok() && ::close(fd.release()) != 0)
    s = Status::Error(strfmt("%s: close failed: %s", tmp.c_str(), std::strerror(errno)));
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    s = Status::Error(
        strfmt("%s: cannot rename to %s: %s", tmp.c_str(), path.c_str(), std::strerror(errno)));
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

// One tensor's extent in the data region, with its value constants.
struct Extent {
  uint64_t begin = 0;  // byte offset in the data region
  uint64_t end = 0;
  SynthTensor synth;
};

// Fill data bytes [lo, hi) (both even) from the tensors that overlap them.
void fill_range(const std::vector<Extent>& ext, uint64_t lo, uint64_t hi, uint16_t* out) {
  auto it = std::upper_bound(ext.begin(), ext.end(), lo,
                             [](uint64_t v, const Extent& e) { return v < e.end; });
  for (; it != ext.end() && it->begin < hi; ++it) {
    const uint64_t a = std::max(lo, it->begin), b = std::min(hi, it->end);
    synth_fill(it->synth, static_cast<int64_t>((a - it->begin) / 2),
               static_cast<int64_t>((b - it->begin) / 2), out + (a - lo) / 2);
  }
}

// Computes chunks on worker threads into a ring of buffers; the caller takes them in order.
class ChunkPipeline {
 public:
  ChunkPipeline(const std::vector<Extent>& ext, uint64_t data_bytes, int workers)
      : ext_(ext),
        data_bytes_(data_bytes),
        n_chunks_(static_cast<int64_t>((data_bytes + kChunkBytes - 1) / kChunkBytes)),
        ring_(workers + 4) {
    for (Slot& s : ring_) s.buf.resize(kChunkBytes / 2);
    try {
      for (int w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
    } catch (...) {
      shutdown();
      throw;
    }
  }
  ~ChunkPipeline() { shutdown(); }

  int64_t n_chunks() const { return n_chunks_; }
  uint64_t chunk_begin(int64_t c) const { return static_cast<uint64_t>(c) * kChunkBytes; }
  uint64_t chunk_size(int64_t c) const {
    return std::min(kChunkBytes, data_bytes_ - chunk_begin(c));
  }

  // Wait for chunk c (taken strictly in order 0, 1, ...) and return its bytes.
  const uint16_t* wait(int64_t c) {
    Slot& s = ring_[c % ring_.size()];
    std::unique_lock<std::mutex> lk(m_);
    ready_.wait(lk, [&] { return s.chunk == c; });
    return s.buf.data();
  }
  // Chunk c has been consumed; its slot may take chunk c + ring size.
  void release(int64_t c) {
    {
      std::lock_guard<std::mutex> lk(m_);
      consumed_ = c + 1;
    }
    room_.notify_all();
  }

 private:
  void shutdown() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    room_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

  struct Slot {
    std::vector<uint16_t> buf;
    int64_t chunk = -1;  // the chunk the buffer holds, once computed
  };

  void work() {
    for (;;) {
      int64_t c;
      {
        std::unique_lock<std::mutex> lk(m_);
        room_.wait(lk, [&] {
          return stop_ || next_ >= n_chunks_ ||
                 next_ < consumed_ + static_cast<int64_t>(ring_.size());
        });
        if (stop_ || next_ >= n_chunks_) return;
        c = next_++;
      }
      Slot& s = ring_[c % ring_.size()];
      fill_range(ext_, chunk_begin(c), chunk_begin(c) + chunk_size(c), s.buf.data());
      {
        std::lock_guard<std::mutex> lk(m_);
        s.chunk = c;
      }
      ready_.notify_all();
    }
  }

  const std::vector<Extent>& ext_;
  const uint64_t data_bytes_;
  const int64_t n_chunks_;
  std::vector<Slot> ring_;
  std::vector<std::thread> threads_;
  std::mutex m_;
  std::condition_variable room_, ready_;
  int64_t next_ = 0, consumed_ = 0;
  bool stop_ = false;
};

Status write_model_file(const std::string& path, const std::string& header,
                        const std::vector<Extent>& ext, uint64_t data_bytes,
                        const std::function<void(uint64_t, uint64_t)>& progress) {
  const std::string tmp = path + kSynthTempSuffix;
  const uint64_t total = header.size() + data_bytes;
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0)
    return Status::Error(strfmt("%s: cannot create: %s", tmp.c_str(), std::strerror(errno)));
  // Reserve the space up front: a full disk fails now, not after minutes of writing. Filesystems
  // without fallocate just skip this (EOPNOTSUPP).
  if (::fallocate(fd.get(), 0, 0, static_cast<off_t>(total)) != 0 &&
      (errno == ENOSPC || errno == EDQUOT))
    return Status::Error(
        strfmt("%s: not enough free disk space for %s; free space or write to "
               "another directory",
               tmp.c_str(), gb(total).c_str()));

  DSOCR_TRY(pwrite_all(fd.get(), header.data(), header.size(), 0, tmp, total));
  if (progress) progress(header.size(), total);

  const unsigned hw = std::thread::hardware_concurrency();
  const int workers = std::clamp(static_cast<int>(hw == 0 ? 1 : hw), 1, kMaxWorkers);
  ChunkPipeline pipe(ext, data_bytes, workers);
  for (int64_t c = 0; c < pipe.n_chunks(); ++c) {
    const uint16_t* buf = pipe.wait(c);
    const uint64_t off = header.size() + pipe.chunk_begin(c);
    DSOCR_TRY(pwrite_all(fd.get(), buf, pipe.chunk_size(c), off, tmp, total));
    pipe.release(c);
    if (progress) progress(off + pipe.chunk_size(c), total);
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(total)) != 0)
    return Status::Error(strfmt("%s: truncate failed: %s", tmp.c_str(), std::strerror(errno)));
  if (::close(fd.release()) != 0)
    return Status::Error(strfmt("%s: close failed: %s", tmp.c_str(), std::strerror(errno)));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::Error(
        strfmt("%s: cannot rename to %s: %s", tmp.c_str(), path.c_str(), std::strerror(errno)));
  return Status::Ok();
}

}  // namespace

Status write_synth_checkpoint(const std::string& dir, uint64_t seed,
                              const std::function<void(uint64_t done, uint64_t total)>& progress) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::Error(dir + ": cannot create directory: " + ec.message());
  if (!fs::is_directory(dir, ec)) return Status::Error(dir + ": exists and is not a directory");

  const std::string config_text = official_config_json();
  const std::string config_path = (fs::path(dir) / "config.json").string();
  DSOCR_ASSIGN_OR_RETURN(ModelConfig cfg, parse_config(config_text, config_path));
  const std::vector<TensorSpec> schema = checkpoint_schema(cfg);
  std::vector<TensorInfo> infos = schema_tensor_infos(schema);
  DSOCR_ASSIGN_OR_RETURN(std::string header,
                         try_build_safetensors_header(infos, {{"format", "pt"}}));

  std::vector<Extent> ext;
  ext.reserve(infos.size());
  for (size_t i = 0; i < infos.size(); ++i) {
    Extent e;
    e.begin = infos[i].offset - header.size();
    e.end = e.begin + infos[i].nbytes;
    e.synth = synth_tensor(schema[i].name, schema[i].shape, seed);
    ext.push_back(e);
  }
  const uint64_t data_bytes = ext.empty() ? 0 : ext.back().end;

  DSOCR_TRY(write_small_file(config_path, config_text));
  const std::string model_path = (fs::path(dir) / kSynthModelFile).string();
  Status s;
  try {
    s = write_model_file(model_path, header, ext, data_bytes, progress);
  } catch (const std::exception& e) {  // thread creation or buffer allocation
    s = Status::Error(strfmt("%s: %s", model_path.c_str(), e.what()));
  }
  if (!s.ok()) ::unlink((model_path + kSynthTempSuffix).c_str());
  return s;
}

}  // namespace dsocr
