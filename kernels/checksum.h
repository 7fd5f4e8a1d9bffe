// Device memory checks: content checksums (did the upload put every byte where it belongs?) and
// poison fills (does anything read memory nobody wrote?).
//
// Checksum of a byte range of n bytes, read as w = ceil(n/2) little-endian 16-bit words (an odd
// last byte is zero-extended):
//   hash   = splitmix64(n) + sum_i splitmix64(i * 2^16 + word_i)   (mod 2^64)
//            For a fixed position i the term is a bijection of the word (splitmix64 is one), so any
//            single changed, moved or swapped word changes the hash; unrelated contents collide
//            with probability ~2^-64. Addition commutes, so the GPU can reduce in any order and
//            still match the CPU bit for bit.
//   sum    = float64 sum of the words read as BF16 (when asked), for reporting against
//            golden/synth1_seed1_checksums.json; the order of additions differs between CPU and
//            GPU, so compare sums with a tolerance, hashes exactly.
//   first4 = the first four words (the golden file lists them too).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dsocr {

struct Checksum {
  unsigned long long hash = 0;
  double sum = 0;           // 0 unless computed as BF16
  uint16_t first4[4] = {};  // zero past the end of short ranges
  uint64_t nbytes = 0;
};

// CPU reference (kernels/checksum_ref.cpp).
Checksum checksum_ref(const void* data, uint64_t nbytes, bool bf16_sum);

// Checksum of `nbytes` device bytes at `data` into `*out` (device memory, a Checksum the caller
// owns; it is overwritten). Asynchronous on `stream`. Any alignment; 16-byte aligned data takes the
// vector path. Returns the launch error, if any.
// PRECOND: data readable for nbytes on the current device; out points to device memory.
cudaError_t checksum_device(const void* data,  // [nbytes]
                            uint64_t nbytes, bool bf16_sum, Checksum* out, cudaStream_t stream);

// Fill `nbytes` device bytes with the 32-bit pattern `value` (little-endian, repeated; a tail of
// 1..3 bytes gets the pattern's low bytes). kPoison32 is a quiet NaN read as FP32 and two quiet
// NaNs read as BF16 (0x7fc0 0x7fc0), so a kernel that reads poisoned memory produces NaN.
constexpr uint32_t kPoison32 = 0x7fc07fc0u;
cudaError_t fill_u32_device(void* dst,  // [nbytes]
                            uint32_t value, uint64_t nbytes, cudaStream_t stream);

}  // namespace dsocr
