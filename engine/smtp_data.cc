#include "engine/smtp_data.h"

#include <cstring>

namespace mxb {
namespace {

// Appends [p, end) without NUL octets (RFC 5321 §4.1.1.4: NUL is not allowed in DATA; a
// receiver may reject or silently mangle it, so it never leaves us).
inline void AppendWithoutNul(const char* p, const char* end, std::string* out) {
  while (p < end) {
    const char* nul = static_cast<const char*>(std::memchr(p, '\0', end - p));
    if (nul == nullptr) {
      out->append(p, end - p);
      return;
    }
    out->append(p, nul - p);
    p = nul + 1;
  }
}

// The one line splitter behind AppendDataWire and NormalizeLineEndings, so the two can never
// disagree about where a line ends.
//
// Line ends: CRLF, a bare LF and a bare CR each end one line and become one CRLF. A CR is only
// paired with an LF that follows it immediately, so "\r\r\n" is a bare CR then a CRLF: two
// line ends, "\r\n\r\n" on the wire (one empty line more, never a lone CR that a receiver might
// read as a line end — the SMTP smuggling ambiguity). NULs are dropped before anything else is
// decided, except that a NUL between CR and LF separates them ("\r\0\n" is two line ends).
// Every output line ends with CRLF: a body whose last line has no line end gets one, and an
// empty body becomes one empty line, so the wire always ends with CRLF "." CRLF.
//
// Common case (CRLF or LF text without NUL) per line: one memchr for LF (amortised: it is only
// repeated once the cursor passes it, so bare-CR-only input stays linear), one for CR and one
// for NUL within the line, then one append.
template <bool kDotStuff>
void Normalize(absl::string_view body, std::string* out) {
  const char* p = body.data();
  const char* const end = p + body.size();
  const char* next_lf = nullptr;  // the next LF at or after p, or end
  bool ended_a_line = false;
  bool unterminated = false;
  while (p < end) {
    // At a line start. Skip NULs first so that "\0." is still seen as a line starting with '.'.
    while (p < end && *p == '\0') ++p;
    if (p == end) break;
    // RFC 5321 §4.5.2: a line starting with "." gets one more "." on the wire.
    if (kDotStuff && *p == '.') out->push_back('.');
    if (next_lf == nullptr || next_lf < p) {
      next_lf = static_cast<const char*>(std::memchr(p, '\n', end - p));
      if (next_lf == nullptr) next_lf = end;
    }
    const char* cr = static_cast<const char*>(std::memchr(p, '\r', next_lf - p));
    const char* eol = cr != nullptr ? cr : next_lf;
    AppendWithoutNul(p, eol, out);
    if (eol == end) {
      unterminated = true;
      break;
    }
    out->append("\r\n", 2);
    ended_a_line = true;
    p = (*eol == '\r' && eol + 1 < end && eol[1] == '\n') ? eol + 2 : eol + 1;
  }
  if (unterminated || !ended_a_line) {
    // Last line without a line end, or nothing but NULs: close with a line end of our own.
    out->append("\r\n", 2);
  }
}

}  // namespace

void AppendDataWire(absl::string_view body, std::string* out) {
  // LF-only input grows by one octet per line and a few lines gain a dot; 1/32 covers text
  // with lines of 32+ octets without a second allocation.
  out->reserve(out->size() + body.size() + body.size() / 32 + 8);
  Normalize<true>(body, out);
  out->append(".\r\n", 3);
}

std::string NormalizeLineEndings(absl::string_view body) {
  std::string out;
  out.reserve(body.size() + body.size() / 32 + 4);
  Normalize<false>(body, &out);
  return out;
}

std::string DecodeDataWire(absl::string_view wire) {
  std::string out;
  out.reserve(wire.size());
  const char* p = wire.data();
  const char* const end = p + wire.size();
  while (p < end) {
    const char* lf = static_cast<const char*>(std::memchr(p, '\n', end - p));
    const char* line_end = lf != nullptr ? lf + 1 : end;
    absl::string_view line(p, line_end - p);
    if (line == ".\r\n") break;  // the terminator; only CRLF "." CRLF ends DATA
    if (line[0] == '.') line.remove_prefix(1);  // RFC 5321 §4.5.2: undo the stuffed dot
    out.append(line.data(), line.size());
    p = line_end;
  }
  return out;
}

}  // namespace mxb
