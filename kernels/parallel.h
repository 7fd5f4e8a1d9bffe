// A small fork-join thread pool for the CPU reference backend.
//
// parallel_for(n, fn) calls fn(begin, end) over disjoint chunks of [0, n) on all worker threads
// and returns when every chunk is done. Workers are created once (DSOCR_THREADS or
// std::thread::hardware_concurrency()). Nested calls run serially on the calling thread.
#pragma once

#include <cstdint>
#include <functional>

namespace dsocr {

int cpu_threads();            // number of workers (>= 1)
void set_cpu_threads(int n);  // resize the pool (0 = default); not while a parallel_for runs

// fn(begin, end) over chunks of at least `grain` items.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

// Grow-only, 64-byte aligned scratch of the calling thread, one buffer per slot. Ops that run on
// the same thread at the same time (attention calls the GEMM engine) use different slots.
enum class ScratchSlot : int { kGemmA, kGemmB, kAttnK, kAttnV, kAttnScores, kCount };
float* thread_scratch(ScratchSlot slot, size_t floats);

}  // namespace dsocr
