// AccountingLog: the JSON-lines record of every recipient outcome (DESIGN.md "Interfaces").
//
// One record per recipient per attempt. Records are buffered and made durable by Flush()
// (write + fdatasync) — group commit: the scanner appends a batch of outcomes, flushes once, and
// only then removes or moves the spool files those outcomes finished. Scanner thread only.
//
//   auto log = mxb::AccountingLog::Open("/var/log/mxburst/acct.jsonl");
//   log->Append(record);           // buffered
//   absl::Status s = log->Flush(); // durable before any spool file is removed
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/delivery.h"

namespace mxb {

struct LogRecord {
  absl::Time time;
  absl::string_view message_id;   // spool file name
  absl::string_view job;
  absl::string_view envid;
  absl::string_view sender;
  absl::string_view recipient;
  absl::string_view domain;
  const RecipientOutcome* outcome = nullptr;
  int attempt = 1;
  absl::Duration queue_time;
  absl::string_view status_override;  // e.g. "quarantined"; empty = ToString(outcome->klass)
};

class AccountingLog {
 public:
  // "-" logs to stdout (no fsync). Creates the parent directory if it is missing.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<AccountingLog>> Open(const std::string& path);
  ~AccountingLog();

  void Append(const LogRecord& r);
  // Quarantined spool file: one record with the reason.
  void AppendQuarantine(absl::Time t, absl::string_view file, absl::string_view reason);
  [[nodiscard]] absl::Status Flush();
  uint64_t records() const { return records_; }

 private:
  AccountingLog(int fd, bool sync) : fd_(fd), sync_(sync) {}
  int fd_;
  bool sync_;
  std::string buf_;
  uint64_t records_ = 0;
};

}  // namespace mxb
