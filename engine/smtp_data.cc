#include "engine/smtp_data.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// RFC 5321 §4.5.3.1.6: a text line is at most 1,000 octets including the CRLF.
constexpr size_t kMaxLineOctets = 998;

inline bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// Where to fold an over-long header line (RFC 5322 §2.2.3: a CRLF may be inserted before any
// WSP): the index of the last WSP within the first `budget` octets such that neither the piece
// before it nor the rest is all whitespace (a whitespace-only line in the header section is
// obsolete syntax that some parsers read as the end of the header). 0 when there is none.
size_t FoldPoint(absl::string_view rest, size_t budget) {
  const size_t first = rest.find_first_not_of(" \t");
  const size_t last = rest.find_last_not_of(" \t");
  if (first == absl::string_view::npos) return 0;
  size_t k = std::min(budget, last);  // a fold at `last` would leave no text after it
  for (; k > first; --k) {
    if (IsWsp(rest[k])) return k;
  }
  return 0;
}

// A hard break at `budget` octets, moved back (at most 3 octets) so that it does not split a
// UTF-8 sequence (SMTPUTF8 mail, RFC 6531); input that is not UTF-8 breaks at `budget`.
size_t HardCut(absl::string_view rest, size_t budget) {
  size_t cut = budget;
  for (int i = 0; i < 3 && cut > 1 && (static_cast<unsigned char>(rest[cut]) & 0xC0) == 0x80;
       ++i) {
    --cut;
  }
  return (static_cast<unsigned char>(rest[cut]) & 0xC0) == 0xC0 ? cut : budget;
}

