// Message body to SMTP DATA wire form (RFC 5321 §4.5.2 transparency, §2.3.8 line endings).
// Pure function, any thread.
//
// Every line ending in the input (CRLF, bare LF, bare CR) becomes CRLF; NUL bytes are dropped
// (RFC 5321 §4.1.1.4 forbids them in DATA); a line starting with '.' gets one more '.'. The output
// always ends with CRLF "." CRLF, and a bare CR or LF never reaches the wire, so no input can end
// the DATA early (SMTP smuggling, CVE-2023-51764 class).
//
// Exact rules (shared by all three functions):
//   - CRLF, bare LF and bare CR each end one line. A CR pairs only with the LF right after it,
//     so "\r\r\n" is two line ends ("\r\n\r\n"), and "\r\0\n" is two as well.
//   - NUL is dropped; NULs at a line start do not hide a '.' ("\0.x" goes out as "..x").
//   - A last line without a line end gets CRLF. An empty (or all-NUL) body becomes one empty
//     line, so the wire is "\r\n.\r\n" and always ends with CRLF "." CRLF.
//   - No wire line is longer than 1,000 octets with its CRLF (RFC 5321 §4.5.3.1.6). A longer
//     line is re-cut, never bounced (the way Postfix's smtp_line_length_limit = 998 does it):
//     in the header section (the lines before the first empty one) it is folded before
//     whitespace (RFC 5322 §2.2.3, so unfolding restores it); a body line, or a header line
//     without usable whitespace, is broken after 998 octets (never inside a UTF-8 sequence)
//     and the continuation line starts with one inserted space ("\r\n "). Such a message
//     changes in transit (a DKIM body hash over it breaks), but it arrives; RFC 5322 §2.1.1
//     already forbids the long line, so the sender's message was broken before.
//   - NormalizeLineEndings(x) == DecodeDataWire(AppendDataWire(x)) for every x.
//
//   std::string wire; mxb::AppendDataWire(body, &wire);   // then send `wire` after 354
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace mxb {

// `stuffed_dots`, when given, receives the offset in *out of every '.' the encoder inserted
// (RFC 5321 §4.5.2), so BDAT (RFC 3030, no transparency) can send the same buffer without them
// and without a second encode (engine/smtp_bdat.h).
void AppendDataWire(absl::string_view body, std::string* out,
                    std::vector<uint32_t>* stuffed_dots = nullptr);

// True when `body` is already its own wire form, so AppendDataWire only copies it and adds
// "." CRLF: it is not empty, every line ends in CRLF (no bare CR or LF, the last line too), there
// is no NUL, no line starts with '.', and no line is longer than 998 octets before its CRLF.
// One vectorised pass over the body (AVX-512BW where the CPU has it, else SSE2, else a byte
// loop), stopping at the first block that needs work.
bool IsDataWireForm(absl::string_view body);
// The same without AVX-512 (for tests: both classifiers must agree).
bool IsDataWireFormPortable(absl::string_view body);

// Inverse for receivers (the sink, tests): un-dot-stuffs a DATA payload that ends with
// CRLF.CRLF (the terminator is not included in the result). Lines keep their CRLF. Only a
// line that is exactly ".\r\n" terminates; without one the whole input is decoded.
std::string DecodeDataWire(absl::string_view wire);

// CRLF-normalises `body` the same way AppendDataWire does, without dot-stuffing and without the
// terminator (the form a receiver stores). Used by tests to compare bodies byte-for-byte.
std::string NormalizeLineEndings(absl::string_view body);

}  // namespace mxb
