// Load-time quantization (DESIGN.md §7, issue 9): fills every slot that the memory plan stores as
// INT8 or INT4 (runtime/quant_policy.h decides which) from the checkpoint's BF16 tensor. Rows go
// from the mapped file through a device staging buffer in blocks (H2D copy of the BF16 rows, then
// kernels/quant.h quantize_int8 / quantize_int4 into the slot's values and scales), so the staging
// buffer can be any device scratch that is idle at load time (GpuModel uses the vision region,
// before the encoder is created). upload_weights() leaves these slots alone.
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

// PRECOND: the pool's plan was made for this checkpoint; staging: device memory of staging_bytes
// (>= one row of the widest quantized tensor: 13,696 bytes for the model), 16-byte aligned, not
// used by anything else until this returns. Blocks until the last kernel is done.
Status quantize_weights(const Checkpoint& ckpt, const DevicePool& pool, uint8_t* staging,
                        uint64_t staging_bytes, cudaStream_t stream,
                        QuantizeStats* stats = nullptr);

}  // namespace dsocr
