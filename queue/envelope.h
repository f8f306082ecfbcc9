// Envelope: the PowerMTA-style pickup-file header that precedes the RFC 5322 message in a spool
// file (see DESIGN.md "Spool directory API").
//
//   x-sender: <bounce@esp.example>
//   x-receiver: <rcpt@dest.example>      (one or more)
//   x-envid: ...   x-job: ...   x-requiretls: yes   x-priority: N     (optional)
//   x-attempts: N   x-first-attempt: <unix s>   x-next-attempt: <unix s>   (optional, retry state)
//   <RFC 5322 message follows>
//
// Envelope lines are case-insensitive on the key, end with LF or CRLF and come first in the file;
// the first line that is not an `x-<known>:` line starts the message. Pure functions, any thread.
//
// Parsing rules (decided here, relied on by the scanner and mxburst-inject):
//  - Known keys: x-sender, x-receiver, x-envid, x-job, x-requiretls, x-priority, x-attempts,
//    x-first-attempt, x-next-attempt. Optional
//    spaces/tabs may surround the value and precede the ':'. Any other line — including unknown
//    `X-Something:` lines, blank lines and folded continuation lines — ends the envelope and is
//    the first line of the message. So a message whose own first header is one of the known keys
//    (e.g. Outlook's "X-Priority: 3") would be read as envelope: producers must not start a
//    message with such a header (SerializeEnvelope output is always unambiguous for bodies that
//    start with From:/Received:/... as generated messages do).
//  - Addresses may be written `<addr>` or bare `addr`. `x-sender: <>` is the null sender
//    (RFC 5321 §4.5.5); an empty x-sender value is an error (write <> explicitly).
//  - An address needs a non-empty local part, '@' and a domain (the last '@' splits them); no
//    spaces, control characters, '<' or '>'. 8-bit octets are accepted (SMTPUTF8, RFC 6531).
//    The domain is lower-cased (ASCII only); the local part is kept as written (RFC 5321 §2.4).
//  - Limits: address <= kMaxAddressOctets, <= kMaxRecipients x-receiver lines, envelope lines
//    in total <= kMaxEnvelopeOctets, x-envid <= 100 printable ASCII (RFC 3461 §4.4),
//    x-job <= kMaxJobOctets without control characters, x-priority a decimal int,
//    x-requiretls `yes` or `no`; x-attempts, x-first-attempt and x-next-attempt decimal
//    integers >= 0 (the last two are Unix seconds), at most kMaxAttempts / kMaxUnixSeconds.
//  - The retry-state keys are written by the engine when it defers a message (SerializeEnvelope
//    omits them when zero, so files without them read as attempts 0 / never attempted).
//    x-attempts is also the message's *generation*: every rewrite of the recipient list (defer,
//    recovery) increments it, and journal records (queue/journal.h) name the generation they
//    index, so a recipient index never applies to a re-numbered list.
//  - Duplicate single-valued lines (every key but x-receiver) are errors; repeated
//    x-receiver lines are kept as written (no de-duplication).
//  - The message after the envelope must not be empty (nor only line ends).
//
//   absl::StatusOr<Envelope> env = ParseEnvelope(file_bytes);
//   if (!env.ok()) quarantine(env.status().message());
//   absl::string_view body = file_bytes.substr(env->body_offset);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb {

// RFC 5321 §4.5.3.1: 64-octet local part + '@' + 255-octet domain.
inline constexpr size_t kMaxAddressOctets = 320;
inline constexpr size_t kMaxRecipients = 10'000;
inline constexpr size_t kMaxEnvelopeOctets = 1 << 20;  // all envelope lines together
inline constexpr size_t kMaxJobOctets = 256;
inline constexpr size_t kMaxEnvidOctets = 100;  // RFC 3461 §4.4
// Retry-state bounds (engine-written fields, checked when read): a billion passes is far past
// any schedule (hourly for 60 days is 1,440) and far from uint32_t wrap-around; Unix seconds
// up to 9999-12-31T23:59:59Z.
inline constexpr uint32_t kMaxAttempts = 1'000'000'000;
inline constexpr int64_t kMaxUnixSeconds = 253'402'300'799;

struct Envelope {
  std::string sender;                   // without <>; empty for the null sender "<>"
  std::vector<std::string> recipients;  // without <>; "local@domain", domain lower-cased
  std::string envid;
  std::string job;
  bool require_tls = false;
  int priority = 0;
  // Retry state (see the header comment). 0 = absent.
  uint32_t attempts = 0;       // x-attempts: delivery passes written back so far (= generation)
  int64_t first_attempt = 0;   // x-first-attempt: Unix seconds of the first delivery attempt
  int64_t next_attempt = 0;    // x-next-attempt: Unix seconds when the retry is due
  size_t body_offset = 0;  // byte offset of the first message byte in the file
};

// Parses the envelope lines at the start of `file`. Errors name the line number and what is wrong
// ("line 3: x-receiver without '@'"). Rejects: no x-sender, no x-receiver, duplicate x-sender,
// addresses with spaces/controls/no '@' (except the null sender), an empty message.
[[nodiscard]] absl::StatusOr<Envelope> ParseEnvelope(absl::string_view file);

// Domain part of an address, lower-cased ASCII ("a@Example.COM" -> "example.com"): the text after
// the last '@'; empty when there is no '@' (including the null sender).
std::string DomainOf(absl::string_view address);

// Serialises an envelope (sender, recipients, optional fields) followed by `body`, in the same
// format ParseEnvelope reads. Used to rewrite a partially delivered message with only the
// pending recipients, and by mxburst-inject. Lines end in CRLF when `body`'s first line does,
// else LF. Empty envid/job, priority 0 and zero retry fields are omitted; require_tls is
// written as "yes".
// Addresses are written in <>; the caller passes valid ones (ParseEnvelope output is).
std::string SerializeEnvelope(const Envelope& env, absl::string_view body);

}  // namespace mxb
