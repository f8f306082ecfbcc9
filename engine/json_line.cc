#include "engine/json_line.h"

#include <cstring>

#include "absl/strings/numbers.h"

namespace mxb {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

// Bytes copied as they are: printable ASCII except '"' and '\\'.
constexpr bool Plain(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

// Length of the well-formed UTF-8 sequence at s[0..n) (Unicode 15 Table 3-7), or 0 when it is
// ill-formed; then *valid_prefix is how many bytes of it belong to the maximal subpart (at
// least 1: an invalid lead byte is one subpart by itself).
size_t Utf8Sequence(const unsigned char* s, size_t n, size_t* valid_prefix) {
  const unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlong forms
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // no overlong forms
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    *valid_prefix = 1;  // 0x80..0xC1 or 0xF5..0xFF: never a lead byte
    return 0;
  }
  size_t i = 1;
  for (; i < len && i < n; ++i) {
    const unsigned char b = s[i];
    const bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
  }
  if (i == len) return len;
  *valid_prefix = i;
  return 0;
}

}  // namespace

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // The common case: a run of plain ASCII, appended in one go.
    size_t run = i;
    while (run < n && Plain(p[run])) ++run;
    if (run > i) {
      out->append(s.data() + i, run - i);
      i = run;
      if (i == n) break;
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"': out->append("\\\""); break;
        case '\\': out->append("\\\\"); break;
        case '\b': out->append("\\b"); break;
        case '\f': out->append("\\f"); break;
        case '\n': out->append("\\n"); break;
        case '\r': out->append("\\r"); break;
        case '\t': out->append("\\t"); break;
        default: {  // the other control characters (RFC 8259 §7)
          static constexpr char kHex[] = "0123456789abcdef";
          const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
          out->append(esc, sizeof esc);
        }
      }
      ++i;
      continue;
    }
    size_t prefix = 0;
    const size_t len = Utf8Sequence(p + i, n - i, &prefix);
    if (len > 0) {
      out->append(s.data() + i, len);
      i += len;
    } else {
      out->append(kReplacement, 3);
      i += prefix;
    }
  }
  out->push_back('"');
}

void JsonLine::Int(absl::string_view key, int64_t value) {
  Key(key);
  char buf[absl::numbers_internal::kFastToBufferSize];
  char* end = absl::numbers_internal::FastIntToBuffer(value, buf);
  out_->append(buf, static_cast<size_t>(end - buf));
}

}  // namespace mxb
