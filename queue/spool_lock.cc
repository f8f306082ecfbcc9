#include "queue/spool_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mxb {
namespace {

std::string Errno(int err) { return std::strerror(err); }

// The holder's PID as written in the file, or "" when it cannot be read (a holder that has not
// written it yet, or a file from something else).
std::string HolderPid(int fd) {
  char buf[32] = {};
  const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "";
  uint64_t pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(buf, n)), &pid)) return "";
  return absl::StrCat(pid);
}

}  // namespace

absl::StatusOr<SpoolLock> SpoolLock::Acquire(const std::string& spool_root) {
  std::error_code ec;
  std::filesystem::create_directories(spool_root, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create spool ", spool_root, ": ", ec.message()));
  }
  std::string path = absl::StrCat(spool_root, "/lock");
  // O_NOFOLLOW: the lock file is ours; a symlink planted there must not make us truncate
  // whatever it points at.
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", Errno(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string pid = err == EWOULDBLOCK ? HolderPid(fd) : "";
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("spool ", spool_root, " is in use by ",
                       pid.empty() ? "another mxburst" : absl::StrCat("mxburst PID ", pid),
                       " (", path, " is locked); one engine per spool"));
    }
    return absl::UnavailableError(absl::StrCat("cannot lock ", path, ": ", Errno(err)));
  }
  const std::string me = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", Errno(err)));
  }
  return SpoolLock(fd, std::move(path));
}

SpoolLock::SpoolLock(SpoolLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

SpoolLock& SpoolLock::operator=(SpoolLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

SpoolLock::~SpoolLock() {
  if (fd_ >= 0) close(fd_);  // releases the flock
}

}  // namespace mxb
