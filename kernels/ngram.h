// Per-sequence decode state on the device, the no-repeat-n-gram ban and the token accept step:
// the parts of greedy sampling that run inside the captured decode graph (DESIGN.md §6). CPU
// references: hf_banned_scan / windowed_banned_scan / GenerationState (runtime/sampling.h);
// argmax: kernels/argmax.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dsocr {

// One sequence's state, in device memory. Invariant between steps: ids[0 .. len) = prompt +
// accepted tokens; `token` = ids[len - 1], the input of the next step, at position pos = len - 1.
struct DecodeSeqState {
  int32_t len = 0;         // ids in the history
  int32_t prompt_len = 0;  // the prompt's share of it
  int32_t pos = 0;         // len - 1
  int32_t token = 0;       // ids[len - 1]; argmax writes the next token here
  int32_t n_banned = 0;    // entries of the banned list for this step
  int32_t stop = 0;        // DecodeStop
  int32_t generated = 0;   // accepted tokens (EOS included)
  int32_t max_new = 0;     // stop after this many accepted tokens
  int32_t capacity = 0;    // ids / KV rows reserved for the sequence
  int32_t eos_id = 1;      // stop token (-1: none, benchmarks)
};
enum DecodeStop : int32_t { kRunning = 0, kStopEos = 1, kStopMaxTokens = 2, kStopCapacity = 3 };

struct NGramBan {
  enum Mode : int32_t { kNone = 0, kHF = 1, kWindowed = 2 };
  int32_t mode = kNone;
  int32_t n = 20;                 // n-gram size (>= 1)
  int32_t window = 90;            // kWindowed: generated tokens scanned
  int32_t n_whitelist = 0;        // kWindowed: never banned
  int32_t whitelist[4] = {};      // e.g. <td>, </td>
};

// banned[0 .. st->n_banned) = the ids the rule bans for the next token, computed from
// ids[0 .. st->len) (duplicates allowed: argmax_banned applies each once). Same results as
// hf_banned_scan(ids, n) (kHF) / windowed_banned_scan(generated, n, window, whitelist) (kWindowed)
// as sets. One block; reads the state on the device (graph-capturable).
// PRECOND: banned holds >= st->len entries; 1 <= n; ban.n_whitelist <= 4.
cudaError_t ngram_ban(const int32_t* ids,   // [>= st->len] device
                      DecodeSeqState* st,   // [1] device: reads len, prompt_len; writes n_banned
                      const NGramBan& ban,
                      int32_t* banned,      // [capacity] device
                      cudaStream_t stream);

// Accepts st->token (the argmax): unless st->stop is set, ids[len] = token, len += 1,
// pos = len - 1, generated += 1; then stop = kStopEos if token == st->eos_id, kStopMaxTokens if
// generated >= st->max_new, kStopCapacity if len >= st->capacity (no room for the next token's
// K/V). A stopped state is left unchanged (the host may run one step ahead of the stop). Limits
// live in the state, not in launch arguments, so one captured graph serves every sequence.
cudaError_t decode_accept(int32_t* ids,  // [st->capacity] device
                          DecodeSeqState* st, cudaStream_t stream);

// Token embedding rows: out[t] = table[ids[t]] (BF16 copy); ids outside [0, vocab) give a zero
// row. ids are device memory (graph-capturable: the decode step embeds st->token).
// PRECOND: dim % 8 == 0; 16-byte aligned rows.
cudaError_t embed_rows(const int32_t* ids,     // [T] device
                       const uint16_t* table,  // [vocab, dim] BF16
                       uint16_t* out,          // [T, ldo] BF16
                       int64_t ldo, int T, int64_t vocab, int64_t dim, cudaStream_t stream);

}  // namespace dsocr
