// Load-time quantization (DESIGN.md §7, issue 9): fills every slot that the memory plan stores as
// INT8 or INT4 (runtime/quant_policy.h decides which) from the checkpoint's BF16 tensor. Rows go
// from the mapped file through a device staging buffer in blocks (H2D copy of the BF16 rows, then
// kernels/quant.h quantize_int8 / quantize_int4 into the slot's values and scales), so the staging
// buffer can be any device scratch that is idle at load time (GpuModel uses the vision region,
// before the encoder is created). upload_weights() and upload_host_weights() leave these slots
// alone.
//
// A quantized tensor that the plan keeps in the host pool (routed experts under offload, issue 10)
// is quantized the same way, by the same kernels, into a second part of the staging buffer, and
// each block's values and scales are then copied into its pinned host slot (two D2H copies). Why
// not another route: the host copy must hold the very bytes an all-resident plan writes into its
// device slot, or offload would change the output (DESIGN.md §8), so the GPU quantizer is the one
// to use (quantize_*_ref on the CPU would be a second implementation to keep bit-identical, and
// slow for 4.8 GB of experts); and the quantize kernels writing straight through the host mapping
// would turn their narrow packed stores into PCIe transactions where a block copy is one DMA.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "loader/safetensors.h"
#include "loader/status.h"
#include "runtime/pool.h"

namespace dsocr {

struct QuantizeStats {
  int tensors = 0;
  uint64_t bf16_bytes = 0;    // read from the checkpoint
  uint64_t stored_bytes = 0;  // written: values + scales
  double seconds = 0;
};

// PRECOND: the pool's plan was made for this checkpoint; host: the host pool of the same plan
// (null or empty when the plan keeps nothing quantized on the host); staging: device memory of
// staging_bytes (>= one row of the widest quantized tensor, 13,696 bytes for the model, or for a
// host tensor that row plus its values and scales and 32 bytes of alignment), 16-byte aligned,
// not used by anything else until this returns. Blocks until the last kernel and copy are done.
Status quantize_weights(const Checkpoint& ckpt, const DevicePool& pool, const HostPool* host,
                        uint8_t* staging, uint64_t staging_bytes, cudaStream_t stream,
                        QuantizeStats* stats = nullptr);

}  // namespace dsocr
