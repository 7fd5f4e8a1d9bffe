// Kernel launches for the decode step's chain of small kernels, with programmatic dependent launch
// (PDL, sm_90: PTX griddepcontrol, CUDA programming guide "Programmatic Dependent Launch and
// Synchronization"). A decode step is ~125 dependent kernels of 1-25 µs; without PDL each waits
// for the previous grid to drain before its first block starts, and HBM idles in the gap. With
// PDL a kernel's blocks start while the previous kernel still runs, issue their weight loads
// (weights never depend on an earlier kernel), then wait for the previous grid's results.
//
// The contract every kernel launched with cuda::launch keeps (internal to kernels/*.cu):
//   * Before pdl_wait() it reads only data no earlier kernel of the stream writes (weights, kernel
//     arguments) and writes nothing. Every thread that reads or writes activations calls
//     pdl_wait() first (it returns at once without a programmatic predecessor).
//   * pdl_trigger() after pdl_wait() lets the next kernel launch. Calling it only after the wait
//     keeps at most two kernels in flight, and keeps the chain transitive: kernel N+1's wait
//     covers N, and N finished only after its own wait covered N-1.
//   * Two kernels back: a kernel whose predecessor in the stream is always a kernel of this
//     contract may read, before its own wait, what the kernel before that predecessor (and earlier
//     ones) wrote: it cannot start before a block of its predecessor has passed its wait, which
//     covered that writer. moe_decode's down kernel reads the router's routing this way (gate_up
//     runs between them); its contract in moe.h names the kernel that must precede it. RoPE
//     reads its positions and page table this way (rope.h).
// DSOCR_PDL=0 in the environment launches the same kernels without the attribute (A/B timing:
// dsocr-bench decode reports both).
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace dsocr::cuda {

// Whether launches carry the PDL attribute (read once from DSOCR_PDL; default on).
bool pdl_enabled();

template <typename... KArgs, typename... Args>
cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  return e != cudaSuccess ? e : cudaGetLastError();
}

// Wait until the previous kernel of the stream has completed and its writes are visible.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Allow the next kernel of the stream to start launching (call after pdl_wait()).
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// Both, at the top of a kernel with nothing to load before its inputs are ready.
__device__ __forceinline__ void pdl_enter() {
  pdl_wait();
  pdl_trigger();
}

}  // namespace dsocr::cuda
