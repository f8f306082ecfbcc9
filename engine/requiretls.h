// REQUIRETLS (RFC 8689) facts about a message, as pure functions over its text.
//
// Any thread. Example:
//   if (mxb::HasTlsRequiredNo(message_text)) ...   // RFC 8689 §5: deliver opportunistically
#pragma once

#include "absl/strings/string_view.h"

namespace mxb {

// The message's header section (up to the first empty line, LF or CRLF) has a "TLS-Required"
// field whose value is "No" (case-insensitive, surrounding white space and folding ignored),
// RFC 8689 §5. The body is never looked at.
bool HasTlsRequiredNo(absl::string_view message);

}  // namespace mxb
