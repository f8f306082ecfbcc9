// Envelope: the PowerMTA-style pickup-file header that precedes the RFC 5322 message in a spool
// file (see DESIGN.md "Spool directory API").
//
//   x-sender: <bounce@esp.example>
//   x-receiver: <rcpt@dest.example>      (one or more)
//   x-envid: ...   x-job: ...   x-requiretls: yes   x-priority: N     (optional)
//   <RFC 5322 message follows>
//
// Envelope lines are case-insensitive on the key, end with LF or CRLF and come first in the file;
// the first line that is not an `x-<known>:` line starts the message. Pure functions, any thread.
//
//   absl::StatusOr<Envelope> env = ParseEnvelope(file_bytes);
//   if (!env.ok()) quarantine(env.status().message());
//   absl::string_view body = file_bytes.substr(env->body_offset);
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb {

struct Envelope {
  std::string sender;                   // without <>; empty for the null sender "<>"
  std::vector<std::string> recipients;  // without <>; "local@domain", domain lower-cased
  std::string envid;
  std::string job;
  bool require_tls = false;
  int priority = 0;
  size_t body_offset = 0;  // byte offset of the first message byte in the file
};

// Parses the envelope lines at the start of `file`. Errors name the line number and what is wrong
// ("line 3: x-receiver without '@'"). Rejects: no x-sender, no x-receiver, duplicate x-sender,
// addresses with spaces/controls/no '@' (except the null sender), an empty message.
[[nodiscard]] absl::StatusOr<Envelope> ParseEnvelope(absl::string_view file);

// Domain part of an address, lower-cased ASCII ("a@Example.COM" -> "example.com").
std::string DomainOf(absl::string_view address);

// Serialises an envelope (sender, recipients, optional fields) followed by `body`, in the same
// format ParseEnvelope reads. Used to rewrite a partially delivered message with only the
// pending recipients, and by mxburst-inject.
std::string SerializeEnvelope(const Envelope& env, absl::string_view body);

}  // namespace mxb
