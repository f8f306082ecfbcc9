#include "engine/accounting_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace mxb {

absl::Status AccountingLog::OpenFile(const std::string& path, int* fd_out, uint64_t* size,
                                     uint64_t* inode) {
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--log ", path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("--log ", path, ": fstat: ", std::strerror(err)));
  }
  *fd_out = fd;
  *size = static_cast<uint64_t>(st.st_size);
  *inode = static_cast<uint64_t>(st.st_ino);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<AccountingLog>> AccountingLog::Open(const std::string& path) {
  if (path == "-") {
    return std::unique_ptr<AccountingLog>(new AccountingLog(path, STDOUT_FILENO, false, 0, 0));
  }
  int fd = -1;
  uint64_t size = 0, inode = 0;
  if (absl::Status s = OpenFile(path, &fd, &size, &inode); !s.ok()) return s;
  return std::unique_ptr<AccountingLog>(new AccountingLog(path, fd, true, size, inode));
}

absl::Status AccountingLog::Reopen() {
  if (!sync_) return absl::OkStatus();  // stdout
  if (!buf_.empty() || !unsynced_.empty() || rewrite_) {
    return absl::UnavailableError("accounting log: a batch is not durable yet");
  }
  int fd = -1;
  uint64_t size = 0, inode = 0;
  if (absl::Status s = OpenFile(path_, &fd, &size, &inode); !s.ok()) return s;
  close(fd_);
  fd_ = fd;
  end_ = size;
  inode_ = inode;
  return absl::OkStatus();
}

absl::StatusOr<size_t> AccountingLog::Repair(uint64_t offset, uint64_t inode,
                                             absl::string_view bytes) {
  if (!sync_ || inode != inode_ || end_ < offset || end_ >= offset + bytes.size()) return 0;
  // The log ends inside (or right before) the batch: append the rest of it. O_APPEND puts it at
  // end_, which is where the missing part starts.
  std::string rest(bytes.substr(end_ - offset));
  buf_.insert(0, rest);
  if (absl::Status s = Flush(); !s.ok()) return s;
  return rest.size();
}

AccountingLog::~AccountingLog() {
  (void)Flush();
  if (fd_ > STDERR_FILENO) close(fd_);
}

void AccountingLog::Append(const LogRecord& r) {
  const RecipientOutcome& o = *r.outcome;
  // nlohmann::ordered_json keeps the field order stable for people reading the log.
  nlohmann::ordered_json j;
  j["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", r.time, absl::UTCTimeZone());
  j["status"] = r.status_override.empty() ? ToString(o.klass) : std::string(r.status_override);
  j["msgid"] = std::string(r.message_id);
  if (!r.job.empty()) j["job"] = std::string(r.job);
  if (!r.envid.empty()) j["envid"] = std::string(r.envid);
  j["sender"] = std::string(r.sender);
  j["rcpt"] = std::string(r.recipient);
  j["domain"] = std::string(r.domain);
  j["mx"] = o.attempt.mx;
  j["ip"] = o.attempt.ip;
  j["port"] = o.attempt.port;
  j["tls"] = o.attempt.tls_version.empty() ? "none" : o.attempt.tls_version;
  if (!o.attempt.tls_cipher.empty()) j["cipher"] = o.attempt.tls_cipher;
  if (!o.attempt.tls_version.empty()) j["tls_resumed"] = o.attempt.tls_resumed;
  j["policy"] = o.attempt.policy;
  j["policy_source"] = o.attempt.policy_source;
  if (!o.attempt.violation.empty()) j["policy_violation"] = o.attempt.violation;
  if (!o.attempt.dane.empty()) j["dane"] = o.attempt.dane;
  j["dnssec"] = o.attempt.dnssec;
  j["code"] = o.code;
  j["enhanced"] = o.enhanced;
  j["text"] = o.text;
  if (!r.bounce_class.empty()) j["class"] = std::string(r.bounce_class);
  j["attempt"] = r.attempt;
  j["queue_ms"] = absl::ToInt64Milliseconds(r.queue_time);
  // Server text is untrusted: replace invalid UTF-8 instead of failing the whole record.
  absl::StrAppend(&buf_, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "\n");
  ++records_;
}

void AccountingLog::AppendQuarantine(absl::Time t, absl::string_view file,
                                     absl::string_view reason) {
  nlohmann::ordered_json j;
  j["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
  j["status"] = "quarantined";
  j["msgid"] = std::string(file);
  j["text"] = std::string(reason);
  absl::StrAppend(&buf_, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "\n");
  ++records_;
}

absl::Status AccountingLog::Flush() {
  if (rewrite_) {
    // The last fdatasync failed: the kernel may have dropped those dirty pages and marked them
    // clean, so a second fdatasync could succeed without them. Write them again where they
    // belong (O_APPEND off: pwrite on an O_APPEND descriptor always appends on Linux).
    const int flags = fcntl(fd_, F_GETFL);
    if (flags < 0 || fcntl(fd_, F_SETFL, flags & ~O_APPEND) != 0) {
      return absl::InternalError(absl::StrCat("accounting log fcntl: ", std::strerror(errno)));
    }
    const uint64_t at = end_ - unsynced_.size();
    size_t off = 0;
    int err = 0;
    while (off < unsynced_.size()) {
      const ssize_t n = pwrite(fd_, unsynced_.data() + off, unsynced_.size() - off,
                               static_cast<off_t>(at + off));
      if (n < 0) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      off += static_cast<size_t>(n);
    }
    (void)fcntl(fd_, F_SETFL, flags);
    if (err != 0) {
      return absl::InternalError(absl::StrCat("accounting log write: ", std::strerror(err)));
    }
    rewrite_ = false;
  }
  size_t off = 0;
  while (off < buf_.size()) {
    ssize_t n = write(fd_, buf_.data() + off, buf_.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      // Keep what was not written for the next Flush (disk full: the engine retries later).
      if (sync_) unsynced_.append(buf_, 0, off);
      buf_.erase(0, off);
      return absl::InternalError(absl::StrCat("accounting log write: ", std::strerror(err)));
    }
    off += static_cast<size_t>(n);
    end_ += static_cast<uint64_t>(n);
  }
  if (!sync_) {
    if (on_durable_ && !buf_.empty()) on_durable_(buf_);
    buf_.clear();
    return absl::OkStatus();
  }
  unsynced_.append(buf_);
  buf_.clear();
  if (unsynced_.empty()) return absl::OkStatus();
  if (fdatasync(fd_) != 0) {
    const int err = errno;
    rewrite_ = true;
    return absl::InternalError(absl::StrCat("accounting log fdatasync: ", std::strerror(err)));
  }
  if (on_durable_) on_durable_(unsynced_);
  unsynced_.clear();
  return absl::OkStatus();
}

}  // namespace mxb
