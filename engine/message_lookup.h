// LookUpMessage: one message as an operator asks about it (GET /api/v1/messages/ID, `mxburstctl
// message ID`): where its spool file is (incoming, active = in flight, deferred, bad, or gone
// once every recipient is final), its envelope, and each recipient's state from the newest
// accounting-log record for it (else queued / in-flight / deferred from where the file is).
//
// It reads only files — the spool directories and the tail of the accounting log (the last
// kLogTailBytes, so a huge log stays a cheap request; older records are not seen and the answer
// says how much it read) — never the engine's memory, so any thread may call it (the HTTP
// thread does) and mxburstctl can do the same without an engine.
//
//   MessageLookup m = LookUpMessage("/var/lib/mxburst", "/var/log/mxburst/accounting.jsonl", id);
//   m.status;   // 200, 400 (bad id), 404 (unknown)
//   m.json;     // {"id", "location", "sender", "job", "recipients": [{rcpt, state, ...}], ...}
#pragma once

#include <cstddef>
#include <string>

#include "nlohmann/json.hpp"

namespace mxb {

inline constexpr size_t kLogTailBytes = size_t{64} << 20;

struct MessageLookup {
  int status = 404;
  nlohmann::json json;
};

MessageLookup LookUpMessage(const std::string& spool_dir, const std::string& log_path,
                            const std::string& id);

}  // namespace mxb
