// libFuzzer target: the DATA encoder (engine/smtp_data.h), which turns any message body into
// what goes on the wire after 354.
//
// Asserts the wire rules: every CR is followed by LF and every LF preceded by CR (no bare CR
// or LF: SMTP smuggling), no NUL, every line at most 1,000 octets including CRLF (RFC 5321
// §4.5.3.1.6), CRLF "." CRLF only at the very end, and decoding gives the normalised body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/smtp_data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view body(reinterpret_cast<const char*>(data), size);
  std::string wire;
  mxb::AppendDataWire(body, &wire);
  if (wire.size() < 5 || wire.compare(wire.size() - 5, 5, "\r\n.\r\n") != 0) {
    // The only exception: an empty body is "\r\n.\r\n" exactly (size 5, covered above).
    std::abort();
  }
  size_t line_start = 0;
  for (size_t i = 0; i < wire.size(); ++i) {
    const char c = wire[i];
    if (c == '\0') std::abort();
    if (c == '\r' && (i + 1 >= wire.size() || wire[i + 1] != '\n')) std::abort();
    if (c == '\n') {
      if (i == 0 || wire[i - 1] != '\r') std::abort();
      if (i + 1 - line_start > 1000) std::abort();
      // A line that is exactly "." ends DATA: only the last line may be one.
      if (i + 1 - line_start == 3 && wire[line_start] == '.' && i + 1 != wire.size()) std::abort();
      line_start = i + 1;
    }
  }
  if (wire.find("\r\n.\r\n") != wire.size() - 5) std::abort();
  if (wire.compare(0, 3, ".\r\n") == 0 && wire.size() != 3) std::abort();
  if (mxb::DecodeDataWire(wire) != mxb::NormalizeLineEndings(body)) std::abort();
  return 0;
}
