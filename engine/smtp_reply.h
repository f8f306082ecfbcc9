// SMTP reply parsing (RFC 5321 §4.2): pure functions and an incremental parser, any thread.
//
//   mxb::ReplyParser p;
//   std::vector<mxb::SmtpReply> replies;
//   absl::Status s = p.Feed(bytes_from_server, &replies);   // may complete 0..n replies
//   if (!s.ok()) -> protocol error: close the connection, defer its recipients
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mxb {

// RFC 5321 §4.5.3.1.5 sets 512 octets for a reply line; real servers exceed it now and then,
// so we accept up to 4x that, and cap what one reply may hold so a hostile server cannot make
// us buffer without bound.
inline constexpr size_t kMaxReplyLineOctets = 2048;   // including CRLF
inline constexpr size_t kMaxReplyLines = 128;         // lines in one multi-line reply
inline constexpr size_t kMaxStoredReplyText = 4096;   // text kept per reply (rest is dropped)

struct SmtpReply {
  int code = 0;               // 200..599
  std::string enhanced;       // "4.2.1" when the text starts with an RFC 3463 code, else ""
  std::string text;           // lines' text (after "NNN-"/"NNN "), joined with "\n", capped
  std::vector<std::string> lines;  // each line's text (for EHLO keywords), capped as above
  bool truncated = false;     // text/lines were capped

  int klass() const { return code / 100; }  // 2, 3, 4, 5
  bool positive() const { return code >= 200 && code < 400; }
};

// Incremental parser: bytes in, complete replies out. Accepts CRLF and (tolerantly) bare LF line
// ends from servers. Errors (after which the parser must not be fed again): a line longer than
// kMaxReplyLineOctets, a code that is not 3 digits in 200..599, a separator other than ' ' or '-'
// (a bare "250" with no text is accepted), a continuation line whose code differs from the
// first line's, more than kMaxReplyLines lines.
class ReplyParser {
 public:
  [[nodiscard]] absl::Status Feed(absl::string_view bytes, std::vector<SmtpReply>* out);
  // Bytes of an incomplete reply currently buffered.
  size_t buffered() const { return partial_line_.size(); }
  // Drop everything buffered (used after "220 ready to start TLS": RFC 3207 §5, response injection).
  // Also clears a previous error, so the parser can be used again.
  void Reset();

 private:
  absl::Status OnLine(absl::string_view line, std::vector<SmtpReply>* out);
  void StoreText(absl::string_view text);
  absl::Status Fail(absl::Status status);

  std::string partial_line_;
  SmtpReply current_;
  bool in_reply_ = false;
  bool failed_ = false;
  size_t lines_in_reply_ = 0;  // lines of current_ seen (stored or not)
  size_t stored_octets_ = 0;   // text octets kept in current_ (joining '\n's included)
};

// EHLO capabilities (RFC 5321 §4.1.1.1 and the extension RFCs).
struct EhloCapabilities {
  bool starttls = false;
  bool pipelining = false;
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool enhancedstatuscodes = false;
  bool chunking = false;
  bool requiretls = false;
  bool size_offered = false;  // SIZE keyword present (RFC 1870), with or without a limit
  // RFC 4954 §3: the SASL mechanisms after "AUTH", upper case, one space between ("PLAIN LOGIN").
  std::string auth_mechanisms;
  uint64_t size = 0;  // SIZE limit; 0 = none advertised or unlimited
};
// Parses the lines of a 250 reply to EHLO (the first line is the greeting, keywords after it;
// case-insensitive).
EhloCapabilities ParseEhlo(const SmtpReply& reply);

}  // namespace mxb
