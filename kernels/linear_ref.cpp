// The blocked float32 GEMM engine of the CPU reference backend (see linear.h for the contract).
//
// Blocking (BLIS's five loops, Van Zee & van de Geijn 2015, reduced to what we need):
//   tiles of C: MC x NC, one parallel_for item each
//     k in slices of KC: pack A (MC x KC) into MR-row strips, B (KC x NC) into NR-column panels
//       for each B panel (KC x NR floats, stays in L1/L2) and each A strip: MR x NR micro-kernel
//   then bias + activation on the finished tile while it is in cache.
// Napkin math (Zen 4 core, one 512-bit FMA per cycle = 32 flop/cycle): a tile's packing touches
// MC·KC + KC·NC elements per 2·MC·NC·KC flops, i.e. one packed element per 2·256 = 512 flops
// (MC = 240, NC = 256): a few percent of the FMA time. Packed A + B = 240·256·4 + 256·256·4
// bytes = 0.5 MB, within a 1 MB L2.
// The micro-kernels are written once with GCC vector extensions and instantiated per ISA inside
// functions carrying target attributes (AVX-512 12x32, AVX2+FMA 6x16, SSE2 6x8); the choice is
// made at run time, so one binary runs on any x86-64.
// Measured on the 2-core Zen 4 dev VM (CPU time, so other load does not count; bench/RESULTS.md
// once the bench lands): [4096x768]·[2304x768]ᵀ 116-141 GFLOP/s per core; m = 4..64 rows against
// [6848x1280] on the GEMV path 97..114 GFLOP/s (the packed path at m = 32 gave 74: packing B
// costs more than 32 rows of FMAs); m = 1 against lm_head [129280x1280] 19-23 GB/s of weights
// with the one-group-ahead prefetch, 9-13 GB/s without.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/activation.h"
#include "kernels/linear.h"
#include "kernels/parallel.h"
#include "loader/bf16.h"

#define DSOCR_INLINE inline __attribute__((always_inline))

namespace dsocr {
namespace {

constexpr int64_t kMC = 240;       // rows of a C tile (multiple of every MR: 12, 6)
constexpr int64_t kNC = 256;       // columns of a C tile (multiple of every NR: 32, 16, 8)
constexpr int64_t kKC = 256;       // k slice
constexpr int64_t kGemvMaxM = 64;  // m <= this with a plain BF16 weight: GEMV kernel, no packing

// ---- Vector types (GCC vector extensions; lowered to the ISA of the enclosing function) ----
template <int L>
struct Vec;
template <>
struct Vec<16> {
  typedef float f __attribute__((vector_size(64)));
  typedef float fu __attribute__((vector_size(64), aligned(4), may_alias));
  typedef uint16_t hu __attribute__((vector_size(32), aligned(2), may_alias));
  typedef uint32_t u __attribute__((vector_size(64)));
};
template <>
struct Vec<8> {
  typedef float f __attribute__((vector_size(32)));
  typedef float fu __attribute__((vector_size(32), aligned(4), may_alias));
  typedef uint16_t hu __attribute__((vector_size(16), aligned(2), may_alias));
  typedef uint32_t u __attribute__((vector_size(32)));
};
template <>
struct Vec<4> {
  typedef float f __attribute__((vector_size(16)));
  typedef float fu __attribute__((vector_size(16), aligned(4), may_alias));
  typedef uint16_t hu __attribute__((vector_size(8), aligned(2), may_alias));
  typedef uint32_t u __attribute__((vector_size(16)));
};

// L consecutive BF16 values widened to float32 (bf16 bits << 16 is the float's bit pattern).
// (Output by reference: vector return values would trip -Wpsabi in the portable instantiations.)
template <int L>
DSOCR_INLINE void widen_bf16(const uint16_t* p, typename Vec<L>::f& out) {
  typedef Vec<L> T;
  typename T::u u =
      __builtin_convertvector(*reinterpret_cast<const typename T::hu*>(p), typename T::u) << 16;
  out = reinterpret_cast<typename T::f>(u);
}

// C[rows, cols] (=|+=) Ap[kc][MR] · Bp[kc][NR], NR = NV·L. Ap, Bp 64-byte aligned.
template <int L, int NV, int MR>
DSOCR_INLINE void micro_t(int64_t kc, const float* __restrict ap, const float* __restrict bp,
                          float* c, int64_t ldc, int rows, int cols, bool add) {
  typedef typename Vec<L>::f V;
  typedef typename Vec<L>::fu VU;
  constexpr int NR = NV * L;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  for (int64_t p = 0; p < kc; ++p) {
    V b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = *reinterpret_cast<const V*>(bp + p * NR + v * L);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const float a = ap[p * MR + i];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += a * b[v];
    }
  }
  if (rows == MR && cols == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        VU* dst = reinterpret_cast<VU*>(c + i * ldc + v * L);
        *dst = add ? *dst + acc[i][v] : acc[i][v];
      }
    return;
  }
  alignas(64) float tmp[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) *reinterpret_cast<V*>(&tmp[i][v * L]) = acc[i][v];
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) c[i * ldc + j] = add ? c[i * ldc + j] + tmp[i][j] : tmp[i][j];
}