// Writes one logical line that is too long for the wire as several wire lines (without the
// final CRLF, which the caller appends). `budget` is the room of the first piece (one less when
// the line starts with '.', so the stuffed and the unstuffed form break at the same places).
// Header lines fold at whitespace (unfolding restores them exactly); otherwise — body lines, or
// a header line without usable whitespace — the line is broken and the continuation starts with
// a space, as Postfix does (smtp_line_length_limit: "<CR><LF><SPACE>", chosen "to minimize the
// damage to MIME formatted mail": base64 decoders skip the space, a header stays one field).
void AppendWrapped(absl::string_view rest, size_t budget, bool header, std::string* out) {
  while (rest.size() > budget) {
    size_t cut = header ? FoldPoint(rest, budget) : 0;
    const bool folded = cut > 0;
    if (!folded) cut = HardCut(rest, budget);
    if (header && rest.find_first_not_of(" \t", cut) == absl::string_view::npos) {
      // Only whitespace would follow: a whitespace-only continuation line may read as the end
      // of the header section, and trailing WSP of a field carries no meaning. Dropped.
      rest = rest.substr(0, cut);
      break;
    }
    out->append(rest.data(), cut);
    out->append("\r\n", 2);
    rest.remove_prefix(cut);
    if (folded) {
      budget = kMaxLineOctets;  // the continuation starts with the WSP it was folded at
    } else {
      out->push_back(' ');
      budget = kMaxLineOctets - 1;
    }
  }
  out->append(rest.data(), rest.size());
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
// Common case per line: the next LF, CR and NUL are each found by one memchr that is only
// repeated once the cursor passes it (so bare-CR-only or NUL-free input stays linear). A line
// that is already in wire form — ends in CRLF, no other CR, no NUL, no leading dot to stuff,
// short enough — is not copied on its own: runs of such lines go out in one append (issue 17:
// per-line appends and per-line NUL/CR scans were a quarter of the scanner's user time).
template <bool kDotStuff>
void Normalize(absl::string_view body, std::string* out, std::vector<uint32_t>* stuffed_dots) {
  const char* p = body.data();
  const char* const end = p + body.size();
  const char* next_lf = nullptr;  // the next LF at or after p, or end
  bool ended_a_line = false;
  bool unterminated = false;
  bool in_header = true;  // lines before the first empty one: RFC 5322 header fields
  const char* next_cr = nullptr;   // the next CR at or after p, or end
  const char* next_nul = nullptr;  // the next NUL at or after p, or end
  const char* run = nullptr;       // start of input lines copied as they are, not yet appended
  auto next = [end](const char* from, char c, const char** cached) {
    if (*cached == nullptr || *cached < from) {
      *cached = static_cast<const char*>(std::memchr(from, c, end - from));
      if (*cached == nullptr) *cached = end;
    }
    return *cached;
  };
  while (p < end) {
    next(p, '\n', &next_lf);
    next(p, '\r', &next_cr);
    next(p, '\0', &next_nul);
    if (next_lf != end && next_cr + 1 == next_lf && next_nul > next_lf &&
        *p != '.' &&  // a dot line is stuffed, and re-cut one octet earlier in both forms
        static_cast<size_t>(next_cr - p) <= kMaxLineOctets) {
      if (run == nullptr) run = p;
      if (next_cr == p) in_header = false;  // RFC 5322 §2.1: the first empty line ends it
      ended_a_line = true;
      p = next_lf + 1;
      continue;
    }
    if (run != nullptr) {
      out->append(run, p - run);
      run = nullptr;
    }
    // At a line start. Skip NULs first so that "\0." is still seen as a line starting with '.'.
    while (p < end && *p == '\0') ++p;
    if (p == end) break;
    // RFC 5321 §4.5.2: a line starting with "." gets one more "." on the wire.
    const bool dot = *p == '.';
    if (kDotStuff && dot) {
      if (stuffed_dots != nullptr) stuffed_dots->push_back(static_cast<uint32_t>(out->size()));
      out->push_back('.');
    }
    const size_t content_start = out->size();
    next(p, '\n', &next_lf);  // past the NULs just skipped
    const char* cr = next(p, '\r', &next_cr);
    const char* eol = cr < next_lf ? cr : next_lf;
    if (next(p, '\0', &next_nul) < eol) {
      AppendWithoutNul(p, eol, out);
    } else {
      out->append(p, eol - p);
    }
    const size_t length = out->size() - content_start;
    if (length + (dot ? 1 : 0) > kMaxLineOctets) {
      // Rare: re-emit the line in pieces (RFC 5321 §4.5.3.1.6).
      const std::string line = out->substr(content_start);
      out->resize(content_start);
      AppendWrapped(line, kMaxLineOctets - (dot ? 1 : 0), in_header, out);
    } else if (length == 0) {
      in_header = false;  // RFC 5322 §2.1: the first empty line ends the header section
    }
    if (eol == end) {
      unterminated = true;
      break;
    }
    out->append("\r\n", 2);
    ended_a_line = true;
    p = (*eol == '\r' && eol + 1 < end && eol[1] == '\n') ? eol + 2 : eol + 1;
  }
  if (run != nullptr) out->append(run, p - run);
  if (unterminated || !ended_a_line) {
    // Last line without a line end, or nothing but NULs: close with a line end of our own.
    out->append("\r\n", 2);
  }
}

// One 64-bit mask per octet class of a 64-octet block (bit i = octet i).
struct BlockMasks {
  uint64_t lf, cr, nul, dot;
};

// Classifiers: the masks of `blocks` whole blocks from p. Called per run of blocks (not per
// block), so the one chosen at run time costs one indirect call per kilobyte or so.
using ClassifyBlocks = void (*)(const char* p, size_t blocks, BlockMasks* out);

void ClassifyPortable(const char* p, size_t blocks, BlockMasks* out) {
  for (size_t b = 0; b < blocks; ++b, p += 64) {
    BlockMasks m{};
#if defined(__SSE2__)
    const __m128i lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
    const __m128i nul = _mm_setzero_si128(), dot = _mm_set1_epi8('.');
    auto bits = [](__m128i eq, int k) {
      return static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(eq))) << (16 * k);
    };
    for (int k = 0; k < 4; ++k) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
      m.lf |= bits(_mm_cmpeq_epi8(v, lf), k);
      m.cr |= bits(_mm_cmpeq_epi8(v, cr), k);
      m.nul |= bits(_mm_cmpeq_epi8(v, nul), k);
      m.dot |= bits(_mm_cmpeq_epi8(v, dot), k);
    }
#else
    for (int i = 0; i < 64; ++i) {
      const uint64_t bit = uint64_t{1} << i;
      m.lf |= p[i] == '\n' ? bit : 0;
      m.cr |= p[i] == '\r' ? bit : 0;
      m.nul |= p[i] == '\0' ? bit : 0;
      m.dot |= p[i] == '.' ? bit : 0;
    }
#endif
    out[b] = m;
  }
}

