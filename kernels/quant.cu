// Load-time quantizer and prefill dequantizer on the GPU (contracts in quant.h). The quantizer
// must equal quantize_int8_ref / quantize_int4_ref bit for bit: FP32 division (IEEE, no fast
// math in this build), the scale rounded to BF16 with RNE before q is computed, q by
// __float2int_rn (ties to even, as nearbyint in the default rounding mode), clamp, q = 0 for a
// zero scale. Bandwidth: a load-time pass over the checkpoint's quantized classes (~5 GB under
// mixed), every BF16 byte read once with 16-byte loads.
#include <cstdint>

#include "kernels/quant.cuh"

namespace dsocr {
namespace {

using cuda::kWarp;

constexpr int kInt8Threads = 256;

__device__ __forceinline__ int quantize_one(float w, float scale, int qmax) {
  if (scale == 0.f) return 0;
  const int q = __float2int_rn(w / scale);
  return q < -qmax ? -qmax : (q > qmax ? qmax : q);
}

// INT8: one block per row. Pass 1: amax over the row (16-byte loads, block max); pass 2: q.
__global__ void __launch_bounds__(kInt8Threads)
    quantize_int8_kernel(const uint16_t* __restrict__ w,  // [n, k]
                         int8_t* __restrict__ q,          // [n, k]
                         uint16_t* __restrict__ scale,    // [n]
                         int64_t k) {
  __shared__ float s_max[kInt8Threads / kWarp];
  __shared__ float s_scale;
  const int64_t r = blockIdx.x;
  const uint16_t* wr = w + r * k;
  const int kc = static_cast<int>(k / 8);
  float m = 0.f;
  for (int c = threadIdx.x; c < kc; c += blockDim.x) {
    float f[8];
    cuda::unpack8(cuda::ld_stream(wr + 8 * c), f);
#pragma unroll
    for (int e = 0; e < 8; ++e) m = fmaxf(m, fabsf(f[e]));
  }
  m = cuda::warp_max(m);
  if (threadIdx.x % kWarp == 0) s_max[threadIdx.x / kWarp] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    float a = 0.f;
    for (int i = 0; i < static_cast<int>(blockDim.x / kWarp); ++i) a = fmaxf(a, s_max[i]);
    const uint16_t sb = cuda::f32_to_bf16(a / static_cast<float>(kInt8Max));
    scale[r] = sb;
    s_scale = cuda::bf16_to_f32(sb);
  }
  __syncthreads();
  const float s = s_scale;
  for (int c = threadIdx.x; c < kc; c += blockDim.x) {
    float f[8];
    cuda::unpack8(cuda::ld_stream(wr + 8 * c), f);
    uint32_t lo = 0, hi = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      lo |= (static_cast<uint32_t>(quantize_one(f[e], s, kInt8Max)) & 0xffu) << (8 * e);
      hi |= (static_cast<uint32_t>(quantize_one(f[4 + e], s, kInt8Max)) & 0xffu) << (8 * e);
    }
    *reinterpret_cast<uint2*>(q + r * k + 8 * c) = make_uint2(lo, hi);
  }
}

// INT4: one thread per 8-column word; the G/8 threads of a group (consecutive lanes of one warp)
// reduce its amax with shuffles. Word c of a row: nibble j <- column 8c + kInt4Perm[j].
__global__ void quantize_int4_kernel(const uint16_t* __restrict__ w,  // [n, k]
                                     uint8_t* __restrict__ packed,    // [n, k/2]
                                     uint16_t* __restrict__ scale,    // [n, k/group]
                                     int64_t n_words, int group) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int lanes = group / 8;  // 16 or 8: divides 32, and a group's lanes share a warp
  const bool ok = i < n_words;
  float f[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (ok) cuda::unpack8(cuda::ld_stream(w + 8 * i), f);
  float m = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) m = fmaxf(m, fabsf(f[e]));
  for (int o = lanes / 2; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if (!ok) return;
  const uint16_t sb = cuda::f32_to_bf16(m / static_cast<float>(kInt4Max));
  if (i % lanes == 0) scale[i / lanes] = sb;  // words of a row are consecutive: k % group == 0
  const float s = cuda::bf16_to_f32(sb);
  uint32_t word = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int col = j < 4 ? 2 * j : 2 * (j - 4) + 1;  // kInt4Perm[j] (host-only array)
    const uint32_t u = static_cast<uint32_t>(quantize_one(f[col], s, kInt4Max) +
                                             kInt4Offset);
    word |= u << (4 * j);
  }
  reinterpret_cast<uint32_t*>(packed)[i] = word;
}