// GEMV-like kernel for m <= 4 rows of x (called per group of 4 rows for m <= kGemvMaxM) against a
// BF16 [n, k] weight: y[i, j] = x[i]·w[j] for j in [j0, j1). Each weight row is read once, R rows
// at a time, widened in registers.
template <int L, int M, int R>
DSOCR_INLINE void gemv_rows_t(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw,
                              int64_t j, float* y, int64_t ldy, int64_t k) {
  typedef typename Vec<L>::f V;
  typedef typename Vec<L>::fu VU;
  V acc[M][R];
#pragma GCC unroll 4
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[i][r] = V{};
  const int64_t kv = k - k % L;
  for (int64_t p = 0; p < kv; p += L) {
    V wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      __builtin_prefetch(w + (j + R + r) * ldw + p);  // the next row group, one group ahead
      widen_bf16<L>(w + (j + r) * ldw + p, wv[r]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      const V xv = *reinterpret_cast<const VU*>(x + i * ldx + p);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[i][r] += xv * wv[r];
    }
  }
  for (int i = 0; i < M; ++i)
    for (int r = 0; r < R; ++r) {
      float s = 0.f;
      for (int l = 0; l < L; ++l) s += acc[i][r][l];
      for (int64_t p = kv; p < k; ++p) s += x[i * ldx + p] * bf16_to_f32(w[(j + r) * ldw + p]);
      y[i * ldy + j + r] = s;
    }
}

template <int L, int M, int R>
DSOCR_INLINE void gemv_range_t(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw,
                               int64_t j0, int64_t j1, float* y, int64_t ldy, int64_t k) {
  int64_t j = j0;
  for (; j + R <= j1; j += R) gemv_rows_t<L, M, R>(x, ldx, w, ldw, j, y, ldy, k);
  for (; j < j1; ++j) gemv_rows_t<L, M, 1>(x, ldx, w, ldw, j, y, ldy, k);
}

template <int L, int R>
DSOCR_INLINE void gemv_t(const float* x, int64_t ldx, int m, const uint16_t* w, int64_t ldw,
                         int64_t j0, int64_t j1, float* y, int64_t ldy, int64_t k) {
  switch (m) {
    case 1:
      return gemv_range_t<L, 1, R>(x, ldx, w, ldw, j0, j1, y, ldy, k);
    case 2:
      return gemv_range_t<L, 2, R>(x, ldx, w, ldw, j0, j1, y, ldy, k);
    case 3:
      return gemv_range_t<L, 3, R>(x, ldx, w, ldw, j0, j1, y, ldy, k);
    default:
      return gemv_range_t<L, 4, R>(x, ldx, w, ldw, j0, j1, y, ldy, k);
  }
}

// BF16 [cols rows of a weight, stride ld] -> panel dst[p * NR + c]; the hot part of packing.
template <int NR>
DSOCR_INLINE void pack_b_bf16_t(const uint16_t* w, int64_t ld, int cols, int64_t kc, float* dst) {
  for (int c = 0; c < cols; ++c) {
    const uint16_t* src = w + c * ld;
    for (int64_t p = 0; p < kc; ++p) dst[p * NR + c] = bf16_to_f32(src[p]);
  }
}

// ---- Per-ISA entry points ----
using MicroFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int, int, bool);
using GemvFn = void (*)(const float*, int64_t, int, const uint16_t*, int64_t, int64_t, int64_t,
                        float*, int64_t, int64_t);
using PackBf16Fn = void (*)(const uint16_t*, int64_t, int, int64_t, float*);

#define DSOCR_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2")))
#define DSOCR_AVX2 __attribute__((target("avx2,fma,f16c,bmi,bmi2")))

