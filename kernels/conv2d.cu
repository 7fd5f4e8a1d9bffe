// im2col kernels of the SAM convolutions (contract in conv2d.h; CPU reference conv2d_ref.cpp).
// Pure copies: each thread writes one 16-byte chunk of 8 consecutive k indices of one col row
// (coalesced stores) from 8 gathered loads that L1/L2 serve (a 3×3 receptive field is re-read by
// 9 neighbouring output pixels).
#include "kernels/conv2d.h"
#include "kernels/cuda_vec.cuh"

namespace dsocr {
namespace {

constexpr int kThreads = 256;
constexpr int kPatch = 16;                    // SAM patch side
constexpr int kPatchK = 3 * kPatch * kPatch;  // 768 col values per patch
constexpr int kPatchChunks = kPatchK / 8;     // 96

unsigned grid_for(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 132 * 32 ? (blocks > 0 ? blocks : 1) : 132 * 32);
}

__global__ void __launch_bounds__(kThreads)
    im2col_kernel(const uint16_t* __restrict__ in,  // [n, h, w, c_in]
                  uint16_t* __restrict__ col,       // [n·oh·ow, K]
                  int64_t n_pix, int h, int w, int c_in, int k, int stride, int pad, int oh,
                  int ow) {
  const int kk = k * k, chunks = c_in * kk / 8;
  const int64_t total = n_pix * chunks;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t pix = i / chunks;
    const int j = static_cast<int>(i % chunks);
    const int64_t img = pix / (int64_t{oh} * ow);
    const int rem = static_cast<int>(pix % (int64_t{oh} * ow));
    const int iy0 = (rem / ow) * stride - pad, ix0 = (rem % ow) * stride - pad;
    const uint16_t* base = in + img * h * w * c_in;
    int kidx = 8 * j;
    int ci = kidx / kk, t = kidx % kk;
    int ky = t / k, kx = t % k;
    uint16_t v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int iy = iy0 + ky, ix = ix0 + kx;
      v[e] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? base[(int64_t{iy} * w + ix) * c_in + ci]
                                                      : uint16_t{0};
      if (++kx == k) {
        kx = 0;
        if (++ky == k) ky = 0, ++ci;
      }
    }
    uint4 o;
    o.x = v[0] | (uint32_t{v[1]} << 16), o.y = v[2] | (uint32_t{v[3]} << 16);
    o.z = v[4] | (uint32_t{v[5]} << 16), o.w = v[6] | (uint32_t{v[7]} << 16);
    *reinterpret_cast<uint4*>(col + pix * (chunks * 8) + 8 * j) = o;
  }
}

// Chunk j of a patch's 768 values: channel j / 32, patch row (j % 32) / 2, columns 0..7 or 8..15.
__global__ void __launch_bounds__(kThreads)
    patch_im2col_kernel(const uint8_t* __restrict__ pixels,  // [n, size, size, 3]
                        PixelLut lut,
                        uint16_t* __restrict__ col,  // [n·g·g, 768]
                        int64_t n_patches, int size) {
  __shared__ uint16_t s_lut[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) s_lut[i] = lut.v[i];
  __syncthreads();
  const int g = size / kPatch;
  const int64_t total = n_patches * kPatchChunks;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t p = i / kPatchChunks;
    const int j = static_cast<int>(i % kPatchChunks);
    const int64_t img = p / (int64_t{g} * g);
    const int rem = static_cast<int>(p % (int64_t{g} * g));
    const int c = j / 32, ky = (j % 32) / 2, kx0 = (j % 2) * 8;
    const int y = (rem / g) * kPatch + ky, x = (rem % g) * kPatch + kx0;
    const uint8_t* src = pixels + ((img * size + y) * size + x) * 3 + c;
    uint4 o;
    o.x = s_lut[src[0]] | (uint32_t{s_lut[src[3]]} << 16);
    o.y = s_lut[src[6]] | (uint32_t{s_lut[src[9]]} << 16);
    o.z = s_lut[src[12]] | (uint32_t{s_lut[src[15]]} << 16);
    o.w = s_lut[src[18]] | (uint32_t{s_lut[src[21]]} << 16);
    *reinterpret_cast<uint4*>(col + p * kPatchK + 8 * j) = o;
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

cudaError_t im2col_nhwc_bf16(const uint16_t* in, uint16_t* col, const Conv2dShape& s,
                             cudaStream_t stream) {
  if (s.n < 0 || s.h < 1 || s.w < 1 || s.c_in < 1 || s.kernel < 1 || s.stride < 1 || s.pad < 0 ||
      s.h + 2 * s.pad < s.kernel || s.w + 2 * s.pad < s.kernel ||
      (s.c_in * s.kernel * s.kernel) % 8 || !in || !aligned16(col) || s.h > 0x7fffffff ||
      s.w > 0x7fffffff || s.c_in > 0x7fffffff)
    return cudaErrorInvalidValue;
  const int64_t oh = s.out_h(), ow = s.out_w(), n_pix = s.n * oh * ow;
  if (n_pix == 0) return cudaSuccess;
  const int64_t chunks = s.c_in * s.kernel * s.kernel / 8;
  im2col_kernel<<<grid_for(n_pix * chunks), kThreads, 0, stream>>>(
      in, col, n_pix, static_cast<int>(s.h), static_cast<int>(s.w), static_cast<int>(s.c_in),
      s.kernel, s.stride, s.pad, static_cast<int>(oh), static_cast<int>(ow));
  return cudaGetLastError();
}

cudaError_t patch_im2col_u8(const uint8_t* pixels, const PixelLut& lut, uint16_t* col, int64_t n,
                            int64_t size, cudaStream_t stream) {
  if (n < 0 || size < kPatch || size % kPatch || size > 0x7fffffff || !pixels || !aligned16(col))
    return cudaErrorInvalidValue;
  const int64_t g = size / kPatch, patches = n * g * g;
  if (patches == 0) return cudaSuccess;
  patch_im2col_kernel<<<grid_for(patches * kPatchChunks), kThreads, 0, stream>>>(
      pixels, lut, col, patches, static_cast<int>(size));
  return cudaGetLastError();
}

}  // namespace dsocr
