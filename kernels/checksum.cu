// Device checksums and poison fills (formulas and contracts in checksum.h; CPU reference in
// checksum_ref.cpp). Both are bandwidth-bound: a checksum reads each byte once (plus ~12 integer
// ops and one FP64 add per 16-bit word), a fill writes each byte once.
#include <algorithm>

#include "kernels/checksum.h"

namespace dsocr {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 2048;  // grid-stride beyond this; 16 blocks per SM on a 132-SM H200

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long x) {
  unsigned long long z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__device__ __forceinline__ double bf16_value(uint32_t w) {
  return __uint_as_float(w << 16);
}

// One word at index i, read byte-wise (any alignment; an odd last byte is zero-extended).
__device__ __forceinline__ uint32_t word_at(const uint8_t* data, uint64_t nbytes, uint64_t i) {
  uint32_t w = data[2 * i];
  if (2 * i + 1 < nbytes) w |= static_cast<uint32_t>(data[2 * i + 1]) << 8;
  return w;
}

// kVec: data is 16-byte aligned and whole 16-byte vectors (8 words) are read with one load.
template <bool kVec, bool kSum>
__global__ void checksum_kernel(const uint8_t* data,  // [nbytes]
                                uint64_t nbytes, Checksum* out) {
  const uint64_t words = (nbytes + 1) / 2;
  const uint64_t tid = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  unsigned long long h = 0;
  double s = 0;
  uint64_t scalar_begin = 0;
  if constexpr (kVec) {
    const uint64_t nvec = nbytes / 16;
    const uint4* v = reinterpret_cast<const uint4*>(data);
    for (uint64_t j = tid; j < nvec; j += stride) {
      const uint4 x = __ldg(v + j);
      const uint32_t part[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint64_t i = j * 8 + 2 * k;
        const uint32_t lo = part[k] & 0xffffu, hi = part[k] >> 16;
        h += splitmix64((i << 16) + lo) + splitmix64(((i + 1) << 16) + hi);
        if constexpr (kSum) s += bf16_value(lo) + bf16_value(hi);
      }
    }
    scalar_begin = nvec * 8;
  }
  for (uint64_t i = scalar_begin + tid; i < words; i += stride) {
    const uint32_t w = word_at(data, nbytes, i);
    h += splitmix64((i << 16) + w);
    if constexpr (kSum) s += bf16_value(w);
  }

  // Block reduction: warp shuffles, then one partial per warp in shared memory.
  for (int off = 16; off > 0; off >>= 1) {
    h += __shfl_down_sync(0xffffffffu, h, off);
    if constexpr (kSum) s += __shfl_down_sync(0xffffffffu, s, off);
  }
  __shared__ unsigned long long sh[kThreads / 32];
  __shared__ double ss[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sh[warp] = h;
    ss[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) {
      h += sh[w];
      s += ss[w];
    }
    if (blockIdx.x == 0) {
      h += splitmix64(nbytes);
      for (int i = 0; i < 4; ++i)
        out->first4[i] =
            static_cast<uint16_t>(i < static_cast<int>(words) ? word_at(data, nbytes, i) : 0u);
      out->nbytes = nbytes;
    }
    atomicAdd(&out->hash, h);  // wraps mod 2^64, like the CPU sum
    if constexpr (kSum) atomicAdd(&out->sum, s);
  }
}

template <bool kVec>
__global__ void fill_kernel(uint8_t* dst,  // [nbytes]
                            uint32_t value, uint64_t nbytes) {
  const uint64_t tid = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  uint64_t byte_begin = 0;
  if constexpr (kVec) {
    const uint64_t nvec = nbytes / 16;
    uint4* v = reinterpret_cast<uint4*>(dst);
    const uint4 x = make_uint4(value, value, value, value);
    for (uint64_t j = tid; j < nvec; j += stride) v[j] = x;
    byte_begin = nvec * 16;
  }
  for (uint64_t i = byte_begin + tid; i < nbytes; i += stride)
    dst[i] = static_cast<uint8_t>(value >> (8 * (i % 4)));
}

unsigned blocks_for(uint64_t items) {
  return static_cast<unsigned>(
      std::max<uint64_t>(1, std::min<uint64_t>(kMaxBlocks, (items + kThreads - 1) / kThreads)));
}

}  // namespace

cudaError_t checksum_device(const void* data, uint64_t nbytes, bool bf16_sum, Checksum* out,
                            cudaStream_t stream) {
  cudaError_t e = cudaMemsetAsync(out, 0, sizeof(Checksum), stream);
  if (e != cudaSuccess) return e;
  const auto* p = static_cast<const uint8_t*>(data);
  const bool vec = reinterpret_cast<uintptr_t>(p) % 16 == 0;
  const unsigned blocks = blocks_for(vec ? nbytes / 16 + 8 : (nbytes + 1) / 2);
  if (vec && bf16_sum) checksum_kernel<true, true><<<blocks, kThreads, 0, stream>>>(p, nbytes, out);
  if (vec && !bf16_sum)
    checksum_kernel<true, false><<<blocks, kThreads, 0, stream>>>(p, nbytes, out);
  if (!vec && bf16_sum)
    checksum_kernel<false, true><<<blocks, kThreads, 0, stream>>>(p, nbytes, out);
  if (!vec && !bf16_sum)
    checksum_kernel<false, false><<<blocks, kThreads, 0, stream>>>(p, nbytes, out);
  return cudaGetLastError();
}

cudaError_t fill_u32_device(void* dst, uint32_t value, uint64_t nbytes, cudaStream_t stream) {
  if (nbytes == 0) return cudaSuccess;
  auto* p = static_cast<uint8_t*>(dst);
  if (reinterpret_cast<uintptr_t>(p) % 16 == 0)
    fill_kernel<true><<<blocks_for(nbytes / 16 + 16), kThreads, 0, stream>>>(p, value, nbytes);
  else
    fill_kernel<false><<<blocks_for(nbytes), kThreads, 0, stream>>>(p, value, nbytes);
  return cudaGetLastError();
}

}  // namespace dsocr
