// Host-side bfloat16 helpers (the checkpoint's storage type). Header-only, no CUDA needed.
#pragma once

#include <cstdint>
#include <cstring>

namespace dsocr {

// bf16 bit pattern -> float32 (exact).
inline float bf16_to_f32(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// float32 -> bf16 bit pattern, round to nearest even (NaN stays a quiet NaN).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Round a float32 to the nearest bf16 value, returned as float32.
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

}  // namespace dsocr
