// libFuzzer entry point for the bytes-in parsers: SafetensorsFile::parse and parse_config.
//
// Each input is tried three ways: as a whole .safetensors file; as the JSON header of one (the
// fuzzer need not learn the u64 length prefix); and as config.json text. Accepted inputs are
// checked against the parser's promises (every tensor inside the file, header rebuilt from the
// parsed tensors parses again to the same tensors). Built by tests/fuzz.cmake with clang.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "loader/config.h"
#include "loader/safetensors.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_file(std::span<const uint8_t> bytes) {
  auto f = dsocr::SafetensorsFile::parse(bytes, "fuzz.safetensors");
  if (!f.ok()) {
    check(!f.message().empty() && f.message().find('\n') == std::string::npos);
    return;
  }
  uint64_t covered = 0;
  uint8_t sink = 0;
  for (const dsocr::TensorInfo& t : f->tensors()) {
    check(t.offset >= f->data_begin() && t.offset <= bytes.size());
    check(t.nbytes <= bytes.size() - t.offset);
    check(t.nbytes == static_cast<uint64_t>(t.numel()) * dsocr::dtype_size(t.dtype));
    check(f->find(t.name) == &t);
    if (t.nbytes) sink ^= f->bytes(t)[0] ^ f->bytes(t)[t.nbytes - 1];  // ASan checks the range
    covered += t.nbytes;
  }
  check(covered == f->file_size() - f->data_begin());
  // Rebuild the header from what was parsed; the new file must parse to the same tensors.
  std::vector<dsocr::TensorInfo> ts = f->tensors();
  auto header = dsocr::try_build_safetensors_header(ts, f->metadata());
  check(header.ok());
  std::string image = *header;
  image.append(reinterpret_cast<const char*>(bytes.data() + f->data_begin()), covered);
  auto g = dsocr::SafetensorsFile::parse(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(image.data()), image.size()),
      "rebuilt.safetensors");
  check(g.ok() && g->tensors().size() == ts.size() && g->metadata() == f->metadata());
  for (size_t i = 0; i < ts.size(); ++i) {
    const dsocr::TensorInfo* u = g->find(ts[i].name);
    check(u && u->dtype == ts[i].dtype && u->shape == ts[i].shape && u->nbytes == ts[i].nbytes);
    check(std::memcmp(g->bytes(*u), f->bytes(*f->find(ts[i].name)), u->nbytes) == 0);
  }
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check_file(std::span<const uint8_t>(data, size));

  // The input as a header: prefix its length, no data region.
  std::vector<uint8_t> wrapped(8 + size);
  for (int i = 0; i < 8; ++i) wrapped[i] = static_cast<uint8_t>(uint64_t{size} >> (8 * i));
  if (size) std::memcpy(wrapped.data() + 8, data, size);
  check_file(std::span<const uint8_t>(wrapped.data(), wrapped.size()));

  auto c = dsocr::parse_config(std::string(reinterpret_cast<const char*>(data), size),
                               "fuzz/config.json");
  if (c.ok()) check(c->dim == 1280 && c->n_layers == 12 && c->vocab == 129280);
  return 0;
}
