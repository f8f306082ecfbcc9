// libFuzzer target: the TOML config loader (engine/config.h, LoadConfigString): toml++ and our
// key checks, including the non-ASCII guard in front of toml++.
//
// Asserts: an error is one line naming the file; an accepted config has its numbers in range.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "engine/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  mxb::EngineConfig c;
  absl::Status s = mxb::LoadConfigString(text, "fuzz.toml", &c);
  if (!s.ok()) {
    if (s.message().find("fuzz.toml") != 0) std::abort();
    return 0;
  }
  if (!std::isfinite(c.reply_timeout_scale) || c.reply_timeout_scale <= 0 ||
      c.reply_timeout_scale > 100) {
    std::abort();
  }
  if (c.workers < 0 || c.workers > 256 || c.max_connections_per_destination < 1) std::abort();
  for (const std::string& server : c.dns_servers) {
    if (server.empty()) std::abort();
  }
  return 0;
}
