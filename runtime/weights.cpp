#include "runtime/weights.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include "kernels/parallel.h"  // cpu_threads, parallel_for
#include "runtime/cuda_check.h"

namespace dsocr {
namespace {

constexpr uint64_t kBlock = 4096;  // O_DIRECT alignment of offsets, lengths and buffers

uint64_t round_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// RAII holders for the host resources of one upload.
class PinnedBuffer {
 public:
  static Expected<PinnedBuffer> alloc(uint64_t bytes) {
    PinnedBuffer b;
    cudaError_t e = cudaHostAlloc(&b.p_, bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return Status::Error(
          strfmt("cannot allocate %s of pinned staging memory: %s; use a smaller "
                 "chunk size or fewer staging buffers",
                 format_bytes(bytes).c_str(), cudaGetErrorString(e)));
    }
    return b;
  }
  PinnedBuffer() = default;
  PinnedBuffer(PinnedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  PinnedBuffer& operator=(PinnedBuffer&&) = delete;
  ~PinnedBuffer() {
    if (p_) cudaFreeHost(p_);
  }
  uint8_t* data() const { return static_cast<uint8_t*>(p_); }

 private:
  void* p_ = nullptr;
};

class Event {
 public:
  Event() = default;
  Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  Event& operator=(Event&&) = delete;
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Status create() {
    DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming));
    return Status::Ok();
  }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

class Stream {
 public:
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Status create() {
    DSOCR_CUDA_TRY(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
    return Status::Ok();
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// pread until `len` bytes or end of file; *got = bytes read.
Status pread_full(int fd, uint8_t* dst, uint64_t len, uint64_t off, const std::string& path,
                  uint64_t* got) {
  uint64_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, dst + done, len - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return Status::Error(
          strfmt("%s: read of %llu bytes at offset %llu failed: %s; check the "
                 "disk, or load with another read method",
                 path.c_str(), static_cast<unsigned long long>(len - done),
                 static_cast<unsigned long long>(off + done), std::strerror(errno)));
    if (n == 0) break;  // end of file
    done += static_cast<uint64_t>(n);
  }
  *got = done;
  return Status::Ok();
}

// One tensor as the upload walks a file: [begin, end) in the file, destination in the pool.
struct Piece {
  uint64_t begin, end;
  uint8_t* dst;
};

}  // namespace

const char* read_method_name(ReadMethod m) {
  switch (m) {
    case ReadMethod::kMmap:
      return "mmap";
    case ReadMethod::kPread:
      return "pread";
    case ReadMethod::kDirect:
      return "direct";
  }
  return "?";
}

Expected<ReadMethod> parse_read_method(std::string_view name) {
  for (ReadMethod m : {ReadMethod::kMmap, ReadMethod::kPread, ReadMethod::kDirect})
    if (name == read_method_name(m)) return m;
  return Status::Error(strfmt("read method '%.*s' unknown; use mmap, pread or direct",
                              static_cast<int>(name.size()), name.data()));
}

const DeviceTensor* WeightTable::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::function<const void*(const std::string&)> WeightTable::lookup() const {
  return [this](const std::string& name) -> const void* {
    const DeviceTensor* t = find(name);
    return t ? t->data : nullptr;
  };
}

Status WeightTable::add(DeviceTensor t) {
  if (!index_.emplace(t.name, tensors_.size()).second)
    return Status::Error("tensor " + t.name + " added twice to the weight table (internal error)");
  tensors_.push_back(std::move(t));
  return Status::Ok();
}

Expected<WeightTable> upload_weights(const Checkpoint& ckpt, const DevicePool& pool,
                                     const UploadOptions& options, UploadStats* stats_out) {
  if (!pool.base()) return Status::Error("upload into an unallocated device pool (internal error)");
  if (options.buffers_per_thread < 1 || options.buffers_per_thread > 8)
    return Status::Error(
        strfmt("%d staging buffers per reader thread: must be 1..8", options.buffers_per_thread));
  if (options.read_threads < 0 || options.read_threads > 64)
    return Status::Error(
        strfmt("%d reader threads: must be 1..64 (0: default)", options.read_threads));
  if (options.chunk_bytes < kBlock || options.chunk_bytes > (1ull << 30))
    return Status::Error(strfmt("staging chunk of %llu bytes: must be 4 KiB..1 GiB",
                                static_cast<unsigned long long>(options.chunk_bytes)));
  const uint64_t chunk = round_up(options.chunk_bytes, kBlock);

  // Every tensor must have a slot of its size in the pool's plan.
  const MemoryPlan& plan = pool.plan();
  WeightTable table;
  std::vector<std::vector<Piece>> pieces(ckpt.files().size());
  for (const TensorInfo& t : ckpt.tensors()) {
    const TensorSlot* slot = plan.find_tensor(t.name);
    // A slot the plan stores quantized is filled by quantize_weights (runtime/weights_quant.h).
    const bool quantized = slot && slot->stored.format != WeightFormat::kBf16;
    if (!slot || (!quantized && slot->nbytes != t.nbytes))
      return Status::Error(
          strfmt("%s: tensor %s (%llu bytes) has no slot of that size in the "
                 "memory plan; plan with this checkpoint's weight_entries()",
                 ckpt.files()[t.shard].path().c_str(), t.name.c_str(),
                 static_cast<unsigned long long>(t.nbytes)));
    if (slot->where == Residency::kHost) continue;  // upload_host_weights()
    uint8_t* dst = pool.base() + plan.tensor_offset(*slot);
    DSOCR_TRY(table.add(DeviceTensor{t.name, t.dtype, t.shape, dst, slot->nbytes}));
    if (t.nbytes > 0 && !quantized) pieces[t.shard].push_back(Piece{t.offset, t.offset + t.nbytes, dst});
  }

  // Per file: the descriptor, the method (O_DIRECT may be refused) and the chunks of its data.
  struct FileJob {
    const std::string* path = nullptr;
    const uint8_t* map_base = nullptr;  // start of the mapping (offsets are absolute)
    ReadMethod method = ReadMethod::kPread;
    Fd fd;
  };
  struct Chunk {
    int file;
    uint64_t begin, end;  // file offsets; begin is 4 KiB aligned
  };
  std::vector<FileJob> files(ckpt.files().size());
  std::vector<Chunk> chunks;
  UploadStats st;
  st.method = options.method;
  for (size_t f = 0; f < files.size(); ++f) {
    std::vector<Piece>& ps = pieces[f];
    if (ps.empty()) continue;
    std::sort(ps.begin(), ps.end(),
              [](const Piece& a, const Piece& b) { return a.begin < b.begin; });
    const SafetensorsFile& file = ckpt.files()[f];
    FileJob& job = files[f];
    job.path = &file.path();
    const TensorInfo& any = file.tensors().front();
    job.map_base = file.bytes(any) - any.offset;
    job.method = options.method;
    if (job.method == ReadMethod::kDirect) {
      job.fd = Fd(::open(job.path->c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
      if (job.fd.get() < 0) job.method = ReadMethod::kPread;  // e.g. tmpfs: EINVAL
    }
    if (job.method == ReadMethod::kPread) {
      job.fd = Fd(::open(job.path->c_str(), O_RDONLY | O_CLOEXEC));
      if (job.fd.get() < 0)
        return Status::Error(*job.path + ": cannot open for reading: " + std::strerror(errno));
    }
    st.method = job.method;
    const uint64_t first = ps.front().begin / kBlock * kBlock, last = ps.back().end;
    for (uint64_t c0 = first; c0 < last; c0 += chunk)
      chunks.push_back(Chunk{static_cast<int>(f), c0, std::min(last, c0 + chunk)});
  }
  const int threads = static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(static_cast<int64_t>(chunks.size()), options.read_threads > 0
                                                                    ? options.read_threads
                                                                    : std::min(8, cpu_threads()))));

  DSOCR_CUDA_TRY(cudaSetDevice(pool.device()));
  Stream stream;
  DSOCR_TRY(stream.create());
  const int n_bufs = threads * options.buffers_per_thread;
  std::vector<PinnedBuffer> bufs;
  std::vector<Event> done(n_bufs);
  for (int b = 0; b < n_bufs; ++b) {
    DSOCR_ASSIGN_OR_RETURN(PinnedBuffer buf, PinnedBuffer::alloc(chunk));
    bufs.push_back(std::move(buf));
    DSOCR_TRY(done[b].create());
  }
  // On an early error return, copies may still read the staging buffers: wait for them before the
  // buffers are freed (destruction runs in reverse order of declaration).
  struct DrainOnExit {
    cudaStream_t s;
    ~DrainOnExit() { cudaStreamSynchronize(s); }
  } drain{stream.get()};

  // Reader t takes chunks t, t + threads, ... and cycles through its own buffers; the copy of one
  // of its chunks overlaps its next read and every other reader's reads.
  std::atomic<bool> failed{false};
  std::vector<Status> errors(threads);
  std::vector<UploadStats> per(threads);
  auto reader = [&](int t) -> Status {
    DSOCR_CUDA_TRY(cudaSetDevice(pool.device()));  // the current device is per thread
    UploadStats& my = per[t];
    for (size_t k = t, j = 0; k < chunks.size() && !failed.load(); k += threads, ++j) {
      const Chunk& c = chunks[k];
      const FileJob& job = files[c.file];
      const int b = t * options.buffers_per_thread +
                    static_cast<int>(j % static_cast<size_t>(options.buffers_per_thread));
      uint8_t* buf = bufs[b].data();
      const double w0 = now_seconds();
      DSOCR_CUDA_TRY(cudaEventSynchronize(done[b].get()));  // its last copies are done
      const double r0 = now_seconds();
      my.wait_seconds += r0 - w0;

      const uint64_t len = c.end - c.begin;
      if (job.method == ReadMethod::kMmap) {
        std::memcpy(buf, job.map_base + c.begin, len);
      } else {
        // O_DIRECT needs whole blocks; the last one may run past the end of the file.
        const uint64_t ask = job.method == ReadMethod::kDirect ? round_up(len, kBlock) : len;
        uint64_t got = 0;
        DSOCR_TRY(pread_full(job.fd.get(), buf, ask, c.begin, *job.path, &got));
        if (got < len)
          return Status::Error(strfmt(
              "%s: file ended at byte %llu, inside its data region (%llu bytes expected); the "
              "file was truncated or replaced while loading",
              job.path->c_str(), static_cast<unsigned long long>(c.begin + got),
              static_cast<unsigned long long>(c.end)));
      }
      my.read_seconds += now_seconds() - r0;
      my.file_bytes += len;

      // Copy every tensor piece inside [begin, end) to its slot.
      const std::vector<Piece>& ps = pieces[c.file];
      auto it = std::upper_bound(ps.begin(), ps.end(), c.begin,
                                 [](uint64_t x, const Piece& p) { return x < p.end; });
      for (; it != ps.end() && it->begin < c.end; ++it) {
        const uint64_t a = std::max(it->begin, c.begin), z = std::min(it->end, c.end);
        DSOCR_CUDA_TRY(cudaMemcpyAsync(it->dst + (a - it->begin), buf + (a - c.begin), z - a,
                                       cudaMemcpyHostToDevice, stream.get()));
        my.bytes += z - a;
      }
      DSOCR_CUDA_TRY(cudaEventRecord(done[b].get(), stream.get()));
      ++my.chunks;
    }
    return Status::Ok();
  };

  const double t0 = now_seconds();
  std::vector<std::thread> readers;
  for (int t = 1; t < threads; ++t)
    readers.emplace_back([&, t] {
      errors[t] = reader(t);
      if (!errors[t].ok()) failed = true;
    });
  errors[0] = reader(0);
  if (!errors[0].ok()) failed = true;
  for (std::thread& th : readers) th.join();
  for (const Status& e : errors) DSOCR_TRY(e);
  DSOCR_CUDA_TRY(cudaStreamSynchronize(stream.get()));
  st.seconds = now_seconds() - t0;
  st.threads = threads;
  for (const UploadStats& p : per) {
    st.bytes += p.bytes;
    st.file_bytes += p.file_bytes;
    st.chunks += p.chunks;
    st.read_seconds += p.read_seconds / threads;
    st.wait_seconds += p.wait_seconds / threads;
  }
  if (stats_out) *stats_out = st;
  return table;
}

Status upload_host_weights(const Checkpoint& ckpt, const HostPool& host, WeightTable& table) {
  struct Copy {
    const uint8_t* src;
    uint8_t* dst;
    uint64_t nbytes;
  };
  std::vector<Copy> copies;
  for (const TensorInfo& t : ckpt.tensors()) {
    uint8_t* dst = host.host_address(t.name);
    if (!dst) continue;  // on the device
    // A slot the plan stores quantized: quantize_weights (runtime/weights_quant.h) fills it.
    const TensorSlot& slot = *host.plan().find_tensor(t.name);
    const bool quantized = slot.stored.format != WeightFormat::kBf16;
    DSOCR_TRY(table.add(
        DeviceTensor{t.name, t.dtype, t.shape, host.device_address(t.name), slot.nbytes}));
    if (!quantized) copies.push_back(Copy{ckpt.bytes(t), dst, t.nbytes});
  }
  parallel_for(static_cast<int64_t>(copies.size()), [&](int64_t a, int64_t z) {
    for (int64_t i = a; i < z; ++i) std::memcpy(copies[i].dst, copies[i].src, copies[i].nbytes);
  });
  return Status::Ok();
}

}  // namespace dsocr
