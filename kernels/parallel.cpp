#include "kernels/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace dsocr {
namespace {

thread_local bool t_in_parallel = false;

// Workers wait for a generation counter to change, then pull chunks from a shared atomic index.
class Pool {
 public:
  explicit Pool(int n) { start(n); }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    stop();
    start(n);
  }

  void run(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> run_lock(run_mu_);  // one parallel_for at a time
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      next_.store(0);
      pending_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void start(int n) {
    quit_ = false;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { loop(); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }
  void work() {
    t_in_parallel = true;
    for (;;) {
      int64_t b = next_.fetch_add(chunk_);
      if (b >= n_) break;
      (*fn_)(b, std::min(n_, b + chunk_));
    }
    t_in_parallel = false;
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        if (quit_) return;
      }
      work();
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> next_{0};
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

int default_threads() {
  if (const char* e = std::getenv("DSOCR_THREADS")) {
    int n = std::atoi(e);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

float* thread_scratch(ScratchSlot slot, size_t floats) {
  struct Buf {
    float* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[static_cast<int>(ScratchSlot::kCount)];
  Buf& b = bufs[static_cast<int>(slot)];
  if (b.n < floats) {
    std::free(b.p);
    b.n = (floats + 15) / 16 * 16;
    b.p = static_cast<float*>(std::aligned_alloc(64, b.n * sizeof(float)));
    if (!b.p) std::abort();  // a few MB of scratch: nothing sensible to do without it
  }
  return b.p;
}

int cpu_threads() {
  return pool().size();
}

void set_cpu_threads(int n) {
  pool().resize(n > 0 ? n : default_threads());
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  Pool& p = pool();
  if (t_in_parallel || p.size() == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  // About 4 chunks per thread for balance, never smaller than the grain.
  int64_t chunk = std::max(grain, (n + 4 * p.size() - 1) / (4 * p.size()));
  p.run(n, chunk, fn);
}

}  // namespace dsocr
