// The two ways an AMQP message carries its envelope (issue 15), and the spool file each becomes.
//
// 1. Body form (the default): the body is a pickup file, envelope lines first — exactly what a
//    producer would write into incoming/ (queue/envelope.h). The headers table is not read.
// 2. Header form: the message's AMQP headers table (AMQP 0-9-1 §4.2.6 field table, the basic
//    "headers" property) has an `x-sender` entry. Then the body is the bare RFC 5322 message and
//    the envelope comes from the headers, with the pickup-file names:
//      x-sender      string ("<>" is the null sender)                        required
//      x-receiver    array of strings, or one string                          required
//      x-envid, x-job                                                         strings
//      x-requiretls  "yes" / "no" or a boolean;  x-priority  integer or decimal string
//    Other headers are ignored (AMQP tooling adds its own); the engine's retry-state keys
//    (x-attempts, ...) are never taken from a producer.
//    The spool file is the envelope lines built from those headers, then the body. A value with
//    CR, LF or NUL (it would add envelope lines), a wrong type, an invalid address, or a body that
//    itself starts with an envelope line (recipients smuggled past the headers) is an error that
//    names the header; the input then puts the message into bad/ with a .why.
//
// Pure function, any thread (the AMQP input's thread calls it).
//
//   absl::StatusOr<std::string> file = mxb::SpoolFileForAmqp(headers_or_null, body);
#pragma once

#include <amqp.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb {

// `headers` may be null (no headers property). Returns the spool file contents: `body` itself in
// the body form, envelope lines + `body` in the header form.
[[nodiscard]] absl::StatusOr<std::string> SpoolFileForAmqp(const amqp_table_t* headers,
                                                           absl::string_view body);

}  // namespace mxb
