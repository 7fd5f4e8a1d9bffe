// CPU reference of kernels/checksum.cu (the formula is in checksum.h).
#include <cstring>

#include "kernels/checksum.h"
#include "loader/bf16.h"
#include "loader/synth.h"  // splitmix64

namespace dsocr {

Checksum checksum_ref(const void* data, uint64_t nbytes, bool bf16_sum) {
  const auto* b = static_cast<const uint8_t*>(data);
  Checksum c;
  c.nbytes = nbytes;
  const uint64_t words = (nbytes + 1) / 2;
  uint64_t hash = splitmix64(nbytes);
  double sum = 0;
  for (uint64_t i = 0; i < words; ++i) {
    uint16_t w = b[2 * i];
    if (2 * i + 1 < nbytes) w = static_cast<uint16_t>(w | (b[2 * i + 1] << 8));
    hash += splitmix64((i << 16) + w);
    if (bf16_sum) sum += bf16_to_f32(w);
    if (i < 4) c.first4[i] = w;
  }
  c.hash = hash;
  c.sum = sum;
  return c;
}

}  // namespace dsocr
