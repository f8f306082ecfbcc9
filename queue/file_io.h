// Small POSIX file helpers shared by the durable parts of queue/ (spool, journal). Internal to
// queue/; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb::file_io {

// "<path>: <op>" with the errno's status code and text.
absl::Status ErrnoError(int err, absl::string_view op, absl::string_view path);

// fsync of a directory: POSIX makes a rename/unlink inside it durable only after this.
absl::Status FsyncDir(const std::string& dir);

// The whole file (at most `max_bytes`), sized by fstat up front so a normal file costs one read
// plus the EOF read. Only regular files are read, and a symbolic link is never followed: lstat
// first (so a FIFO or device is never even opened: opening one may block or have side effects),
// then open with O_NOFOLLOW | O_NONBLOCK and check fstat again (the name may have been swapped in
// between). Anything else is FailedPrecondition "<path>: not a regular file (symbolic link)".
// Reading leaves the file's access time alone (O_NOATIME: on a relatime mount the first read of
// a freshly written spool file was an inode update, a journal transaction, per message), unless
// the kernel refuses it (EPERM: neither owner nor CAP_FOWNER; from then on without).
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = SIZE_MAX);

// ReadFile into a buffer the caller reuses from file to file (the scanner's claims: no
// allocation, zero fill or free per message). `scratch` only grows (its size() is capacity, not
// content); the view of the bytes read points into it, valid until its next use. When the read
// returns as many bytes as fstat reported, that is the file (spool files are complete and never
// grow: DESIGN.md "Spool directory API"), so no second read looks for the end. With `xattr`, the
// value of that extended attribute is read on the same descriptor into `*xattr_value` (empty
// when the file has none or the file system has no xattrs), sparing a second path lookup.
absl::StatusOr<absl::string_view> ReadFileInto(const std::string& path, std::string* scratch,
                                               size_t max_bytes = SIZE_MAX,
                                               const char* xattr = nullptr,
                                               std::string* xattr_value = nullptr);

// ReadFileInto for `name` in the directory open as `dir_fd` (the lstat and open are fstatat and
// openat relative to it: no walk of the spool's path per file; AT_FDCWD with a path is
// ReadFileInto). `path` names the file in errors.
absl::StatusOr<absl::string_view> ReadFileIntoAt(int dir_fd, const std::string& name,
                                                 const std::string& path, std::string* scratch,
                                                 size_t max_bytes = SIZE_MAX,
                                                 const char* xattr = nullptr,
                                                 std::string* xattr_value = nullptr);

// "symbolic link", "directory", "FIFO", "socket", "character device", "block device" or
// "regular file" for a st_mode.
absl::string_view FileTypeName(unsigned mode);

}  // namespace mxb::file_io