DSOCR_AVX512 void micro_avx512(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                               int rows, int cols, bool add) {
  micro_t<16, 2, 12>(kc, ap, bp, c, ldc, rows, cols, add);
}
DSOCR_AVX512 void gemv_avx512(const float* x, int64_t ldx, int m, const uint16_t* w, int64_t ldw,
                              int64_t j0, int64_t j1, float* y, int64_t ldy, int64_t k) {
  gemv_t<16, 4>(x, ldx, m, w, ldw, j0, j1, y, ldy, k);
}
DSOCR_AVX512 void pack_bf16_avx512(const uint16_t* w, int64_t ld, int cols, int64_t kc,
                                   float* dst) {
  pack_b_bf16_t<32>(w, ld, cols, kc, dst);
}

DSOCR_AVX2 void micro_avx2(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                           int rows, int cols, bool add) {
  micro_t<8, 2, 6>(kc, ap, bp, c, ldc, rows, cols, add);
}
DSOCR_AVX2 void gemv_avx2(const float* x, int64_t ldx, int m, const uint16_t* w, int64_t ldw,
                          int64_t j0, int64_t j1, float* y, int64_t ldy, int64_t k) {
  gemv_t<8, 2>(x, ldx, m, w, ldw, j0, j1, y, ldy, k);
}
DSOCR_AVX2 void pack_bf16_avx2(const uint16_t* w, int64_t ld, int cols, int64_t kc, float* dst) {
  pack_b_bf16_t<16>(w, ld, cols, kc, dst);
}

void micro_portable(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, int rows,
                    int cols, bool add) {
  micro_t<4, 2, 6>(kc, ap, bp, c, ldc, rows, cols, add);
}
void gemv_portable(const float* x, int64_t ldx, int m, const uint16_t* w, int64_t ldw, int64_t j0,
                   int64_t j1, float* y, int64_t ldy, int64_t k) {
  gemv_t<4, 2>(x, ldx, m, w, ldw, j0, j1, y, ldy, k);
}
void pack_bf16_portable(const uint16_t* w, int64_t ld, int cols, int64_t kc, float* dst) {
  pack_b_bf16_t<8>(w, ld, cols, kc, dst);
}

struct Isa {
  const char* name;
  int mr, nr;
  MicroFn micro;
  GemvFn gemv;
  PackBf16Fn pack_bf16;
  bool (*supported)();
};

bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma");
}
bool has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
bool always() {
  return true;
}

const Isa kIsas[] = {
    {"avx512", 12, 32, micro_avx512, gemv_avx512, pack_bf16_avx512, has_avx512},
    {"avx2", 6, 16, micro_avx2, gemv_avx2, pack_bf16_avx2, has_avx2},
    {"portable", 6, 8, micro_portable, gemv_portable, pack_bf16_portable, always},
};

const Isa* pick_isa() {
  if (const char* e = std::getenv("DSOCR_CPU_ISA"))
    for (const Isa& i : kIsas)
      if (std::strcmp(e, i.name) == 0 && i.supported()) return &i;
  for (const Isa& i : kIsas)
    if (i.supported()) return &i;
  return &kIsas[2];
}

const Isa*& isa_ptr() {
  static const Isa* p = pick_isa();
  return p;
}

int64_t round_up(int64_t a, int64_t b) {
  return (a + b - 1) / b * b;
}

// A strip: dst[p * mr + r] = A[i0 + r, p0 + p], rows >= `rows` zero.
void pack_a(const GemmA& a, int64_t i0, int rows, int64_t p0, int64_t kc, float* dst, int mr) {
  if (a.gather) {
    a.gather(a.ctx, i0, rows, p0, kc, dst, mr);
  } else {
    for (int r = 0; r < rows; ++r) {
      const float* src = a.data + (i0 + r) * a.ld + p0;
      for (int64_t p = 0; p < kc; ++p) dst[p * mr + r] = src[p];
    }
  }
  if (rows < mr)
    for (int64_t p = 0; p < kc; ++p)
      for (int r = rows; r < mr; ++r) dst[p * mr + r] = 0.f;
}

