// The device memory pool: one cudaMalloc of a MemoryPlan's total, carved into the plan's regions
// by offset (DESIGN.md §4). Nothing else allocates device memory after start-up.
//
// Poisoning: with PoolOptions::poison every non-weight region (KV cache, activations, sampling
// state) is filled with kPoison32 (0x7fc07fc0: a quiet NaN as FP32 and as two BF16), so a kernel
// that reads memory nobody wrote turns its output into NaN instead of plausible numbers. On by
// default in debug builds and when the environment sets DSOCR_POISON=1; tests turn it on.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string_view>

#include "loader/status.h"
#include "runtime/planner.h"

namespace dsocr {

struct PoolOptions {
  int device = 0;
  bool poison = poison_by_default();
  static bool poison_by_default();  // !NDEBUG, or DSOCR_POISON=1 in the environment
};

class DevicePool {
 public:
  // Allocate plan.total bytes on options.device (one cudaMalloc) and poison if asked. The plan is
  // copied; the pool does not refer to the caller's.
  static Expected<DevicePool> create(const MemoryPlan& plan, const PoolOptions& options = {});

  DevicePool() = default;
  DevicePool(DevicePool&& o) noexcept;
  DevicePool& operator=(DevicePool&& o) noexcept;
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;
  ~DevicePool();  // cudaFree

  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  int device() const { return device_; }
  const MemoryPlan& plan() const { return plan_; }

  // Start of a region, or null if the plan has none of that name.
  uint8_t* region(std::string_view name) const;
  // Device address of a checkpoint tensor's slot, or null if the plan has no such tensor or keeps
  // it in the host pool.
  uint8_t* tensor(std::string_view name) const;
  // Refill every non-weight region with kPoison32 (between test cases, or to find stale reads).
  Status poison(cudaStream_t stream = nullptr);

 private:
  MemoryPlan plan_;
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  int device_ = 0;
};

// The host pool of an offload plan (MemoryPlan::host_regions): one cudaHostAlloc of
// plan.host_total bytes, pinned, mapped into the device's address space and portable across
// devices. Kernels read it through device_address(); copies into the expert cache read it through
// host_address(). Freed by the destructor.
class HostPool {
 public:
  // An empty pool (base() null) when the plan keeps nothing on the host. The error names the size
  // and what to do when the host cannot pin that much.
  static Expected<HostPool> create(const MemoryPlan& plan);

  HostPool() = default;
  HostPool(HostPool&& o) noexcept;
  HostPool& operator=(HostPool&& o) noexcept;
  HostPool(const HostPool&) = delete;
  HostPool& operator=(const HostPool&) = delete;
  ~HostPool();  // cudaFreeHost

  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  const MemoryPlan& plan() const { return plan_; }
  // A host-pool tensor's slot as the CPU sees it, and as kernels see it; null if the plan has no
  // such tensor or keeps it on the device.
  uint8_t* host_address(std::string_view name) const;
  uint8_t* device_address(std::string_view name) const;

 private:
  MemoryPlan plan_;
  uint8_t* base_ = nullptr;
  uint8_t* device_base_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace dsocr
