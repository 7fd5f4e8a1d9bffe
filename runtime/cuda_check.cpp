#include "runtime/cuda_check.h"

#include <cstring>

namespace dsocr {
namespace {

// "…/dsocr/runtime/pool.cpp" -> "runtime/pool.cpp": the last two path components are enough to
// find the line, and keep messages independent of where the tree was built.
std::string short_path(const char* file) {
  const char* last = std::strrchr(file, '/');
  if (!last) return file;
  const char* p = last;
  while (p > file && p[-1] != '/') --p;  // start of the parent directory's name
  if (p > file) return p;
  return file;
}

Status failure(const char* expr, const char* file, int line, const char* name, const char* what) {
  return Status::Error(strfmt("%s:%d: %s failed: %s (%s)", short_path(file).c_str(), line, expr,
                              name ? name : "unknown error", what ? what : "no description"));
}

}  // namespace

Status cuda_error_status(cudaError_t e, const char* expr, const char* file, int line) {
  if (e == cudaSuccess) return Status::Ok();
  return failure(expr, file, line, cudaGetErrorName(e), cudaGetErrorString(e));
}

Status cuda_error_status(cublasStatus_t e, const char* expr, const char* file, int line) {
  if (e == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return failure(expr, file, line, cublasGetStatusName(e), cublasGetStatusString(e));
}

Status cuda_device_available(int* count) {
  if (count) *count = 0;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    if (driver == 0)
      return Status::Error(strfmt("no NVIDIA driver found (%s)", cudaGetErrorName(e)));
    if (e == cudaErrorInsufficientDriver)
      return Status::Error(
          strfmt("the NVIDIA driver supports CUDA %d.%d but dsocr was built with "
                 "CUDA %d.%d; update the driver",
                 driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10));
    return Status::Error(
        strfmt("no usable CUDA GPU: %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e)));
  }
  if (n == 0) return Status::Error("no CUDA GPU found");
  if (count) *count = n;
  return Status::Ok();
}

Status capture_graph(cudaStream_t stream, const std::function<Status()>& record,
                     cudaGraphExec_t* exec) {
  *exec = nullptr;
  cudaGraph_t graph = nullptr;
  DSOCR_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const Status s = record();
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (!s.ok()) {
    if (graph) cudaGraphDestroy(graph);
    return s;
  }
  DSOCR_CUDA_TRY(end);
  const cudaError_t inst = cudaGraphInstantiate(exec, graph, 0);
  cudaGraphDestroy(graph);
  if (inst != cudaSuccess) *exec = nullptr;
  DSOCR_CUDA_TRY(inst);
  return Status::Ok();
}

std::string cuda_unavailable_reason() {
  Status s = cuda_device_available();
  return s.ok() ? std::string() : s.message();
}

Status cuda_mem_info(int device, uint64_t* free_bytes, uint64_t* total_bytes) {
  int n = 0;
  DSOCR_TRY(cuda_device_available(&n));
  if (device < 0 || device >= n)
    return Status::Error(strfmt("GPU %d does not exist (%d GPU%s found: 0..%d)", device, n,
                                n == 1 ? "" : "s", n - 1));
  DSOCR_CUDA_TRY(cudaSetDevice(device));
  size_t f = 0, t = 0;
  DSOCR_CUDA_TRY(cudaMemGetInfo(&f, &t));
  if (free_bytes) *free_bytes = f;
  if (total_bytes) *total_bytes = t;
  return Status::Ok();
}

}  // namespace dsocr
