// The decode step's sampling kernels (kernels/ngram.h): n-gram ban, accept, embedding gather.
#include "kernels/ngram.h"

#include "kernels/launch.cuh"

namespace dsocr {
namespace {

constexpr int kBanThreads = 512;

// ids[a .. a+len) == ids[b .. b+len)
__device__ __forceinline__ bool same(const int32_t* ids, int64_t a, int64_t b, int len) {
  for (int j = 0; j < len; ++j)
    if (ids[a + j] != ids[b + j]) return false;
  return true;
}

__global__ void __launch_bounds__(kBanThreads)
    ngram_ban_kernel(const int32_t* __restrict__ ids, DecodeSeqState* st, NGramBan ban,
                     int32_t* __restrict__ banned) {
  __shared__ int count;
  cuda::pdl_enter();
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  const int64_t L = st->len, n = ban.n;
  int64_t begin = 0, end = 0, base = 0;  // candidate starts i in [begin, end), ids offset base
  if (ban.mode == NGramBan::kHF) {
    // hf_banned_scan: nothing while L + 1 < n; else every i with i + n <= L.
    if (L + 1 >= n) begin = 0, end = L - n + 1;
  } else if (ban.mode == NGramBan::kWindowed) {
    base = st->prompt_len;
    const int64_t Lg = L - base;
    if (Lg >= n && n > 1) {
      begin = Lg - ban.window > 0 ? Lg - ban.window : 0;
      end = Lg - n + 1;
    }
  }
  const int64_t s = (base + (L - base)) - (n - 1);  // start of the current (n-1)-suffix
  for (int64_t i = begin + threadIdx.x; i < end; i += kBanThreads) {
    if (!same(ids, base + i, s, static_cast<int>(n - 1))) continue;
    const int32_t id = ids[base + i + n - 1];
    bool white = false;
    for (int w = 0; w < ban.n_whitelist; ++w) white |= ban.mode == NGramBan::kWindowed && ban.whitelist[w] == id;
    if (!white) banned[atomicAdd(&count, 1)] = id;
  }
  __syncthreads();
  if (threadIdx.x == 0) st->n_banned = count;
}

__global__ void decode_accept_kernel(int32_t* ids, DecodeSeqState* st) {
  cuda::pdl_enter();
  DecodeSeqState s = *st;
  if (s.stop != kRunning) return;
  if (s.len >= s.capacity) {
    st->stop = kStopCapacity;
    return;
  }
  ids[s.len] = s.token;
  s.len += 1;
  s.pos = s.len - 1;
  s.generated += 1;
  if (s.token == s.eos_id) s.stop = kStopEos;
  else if (s.generated >= s.max_new) s.stop = kStopMaxTokens;
  else if (s.len >= s.capacity) s.stop = kStopCapacity;
  *st = s;
}

__global__ void embed_rows_kernel(const int32_t* __restrict__ ids, const uint16_t* __restrict__ table,
                                  uint16_t* __restrict__ out, int64_t ldo, int64_t vocab,
                                  int64_t chunks) {
  const int t = blockIdx.x;
  cuda::pdl_enter();
  const int64_t id = ids[t];
  const bool ok = id >= 0 && id < vocab;
  const uint4* src = reinterpret_cast<const uint4*>(table + (ok ? id : 0) * chunks * 8);
  uint4* dst = reinterpret_cast<uint4*>(out + t * ldo);
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x)
    dst[c] = ok ? __ldg(src + c) : make_uint4(0, 0, 0, 0);
}

}  // namespace

cudaError_t ngram_ban(const int32_t* ids, DecodeSeqState* st, const NGramBan& ban,
                      int32_t* banned, cudaStream_t stream) {
  if (!ids || !st || !banned || ban.n < 1 || ban.n_whitelist < 0 || ban.n_whitelist > 4 ||
      (ban.mode == NGramBan::kWindowed && ban.window < 1))
    return cudaErrorInvalidValue;
  return cuda::launch(ngram_ban_kernel, 1, kBanThreads, 0, stream, ids, st, ban, banned);
}

cudaError_t decode_accept(int32_t* ids, DecodeSeqState* st, cudaStream_t stream) {
  if (!ids || !st) return cudaErrorInvalidValue;
  return cuda::launch(decode_accept_kernel, 1, 1, 0, stream, ids, st);
}

cudaError_t embed_rows(const int32_t* ids, const uint16_t* table, uint16_t* out, int64_t ldo,
                       int T, int64_t vocab, int64_t dim, cudaStream_t stream) {
  if (!ids || !table || !out || T < 0 || dim % 8 || ldo % 8 || ldo < dim ||
      reinterpret_cast<uintptr_t>(table) % 16 || reinterpret_cast<uintptr_t>(out) % 16)
    return cudaErrorInvalidValue;
  if (T == 0) return cudaSuccess;
  return cuda::launch(embed_rows_kernel, T, 160, 0, stream, ids, table, out, ldo, vocab, dim / 8);
}

}  // namespace dsocr
