// Elementwise activations on BF16 rows (kernels/activation.h). Bandwidth-bound: one 16-byte load
// and store per 8 values, a grid-stride loop over (row, 8-column chunk).
#include "kernels/activation.h"
#include "kernels/cuda_vec.cuh"

namespace dsocr {
namespace {

using namespace cuda;

template <Activation A>
__device__ __forceinline__ float apply(float x) {
  if constexpr (A == Activation::kGeluErf) return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
  else return x / (1.f + expf(-1.702f * x));
}

template <Activation A>
__global__ void activation_kernel(uint16_t* __restrict__ x, int64_t ld, int64_t rows,
                                  int64_t chunks) {
  const int64_t total = rows * chunks;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    uint4* p = reinterpret_cast<uint4*>(x + (i / chunks) * ld + 8 * (i % chunks));
    float f[8];
    unpack8(*p, f);
#pragma unroll
    for (int e = 0; e < 8; ++e) f[e] = apply<A>(f[e]);
    *p = pack8(f);
  }
}

__global__ void silu_mul_kernel(const uint16_t* __restrict__ gate, int64_t ldg,
                                const uint16_t* __restrict__ up, int64_t ldu, uint16_t* out,
                                int64_t ldo, int64_t rows, int64_t chunks) {
  const int64_t total = rows * chunks;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / chunks, c = 8 * (i % chunks);
    float g[8], u[8];
    unpack8(*reinterpret_cast<const uint4*>(gate + r * ldg + c), g);
    unpack8(*reinterpret_cast<const uint4*>(up + r * ldu + c), u);
#pragma unroll
    for (int e = 0; e < 8; ++e) g[e] = swiglu(g[e], u[e]);
    *reinterpret_cast<uint4*>(out + r * ldo + c) = pack8(g);
  }
}

bool bad_layout(const void* p, int64_t ld, int64_t cols) {
  return cols % 8 != 0 || ld % 8 != 0 || ld < cols || reinterpret_cast<uintptr_t>(p) % 16 != 0;
}

unsigned grid_for(int64_t items) {
  const int64_t blocks = (items + 255) / 256;
  return static_cast<unsigned>(blocks < 132 * 16 ? (blocks > 0 ? blocks : 1) : 132 * 16);
}

}  // namespace

cudaError_t activation_bf16(uint16_t* x, int64_t ld, int64_t rows, int64_t cols, Activation act,
                            cudaStream_t stream) {
  if (rows < 0 || bad_layout(x, ld, cols)) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  const int64_t chunks = cols / 8;
  const unsigned grid = grid_for(rows * chunks);
  switch (act) {
    case Activation::kGeluErf:
      activation_kernel<Activation::kGeluErf><<<grid, 256, 0, stream>>>(x, ld, rows, chunks);
      break;
    case Activation::kQuickGelu:
      activation_kernel<Activation::kQuickGelu><<<grid, 256, 0, stream>>>(x, ld, rows, chunks);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t silu_mul_bf16(const uint16_t* gate, int64_t ldg, const uint16_t* up, int64_t ldu,
                          uint16_t* out, int64_t ldo, int64_t rows, int64_t cols,
                          cudaStream_t stream) {
  if (rows < 0 || bad_layout(gate, ldg, cols) || bad_layout(up, ldu, cols) ||
      bad_layout(out, ldo, cols))
    return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  const int64_t chunks = cols / 8;
  silu_mul_kernel<<<grid_for(rows * chunks), 256, 0, stream>>>(gate, ldg, up, ldu, out, ldo, rows,
                                                               chunks);
  return cudaGetLastError();
}

}  // namespace dsocr
