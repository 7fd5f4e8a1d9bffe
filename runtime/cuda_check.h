// CUDA error checking that returns dsocr::Status instead of aborting.
//
//   DSOCR_CUDA_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream));
//   DSOCR_CUDA_TRY(cublasLtMatmul(...));   // cuBLAS and cuBLASLt return cublasStatus_t
//   launch<<<grid, block, 0, stream>>>(...); DSOCR_CUDA_TRY_LAUNCH();
//
// On failure the enclosing function returns a Status whose message holds the expression, the file
// and line, and the library's error name and string:
//   "runtime/pool.cpp:41: cudaMalloc(&base, 8000000000) failed: cudaErrorMemoryAllocation (out of
//    memory)"
// One macro family serves the CUDA runtime, cuBLAS and cuBLASLt: cuda_error_status() is overloaded
// on the status type. cudaErrorNotReady is an error here; query loops check it themselves.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>

#include "loader/status.h"

namespace dsocr {

// OK for cudaSuccess / CUBLAS_STATUS_SUCCESS, else an error naming expr, file:line and the error.
Status cuda_error_status(cudaError_t e, const char* expr, const char* file, int line);
Status cuda_error_status(cublasStatus_t e, const char* expr, const char* file, int line);

// Number of usable CUDA devices in *count (0 on failure). Fails with one line saying why there is
// no GPU (no driver, driver too old for this build's CUDA runtime, no device, ...).
Status cuda_device_available(int* count = nullptr);
// "" when a GPU is usable, else the reason (what GPU tests print when they GTEST_SKIP).
std::string cuda_unavailable_reason();

// Free and total memory of `device` (sets the current device).
Status cuda_mem_info(int device, uint64_t* free_bytes, uint64_t* total_bytes);

// Captures what `record` enqueues on `stream` (thread-local capture mode) and instantiates it into
// *exec (replaced; the caller destroys it). The stream leaves capture mode whatever happens; on
// failure *exec is null and the first error (record's, then capture's, then instantiation's) is
// returned. `stream` must not be the legacy default stream.
Status capture_graph(cudaStream_t stream, const std::function<Status()>& record,
                     cudaGraphExec_t* exec);

}  // namespace dsocr

#define DSOCR_CUDA_TRY(expr)                                           \
  do {                                                                 \
    ::dsocr::Status dsocr_cuda_status_ =                               \
        ::dsocr::cuda_error_status((expr), #expr, __FILE__, __LINE__); \
    if (!dsocr_cuda_status_.ok()) return dsocr_cuda_status_;           \
  } while (0)

// After a kernel launch: launch-configuration errors (and, with DSOCR_SYNC_CHECK defined, errors
// of the kernel itself, by synchronising the device; debug builds only).
#ifdef DSOCR_SYNC_CHECK
#define DSOCR_CUDA_TRY_LAUNCH()              \
  do {                                       \
    DSOCR_CUDA_TRY(cudaGetLastError());      \
    DSOCR_CUDA_TRY(cudaDeviceSynchronize()); \
  } while (0)
#else
#define DSOCR_CUDA_TRY_LAUNCH() DSOCR_CUDA_TRY(cudaGetLastError())
#endif
