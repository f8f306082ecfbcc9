// AccountingLog: the JSON-lines record of every recipient outcome (DESIGN.md "Interfaces").
//
// One record per recipient per attempt. Records are buffered and made durable by Flush()
// (write + fdatasync) — group commit: the scanner appends a batch of outcomes, hands the buffered
// bytes to the journal (Journal::SetLogTail, the commit point), commits the journal, flushes the
// log, and only then removes or moves the spool files those outcomes finished. After a crash
// between the journal commit and the log write, Repair() appends what the log lacks, so each
// journaled outcome has exactly one record (queue/journal.h, type 3). Scanner thread only.
//
//   auto log = mxb::AccountingLog::Open("/var/log/mxburst/acct.jsonl");
//   log->Append(record);           // buffered
//   absl::Status s = log->Flush(); // durable before any spool file is removed
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

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
  absl::string_view bounce_class;     // deferred/bounced/expired: engine/bounce_class.h; else ""
};

class AccountingLog {
 public:
  // "-" logs to stdout (no fsync). Creates the parent directory if it is missing.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<AccountingLog>> Open(const std::string& path);
  ~AccountingLog();

  void Append(const LogRecord& r);
  // Quarantined spool file: one record with the reason.
  void AppendQuarantine(absl::Time t, absl::string_view file, absl::string_view reason);
  // Writes the buffered records and fdatasyncs. On an error (disk full) nothing is lost: the
  // unwritten rest stays buffered, and after a failed fdatasync the next Flush writes the
  // unsynced bytes again before syncing, so calling Flush again later is the retry.
  [[nodiscard]] absl::Status Flush();
  uint64_t records() const { return records_; }
  // Called by Flush() with the records it just made durable (complete lines), e.g. to copy them
  // to the outcome stream (output/amqp_output.h); must not block (scanner thread).
  void set_on_durable(std::function<void(absl::string_view)> f) { on_durable_ = std::move(f); }
  // Drops what is buffered and not written (the engine stops with outcomes the journal could
  // not commit: their messages are delivered and logged again after the restart).
  void Discard() { buf_.clear(); }

  // For the journal's log tail: the bytes the next Flush() appends, the log's size before them
  // and its inode (0 for stdout: nothing to repair).
  absl::string_view buffered() const { return buf_; }
  uint64_t end_offset() const { return end_; }
  uint64_t inode() const { return inode_; }
  // Start-up: appends the part of `tail` the log lacks (a crash after the journal commit, before
  // or during the log write) and makes it durable. Returns the bytes appended; 0 when the log is
  // complete, is another file now (rotated: inode differs) or is shorter than tail.offset.
  [[nodiscard]] absl::StatusOr<size_t> Repair(uint64_t offset, uint64_t inode,
                                              absl::string_view bytes);
  // SIGHUP (logrotate renamed the file): opens the path again and appends there from now on.
  // Only between batches — Unavailable while records are buffered or not yet synced (the
  // journal's log tail names the old file's inode and offset); the caller tries again after
  // the next commit. Any other error leaves the old file in use.
  [[nodiscard]] absl::Status Reopen();
  const std::string& path() const { return path_; }

 private:
  AccountingLog(std::string path, int fd, bool sync, uint64_t end, uint64_t inode)
      : path_(std::move(path)), fd_(fd), sync_(sync), end_(end), inode_(inode) {}
  // The open(2) + fstat(2) of Open() and Reopen().
  [[nodiscard]] static absl::Status OpenFile(const std::string& path, int* fd, uint64_t* size,
                                             uint64_t* inode);
  // r.time as the log writes it, formatted once per distinct time.
  const std::string& TimeText(absl::Time t);
  std::string path_;
  int fd_;
  bool sync_;
  uint64_t end_;    // bytes in the file (written, maybe not yet synced)
  uint64_t inode_;
  std::string buf_;       // appended, not yet written
  std::string unsynced_;  // written since the last successful fdatasync
  bool rewrite_ = false;  // an fdatasync failed: write unsynced_ again before the next one
  uint64_t records_ = 0;
  absl::Time time_key_ = absl::InfinitePast();
  std::string time_text_;
  std::function<void(absl::string_view)> on_durable_;
};

}  // namespace mxb
