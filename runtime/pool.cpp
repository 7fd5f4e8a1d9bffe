#include "runtime/pool.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "kernels/checksum.h"
#include "runtime/cuda_check.h"

namespace dsocr {

bool PoolOptions::poison_by_default() {
#ifndef NDEBUG
  return true;
#else
  const char* env = std::getenv("DSOCR_POISON");
  return env && std::strcmp(env, "1") == 0;
#endif
}

Expected<DevicePool> DevicePool::create(const MemoryPlan& plan, const PoolOptions& options) {
  if (plan.total == 0) return Status::Error("memory plan is empty (internal error)");
  int n = 0;
  DSOCR_TRY(cuda_device_available(&n));
  if (options.device < 0 || options.device >= n)
    return Status::Error(
        strfmt("GPU %d does not exist (%d found); pick a device 0..%d", options.device, n, n - 1));
  DSOCR_CUDA_TRY(cudaSetDevice(options.device));
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, plan.total);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    return Status::Error(
        strfmt("cannot allocate the %s device pool on GPU %d (%s free of %s): "
               "%s; lower the plan (smaller mode, fewer tokens) or free the GPU",
               format_bytes(plan.total).c_str(), options.device, format_bytes(free_bytes).c_str(),
               format_bytes(total_bytes).c_str(), cudaGetErrorString(e)));
  }
  DevicePool pool;
  pool.plan_ = plan;
  pool.base_ = static_cast<uint8_t*>(p);
  pool.size_ = plan.total;
  pool.device_ = options.device;
  if (options.poison) {
    DSOCR_TRY(pool.poison());
    DSOCR_CUDA_TRY(cudaDeviceSynchronize());
  }
  return pool;
}

DevicePool::DevicePool(DevicePool&& o) noexcept
    : plan_(std::move(o.plan_)),
      base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      device_(o.device_) {}

DevicePool& DevicePool::operator=(DevicePool&& o) noexcept {
  if (this != &o) {
    if (base_) cudaFree(base_);
    plan_ = std::move(o.plan_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    device_ = o.device_;
  }
  return *this;
}

DevicePool::~DevicePool() {
  if (base_) {
    int cur = 0;
    cudaGetDevice(&cur);
    if (cur != device_) cudaSetDevice(device_);
    cudaFree(base_);  // nothing to report to from a destructor
    if (cur != device_) cudaSetDevice(cur);
  }
}

uint8_t* DevicePool::region(std::string_view name) const {
  const Region* r = plan_.find_region(name);
  return r && base_ ? base_ + r->offset : nullptr;
}

uint8_t* DevicePool::tensor(std::string_view name) const {
  const TensorSlot* t = plan_.find_tensor(name);
  return t && base_ && t->where == Residency::kDevice ? base_ + plan_.tensor_offset(*t) : nullptr;
}

Status DevicePool::poison(cudaStream_t stream) {
  for (const Region& r : plan_.regions) {
    if (r.kind == RegionKind::kWeights || r.bytes == 0) continue;
    DSOCR_CUDA_TRY(fill_u32_device(base_ + r.offset, kPoison32, r.bytes, stream));
  }
  return Status::Ok();
}

Expected<HostPool> HostPool::create(const MemoryPlan& plan) {
  HostPool pool;
  if (plan.host_total == 0) return pool;
  void* p = nullptr;
  const cudaError_t e =
      cudaHostAlloc(&p, plan.host_total, cudaHostAllocMapped | cudaHostAllocPortable);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Status::Error(
        strfmt("cannot pin %s of host memory for the offloaded weights (%s): %s; free host memory, "
               "raise --gpu-mem or use a smaller --mode",
               format_bytes(plan.host_total).c_str(), cudaGetErrorName(e), cudaGetErrorString(e)));
  }
  pool.plan_ = plan;
  pool.base_ = static_cast<uint8_t*>(p);
  pool.size_ = plan.host_total;
  void* d = nullptr;
  DSOCR_CUDA_TRY(cudaHostGetDevicePointer(&d, p, 0));
  pool.device_base_ = static_cast<uint8_t*>(d);
  return pool;
}

HostPool::HostPool(HostPool&& o) noexcept
    : plan_(std::move(o.plan_)),
      base_(std::exchange(o.base_, nullptr)),
      device_base_(std::exchange(o.device_base_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

HostPool& HostPool::operator=(HostPool&& o) noexcept {
  if (this != &o) {
    if (base_) cudaFreeHost(base_);
    plan_ = std::move(o.plan_);
    base_ = std::exchange(o.base_, nullptr);
    device_base_ = std::exchange(o.device_base_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

HostPool::~HostPool() {
  if (base_) cudaFreeHost(base_);  // nothing to report to from a destructor
}

uint8_t* HostPool::host_address(std::string_view name) const {
  const TensorSlot* t = plan_.find_tensor(name);
  return t && base_ && t->where == Residency::kHost ? base_ + plan_.tensor_offset(*t) : nullptr;
}

uint8_t* HostPool::device_address(std::string_view name) const {
  const TensorSlot* t = plan_.find_tensor(name);
  return t && base_ && t->where == Residency::kHost ? device_base_ + plan_.tensor_offset(*t)
                                                    : nullptr;
}

}  // namespace dsocr