// Dequantize to BF16: one thread per 8 values (one INT4 word or two INT8 words) -> 16 bytes.
template <WeightFormat F>
__global__ void dequantize_kernel(const uint8_t* __restrict__ q, const uint16_t* __restrict__ s,
                                  uint16_t* __restrict__ out, int64_t k, int64_t r0,
                                  int64_t n_chunks, int group) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_chunks) return;
  const int64_t kc = k / 8, row = r0 + i / kc, col = (i % kc) * 8;
  const uint16_t sb = s[row * cuda::row_scales<F>(k, group) +
                        (F == WeightFormat::kInt8 ? 0 : col / group)];
  *reinterpret_cast<uint4*>(out + i * 8) = cuda::dequant8_bf16<F>(
      q + row * cuda::row_bytes<F>(k) + cuda::row_bytes<F>(col), cuda::bf16_to_f32(sb));
}

static_assert(kInt4Perm[1] == 2 && kInt4Perm[3] == 6 && kInt4Perm[4] == 1 && kInt4Perm[7] == 7,
              "quantize_int4_kernel computes kInt4Perm[j] as 2j (j < 4), 2(j - 4) + 1");

bool aligned(const void* p, uintptr_t a) {
  return reinterpret_cast<uintptr_t>(p) % a == 0;
}

}  // namespace

cudaError_t quantize_int8(const uint16_t* w, int8_t* q, uint16_t* scale, int64_t n, int64_t k,
                          cudaStream_t stream) {
  if (!check_quant_shape(WeightFormat::kInt8, n, k, 0).ok() || n > INT32_MAX || !w || !q ||
      !scale || !aligned(w, 16) || !aligned(q, 8) || !aligned(scale, 2))
    return cudaErrorInvalidValue;
  quantize_int8_kernel<<<static_cast<unsigned>(n), kInt8Threads, 0, stream>>>(w, q, scale, k);
  return cudaGetLastError();
}

cudaError_t quantize_int4(const uint16_t* w, uint8_t* packed, uint16_t* scale, int64_t n,
                          int64_t k, int group, cudaStream_t stream) {
  if (!check_quant_shape(WeightFormat::kInt4, n, k, group).ok() || !w || !packed || !scale ||
      !aligned(w, 16) || !aligned(packed, 4) || !aligned(scale, 2))
    return cudaErrorInvalidValue;
  const int64_t words = n * k / 8;
  constexpr int kThreads = 256;
  quantize_int4_kernel<<<static_cast<unsigned>((words + kThreads - 1) / kThreads), kThreads, 0,
                         stream>>>(w, packed, scale, words, group);
  return cudaGetLastError();
}

cudaError_t dequantize_bf16(const QWeight& w, int64_t k, int64_t r0, int64_t rows, uint16_t* out,
                            cudaStream_t stream) {
  if (w.format == WeightFormat::kBf16 || !check_quant_shape(w.format, rows, k, w.group).ok() ||
      r0 < 0 || !w.q || !w.scale || !out || !aligned(out, 16) || !aligned(w.q, 16))
    return cudaErrorInvalidValue;
  const int64_t chunks = rows * k / 8;
  constexpr int kThreads = 256;
  const unsigned blocks = static_cast<unsigned>((chunks + kThreads - 1) / kThreads);
  const auto* q = static_cast<const uint8_t*>(w.q);
  if (w.format == WeightFormat::kInt8)
    dequantize_kernel<WeightFormat::kInt8>
        <<<blocks, kThreads, 0, stream>>>(q, w.scale, out, k, r0, chunks, w.group);
  else
    dequantize_kernel<WeightFormat::kInt4>
        <<<blocks, kThreads, 0, stream>>>(q, w.scale, out, k, r0, chunks, w.group);
  return cudaGetLastError();
}

}  // namespace dsocr
