// WriteFileDurably / ReadSmallFile / MakeDirs (tls/durable_file.h).
#include "tls/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace mxb {

absl::Status WriteFileDurably(const std::string& dir, const std::string& name,
                              absl::string_view data) {
  const std::string tmp = absl::StrCat(dir, "/.", name, ".tmp");
  const std::string final_path = absl::StrCat(dir, "/", name);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat(tmp, ": open: ", strerror(errno)));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat(tmp, ": write: ", strerror(err)));
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat(tmp, ": fsync: ", strerror(err)));
  }
  close(fd);
  if (rename(tmp.c_str(), final_path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat(final_path, ": rename: ", strerror(errno)));
  }
  // The rename is durable only once the directory is synced (POSIX).
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", strerror(errno)));
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) break;
  }
  close(fd);
  return out;
}

absl::Status MakeDirs(const std::string& dir) {
  std::error_code ec;  // the non-throwing overload: no exceptions in tls/
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir, ": mkdir: ", ec.message()));
  return absl::OkStatus();
}

}  // namespace mxb
