// libFuzzer target: the pickup-file envelope parser (queue/envelope.h), the first thing that
// reads a producer's file.
//
// Asserts: a parsed envelope has a sender line, recipients, a body offset inside the file; and
// SerializeEnvelope(env, body) parses back to the same envelope (the engine rewrites deferred
// files that way, so a file it wrote must always read back).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "queue/envelope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view file(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<mxb::Envelope> env = mxb::ParseEnvelope(file);
  if (!env.ok()) return 0;
  if (env->recipients.empty() || env->body_offset > file.size()) std::abort();
  const absl::string_view body = file.substr(env->body_offset);
  const std::string again = mxb::SerializeEnvelope(*env, body);
  absl::StatusOr<mxb::Envelope> back = mxb::ParseEnvelope(again);
  if (!back.ok()) std::abort();
  if (back->sender != env->sender || back->recipients != env->recipients ||
      back->envid != env->envid || back->job != env->job ||
      back->require_tls != env->require_tls || back->priority != env->priority ||
      back->attempts != env->attempts || back->first_attempt != env->first_attempt ||
      back->next_attempt != env->next_attempt ||
      absl::string_view(again).substr(back->body_offset) != body) {
    std::abort();
  }
  return 0;
}
