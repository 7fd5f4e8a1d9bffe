// dsocr-loadbench: the three rates that bound checkpoint loading, measured on this machine, so the
// load rate can be reported as a fraction of them (bench/RESULTS.md "Loading").
//
//   dsocr-loadbench disk FILE [--direct] [--threads N] [--chunk SIZE]
//       read the whole file once (pread; --direct: O_DIRECT, bypassing the page cache), GB/s.
//       Drop the page cache first for a cold number (bench/device_foundation.sh does).
//   dsocr-loadbench h2d [--size SIZE] [--reps N]
//       pinned host -> device cudaMemcpyAsync, CUDA events, warm-up, median of N (default 20),
//       for one SIZE buffer (default 1G) and for the 64 MiB staging chunk.
//   dsocr-loadbench load DIR [--method mmap|pread|direct] [--chunk SIZE] [--buffers PER_THREAD]
//                            [--threads N] [--repeat N]
//       open + validate + plan + pool + upload_weights(), per stage; --repeat for warm runs.
// One result line per measurement: "<what> key=value ...".
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "loader/config.h"
#include "loader/safetensors.h"
#include "loader/schema.h"
#include "runtime/cuda_check.h"
#include "runtime/planner.h"
#include "runtime/pool.h"
#include "runtime/weights.h"

namespace dsocr {
namespace {

constexpr const char* kTool = "dsocr-loadbench";

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Args {
  std::string cmd, path;
  bool direct = false;
  int threads = 0, reps = 20, buffers = 2, repeat = 1;
  uint64_t chunk = 64ull << 20, size = 1ull << 30;
  bool chunk_set = false;  // load: default to UploadOptions' chunk
  ReadMethod method = UploadOptions{}.method;
};

Expected<Args> parse(int argc, char** argv) {
  Args a;
  if (argc < 2) return Status::Error("no command; use disk FILE, h2d or load DIR");
  a.cmd = argv[1];
  int i = 2;
  if (a.cmd == "disk" || a.cmd == "load") {
    if (argc < 3) return Status::Error(a.cmd + " needs a path");
    a.path = argv[i++];
  } else if (a.cmd != "h2d") {
    return Status::Error("unknown command '" + a.cmd + "'; use disk FILE, h2d or load DIR");
  }
  for (; i < argc; ++i) {
    std::string f = argv[i];
    auto value = [&]() -> Expected<std::string> {
      if (i + 1 >= argc) return Status::Error(f + " needs a value");
      return std::string(argv[++i]);
    };
    auto number = [&](int* out) -> Status {
      DSOCR_ASSIGN_OR_RETURN(std::string v, value());
      *out = std::atoi(v.c_str());
      if (*out < 1) return Status::Error(f + " '" + v + "' must be a positive number");
      return Status::Ok();
    };
    auto size = [&](uint64_t* out) -> Status {
      DSOCR_ASSIGN_OR_RETURN(std::string v, value());
      DSOCR_ASSIGN_OR_RETURN(*out, parse_size(v));
      return Status::Ok();
    };
    if (f == "--direct") {
      a.direct = true;
    } else if (f == "--threads") {
      DSOCR_TRY(number(&a.threads));
    } else if (f == "--reps") {
      DSOCR_TRY(number(&a.reps));
    } else if (f == "--buffers") {
      DSOCR_TRY(number(&a.buffers));
    } else if (f == "--repeat") {
      DSOCR_TRY(number(&a.repeat));
    } else if (f == "--chunk") {
      DSOCR_TRY(size(&a.chunk));
      a.chunk_set = true;
    } else if (f == "--size") {
      DSOCR_TRY(size(&a.size));
    } else if (f == "--method") {
      DSOCR_ASSIGN_OR_RETURN(std::string v, value());
      DSOCR_ASSIGN_OR_RETURN(a.method, parse_read_method(v));
    } else {
      return Status::Error("unknown option '" + f + "'; see the comment at the top of " +
                           "tools/dsocr-loadbench.cpp");
    }
  }
  return a;
}

// Whole-file sequential read: `threads` readers take chunks round-robin into private buffers.
Status disk(const Args& a) {
  const int threads = a.threads > 0 ? a.threads : 4;
  const uint64_t chunk = (a.chunk + 4095) / 4096 * 4096;
  const int fd = ::open(a.path.c_str(), O_RDONLY | O_CLOEXEC | (a.direct ? O_DIRECT : 0));
  if (fd < 0) return Status::Error(a.path + ": cannot open: " + std::strerror(errno));
  const off_t size = ::lseek(fd, 0, SEEK_END);
  std::vector<Status> errors(threads);
  std::vector<uint64_t> got(threads, 0);
  const double t0 = now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      void* buf = nullptr;
      if (posix_memalign(&buf, 4096, chunk) != 0) {
        errors[t] = Status::Error("out of host memory for the read buffer");
        return;
      }
      for (uint64_t off = static_cast<uint64_t>(t) * chunk; off < static_cast<uint64_t>(size);
           off += static_cast<uint64_t>(threads) * chunk) {
        ssize_t n = ::pread(fd, buf, chunk, static_cast<off_t>(off));
        if (n < 0) {
          errors[t] = Status::Error(a.path + ": read failed: " + std::strerror(errno));
          break;
        }
        got[t] += static_cast<uint64_t>(n);
      }
      std::free(buf);
    });
  }
  for (auto& th : pool) th.join();
  const double s = now() - t0;
  ::close(fd);
  for (const Status& e : errors) DSOCR_TRY(e);
  uint64_t total = 0;
  for (uint64_t g : got) total += g;
  std::printf("disk file=%s mode=%s threads=%d chunk=%llu bytes=%llu seconds=%.3f GB/s=%.2f\n",
              a.path.c_str(), a.direct ? "direct" : "pread", threads,
              static_cast<unsigned long long>(chunk), static_cast<unsigned long long>(total), s,
              total / s * 1e-9);
  return Status::Ok();
}

