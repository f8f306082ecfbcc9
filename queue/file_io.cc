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

absl::string_view FileTypeName(unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "regular file";
    case S_IFLNK:
      return "symbolic link";
    case S_IFDIR:
      return "directory";
    case S_IFIFO:
      return "FIFO";
    case S_IFSOCK:
      return "socket";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
  }
  return "unknown file type";
}

namespace {

absl::Status NotRegular(const std::string& path, unsigned mode) {
  return absl::FailedPreconditionError(
      absl::StrCat(path, ": not a regular file (", FileTypeName(mode), ")"));
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return ErrnoError(errno, "lstat", path);
  if (!S_ISREG(st.st_mode)) return NotRegular(path, st.st_mode);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    // ELOOP: the name became a symbolic link after the lstat.
    if (errno == ELOOP) return NotRegular(path, S_IFLNK);
    return ErrnoError(errno, "open", path);
  }
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError(err, "fstat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return NotRegular(path, st.st_mode);
  }
  size_t expected = 0;
  if (st.st_size > 0) expected = static_cast<size_t>(st.st_size);
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