#if defined(__x86_64__)
// AVX-512BW compares 64 octets into a mask register at once: a quarter of SSE2's work.
__attribute__((target("avx512bw"))) void ClassifyAvx512(const char* p, size_t blocks,
                                                         BlockMasks* out) {
  const __m512i lf = _mm512_set1_epi8('\n'), cr = _mm512_set1_epi8('\r');
  const __m512i nul = _mm512_setzero_si512(), dot = _mm512_set1_epi8('.');
  for (size_t b = 0; b < blocks; ++b, p += 64) {
    const __m512i v = _mm512_loadu_si512(p);
    out[b] = {_mm512_cmpeq_epi8_mask(v, lf), _mm512_cmpeq_epi8_mask(v, cr),
              _mm512_cmpeq_epi8_mask(v, nul), _mm512_cmpeq_epi8_mask(v, dot)};
  }
}
#endif

ClassifyBlocks ChooseClassifier() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512bw")) return ClassifyAvx512;
#endif
  return ClassifyPortable;
}

bool IsDataWireFormWith(absl::string_view body, ClassifyBlocks classify) {
  const size_t n = body.size();
  if (n < 2 || body[n - 2] != '\r' || body[n - 1] != '\n') return false;
  uint64_t cr_carry = 0;     // the previous block's last octet was a CR
  uint64_t start_carry = 1;  // the next block's first octet starts a line (the body's does)
  int64_t last_lf = -1;      // a virtual LF just before the body
  constexpr size_t kRun = 16;  // blocks classified per call
  BlockMasks masks[kRun];
  char pad[64];
  for (size_t base = 0; base < n;) {
    const size_t whole = (n - base) / 64;
    size_t blocks = std::min(whole, kRun);
    if (blocks > 0) {
      classify(body.data() + base, blocks, masks);
    } else {
      // The tail, padded with an octet of no class (no CR, LF, NUL or dot).
      std::memset(pad, 'x', sizeof pad);
      std::memcpy(pad, body.data() + base, n - base);
      classify(pad, 1, masks);
      blocks = 1;
    }
    for (size_t b = 0; b < blocks; ++b, base += 64) {
      const BlockMasks& m = masks[b];
      // Every LF right after a CR and every CR right before an LF: the CR mask moved one octet
      // on is the LF mask (a CR as the block's last octet carries into the next block).
      const uint64_t cr_next = (m.cr << 1) | cr_carry;
      const uint64_t starts = (m.lf << 1) | start_carry;
      if (m.nul != 0 || cr_next != m.lf || (starts & m.dot) != 0) return false;
      cr_carry = m.cr >> 63;
      start_carry = m.lf >> 63;
      if (m.lf != 0) {
        // RFC 5321 §4.5.3.1.6: at most 1,000 octets from one LF to the next (998 + CRLF).
        // Lines within a block are shorter; only a block's first LF can end a long one.
        const int64_t first = static_cast<int64_t>(base) + __builtin_ctzll(m.lf);
        if (first - last_lf > static_cast<int64_t>(kMaxLineOctets) + 2) return false;
        last_lf = static_cast<int64_t>(base) + 63 - __builtin_clzll(m.lf);
      }
    }
  }
  return true;
}

}  // namespace

bool IsDataWireForm(absl::string_view body) {
  static const ClassifyBlocks classify = ChooseClassifier();
  return IsDataWireFormWith(body, classify);
}

bool IsDataWireFormPortable(absl::string_view body) {
  return IsDataWireFormWith(body, ClassifyPortable);
}

void AppendDataWire(absl::string_view body, std::string* out,
                    std::vector<uint32_t>* stuffed_dots) {
  if (IsDataWireForm(body)) {
    // The common case (a producer that writes CRLF lines and stuffs nothing): one copy, no
    // per-line scans (issue 17: 4.8-5.3 us of the scanner thread per 20 KB message before, 1.3-1.5
    // after, bench/README.md).
    out->reserve(out->size() + body.size() + 3);
    out->append(body.data(), body.size());
    out->append(".\r\n", 3);
    return;
  }
  // LF-only input grows by one octet per line and a few lines gain a dot; 1/32 covers text
  // with lines of 32+ octets without a second allocation.
  out->reserve(out->size() + body.size() + body.size() / 32 + 8);
  Normalize<true>(body, out, stuffed_dots);
  out->append(".\r\n", 3);
}

std::string NormalizeLineEndings(absl::string_view body) {
  std::string out;
  out.reserve(body.size() + body.size() / 32 + 4);
  Normalize<false>(body, &out, nullptr);
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
