// libFuzzer target: the SMTP reply parser (engine/smtp_reply.h) and EHLO keyword parsing, fed
// the bytes a hostile server sends, split into reads at fuzzer-chosen points.
//
// Asserts: replies have a code in 200..599 and respect the stored-text caps; after an error
// the parser returns errors only (it must not be fed again, but it must not crash either);
// Reset() makes it usable again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "engine/smtp_reply.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the read size: the same bytes in different chunkings must not crash.
  const size_t chunk = 1 + data[0] % 64;
  absl::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  mxb::ReplyParser parser;
  std::vector<mxb::SmtpReply> replies;
  bool failed = false;
  for (size_t off = 0; off < in.size(); off += chunk) {
    absl::Status s = parser.Feed(in.substr(off, chunk), &replies);
    if (!s.ok()) {
      failed = true;
      break;
    }
  }
  for (const mxb::SmtpReply& r : replies) {
    if (r.code < 200 || r.code > 599) std::abort();
    if (r.text.size() > mxb::kMaxStoredReplyText + mxb::kMaxReplyLines) std::abort();
    if (r.lines.size() > mxb::kMaxReplyLines) std::abort();
    mxb::EhloCapabilities caps = mxb::ParseEhlo(r);
    (void)caps;
  }
  if (!failed && parser.buffered() > mxb::kMaxReplyLineOctets) std::abort();
  parser.Reset();
  replies.clear();
  (void)parser.Feed(in, &replies);  // all at once after a Reset
  return 0;
}