// B panel: dst[p * nr + c] = B[p0 + p, j0 + c], columns >= `cols` zero.
void pack_b(const Isa& I, const GemmB& b, int64_t j0, int cols, int64_t p0, int64_t kc,
            float* dst) {
  const int nr = I.nr;
  switch (b.layout) {
    case GemmBLayout::kBf16NK:
      I.pack_bf16(static_cast<const uint16_t*>(b.data) + j0 * b.ld + p0, b.ld, cols, kc, dst);
      break;
    case GemmBLayout::kF32NK: {
      const float* w = static_cast<const float*>(b.data) + j0 * b.ld + p0;
      for (int c = 0; c < cols; ++c)
        for (int64_t p = 0; p < kc; ++p) dst[p * nr + c] = w[c * b.ld + p];
      break;
    }
    case GemmBLayout::kF32KN: {
      const float* w = static_cast<const float*>(b.data) + p0 * b.ld + j0;
      for (int64_t p = 0; p < kc; ++p)
        std::memcpy(dst + p * nr, w + p * b.ld, sizeof(float) * static_cast<size_t>(cols));
      break;
    }
    case GemmBLayout::kGather:
      b.gather(b.ctx, j0, cols, p0, kc, dst, nr);
      break;
    case GemmBLayout::kPacked:
      std::abort();  // never packed twice (gemm_ref reads packed panels in place)
  }
  if (cols < nr)
    for (int64_t p = 0; p < kc; ++p)
      for (int c = cols; c < nr; ++c) dst[p * nr + c] = 0.f;
}

// Bias and activation over a finished rows x cols block of C.
void epilogue(const GemmC& c, float* dst, int64_t rows, int64_t j0, int64_t cols) {
  const bool has_bias = c.bias_bf16 || c.bias_f32;
  if (!has_bias && (c.ep == Epilogue::kStore || c.ep == Epilogue::kAdd)) return;
  float bias[kNC];
  for (int64_t j = 0; j < cols; ++j)
    bias[j] = c.bias_bf16  ? bf16_to_f32(c.bias_bf16[j0 + j])
              : c.bias_f32 ? c.bias_f32[j0 + j]
                           : 0.f;
  for (int64_t i = 0; i < rows; ++i) {
    float* row = dst + i * c.ld;
    switch (c.ep) {
      case Epilogue::kStore:
      case Epilogue::kAdd:
        for (int64_t j = 0; j < cols; ++j) row[j] += bias[j];
        break;
      case Epilogue::kGelu:
        for (int64_t j = 0; j < cols; ++j) row[j] = gelu_erf(row[j] + bias[j]);
        break;
      case Epilogue::kQuickGelu:
        for (int64_t j = 0; j < cols; ++j) row[j] = quick_gelu(row[j] + bias[j]);
        break;
    }
  }
}

// One MC x NC tile of C, all of k.
void run_tile(const Isa& I, const GemmA& a, const GemmB& b, const GemmC& c, int64_t i0, int64_t mc,
              int64_t j0, int64_t nc, int64_t n, int64_t k) {
  const int mr = I.mr, nr = I.nr;
  const int64_t strips = (mc + mr - 1) / mr, panels = (nc + nr - 1) / nr;
  float* abuf =
      thread_scratch(ScratchSlot::kGemmA, static_cast<size_t>(strips * mr * std::min(k, kKC)));
  const bool prepacked = b.layout == GemmBLayout::kPacked;
  float* bbuf = prepacked ? nullptr
                          : thread_scratch(ScratchSlot::kGemmB,
                                           static_cast<size_t>(panels * nr * std::min(k, kKC)));
  const int64_t n_pad = round_up(n, nr);
  for (int64_t p0 = 0; p0 < k; p0 += kKC) {
    const int64_t kc = std::min(kKC, k - p0);
    for (int64_t s = 0; s < strips; ++s)
      pack_a(a, i0 + s * mr, static_cast<int>(std::min<int64_t>(mr, mc - s * mr)), p0, kc,
             abuf + s * mr * kc, mr);
    const float* bpanels;
    if (prepacked) {
      bpanels = static_cast<const float*>(b.data) + p0 * n_pad + j0 * kc;
    } else {
      for (int64_t q = 0; q < panels; ++q)
        pack_b(I, b, j0 + q * nr, static_cast<int>(std::min<int64_t>(nr, nc - q * nr)), p0, kc,
               bbuf + q * nr * kc);
      bpanels = bbuf;
    }
    const bool add = p0 > 0 || c.ep == Epilogue::kAdd;
    for (int64_t q = 0; q < panels; ++q) {
      const int cols = static_cast<int>(std::min<int64_t>(nr, nc - q * nr));
      for (int64_t s = 0; s < strips; ++s) {
        const int rows = static_cast<int>(std::min<int64_t>(mr, mc - s * mr));
        I.micro(kc, abuf + s * mr * kc, bpanels + q * nr * kc,
                c.data + (i0 + s * mr) * c.ld + j0 + q * nr, c.ld, rows, cols, add);
      }
    }
  }
  epilogue(c, c.data + i0 * c.ld + j0, mc, j0, nc);
}

}  // namespace

