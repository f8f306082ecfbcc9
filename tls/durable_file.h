// Small state files in the spool that must survive a crash (the MTA-STS policy cache, banner
// pins): written to a temporary name, fsync'ed, renamed over the old one, and the directory
// fsync'ed, so a reader sees either the old or the new file whole (POSIX rename).
//
// Thread: any; the functions share no state. They block on the disk: callers keep them off the
// delivery hot path (a policy fetch, a pin learned once per host).
//
//   if (absl::Status s = mxb::MakeDirs(spool + "/policy"); !s.ok()) ...
//   absl::Status s = mxb::WriteFileDurably(spool + "/policy", "banner-pins.json", json);
//   absl::StatusOr<std::string> text = mxb::ReadSmallFile(path, 1 << 20);
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb {

// dir/name replaced by `data`: dir/.name.tmp, fsync, rename, fsync(dir).
absl::Status WriteFileDurably(const std::string& dir, const std::string& name,
                              absl::string_view data);
// The file's bytes, at most about `max_bytes` (a longer file is cut there: its parse fails).
// NotFound when it cannot be opened.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes);
// mkdir -p.
absl::Status MakeDirs(const std::string& dir);

}  // namespace mxb
