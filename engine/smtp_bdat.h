// The message as CHUNKING sends it (RFC 3030): BDAT data is counted, not terminated, so it
// carries no dot-stuffing and no final "." CRLF. Pure functions, any thread.
//
// The scanner encodes each message once, in DATA wire form (engine/smtp_data.h), and records
// where the encoder inserted a '.'. A BDAT transaction sends that same buffer minus those dots
// and minus the terminator, as views into it: no second encode, no copy — and for the usual
// message without a leading-dot line, one view of wire[0, size - 3).
//
//   std::vector<uint32_t> dots;
//   AppendDataWire(body, &wire, &dots);
//   std::vector<BdatChunk> chunks = BdatChunks(wire, &dots, 1 << 20);
//   for (const BdatChunk& c : chunks) send "BDAT c.size[ LAST]\r\n", then c.pieces in order.
//
// SmtpSession (engine/smtp_session.h) drives the dialog; its BDAT replies are handled in
// smtp_bdat.cc next to these functions.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"

namespace mxb {

// One BDAT chunk: `size` octets, the concatenation of `pieces` (views into the wire buffer).
struct BdatChunk {
  uint64_t size = 0;
  std::vector<absl::string_view> pieces;
};

// The stuffed dots of a DATA wire form, found by scanning (a '.' at a line start, except the
// terminator line). For a wire whose offsets were not recorded.
std::vector<uint32_t> FindStuffedDots(absl::string_view wire);

// True when `dots` are exactly where a stuffed '.' can be in `wire` (ascending, each a '.' at a
// line start followed by the original line's '.'): cheap insurance that the recorded offsets
// still describe this buffer (nothing was inserted in front of it since).
bool StuffedDotsMatch(absl::string_view wire, const std::vector<uint32_t>& dots);

// `wire` (AppendDataWire output, ending in CRLF "." CRLF) as BDAT chunks of at most
// `max_chunk` octets (0: one chunk), without the stuffed dots and the terminator. `dots` may be
// null or stale: they are then found by scanning. At least one chunk (RFC 3030 §2 allows
// "BDAT 0 LAST", never needed here: the wire always holds one CRLF).
std::vector<BdatChunk> BdatChunks(absl::string_view wire, const std::vector<uint32_t>* dots,
                                  uint64_t max_chunk);

}  // namespace mxb
