// Lookups over the generated run tables (unicode_tables.cpp) and UTF-8 helpers.
#include "loader/unicode.h"

#include <algorithm>
#include <array>

namespace dsocr::unicode {
namespace {

uint8_t props_by_search(uint32_t cp) {
  const uint32_t* end = kRunStart + kRunCount;
  const uint32_t* it = std::upper_bound(kRunStart, end, cp);  // kRunStart[0] == 0
  return kRunProps[(it - kRunStart) - 1];
}

// The Basic Multilingual Plane flattened to one byte per code point (64 KiB), built on first
// use: nearly all text stays in it, and the binary search costs ~12 steps per character.
const std::array<uint8_t, 0x10000>& bmp_props() {
  static const auto table = [] {
    std::array<uint8_t, 0x10000> t{};
    for (size_t r = 0; r < kRunCount && kRunStart[r] < 0x10000; ++r) {
      uint32_t end = r + 1 < kRunCount ? std::min<uint32_t>(kRunStart[r + 1], 0x10000) : 0x10000;
      std::fill(t.begin() + kRunStart[r], t.begin() + end, kRunProps[r]);
    }
    return t;
  }();
  return table;
}

// Width of a UTF-8 sequence from its lead byte, 0 if the byte cannot start one.
int utf8_width(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// Valid range of the second byte after lead byte `b` (RFC 3629 table; excludes overlongs,
// surrogates and code points above U+10FFFF). Later continuation bytes are always 80..BF.
bool second_byte_ok(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

// Length of the valid prefix of the sequence starting at s[i] (1..width); `*complete` tells
// whether it is a whole character. A lone invalid byte gives 1 and !complete.
size_t valid_prefix(std::string_view s, size_t i, bool* complete) {
  uint8_t lead = static_cast<uint8_t>(s[i]);
  int w = utf8_width(lead);
  *complete = w == 1;
  if (w <= 1) return 1;
  size_t k = 1;
  for (; k < static_cast<size_t>(w) && i + k < s.size(); ++k) {
    uint8_t b = static_cast<uint8_t>(s[i + k]);
    bool ok = k == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return k;
  }
  *complete = k == static_cast<size_t>(w);
  return k;
}

}  // namespace

uint8_t props(uint32_t cp) {
  if (cp < 0x10000) return bmp_props()[cp];
  if (cp > 0x10FFFF) return kCn;
  return props_by_search(cp);
}

size_t decode_utf8(std::string_view s, size_t i, uint32_t* cp) {
  bool complete = false;
  size_t n = valid_prefix(s, i, &complete);
  auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i + k])); };
  if (!complete) {
    *cp = kInvalidBase + byte(0);
    return 1;
  }
  switch (n) {
    case 1:
      *cp = byte(0);
      break;
    case 2:
      *cp = ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
      break;
    case 3:
      *cp = ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
      break;
    default:
      *cp = ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) |
            (byte(3) & 0x3F);
  }
  return n;
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t append_utf8_lossy(std::string_view bytes, bool final, std::string& out) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  size_t i = 0;
  size_t run = 0;  // start of the pending run of valid bytes, copied in one go
  while (i < bytes.size()) {
    if (static_cast<uint8_t>(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    bool complete = false;
    size_t n = valid_prefix(bytes, i, &complete);
    if (complete) {
      i += n;
      continue;
    }
    if (!final && i + n == bytes.size() && utf8_width(static_cast<uint8_t>(bytes[i])) > 1) {
      break;  // truncated but valid so far: wait for more bytes
    }
    out.append(bytes.data() + run, i - run);
    out += kReplacement;
    i += n;
    run = i;
  }
  out.append(bytes.data() + run, i - run);
  return i;
}

const std::array<uint32_t, 256>& byte_level_chars() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t extra = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[b] = printable ? b : 256 + extra++;
    }
    return t;
  }();
  return table;
}

}  // namespace dsocr::unicode
