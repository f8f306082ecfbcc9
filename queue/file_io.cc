#include "queue/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open", path);
  struct stat st;
  size_t expected = 0;
  if (fstat(fd, &st) == 0 && st.st_size > 0) expected = static_cast<size_t>(st.st_size);
  if (expected >= max_bytes) expected = max_bytes - 1;
  // One byte more than the size so the EOF read needs no resize; grows if the file does.
  std::string out(expected + 1, '\0');
  size_t len = 0;
  while (len < max_bytes) {
    if (len == out.size()) out.resize(std::min(out.size() * 2, max_bytes));
    const ssize_t n = read(fd, out.data() + len, out.size() - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      return ErrnoError(err, "read", path);
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  close(fd);
  out.resize(len);
  return out;
}

}  // namespace mxb::file_io
