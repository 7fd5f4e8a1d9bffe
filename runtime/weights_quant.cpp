#include "runtime/weights_quant.h"

#include <algorithm>
#include <chrono>

#include "kernels/quant.h"
#include "runtime/cuda_check.h"

namespace dsocr {

namespace {

uint64_t align16(uint64_t x) {
  return (x + 15) / 16 * 16;
}

}  // namespace

Status quantize_weights(const Checkpoint& ckpt, const DevicePool& pool, const HostPool* host,
                        uint8_t* staging, uint64_t staging_bytes, cudaStream_t stream,
                        QuantizeStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const MemoryPlan& plan = pool.plan();
  QuantizeStats st;
  for (const TensorInfo& t : ckpt.tensors()) {
    const TensorSlot* slot = plan.find_tensor(t.name);
    if (!slot || slot->stored.format == WeightFormat::kBf16) continue;
    const StoredFormat f = slot->stored;
    if (t.dtype != DType::BF16 || t.shape.size() != 2)
      return Status::Error(strfmt("%s: only 2-D BF16 linear weights can be quantized (%s); "
                                  "this is a quantization-policy bug, please report it",
                                  t.name.c_str(), t.shape_str().c_str()));
    const int64_t n = t.shape[0], k = t.shape[1];
    DSOCR_TRY(check_quant_shape(f.format, n, k, f.group));
    if (slot->nbytes != quant_bytes(f.format, n, k, f.group))
      return Status::Error(strfmt("%s: plan slot of %llu bytes, %s needs %llu (planner bug)",
                                  t.name.c_str(), static_cast<unsigned long long>(slot->nbytes),
                                  stored_format_name(f).c_str(),
                                  static_cast<unsigned long long>(
                                      quant_bytes(f.format, n, k, f.group))));
    // The slot: in the device pool, or (offload) in the host pool, as the CPU sees it.
    const bool on_host = slot->where == Residency::kHost;
    uint8_t* values = on_host ? (host ? host->host_address(t.name) : nullptr)
                              : pool.base() + plan.tensor_offset(*slot);
    if (!values)
      return Status::Error(
          strfmt("%s: the plan keeps it in the host pool, but no host pool was "
                 "given (internal error)",
                 t.name.c_str()));
    auto* scales = reinterpret_cast<uint16_t*>(values + quant_value_bytes(f.format, n, k));
    const uint64_t row_in = static_cast<uint64_t>(k) * 2;
    const uint64_t row_out = quant_value_bytes(f.format, 1, k);
    const int64_t row_scales = static_cast<int64_t>(quant_scale_bytes(f.format, 1, k, f.group) / 2);
    // Rows per block: what the staging buffer holds (the BF16 rows; for a host slot also their
    // values and scales, each part 16-byte aligned), a multiple of 8 unless the tensor is smaller.
    const uint64_t slack = on_host ? 32 : 0;
    const uint64_t per_row = row_in + (on_host ? row_out + row_scales * 2 : 0);
    int64_t block =
        staging_bytes > slack ? static_cast<int64_t>((staging_bytes - slack) / per_row) : 0;
    if (block < 1)
      return Status::Error(
          strfmt("%s: staging buffer of %llu bytes holds no row of %llu bytes "
                 "(internal error)",
                 t.name.c_str(), static_cast<unsigned long long>(staging_bytes),
                 static_cast<unsigned long long>(per_row + slack)));
    if (block >= 8) block = block / 8 * 8;
    uint8_t* staged_values = staging + align16(block * row_in);
    auto* staged_scales = reinterpret_cast<uint16_t*>(staged_values + align16(block * row_out));
    const uint8_t* src = ckpt.bytes(t);
    for (int64_t r0 = 0; r0 < n; r0 += block) {
      const int64_t rows = std::min(block, n - r0);
      // Stream order: this block's copy into the staging buffer runs after the previous block's
      // kernel has read it, and its kernel after the previous block's D2H copies.
      DSOCR_CUDA_TRY(cudaMemcpyAsync(staging, src + r0 * row_in, rows * row_in,
                                     cudaMemcpyHostToDevice, stream));
      const auto* w = reinterpret_cast<const uint16_t*>(staging);
      uint8_t* q = on_host ? staged_values : values + r0 * row_out;
      uint16_t* sc = on_host ? staged_scales : scales + r0 * row_scales;
      if (f.format == WeightFormat::kInt8)
        DSOCR_CUDA_TRY(quantize_int8(w, reinterpret_cast<int8_t*>(q), sc, rows, k, stream));
      else
        DSOCR_CUDA_TRY(quantize_int4(w, q, sc, rows, k, f.group, stream));
      if (!on_host) continue;
      DSOCR_CUDA_TRY(cudaMemcpyAsync(values + r0 * row_out, q, rows * row_out,
                                     cudaMemcpyDeviceToHost, stream));
      DSOCR_CUDA_TRY(cudaMemcpyAsync(scales + r0 * row_scales, sc, rows * row_scales * 2,
                                     cudaMemcpyDeviceToHost, stream));
    }
    ++st.tensors;
    st.bf16_bytes += t.nbytes;
    st.stored_bytes += slot->nbytes;
  }
  DSOCR_CUDA_TRY(cudaStreamSynchronize(stream));
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats) *stats = st;
  return Status::Ok();
}

}  // namespace dsocr
