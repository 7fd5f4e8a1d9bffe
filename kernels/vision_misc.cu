// Glue kernels of the DeepEncoder (contract in vision_misc.h). All bandwidth-bound and small
// (a 1024² view: patch_bias_pos moves 12.6 MB in + 6.3 MB out; the rest < 3 MB): a grid-stride
// loop over 8-value chunks, 16-byte loads and stores.
#include "kernels/cuda_vec.cuh"
#include "kernels/vision_misc.h"

namespace dsocr {
namespace {

using namespace cuda;

constexpr int kThreads = 256;

unsigned grid_for(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 132 * 16 ? (blocks > 0 ? blocks : 1) : 132 * 16);
}

__device__ __forceinline__ void load8f(const float* p, float (&f)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
__device__ __forceinline__ void store8f(float* p, const float (&f)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}

__global__ void patch_bias_pos_kernel(const float* __restrict__ acc,
                                      const uint16_t* __restrict__ bias,
                                      const float* __restrict__ pos, uint16_t* __restrict__ x,
                                      int64_t rows, int64_t P, int chunks) {
  const int64_t total = rows * chunks;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / chunks;
    const int c = static_cast<int>(i % chunks) * 8, dim = chunks * 8;
    float a[8], b[8], p[8];
    load8f(acc + r * dim + c, a);
    unpack8(__ldg(reinterpret_cast<const uint4*>(bias + c)), b);
    load8f(pos + (r % P) * dim + c, p);
#pragma unroll
    for (int e = 0; e < 8; ++e) a[e] = a[e] + b[e] + p[e];
    *reinterpret_cast<uint4*>(x + r * dim + c) = pack8(a);
  }
}

__global__ void clip_embed_kernel(const uint16_t* __restrict__ sam, int64_t ld_sam,
                                  const uint16_t* __restrict__ cls, const float* __restrict__ pos,
                                  float* __restrict__ h, int64_t n, int64_t P, int chunks) {
  const int64_t L = P + 1, total = n * L * chunks;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / chunks, v = r / L, t = r % L;
    const int c = static_cast<int>(i % chunks) * 8, dim = chunks * 8;
    float s[8], p[8];
    if (t == 0)
      unpack8(__ldg(reinterpret_cast<const uint4*>(cls + c)), s);
    else
      unpack8(*reinterpret_cast<const uint4*>(sam + (v * P + t - 1) * ld_sam + c), s);
    load8f(pos + t * dim + c, p);
#pragma unroll
    for (int e = 0; e < 8; ++e) s[e] += p[e];
    store8f(h + r * dim + c, s);
  }
}

__global__ void clip_to_feat_kernel(const float* __restrict__ h, uint16_t* __restrict__ feat,
                                    int64_t ld_feat, int64_t rows, int64_t P, int chunks) {
  const int64_t total = rows * chunks;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / chunks, v = r / P, p = r % P;
    const int c = static_cast<int>(i % chunks) * 8, dim = chunks * 8;
    float f[8];
    load8f(h + (v * (P + 1) + 1 + p) * dim + c, f);
    *reinterpret_cast<uint4*>(feat + r * ld_feat + c) = pack8(f);
  }
}

__global__ void assemble_kernel(const uint16_t* __restrict__ proj, int t, int w_t,
                                const uint16_t* __restrict__ newline,
                                const uint16_t* __restrict__ separator, uint16_t* __restrict__ out,
                                int64_t grid_rows, int chunks) {
  const int64_t width = int64_t{w_t} * t + 1;  // columns of a grid row, newline included
  const int64_t total = (grid_rows * width + (separator ? 1 : 0)) * chunks;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / chunks;
    const int c = static_cast<int>(i % chunks) * 8, dim = chunks * 8;
    const uint16_t* src;
    if (row == grid_rows * width) {
      src = separator;
    } else {
      const int64_t R = row / width, C = row % width;
      if (C == width - 1) {
        src = newline;
      } else {
        const int64_t tile = (R / t) * w_t + C / t, inner = (R % t) * t + C % t;
        src = proj + (tile * t * t + inner) * dim;
      }
    }
    *reinterpret_cast<uint4*>(out + row * dim + c) = *reinterpret_cast<const uint4*>(src + c);
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
bool bad_dim(int dim) {
  return dim < 8 || dim % 8;
}

}  // namespace

cudaError_t patch_bias_pos(const float* acc, const uint16_t* bias, const float* pos, uint16_t* x,
                           int64_t n, int64_t P, int dim, cudaStream_t stream) {
  if (n < 0 || P < 1 || bad_dim(dim) || !aligned16(acc) || !aligned16(bias) || !aligned16(pos) ||
      !aligned16(x))
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int chunks = dim / 8;
  patch_bias_pos_kernel<<<grid_for(n * P * chunks), kThreads, 0, stream>>>(acc, bias, pos, x, n * P,
                                                                           P, chunks);
  return cudaGetLastError();
}

cudaError_t clip_embed(const uint16_t* sam, int64_t ld_sam, const uint16_t* cls, const float* pos,
                       float* h, int64_t n, int64_t P, int dim, cudaStream_t stream) {
  if (n < 0 || P < 1 || bad_dim(dim) || ld_sam < dim || ld_sam % 8 || !aligned16(sam) ||
      !aligned16(cls) || !aligned16(pos) || !aligned16(h))
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int chunks = dim / 8;
  clip_embed_kernel<<<grid_for(n * (P + 1) * chunks), kThreads, 0, stream>>>(sam, ld_sam, cls, pos,
                                                                             h, n, P, chunks);
  return cudaGetLastError();
}

cudaError_t clip_to_feat(const float* h, uint16_t* feat, int64_t ld_feat, int64_t n, int64_t P,
                         int dim, cudaStream_t stream) {
  if (n < 0 || P < 1 || bad_dim(dim) || ld_feat < dim || ld_feat % 8 || !aligned16(h) ||
      !aligned16(feat))
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int chunks = dim / 8;
  clip_to_feat_kernel<<<grid_for(n * P * chunks), kThreads, 0, stream>>>(h, feat, ld_feat, n * P, P,
                                                                         chunks);
  return cudaGetLastError();
}

cudaError_t assemble_embeds(const uint16_t* proj, int t, int w_t, int h_t, const uint16_t* newline,
                            const uint16_t* separator, uint16_t* out, int dim,
                            cudaStream_t stream) {
  if (t < 1 || w_t < 1 || h_t < 1 || bad_dim(dim) || !aligned16(proj) || !aligned16(newline) ||
      !aligned16(out) || (separator && !aligned16(separator)))
    return cudaErrorInvalidValue;
  const int64_t grid_rows = int64_t{h_t} * t;
  const int64_t rows = grid_rows * (int64_t{w_t} * t + 1) + (separator ? 1 : 0);
  const int chunks = dim / 8;
  assemble_kernel<<<grid_for(rows * chunks), kThreads, 0, stream>>>(
      proj, t, w_t, newline, separator, out, grid_rows, chunks);
  return cudaGetLastError();
}

}  // namespace dsocr
