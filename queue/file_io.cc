#include "queue/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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

// O_NOATIME needs the file's owner or CAP_FOWNER: once an open was refused with EPERM, every
// later one goes without (an engine that runs as `user` reads producers' files).
std::atomic<bool> noatime_refused{false};

int OpenForRead(int dir_fd, const std::string& name) {
  constexpr int kFlags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
  if (!noatime_refused.load(std::memory_order_relaxed)) {
    const int fd = openat(dir_fd, name.c_str(), kFlags | O_NOATIME);
    if (fd >= 0 || errno != EPERM) return fd;
    noatime_refused.store(true, std::memory_order_relaxed);
  }
  return openat(dir_fd, name.c_str(), kFlags);
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  std::string out;
  absl::StatusOr<absl::string_view> got = ReadFileInto(path, &out, max_bytes);
  if (!got.ok()) return got.status();
  out.resize(got->size());
  return out;
}

absl::StatusOr<absl::string_view> ReadFileInto(const std::string& path, std::string* scratch,
                                               size_t max_bytes, const char* xattr,
                                               std::string* xattr_value) {
  return ReadFileIntoAt(AT_FDCWD, path, path, scratch, max_bytes, xattr, xattr_value);
}

absl::StatusOr<absl::string_view> ReadFileIntoAt(int dir_fd, const std::string& name,
                                                 const std::string& path, std::string* scratch,
                                                 size_t max_bytes, const char* xattr,
                                                 std::string* xattr_value) {
  if (xattr_value != nullptr) xattr_value->clear();
  struct stat st;
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoError(errno, "lstat", path);
  }
  if (!S_ISREG(st.st_mode)) return NotRegular(path, st.st_mode);
  const int fd = OpenForRead(dir_fd, name);
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
  const size_t file_size = st.st_size > 0 ? static_cast<size_t>(st.st_size) : 0;
  const size_t expected = std::min(file_size, max_bytes - 1);
  // One byte more than the size, so a file that did grow is seen; only new room is zeroed.
  if (scratch->size() < expected + 1) scratch->resize(expected + 1);
  size_t len = 0;
  while (len < max_bytes) {
    if (len == scratch->size()) scratch->resize(std::min(scratch->size() * 2, max_bytes));
    const ssize_t n = read(fd, scratch->data() + len, std::min(scratch->size(), max_bytes) - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      return ErrnoError(err, "read", path);
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
    if (file_size > 0 && len == file_size) break;  // the size fstat reported: the whole file
  }
  if (xattr != nullptr && xattr_value != nullptr) {
    char buf[256];
    const ssize_t n = fgetxattr(fd, xattr, buf, sizeof buf);
    if (n > 0) xattr_value->assign(buf, static_cast<size_t>(n));
  }
  close(fd);
  return absl::string_view(scratch->data(), len);
}

}  // namespace mxb::file_io
