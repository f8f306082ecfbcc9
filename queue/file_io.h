// Small POSIX file helpers shared by the durable parts of queue/ (spool, journal). Internal to
// queue/; any thread.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mxb::file_io {

// "<path>: <op>" with the errno's status code and text.
absl::Status ErrnoError(int err, absl::string_view op, absl::string_view path);

// fsync of a directory: POSIX makes a rename/unlink inside it durable only after this.
absl::Status FsyncDir(const std::string& dir);

}  // namespace mxb::file_io
