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

absl::StatusOr<std::unique_ptr<AccountingLog>> AccountingLog::Open(const std::string& path) {
  if (path == "-") return std::unique_ptr<AccountingLog>(new AccountingLog(STDOUT_FILENO, false));
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--log ", path, ": cannot open: ", std::strerror(errno)));
  }
  return std::unique_ptr<AccountingLog>(new AccountingLog(fd, true));
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
  j["dnssec"] = o.attempt.dnssec;
  j["code"] = o.code;
  j["enhanced"] = o.enhanced;
  j["text"] = o.text;
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
  size_t off = 0;
  while (off < buf_.size()) {
    ssize_t n = write(fd_, buf_.data() + off, buf_.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("accounting log write: ", std::strerror(errno)));
    }
    off += static_cast<size_t>(n);
  }
  buf_.clear();
  if (sync_ && off > 0 && fdatasync(fd_) != 0) {
    return absl::InternalError(absl::StrCat("accounting log fdatasync: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace mxb
