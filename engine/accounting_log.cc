#include "engine/accounting_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/json_line.h"

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

const std::string& AccountingLog::TimeText(absl::Time t) {
  // A batch's records share one `now`: formatted once per batch, not once per record.
  if (t != time_key_) {
    time_key_ = t;
    time_text_ = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
  }
  return time_text_;
}

void AccountingLog::Append(const LogRecord& r) {
  const RecipientOutcome& o = *r.outcome;
  // Field order is stable for people reading the log (engine/json_line.h: the same bytes the
  // nlohmann::ordered_json writer produced before).
  JsonLine j(&buf_);
  j.Str("time", TimeText(r.time));
  j.Str("status", r.status_override.empty() ? ToString(o.klass) : r.status_override);
  j.Str("msgid", r.message_id);
  if (!r.job.empty()) j.Str("job", r.job);
  if (!r.envid.empty()) j.Str("envid", r.envid);
  j.Str("sender", r.sender);
  j.Str("rcpt", r.recipient);
  j.Str("domain", r.domain);
  j.Str("mx", o.attempt.mx);
  j.Str("ip", o.attempt.ip);
  j.Int("port", o.attempt.port);
  j.Str("tls", o.attempt.tls_version.empty() ? absl::string_view("none")
                                             : absl::string_view(o.attempt.tls_version));
  if (!o.attempt.tls_cipher.empty()) j.Str("cipher", o.attempt.tls_cipher);
  if (!o.attempt.tls_version.empty()) j.Bool("tls_resumed", o.attempt.tls_resumed);
  j.Str("policy", o.attempt.policy);
  j.Str("policy_source", o.attempt.policy_source);
  if (!o.attempt.violation.empty()) j.Str("policy_violation", o.attempt.violation);
  if (!o.attempt.dane.empty()) j.Str("dane", o.attempt.dane);
  j.Bool("dnssec", o.attempt.dnssec);
  j.Int("code", o.code);
  j.Str("enhanced", o.enhanced);
  // Server text is untrusted: invalid UTF-8 is replaced, control characters escaped.
  j.Str("text", o.text);
  if (!r.bounce_class.empty()) j.Str("class", r.bounce_class);
  j.Int("attempt", r.attempt);
  j.Int("queue_ms", absl::ToInt64Milliseconds(r.queue_time));
  j.End();
  ++records_;
}

void AccountingLog::AppendQuarantine(absl::Time t, absl::string_view file,
                                     absl::string_view reason) {
  JsonLine j(&buf_);
  j.Str("time", TimeText(t));
  j.Str("status", "quarantined");
  j.Str("msgid", file);
  j.Str("text", reason);
  j.End();
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
  // Usually nothing is left unsynced from an earlier failure: the buffer changes hands (its
  // capacity comes back below) instead of being copied.
  if (unsynced_.empty()) {
    unsynced_.swap(buf_);
  } else {
    unsynced_.append(buf_);
  }
  buf_.clear();
  if (unsynced_.empty()) return absl::OkStatus();
  if (fdatasync(fd_) != 0) {
    const int err = errno;
    rewrite_ = true;
    return absl::InternalError(absl::StrCat("accounting log fdatasync: ", std::strerror(err)));
  }
  if (on_durable_) on_durable_(unsynced_);
  unsynced_.clear();
  if (buf_.capacity() < unsynced_.capacity()) buf_.swap(unsynced_);  // the next batch reuses it
  return absl::OkStatus();
}

}  // namespace mxb