Status h2d(const Args& a) {
  DSOCR_TRY(cuda_device_available());
  void* host = nullptr;
  void* dev = nullptr;
  DSOCR_CUDA_TRY(cudaHostAlloc(&host, a.size, cudaHostAllocDefault));
  Status s = [&]() -> Status {
    DSOCR_CUDA_TRY(cudaMalloc(&dev, a.size));
    std::memset(host, 0x5a, a.size);  // touch every page; nonzero data
    cudaEvent_t e0, e1;
    DSOCR_CUDA_TRY(cudaEventCreate(&e0));
    DSOCR_CUDA_TRY(cudaEventCreate(&e1));
    for (uint64_t bytes : {a.size, std::min<uint64_t>(a.size, 64ull << 20)}) {
      std::vector<float> ms;
      for (int r = 0; r < a.reps + 3; ++r) {  // 3 warm-up copies
        DSOCR_CUDA_TRY(cudaEventRecord(e0));
        DSOCR_CUDA_TRY(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice));
        DSOCR_CUDA_TRY(cudaEventRecord(e1));
        DSOCR_CUDA_TRY(cudaEventSynchronize(e1));
        float t = 0;
        DSOCR_CUDA_TRY(cudaEventElapsedTime(&t, e0, e1));
        if (r >= 3) ms.push_back(t);
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      std::printf(
          "h2d pinned bytes=%llu reps=%d median_ms=%.3f min_ms=%.3f max_ms=%.3f "
          "GB/s=%.2f\n",
          static_cast<unsigned long long>(bytes), a.reps, med, ms.front(), ms.back(),
          bytes / (med * 1e-3) * 1e-9);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return Status::Ok();
  }();
  if (dev) cudaFree(dev);
  cudaFreeHost(host);
  return s;
}

Status load(const Args& a) {
  DSOCR_TRY(cuda_device_available());
  for (int rep = 0; rep < a.repeat; ++rep) {
    const double t0 = now();
    DSOCR_ASSIGN_OR_RETURN(ModelConfig cfg,
                           load_config((std::filesystem::path(a.path) / "config.json").string()));
    DSOCR_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::open_dir(a.path));
    const std::vector<TensorSpec> schema = checkpoint_schema(cfg);
    DSOCR_TRY(validate_checkpoint(ckpt, schema));
    DSOCR_ASSIGN_OR_RETURN(std::vector<WeightEntry> entries, weight_entries(ckpt, schema));
    const double t1 = now();
    PlanOptions plan_options;
    plan_options.offload = false;  // the load rate of the whole checkpoint into the GPU
    DSOCR_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory(cfg, entries, plan_options));
    const double t2 = now();
    PoolOptions po;
    po.poison = false;
    DSOCR_ASSIGN_OR_RETURN(DevicePool pool, DevicePool::create(plan, po));
    const double t3 = now();
    UploadOptions uo;
    uo.method = a.method;
    uo.chunk_bytes = a.chunk_set ? a.chunk : UploadOptions{}.chunk_bytes;
    uo.buffers_per_thread = a.buffers;
    uo.read_threads = a.threads;
    UploadStats st;
    DSOCR_ASSIGN_OR_RETURN(WeightTable table, upload_weights(ckpt, pool, uo, &st));
    const double t4 = now();
    std::printf(
        "load dir=%s rep=%d method=%s chunk=%llu buffers=%d threads=%d tensors=%zu "
        "bytes=%llu open_validate_s=%.3f plan_s=%.4f pool_s=%.3f upload_s=%.3f "
        "read_s=%.3f wait_s=%.3f total_s=%.3f upload_GB/s=%.2f total_GB/s=%.2f\n",
        a.path.c_str(), rep, read_method_name(st.method),
        static_cast<unsigned long long>(uo.chunk_bytes), a.buffers, st.threads, table.size(),
        static_cast<unsigned long long>(st.bytes), t1 - t0, t2 - t1, t3 - t2, t4 - t3,
        st.read_seconds, st.wait_seconds, t4 - t0, st.gb_per_s(), st.bytes / (t4 - t0) * 1e-9);
  }
  return Status::Ok();
}

}  // namespace
}  // namespace dsocr

int main(int argc, char** argv) {
  using namespace dsocr;
  Expected<Args> a = parse(argc, argv);
  if (!a.ok()) {
    std::fprintf(stderr, "%s: %s\n", kTool, a.message().c_str());
    return 2;
  }
  Status s = a->cmd == "disk" ? disk(*a) : a->cmd == "h2d" ? h2d(*a) : load(*a);
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", kTool, s.message().c_str());
    return 1;
  }
  return 0;
}
