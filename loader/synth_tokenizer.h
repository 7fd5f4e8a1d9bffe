// A synthetic tokenizer.json shaped like DeepSeek-OCR's (../shared/MODEL.md §6.3, §9), for the
// synthetic checkpoint of synth.h: the real file cannot be downloaded everywhere, and without a
// tokenizer the runtime cannot run a prompt end to end.
//
// Same structure and ids as the real one: a byte-level BPE whose model vocab holds exactly ids
// 0..127999 (BOS/EOS/PAD strings at 0/1/2, the 256 ByteLevel symbols at 3..258, merged tokens
// after), DeepSeek-V3's pre-tokenizer (three Isolated Splits + ByteLevel without regex), a
// ByteLevel decoder, and the 830 added tokens at their official ids with their official flags
// (0..2 and 128000..128826), so len(tokenizer) = 128827. The merges are NOT the real ones, so
// token ids of ordinary text differ from the real tokenizer's; special-token ids are identical.
#pragma once

#include <string>

#include "loader/status.h"

namespace dsocr {

constexpr const char* kSynthTokenizerFile = "tokenizer.json";
constexpr int kSynthBpeVocab = 128000;       // model.vocab entries: ids 0..127999
constexpr int kSynthTokenizerSize = 128827;  // largest added-token id + 1

// The whole tokenizer.json text (about 5 MB). A pure function: every call returns the same bytes.
std::string synth_tokenizer_json();

// Writes synth_tokenizer_json() to DIR/kSynthTokenizerFile via a temporary name and a rename, so
// an interrupted run never leaves a truncated file. DIR must exist. The path written goes to
// *path when non-null.
Status write_synth_tokenizer(const std::string& dir, std::string* path);

}  // namespace dsocr