const char* gemm_isa() {
  return isa_ptr()->name;
}

bool set_gemm_isa(const char* name) {
  for (const Isa& i : kIsas)
    if (std::strcmp(name, i.name) == 0 && i.supported()) {
      isa_ptr() = &i;
      return true;
    }
  return false;
}

size_t gemm_packed_b_floats(int64_t n, int64_t k) {
  return static_cast<size_t>(round_up(n, isa_ptr()->nr) * k);
}

// Layout: k slices of kKC; slice p0 holds round_up(n, nr)/nr panels of [kc][nr] at
// packed + p0 * n_pad + panel * nr * kc (what run_tile reads).
void gemm_pack_b(const GemmB& b, int64_t n, int64_t k, float* packed) {
  const Isa& I = *isa_ptr();
  const int64_t n_pad = round_up(n, I.nr);
  for (int64_t p0 = 0; p0 < k; p0 += kKC) {
    const int64_t kc = std::min(kKC, k - p0);
    for (int64_t j0 = 0; j0 < n; j0 += I.nr)
      pack_b(I, b, j0, static_cast<int>(std::min<int64_t>(I.nr, n - j0)), p0, kc,
             packed + p0 * n_pad + j0 * kc);
  }
}

void gemm_ref(const GemmA& a, const GemmB& b, const GemmC& c, int64_t m, int64_t n, int64_t k) {
  const Isa& I = *isa_ptr();
  if (m <= kGemvMaxM && b.layout == GemmBLayout::kBf16NK && !a.gather) {
    // Decode and small batches: no packing. Chunks of 64 weight rows (160 KB at k = 1280, L2
    // resident) are streamed from memory once and swept by groups of 4 rows of x.
    const auto* w = static_cast<const uint16_t*>(b.data);
    parallel_for(
        (n + 63) / 64,
        [&](int64_t t0, int64_t t1) {
          float tmp[4 * 64];
          for (int64_t t = t0; t < t1; ++t) {
            const int64_t j0 = t * 64, nj = std::min<int64_t>(64, n - j0);
            for (int64_t i0 = 0; i0 < m; i0 += 4) {
              const int mi = static_cast<int>(std::min<int64_t>(4, m - i0));
              float* yi = c.data + i0 * c.ld + j0;
              if (c.ep == Epilogue::kAdd) {
                I.gemv(a.data + i0 * a.ld, a.ld, mi, w + j0 * b.ld, b.ld, 0, nj, tmp, 64, k);
                for (int i = 0; i < mi; ++i)
                  for (int64_t j = 0; j < nj; ++j) yi[i * c.ld + j] += tmp[i * 64 + j];
              } else {
                I.gemv(a.data + i0 * a.ld, a.ld, mi, w + j0 * b.ld, b.ld, 0, nj, yi, c.ld, k);
              }
            }
            epilogue(c, c.data + j0, m, j0, nj);
          }
        },
        4);
    return;
  }
  const int64_t mt = (m + kMC - 1) / kMC, nt = (n + kNC - 1) / kNC;
  parallel_for(mt * nt, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = (t / nt) * kMC, j0 = (t % nt) * kNC;
      run_tile(I, a, b, c, i0, std::min(kMC, m - i0), j0, std::min(kNC, n - j0), n, k);
    }
  });
}

void linear_ex_ref(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw,
                   const uint16_t* bias, float* y, int64_t ldy, int64_t m, int64_t n, int64_t k,
                   Epilogue ep) {
  GemmA a;
  a.data = x;
  a.ld = ldx;
  GemmB b;
  b.layout = GemmBLayout::kBf16NK;
  b.data = w;
  b.ld = ldw;
  GemmC c;
  c.data = y;
  c.ld = ldy;
  c.bias_bf16 = bias;
  c.ep = ep;
  gemm_ref(a, b, c, m, n, k);
}

void linear_ref(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
                int64_t n, int64_t k) {
  linear_ex_ref(x, k, w, k, bias, y, n, m, n, k, Epilogue::kStore);
}

void linear_ref_f32w(const float* x, const float* w, const float* bias, float* y, int64_t m,
                     int64_t n, int64_t k) {
  GemmA a;
  a.data = x;
  a.ld = k;
  GemmB b;
  b.layout = GemmBLayout::kF32NK;
  b.data = w;
  b.ld = k;
  GemmC c;
  c.data = y;
  c.ld = n;
  c.bias_f32 = bias;
  gemm_ref(a, b, c, m, n, k);
}

}  // namespace dsocr
