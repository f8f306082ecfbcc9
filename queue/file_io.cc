#include "queue/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace mxb::file_io {

absl::Status ErrnoError(int err, absl::string_view op, absl::string_view path) {
  return absl::ErrnoToStatus(err, absl::StrCat(path, ": ", op));
}

absl::Status FsyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open directory for fsync", dir);
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return ErrnoError(err, "fsync directory", dir);
  return absl::OkStatus();
}

}  // namespace mxb::file_io
